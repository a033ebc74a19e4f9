"""NumPy ``.npy`` files, memory-mapped so a large file is read as it is used.

Standard input (``data``) is loaded from memory. Every failure, from a wrong magic to
a truncated body or a damaged header, becomes one :class:`InputFileError` line.
"""

from __future__ import annotations

import ast
import io
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from ..errors import InputFileError
from . import base, registry
from .base import Source, array_source, buffered_blocks, widened_blocks
from .validate import check_numeric

MAGIC = registry.get("npy").magics[0].data

#: NPY format version -> (header length field, header encoding), as numpy writes them
VERSIONS = {1: ("<H", "latin1"), 2: ("<I", "latin1"), 3: ("<I", "utf8")}
#: the longest header numpy's np.load reads without allow_pickle (its _MAX_HEADER_SIZE)
MAX_HEADER_BYTES = 10000
#: no array can hold this many bytes: a header promising more is damaged, not truncated
IMPOSSIBLE_BYTES = 1 << 63


@dataclass
class Header:
    """What an NPY header says: the array's shape, order and dtype, and where it starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # of the data, from the start of the stream
    #: the header's descr, as written, when it is 2-byte raw values (``|V2``, ``<V2``): what
    #: ``np.save`` writes for ml_dtypes' bfloat16; ``dtype`` is then their raw 16 bits
    bfloat16_descr: str | None = None

    @property
    def nbytes(self) -> int:
        count = 1
        for d in self.shape:  # Python ints: no overflow for absurd shapes
            count *= d
        return count * self.dtype.itemsize


def read_header(fh: IO[bytes], path: str, role: str, end: int,
                what: str = ".npy file") -> Header:
    """Read and check the NPY header at ``fh``'s position; ``end`` is where the array's
    bytes must end (the file's size). Every problem is one :class:`InputFileError`:
    not NPY, truncated, a damaged header, an object array, a body shorter than promised.
    """
    start = fh.tell()
    lead = fh.read(8)
    if lead[:6] != MAGIC:
        problem = "not a .npy file" if what == ".npy file" else f"the {what} is not an NPY array"
        raise InputFileError(path, f"{problem} (it does not start with the NPY magic)",
                             hint="save arrays with numpy.save")
    short = InputFileError(path, f"the {what} is truncated: it ends inside its header",
                           hint="copy or save the file again")
    if len(lead) < 8:
        raise short
    major, minor = lead[6], lead[7]
    if minor != 0 or major not in VERSIONS:
        raise _damaged(path, what, f"it gives the format version {major}.{minor}, and numpy "
                       "writes 1.0, 2.0 or 3.0")
    length_fmt, encoding = VERSIONS[major]
    raw = fh.read(struct.calcsize(length_fmt))
    if len(raw) < struct.calcsize(length_fmt):
        raise short
    (length,) = struct.unpack(length_fmt, raw)
    if length > MAX_HEADER_BYTES:
        raise _damaged(path, what, f"it says it is {length} bytes long, and numpy reads "
                       f"headers of at most {MAX_HEADER_BYTES}")
    header = fh.read(length)
    if len(header) < length:
        raise short
    d = _parse_header(header, encoding, path, what)
    shape, fortran, descr = d["shape"], d["fortran_order"], d["descr"]
    if not isinstance(shape, tuple) or \
            not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        raise _damaged(path, what, f"its shape {shape!r} is not a tuple of whole numbers")
    if any(n < 0 for n in shape):
        raise _damaged(path, what, f"its shape {shape!r} has a negative size")
    if not isinstance(fortran, bool):
        raise _damaged(path, what, f"its fortran_order {fortran!r} is not True or False")
    try:
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception:  # TypeError, ValueError, KeyError, ... for nonsense descriptors
        raise _damaged(path, what, f"its descr {descr!r} is not a NumPy dtype") from None
    bf16 = None
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.fields is None and \
            dtype.subdtype is None and isinstance(descr, str):
        bf16 = descr  # ml_dtypes' bfloat16, saved by np.save: its raw bits, in the saver's order
        dtype = np.dtype(">u2" if descr.startswith(">") else "<u2")
    if dtype.hasobject:
        raise InputFileError(path, f"the {role} are an object array (pickled Python "
                             "objects), not numbers",
                             hint="save a numeric array (e.g. float32) with numpy.save")
    check_numeric(path, role, dtype)
    h = Header(tuple(shape), fortran, dtype, start + 8 + len(raw) + length, bf16)
    have = end - h.offset
    if h.nbytes > have:
        if h.nbytes >= IMPOSSIBLE_BYTES:
            raise _damaged(path, what, f"its shape {h.shape} of {dtype} promises an "
                           "impossible array size")
        raise InputFileError(path, f"the {what} is truncated: it holds {max(have, 0)} bytes "
                             f"of data but its header promises {h.nbytes} (shape "
                             f"{h.shape} of {dtype})", hint="copy or save the file again")
    return h


def _parse_header(header: bytes, encoding: str, path: str, what: str) -> dict:
    try:
        text = header.decode(encoding)
    except UnicodeDecodeError:
        raise _damaged(path, what, f"it is not {encoding.upper()} text") from None
    shown = " ".join(text.split())
    shown = repr(shown if len(shown) <= 60 else shown[:57] + "...")
    try:
        try:
            d = ast.literal_eval(text)
        except SyntaxError:
            # Python 2's numpy wrote long integers with an L ('shape': (50L, 4L)), which
            # numpy still reads: drop the L after a digit, as its _filter_header does
            d = ast.literal_eval(re.sub(r"(?<=\d)[lL](?=[\s,)\]])", "", text))
    except SyntaxError:
        if text.lstrip().startswith("{") and "}" not in text:
            raise _damaged(path, what, f"its dictionary is not closed (no '}}'): {shown}") \
                from None
        raise _damaged(path, what, f"it is not a Python dictionary literal: {shown}") from None
    except (ValueError, TypeError, MemoryError, RecursionError):  # calls, names, ...
        raise _damaged(path, what, f"it is not a Python dictionary literal: {shown}") from None
    if not isinstance(d, dict):
        raise _damaged(path, what, f"it is not a Python dictionary: {shown}")
    if set(d) != {"descr", "fortran_order", "shape"}:
        keys = ", ".join(repr(k) for k in sorted(d, key=str)) or "none"
        raise _damaged(path, what, f"its keys are {keys}, not 'descr', 'fortran_order' and "
                       "'shape'")
    return d


def _damaged(path: str, what: str, why: str) -> InputFileError:
    return InputFileError(path, f"the {what} has a damaged header: {why}",
                          hint="copy or save the file again")


def map_array(path: str, h: Header) -> np.ndarray:
    """The array ``h`` describes in ``path``, memory-mapped (checked to fit the file)."""
    order = "F" if h.fortran else "C"
    if h.nbytes == 0:
        return np.zeros(h.shape, dtype=h.dtype, order=order)  # mmap cannot map 0 bytes
    return np.memmap(path, dtype=h.dtype, mode="r", offset=h.offset, shape=h.shape,
                     order=order)


def array_of(data: bytes, h: Header) -> np.ndarray:
    """The array of an ``.npy`` image whose header :func:`read_header` parsed and checked
    (a copy: the image's bytes are not kept)."""
    count = 1
    for d in h.shape:
        count *= d
    flat = np.frombuffer(data, dtype=h.dtype, count=count, offset=h.offset)
    return flat.reshape(h.shape, order="F" if h.fortran else "C").copy(order="K")


def read_npy(path: str, *, role: str, data: bytes | None = None, **_: object) -> Source:
    """A source over the ``.npy`` file ``path`` (or its bytes ``data``, for stdin)."""
    try:
        if data is not None:
            h = read_header(io.BytesIO(data), path, role, len(data))
            array = array_of(data, h)
        else:
            try:
                with open(path, "rb") as fh:
                    h = read_header(fh, path, role, os.fstat(fh.fileno()).st_size)
            except OSError as exc:
                raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") \
                    from None
            array = map_array(path, h)
    except Exception as exc:  # numpy raises many types for damaged files; all are ours
        raise npy_error(path, role, exc) from None
    source = array_source(path, role, array)
    mapped = data is None and isinstance(array, np.memmap)
    if mapped and array.ndim >= 1 and array.flags.c_contiguous and \
            array.nbytes > base.BUFFERED_BYTES:
        source._blocks = buffered_blocks(path, array)
    source.flatten = base.flattening(path, role, array, file=path if mapped else None,
                                     widen=h.bfloat16_descr is not None)
    return as_bfloat16(source, h.bfloat16_descr, "<stdin>" if path == "-" else path)


def as_bfloat16(source: Source, descr: str | None, shown: str) -> Source:
    """``source`` itself, or, when its header's descr is 2-byte raw values (``descr``:
    ml_dtypes' bfloat16 as NumPy saves it), a source widening those raw bits to float32
    block by block, its ``stored_dtype`` "bfloat16", with a note saying so."""
    if descr is None:
        return source
    raw = source._blocks

    def widened(rows: int) -> Iterator[np.ndarray]:
        return widened_blocks(raw(rows))

    note = (f"{shown} holds 2-byte raw values ({descr}), as NumPy saves ml_dtypes' "
            "bfloat16: read as bfloat16")
    flatten = None
    if source.flatten is not None:
        raw_flatten = source.flatten

        def flatten(keep: int) -> Source:  # token rows widened too (if not already)
            flat = raw_flatten(keep)
            return flat if flat.stored_dtype == "bfloat16" else as_bfloat16(flat, descr, shown)

    return Source(source.path, source.role, np.dtype(np.float32), source.row_shape,
                  source.n_rows, widened, notes=[*source.notes, note],
                  stored_dtype="bfloat16", flatten=flatten)


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
