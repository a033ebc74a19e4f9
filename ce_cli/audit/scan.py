"""What the input looks like, gathered in the same pass as the loss: the input scan
(value range, row sums, log-sum-exp, non-finite rows, probability targets) and the
per-class label counts. Everything here merges across shards and partial results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..loss.half import half_range

#: How far a row's sum may stray from 1 and still count as a probability row: 1e-2 in
#: every dtype (no logits in [0, 1] sum that close to 1 by accident), widened for values
#: rounded to d decimals (CSV written with %.3f, ...), whose C roundings add up to at
#: most 0.5 * C * 10**-d, up to :data:`ROUNDED_SUM_CAP`.
SUM_TOLERANCE = 1e-2
ROUNDED_SUM_CAP = 0.25
#: the most decimals looked for; :data:`NOT_ROUNDED` when the values have more
MAX_DECIMALS = 6
NOT_ROUNDED = 99

def sum_tolerance(dtype: np.dtype, n_classes: int, decimals: int = NOT_ROUNDED) -> float:
    """How far from 1 the row sums of probabilities in ``dtype`` may be, when their
    values have ``decimals`` decimals (``NOT_ROUNDED``, or -1 when not known)."""
    tol = SUM_TOLERANCE
    if 1 <= decimals <= MAX_DECIMALS:
        tol = max(tol, min(0.5 * n_classes * 10.0 ** -decimals, ROUNDED_SUM_CAP))
    return tol


def decimals_of(values: np.ndarray, start: int = 0) -> int:
    """The fewest decimals (at least ``start``) that write every finite value exactly, as
    in a CSV written with ``%.3f``; :data:`NOT_ROUNDED` when more than
    :data:`MAX_DECIMALS` (or more than the dtype can tell apart) are needed."""
    v = np.asarray(values)
    eps = float(np.finfo(v.dtype).eps) if v.dtype.kind == "f" else 0.0
    v = v[np.isfinite(v)].astype(np.float64, copy=False) if v.dtype.kind == "f" else v
    for d in range(max(start, 0), MAX_DECIMALS + 1):
        scale = 10.0 ** d
        slack = 4 * eps * scale + 1e-9 * scale  # the value's own rounding, scaled
        if slack > 0.01:
            break  # too few digits in this dtype to tell d decimals from more
        with np.errstate(all="ignore"):
            scaled = v * scale
            if not v.size or float(np.max(np.abs(scaled - np.round(scaled)))) <= slack:
                return d
    return NOT_ROUNDED


#: values of a block :func:`decimals_of` looks at: values that are not rounded show it
#: in a few hundred already, and a whole block would cost a pass per decimal
DECIMALS_SAMPLE = 4096


def _sample(block: np.ndarray) -> np.ndarray:
    return block.reshape(-1)[:DECIMALS_SAMPLE]


@dataclass
class InputScan:
    """Streams over ``(m, C)`` blocks and keeps what the findings need, in O(1) memory.

    Cheap on purpose: a min and a max per block; row sums (and how many decimals the
    values have) only while every value seen is in [0, 1], and the log-sum-exp of rows
    only while every value seen is <= 0 (the only cases where they can tell
    probabilities or log-probabilities from logits). Rows holding NaN take no part in
    the sums: one NaN row does not hide softmax outputs.

    Every field merges across shards: counts add, ``low``/``decimals``/``target_sum_low``
    take the min or max as :meth:`merge` does; defaults are the "nothing seen" values
    that say nothing.
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
    #: decimals of the values while they are in [0, 1]: -1 before any (or unknown, as
    #: after a merge by an older ce-loss), NOT_ROUNDED when they have many
    decimals: int = -1
    target_zero_rows: int = 0  # probability-target rows that are all 0
    target_over_rows: int = 0  # ... summing to more than 1 (beyond rounding)
    target_under_rows: int = 0  # ... summing to less than 1 but more than 0
    target_nan_rows: int = 0  # ... holding NaN or inf
    target_negative_rows: int = 0  # ... holding a negative value
    target_sum_low: float = np.inf  # smallest sum of a row counted as under
    target_sum_high: float = -np.inf  # largest sum of a row counted as over

    def update(self, block: np.ndarray) -> None:
        if block.size == 0:
            return
        with np.errstate(all="ignore"):
            self.rows += block.shape[0]
            lo, hi = half_range(block) if block.dtype == np.float16 \
                else (float(np.min(block)), float(np.max(block)))
            if math.isnan(lo) or math.isnan(hi) or hi == np.inf or lo == -np.inf:
                bad = np.isnan(block) | (block == np.inf)
                self.nonfinite_rows += int(bad.any(axis=1).sum())
                self.neg_inf_rows += int((block == -np.inf).any(axis=1).sum())
                finite = block[np.isfinite(block)]
                lo = float(finite.min()) if finite.size else lo
                hi = float(finite.max()) if finite.size else hi
            self.low = min(self.low, lo) if not math.isnan(lo) else self.low
            self.high = max(self.high, hi) if not math.isnan(hi) else self.high
            if 0.0 <= self.low and self.high <= 1.0:
                # only while rows may be probabilities; rows holding NaN do not count,
                # rows holding +inf give an infinite error
                off = np.abs(block.sum(axis=1, dtype=np.float64) - 1.0)
                off = off[~np.isnan(off)]
                if off.size:
                    self.worst_sum_error = max(self.worst_sum_error, float(off.max()))
                if self.decimals != NOT_ROUNDED:  # a sample: rounding shows in any
                    self.decimals = decimals_of(_sample(block), self.decimals)
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
        """Probability targets: count rows that are exactly one-hot, and rows that are no
        distribution (all zero, summing above or below 1, NaN, negative)."""
        if block.size == 0:
            return
        self.target_rows += block.shape[0]
        ones = (block == 1).sum(axis=1) == 1
        zeros = (block == 0).sum(axis=1) == block.shape[1] - 1
        self.one_hot_rows += int((ones & zeros).sum())
        with np.errstate(all="ignore"):
            sums = block.sum(axis=1, dtype=np.float64)
            finite = np.isfinite(sums)
            self.target_nan_rows += int((~finite).sum())
            self.target_negative_rows += int((block < 0).any(axis=1).sum())
            zero = finite & ~(block != 0).any(axis=1)
            tol = sum_tolerance(block.dtype, block.shape[1])
            if (finite & ~zero & (np.abs(sums - 1) > tol)).any():  # rounded, as in CSV?
                tol = sum_tolerance(block.dtype, block.shape[1], decimals_of(_sample(block)))
            over = finite & (sums > 1 + tol)
            under = finite & ~zero & (sums < 1 - tol)
            self.target_zero_rows += int(zero.sum())
            self.target_over_rows += int(over.sum())
            self.target_under_rows += int(under.sum())
            if over.any():
                self.target_sum_high = max(self.target_sum_high, float(sums[over].max()))
            if under.any():
                self.target_sum_low = min(self.target_sum_low, float(sums[under].min()))

    def merge(self, other: InputScan) -> InputScan:
        """The scan of both parts' rows (for sharded runs and ``ce-loss merge``)."""
        out = InputScan(self.input_kind)
        for f in fields(InputScan):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "input_kind":
                continue
            if f.name in ("low", "target_sum_low"):
                setattr(out, f.name, min(a, b))
            elif f.name in ("high", "worst_sum_error", "worst_lse", "decimals",
                            "target_sum_high"):
                setattr(out, f.name, max(a, b))
            else:
                setattr(out, f.name, a + b)
        return out

    @property
    def finite_rows(self) -> int:
        return self.rows - self.nonfinite_rows

    def sum_tolerance(self, dtype: np.dtype, n_classes: int) -> float:
        return sum_tolerance(dtype, n_classes, self.decimals)

    def in_unit_interval(self) -> bool:
        """Every finite value lies in [0, 1], and no row holds -inf."""
        return (self.finite_rows > 0 and self.neg_inf_rows == 0
                and 0.0 <= self.low <= self.high <= 1.0)

    def looks_like_probabilities(self, dtype: np.dtype, n_classes: int) -> bool:
        """Every value in [0, 1] and every row summing to 1 within float error or the
        values' rounding; rows holding NaN are left out (judged on the others)."""
        return (n_classes >= 2 and self.in_unit_interval()
                and self.worst_sum_error <= self.sum_tolerance(dtype, n_classes))

    def looks_like_log_probabilities(self, n_classes: int) -> bool:
        return (self.rows > 0 and n_classes >= 2 and self.high <= 0.0
                and self.worst_lse <= 1e-3 and self.nonfinite_rows == 0)

    def evidence(self) -> str:
        n = self.finite_rows
        if self.nonfinite_rows:
            rows = f"the {n} rows without NaN" if n != 1 else "the row without NaN"
        else:
            rows = "the row" if n == 1 else f"all {n} rows"
        rounded = ""
        if 1 <= self.decimals <= MAX_DECIMALS and self.worst_sum_error > 1e-4:
            rounded = (f"within the rounding of values to {self.decimals} "
                       f"decimal{'s' if self.decimals > 1 else ''} ")
        verbs = ("lies", "sums") if rows.startswith("the row") else ("lie", "sum")
        return (f"{rows} {verbs[0]} in [{short(self.low)}, {short(self.high)}] and {verbs[1]} to 1 "
                f"{rounded}"
                f"(largest deviation {self.worst_sum_error:.1e})")


def short(v: float) -> str:
    return f"{v:.4g}"


def label_counts(counts: np.ndarray | None, t: np.ndarray, n_classes: int,
                 ignore_index: int) -> np.ndarray:
    """Add a block of class-index targets to per-class counts (ignored ones left out)."""
    if counts is None:
        counts = np.zeros(n_classes, np.int64)
    if n_classes:
        t = t[t != ignore_index]
        if t.size * 8 < n_classes:  # a few tokens of a large vocabulary: no (C,) pass
            np.add.at(counts, t, 1)
        else:
            counts += np.bincount(t, minlength=n_classes)[:n_classes]
    return counts


