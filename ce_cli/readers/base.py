"""What every reader returns: a :class:`Source` of row blocks.

A source knows its dtype and the shape of one row (``(C,)`` for logits, ``()`` for
class-index targets, ``(C, d1, ..., dk)`` for K-dim logits) and yields consecutive
blocks along axis 0, so a file larger than memory is read a block at a time. Sources
that know their row count up front (NPY, Parquet, Arrow files) say so in ``n_rows``;
text and stdin sources say ``None`` and are counted as they are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputFileError


@dataclass
class Source:
    """Rows of one array read from ``path``.

    ``blocks(rows)`` yields arrays of shape ``(m, *row_shape)`` with ``m <= rows``
    (the last may be shorter), in file order; calling it again starts over.
    ``line_of(i)`` maps a 0-based data row to the 1-based line of a text file (None
    for binary formats), for located error messages.
    """

    path: str
    role: str
    dtype: np.dtype
    row_shape: tuple[int, ...]
    n_rows: int | None
    _blocks: Callable[[int], Iterator[np.ndarray]]
    line_of: Callable[[int], int | None] = lambda i: None
    array: np.ndarray | None = None  # the whole array, when the format maps it
    #: things the reader decided that the user may want to know ("ignored column 'id'"),
    #: one line each, for the CLI to print as warnings
    notes: list[str] = field(default_factory=list)
    #: for sharded sources, (shard path, its row count) in order
    parts: list[tuple[str, int | None]] | None = None

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        return self._blocks(max(1, int(rows)))

    def read(self) -> np.ndarray:
        """The whole array (for small inputs and the Python API)."""
        if self.array is not None:
            return self.array
        parts = list(self.blocks(1 << 16))
        if not parts:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def array_source(path: str, role: str, array: np.ndarray) -> Source:
    """A source over an array already in memory (or memory-mapped)."""
    if array.ndim == 0:
        # a 0-d array is one value: a single unbatched target, say
        def one(rows: int) -> Iterator[np.ndarray]:
            yield array.reshape(1)

        return Source(path, role, array.dtype, (), 1, one, array=array)

    def blocks(rows: int) -> Iterator[np.ndarray]:
        for start in range(0, array.shape[0], rows):
            yield array[start:start + rows]

    return Source(path, role, array.dtype, tuple(array.shape[1:]), array.shape[0], blocks,
                  array=array)


def rechunk(parts: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Re-cut arrays of any row counts into blocks of exactly ``rows`` (the last shorter).

    Readers get batches whose size the file decides (a CSV block, a Parquet row group);
    the consumer asked for ``rows``. Empty parts are dropped.
    """
    buf: list[np.ndarray] = []
    have = 0
    for part in parts:
        if part.shape[0] == 0:
            continue
        if not buf and part.shape[0] == rows:
            yield part
            continue
        buf.append(part)
        have += part.shape[0]
        if have < rows:
            continue
        whole = buf[0] if len(buf) == 1 else np.concatenate(buf)
        cut = have - have % rows
        for start in range(0, cut, rows):
            yield whole[start:start + rows]
        rest = whole[cut:]
        buf, have = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    if have:
        yield buf[0] if len(buf) == 1 else np.concatenate(buf)


#: what a dtype kind is, in words, for "holds X, not numbers" messages
KIND_NAMES = {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers",
              "V": "records", "M": "dates", "m": "time deltas"}


def check_numeric(path: str, role: str, dtype: np.dtype, what: str = "") -> None:
    """Refuse arrays torch could never take: objects, text, complex, records, dates."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biuf" and dtype.fields is None:
        return
    kind = KIND_NAMES.get(dtype.kind, dtype.kind)
    hint = "save int64 class indices" if role == "targets" else "save a float32 or float64 array"
    raise InputFileError(path, f"{what or 'the ' + role} hold {kind} ({dtype.str}), "
                         "not real numbers", hint=hint)


#: leading bytes of the binary formats, for stdin and for a binary file named .csv
MAGICS = (
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
    (b"PAR1", "parquet"),
    (b"ARROW1", "arrow"),
    (b"FEA1", "arrow"),
    (b"\xff\xff\xff\xff", "arrow"),  # an Arrow IPC stream's first continuation marker
)


def sniff_binary(head: bytes) -> str | None:
    """The binary format ``head`` starts with, "binary" for other binary data, else None."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    if b"\x00" in head[:4096]:
        return "binary"
    return None
