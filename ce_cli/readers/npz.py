"""NumPy ``.npz`` archives: the only array, or the one named by ``file.npz:name``; and the
logits and targets of one archive by their names (``np.savez(f, logits=x, labels=y)``).

Arrays stored uncompressed (``numpy.savez``) are memory-mapped straight out of the
zip file. Compressed ones (``numpy.savez_compressed``) are streamed: the member's NPY
header is read from the inflating stream, then row blocks are inflated into two reused
buffers, so memory stays at two blocks whatever the array's size (the archive's CRC is
checked when the stream reaches its end). A stream reads forward only: each pass over
the rows opens the member again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Callable

import numpy as np

from ..errors import InputFileError
from . import base
from .base import Source, array_source, buffered_blocks, prefetched
from .conventions import choose_pair, example_member, member_hint, pair_hint, taken_note
from .npy import Header, as_bfloat16, map_array, npy_error, read_header

#: the signature of every entry's local header (zip's structure; the format's magic is
#: in the registry)
ZIP_MAGIC = b"PK\x03\x04"
WHAT = ".npz member"
#: buffers a streamed member's blocks take turns in: the block the consumer holds, the one
#: before it (which it may keep one more step), the one prefetched, the one being inflated
RING = 4


def _open_archive(path: str, data: bytes | None) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data) if data is not None else path)
    except zipfile.BadZipFile:
        raise InputFileError(path, "not a .npz file (not a readable zip archive, or truncated)",
                             hint="save arrays with numpy.savez") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # zipfile raises ValueError, EOFError, ... on damaged files
        raise InputFileError(path, f"the .npz file is damaged ({exc})",
                             hint="copy or save the file again") from None


def _arrays(archive: zipfile.ZipFile, path: str, role: str) -> dict[str, str]:
    """The archive's arrays: name -> its entry's name (``name.npy``)."""
    arrays = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
    if not arrays and any(n.count("/") == 1 and n.endswith("/data.pkl")
                          for n in archive.namelist()):  # torch.save's zip format
        fmt = f"--{role}-format pt" if role in ("logits", "targets") else "a .pt suffix"
        raise InputFileError(path, "a PyTorch file (torch.save), not a .npz archive",
                             hint=f"read it with {fmt}")
    return arrays


def _where(path: str, name: str) -> str:
    return f"{'<stdin>' if path == '-' else path}:{name}"


def read_npz(path: str, *, role: str, data: bytes | None = None, member: str | None = None,
             **_: object) -> Source:
    """A source over one array of the ``.npz`` archive ``path`` (``member``: its name)."""
    with _open_archive(path, data) as archive:
        arrays = _arrays(archive, path, role)
        listing = ", ".join(sorted(arrays)) or "none"
        named = member is not None
        if member is None:
            if len(arrays) != 1:
                if not arrays:
                    raise InputFileError(path, "the .npz archive holds no arrays",
                                         hint="save arrays with numpy.savez")
                raise InputFileError(
                    path, f"the .npz archive holds {len(arrays)} arrays ({listing})",
                    hint=member_hint(path, role, example_member(sorted(arrays), role)))
            member = next(iter(arrays))
        if member not in arrays:
            raise InputFileError(path, f"the .npz archive holds no array named {member!r}",
                                 hint=f"its arrays are: {listing}")
        where = _where(path, member) if named else path
        return _member_source(archive, path, data, arrays[member], where, role)


def _member_source(archive: zipfile.ZipFile, path: str, data: bytes | None, entry: str,
                   where: str, role: str) -> Source:
    """A source over the member ``entry`` (named ``where`` in messages)."""
    try:
        info = archive.getinfo(entry)
        if info.compress_type == zipfile.ZIP_STORED:
            h, array = _stored(path, data, info, where, role)
            source = array_source(where, role, array)
            if isinstance(array, np.memmap) and array.ndim >= 1 and \
                    array.flags.c_contiguous and array.nbytes > base.BUFFERED_BYTES:
                source._blocks = buffered_blocks(path, array, what=WHAT)
        else:
            with archive.open(info) as fh:
                h = read_header(fh, where, role, info.file_size, what=WHAT)
            source = _streamed(_opener(path, data, entry), where, role, h)
    except InputFileError:
        raise
    except zipfile.BadZipFile as exc:
        raise InputFileError(where, f"the .npz archive is damaged ({exc})",
                             hint="copy or save the file again") from None
    except zlib.error as exc:
        raise InputFileError(where, f"the {WHAT} is damaged: it does not inflate ({exc})",
                             hint="copy or save the file again") from None
    except Exception as exc:
        raise npy_error(where, role, exc, what=WHAT) from None
    return as_bfloat16(source, h.bfloat16_descr, where)


def _stored(path: str, data: bytes | None, info: zipfile.ZipInfo, where: str,
            role: str) -> tuple[Header, np.ndarray]:
    """An uncompressed member, its header checked like a .npy file's: memory-mapped from
    a file, a view of the bytes of standard input."""
    if data is not None:
        h = _stored_header(io.BytesIO(data), len(data), info, where, role)
        count = 1
        for d in h.shape:
            count *= d
        flat = np.frombuffer(data, dtype=h.dtype, count=count, offset=h.offset)
        return h, flat.reshape(h.shape, order="F" if h.fortran else "C")
    with open(path, "rb") as fh:
        h = _stored_header(fh, os.fstat(fh.fileno()).st_size, info, where, role)
    return h, map_array(path, h)


def _stored_header(fh: IO[bytes], size: int, info: zipfile.ZipInfo, where: str,
                   role: str) -> Header:
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) < 30 or local[:4] != ZIP_MAGIC:
        raise ValueError("EOF: the zip entry's local header is missing")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    fh.seek(start)
    return read_header(fh, where, role, min(size, start + info.file_size), what=WHAT)


# -- compressed members: streamed ---------------------------------------------------------------


def _opener(path: str, data: bytes | None, entry: str
            ) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
    """Opens the member ``entry`` again, as an inflating stream from its start."""
    @contextlib.contextmanager
    def member() -> Iterator[IO[bytes]]:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as archive, \
                archive.open(entry) as fh:
            yield fh

    return member


def _stream_error(where: str, exc: BaseException) -> InputFileError:
    """The one-line error for a failure while inflating a member."""
    if isinstance(exc, InputFileError):
        return exc
    if isinstance(exc, EOFError):
        return _truncated(where)
    if isinstance(exc, zlib.error):
        return InputFileError(where, f"the {WHAT} is damaged: it does not inflate ({exc})",
                              hint="copy or save the file again")
    if isinstance(exc, zipfile.BadZipFile):
        return InputFileError(where, f"the .npz archive is damaged ({exc})",
                              hint="copy or save the file again")
    if isinstance(exc, OSError):
        return InputFileError(where, f"cannot read the file ({exc.strerror or exc})")
    return InputFileError(where, f"the {WHAT} is damaged ({exc})",
                          hint="copy or save the file again")


def _truncated(where: str) -> InputFileError:
    return InputFileError(where, f"the {WHAT} is truncated: its stream ends before the bytes "
                          "its header promises", hint="copy or save the file again")


def _fill(fh: IO[bytes], view: memoryview, where: str) -> None:
    """Fill ``view`` from ``fh``: every byte, or one InputFileError line."""
    got = 0
    try:
        while got < len(view):
            k = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not k:
                raise _truncated(where)
            got += k
    except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, OSError
        if isinstance(exc, zipfile.BadZipFile) and getattr(fh, "_left", 0) > 0:
            # the inflated stream ended before the member's size: zipfile checks the CRC
            # of what it got (wrong, being short) and says so first
            raise _truncated(where) from None
        raise _stream_error(where, exc) from None


def _skip(fh: IO[bytes], n: int, where: str) -> None:
    _fill(fh, memoryview(bytearray(n)), where)


def _finish(fh: IO[bytes], where: str) -> None:
    """Read past the last byte, so zipfile checks the CRC of a member read to its end."""
    try:
        fh.read(1)
    except Exception as exc:
        raise _stream_error(where, exc) from None


class StreamedSource(Source):
    """The rows of a compressed member: its blocks reuse two buffers, so :meth:`read`
    copies them into one array."""

    def read(self) -> np.ndarray:
        if self.array is not None:
            return super().read()
        out = np.empty((self.n_rows or 0, *self.row_shape), dtype=self.dtype)
        at = 0
        for block in self.blocks(1 << 16):
            out[at:at + block.shape[0]] = block
            at += block.shape[0]
        return out


def _streamed(member: Callable[[], contextlib.AbstractContextManager[IO[bytes]]],
              where: str, role: str, h: Header) -> Source:
    """A source over a compressed member whose header is ``h``: row blocks inflated into
    two reused buffers. A member of at most :data:`base.BUFFERED_BYTES` is inflated whole,
    as is a 0-d array or a Fortran-ordered one (whose rows are not consecutive)."""
    dtype, swap = h.dtype, not h.dtype.isnative
    if not h.shape or (h.fortran and len(h.shape) > 1) or h.nbytes <= base.BUFFERED_BYTES:
        count = 1
        for d in h.shape:
            count *= d
        flat = np.empty(count, dtype=dtype)
        with member() as fh:
            _skip(fh, h.offset, where)
            _fill(fh, memoryview(flat.view(np.uint8)), where)
            _finish(fh, where)
        return array_source(where, role, flat.reshape(h.shape, order="F" if h.fortran else "C"))
    n, row_shape = h.shape[0], h.shape[1:]

    def inflated(rows: int) -> Iterator[np.ndarray]:
        buffers = [np.empty((rows, *row_shape), dtype=dtype) for _ in range(RING)]
        with member() as fh:
            _skip(fh, h.offset, where)
            for i, start in enumerate(range(0, n, rows)):
                m = min(rows, n - start)
                buf = buffers[i % RING][:m]
                _fill(fh, memoryview(buf.reshape(-1).view(np.uint8)), where)
                if start + m == n:
                    _finish(fh, where)
                yield buf.byteswap(inplace=True).view(buf.dtype.newbyteorder("=")) \
                    if swap else buf

    def blocks(rows: int) -> Iterator[np.ndarray]:
        if n == 0:
            return iter(())
        # zlib inflates with the GIL released: the next block while this one is used
        return prefetched(inflated(max(1, min(rows, n))), depth=1)

    native = dtype if dtype.isnative else dtype.newbyteorder("=")

    def flatten(keep: int) -> Source:
        """The same stream read as rows of the last ``keep`` axes (token rows)."""
        lead = h.shape[:len(h.shape) - keep]
        count = 1
        for d in lead:
            count *= d
        return _streamed(member, where, role,
                         dataclasses.replace(h, shape=(count, *h.shape[len(h.shape) - keep:])))

    return StreamedSource(where, role, native, tuple(row_shape), n, blocks,
                          flatten=flatten if len(h.shape) >= 2 else None)


# -- the logits and the targets of one archive --------------------------------------------------


def read_npz_pair(path: str, *, target_column: str | None = None,
                  logits_columns: str | None = None, data: bytes | None = None,
                  member: str | None = None, **_: object) -> tuple[Source, Source]:
    """``(logits, targets)`` from one ``.npz`` archive holding both.

    The targets are the array ``target_column`` if given, else the one with a
    conventional name (``labels``, ``targets``, ...); the logits are ``member`` (from
    ``file.npz:NAME``) or ``logits_columns`` if given, else the one with a conventional
    name (``logits``, ``scores``, ...) or the only other array. What was taken by its
    name is said in the logits' ``notes``; what cannot be told is an error listing the
    arrays and showing ``FILE:NAME``.
    """
    shown = "<stdin>" if path == "-" else path
    with _open_archive(path, data) as archive:
        arrays = _arrays(archive, path, "logits")
        names = list(arrays)
        for given, option in ((target_column, "--target-column"),
                              (logits_columns, "--logits-columns"), (member, None)):
            if given is not None and given not in arrays:
                what = f"{option} {given!r}" if option else f"{shown}:{given}"
                raise InputFileError(path, f"the .npz archive holds no array named {given!r} "
                                     f"({what})", hint=f"its arrays are: {_listing(names)}")
        given = (member or logits_columns, target_column)
        pair = choose_pair(names, logits=given[0], targets=given[1])
        if pair is None:
            raise _cannot_tell(path, names)
        logits, targets = pair
        xs = _member_source(archive, path, data, arrays[logits], _where(path, logits),
                            "logits")
        ts = _member_source(archive, path, data, arrays[targets], _where(path, targets),
                            "targets")
    note = taken_note(shown, pair, given)
    if note:
        xs.notes.append(note)
    return xs, ts


def _listing(names: list[str]) -> str:
    shown = sorted(names)
    if len(shown) > 20:
        return ", ".join(shown[:20]) + f", ... ({len(shown) - 20} more)"
    return ", ".join(shown) or "none"


def _cannot_tell(path: str, names: list[str]) -> InputFileError:
    if len(names) < 2:
        held = f"one array ({names[0]!r})" if names else "no arrays"
        return InputFileError(path, f"missing TARGETS: the .npz archive holds {held}, not "
                              "both logits and targets",
                              hint="give a targets file, or save both, e.g. np.savez(path, "
                                   "logits=x, labels=y)")
    return InputFileError(path, f"cannot tell which arrays of the .npz archive are the "
                          f"logits and which the targets: it holds {_listing(names)}",
                          hint=pair_hint(path, names))
