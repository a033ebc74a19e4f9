"""Validation of read arrays, and findings about input that is legal but looks wrong.

A *finding* never changes the computation: ce-loss prints torch's number for what it
was given and says on stderr what looks wrong and what to pass instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import InputFileError

#: How far a row's sum may stray from 1 and still count as a probability row.
#: Loose enough for probabilities rounded to a few decimals in CSV.
SUM_TOLERANCE = {"float16": 1e-2, "float32": 1e-3, "float64": 1e-3}


def coerce_logits(x: np.ndarray, path: str) -> tuple[np.ndarray, str | None]:
    """Logits as a float array; integers are widened to float64 with a note."""
    kind = x.dtype.kind
    if kind == "f":
        return x, None
    if kind in "iub":
        note = (f"{_name(path)}: the logits are {x.dtype.name}; computing in float64 "
                "(torch refuses integer logits)")
        return x.astype(np.float64), note
    raise InputFileError(path, f"the logits have dtype {x.dtype} ({_kind(x.dtype)}), "
                         "not real numbers", hint="save float32 or float64 logits")


def coerce_targets(t: np.ndarray, x_shape: tuple[int, ...], path: str, *, offset: int = 0,
                   line_of: Callable[[int], int | None] | None = None) -> np.ndarray:
    """Targets as torch takes them: int64 class indices, or float probabilities.

    Targets of the logits' shape are probabilities (as in torch); anything else is
    class indices, and float labels such as ``2.0`` are accepted when integral.
    ``offset`` is the row of ``t[0]`` in the file and ``line_of`` maps rows to text
    lines, so errors point into the file.
    """
    kind = t.dtype.kind
    if kind not in "iubf":
        raise InputFileError(path, f"the targets have dtype {t.dtype} ({_kind(t.dtype)}), "
                             "not numbers", hint="save int64 class indices")
    if tuple(t.shape) == tuple(x_shape):
        return t if kind == "f" else t.astype(np.float64)
    if kind == "f":
        flat = np.asarray(t).reshape(-1)
        finite = np.isfinite(flat)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise _at(path, t.shape, i, offset, line_of,
                      f"{flat[i]!r} is not a class index", "labels must be whole numbers")
        whole = flat == np.round(flat)
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise _at(path, t.shape, i, offset, line_of,
                      f"{flat[i]!r} is not a whole number", "class indices must be integers")
    return np.asarray(t).astype(np.int64)


def _at(path: str, shape: tuple[int, ...], flat_index: int, offset: int,
        line_of: Callable[[int], int | None] | None, problem: str, hint: str) -> InputFileError:
    per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    row = offset + flat_index // per_row
    line = line_of(row) if line_of is not None else None
    if line is not None:
        return InputFileError(path, f"target {problem}", line=line, hint=hint)
    where = _pos(shape, flat_index) if offset == 0 else f"#{row}"
    return InputFileError(path, f"target {where}: {problem}", hint=hint)


def _pos(shape: tuple[int, ...], flat_index: int) -> str:
    if len(shape) <= 1:
        return f"#{flat_index}"
    return "at " + str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def _kind(dtype: np.dtype) -> str:
    return {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers",
            "V": "records", "M": "dates", "m": "time deltas"}.get(dtype.kind, dtype.kind)


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


@dataclass
class ProbabilityScan:
    """Streams over logit blocks and tells whether every row looks like a probability row.

    Keeps three numbers, so it costs O(1) memory and merges across blocks.
    """

    rows: int = 0
    low: float = np.inf
    high: float = -np.inf
    worst_sum_error: float = 0.0

    def update(self, block: np.ndarray) -> None:
        if block.size == 0:
            return
        with np.errstate(all="ignore"):
            b = block.astype(np.float64, copy=False)
            self.rows += b.shape[0]
            self.low = min(self.low, float(np.min(b)))
            self.high = max(self.high, float(np.max(b)))
            err = np.abs(b.sum(axis=1) - 1.0)
            self.worst_sum_error = max(self.worst_sum_error, float(np.max(err)))

    def looks_like_probabilities(self, dtype: np.dtype, n_classes: int) -> bool:
        tol = SUM_TOLERANCE.get(np.dtype(dtype).name, 1e-3)
        return (
            self.rows > 0
            and n_classes >= 2
            and 0.0 <= self.low
            and self.high <= 1.0
            and self.worst_sum_error <= tol
        )

    def evidence(self) -> str:
        rows = "the row" if self.rows == 1 else f"all {self.rows} rows"
        return (f"{rows} lie in [{_g(self.low)}, {_g(self.high)}] and sum to 1 "
                f"(largest deviation {self.worst_sum_error:.1e})")


def _g(v: float) -> str:
    return f"{v:.4g}"


def probabilities_as_logits_warning(scan: ProbabilityScan, loss: str, probs_loss: str) -> str:
    """The warning for softmax outputs passed where torch expects logits."""
    return (
        f"the logits look like probabilities: {scan.evidence()}. torch applies log-softmax "
        f"to them again, which gives {loss}; if they are softmax outputs, pass "
        f"--input-kind probs, which gives {probs_loss}"
    )
