"""What every reader returns: a :class:`Source` of row blocks.

A source knows its dtype and the shape of one row (``(C,)`` for logits, ``()`` for
class-index targets, ``(C, d1, ..., dk)`` for K-dim logits) and yields consecutive
blocks along axis 0, so a file larger than memory is read a block at a time. Sources
that know their row count up front (NPY, Parquet, Arrow files) say so in ``n_rows``;
text and stdin sources say ``None`` and are counted as they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np


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
