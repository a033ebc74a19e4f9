"""Readers: one module per format, each turning a path (or ``-``) into a NumPy array.

Every reader raises :class:`~ce_cli.errors.InputFileError` naming the file (and the
line and column where it makes sense) for anything it cannot read, so the command
line can print one located line and exit 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputFileError
from . import npy
from .base import Source

Reader = Callable[..., Source]

#: suffix -> format name
SUFFIXES: dict[str, str] = {
    ".npy": "npy",
}

#: format name -> reader(path, *, role, **options)
READERS: dict[str, Reader] = {
    "npy": npy.read_npy,
}


def format_names() -> list[str]:
    return sorted(READERS)


def detect_format(path: str, fmt: str | None = None) -> str:
    """The format to read ``path`` with: ``fmt`` if given, else by suffix."""
    if fmt is not None:
        if fmt not in READERS:
            raise InputFileError(path, f"unknown format {fmt!r}",
                                 hint=f"use one of {', '.join(format_names())}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    known = ", ".join(sorted(SUFFIXES))
    raise InputFileError(
        path, f"cannot tell the format from the suffix {suffix or '(none)'!r}",
        hint=f"name the file with one of {known}",
    )


def check_path(path: str) -> None:
    """Refuse missing files, folders and unreadable files before a reader tries them."""
    if path == "-":
        return
    p = Path(path)
    if not p.exists():
        raise InputFileError(path, "no such file")
    if p.is_dir():
        raise InputFileError(path, "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InputFileError(path, "permission denied", hint="check the file's permissions")
    if p.stat().st_size == 0:
        raise InputFileError(path, "the file is empty")


def open_source(path: str, *, role: str, fmt: str | None = None, **options: object) -> Source:
    """Open ``path`` as the ``role`` ('logits', 'targets' or 'weight') source."""
    check_path(path)
    name = detect_format(path, fmt)
    return READERS[name](path, role=role, **options)


def read_array(path: str, *, role: str, fmt: str | None = None, **options: object) -> np.ndarray:
    """Read ``path`` whole as the ``role`` array (memory-mapped where the format allows)."""
    return open_source(path, role=role, fmt=fmt, **options).read()
