"""Findings: input that is legal but looks wrong, or worth knowing about, each with what
to pass instead. A finding never changes the computation: ce-loss prints torch's number
for what it was given and says on stderr what looks wrong. (Checks that refuse read
arrays are in :mod:`ce_cli.readers.validate`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..names import torch_dtype_name
from .scan import InputScan, short

#: Class 0 missing from the labels says "1-based" only when it is this unlikely by chance.
ONE_BASED_CHANCE = 1e-3


@dataclass(frozen=True)
class Finding:
    """Something legal that looks wrong (``warning``) or worth knowing (``note``)."""

    kind: str
    message: str


def probabilities_as_logits_warning(scan: InputScan, loss: str, probs_loss: str | None
                                    ) -> str:
    """The warning for softmax outputs passed where torch expects logits (``probs_loss``:
    the loss of reading them as probabilities, when known)."""
    if probs_loss is None:
        return (f"the logits look like probabilities: {scan.evidence()}; torch applies "
                "log-softmax to them again; if they are softmax outputs, pass --input-kind "
                "probs")
    return (
        f"the logits look like probabilities: {scan.evidence()}. torch applies log-softmax "
        f"to them again, which gives {loss}; if they are softmax outputs, pass "
        f"--input-kind probs, which gives {probs_loss}"
    )


def findings(scan: InputScan, spec: Any, totals: Any, *, labels: np.ndarray | None,
             loss: np.ndarray, reduction: str, x_row: tuple[int, ...],
             t_row: tuple[int, ...], class_axis_given: bool,
             target_dtype: Any = None) -> list[Finding]:
    """What looks wrong about the input, each with what to pass instead.

    Never changes the computation; the probabilities-as-logits warning is made by
    the caller, which can offer the other loss. ``target_dtype`` is the dtype the
    targets were saved with (None when not known, as after a merge).
    """
    out: list[Finding] = []
    c = spec.n_classes
    out += _input_kind_findings(scan, spec, loss, reduction)
    out += _half_overflow_findings(spec, totals, loss, reduction)
    if scan.nonfinite_rows:
        out.append(Finding("warning", (
            f"{scan.nonfinite_rows} of {scan.rows} rows of logits hold NaN or +inf: torch's "
            "loss is NaN for such a row (unless its target is ignored), and so is the mean "
            "or sum over it")))
    w = getattr(spec, "weight", None)
    if scan.inf_losses > 0 and w is not None and np.isinf(w).any():
        out.append(Finding("warning", (
            f"{scan.inf_losses} counted losses are infinite, and the weight is infinite for "
            f"classes {', '.join(str(i) for i in np.flatnonzero(np.isinf(w))[:5])}: give "
            "finite weights")))
    elif scan.inf_losses > 0 and w is not None and np.dtype(spec.dtype) == np.float16:
        out.append(Finding("warning", (
            f"{scan.inf_losses} counted losses are infinite: torch multiplies each loss by "
            "its weight in float16, where a product past 65504 is inf (or the target has "
            "probability 0 under its logits); pass --dtype float32 to compute in float32")))
    elif scan.inf_losses > 0:
        where = "the target class" if not spec.smoothing else \
            "the target class, or at any class with label smoothing"
        out.append(Finding("warning", (
            f"{scan.inf_losses} counted targets have probability 0 under their logits (a -inf "
            f"or hugely negative logit at {where}), so their loss is inf")))
    if spec.target_kind == "index":
        out += _label_findings(spec, totals, labels)
    if spec.target_kind == "probs":
        out += _probability_target_findings(scan, spec, reduction, target_dtype)
    if c == 1 and totals.positions:
        out.append(Finding("warning", (
            "the logits have a single class: log-softmax of one value is 0, so every loss is "
            "0; for a binary classifier's single logit z, pass two columns [0, z] (softmax "
            "then equals sigmoid) or use a binary cross-entropy")))
    if not class_axis_given and len(x_row) >= 2 and tuple(t_row) == tuple(x_row[:-1]):
        out += _class_axis_findings(spec, totals)
    return out


def _input_kind_findings(scan: InputScan, spec: Any, loss: np.ndarray,
                         reduction: str) -> list[Finding]:
    """--input-kind that does not fit the values, naming the kind that does."""
    out: list[Finding] = []
    c = spec.n_classes
    kind = spec.input_kind
    log_probs = scan.looks_like_log_probabilities(c)
    lse = f"every row is <= 0 and its logsumexp is 0 within {max(scan.worst_lse, 0):.1e}"
    if kind == "logits" and log_probs:
        out.append(Finding("note", (
            f"the logits look like log-probabilities ({lse}): torch's log-softmax leaves "
            "them as they are, so this is the loss of those probabilities; --input-kind "
            "log-probs gives the same without the softmax")))
    # sigmoid outputs: in [0, 1], rows far from summing to 1 (a row off by 0.1 is more
    # likely a damaged softmax output than a sigmoid's)
    if kind == "logits" and c >= 2 and scan.finite_rows >= 2 and scan.in_unit_interval() \
            and scan.worst_sum_error >= 0.5:
        out.append(Finding("note", (
            f"the logits all lie in [{short(scan.low)}, {short(scan.high)}], as probabilities do, "
            f"but their rows do not sum to 1 (largest deviation {scan.worst_sum_error:.2g}): "
            "if they are sigmoid outputs (one probability per class), torch's softmax over "
            "them is not their loss; pass the raw logits, or use a binary cross-entropy for "
            "multi-label outputs")))
    if kind == "log-probs" and scan.high > 0:
        if scan.looks_like_probabilities(spec.input_dtype, c):
            out.append(Finding("warning", (
                f"--input-kind log-probs, but the input looks like probabilities: "
                f"{scan.evidence()}; taken as log-probabilities each loss is -p[target], "
                "so the loss comes out negative; pass --input-kind probs")))
        else:
            out.append(Finding("warning", (
                f"--input-kind log-probs, but some values are positive (largest "
                f"{short(scan.high)}); log-probabilities are <= 0, so the loss may come out "
                "negative; pass --input-kind logits if these are raw scores")))
    if kind == "probs":
        tol = scan.sum_tolerance(spec.input_dtype, c)
        outside = scan.low < 0 or scan.high > 1
        nan_because = ""
        if scan.low < 0 and scan.nan_losses:
            whole = np.asarray(loss)
            nan_because = (
                "which is why the loss is nan" if reduction != "none" and whole.ndim == 0
                and math.isnan(float(whole)) else
                f"so {scan.nan_losses} per-sample losses are nan")
        if outside and log_probs:
            text = (f"--input-kind probs, but the input looks like log-probabilities ({lse}); "
                    "their log is taken as given, and the log of a negative value is NaN")
            if nan_because:
                text += ", " + nan_because
            out.append(Finding("warning", text + "; pass --input-kind log-probs"))
        elif outside or scan.worst_sum_error > tol:
            what = (f"values outside [0, 1] (from {short(scan.low)} to {short(scan.high)})"
                    if outside else
                    f"rows that do not sum to 1 (largest deviation {scan.worst_sum_error:.2g})")
            text = (f"--input-kind probs, but the input has {what}; the loss takes their log "
                    "as given, with no softmax")
            if nan_because:
                text += "; the log of a negative value is NaN, " + nan_because
            finite = np.asarray(loss, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            f = float(finite.min()) if finite.size else math.nan
            if f <= 0 and reduction != "none":
                text += f", which is why it is {'zero' if f == 0 else 'negative'} ({short(f)})"
            text += "; pass --input-kind logits if these are raw scores"
            out.append(Finding("warning", text))
    return out


def _label_findings(spec: Any, totals: Any, labels: np.ndarray | None) -> list[Finding]:
    """Class-index targets: everything ignored, ignore_index a class, classes missing."""
    out: list[Finding] = []
    c = spec.n_classes
    ignore = spec.ignore_index
    if totals.positions and totals.counted == 0:
        out.append(Finding("warning", (
            f"all {totals.positions} targets equal ignore_index {ignore}: nothing "
            "is counted, so torch's mean is 0/0 = NaN (the sum is 0); check --ignore-index")))
    if 0 <= ignore < c:
        text = (f"ignore_index {ignore} is also a class id (classes are 0..{c - 1}): "
                f"targets of class {ignore} are skipped, yet that class still takes part in "
                "every row's softmax")
        if ignore == 0:  # the pad token id of many vocabularies: a usual, valid setup
            out.append(Finding("note", text + " (as for a vocabulary whose pad token is 0)"))
        else:
            out.append(Finding("warning", text + "; pad with -100 (the default) if it is "
                               "padding"))
    if labels is not None and labels.size and totals.counted >= c >= 2:
        seen = labels > 0
        if 0 <= ignore < c:
            seen[ignore] = True  # missing because it is ignored, not unseen
        unseen = np.flatnonzero(~seen)
        # (a batch of one class says nothing about where the classes start)
        one_based = (bool(unseen.size) and unseen[0] == 0 and labels[-1] > 0
                     and int(np.count_nonzero(labels[1:])) >= 2
                     and _class0_missing_by_chance(labels, seen, totals.counted)
                     < ONE_BASED_CHANCE)
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
    return out


def _class0_missing_by_chance(labels: np.ndarray, seen: np.ndarray, n: int) -> float:
    """About how likely class 0 is to be missing from ``n`` healthy labels by chance.

    The largest of three estimates, so a small batch or skewed classes never look
    1-based: classes equally likely, ``(1 - 1/C)^n``; class 0 as rare as the rarest
    class seen, ``(1 - m/n)^n``; and the share of the other classes that are missing too.
    """
    c = labels.size
    uniform = (1.0 - 1.0 / c) ** n
    others = labels[1:][labels[1:] > 0]
    rarest = (1.0 - float(others.min()) / n) ** n if others.size else 1.0
    missing = float((~seen[1:]).sum()) / (c - 1)
    return max(uniform, rarest, missing)


def _probability_target_findings(scan: InputScan, spec: Any, reduction: str,
                                 target_dtype: Any) -> list[Finding]:
    """Probability targets: integer or one-hot rows, and rows that are no distribution."""
    out: list[Finding] = []
    n = scan.target_rows
    if not n:
        return out
    dtype = None if target_dtype is None else np.dtype(target_dtype)
    integer = dtype is not None and dtype.kind in "iub"
    one_hot = scan.one_hot_rows == n
    if integer or one_hot:
        if integer:
            assert dtype is not None
            lead = (f"the targets are {dtype.name} of the logits' shape"
                    f"{', one-hot rows' if one_hot else ''}: torch refuses integer class "
                    "probabilities (\"Expected floating point type for target with class "
                    f"probabilities, got {torch_dtype_name(dtype.name)}\"); ce-loss "
                    "reads them as float probabilities, as torch would after t.float()")
        else:
            lead = ("the targets are one-hot rows; with the logits' shape they are read as "
                    "class probabilities, as torch does")
        if one_hot and spec.weight is not None:
            out.append(Finding("warning", lead + (
                ", and with --weight their mean divides by the number of rows, not by the "
                "summed weights of the target classes as for class indices; pass class "
                "indices (targets.argmax(axis=1)) for the index semantics")))
        elif one_hot:
            out.append(Finding("note", lead + (
                ": the loss equals that of class indices (targets.argmax(axis=1)), but "
                "--ignore-index does not apply to them")))
        else:
            out.append(Finding("note", lead))
    of = f"of {n} rows of the probability targets"
    if scan.target_nan_rows:
        out.append(Finding("warning", (
            f"{scan.target_nan_rows} {of} hold NaN or inf: torch's loss is NaN for such a "
            "row, and so is the mean or sum over it")))
    if scan.target_zero_rows:
        text = (f"{scan.target_zero_rows} {of} are all zero: their loss is 0, yet they count "
                "in the mean's denominator (torch divides by the number of rows), which "
                "lowers the mean; drop them, or use class indices with ignore_index for "
                "padding")
        out.append(Finding("warning" if reduction == "mean" else "note", text))
    if scan.target_over_rows:
        out.append(Finding("warning", (
            f"{scan.target_over_rows} {of} sum to more than 1 (up to "
            f"{short(scan.target_sum_high)}): multi-label targets? cross-entropy, a softmax over "
            "the classes, is not the loss for them; use a binary cross-entropy per class "
            "(BCEWithLogitsLoss)")))
    if scan.target_under_rows:
        out.append(Finding("warning", (
            f"{scan.target_under_rows} {of} sum to less than 1 (as low as "
            f"{short(scan.target_sum_low)}): torch does not normalise them, so their losses "
            "shrink with their sums; divide each row by its sum")))
    if scan.target_negative_rows:
        out.append(Finding("warning", (
            f"{scan.target_negative_rows} {of} hold negative values: class probabilities "
            "are >= 0")))
    return out


#: float16's largest finite value
HALF_MAX = 65504.0


def _half_overflow_findings(spec: Any, totals: Any, loss: np.ndarray, reduction: str
                            ) -> list[Finding]:
    """float16 mean and sum are accumulated in half by torch: past 65504 the sum (or the
    count a mean divides by) is inf, and the result inf, NaN or 0, which is torch's number
    but no measure of the loss."""
    if reduction == "none" or np.dtype(spec.dtype) != np.float16:
        return []
    den = totals.denominator if spec.weight is not None else totals.counted
    sums = [abs(totals.nll), abs(totals.smooth)] + ([abs(den)] if reduction == "mean" else [])
    if not any(math.isfinite(v) and v > HALF_MAX for v in sums):
        return []
    value = float(np.asarray(loss, dtype=np.float64).reshape(-1)[0]) if np.size(loss) else 0.0
    return [Finding("warning", (
        f"the {reduction} is computed in float16, as torch does, and its sums pass 65504 "
        f"(float16's largest value), so torch's {reduction} is {short(value)}; pass --dtype "
        "float32 (torch's F.cross_entropy(x.float(), ...)) for a usable number"))]


def _class_axis_findings(spec: Any, totals: Any) -> list[Finding]:
    """(N, C, L) logits with C == L fit (N, L) targets either way: say so only when the
    loss suggests the other reading.

    Read on the right axis a trained model's loss is below log C (a uniform guess)
    and an untrained one's near it; read on the wrong one, confident scores land on
    other classes and the loss is well above it. A low loss says nothing; one near log C
    is ambiguous (a note); only one far above it (1.5 log C, and 1 nat more) warns.
    """
    c = spec.n_classes
    per = totals.nll / totals.denominator if totals.denominator else math.nan
    guess = math.log(c) if c > 1 else 0.0
    both = ("the targets fit the logits with the classes on axis 1 (torch's reading, used "
            "here) and also on the last axis")
    fix = ("if the last axis holds the classes (B, L, V sequence outputs), pass "
           "--class-axis -1")
    if math.isfinite(per) and per > max(1.5 * guess, guess + 1.0):
        return [Finding("warning", (
            f"{both}, and read on axis 1 the loss per target ({short(per)}) is far above a "
            f"uniform guess's (log {c} = {short(guess)}), as when the classes are on the other "
            f"axis; {fix}"))]
    if not math.isfinite(per) or per > 0.5 * guess:
        return [Finding("note", f"{both}; {fix}")]
    return []
