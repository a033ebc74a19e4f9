"""Relations cross_entropy must satisfy whatever the oracle says (no torch needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import (
    REDUCTIONS,
    ce_settings,
    class_axis,
    denominator,
    ignore_indices,
    index_targets,
    input_shapes,
    label_smoothings,
    logits,
    loss_shape,
    one_hot,
    prob_targets,
    weights,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ce_cli import cross_entropy

RTOL, ATOL = 1e-10, 1e-10


def finite_logits(shape: tuple[int, ...]) -> Any:
    return logits(shape, np.float64, specials=False, scaled=False, bound=20.0)


@st.composite
def problems(draw: Any, *, kinds: tuple[str, ...] = ("index", "index", "prob"),
             shapes: Any = None, negative: bool = False, ignored: bool = True) -> dict[str, Any]:
    """Finite float64 logits with an index or probability target, weight and smoothing."""
    shape = draw(shapes if shapes is not None else input_shapes())
    c = shape[class_axis(shape)]
    kind = draw(st.sampled_from(kinds))
    if kind == "index":
        ii = draw(ignore_indices(c)) if ignored else -100
        t = draw(index_targets(shape, np.int64, ii, ignored=ignored))
    else:
        ii = -100
        t = draw(prob_targets(shape, np.float64, signed=negative))
    return {"x": draw(finite_logits(shape)), "t": t, "kind": kind,
            "weight": draw(weights(c, np.float64, negative=negative)),
            "ignore_index": ii, "label_smoothing": draw(label_smoothings)}


def ce(p: dict[str, Any], reduction: str, **changes: Any) -> np.ndarray:
    args = {**p, **changes}
    return cross_entropy(args["x"], args["t"], weight=args["weight"],
                         ignore_index=args["ignore_index"], reduction=reduction,
                         label_smoothing=args["label_smoothing"])


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(), data=st.data())
def test_row_shift_invariance(p: dict[str, Any], data: Any) -> None:
    """Adding a constant to every logit of a position changes none of the losses."""
    x = p["x"]
    shift_shape = list(x.shape)
    shift_shape[class_axis(x.shape)] = 1
    shift = data.draw(arrays(np.float64, tuple(shift_shape),
                             elements=st.floats(-50, 50, allow_nan=False)))
    before = ce(p, "none")
    after = ce(p, "none", x=x + shift)
    # Each log-probability moves by ~eps * (|x| + |shift|) <= 1e-14; a loss sums them
    # with at most (sum |w|) * (max |t| + 1) in total.
    w = p["weight"]
    mass = (x.shape[class_axis(x.shape)] if w is None else float(np.abs(w).sum())) * (
        1 + (float(np.abs(p["t"]).max(initial=0.0)) if p["kind"] == "prob" else 1.0))
    np.testing.assert_allclose(after, before, rtol=RTOL, atol=1e-13 * (1 + mass))


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(kinds=("index",), ignored=False), data=st.data())
def test_index_target_equals_one_hot_target(p: dict[str, Any], data: Any) -> None:
    """Without weight: none, sum and mean agree. With weight: none and sum agree (mean
    differs by design: weight-sum vs count denominator)."""
    reduction = data.draw(st.sampled_from(REDUCTIONS if p["weight"] is None
                                          else ("none", "sum")))
    shape = p["x"].shape
    got = ce(p, reduction, t=one_hot(p["t"], shape, np.float64))
    want = ce(p, reduction)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert got.shape == want.shape == (loss_shape(shape) if reduction == "none" else ())


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(shapes=input_shapes(kinds=("kd",))), reduction=st.sampled_from(REDUCTIONS))
def test_kdim_equals_flattened(p: dict[str, Any], reduction: str) -> None:
    """(N, C, d1..dk) is the 2-D case at every position: move the class axis last and
    flatten to (N*d1*..*dk, C)."""
    x = p["x"]
    c = x.shape[1]
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, c)
    flat_t = np.moveaxis(p["t"], 1, -1).reshape(-1, c) if p["kind"] == "prob" else \
        p["t"].reshape(-1)
    got = ce(p, reduction)
    want = ce(p, reduction, x=flat_x, t=flat_t)
    if reduction == "none":
        want = want.reshape(loss_shape(x.shape))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
    assert got.shape == want.shape


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(kinds=("index",), shapes=input_shapes(kinds=("2d",))), data=st.data(),
       reduction=st.sampled_from(["mean", "sum"]))
def test_ignoring_rows_equals_dropping_them(p: dict[str, Any], data: Any,
                                            reduction: str) -> None:
    """Rows whose target is ignore_index count for nothing, whatever their logits hold."""
    x, t = p["x"].copy(), p["t"].copy()
    n = x.shape[0]
    drop = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    drop |= t == p["ignore_index"]
    t[drop] = p["ignore_index"]
    garbage = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    x[drop, 0] = garbage
    got = ce(p, reduction, x=x, t=t)
    want = ce(p, reduction, x=x[~drop], t=t[~drop])
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
    none = ce(p, "none", x=x, t=t)
    assert np.all(none[drop] == 0)
    np.testing.assert_allclose(none[~drop], ce(p, "none", x=x[~drop], t=t[~drop]),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(shapes=input_shapes(kinds=("2d", "kd"))), data=st.data())
def test_row_permutation(p: dict[str, Any], data: Any) -> None:
    """Permuting the samples permutes the none-losses and keeps mean and sum."""
    n = p["x"].shape[0]
    perm = np.array(data.draw(st.permutations(range(n))), dtype=np.int64)
    moved = {"x": p["x"][perm], "t": p["t"][perm]}
    np.testing.assert_allclose(ce(p, "none", **moved), ce(p, "none")[perm], rtol=1e-14,
                               atol=0)
    for reduction in ("mean", "sum"):
        np.testing.assert_allclose(ce(p, reduction, **moved), ce(p, reduction), rtol=RTOL,
                                   atol=ATOL, equal_nan=True)


@pytest.mark.slow
@ce_settings(100)
@given(p=problems(negative=True), reduction=st.sampled_from(REDUCTIONS),
       eps=st.sampled_from([0.0, -0.0, -0.5, -np.inf, np.nan]))
def test_no_smoothing_is_the_default(p: dict[str, Any], reduction: str, eps: float) -> None:
    """label_smoothing 0 - or any value torch does not take as > 0 (negative, NaN) - is
    the same call as leaving it out."""
    x, t, w, ii = p["x"], p["t"], p["weight"], p["ignore_index"]
    default = cross_entropy(x, t, weight=w, ignore_index=ii, reduction=reduction)
    got = cross_entropy(x, t, weight=w, ignore_index=ii, reduction=reduction,
                        label_smoothing=eps)
    assert np.array_equal(got, default, equal_nan=True)


@ce_settings(100)
@given(data=st.data(), kind=st.sampled_from(["index", "prob"]),
       reduction=st.sampled_from(REDUCTIONS), eps=label_smoothings)
def test_single_class_is_zero(data: Any, kind: str, reduction: str, eps: float) -> None:
    """C=1: log_softmax is 0, so every finite loss is 0 (mean of nothing is NaN)."""
    shape = data.draw(input_shapes(max_c=1))
    x = data.draw(finite_logits(shape))
    if kind == "index":
        t = np.zeros(loss_shape(shape), dtype=np.int64)
    else:
        t = data.draw(prob_targets(shape, np.float64))
    got = cross_entropy(x, t, reduction=reduction, label_smoothing=eps)
    if reduction == "mean" and t.size == 0:
        assert np.isnan(got)
    else:
        assert np.all(got == 0), got


@pytest.mark.slow
@ce_settings(200)
@given(p=problems())
def test_sum_and_mean_from_none(p: dict[str, Any]) -> None:
    """sum == none.sum() and mean == sum / den, den = sum of w[t] over the counted targets
    (count without weight) or the number of positions for probability targets."""
    none, total, mean = (ce(p, r) for r in ("none", "sum", "mean"))
    magnitude = float(np.abs(none).sum())
    np.testing.assert_allclose(total, none.sum(), rtol=RTOL, atol=ATOL + 1e-12 * magnitude)
    den, _ = denominator(p["t"], p["weight"], p["ignore_index"], p["kind"])
    if den == 0:
        assert np.isnan(mean)
    else:
        np.testing.assert_allclose(mean, total / den, rtol=RTOL,
                                   atol=ATOL + 1e-12 * magnitude / den)
    assert none.dtype == total.dtype == mean.dtype == np.float64
    assert total.shape == mean.shape == ()
