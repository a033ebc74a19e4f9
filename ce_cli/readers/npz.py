"""NumPy ``.npz`` archives: the only array, or the one named by ``file.npz:name``.

Arrays stored uncompressed (``numpy.savez``) are memory-mapped straight out of the
zip file; compressed ones (``numpy.savez_compressed``) are decompressed whole, with
the archive's CRC checked.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from typing import IO

import numpy as np

from ..errors import InputFileError
from .base import Source, array_source
from .conventions import example_member, member_hint
from .npy import array_of, map_array, npy_error, read_header
from .validate import check_numeric

#: the signature of every entry's local header (zip's structure; the format's magic is
#: in the registry)
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
        if not arrays and any(n.count("/") == 1 and n.endswith("/data.pkl")
                              for n in archive.namelist()):  # torch.save's zip format
            fmt = f"--{role}-format pt" if role in ("logits", "targets") else "a .pt suffix"
            raise InputFileError(path, "a PyTorch file (torch.save), not a .npz archive",
                                 hint=f"read it with {fmt}")
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
        where = f"{'<stdin>' if path == '-' else path}:{member}" if named else path
        try:
            info = archive.getinfo(arrays[member])
            if data is None and info.compress_type == zipfile.ZIP_STORED:
                array = _map_stored(path, info, where, role)
            else:
                with archive.open(info) as fh:
                    array = _read_member(fh, where, role)
        except InputFileError:
            raise
        except zipfile.BadZipFile as exc:
            raise InputFileError(where, f"the .npz archive is damaged ({exc})",
                                 hint="copy or save the file again") from None
        except Exception as exc:
            raise npy_error(where, role, exc, what=".npz member") from None
    check_numeric(where, role, array.dtype)
    return array_source(where, role, array)


def _read_member(fh: IO[bytes], where: str, role: str) -> np.ndarray:
    data = fh.read()  # zipfile checks the CRC once the member is read to its end
    return array_of(data, read_header(io.BytesIO(data), where, role, len(data),
                                      what=".npz member"))


def _map_stored(path: str, info: zipfile.ZipInfo, where: str, role: str) -> np.ndarray:
    """Memory-map an uncompressed member, its header checked like a .npy file's."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != ZIP_MAGIC:
            raise ValueError("EOF: the zip entry's local header is missing")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        end = min(os.fstat(fh.fileno()).st_size, start + info.file_size)
        h = read_header(fh, where, role, end, what=".npz member")
    return map_array(path, h)
