"""Checks on arrays as read: what torch could take at all, the logits' dtype, and class
indices that int64 must hold exactly. Every refusal is an :class:`InputFileError` naming
the file, and the row (the line, for text) where one value is at fault.

torch's own checks on the values (a class index in ``[0, C)``, ``ignore_index``) are the
loss package's, not these.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputFileError
from ..names import INT64_MAX

#: what a dtype kind is, in words, for "holds X, not numbers" messages
KIND_NAMES = {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers",
              "V": "records", "M": "dates", "m": "time deltas"}

#: the hint of every "not a class index" error
INDEX_HINT = "class indices are whole numbers such as 2 (or 2.0)"


def _kind(dtype: np.dtype) -> str:
    return KIND_NAMES.get(dtype.kind, dtype.kind)


def check_numeric(path: str, role: str, dtype: np.dtype, what: str = "") -> None:
    """Refuse arrays torch could never take: objects, text, complex, records, dates."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biuf" and dtype.fields is None:
        return
    hint = "save int64 class indices" if role == "targets" else "save a float32 or float64 array"
    raise InputFileError(path, f"{what or 'the ' + role} hold {_kind(dtype)} ({dtype.str}), "
                         "not real numbers", hint=hint)


def logits_dtype(dtype: np.dtype, path: str, cast: str | None = None
                 ) -> tuple[np.dtype, str | None]:
    """The dtype the logits are computed in: ``cast`` when given (``--dtype``, as
    ``logits.to(dtype)``), else floats as they are, integers widened to float64 (with a
    note to say so); anything else is refused (naming ``path``)."""
    dtype = np.dtype(dtype)
    if cast is not None and dtype.kind in "iubf":
        return np.dtype(cast), None
    if dtype.kind == "f":
        return dtype, None
    if dtype.kind in "iub":  # (no file named: every shard of a run says it alike)
        return np.dtype(np.float64), (f"the logits are {dtype.name}; computing in float64 "
                                      "(torch refuses integer logits)")
    raise InputFileError(path, f"the logits have dtype {dtype} ({_kind(dtype)}), "
                         "not real numbers", hint="save float32 or float64 logits")


def index_problem(a: np.ndarray) -> tuple[int, str] | None:
    """The first value of ``a`` (its flat index) that cannot be an int64 class index, and
    why: floats that are not finite, not whole or beyond int64, uint64 beyond int64.
    Other integer arrays always fit (None, as for good values)."""
    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):  # 2**63 overflows float16
            finite = np.isfinite(flat)
            good = finite & (flat == np.floor(flat)) & \
                (np.abs(flat.astype(np.float64, copy=False)) < 2.0 ** 63)
        if good.all():
            return None
        i = int(np.flatnonzero(~good)[0])
        why = "is not a class index (not a finite number)" if not finite[i] \
            else "is not a whole number" if flat[i] != np.floor(flat[i]) \
            else "is too large for a class index"
        return i, why
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and flat.size and flat.max() > INT64_MAX:
        return int(np.argmax(flat > INT64_MAX)), "is too large for a class index"
    return None


def check_class_indices(t: np.ndarray, path: str, offset: int = 0,
                        line_of: Callable[[int], int | None] | None = None) -> None:
    """Refuse a block of class-index targets that int64 cannot hold exactly, naming the
    file and the row (the line, for text), before anything casts them: a cast would wrap
    ``2**63 + 5`` to a negative index and turn ``1e30`` into a NumPy warning.
    ``offset`` is the file row of ``t[0]``."""
    found = index_problem(t)
    if found is None:
        return
    i, why = found
    per_row = int(np.prod(t.shape[1:])) if t.ndim > 1 else 1
    row = offset + i // per_row
    value = t.reshape(-1)[i]
    shown = repr(float(value)) if t.dtype.kind == "f" else str(int(value))
    line = line_of(row) if line_of is not None else None
    if line is not None:
        raise InputFileError(path, f"target {shown} {why}", line=line, hint=INDEX_HINT)
    where = f"row index {row}"
    if t.ndim > 1:
        pos = (row, *(int(k) for k in np.unravel_index(i % per_row, t.shape[1:])))
        where += f", target at {pos}"
    raise InputFileError(path, f"{where} ({shown}) {why}", hint=INDEX_HINT)


def coerce_targets(t: np.ndarray, x_shape: tuple[int, ...], path: str, *, offset: int = 0,
                   line_of: Callable[[int], int | None] | None = None) -> np.ndarray:
    """Targets as torch takes them: int64 class indices, or float probabilities.

    Targets of the logits' shape are probabilities (as in torch); anything else is
    class indices, checked by :func:`check_class_indices` (float labels such as ``2.0``
    are accepted when whole). ``offset`` is the row of ``t[0]`` in the file and
    ``line_of`` maps rows to text lines, so errors point into the file.
    """
    kind = t.dtype.kind
    if kind not in "iubf":
        raise InputFileError(path, f"the targets have dtype {t.dtype} ({_kind(t.dtype)}), "
                             "not numbers", hint="save int64 class indices")
    if tuple(t.shape) == tuple(x_shape):
        return t if kind == "f" else t.astype(np.float64)
    check_class_indices(t, path, offset, line_of)
    return np.asarray(t).astype(np.int64)
