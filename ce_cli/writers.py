"""Atomic output files: a temp file beside the target, ``os.replace`` on success.

A failed or interrupted run never leaves a partial file and never clobbers an
existing one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import OutputFileError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path in ``target``'s folder; move it onto ``target`` only on success."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:  # Ctrl-C included: never leave the temp file behind
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _write_npy(path: Path, columns: dict[str, np.ndarray], main: str) -> None:
    with open(path, "wb") as fh:  # a file object, so np.save adds no .npy suffix
        np.save(fh, columns[main])


Writer = Callable[[Path, "dict[str, np.ndarray]", str], None]

WRITERS: dict[str, Writer] = {
    ".npy": _write_npy,
}


def check_output(path: str) -> None:
    """Refuse an output path we could not write, before any work is done."""
    p = Path(path)
    if p.suffix.lower() not in WRITERS:
        raise OutputFileError(
            f"{path}: cannot write {p.suffix or 'files without a suffix'!r}; "
            f"name the output with one of {', '.join(sorted(WRITERS))}"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputFileError(f"{path}: the folder {str(parent)!r} does not exist")
    if p.is_dir():
        raise OutputFileError(f"{path}: is a directory; name a file")
    if not os.access(parent, os.W_OK):
        raise OutputFileError(f"{path}: the folder {str(parent)!r} is not writable")


def write_columns(path: str, columns: dict[str, np.ndarray], main: str) -> None:
    """Write ``columns`` (``main`` alone for array formats) to ``path`` atomically."""
    writer = WRITERS[Path(path).suffix.lower()]
    try:
        with atomic_path(path) as tmp:
            writer(tmp, columns, main)
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write ({exc.strerror or exc})") from None
