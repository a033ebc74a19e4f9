"""NumPy ``.npz`` archives: the only array, or the one named by ``file.npz:name``.

Arrays stored uncompressed (``numpy.savez``) are memory-mapped straight out of the
zip file; compressed ones (``numpy.savez_compressed``) are decompressed whole, with
the archive's CRC checked.
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import IO

import numpy as np

from ..errors import InputFileError
from .base import Source, array_source, check_numeric
from .npy import npy_error

ZIP_MAGIC = b"PK\x03\x04"


def read_npz(path: str, *, role: str, data: bytes | None = None, member: str | None = None,
             **_: object) -> Source:
    """A source over one array of the ``.npz`` archive ``path`` (``member``: its name)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if data is not None else path)
    except zipfile.BadZipFile:
        raise InputFileError(path, "not a .npz file (not a readable zip archive, or truncated)",
                             hint="save arrays with numpy.savez") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # zipfile raises ValueError, EOFError, ... on damaged files
        raise InputFileError(path, f"the .npz file is damaged ({exc})",
                             hint="copy or save the file again") from None
    with archive:
        arrays = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
        listing = ", ".join(sorted(arrays)) or "none"
        named = member is not None
        if member is None:
            if len(arrays) != 1:
                if not arrays:
                    raise InputFileError(path, "the .npz archive holds no arrays",
                                         hint="save arrays with numpy.savez")
                raise InputFileError(
                    path, f"the .npz archive holds {len(arrays)} arrays ({listing})",
                    hint=f"name the one to read, e.g. {path}:{sorted(arrays)[0]}")
            member = next(iter(arrays))
        if member not in arrays:
            raise InputFileError(path, f"the .npz archive holds no array named {member!r}",
                                 hint=f"its arrays are: {listing}")
        where = f"{path}:{member}" if named else path
        try:
            info = archive.getinfo(arrays[member])
            array = None
            if data is None and info.compress_type == zipfile.ZIP_STORED:
                array = _map_stored(path, info)
            if array is None:
                with archive.open(info) as fh:
                    array = _read_member(fh)
        except InputFileError:
            raise
        except zipfile.BadZipFile as exc:
            raise InputFileError(where, f"the .npz archive is damaged ({exc})",
                                 hint="copy or save the file again") from None
        except Exception as exc:
            raise npy_error(where, role, exc, what=".npz member") from None
    check_numeric(where, role, array.dtype)
    return array_source(where, role, array)


def _read_member(fh: IO[bytes]) -> np.ndarray:
    magic = fh.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError("the member is not an NPY array")
    rest = fh.read()  # zipfile checks the CRC once the member is read to its end
    return np.load(io.BytesIO(magic + rest), allow_pickle=False)


def _map_stored(path: str, info: zipfile.ZipInfo) -> np.ndarray | None:
    """Memory-map an uncompressed member; None when its header is not one we can map."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != ZIP_MAGIC:
            raise ValueError("EOF: the zip entry's local header is missing")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            return None
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        offset = fh.tell()
        fh.seek(0, 2)
        size = fh.tell()
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    if offset + nbytes > min(size, start + info.file_size):
        raise ValueError("EOF: mmap length is greater than the member")
    if count == 0:
        return np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")
