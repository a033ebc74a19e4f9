"""Readers: one module per format, each turning a path (or ``-``) into a :class:`Source`.

Every reader raises :class:`~ce_cli.errors.InputFileError` naming the file (and the
line and column where it makes sense) for anything it cannot read, so the command
line can print one located line and exit 2.

Formats are chosen by suffix (:data:`SUFFIXES`) or by name (``fmt``); ``-`` reads
standard input, whose format is told by its first bytes. ``file.npz:name`` picks
one array of an archive.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputFileError
from . import arrow, npy, npz, parquet, shards, text
from .base import Source, sniff_binary

Reader = Callable[..., Source]

#: suffix -> format name
SUFFIXES: dict[str, str] = {
    ".npy": "npy",
    ".npz": "npz",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}

#: format name -> reader(path, *, role, data=None, **options)
READERS: dict[str, Reader] = {
    "npy": npy.read_npy,
    "npz": npz.read_npz,
    "csv": text.read_csv,
    "tsv": text.read_tsv,
    "parquet": parquet.read_parquet,
    "arrow": arrow.read_arrow,
}

#: formats that hold named columns, so one file can hold logits and targets
TABLE_FORMATS = ("csv", "tsv", "parquet", "arrow")


def format_names() -> list[str]:
    return sorted(READERS)


def is_stdin(path: str | None) -> bool:
    """Whether ``path`` reads standard input (``-``, or ``-:NAME`` for an .npz member)."""
    return bool(path) and split_member(path)[0] == "-"


def split_member(path: str) -> tuple[str, str | None]:
    """``'a.npz:logits'`` -> ``('a.npz', 'logits')``, ``'-:logits'`` -> ``('-',
    'logits')`` (an archive on stdin); other paths are returned whole. A member's name
    may hold ``/`` and ``:`` (``a.npz:enc/out``): the file is the first ``.npz`` prefix
    that exists."""
    if path == "-" or ":" not in path or os.path.exists(path):
        return path, None
    if path.startswith("-:"):
        return ("-", path[2:]) if len(path) > 2 else (path, None)
    cuts = [i for i, ch in enumerate(path) if ch == ":" and path[:i].lower().endswith(".npz")
            and i + 1 < len(path)]
    for i in cuts:  # the first that exists; else the last, so errors name a missing file
        if os.path.isfile(path[:i]):
            return path[:i], path[i + 1:]
    if cuts:
        return path[:cuts[-1]], path[cuts[-1] + 1:]
    return path, None


def detect_format(path: str, fmt: str | None = None) -> str:
    """The format to read ``path`` with: ``fmt`` if given, else by suffix."""
    if fmt is not None:
        name = fmt.lower().lstrip(".")
        name = SUFFIXES.get("." + name, name)
        if name not in READERS:
            raise InputFileError(path, f"unknown format {fmt!r}",
                                 hint=f"use one of {', '.join(format_names())}")
        return name
    file, _ = split_member(path)
    suffix = Path(file).suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    known = ", ".join(sorted(SUFFIXES))
    raise InputFileError(
        path, f"cannot tell the format from the suffix {suffix or '(none)'!r}",
        hint=f"name the file with one of {known}, or pass the format",
    )


def check_path(path: str) -> None:
    """Refuse missing files, folders and unreadable files before a reader tries them."""
    file, member = split_member(path)
    if file == "-":
        return
    p = Path(file)
    if not p.exists():
        if member is None and ":" in path and Path(path.rpartition(":")[0]).exists():
            raise InputFileError(path, "no such file",
                                 hint="only .npz archives take ':NAME' to pick an array")
        raise InputFileError(file, "no such file")
    if p.is_dir():
        raise InputFileError(file, "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InputFileError(file, "permission denied", hint="check the file's permissions")
    if p.stat().st_size == 0:
        raise InputFileError(file, "the file is empty")


def read_stdin() -> bytes:
    """All of standard input, as bytes (``sys.stdin`` looked up now, for test runners)."""
    stream = getattr(sys.stdin, "buffer", None)
    try:
        data = stream.read() if stream is not None else sys.stdin.read().encode()
    except (OSError, ValueError, AttributeError) as exc:
        raise InputFileError("-", f"cannot read standard input ({exc})") from None
    if not data:
        raise InputFileError("-", "standard input is empty",
                             hint="pipe the data in, e.g. 'cat logits.csv | ce-loss ...'")
    return data


def stdin_format(data: bytes) -> str:
    """NPY, NPZ, Parquet and Arrow by their magic bytes; anything else is CSV text."""
    kind = sniff_binary(data[:4096])
    if kind is None:
        return "csv"
    if kind == "binary":
        raise InputFileError("-", "standard input holds binary data of no known format",
                             hint="pipe .npy, .npz, .parquet, .arrow or CSV text")
    return kind


def _resolve(path: str, fmt: str | None) -> tuple[str, str, dict[str, object]]:
    """(file, format, reader options) for ``path``; stdin is read here, once."""
    file, member = split_member(path)
    if file == "-":
        data = read_stdin()
        name = detect_format(file, fmt) if fmt is not None else stdin_format(data)
        if member is not None and name != "npz":
            raise InputFileError(path, f"standard input holds {name.upper()} data, not a "
                                 ".npz archive", hint="only .npz archives take ':NAME' to "
                                 "pick an array; pass - alone")
        return file, name, {"data": data, **({"member": member} if member else {})}
    check_path(path)
    name = detect_format(path, fmt)
    return file, name, ({"member": member} if member is not None else {})


def open_source(path: str, *, role: str, fmt: str | None = None, **options: object) -> Source:
    """Open ``path`` as the ``role`` ('logits', 'targets' or 'weight') source.

    ``options`` are passed to the reader; each takes what applies to its format:
    ``header`` (CSV: True, False or None to detect), ``logits_columns`` and
    ``target_column`` (tables). ``path`` may be ``-`` (stdin) or ``file.npz:name``.
    """
    if shards.is_sharded(path):  # a folder or glob of shards, read one after another
        files = shards.expand(path, SUFFIXES)
        return shards.concat(path, role, files,
                             lambda f: open_source(f, role=role, fmt=fmt, **options))
    file, name, extra = _resolve(path, fmt)
    return READERS[name](file, role=role, **extra, **options)


def read_array(path: str, *, role: str, fmt: str | None = None, **options: object) -> np.ndarray:
    """Read ``path`` whole as the ``role`` array (memory-mapped where the format allows)."""
    return open_source(path, role=role, fmt=fmt, **options).read()


def open_table_pair(path: str, *, target_column: str, logits_columns: str | None = None,
                    fmt: str | None = None, header: bool | None = None,
                    ) -> tuple[Source, Source]:
    """``(logits, targets)`` sources from one table holding both (``preds.parquet``).

    The targets are the column ``target_column``; the logits are ``logits_columns``
    (a glob, prefix or comma-separated list), else the only list column, else the
    other numeric columns (a pandas index column, text columns and integer id columns
    beside float ones are left out, with a note in ``Source.notes``).
    """
    if shards.is_sharded(path):
        files = shards.expand(path, SUFFIXES)
        pairs = {}

        def side(i: int) -> Callable[[str], Source]:
            def one(f: str) -> Source:
                if f not in pairs:
                    pairs[f] = open_table_pair(f, target_column=target_column,
                                               logits_columns=logits_columns, fmt=fmt,
                                               header=header)
                return pairs[f][i]
            return one

        return (shards.concat(path, "logits", files, side(0)),
                shards.concat(path, "targets", files, side(1)))
    file, name, extra = _resolve(path, fmt)
    data = extra.get("data")
    assert data is None or isinstance(data, bytes)
    table: object
    if name in ("csv", "tsv"):
        table = text.CsvTable(file, data=data, header=header,
                              delimiter="\t" if name == "tsv" else None)
    elif name == "parquet":
        table = parquet.ParquetTable(file, data=data)
    elif name == "arrow":
        table = arrow.ArrowTable(file, data=data)
    else:
        raise InputFileError(path, f"a .{name} file holds one array, not a table with a "
                             f"{target_column!r} column",
                             hint="pass the targets as a second file, or save a table "
                                  "(.parquet, .arrow or .csv)")
    from .table import Table, table_pair

    assert isinstance(table, Table)
    return table_pair(table, target_column=target_column, logits_columns=logits_columns)


__all__ = ["READERS", "SUFFIXES", "Source", "check_path", "detect_format", "format_names",
           "open_source", "open_table_pair", "read_array", "split_member"]
