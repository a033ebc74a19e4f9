"""Opening the inputs of a run, in one place for every engine: the logits and targets
sources (or both from one table), the weight against them, the checks made before any
work, and torch's errors told in terms of the files.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import readers
from ..audit.findings import Finding
from ..errors import CeLossError, InputFileError, TargetError, UsageError
from ..options import ReadOptions
from ..readers.classes import bind
from . import pipeline
from .pipeline import class_axis_of


def open_sources(read: ReadOptions, class_axis: int | None = None, tokens: bool = True
                 ) -> tuple[Any, Any]:
    """Open the logits and targets sources, or both from one table. The class names are
    decided here, once (``readers.classes.bind``), and kept as ``xs.class_names``; with
    ``read.shift`` the pair is read shifted (:func:`~ce_cli.run.shift.shift_pair`, which
    checks ``class_axis``); without it, long sequences with the classes last are read as
    runs of tokens (:func:`~ce_cli.run.shift.token_pair`; ``tokens=False``: as rows)."""
    xs, ts = _open_pair(read)
    if read.shift:
        from .shift import shift_pair

        xs, ts = shift_pair(xs, ts, class_axis)
    elif tokens:
        xs, ts = as_tokens(xs, ts, class_axis)
    return xs, ts


def as_tokens(xs: Any, ts: Any, class_axis: int | None) -> tuple[Any, Any]:
    """Unshifted sequences of more than a block's values, as runs of tokens."""
    from .shift import token_pair

    return token_pair(xs, ts, class_axis, pipeline.READ_ELEMENTS)


def _open_pair(read: ReadOptions) -> tuple[Any, Any]:
    logits, targets = read.logits, read.targets
    if readers.is_stdin(logits) and readers.is_stdin(targets):
        raise UsageError("only one of LOGITS and TARGETS can be - (stdin)", option="TARGETS")
    if targets is None:
        if read.target_column is None and not readers.pairs_by_name(logits,
                                                                     read.logits_format):
            raise UsageError("missing TARGETS: give a targets file, or --target-column NAME "
                             "when LOGITS is a table holding both")
        xs, ts = readers.open_table_pair(logits, target_column=read.target_column,
                                         logits_columns=read.logits_columns,
                                         fmt=read.logits_format, header=read.header)
        xs.class_names = bind(read.classes, xs, ts)
        return xs, ts
    opts: dict[str, Any] = {}
    if read.header is not None:
        opts["header"] = read.header
    x_opts = dict(opts, **({"logits_columns": read.logits_columns}
                           if read.logits_columns else {}))
    t_opts = dict(opts, **({"target_column": read.target_column}
                           if read.target_column else {}))
    xs = readers.open_source(logits, role="logits", fmt=read.logits_format, **x_opts)
    ts = readers.open_source(targets, role="targets", fmt=read.targets_format, **t_opts)
    readers.shards.check_pairs(xs, ts)
    xs.class_names = bind(read.classes, xs, ts)
    return xs, ts


def n_classes(xs: Any, class_axis: int | None) -> int:
    """How many classes the logits of source ``xs`` hold, on ``--class-axis``."""
    if not xs.row_shape:  # (C,): one sample
        return xs.n_rows or 0
    axis = class_axis_of(class_axis, 1 + len(xs.row_shape))
    return xs.row_shape[axis - 1]


def check_class_names(xs: Any, n: int) -> None:
    """One class name per class (``--classes`` may name too few or too many)."""
    names = xs.class_names
    if names is not None and len(names) != n:
        raise CeLossError(f"{len(names)} class names ({', '.join(names)}) but the logits "
                          f"have {n} classes; give one name per class, in your model's order")


def parse_weight(value: str | None, n_classes: int, dtype: np.dtype
                 ) -> tuple[np.ndarray | None, list[Finding]]:
    """``--weight`` (numbers or a file) cast to the logits' ``dtype``, and what to say
    about it (weights that overflow the dtype)."""
    if value is None:
        return None, []
    if Path(value).suffix and (_exists(value) or not _looks_numeric(value)):
        try:
            w = np.asarray(readers.read_array(value, role="weight"))
        except OSError as exc:  # a name too long for a file, say
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise UsageError(f"{shown!r} is neither a readable file ({exc.strerror or exc}) "
                             "nor a comma-separated list of numbers (e.g. 0.2,0.5,0.3)",
                             option="--weight") from None
        if w.dtype.kind not in "iuf":
            raise CeLossError(f"{value}: the weight file holds {w.dtype}, not numbers")
        w = w.reshape(-1) if w.ndim > 1 and max(w.shape) == w.size else w
    else:
        try:
            w = np.array([float(v) for v in value.split(",")])
        except ValueError:
            raise UsageError(
                f"{value!r} is neither a file nor a comma-separated list of numbers "
                "(e.g. 0.2,0.5,0.3)", option="--weight") from None
    if w.ndim != 1 or w.shape[0] != n_classes:
        raise CeLossError(
            f"--weight has {w.size} values but the logits have {n_classes} classes; "
            "give one weight per class"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # said below, not as a raw warning
        cast = w.astype(dtype)
        grown = np.isfinite(w) & ~np.isfinite(cast)
    said = []
    if grown.any():
        shown = ", ".join(f"{v:g}" for v in w[grown][:3])
        said.append(Finding("warning", (
            f"--weight {shown} does not fit {np.dtype(dtype).name}, the logits' dtype, and "
            "becomes inf, as in torch (weight.to(logits.dtype)); give weights that fit it"
            + (", or save the logits as float64" if np.dtype(dtype).itemsize < 8 else ""))))
    return cast, said


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError:  # a name too long for a file (a long list of weights)
        return False


def _looks_numeric(value: str) -> bool:
    try:
        [float(v) for v in value.split(",")]
        return True
    except ValueError:
        return False


def check_given(paths: dict[str, str | None]) -> None:
    """Refuse an empty path (an unset shell variable) before it is taken for the folder."""
    for name, path in paths.items():
        if path == "":
            raise CeLossError(f"{name} is an empty path; name a file (is a shell variable "
                              "unset?)")


def check_stdin(*paths: str | None) -> None:
    """Refuse ``-`` when the shell closed standard input (``<&-``)."""
    if any(readers.is_stdin(p) for p in paths) and sys.stdin is None:
        raise InputFileError("-", "standard input is closed",
                             hint="pipe the data in, or name a file instead of -")


def input_files(what: str, path: str | None) -> dict[str, list[str]]:
    """``{'the logits file': [path]}``: the existing files ``path`` reads (itself, the
    archive of ``a.npz:name``, or the shards of a folder or glob), for refusing an output
    that would replace one."""
    if not path:
        return {}
    if readers.is_stdin(path):  # a file redirected to stdin (< in.npy) is an input too
        try:
            stdin_file = os.path.realpath(f"/proc/self/fd/{sys.stdin.fileno()}")
        except (AttributeError, OSError, ValueError):  # closed, or not a real descriptor
            return {}
        return {f"{what} file (standard input)": [stdin_file]
                if os.path.isfile(stdin_file) else []}
    if readers.shards.is_sharded(path):
        try:
            return {f"one of {what} shards": readers.shards.expand(path, readers.SUFFIXES)}
        except CeLossError:  # said when the input is opened
            return {}
    file, _ = readers.split_member(path)
    return {f"{what} file": [file] if os.path.exists(file) else []}


def target_error(exc: TargetError, xs: Any, ts: Any, read: ReadOptions, ignore: int) -> str:
    """torch's out-of-bounds message, located, with the labels' range and the likely fix."""
    # the class count the kernel checked against (the class axis may not be axis 1)
    c = exc.n_classes if exc.n_classes is not None else n_classes(xs, None)
    single = ("; a single logit column is one class, and log-softmax of one value is 0: "
              "for a binary classifier's logit z with 0/1 labels, pass two columns [0, z] "
              "(softmax then equals sigmoid) or use a binary cross-entropy")
    base = str(exc).split(" Class indices")[0].rstrip(".")
    message = f"{ts.path}: {base}"
    if readers.is_stdin(read.logits) or readers.is_stdin(read.targets):
        if c == 1:
            return message + single
        return message + f"; class indices must lie in 0..{c - 1} or equal --ignore-index"
    try:
        _, ts2 = open_sources(replace(read, shift=False))  # located as in the file
        t = np.asarray(ts2.read())
    except CeLossError:
        return message
    flat = t.reshape(-1)
    counted = flat != ignore
    bad = np.flatnonzero(counted & ((flat < 0) | (flat >= c)))
    if bad.size:  # located in the file as read, ignored targets included
        i = int(bad[0])
        per_row = int(np.prod(t.shape[1:])) if t.ndim > 1 else 1
        where = f"#{i // per_row}" if per_row == 1 else \
            str(tuple(int(k) for k in np.unravel_index(i, t.shape)))
        line = ts2.line_of(i // per_row)
        message += f" (first at target {where}" + (f", line {line})" if line else ")")
    values = flat[counted]
    if not values.size:
        return message
    lo, hi = int(values.min()), int(values.max())
    offenders = np.unique(flat[bad]) if bad.size else np.array([], np.int64)
    negative = offenders[offenders < 0]
    if c == 0:
        return message + ("; the logits have no classes (an empty class axis), so no label "
                          "fits: check that the logits file holds the scores")
    classes = "class" if c == 1 else "classes"
    message += f"; the logits have {c} {classes} (0..{c - 1}) and the labels run {lo}..{hi}"
    if c == 1:
        return message + single
    # 1-based: no 0 among the labels, and the largest is C (whatever the smallest)
    one_based = offenders[offenders >= 0].tolist() == [c] and not (values == 0).any()
    if one_based and negative.size == 1:
        v = int(negative[0])
        message += (f"; apart from {v} they look 1-based (no 0, largest {c}): subtract 1 "
                    f"from the others so they run 0..{c - 1}, and pass --ignore-index {v} "
                    "if it marks padding")
    elif one_based:
        message += f"; they look 1-based (no 0, largest {c}): subtract 1 so they run 0..C-1"
    elif offenders.size == 1 and negative.size:
        v = int(offenders[0])
        message += f"; {v} is the only value out of range: if it marks padding, pass " \
                   f"--ignore-index {v}"
    elif offenders.size == 1:
        v = int(offenders[0])
        message += f"; {v} is the only value out of range: if it marks samples to skip, " \
                   f"pass --ignore-index {v}"
    else:
        message += "; pass the targets saved with these logits"
    return message


def _shape_text(src: Any) -> str:
    dims = ([] if src.n_rows is None else [src.n_rows]) + list(src.row_shape)
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def _swapped(xs: Any, ts: Any) -> str | None:
    """The message for LOGITS and TARGETS given the other way round: the targets' file has
    the shape of logits whose labels the logits' file would be (and the dtypes agree)."""
    if xs.n_rows is None or ts.n_rows is None or not ts.row_shape:
        return None
    x_shape = (xs.n_rows, *xs.row_shape)
    t_shape = (ts.n_rows, *ts.row_shape)
    fits = x_shape == t_shape[:1] + t_shape[2:] or x_shape == t_shape[:-1]
    if not fits or ts.dtype.kind != "f" or xs.dtype.kind not in "iub":
        return None
    last = x_shape != t_shape[:1] + t_shape[2:]  # they fit with the classes last only
    return (f"the files look swapped: {ts.path} {_shape_text(ts)} holds {ts.dtype} scores "
            f"and {xs.path} {_shape_text(xs)} {xs.dtype} labels; give the logits first: "
            f"ce-loss compute {ts.path} {xs.path}" + (" --class-axis -1" if last else ""))


def shape_error(exc: CeLossError, xs: Any, ts: Any, class_axis: int | None) -> str:
    """torch's shape message, naming the files and their shapes, with the likely fix."""
    message = str(exc).split("; the targets match the logits without")[0]
    x_row, t_row = tuple(xs.row_shape), tuple(ts.row_shape)
    swapped = _swapped(xs, ts)
    if swapped:
        return f"{swapped} (torch: {message})"
    batch = re.search(r"Expected input batch_size \((\d+)\) to match target batch_size "
                      r"\((\d+)\)", message)
    if batch:
        from .pipeline import row_count_mismatch

        return str(row_count_mismatch(int(batch[1]), int(batch[2]), xs.path, ts.path))
    if xs.path == "-" or xs.path not in message:
        def shape(src: Any) -> str:
            dims = ([] if src.n_rows is None else [src.n_rows]) + list(src.row_shape)
            return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"

        if "Expected 1 or more dimensions" in message:
            message = f"{xs.path}: {message}"
        else:
            message = f"{xs.path} {shape(xs)} and {ts.path} {shape(ts)}: {message}"
    if class_axis is None and len(x_row) >= 2 and t_row == x_row[:-1]:
        message += ("; the targets fit the logits with the classes on the last axis (B, L, V "
                    "sequence outputs, N, H, W, C images): pass --class-axis -1")
    return message
