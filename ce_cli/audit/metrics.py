"""Audit statistics gathered in the same pass as the loss: pure NumPy, no I/O.

Every statistic is a sum of per-block parts (counts, sums, histogram bins, a bounded
heap of the worst samples), so it streams in O(block) memory and two runs over parts
of the data merge into the run over all of it.

Positions whose target equals ``ignore_index`` take no part in any statistic. For
probability targets the "label" of a position is the argmax of its target row.

The per-row values behind them (top class, confidence, log-probability of the target,
entropy, rank of the target) come from the kernel's own pass where it can give them:
:class:`~ce_cli.audit.rows.KernelRows` reads its ``exp(x)`` chunk by chunk, in its
threads. Rows it cannot take, and inputs it does not serve (probability targets,
probabilities or log-probabilities as input), get them from a float64 log_softmax
(:func:`~ce_cli.audit.rows.reference_rows`).
Counts agree exactly, float sums to ~1e-7 (float32 and float16 logits) or ~1e-14 (float64).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..loss import LossSpec
from .rows import KernelRows, Values, reference_rows

#: Loss histogram edges: fixed, so histograms of different shards add up.
LOSS_EDGES = np.concatenate([np.arange(0.0, 10.0, 0.25), [10.0, 15.0, 20.0, 50.0, np.inf]])


@dataclass
class AuditStats:
    """Sums behind accuracy, top-k, perplexity, entropy, ECE, per-class and worst samples."""

    n_classes: int
    top_k: tuple[int, ...] = (1,)
    bins: int = 15
    worst_k: int = 10
    counted: int = 0
    correct: int = 0
    topk_hits: dict[int, int] = field(default_factory=dict)
    nll_sum: float = 0.0  # unweighted, unsmoothed -log p(target): perplexity
    entropy_sum: float = 0.0
    clipped_nll_sum: float = 0.0  # sklearn log_loss: -log(clip(p, eps, 1 - eps))
    #: with --weight: the same weighted by w[t] (sklearn's sample_weight), and sum w[t]
    clipped_nll_wsum: float = 0.0
    weight_sum: float = 0.0
    loss_sum: float = 0.0  # torch's per-sample losses (weighted, smoothed) over counted
    zero_weight: int = 0  # counted targets whose class weight is 0
    nonfinite_logits: int = 0  # counted rows with a NaN or +inf logit
    underflow: int = 0  # counted targets whose probability is 0 (infinite loss)
    bin_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bin_conf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bin_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_support: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_conf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loss_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    worst: list[tuple[float, int, int, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        c, b = self.n_classes, self.bins
        self.top_k = tuple(sorted({int(k) for k in self.top_k if k >= 1}))
        self.topk_hits = {k: self.topk_hits.get(k, 0) for k in self.top_k}
        if self.bin_count.size == 0:
            self.bin_count = np.zeros(b, np.int64)
            self.bin_conf = np.zeros(b)
            self.bin_correct = np.zeros(b, np.int64)
        if self.class_support.size == 0:
            self.class_support = np.zeros(c, np.int64)
            self.class_loss = np.zeros(c)
            self.class_correct = np.zeros(c, np.int64)
            self.class_conf = np.zeros(c)
        if self.loss_hist.size == 0:
            self.loss_hist = np.zeros(len(LOSS_EDGES) - 1, np.int64)
        # the kernel's hook (kernel_rows): not a field, so never merged or saved
        self._rows: KernelRows | None = None

    # -- one block --------------------------------------------------------------------------

    def kernel_rows(self, spec: LossSpec) -> KernelRows | None:
        """A hook for the kernel (:class:`~ce_cli.loss.LossAccumulator` ``hook``) that takes
        this audit's per-row values from the kernel's own pass, in its threads; then
        :meth:`update` of the same block only sums them. None where there is nothing to
        take (probability targets, probabilities or log-probabilities as input)."""
        if spec.target_kind != "index" or spec.input_kind != "logits" or not spec.n_classes:
            return None
        self._rows = KernelRows(self.top_k, self.bins)
        return self._rows

    def update(self, x: np.ndarray, target: np.ndarray, losses: np.ndarray, spec: LossSpec,
               offset: int = 0) -> None:
        """Add an ``(m, C)`` class-last block, its targets and torch's per-row losses.

        ``offset`` is the flat position of the block's first row (for the worst list).
        When the kernel has just read ``x`` with :meth:`kernel_rows`' hook, its values are
        used (rows it could not take are computed here); else they are computed here.
        """
        rows = self._rows
        if x.shape[0] == 0 or spec.n_classes == 0:
            return
        with np.errstate(all="ignore"):
            if rows is not None and rows.block is x and spec.target_kind == "index":
                self._update_from(rows, x, target, losses, spec, offset)
            else:
                self._update(x, target, losses, spec, offset)

    def _update(self, x: np.ndarray, target: np.ndarray, losses: np.ndarray, spec: LossSpec,
                offset: int) -> None:
        """The reference: every row's softmax again, in float64."""
        if spec.target_kind == "index":
            t = target.astype(np.int64, copy=False)
            keep = t != spec.ignore_index
        else:
            t = np.argmax(np.nan_to_num(target.astype(np.float64), nan=-np.inf), axis=1)
            keep = np.ones(x.shape[0], bool)
        if not keep.all():
            x, t, losses = x[keep], t[keep], losses[keep]
            rows = np.flatnonzero(keep) + offset
        else:
            rows = np.arange(x.shape[0]) + offset
        if t.shape[0] == 0:
            return
        self._add(reference_rows(x, t, spec, bool(self.top_k)), t, losses, rows, spec,
                  x.dtype)

    def _update_from(self, kr: KernelRows, x: np.ndarray, target: np.ndarray,
                     losses: np.ndarray, spec: LossSpec, offset: int) -> None:
        """The kernel's values of the block's counted rows; the rows it could not take
        (non-finite or out of its range) the reference way."""
        kr.block = None
        t = target.reshape(-1).astype(np.int64, copy=False)
        keep = t != spec.ignore_index
        sel = None if keep.all() else np.flatnonzero(keep)
        if sel is None:
            rows = np.arange(t.shape[0]) + offset
            v = kr.values(None)
        else:
            t, losses, rows = t[sel], losses[sel], sel + offset
            v = kr.values(sel)
        if t.shape[0] == 0:
            return
        redo = np.flatnonzero(v.redo)
        if redo.size:
            ref = reference_rows(x[redo if sel is None else sel[redo]], t[redo], spec,
                                  bool(self.top_k))
            for name in Values._fields:
                got = getattr(ref, name)
                if got is not None:
                    getattr(v, name)[redo] = got
        self._add(v, t, losses, rows, spec, x.dtype)

    def _add(self, v: Values, t: np.ndarray, losses: np.ndarray, rows: np.ndarray,
             spec: LossSpec, dtype: np.dtype[Any]) -> None:
        """Sum the per-row values of ``m`` counted rows (``rows``: their positions)."""
        c = spec.n_classes
        m = t.shape[0]
        pred, conf, lp_t = v.pred, v.conf, v.lp_t
        hit = pred == t
        self.counted += m
        self.correct += int(np.count_nonzero(hit))
        # rank = how many classes beat the target; ties count in the target's favour
        for k in self.top_k:
            self.topk_hits[k] += int(np.count_nonzero(v.rank < k))
        self.nll_sum -= float(lp_t.sum())
        self.entropy_sum += float(v.entropy.sum())
        # sklearn's -log(clip(p, eps, 1 - eps)), taken as -log p clipped
        eps = float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)
        nll = np.negative(lp_t)
        clipped = np.clip(nll, -np.log(1 - eps), -np.log(eps), out=nll)
        self.clipped_nll_sum += float(clipped.sum())
        if spec.weight is not None and spec.target_kind == "index":
            w_t = spec.weight.astype(np.float64)[t]
            self.clipped_nll_wsum += float((w_t * clipped).sum())
            self.weight_sum += float(w_t.sum())
        lf = losses.astype(np.float64)
        self.loss_sum += float(lf.sum())
        if spec.weight is not None and spec.target_kind == "index":
            self.zero_weight += int((spec.weight[t] == 0).sum())
        self.nonfinite_logits += int(np.count_nonzero(v.nonfinite))
        self.underflow += int(np.count_nonzero(np.exp(lp_t[lp_t < -700]) == 0))  # p_t is 0
        # calibration: bins of the top-class confidence
        finite = np.isfinite(conf)
        every = bool(finite.all())
        cf, hf = (conf, hit) if every else (conf[finite], hit[finite])
        b = np.clip((cf * self.bins).astype(np.int64), 0, self.bins - 1)
        self.bin_count += np.bincount(b, minlength=self.bins)
        self.bin_conf += np.bincount(b, weights=cf, minlength=self.bins)
        self.bin_correct += np.bincount(b, weights=hf, minlength=self.bins).astype(np.int64)
        # per class, by target
        fin = np.isfinite(lf)
        clean = bool(fin.all())
        self.class_support += np.bincount(t, minlength=c)
        self.class_loss += np.bincount(
            t, weights=lf if clean else np.nan_to_num(lf, nan=0.0, posinf=0.0), minlength=c)
        self.class_correct += np.bincount(t, weights=hit, minlength=c).astype(np.int64)
        self.class_conf += np.bincount(t, weights=conf if every else np.nan_to_num(conf),
                                       minlength=c)
        # histogram of the finite losses
        self.loss_hist += np.histogram(lf if clean else lf[fin], bins=LOSS_EDGES)[0]
        # the worst k (NaN sorts as worst: it is what an auditor wants to see first)
        if self.worst_k:
            key = lf if clean else np.where(np.isnan(lf), np.inf, lf)
            if len(self.worst) == self.worst_k:  # only what can beat the heap's least
                cand = np.flatnonzero(key >= self.worst[0][0])
            else:
                cand = np.arange(m)
            if cand.size > self.worst_k:  # the k largest, earlier rows first among ties
                kth = np.partition(key[cand], cand.size - self.worst_k)[-self.worst_k]
                cand = cand[key[cand] >= kth]
            top = cand[np.lexsort((cand, -key[cand]))][:self.worst_k]
            for i in top:
                item = (float(key[i]), int(rows[i]), int(t[i]), int(pred[i]),
                        float(np.exp(lp_t[i])))
                if len(self.worst) < self.worst_k:
                    heapq.heappush(self.worst, _heap_item(item, float(lf[i])))
                else:
                    heapq.heappushpop(self.worst, _heap_item(item, float(lf[i])))

    # -- merging and reading ----------------------------------------------------------------

    def merge(self, other: AuditStats) -> AuditStats:
        out = AuditStats(self.n_classes, self.top_k, self.bins, self.worst_k)
        for name in ("counted", "correct", "nll_sum", "entropy_sum", "clipped_nll_sum",
                     "clipped_nll_wsum", "weight_sum",
                     "loss_sum", "zero_weight", "nonfinite_logits", "underflow",
                     "bin_count", "bin_conf", "bin_correct", "class_support", "class_loss",
                     "class_correct", "class_conf", "loss_hist"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.topk_hits = {k: self.topk_hits[k] + other.topk_hits[k] for k in self.top_k}
        out.worst = heapq.nlargest(self.worst_k, self.worst + other.worst)
        heapq.heapify(out.worst)
        return out

    def summary(self) -> dict[str, Any]:
        """Finished statistics as plain Python values (JSON-ready; NaN as None)."""
        n = self.counted
        with np.errstate(all="ignore"):
            acc = self.correct / n if n else math.nan
            mean_nll = self.nll_sum / n if n else math.nan
            bins = []
            ece = 0.0
            for i in range(self.bins):
                cnt = int(self.bin_count[i])
                conf = float(self.bin_conf[i] / cnt) if cnt else None
                bacc = float(self.bin_correct[i] / cnt) if cnt else None
                if cnt and n:
                    ece += cnt / n * abs(bacc - conf)  # type: ignore[operator]
                bins.append({"low": i / self.bins, "high": (i + 1) / self.bins, "count": cnt,
                             "confidence": conf, "accuracy": bacc})
            per_class = []
            for c in range(self.n_classes):
                s = int(self.class_support[c])
                per_class.append({
                    "class": c, "support": s,
                    "mean_loss": _num(self.class_loss[c] / s) if s else None,
                    "accuracy": _num(self.class_correct[c] / s) if s else None,
                    "mean_confidence": _num(self.class_conf[c] / s) if s else None,
                })
        worst = sorted(self.worst, reverse=True)
        return {
            "counted": n,
            "accuracy": _num(acc),
            "top_k_accuracy": {str(k): _num(self.topk_hits[k] / n) if n else None
                               for k in self.top_k},
            "mean_nll": _num(mean_nll),
            "perplexity": _num(math.exp(mean_nll)) if math.isfinite(mean_nll)
            and mean_nll < 700 else None,
            "mean_entropy": _num(self.entropy_sum / n) if n else None,
            "ece": _num(ece) if n else None,
            "calibration_bins": bins,
            "per_class": per_class,
            "worst": [{"index": w[2], "loss": _num(w[6]), "target": w[3], "predicted": w[4],
                       "p_target": _num(w[5])} for w in worst],
            "loss_histogram": {"edges": [_num(e) for e in LOSS_EDGES],
                               "counts": [int(v) for v in self.loss_hist]},
            "unseen_classes": [int(c) for c in np.flatnonzero(self.class_support == 0)],
        }


def _heap_item(item: tuple[float, int, int, int, float], loss: float) -> Any:
    # (sort key, -index so earlier rows win ties, index, target, pred, p_t, loss)
    key, idx, t, pred, p_t = item
    return (key, -idx, idx, t, pred, p_t, loss)


def _num(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def explain(result: Any, stats: AuditStats | None, dtype: str | None = None
            ) -> dict[str, Any]:
    """Where torch's number comes from, and what other conventions give on the same data.

    ``result`` is a :class:`~ce_cli.loss.LossResult`. The numerator is the sum of the
    per-sample losses; the denominator is what torch's mean divides it by; their quotient
    is taken in float64, beside the headline, which is torch's result in ``dtype`` (the
    result's dtype name, default ``result.spec.dtype``'s).
    """
    dtype = dtype or result.spec.dtype.name
    spec, tot = result.spec, result.totals
    eps = spec.label_smoothing if spec.smoothing else 0.0
    c = spec.n_classes
    if spec.target_kind == "index":
        nll = tot.nll
        smooth = tot.smooth
        numerator = (1 - eps) * nll + (eps / c) * smooth if eps else nll
        denominator = tot.denominator
        weighted = spec.weight is not None
        term = "w[t]*(-log p[t])" if weighted else "-log p[t]"
        den_text = "sum of w[t]" if weighted else "number of counted targets"
        if eps:
            sterm = "sum_c w[c]*(-log p[c])" if weighted else "sum_c -log p[c]"
            formula = (f"{result.reduction}: (1-{eps:g}) * sum {term} + ({eps:g}/{c}) * sum "
                       f"{sterm}")
        else:
            formula = f"{result.reduction}: sum {term}"
        formula += " over counted targets"
    else:
        numerator = -tot.nll
        denominator = float(tot.positions)
        weighted = spec.weight is not None
        q = f"((1-{eps:g})*y + {eps:g}/{c})" if eps else "y"
        w = "w[c]*" if weighted else ""
        formula = f"{result.reduction}: sum_i sum_c -{w}{q}[i,c]*log p[i,c]"
        den_text = "number of positions (weights never divide)"
    quotient = None
    if result.reduction == "mean":
        formula += f" / {den_text}"
        with np.errstate(all="ignore"):
            quotient = float(np.float64(numerator) / np.float64(denominator))
        values = f"{_fmt(numerator)} / {_fmt(denominator)} = {_fmt(quotient)}"
    else:
        values = _fmt(numerator)
    half = dtype in ("float16", "bfloat16")
    rounding = (f"torch's {dtype} result: its losses are added in {dtype} as torch adds them, "
                "so it may differ from the float64 " + ("quotient" if quotient is not None
                                                        else "sum") + " above by more than "
                f"{dtype}'s rounding" + _rounded_to(quotient, dtype)
                + "; --dtype float32 gives the float32 result") if half else (
                f"torch's {dtype} result: the float64 "
                + ("quotient" if quotient is not None else "sum") + f" rounded to {dtype}, "
                "up to the order of torch's sums")
    doc: dict[str, Any] = {
        "formula": f"{formula} = {values}",
        "expression": formula,
        "values": values,
        "numerator": _num(numerator),
        "denominator": _num(denominator),
        "quotient": None if quotient is None else _num(quotient),
        "headline": rounding if result.reduction != "none" else None,
        "positions": tot.positions,
        "counted": tot.counted,
        "ignored": tot.ignored,
        "zero_weight": stats.zero_weight if stats is not None else None,
        "nonfinite": tot.nonfinite,
    }
    with np.errstate(all="ignore"):
        if spec.target_kind == "index" and eps:
            d = denominator if denominator else math.nan
            doc["nll_part"] = _num((1 - eps) * tot.nll / d)
            doc["smoothing_part"] = _num((eps / c) * tot.smooth / d)
        counted = tot.counted if tot.counted else math.nan
        positions = tot.positions if tot.positions else math.nan
        sklearn = None
        if stats is not None and stats.counted:
            sklearn = _num(stats.clipped_nll_wsum / stats.weight_sum) if weighted and \
                spec.target_kind == "index" else _num(stats.clipped_nll_sum / stats.counted)
        doc["conventions"] = {
            "torch": _num(result.loss) if np.ndim(result.loss) == 0 else None,
            # Keras SparseCategoricalCrossentropy(ignore_class=...): divides by the valid
            # entries (its sample weights, w[t] here, do not divide)
            "mean_of_per_sample_losses": _num(numerator / counted),
            # Keras with the padding given sample_weight 0: divides by every position
            "keras_sum_over_batch_size": _num(numerator / positions),
            # sklearn.metrics.log_loss(y, softmax, sample_weight=w[y]) on the counted
            # targets, probabilities clipped at the dtype's eps
            "sklearn_log_loss": sklearn,
        }
    return doc


def _rounded_to(value: float | None, dtype: str) -> str:
    """``": the quotient rounded to float16 is 14.8125"``, or nothing."""
    if value is None or not math.isfinite(value):
        return ""
    from ..loss import round_bfloat16

    with np.errstate(all="ignore"):
        half = float(round_bfloat16(np.float32(value)) if dtype == "bfloat16"
                     else np.float16(value))
    return f": the quotient rounded to {dtype} is {half!r}"


def _fmt(v: float) -> str:
    """float64 sums and quotients, to 10 significant digits."""
    return f"{float(v):.10g}"
