"""NumPy ``.npy`` files, memory-mapped so a large file is read as it is used.

Standard input (``data``) is loaded from memory. Every failure, from a wrong magic to
a truncated body or a damaged header, becomes one :class:`InputFileError` line.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import InputFileError
from .base import Source, array_source, check_numeric

MAGIC = b"\x93NUMPY"


def read_npy(path: str, *, role: str, data: bytes | None = None, **_: object) -> Source:
    """A source over the ``.npy`` file ``path`` (or its bytes ``data``, for stdin)."""
    if data is not None:
        head = data[:6]
    else:
        try:
            with open(path, "rb") as fh:
                head = fh.read(6)
        except OSError as exc:
            raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if head != MAGIC:
        raise InputFileError(path, "not a .npy file (it does not start with the NPY magic)",
                             hint="save arrays with numpy.save")
    try:
        if data is not None:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises many types for damaged files; all are ours
        raise npy_error(path, role, exc) from None
    check_numeric(path, role, array.dtype)
    source = array_source(path, role, array)
    if data is None and isinstance(array, np.memmap) and array.ndim >= 1 and \
            array.flags.c_contiguous and array.nbytes > BUFFERED_BYTES:
        source._blocks = _buffered_blocks(path, array)
    return source


#: files larger than this are read through reused buffers instead of the memory map
BUFFERED_BYTES = 4 << 20


def _buffered_blocks(path: str, array: np.memmap):
    """Row blocks read with ``readinto`` into two reused buffers, taking turns.

    Pages of a memory map stay in the process's resident set once touched, so a 10 GB
    file would count as 10 GB; reading into a buffer keeps the resident set at two
    blocks. Two buffers, so the block before the current one is still intact for a
    consumer that holds on to it for one more step.
    """
    offset = array.offset
    row_shape = array.shape[1:]
    row_bytes = array.itemsize * int(np.prod(row_shape, dtype=np.int64))
    n = array.shape[0]

    def blocks(rows: int):
        rows = max(1, min(rows, n))
        buffers = [np.empty((rows, *row_shape), dtype=array.dtype) for _ in range(2)]
        with open(path, "rb", buffering=0) as fh:
            fh.seek(offset)
            turn = 0
            for start in range(0, n, rows):
                m = min(rows, n - start)
                buf = buffers[turn][:m]
                view = memoryview(buf.reshape(-1).view(np.uint8))
                got = 0
                while got < m * row_bytes:
                    k = fh.readinto(view[got:])
                    if not k:
                        raise InputFileError(path, "the .npy file is truncated: it holds fewer "
                                             "bytes than its header promises",
                                             hint="copy or save the file again")
                    got += k
                yield buf
                turn ^= 1

    return blocks


def npy_error(path: str, role: str, exc: BaseException, what: str = ".npy file") -> InputFileError:
    """The one-line error for an exception numpy raised while loading an NPY body."""
    if isinstance(exc, InputFileError):
        return exc
    text = _first_line(str(exc))
    low = text.lower()
    if "pickle" in low or "object" in low:
        return InputFileError(path, f"the {role} are an object array, not numbers",
                              hint="save a numeric array (e.g. float32) with numpy.save")
    if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.errno is not None:
        return InputFileError(path, f"cannot read the file ({exc.strerror or exc})")
    if ("mmap length" in low or "eof" in low or "cannot reshape" in low
            or "expected" in low and "bytes" in low or isinstance(exc, EOFError)):
        return InputFileError(path, f"the {what} is truncated: it holds fewer bytes than its "
                              "header promises", hint="copy or save the file again")
    if isinstance(exc, (MemoryError, OverflowError)):
        return InputFileError(path, f"the {what} is damaged: its header promises an impossible "
                              "array size", hint="copy or save the file again")
    return InputFileError(path, f"the {what} is damaged ({text})",
                          hint="copy or save the file again")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown reason"
