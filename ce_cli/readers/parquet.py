"""Parquet files, streamed over the chosen columns only: row group by row group, a few
columns at a time (see :meth:`ParquetTable.batches`);
a file of very large row groups by record batch instead.

``pre_buffer=False``: pyarrow's default pre-buffering reads whole row groups (for a
file written as one row group, the whole file) before the first batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import InputFileError
from .arrowio import arrow_errors, pandas_index_columns, read_head
from .base import Source, prefetched
from .registry import sniff_binary
from .table import Field, Table, table_pair, table_source

#: columns decoded together, and the largest row group (bytes, as float64) read that
#: way; see ParquetTable.batches
GROUP_COLUMNS = 16
ROW_GROUP_BYTES = 64 << 20


def read_parquet(path: str, *, role: str, data: bytes | None = None,
                 logits_columns: str | None = None, target_column: str | None = None,
                 **_: object) -> Source:
    """A source over the Parquet file ``path`` (``data``: its bytes, for stdin)."""
    table = ParquetTable(path, data=data)
    return table_source(table, role, logits_columns=logits_columns,
                        target_column=target_column)


def read_parquet_pair(path: str, *, target_column: str, logits_columns: str | None = None,
                      data: bytes | None = None, **_: object) -> tuple[Source, Source]:
    """Logits and targets from one Parquet file (see :func:`.table.table_pair`)."""
    return table_pair(ParquetTable(path, data=data), target_column=target_column,
                      logits_columns=logits_columns)


class ParquetTable(Table):
    def __init__(self, path: str, *, data: bytes | None = None) -> None:
        self.path = path
        self.data = data
        head = data[:8] if data is not None else read_head(path, 8)
        kind = sniff_binary(head)
        if kind != "parquet":
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
        """Batches of ``fields``: whole row groups read :data:`GROUP_COLUMNS` columns at a
        time when a row group is small enough (:data:`ROW_GROUP_BYTES`), else batches of
        ``rows`` across all the columns at once.

        While pyarrow reads a row group it holds every requested column's pages, and for
        a file whose dictionary encoding fell back to plain (pyarrow's default on
        random floats) a ~1 MB dictionary each: ~120 MB for 100 columns. Reading a few
        columns of the row group at a time holds a few of them, at the same speed.
        """
        import pyarrow as pa

        names = [f.name for f in fields]
        pf = self._open()
        try:
            meta = pf.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            if len(set(names)) < len(names):  # a name twice: pick the columns by position
                for batch in pf.iter_batches(batch_size=rows):
                    yield batch.select([f.position for f in fields])
                return
            if len(names) <= GROUP_COLUMNS or \
                    max(sizes, default=0) * len(names) * 8 > ROW_GROUP_BYTES:
                for batch in pf.iter_batches(batch_size=rows, columns=names):
                    if batch.schema.names != names:  # keep the order asked for
                        batch = batch.select(names)
                    yield batch
                return
            groups = [names[i:i + GROUP_COLUMNS] for i in range(0, len(names), GROUP_COLUMNS)]

            def decode() -> Iterator[Any]:
                for i in range(len(sizes)):
                    columns = []
                    for g in groups:
                        part = pf.read_row_group(i, columns=g, use_threads=False)
                        for name in g:
                            col = part.column(name)
                            columns.append(col.chunk(0) if col.num_chunks == 1
                                           else col.combine_chunks())
                    yield pa.RecordBatch.from_arrays(columns, names=names)

            # decode the next row group on a thread of its own (the GIL is released)
            # while the table layer's thread converts this one: 0.2 s of 1.5 s here
            yield from prefetched(decode())
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
