"""Readers: one module per format, each turning a path (or ``-``) into a :class:`Source`.

Every reader raises :class:`~ce_cli.errors.InputFileError` naming the file (and the
line and column where it makes sense) for anything it cannot read, so the command
line can print one located line and exit 2.

Formats are listed in :mod:`.registry`, and chosen by suffix or by name (``fmt``);
``-`` reads standard input, whose format is told by its first bytes. ``file.npz:name``
picks one array of an archive. A format's module is imported when a file of it is read.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import InputFileError
from . import registry
from .registry import Format

if TYPE_CHECKING:
    import numpy as np

    from .base import Source

#: name -> (its module, the name in it; None: the module itself), imported on first use
#: so that importing the registry (for a list of formats, say) imports no NumPy
_LAZY = {"Source": (".base", "Source"), "base": (".base", None), "shards": (".shards", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    return module if attribute is None else getattr(module, attribute)


#: suffix -> format name (from the registry)
SUFFIXES: dict[str, str] = registry.suffixes()


def format_names() -> list[str]:
    return registry.names()


def is_stdin(path: str | None) -> bool:
    """Whether ``path`` reads standard input (``-``, or ``-:NAME`` for an .npz member)."""
    return bool(path) and split_member(path)[0] == "-"


def split_member(path: str) -> tuple[str, str | None]:
    """``'a.npz:logits'`` -> ``('a.npz', 'logits')``, ``'-:logits'`` -> ``('-',
    'logits')`` (an archive on stdin); other paths are returned whole. A member's name
    may hold ``/`` and ``:`` (``a.npz:enc/out``): the file is the first ``.npz`` prefix
    (of a format taking members) that exists."""
    if path == "-" or ":" not in path or os.path.exists(path):
        return path, None
    if path.startswith("-:"):
        return ("-", path[2:]) if len(path) > 2 else (path, None)
    ends = registry.member_suffixes()
    cuts = [i for i, ch in enumerate(path) if ch == ":" and path[:i].lower().endswith(ends)
            and i + 1 < len(path)]
    for i in cuts:  # the first that exists; else the last, so errors name a missing file
        if os.path.isfile(path[:i]):
            return path[:i], path[i + 1:]
    if cuts:
        return path[:cuts[-1]], path[cuts[-1] + 1:]
    return path, None


def detect_format(path: str, fmt: str | None = None) -> str:
    """The format to read ``path`` with: ``fmt`` if given, else by suffix."""
    return _format(path, fmt).name


#: the option that names each role's format
_FORMAT_OPTIONS = {"logits": "--logits-format", "targets": "--targets-format"}


def _format(path: str, fmt: str | None, role: str | None = None) -> Format:
    if fmt is not None:
        found = registry.named(fmt)
        if found is None:
            raise InputFileError(path, f"unknown format {fmt!r}",
                                 hint=f"use one of {', '.join(format_names())}")
        return found
    file, _ = split_member(path)
    suffix = Path(file).suffix.lower()
    found = registry.by_suffix(suffix)
    if found is not None:
        return found
    known = ", ".join(sorted(registry.suffixes()))
    option = _FORMAT_OPTIONS.get(role or "")
    how = (f"pass {option} (one of {', '.join(format_names())})" if option
           else "pass the format")
    raise InputFileError(
        path, f"cannot tell the format from the suffix {suffix or '(none)'!r}",
        hint=f"name the file with one of {known}, or {how}",
    )


def check_path(path: str) -> None:
    """Refuse missing files, folders and unreadable files before a reader tries them."""
    file, member = split_member(path)
    if file == "-":
        return
    p = Path(file)
    if not p.exists():
        if member is None and ":" in path and Path(path.rpartition(":")[0]).exists():
            raise InputFileError(path, "no such file", hint=registry.member_hint())
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
    """The format of standard input: told by magic bytes; text is JSON Lines when it
    starts with ``{``, else CSV."""
    kind = registry.sniff_binary(data[:4096])
    if kind is None:
        return registry.sniff_text(data[:4096])
    if kind == "binary":
        raise InputFileError("-", "standard input holds binary data of no known format",
                             hint=f"pipe {registry.stdin_advice()}")
    return kind


def _resolve(path: str, fmt: str | None, role: str | None = None
             ) -> tuple[str, Format, dict[str, object]]:
    """(file, format, reader options) for ``path``; stdin is read here, once."""
    file, member = split_member(path)
    if file == "-":
        data = read_stdin()
        found = _format(file, fmt, role) if fmt is not None \
            else registry.get(stdin_format(data))
        if not found.stdin:
            raise InputFileError(path, f"cannot read {found.label} data from standard input",
                                 hint=f"save it to a {found.suffix} file and pass its path")
        if member is not None and not found.members:
            raise InputFileError(path, f"standard input holds {found.label} data, not "
                                 f"{registry.member_files()}", hint=f"{registry.member_hint()}; "
                                 "pass - alone")
        return file, found, {"data": data, **({"member": member} if member else {})}
    check_path(path)
    found = _format(path, fmt, role)
    return file, found, ({"member": member} if member is not None else {})


def open_source(path: str, *, role: str, fmt: str | None = None, **options: object) -> Source:
    """Open ``path`` as the ``role`` ('logits', 'targets' or 'weight') source.

    ``options`` are passed to the reader; each takes what applies to its format:
    ``header`` (CSV: True, False or None to detect), ``logits_columns`` and
    ``target_column`` (tables). ``path`` may be ``-`` (stdin) or ``file.npz:name``.
    """
    from . import shards

    if shards.is_sharded(path):  # a folder or glob of shards, read one after another
        files = shards.expand(path)
        return shards.concat(path, role, files,
                             lambda f: open_source(f, role=role, fmt=fmt, **options))
    file, found, extra = _resolve(path, fmt, role)
    return registry.load(found.reader)(file, role=role, **extra, **options)


def read_array(path: str, *, role: str, fmt: str | None = None, **options: object) -> np.ndarray:
    """Read ``path`` whole as the ``role`` array (memory-mapped where the format allows)."""
    return open_source(path, role=role, fmt=fmt, **options).read()


def pairs_by_name(path: str, fmt: str | None = None) -> bool:
    """Whether ``path`` alone can give both the logits and the targets, told by their names
    (``torch.save({"logits": x, "labels": y})``, a table's ``label`` column): its format
    has a ``pair`` function. Standard input needs ``fmt``."""
    from . import shards

    if fmt is not None:
        found = registry.named(fmt)
    else:
        file = split_member(path)[0]
        if file == "-":
            return False
        if shards.is_sharded(path):
            try:
                file = shards.expand(path)[0]
            except InputFileError:
                return False
        found = registry.by_suffix(Path(file).suffix)
    return found is not None and found.pair is not None


def open_table_pair(path: str, *, target_column: str | None,
                    logits_columns: str | None = None,
                    fmt: str | None = None, header: bool | None = None,
                    ) -> tuple[Source, Source]:
    """``(logits, targets)`` sources from one table holding both (``preds.parquet``).

    The targets are the column ``target_column``; the logits are ``logits_columns``
    (a glob, prefix or comma-separated list), else the only list column, else the
    other numeric columns (a pandas index column, text columns and integer id columns
    beside float ones are left out, with a note in ``Source.notes``). A ``target_column``
    of None (formats of :func:`pairs_by_name` only) tells both by their names.
    """
    from . import shards

    if shards.is_sharded(path):
        files = shards.expand(path)
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
    file, found, extra = _resolve(path, fmt, "logits")
    if target_column is None and found.pair is None:
        raise InputFileError(path, "missing TARGETS: give a targets file, or --target-column "
                             "NAME when it is a table holding both")
    if found.pair is None:
        raise InputFileError(path, f"a {found.suffix} file holds one array, not a table with "
                             f"a {target_column!r} column",
                             hint="pass the targets as a second file, or save a table "
                                  f"({registry.table_advice()})")
    return registry.load(found.pair)(file, target_column=target_column,
                                     logits_columns=logits_columns, header=header, **extra)


__all__ = ["SUFFIXES", "Source", "check_path", "detect_format", "format_names", "is_stdin",
           "open_source", "open_table_pair", "pairs_by_name", "read_array", "split_member"]
