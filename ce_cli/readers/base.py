"""What every reader returns: a :class:`Source` of row blocks.

A source knows its dtype and the shape of one row (``(C,)`` for logits, ``()`` for
class-index targets, ``(C, d1, ..., dk)`` for K-dim logits) and yields consecutive
blocks along axis 0, so a file larger than memory is read a block at a time. Sources
that know their row count up front (NPY, Parquet, Arrow files) say so in ``n_rows``;
text and stdin sources say ``None`` and are counted as they are read.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np

from ..errors import InputFileError
from ..loss.half import bfloat16_to_float32  # noqa: F401  (the readers' widening)

T = TypeVar("T")


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
    #: the file's own dtype where NumPy has none: "bfloat16" (its blocks are float32, which
    #: holds every bfloat16 value exactly); None when ``dtype`` is the file's dtype
    stored_dtype: str | None = None
    #: a table's logits columns' names (the classes' names when the labels are names)
    column_names: list[str] | None = None
    #: string labels: the names they are matched to, set once (``classes.bind``)
    labels: Any = None
    #: the names the report gives the classes (set by ``run.sources.open_sources``)
    class_names: list[str] | None = None
    #: ``flatten(keep)``: this source with every row axis but the last ``keep`` spread
    #: into rows (``(B, L, V)`` as ``(B * L, V)`` rows), read as finely as any rows; None
    #: when the reader cannot (see :func:`flattening`)
    flatten: Callable[[int], Source] | None = None
    #: the rows are the positions of rows of this shape (a flattened ``(B, L, V)``: the
    #: rows are tokens, ``tokens`` is ``(L,)``); None: rows are rows
    tokens: tuple[int, ...] | None = None

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        return self._blocks(max(1, int(rows)))

    def read(self) -> np.ndarray:
        """The whole array (for small inputs and the Python API), in native byte order."""
        if self.array is not None:
            return native(self.array)
        parts = list(self.blocks(1 << 16))
        if not parts:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order: big-endian data (``>f4``, as saved on
    another machine or by ``astype('>f4')``) is converted, a copy of what is passed."""
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


def array_source(path: str, role: str, array: np.ndarray) -> Source:
    """A source over an array already in memory (or memory-mapped).

    ``array`` keeps the file's byte order; the source's dtype and blocks are native
    (a big-endian array is converted block by block as it is read)."""
    dtype = array.dtype if array.dtype.isnative else array.dtype.newbyteorder("=")
    if array.ndim == 0:
        # a 0-d array is one value: a single unbatched target, say
        def one(rows: int) -> Iterator[np.ndarray]:
            yield native(array.reshape(1))

        return Source(path, role, dtype, (), 1, one, array=array)

    def blocks(rows: int) -> Iterator[np.ndarray]:
        for start in range(0, array.shape[0], rows):
            yield native(array[start:start + rows])

    return Source(path, role, dtype, tuple(array.shape[1:]), array.shape[0], blocks,
                  array=array, flatten=flattening(path, role, array))


def flattening(path: str, role: str, array: np.ndarray, file: str | None = None,
               what: str = ".npy file", widen: bool = False
               ) -> Callable[[int], Source] | None:
    """``Source.flatten`` for a C-contiguous ``array``: a source over the same values with
    every axis but the last ``keep`` merged into rows (no copy). ``file``: the file the
    array maps, read through reused buffers (:func:`buffered_blocks`) when large;
    ``widen``: the values are raw bfloat16 bits, widened to float32 as read."""
    if array.ndim < 2 or not array.flags.c_contiguous:
        return None

    def flatten(keep: int) -> Source:
        flat = array.reshape(-1, *array.shape[array.ndim - keep:]) if keep else \
            array.reshape(-1)
        source = array_source(path, role, flat)
        mapped = own_map(file, flat) if file is not None else None
        if mapped is not None:
            source._blocks = buffered_blocks(file, mapped, what=what)  # type: ignore[arg-type]
        if widen:  # widened on the reading thread, while the loss runs on this one
            raw = source._blocks
            return Source(path, role, np.dtype(np.float32), source.row_shape, source.n_rows,
                          lambda rows: prefetched(widened_blocks(raw(rows))),
                          stored_dtype="bfloat16")
        return source

    return flatten


def rechunk(parts: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Re-cut arrays of any row counts into blocks of exactly ``rows`` (the last shorter).

    Readers get batches whose size the file decides (a CSV block, a Parquet row group);
    the consumer asked for ``rows``. Blocks inside a part are views; only a block that
    straddles two parts is copied together. Empty parts are dropped.
    """
    pending: list[np.ndarray] = []  # the start of the next block, fewer than rows
    have = 0
    for part in parts:
        n = part.shape[0]
        pos = 0
        if have and n:
            head = part[:rows - have]
            pending.append(head)
            have += head.shape[0]
            pos = head.shape[0]
            if have < rows:
                continue
            yield np.concatenate(pending)
            pending, have = [], 0
        while n - pos >= rows:
            yield part[pos:pos + rows]
            pos += rows
        if pos < n:
            pending, have = [part[pos:]], n - pos
    if have:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` items ahead.

    For readers whose batches are fresh arrays (not reused buffers): pyarrow decodes
    with the GIL released, so the next batch is read while the caller computes on this
    one. Errors reach the caller in order, at the item where they happened; closing
    the iterator stops the thread after the item it is on.
    """
    q: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: int, value: object) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(_ITEM, item):
                    return
        except BaseException as exc:  # handed to the caller, which raises it
            put(_ERROR, exc)
        else:
            put(_END, None)

    thread = threading.Thread(target=produce, name="ce-loss-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == _END:
                return
            if kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()


_ITEM, _ERROR, _END = 0, 1, 2


def widened_blocks(raw: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """:func:`bfloat16_to_float32` of each raw block, into one of two buffers that are
    reused once nothing holds a block they gave out (else a new one is taken, so a
    consumer may keep every block). Fresh memory costs more to touch than the widening
    itself: one sample of a (4, 1024, 32000) tensor is a 131 MB block."""
    pool: list[np.ndarray] = []
    for block in raw:
        yield _widen_into(pool, native(block))


def _refs(pool: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(pool[i])


#: the references to a pooled buffer that nothing else holds, counted as _widen_into does
_ONLY_POOLED = _refs([np.empty(0, np.uint32)], 0)


def _widen_into(pool: list[np.ndarray], raw: np.ndarray) -> np.ndarray:
    n = raw.size
    # a buffer is free when only the pool refers to it: a block given out, or any view
    # of it, holds a reference to the buffer
    free = [i for i in range(len(pool)) if pool[i].size >= n and _refs(pool, i) <= _ONLY_POOLED]
    if free:
        buf = pool[free[0]]
    else:
        buf = np.empty(n, np.uint32)
        if len(pool) < 2:
            pool.append(buf)
    out = buf[:n].reshape(raw.shape)
    np.left_shift(raw, 16, out=out, dtype=np.uint32)
    return out.view(np.float32)


#: files larger than this are read through reused buffers instead of the memory map
BUFFERED_BYTES = 4 << 20


def buffered_blocks(path: str, array: np.memmap, what: str = ".npy file"
                    ) -> Callable[[int], Iterator[np.ndarray]]:
    """Row blocks read with ``readinto`` into four reused buffers, taking turns, the next
    blocks read on a thread while the caller computes on this one.

    Pages of a memory map stay in the process's resident set once touched, so a 10 GB
    file would count as 10 GB; reading into buffers keeps the resident set at four
    blocks: the block before the current one (still intact for a consumer that holds on
    to it for one more step), the current one, one waiting and one being read
    (``readinto`` lets go of the GIL, so a file larger than the page cache is read from
    disk while the loss runs).
    """
    offset = array.offset
    row_shape = array.shape[1:]
    swap = not array.dtype.isnative  # big-endian data: swapped in the buffer, in place
    row_bytes = array.itemsize * int(np.prod(row_shape, dtype=np.int64))
    n = array.shape[0]

    def blocks(rows: int) -> Iterator[np.ndarray]:
        rows = max(1, min(rows, n))
        starts = range(0, n, rows)
        buffers = [np.empty((rows, *row_shape), dtype=array.dtype)
                   for _ in range(min(4, len(starts)))]
        with open(path, "rb", buffering=0) as fh:
            fh.seek(offset)
            try:  # a larger read-ahead: the file is read once, front to back
                os.posix_fadvise(fh.fileno(), offset, n * row_bytes, os.POSIX_FADV_SEQUENTIAL)
            except (AttributeError, OSError):  # not on this platform
                pass

            def read(k: int) -> np.ndarray:  # block k into its buffer
                m = min(rows, n - starts[k])
                buf = buffers[k % len(buffers)][:m]
                view = memoryview(buf.reshape(-1).view(np.uint8))
                got = 0
                while got < m * row_bytes:
                    step = fh.readinto(view[got:])
                    if not step:
                        raise InputFileError(path, f"the {what} is truncated: it holds fewer "
                                             "bytes than its header promises",
                                             hint="copy or save the file again")
                    got += step
                return buf

            if len(buffers) < 4:  # three blocks or fewer: nothing worth overlapping
                for k in range(len(starts)):
                    buf = read(k)
                    yield buf.byteswap(inplace=True).view(buf.dtype.newbyteorder("=")) \
                        if swap else buf
                return
            for buf in prefetched(read(k) for k in range(len(starts))):
                yield buf.byteswap(inplace=True).view(buf.dtype.newbyteorder("=")) \
                    if swap else buf

    return blocks


def own_map(path: str, array: np.ndarray) -> np.memmap | None:
    """A large C-contiguous view into a memory map of ``path`` as a map of its own bytes,
    for :func:`buffered_blocks` (pages of a map stay resident once touched, so reading a
    2 GB tensor through its map would count 2 GB); None for anything else."""
    if array.ndim == 0 or not array.flags.c_contiguous or array.nbytes <= BUFFERED_BYTES:
        return None
    # the map itself: the last memmap down the chain of bases (a slice of a memmap is a
    # memmap too, which keeps the map's offset but not its start; as_strided puts a plain
    # object with .base between)
    root, below = None, array.base
    while below is not None:
        if isinstance(below, np.memmap):
            root = below
        below = getattr(below, "base", None)
    if root is None:
        return None
    start = root.offset + (array.__array_interface__["data"][0]
                           - root.__array_interface__["data"][0])
    return np.memmap(path, dtype=array.dtype, mode="r", offset=start, shape=array.shape)
