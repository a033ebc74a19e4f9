"""NumPy ``.npy`` files, memory-mapped so a large file is read as it is used."""

from __future__ import annotations

import numpy as np

from ..errors import InputFileError
from .base import Source, array_source


def read_npy(path: str, *, role: str, **_: object) -> Source:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":
            raise InputFileError(path, "not a .npy file (it does not start with the NPY magic)",
                                 hint="save arrays with numpy.save")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except InputFileError:
        raise
    except ValueError as exc:
        text = str(exc)
        if "allow_pickle" in text or "Object arrays" in text or "Python objects" in text:
            raise InputFileError(path, f"the {role} are an object array, not numbers",
                                 hint="save a numeric array (e.g. float32)") from None
        if "mmap length" in text or "cannot reshape" in text or "size" in text:
            raise InputFileError(path, "the file is truncated: it holds fewer bytes than its "
                                 "header promises") from None
        raise InputFileError(path, f"not a readable .npy file ({_first_line(text)})") from None
    except (OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InputFileError(path, f"not a readable .npy file ({_first_line(str(exc))})") from None
    return array_source(path, role, array)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown reason"
