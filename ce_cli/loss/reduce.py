"""torch's mean or sum of a pass's class-index totals (``LossNLL.cpp``'s reduction).

The totals are float64 sums; for float16 and bfloat16 results torch's own half sums
(:class:`~ce_cli.loss.half.HalfCascade`) stand in for them when every position went
through it, and each later step (the division by the total weight, the label-smoothing
combination) is rounded as torch rounds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .half import HalfCascade, _per_class, _scaled, round_bfloat16
from .spec import LossSpec


def index_reduce(spec: LossSpec, tot: Any, cascade: HalfCascade | None, reduction: str
                 ) -> Any:
    """The ``mean`` or ``sum`` of ``tot`` (:class:`~ce_cli.loss.kernel.LossTotals`)."""
    dt = spec.dtype
    nll = dt.type(tot.nll)
    smooth = dt.type(tot.smooth)
    den = den_smooth = dt.type(tot.denominator)
    if cascade is not None and cascade.positions == tot.positions:
        # half, every position seen here in order: torch's half sums (merged shards
        # fall back to the float sums rounded once, at most an ulp or so away)
        nll, w_sum = cascade.totals()
        if spec.weight is not None:
            den = w_sum
        if spec.weight is None:  # torch: smooth_loss.sum() / true_mask.sum(), in float
            den_smooth = tot.counted
            if spec.bfloat16:  # torch's total weight, the count, is a bfloat16 too
                den = round_bfloat16(np.float32(tot.denominator))[()]
    if spec.bfloat16:  # torch's sums are bfloat16 values; so is each step below
        smooth = round_bfloat16(np.float32(smooth))[()]
        if spec.weight is not None:  # the smoothing term's weight sum: a plain sum
            den_smooth = round_bfloat16(np.float32(tot.denominator))[()]
    if reduction == "mean":
        # torch: 0/0 is NaN on purpose when every target is ignored (LossNLL.cpp).
        nll = nll / den
        smooth = (np.float32(smooth) / np.float32(den_smooth)).astype(dt) \
            if dt == np.float16 else smooth / den_smooth
        if spec.bfloat16:
            nll, smooth = (round_bfloat16(np.float32(v))[()] for v in (nll, smooth))
    if not spec.smoothing:
        return nll
    # torch adds two separately reduced terms; (1-eps)*nll is kept even at eps=1.
    eps = spec.label_smoothing
    total = _scaled(nll, 1.0 - eps, spec.bfloat16) + \
        _scaled(smooth, _per_class(eps, spec.n_classes), spec.bfloat16)
    return round_bfloat16(np.float32(total))[()] if spec.bfloat16 else total
