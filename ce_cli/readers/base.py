"""What every reader returns: a :class:`Source` of row blocks.

A source knows its dtype and the shape of one row (``(C,)`` for logits, ``()`` for
class-index targets, ``(C, d1, ..., dk)`` for K-dim logits) and yields consecutive
blocks along axis 0, so a file larger than memory is read a block at a time. Sources
that know their row count up front (NPY, Parquet, Arrow files) say so in ``n_rows``;
text and stdin sources say ``None`` and are counted as they are read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import numpy as np

from ..errors import InputFileError
from ..names import INT64_MAX

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
                  array=array)


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


#: the hint of every "not a class index" error
INDEX_HINT = "class indices are whole numbers such as 2 (or 2.0)"


def index_problem(a: np.ndarray) -> tuple[int, str] | None:
    """The first value of ``a`` (its flat index) that cannot be an int64 class index, and
    why: floats that are not finite, not whole or beyond int64, uint64 beyond int64.
    Other integer arrays always fit (None, as for good values)."""
    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):  # 2**63 overflows float16
            finite = np.isfinite(flat)
            good = finite & (flat == np.floor(flat)) & \
                (np.abs(flat.astype(np.float64, copy=False)) < 2.0 ** 63)
        if good.all():
            return None
        i = int(np.flatnonzero(~good)[0])
        why = "is not a class index (not a finite number)" if not finite[i] \
            else "is not a whole number" if flat[i] != np.floor(flat[i]) \
            else "is too large for a class index"
        return i, why
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and flat.size and flat.max() > INT64_MAX:
        return int(np.argmax(flat > INT64_MAX)), "is too large for a class index"
    return None


def check_class_indices(t: np.ndarray, path: str, offset: int = 0,
                        line_of: Callable[[int], int | None] | None = None) -> None:
    """Refuse a block of class-index targets that int64 cannot hold exactly, naming the
    file and the row (the line, for text), before anything casts them: a cast would wrap
    ``2**63 + 5`` to a negative index and turn ``1e30`` into a NumPy warning.
    ``offset`` is the file row of ``t[0]``."""
    found = index_problem(t)
    if found is None:
        return
    i, why = found
    per_row = int(np.prod(t.shape[1:])) if t.ndim > 1 else 1
    row = offset + i // per_row
    value = t.reshape(-1)[i]
    shown = repr(float(value)) if t.dtype.kind == "f" else str(int(value))
    line = line_of(row) if line_of is not None else None
    if line is not None:
        raise InputFileError(path, f"target {shown} {why}", line=line, hint=INDEX_HINT)
    where = f"row index {row}"
    if t.ndim > 1:
        pos = (row, *(int(k) for k in np.unravel_index(i % per_row, t.shape[1:])))
        where += f", target at {pos}"
    raise InputFileError(path, f"{where} ({shown}) {why}", hint=INDEX_HINT)


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
