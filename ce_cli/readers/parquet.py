"""Parquet files, streamed by record batch over the chosen columns only.

``pre_buffer=False``: pyarrow's default pre-buffering reads whole row groups (for a
file written as one row group, the whole file) before the first batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from ..errors import InputFileError
from .base import Source, sniff_binary
from .table import Field, Table, pandas_index_columns, table_source

MAGIC = b"PAR1"

#: columns decoded together; see ParquetTable.batches
GROUP_COLUMNS = 16


def read_parquet(path: str, *, role: str, data: bytes | None = None,
                 logits_columns: str | None = None, target_column: str | None = None,
                 **_: object) -> Source:
    """A source over the Parquet file ``path`` (``data``: its bytes, for stdin)."""
    table = ParquetTable(path, data=data)
    return table_source(table, role, logits_columns=logits_columns,
                        target_column=target_column)


def arrow_errors() -> tuple[type[BaseException], ...]:
    """What pyarrow raises on damaged input: its ArrowException family (ArrowInvalid is
    also a ValueError, ArrowIOError an OSError), and MemoryError or OverflowError when a
    damaged length asks for an impossible allocation."""
    import pyarrow as pa

    return (pa.ArrowException, OSError, ValueError, EOFError, MemoryError, OverflowError)


class ParquetTable(Table):
    def __init__(self, path: str, *, data: bytes | None = None) -> None:
        self.path = path
        self.data = data
        head = data[:8] if data is not None else _read_head(path, 8)
        if head[:4] != MAGIC:
            kind = sniff_binary(head)
            found = f" (it holds {kind} data)" if kind and kind != "binary" else ""
            raise InputFileError(path, f"not a Parquet file{found}: it does not start with "
                                 "the PAR1 magic", hint="write it with pyarrow.parquet."
                                 "write_table or DataFrame.to_parquet")
        pf = self._open()
        try:
            schema = pf.schema_arrow
            self.n_rows = int(pf.metadata.num_rows)
            self.fields = [Field(f.name, f.type, j) for j, f in enumerate(schema)]
        except arrow_errors() as exc:
            raise _damaged(path, exc) from None
        self._pandas_index = pandas_index_columns(schema)

    def _open(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = pa.BufferReader(self.data) if self.data is not None else self.path
        try:
            return pq.ParquetFile(source, pre_buffer=False)
        except arrow_errors() as exc:
            raise _damaged(self.path, exc) from None

    def batches(self, fields: list[Field], rows: int) -> Iterator[Any]:
        """Batches of ``fields``, read as groups of :data:`GROUP_COLUMNS` columns in step.

        pyarrow holds every requested column's pages (and, for a file whose dictionary
        encoding fell back to plain, a dictionary page each) while it decodes a batch;
        for 100 columns that is ~200 MB. A few columns at a time, in lockstep over the
        same rows, keeps it to a few tens of MB at the same speed.
        """
        import pyarrow as pa

        names = [f.name for f in fields]
        groups = [names[i:i + GROUP_COLUMNS] for i in range(0, len(names), GROUP_COLUMNS)]
        try:
            readers = [self._open().iter_batches(batch_size=rows, columns=g) for g in groups]
            for parts in itertools.zip_longest(*readers):
                if any(p is None for p in parts) or len({p.num_rows for p in parts}) > 1:
                    raise InputFileError(self.path, "the Parquet file is damaged (its "
                                         "columns hold different numbers of rows)",
                                         hint="copy or write the file again")
                if len(parts) == 1:
                    batch = parts[0]
                    if batch.schema.names != names:  # keep the order asked for
                        batch = batch.select(names)
                    yield batch
                    continue
                columns = [col for p, g in zip(parts, groups) for col in p.select(g).columns]
                yield pa.RecordBatch.from_arrays(columns, names=names)
        except arrow_errors() as exc:
            raise _damaged(self.path, exc) from None

    def index_names(self) -> set[str]:
        return super().index_names() | self._pandas_index


def _damaged(path: str, exc: BaseException) -> InputFileError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "magic" in text.lower() or "too small" in text.lower():
        return InputFileError(path, "the Parquet file is truncated or damaged (its footer is "
                              "missing)", hint="copy or write the file again")
    return InputFileError(path, f"the Parquet file is damaged ({text[:200]})",
                          hint="copy or write the file again")


def _read_head(path: str, n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None
