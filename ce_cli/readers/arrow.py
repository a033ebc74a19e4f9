"""Arrow IPC: the file format (``.arrow``, Feather v2), the stream format, Feather v1.

Which one a file holds is told by its first bytes. Files are memory-mapped and read
by record batch; every batch is validated in full, so a damaged file is an error and
never a crash.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import InputFileError
from . import registry
from .arrowio import arrow_errors, pandas_index_columns, read_head
from .base import Source
from .table import Field, Table, table_pair, table_source


def read_arrow(path: str, *, role: str, data: bytes | None = None,
               logits_columns: str | None = None, target_column: str | None = None,
               **_: object) -> Source:
    """A source over the Arrow IPC file or stream ``path`` (``data``: its bytes)."""
    table = ArrowTable(path, data=data)
    return table_source(table, role, logits_columns=logits_columns,
                        target_column=target_column)


def read_arrow_pair(path: str, *, target_column: str, logits_columns: str | None = None,
                    data: bytes | None = None, **_: object) -> tuple[Source, Source]:
    """Logits and targets from one Arrow IPC file or stream (see :func:`.table.table_pair`)."""
    return table_pair(ArrowTable(path, data=data), target_column=target_column,
                      logits_columns=logits_columns)


class ArrowTable(Table):
    def __init__(self, path: str, *, data: bytes | None = None) -> None:
        self.path = path
        self.data = data
        head = data[:8] if data is not None else read_head(path, 8)
        if head.startswith(b"ARROW1"):
            self.kind = "file"
        elif head.startswith(b"FEA1"):
            self.kind = "feather1"
        else:
            other = registry.sniff_binary(head)
            if other is not None and other not in ("arrow", "binary"):
                raise InputFileError(path, f"not an Arrow file (it holds {other} data)",
                                     hint=f"name it with {registry.get(other).suffix}, or "
                                          "pass the format")
            self.kind = "stream"
        try:
            reader = self._reader()
            schema = reader.schema
            if self.kind == "file":
                count = getattr(reader, "count_rows", None)
                self.n_rows: int | None = int(count()) if count else None
            elif self.kind == "feather1":
                self.n_rows = reader.num_rows
            else:
                self.n_rows = None
            self.fields = [Field(f.name, f.type, j) for j, f in enumerate(schema)]
        except InputFileError:
            raise
        except arrow_errors() as exc:
            raise self._damaged(exc) from None
        self._pandas_index = pandas_index_columns(schema)

    def _source(self) -> Any:
        import pyarrow as pa

        return pa.BufferReader(self.data) if self.data is not None else pa.memory_map(self.path)

    def _reader(self) -> Any:
        import pyarrow.feather as feather
        import pyarrow.ipc as ipc

        if self.kind == "file":
            return ipc.open_file(self._source())
        if self.kind == "stream":
            return ipc.open_stream(self._source())
        with warnings.catch_warnings():  # pyarrow 25+ deprecates V1; old files still exist
            warnings.simplefilter("ignore", DeprecationWarning)
            return feather.read_table(self._source())

    def batches(self, fields: list[Field], rows: int) -> Iterator[Any]:
        positions = [f.position for f in fields]
        try:
            reader = self._reader()
            if self.kind == "file":
                parts: Any = (reader.get_batch(i) for i in range(reader.num_record_batches))
            elif self.kind == "stream":
                parts = reader
            else:
                parts = reader.to_batches(max_chunksize=rows)
            for batch in parts:
                batch = batch.select(positions)
                batch.validate(full=True)
                yield batch
        except arrow_errors() as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: BaseException) -> InputFileError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        what = {"file": "Arrow IPC file", "stream": "Arrow IPC stream",
                "feather1": "Feather file"}[self.kind]
        if self.kind == "stream" and not self.__dict__.get("fields"):
            return InputFileError(self.path, f"not an Arrow IPC file or stream ({text[:200]})",
                                  hint="write it with pyarrow.feather.write_feather or "
                                       "pyarrow.ipc.new_file")
        return InputFileError(self.path, f"the {what} is truncated or damaged ({text[:200]})",
                              hint="copy or write the file again")

    def index_names(self) -> set[str]:
        return super().index_names() | self._pandas_index
