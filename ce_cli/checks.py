"""Validation of read arrays, and findings about input that is legal but looks wrong.

A *finding* never changes the computation: ce-loss prints torch's number for what it
was given and says on stderr what looks wrong and what to pass instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import InputFileError

#: How far a row's sum may stray from 1 and still count as a probability row.
#: Loose enough for probabilities rounded to a few decimals in CSV.
SUM_TOLERANCE = {"float16": 1e-2, "float32": 1e-3, "float64": 1e-3}


def logits_dtype(dtype: np.dtype, path: str) -> tuple[np.dtype, str | None]:
    """The dtype the logits are computed in: floats as they are, integers widened to
    float64 (with a note to say so); anything else is refused."""
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.dtype(dtype), None
    if kind in "iub":
        return np.dtype(np.float64), (f"{_name(path)}: the logits are {np.dtype(dtype).name}; "
                                      "computing in float64 (torch refuses integer logits)")
    raise InputFileError(path, f"the logits have dtype {dtype} ({_kind(np.dtype(dtype))}), "
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
class InputScan:
    """Streams over ``(m, C)`` blocks and keeps what the findings need, in O(1) memory.

    Cheap on purpose: a min and a max per block; row sums only while every value seen
    is in [0, 1], and the log-sum-exp of rows only while every value seen is <= 0 (the
    only cases where they can tell probabilities or log-probabilities from logits).
    """

    input_kind: str = "logits"
    rows: int = 0
    low: float = np.inf
    high: float = -np.inf
    worst_sum_error: float = 0.0
    worst_lse: float = 0.0  # largest |logsumexp(row)| while all values are <= 0
    nonfinite_rows: int = 0  # rows holding NaN or +inf
    neg_inf_rows: int = 0  # rows holding -inf (masked classes)
    target_rows: int = 0
    one_hot_rows: int = 0  # probability targets that are exactly one-hot
    inf_losses: int = 0  # per-position losses that are +inf
    nan_losses: int = 0

    def update(self, block: np.ndarray) -> None:
        if block.size == 0:
            return
        with np.errstate(all="ignore"):
            self.rows += block.shape[0]
            lo, hi = float(np.min(block)), float(np.max(block))
            if math.isnan(lo) or math.isnan(hi) or hi == np.inf or lo == -np.inf:
                bad = np.isnan(block) | (block == np.inf)
                self.nonfinite_rows += int(bad.any(axis=1).sum())
                self.neg_inf_rows += int((block == -np.inf).any(axis=1).sum())
                finite = block[np.isfinite(block)]
                lo = float(finite.min()) if finite.size else lo
                hi = float(finite.max()) if finite.size else hi
            self.low = min(self.low, lo) if not math.isnan(lo) else self.low
            self.high = max(self.high, hi) if not math.isnan(hi) else self.high
            if self.input_kind != "log-probs" and 0.0 <= self.low and self.high <= 1.0:
                # only while rows may be probabilities; rows holding NaN do not count
                off = np.abs(block.sum(axis=1, dtype=np.float64) - 1.0)
                off = off[~np.isnan(off)]
                if off.size:
                    self.worst_sum_error = max(self.worst_sum_error, float(off.max()))
            if self.high <= 0.0:
                b = block.astype(np.float64, copy=False)
                shift = b.max(axis=1, keepdims=True)
                lse = (shift[:, 0] + np.log(np.exp(b - shift).sum(axis=1)))
                lse = lse[np.isfinite(lse)]
                if lse.size:
                    self.worst_lse = max(self.worst_lse, float(np.abs(lse).max()))

    def update_losses(self, losses: np.ndarray) -> None:
        """Count infinite and NaN per-position losses (ignored positions are exactly 0)."""
        with np.errstate(all="ignore"):
            self.inf_losses += int(np.isposinf(losses).sum())
            self.nan_losses += int(np.isnan(losses).sum())

    def update_targets(self, block: np.ndarray) -> None:
        """Probability targets: count rows that are exactly one-hot."""
        if block.size == 0:
            return
        self.target_rows += block.shape[0]
        ones = (block == 1).sum(axis=1) == 1
        zeros = (block == 0).sum(axis=1) == block.shape[1] - 1
        self.one_hot_rows += int((ones & zeros).sum())

    def looks_like_probabilities(self, dtype: np.dtype, n_classes: int) -> bool:
        tol = SUM_TOLERANCE.get(np.dtype(dtype).name, 1e-3)
        return (
            self.rows > 0 and n_classes >= 2 and self.nonfinite_rows == 0
            and 0.0 <= self.low and self.high <= 1.0 and self.worst_sum_error <= tol
        )

    def looks_like_log_probabilities(self, n_classes: int) -> bool:
        return (self.rows > 0 and n_classes >= 2 and self.high <= 0.0
                and self.worst_lse <= 1e-3 and self.nonfinite_rows == 0)

    def evidence(self) -> str:
        rows = "the row" if self.rows == 1 else f"all {self.rows} rows"
        return (f"{rows} lie in [{_g(self.low)}, {_g(self.high)}] and sum to 1 "
                f"(largest deviation {self.worst_sum_error:.1e})")


def _g(v: float) -> str:
    return f"{v:.4g}"


def probabilities_as_logits_warning(scan: InputScan, loss: str, probs_loss: str) -> str:
    """The warning for softmax outputs passed where torch expects logits."""
    return (
        f"the logits look like probabilities: {scan.evidence()}. torch applies log-softmax "
        f"to them again, which gives {loss}; if they are softmax outputs, pass "
        f"--input-kind probs, which gives {probs_loss}"
    )


@dataclass
class Finding:
    """Something legal that looks wrong (``warning``) or worth knowing (``note``)."""

    kind: str
    message: str


def label_counts(counts: np.ndarray | None, t: np.ndarray, n_classes: int,
                 ignore_index: int) -> np.ndarray:
    """Add a block of class-index targets to per-class counts (ignored ones left out)."""
    if counts is None:
        counts = np.zeros(n_classes, np.int64)
    if n_classes:
        t = t[t != ignore_index]
        counts += np.bincount(t, minlength=n_classes)[:n_classes]
    return counts


def findings(scan: InputScan, spec: Any, totals: Any, *, labels: np.ndarray | None,
             loss: np.ndarray, reduction: str, x_row: tuple[int, ...],
             t_row: tuple[int, ...], class_axis_given: bool) -> list[Finding]:
    """What looks wrong about the input, each with what to pass instead.

    Never changes the computation; the probabilities-as-logits warning is made by
    the caller, which can offer the other loss.
    """
    out: list[Finding] = []
    c = spec.n_classes
    kind = spec.input_kind
    if kind == "logits" and scan.looks_like_log_probabilities(c):
        out.append(Finding("note", (
            "the logits look like log-probabilities (every row is <= 0 and its logsumexp is "
            f"0 within {max(scan.worst_lse, 0):.1e}): torch's log-softmax leaves them as they "
            "are, so this is the loss of those probabilities; --input-kind log-probs gives "
            "the same without the softmax")))
    if kind == "log-probs" and scan.high > 0:
        out.append(Finding("warning", (
            f"--input-kind log-probs, but some values are positive (largest {_g(scan.high)}); "
            "log-probabilities are <= 0, so the loss may come out negative; pass "
            "--input-kind logits if these are raw scores")))
    if kind == "probs":
        tol = SUM_TOLERANCE.get(spec.input_dtype.name, 1e-3)
        outside = scan.low < 0 or scan.high > 1
        if outside or scan.worst_sum_error > tol:
            what = (f"values outside [0, 1] (from {_g(scan.low)} to {_g(scan.high)})"
                    if outside else
                    f"rows that do not sum to 1 (largest deviation {scan.worst_sum_error:.2g})")
            text = (f"--input-kind probs, but the input has {what}; the loss takes their log "
                    "as given, with no softmax")
            finite = np.asarray(loss, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            f = float(finite.min()) if finite.size else math.nan
            if f <= 0 and reduction != "none":
                text += f", which is why it is {'zero' if f == 0 else 'negative'} ({_g(f)})"
            text += "; pass --input-kind logits if these are raw scores"
            out.append(Finding("warning", text))
    if scan.nonfinite_rows:
        out.append(Finding("warning", (
            f"{scan.nonfinite_rows} of {scan.rows} rows of logits hold NaN or +inf: torch's "
            "loss is NaN for such a row (unless its target is ignored), and so is the mean "
            "or sum over it")))
    if scan.inf_losses > 0:
        where = "the target class" if not spec.smoothing else \
            "the target class, or at any class with label smoothing"
        out.append(Finding("warning", (
            f"{scan.inf_losses} counted targets have probability 0 under their logits (a -inf "
            f"or hugely negative logit at {where}), so their loss is inf")))
    if spec.target_kind == "index" and totals.positions and totals.counted == 0:
        out.append(Finding("warning", (
            f"all {totals.positions} targets equal ignore_index {spec.ignore_index}: nothing "
            "is counted, so torch's mean is 0/0 = NaN (the sum is 0); check --ignore-index")))
    if spec.target_kind == "index" and 0 <= spec.ignore_index < c:
        out.append(Finding("warning", (
            f"ignore_index {spec.ignore_index} is also a class id (classes are 0..{c - 1}): "
            f"targets of class {spec.ignore_index} are skipped, yet that class still takes "
            "part in every row's softmax; pad with -100 (the default) if it is padding")))
    if labels is not None and labels.size and totals.counted >= c >= 2:
        seen = labels > 0
        if 0 <= spec.ignore_index < c:
            seen[spec.ignore_index] = True  # missing because it is ignored, not unseen
        unseen = np.flatnonzero(~seen)
        one_based = bool(unseen.size) and unseen[0] == 0 and labels[-1] > 0
        # a missing class is only news when every class had many chances to appear
        if one_based or (unseen.size and totals.counted >= 10 * c):
            shown = ", ".join(str(int(v)) for v in unseen[:8]) + (", ..." if unseen.size > 8
                                                                  else "")
            text = (f"{unseen.size} of {c} classes never appear as a target ({shown}) among "
                    f"{totals.counted} counted targets")
            if one_based:
                text += ("; with class 0 missing, the labels may be 1-based: subtract 1 so "
                         "they run 0..C-1")
            out.append(Finding("warning" if one_based else "note", text))
    if spec.target_kind == "probs" and scan.target_rows and \
            scan.one_hot_rows == scan.target_rows:
        text = ("the targets are one-hot rows; with the logits' shape they are read as class "
                "probabilities, as torch does")
        if spec.weight is not None:
            out.append(Finding("warning", text + (
                ", and with --weight their mean divides by the number of rows, not by the "
                "summed weights of the target classes as for class indices; pass class "
                "indices (targets.argmax(axis=1)) for the index semantics")))
        else:
            out.append(Finding("note", text + ": the loss equals that of class indices "
                               "(argmax), but --ignore-index does not apply to them"))
    if c == 1 and totals.positions:
        out.append(Finding("warning", (
            "the logits have a single class: log-softmax of one value is 0, so every loss is "
            "0; for a binary classifier's single logit z, pass two columns [0, z] (softmax "
            "then equals sigmoid) or use a binary cross-entropy")))
    if not class_axis_given and len(x_row) >= 2 and tuple(t_row) == tuple(x_row[:-1]):
        # only possible when the axes have one size, e.g. (B, L, V) with L == V
        out.append(Finding("warning", (
            "the targets fit the logits with the classes on axis 1 (torch's reading, used "
            "here) and also on the last axis; if the last axis holds the classes (B, L, V "
            "sequence outputs), pass --class-axis -1")))
    return out
