"""Sharded inputs: a directory or glob of files read one after another as one source.

Each shard is opened by its own format's reader, so column selection and errors work as
for a single file, and every error names the shard. Memory stays at one block: shards
are opened lazily, one at a time, as the rows are consumed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputFileError
from . import registry
from .base import Source
from .classes import Labels

GLOB_CHARS = "*?["


def is_sharded(path: str) -> bool:
    return path != "-" and (os.path.isdir(path) or any(c in path for c in GLOB_CHARS))


def expand(path: str, suffixes: Iterable[str] | None = None) -> list[str]:
    """The shard files of a directory (those with a suffix of ``suffixes``, by default
    every suffix read) or a glob, sorted."""
    if os.path.isdir(path):
        suffixes = set(registry.suffixes() if suffixes is None else suffixes)
        files = sorted(str(p) for p in Path(path).iterdir()
                       if p.is_file() and p.suffix.lower() in suffixes
                       and not p.name.startswith("."))
        if not files:
            raise InputFileError(path, "the folder holds no files ce-loss reads",
                                 hint=f"shards end in one of {', '.join(sorted(suffixes))}")
        return files
    files = sorted(p for p in glob.glob(path) if os.path.isfile(p))
    if not files:
        raise InputFileError(path, "the pattern matches no files")
    return files


def concat(path: str, role: str, files: list[str], open_one: Callable[[str], Source]
           ) -> Source:
    """One source over ``files`` in order; shards must agree on row shape and dtype."""
    first = open_one(files[0])
    heads = [first]
    for f in files[1:]:
        s = open_one(f)
        if s.row_shape != first.row_shape:
            what = "classes" if role == "logits" and len(s.row_shape) == 1 else "row shape"
            mine = s.row_shape[0] if what == "classes" else s.row_shape
            theirs = first.row_shape[0] if what == "classes" else first.row_shape
            raise InputFileError(f, f"this shard's {role} have {mine} {what} but "
                                 f"{first.path} has {theirs}",
                                 hint="every shard must come from the same model and layout")
        if s.dtype.kind != first.dtype.kind:
            raise InputFileError(f, f"this shard's {role} are {s.dtype} but {first.path} "
                                 f"holds {first.dtype}", hint="save every shard alike")
        heads.append(s)
    dtype = np.result_type(*[s.dtype for s in heads])
    known = all(s.n_rows is not None for s in heads)

    def blocks(rows: int) -> Iterator[np.ndarray]:
        for s in heads:
            for b in s.blocks(rows):
                yield b.astype(dtype, copy=False)

    notes = list(dict.fromkeys(n for s in heads for n in s.notes))
    src = Source(path, role, np.dtype(dtype), first.row_shape,
                 sum(s.n_rows for s in heads) if known else None,  # type: ignore[misc]
                 blocks, notes=notes)
    src.parts = [(s.path, s.n_rows) for s in heads]
    # string labels: named once for every shard; the logits' names when the shards agree
    labels = [s.labels for s in heads if s.labels is not None]
    src.labels = Labels(labels) if labels else None
    names = [s.column_names for s in heads]
    src.column_names = names[0] if all(n == names[0] for n in names) else None
    if all(s.stored_dtype == first.stored_dtype for s in heads):  # bfloat16 shards
        src.stored_dtype = first.stored_dtype
    return src


def check_pairs(xs: Source, ts: Source) -> None:
    """Sharded logits and targets must pair shard by shard, not only in total."""
    xp, tp = getattr(xs, "parts", None), getattr(ts, "parts", None)
    if not xp or not tp:
        return
    if len(xp) != len(tp):
        raise InputFileError(ts.path, f"{len(tp)} target shards for {len(xp)} logits shards",
                             hint="give one targets file per logits file")
    for (xf, xn), (tf, tn) in zip(xp, tp):
        if xn is not None and tn is not None and xn != tn:
            raise InputFileError(tf, f"{tn} targets for the {xn} rows of {xf}",
                                 hint="pair each logits shard with its own targets")
