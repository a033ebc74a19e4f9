"""ce_cli.cross_entropy against real torch (the oracle), value for value.

Every expected number is computed by torch at test time, never copied from our output.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import (
    REDUCTIONS,
    TOLERANCES,
    assert_close,
    assert_unchanged,
    ce_settings,
    class_axis,
    denominator,
    frozen,
    ignore_indices,
    index_targets,
    input_shapes,
    label_smoothings,
    logits,
    loss_shape,
    prob_targets,
    weights,
)
from helpers import torch_ce
from hypothesis import given
from hypothesis import strategies as st

from ce_cli import cross_entropy
from ce_cli.errors import CeLossError

torch = pytest.importorskip("torch")

#: torch 2.13 refuses uint8 targets where its kernels want int64: every K-dim input
#: (nll_loss2d: "expected scalar type Long but found Byte") and weight + smoothing + mean
#: ("gather(): Expected dtype int32/int64 for index"). test_loss_refusals.py pins those;
#: here the values of uint8 targets are compared with torch's on the same int64 targets.
UINT8_TORCH_BUGS = ("expected scalar type Long but found Byte",
                    "gather(): Expected dtype int32/int64 for index")


def _strided(a: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of the last axis)."""
    if a.ndim == 0:
        return a.copy()
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    view = big[..., ::2]
    view[...] = a
    return view


def _layout(a: np.ndarray | None, layout: str, readonly: bool) -> np.ndarray | None:
    if a is None:
        return None
    if a.ndim == 0:  # np.asfortranarray would make it 1-d
        layout = "C"
    out = {"C": np.array(a, copy=True), "F": np.asfortranarray(a).copy(order="F"),
           "strided": _strided(a)}[layout]
    if readonly:
        out.flags.writeable = False
    return out


def check(x: np.ndarray, t: np.ndarray, w: np.ndarray | None = None, *,
          ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
          layout: str = "C", readonly: bool = False, pass_ignore_index: bool = True,
          tol: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Call torch and ours on the same arrays and compare; return (ours, torch's).

    Where torch 2.13 refuses uint8 targets (K-dim input; weight + smoothing + mean), ours
    must refuse too, and (None, None) is returned.
    """
    try:
        want = torch_ce(x, t, w, ignore_index=ignore_index, reduction=reduction,
                        label_smoothing=label_smoothing)
    except RuntimeError as exc:
        if t.dtype != np.uint8 or not str(exc).startswith(UINT8_TORCH_BUGS):
            raise
        with pytest.raises(CeLossError):
            cross_entropy(x, t, w, ignore_index=ignore_index, reduction=reduction,
                          label_smoothing=label_smoothing)
        return None, None  # type: ignore[return-value]
    # How large the summed terms are: the same loss with |weight| and |target|, where
    # nothing can cancel. Bounds the rounding error when negative weights or targets do.
    kind = "prob" if t.shape == x.shape else "index"
    w_abs = None if w is None else np.abs(w)
    t_abs = np.abs(t) if kind == "prob" else t
    with np.errstate(all="ignore"):
        magnitude = torch_ce(x, t_abs, w_abs, ignore_index=ignore_index,
                             reduction="none" if reduction == "none" else "sum",
                             label_smoothing=label_smoothing).astype(np.float64)
        if reduction == "mean":
            den, den_abs = denominator(t, w, ignore_index, kind)
            scale = (magnitude + np.abs(want.astype(np.float64)) * den_abs) / abs(den) \
                if den != 0 else 0.0
        else:
            scale = magnitude
    xa, ta, wa = (_layout(a, layout, readonly) for a in (x, t, w))
    before = frozen(xa, ta, wa)
    kwargs: dict[str, Any] = {"reduction": reduction, "label_smoothing": label_smoothing}
    if pass_ignore_index or ignore_index != -100:
        kwargs["ignore_index"] = ignore_index
    if w is not None or pass_ignore_index:
        kwargs["weight"] = wa
    got = cross_entropy(xa, ta, **kwargs)
    assert_unchanged(before, xa, ta, wa)
    rtol, atol = tol if tol is not None else TOLERANCES[x.dtype]
    assert_close(got, want, rtol=rtol, atol=atol, scale=scale,
                 what=f"{reduction}, eps={label_smoothing}, ignore_index={ignore_index}")
    return got, want


# -- property tests -----------------------------------------------------------------------------


@st.composite
def cases(draw: Any, dtype: Any, *, max_n: int = 6) -> dict[str, Any]:
    """One complete call: logits, an index or probability target, weight and options."""
    dtype = np.dtype(dtype)
    shape = draw(input_shapes(max_n=max_n))
    x = draw(logits(shape, dtype))
    c = shape[class_axis(shape)]
    if draw(st.sampled_from(["index", "index", "prob"])) == "index":
        ii = draw(ignore_indices(c))
        t = draw(index_targets(shape, draw(st.sampled_from([np.int64, np.int64, np.uint8])),
                               ii))
    else:
        ii = draw(st.sampled_from([-100, -100, -1, -7]))
        tdtype = draw(st.sampled_from([dtype, dtype, np.float16, np.float32, np.float64]))
        t = draw(prob_targets(shape, tdtype))
    return {
        "x": x,
        "t": t,
        "w": draw(weights(c, dtype)),
        "ignore_index": ii,
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "label_smoothing": draw(label_smoothings),
        "layout": draw(st.sampled_from(["C", "C", "F", "strided"])),
        "readonly": draw(st.booleans()),
        "pass_ignore_index": draw(st.booleans()),
    }


@pytest.mark.slow
@ce_settings(500)
@given(case=st.sampled_from([np.float32, np.float64]).flatmap(cases))
def test_matches_torch(case: dict[str, Any]) -> None:
    check(case.pop("x"), case.pop("t"), case.pop("w"), **case)


@pytest.mark.slow
@ce_settings(200)
@given(case=cases(np.float16, max_n=4))
def test_matches_torch_float16(case: dict[str, Any]) -> None:
    # torch rounds log_softmax to half and the result to half: compare loosely, but NaN
    # and infinities exactly.
    check(case.pop("x"), case.pop("t"), case.pop("w"), **case)


HALF_SMOOTHING_CASES = [
    # w = -2 times lp = -6e4 overflows half: torch's smooth term is -inf
    ([0, 0, 6e4], 0, [1, -2, 0]),
    ([[0, 0, 0, 0], [0, 0, 0, 0], [0, 6e4, 0, 0]], [0, 0, 1], [2, -1, -1, -1]),
    # +inf and -inf products in one row: NaN
    ([[6e4, 0, 0], [0, 0, 0]], [0, 1], [-2, 2, 2]),
    # unweighted: lp rounded to half before the sum; the sum overflows half
    ([[6e4, 0, 0, 0, 0], [1, 2, 3, 4, 5]], [0, 4], None),
]


@pytest.mark.parametrize("x, t, w", HALF_SMOOTHING_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_label_smoothing_rounds_like_torch(x, t, w, reduction):
    """torch builds the smoothing term from half log-probabilities times half weights,
    each product rounded to half, so products past 65504 are infinite."""
    x16 = np.array(x, dtype=np.float16)
    w16 = None if w is None else np.array(w, dtype=np.float16)
    check(x16, np.array(t), w16, reduction=reduction, label_smoothing=0.1)


@pytest.mark.slow
@ce_settings(150)
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS), eps=label_smoothings)
def test_promoted_probability_target(data: Any, reduction: str, eps: float) -> None:
    """A float64 probability target with float32 logits gives torch's float64 result."""
    shape = data.draw(input_shapes(kinds=("2d", "kd")))
    x = data.draw(logits(shape, np.float32, specials=False, scaled=False))
    t = data.draw(prob_targets(shape, np.float64))
    w = data.draw(weights(shape[1], np.float32, negative=False))
    got, want = check(x, t, w, reduction=reduction, label_smoothing=eps,
                      tol=TOLERANCES[np.dtype(np.float32)])
    assert got.dtype == want.dtype == np.float64


@pytest.mark.parametrize("xdtype, tdtype", [("float32", "float16"), ("float64", "float32"),
                                            ("float64", "float16"), ("float16", "float32"),
                                            ("float32", "float64")])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_probability_target_of_another_dtype(xdtype: str, tdtype: str, reduction: str,
                                             eps: float, weighted: bool) -> None:
    """torch smooths the target in the target's own dtype, then promotes: with a float16
    target eps/C is rounded to half (x=[1e4, 0], p=[0, 0], eps=0.1: 499.878, not 500)."""
    x = np.array([[1e4, 0.0], [1.0, 2.0], [0.3, -1.0]], dtype=xdtype)
    p = np.array([[0.0, 0.0], [0.7, 0.3], [1 / 3, 2 / 3]], dtype=tdtype)
    w = np.array([0.3, 1.7], dtype=xdtype) if weighted else None
    got, want = check(x, p, w, reduction=reduction, label_smoothing=eps,
                      tol=TOLERANCES[np.dtype(xdtype)])
    assert got.dtype == np.result_type(xdtype, tdtype)


# -- the running example of TORCH-SEMANTICS.md, every option combination -------------------------

X = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0], [1.5, 1.5, -2.0]])
T = np.array([0, 2, -100, 1])
T2 = np.array([0, 2, 1, 1])
W = np.array([0.25, 2.0, 0.5])
P = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])

TARGETS = {
    "T": (X, T, (-100,)),
    "T2": (X, T2, (-100, 1)),
    "T2-uint8": (X, T2.astype(np.uint8), (-100, 1, 2)),
    "P": (X, P, (-100, -1)),
    "unbatched": (X[0], np.array(0), (-100, 0, 1)),
    "unbatched-ignored": (X[0], np.array(-100), (-100,)),
    "unbatched-prob": (X[0], P[0], (-100,)),
    "kdim": (X.T.reshape(1, 3, 4), T2.reshape(1, 4), (-100, 1)),
    "kdim-prob": (X.T.reshape(1, 3, 2, 2), P.T.reshape(1, 3, 2, 2), (-100,)),
}
RUNNING = [
    pytest.param(name, ii, weighted, reduction, eps, dtype,
                 id=f"{name}-ii{ii}-{'W' if weighted else 'noW'}-{reduction}-eps{eps}-{dtype}")
    for name, weighted, reduction, eps, dtype in itertools.product(
        TARGETS, (False, True), REDUCTIONS, (0.0, 0.1, 1.0), ("float32", "float64"))
    for ii in TARGETS[name][2]
]


@pytest.mark.parametrize("name, ignore_index, weighted, reduction, eps, dtype", RUNNING)
def test_running_example(name: str, ignore_index: int, weighted: bool, reduction: str,
                         eps: float, dtype: str) -> None:
    x, t, _ = TARGETS[name]
    x = x.astype(dtype)
    if t.dtype.kind == "f":
        t = t.astype(dtype)
    check(x, t, W.astype(dtype) if weighted else None, ignore_index=ignore_index,
          reduction=reduction, label_smoothing=eps)


# -- special cases, section by section -----------------------------------------------------------

OPTIONS = list(itertools.product(REDUCTIONS, (0.0, 0.1, 1.0), (None, W)))


@pytest.mark.parametrize("reduction, eps, w", OPTIONS)
@pytest.mark.parametrize("bad_row", [[np.nan, 0.0, 1.0], [np.inf, -np.inf, np.nan],
                                     [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 0.0]])
def test_ignored_rows_never_reach_the_result(bad_row: list[float], reduction: str,
                                             eps: float, w: np.ndarray | None) -> None:
    """Section 3: an ignored row full of NaN/inf poisons nothing, with smoothing too."""
    x = np.array([bad_row, [1.0, 2.0, 0.5]])
    got, want = check(x, np.array([-100, 0]), w, reduction=reduction, label_smoothing=eps)
    assert np.all(np.isfinite(want))
    if reduction == "none":
        assert got[0] == 0


@pytest.mark.parametrize("reduction, eps, w", OPTIONS)
def test_ignore_index_may_be_a_valid_class(reduction: str, eps: float,
                                           w: np.ndarray | None) -> None:
    check(X, T2, w, ignore_index=1, reduction=reduction, label_smoothing=eps)


@pytest.mark.parametrize("reduction, eps, w", OPTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_all_targets_ignored(reduction: str, eps: float, w: np.ndarray | None,
                             ignore_index: int) -> None:
    """Section 3: none all zeros, sum 0, mean NaN (0/0), also unbatched."""
    t = np.full(4, ignore_index)
    got, _ = check(X, t, w, ignore_index=ignore_index, reduction=reduction,
                   label_smoothing=eps)
    if reduction == "mean":
        assert np.isnan(got)
    else:
        assert np.all(got == 0)
    got, _ = check(X[0], np.array(ignore_index), w, ignore_index=ignore_index,
                   reduction=reduction, label_smoothing=eps)
    assert np.isnan(got) if reduction == "mean" else got == 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_zero_weight_denominator(reduction: str, eps: float) -> None:
    """Section 4: W=[0,1,1], every target 0 -> mean NaN (two divisions, 0/0), not inf."""
    got, _ = check(X, np.zeros(4, dtype=np.int64), np.array([0.0, 1.0, 1.0]),
                   reduction=reduction, label_smoothing=eps)
    if reduction == "mean":
        assert np.isnan(got)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("w", [None, W, np.array([-1.0, 2.0, 0.5])])
def test_full_smoothing_keeps_zero_times_nll(reduction: str, w: np.ndarray | None) -> None:
    """Section 4: eps=1 still adds 0*nll, so a -inf target logit gives NaN."""
    x = np.array([[-np.inf, 1.0, 2.0], [0.3, -1.0, 2.0]])
    got, _ = check(x, np.array([0, 2]), w, reduction=reduction, label_smoothing=1.0)
    assert np.isnan(got.reshape(-1)[0])


ROWS = [  # section 6: (logits row, target)
    ([1e30, 0.0, -1e30], 1),
    ([1e30, 0.0, -1e30], 0),
    ([1e4, -1e4, 0.0], 0),
    ([1e4, -1e4, 0.0], 1),
    ([1.0, -np.inf, 0.5], 0),
    ([1.0, -np.inf, 0.5], 1),
    ([np.inf, 0.0, 1.0], 1),
    ([np.inf, 0.0, 1.0], 0),
    ([-np.inf, -np.inf, -np.inf], 0),
    ([np.nan, 0.0, 1.0], 2),
    ([-1e30, -1e30, -1e30], 2),
    ([3e38, -3e38, 0.0], 1),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("row, target", ROWS)
def test_extreme_and_nonfinite_logits(row: list[float], target: int, eps: float,
                                      reduction: str, dtype: str) -> None:
    """Section 6, index targets, batched (with a normal row) and unbatched."""
    with np.errstate(over="ignore"):
        x = np.array([row, [0.3, -1.0, 2.0]], dtype=dtype)
    check(x, np.array([target, 2]), reduction=reduction, label_smoothing=eps)
    check(x[0], np.array(target), reduction=reduction, label_smoothing=eps)
    check(x, np.array([target, 2]), W.astype(dtype), reduction=reduction, label_smoothing=eps)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("row, target", ROWS)
def test_extreme_and_nonfinite_logits_prob_target(row: list[float], target: int, eps: float,
                                                  reduction: str, dtype: str) -> None:
    """Section 6 with one-hot and uniform probability targets (0 * -inf is NaN)."""
    with np.errstate(over="ignore"):
        x = np.array([row, [0.3, -1.0, 2.0]], dtype=dtype)
    onehot = np.eye(3, dtype=dtype)[[target, 2]]
    check(x, onehot, reduction=reduction, label_smoothing=eps)
    check(x, np.full((2, 3), 1 / 3, dtype=dtype), W.astype(dtype), reduction=reduction,
          label_smoothing=eps)


def test_section6_values() -> None:
    """The documented values, from torch at test time."""
    got, want = check(np.array([1e30, 0.0, -1e30]), np.array(1), reduction="none")
    assert want == 1e30 and got == want
    got, want = check(np.array([1e30, 0.0, -1e30], dtype=np.float32), np.array(1))
    assert got == want  # 1.0000000150474662e+30 in float32
    got, _ = check(np.array([1.0, -np.inf, 0.5]), np.array(0))
    assert np.isfinite(got)
    got, _ = check(np.array([1.0, -np.inf, 0.5]), np.array(1))
    assert got == np.inf
    got, _ = check(np.array([1.0, -np.inf, 0.5]), np.array(0), label_smoothing=0.1)
    assert got == np.inf
    got, _ = check(np.array([1.0, -np.inf, 0.5]), np.array([1.0, 0.0, 0.0]))
    assert np.isnan(got)


F16_X = np.array([[6e4, 0, -6e4], [1e4, -1e4, 0]], dtype=np.float16)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("target", [
    np.array([1, 1]), np.array([0, 0]), np.array([2, 1]), np.array([1, -100]),
    np.eye(3, dtype=np.float16)[[1, 1]], np.eye(3, dtype=np.float16)[[0, 0]],
    np.eye(3, dtype=np.float32)[[1, 1]], np.full((2, 3), 1 / 3, dtype=np.float16),
], ids=["t11", "t00", "t21", "t1ign", "p11", "p00", "p11-f32", "uniform"])
def test_float16_overflow(target: np.ndarray, eps: float, reduction: str) -> None:
    """Section 7: losses 60000 and 20000 fit in half, their sum (and so the mean) is inf;
    log_softmax rounds -120000 to -inf in half, so 0 * lp is NaN for prob targets."""
    check(F16_X, target, reduction=reduction, label_smoothing=eps)
    check(F16_X, target, np.array([1.0, 0.5, 2.0], dtype=np.float16), reduction=reduction,
          label_smoothing=eps)


def test_float16_mean_overflows_like_torch() -> None:
    got, want = check(F16_X, np.array([1, 1]), reduction="mean")
    assert np.isinf(want) and np.isinf(got)
    got, want = check(F16_X, np.array([1, 1]), reduction="none")
    assert np.all(np.isfinite(got))
    # Two rows whose probability-target losses are 40000 each: the sum overflows before
    # the division, as in torch's prob-target mean.
    x = np.array([[4e4, 0.0], [4e4, 0.0]], dtype=np.float16)
    check(x, np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float16), reduction="mean")


def _bits_equal(got: np.ndarray, want: np.ndarray) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and \
        np.array_equal(got, want, equal_nan=True)


def _half_case(rng: np.random.Generator, shape: tuple[int, ...], kind: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = (rng.standard_normal(shape) * rng.choice([0.1, 1.0, 3.0, 8.0])).astype(np.float16)
    c = shape[1] if len(shape) > 1 else shape[0]
    if kind == "index":
        t = rng.integers(0, c, (shape[0], *shape[2:]) if len(shape) > 1 else ())
        if t.ndim and rng.random() < 0.5:
            t[rng.random(t.shape) < 0.2] = -100
    else:
        t = rng.random(shape).astype(np.float16)
    w = (rng.random(c) * 2).astype(np.float16) if rng.random() < 0.4 else None
    return x, t, w


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("dims", ["1d", "2d", "kd"])
def test_float16_bit_exact(kind: str, dims: str) -> None:
    """float16 as torch computes it, to the bit: a half log_softmax whose row sum and its
    log are rounded to half when the classes are the last axis (class index targets:
    -lp[t] * w[t]), class-index sums accumulated in half through torch's 8-level
    cascade, probability sums taken in float and rounded once."""
    rng = np.random.default_rng(["1d", "2d", "kd"].index(dims) * 2 + (kind == "prob"))
    compared = differ = 0
    for _ in range(60):
        shape = {"1d": lambda: (int(rng.integers(1, 40)),),
                 "2d": lambda: (int(rng.integers(1, 400)), int(rng.integers(1, 40))),
                 "kd": lambda: (int(rng.integers(1, 5)), int(rng.integers(1, 12)),
                                int(rng.integers(1, 80)))}[dims]()
        x, t, w = _half_case(rng, shape, kind)
        for reduction in REDUCTIONS:
            for eps in (0.0, 0.1):
                want = torch_ce(x, t, w, reduction=reduction, label_smoothing=eps)
                got = cross_entropy(x, t, w, reduction=reduction, label_smoothing=eps)
                assert got.dtype == want.dtype and got.shape == want.shape
                # a float32 row sum within an ulp of a half rounding boundary may round
                # the other way than torch's (its exp and summation order differ)
                assert_close(got, want, rtol=2 ** -10, atol=0.0, what=f"{shape} {reduction}")
                compared += want.size
                differ += int(np.count_nonzero(~(np.equal(got, want) |
                                                 (np.isnan(got) & np.isnan(want)))))
    assert compared >= 300 and differ <= compared // 1000, (differ, compared)


def test_float16_sums_in_half_like_torch() -> None:
    """torch's nll_loss adds half losses in half (every partial sum rounded), through
    levels flushed at multiples of 16, 256, ...; an ignored position skips its flush.
    Ten equal rows already differ from a float sum rounded once."""
    x = np.zeros((10, 2), np.float16)
    got, want = check(x, np.zeros(10, np.int64), reduction="sum")
    assert _bits_equal(got, want)
    assert want != np.float16(10 * float(np.float16(np.log(2))))  # not the float sum
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 7)).astype(np.float16)
    t = rng.integers(0, 7, 5000)
    t[::16] = -100  # every first-level flush point ignored
    t[4096] = 3
    w = (rng.random(7) * 3).astype(np.float16)
    for reduction in ("sum", "mean"):
        for weight in (None, w):
            want = torch_ce(x, t, weight, reduction=reduction)
            assert _bits_equal(cross_entropy(x, t, weight, reduction=reduction), want)


def test_float16_blocks_match_one_call() -> None:
    """The half cascade carries its state from block to block (the command line's path)."""
    from ce_cli.loss import LossAccumulator, make_spec

    rng = np.random.default_rng(9)
    x = rng.standard_normal((3000, 5)).astype(np.float16)
    t = rng.integers(0, 5, 3000)
    t[rng.random(3000) < 0.1] = -100
    for reduction in ("sum", "mean"):
        acc = LossAccumulator(make_spec(x.shape, x.dtype, t.shape, t.dtype))
        for start in range(0, 3000, 777):
            acc.update(x[start:start + 777], t[start:start + 777])
        want = torch_ce(x, t, reduction=reduction)
        assert _bits_equal(np.asarray(acc.finalize(reduction).loss), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_targets_on_confident_rows(dtype: Any) -> None:
    """A confident row's top class has log-probability exactly -0 in torch (the shifted
    sum rounds to 1); summed over many rows, any rounding left in it would add up."""
    x = np.tile(np.array([[20.0, 0.0, -3.0]], dtype), (100_000, 1))
    p = np.zeros_like(x)
    p[:, 0] = 1
    for reduction in ("sum", "mean", "none"):
        got, want = check(x, p, reduction=reduction)
        assert _bits_equal(got, want)
    # an infinite target entry times that log-probability: NaN in float32 (0 * inf),
    # inf in float64 (which keeps the -2e-9)
    inf_target = np.array([[np.inf, 0, 0]], dtype)
    got, want = check(x[:1], inf_target, reduction="none")
    assert _bits_equal(got, want)


@pytest.mark.parametrize("kind", ["prob", "index-smoothed"])
def test_rows_of_many_classes_float32_accuracy(kind: str) -> None:
    """(N, C) float32 with C = 131072: row sums past a few thousand classes accumulate in
    float64, so the error stays at float32's (einsum's float32 lanes reached 1.3e-6)."""
    rng = np.random.default_rng(11)
    c = 131_072
    x = rng.standard_normal((6, c)).astype(np.float32)
    if kind == "prob":
        t = rng.random(x.shape).astype(np.float32)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.integers(0, c, 6)
    w = rng.random(c).astype(np.float32)
    for weight, eps in ((None, 1.0), (w, 0.3)):
        got = cross_entropy(x, t, weight, reduction="none", label_smoothing=eps)
        exact = torch_ce(x.astype(np.float64), t.astype(np.float64) if kind == "prob" else t,
                         None if weight is None else weight.astype(np.float64),
                         reduction="none", label_smoothing=eps)
        scale = np.maximum(np.abs(exact), 1)
        assert np.max(np.abs(got - exact) / scale) <= 5e-7


@pytest.mark.parametrize("c", [100, 300, 1000])
@pytest.mark.parametrize("kind", ["prob", "index-smoothed"])
def test_kdim_many_classes_float32_accuracy(c: int, kind: str) -> None:
    """K-dim float32 with many classes: class sums over planes in float64 past a few
    dozen classes, so the error stays at float32's, as torch's does."""
    rng = np.random.default_rng(c)
    x = (rng.normal(size=(2, c, 300)) * 4).astype(np.float32)
    w = rng.uniform(-0.5, 2, c).astype(np.float32)
    if kind == "prob":
        t = rng.random(x.shape).astype(np.float32)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.integers(0, c, (2, 300))
    for weight in (None, w):
        got = cross_entropy(x, t, weight, reduction="none", label_smoothing=0.15)
        want = torch_ce(x, t, weight, reduction="none", label_smoothing=0.15)
        exact = torch_ce(x.astype(np.float64), t.astype(np.float64) if kind == "prob" else t,
                         None if weight is None else weight.astype(np.float64),
                         reduction="none", label_smoothing=0.15)
        scale = np.maximum(np.abs(exact), 1)
        assert np.max(np.abs(got - exact) / scale) <= 1e-6
        # torch's own float32 class sums drift past 1e-6 here (2e-6 at C=1000): within
        # its error of the exact value, plus ours
        torch_error = np.max(np.abs(want - exact) / scale)
        assert np.max(np.abs(got - want) / scale) <= torch_error + 1e-6


EMPTY = [(0, 3), (0, 4), (2, 3, 0), (0, 1, 2, 3), (2, 3, 4, 0), (0, 2, 0, 1, 3), (0, 1)]


@pytest.mark.parametrize("reduction, eps, weighted", list(itertools.product(
    REDUCTIONS, (0.0, 0.1, 1.0), (False, True))))
@pytest.mark.parametrize("kind", ["index", "uint8", "prob"])
@pytest.mark.parametrize("shape", EMPTY)
def test_empty(shape: tuple[int, ...], kind: str, reduction: str, eps: float,
               weighted: bool) -> None:
    """Section 5: mean NaN, sum 0 (prob targets: -0.0, sign compared with torch)."""
    x = np.zeros(shape)
    if kind == "prob":
        t = np.zeros(shape)
    else:
        t = np.zeros(loss_shape(shape), dtype=np.uint8 if kind == "uint8" else np.int64)
    w = np.ones(shape[1]) if weighted else None
    got, want = check(x, t, w, reduction=reduction, label_smoothing=eps)
    if got is None:  # torch refuses these uint8 targets, and so did we
        return
    if reduction == "mean":
        assert np.isnan(got)
    elif reduction == "sum":
        assert got == 0 and np.signbit(got) == np.signbit(want)
    else:
        assert got.size == 0


@pytest.mark.parametrize("reduction, eps, weighted", list(itertools.product(
    REDUCTIONS, (0.0, 0.1, 1.0), (False, True))))
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_single_class(kind: str, reduction: str, eps: float, weighted: bool) -> None:
    """Section 5: C=1 gives 0 for every finite row."""
    x = np.array([[3.0], [-1e30], [0.0], [np.inf], [-np.inf]])
    t = np.array([0, 0, -100, 0, 0]) if kind == "index" else np.array(
        [[1.0], [0.5], [2.0], [1.0], [0.0]])
    w = np.array([2.0]) if weighted else None
    check(x, t, w, reduction=reduction, label_smoothing=eps)
    check(x[:3], t[:3], w, reduction=reduction, label_smoothing=eps)
    check(x[0], t[0], w, reduction=reduction, label_smoothing=eps)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_classes_probability_target(reduction: str) -> None:
    """C=0 with a probability target: torch returns (mean NaN, sum -0, none -0s)."""
    check(np.zeros((4, 0)), np.zeros((4, 0)), reduction=reduction)


def test_probabilities_passed_as_logits() -> None:
    """Section 9: softmax is applied again, so a one-hot 'probability' is not a 0 loss."""
    got, want = check(np.array([[0.0, 1.0, 0.0]]), np.array([1]))
    assert got > 0.5
    gen = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(4, 5, dtype=torch.float64, generator=gen)).numpy()
    t = np.array([0, 1, 2, 3])
    check(z, t)
    check(torch.softmax(torch.from_numpy(z), 1).numpy(), t)
    on_logp, _ = check(torch.log_softmax(torch.from_numpy(z), 1).numpy(), t)
    on_z, _ = check(z, t)
    np.testing.assert_allclose(on_logp, on_z, rtol=1e-12)


# -- many blocks -------------------------------------------------------------------------------


def _big(rng: np.random.Generator, n: int, c: int, dtype: Any, extremes: str
         ) -> tuple[np.ndarray, np.ndarray]:
    x = (3 * rng.standard_normal((n, c))).astype(dtype)
    t = rng.integers(0, c, n)
    t[rng.random(n) < 0.05] = -100
    if extremes != "none":
        rows = rng.choice(n, n // 100, replace=False)
        parts = np.array_split(rows, 4)
        x[parts[0]] *= dtype(1e30) if dtype != np.float16 else 1  # huge but finite
        x[parts[1], rng.integers(0, c, parts[1].size)] = -np.inf  # masked classes
        x[parts[2]] = dtype(1e4) * np.sign(x[parts[2]])
        if extremes == "nonfinite":  # NaN/+inf rows, half of them ignored
            x[parts[3], 0] = np.nan
            x[parts[3][::3], 1] = np.inf
            t[parts[3][::2]] = -100
    return x, t


@pytest.mark.slow
@pytest.mark.parametrize("extremes", ["none", "finite", "nonfinite"])
@pytest.mark.parametrize("reduction, eps, weighted", [
    ("mean", 0.0, False), ("sum", 0.0, False), ("none", 0.0, False),
    ("mean", 0.1, True), ("sum", 0.3, True), ("none", 1.0, True), ("mean", 1.0, False),
])
def test_many_blocks(rng: np.random.Generator, extremes: str, reduction: str, eps: float,
                     weighted: bool) -> None:
    """N=200_000 x C=7 float64, several internal blocks; ~1% extreme rows."""
    x, t = _big(rng, 200_000, 7, np.float64, extremes)
    w = rng.random(7) * 2 if weighted else None
    check(x, t, w, reduction=reduction, label_smoothing=eps)


@pytest.mark.slow
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_many_blocks_probability_target(rng: np.random.Generator, reduction: str) -> None:
    x, _ = _big(rng, 200_000, 7, np.float64, "finite")
    p = rng.random((200_000, 7))
    p /= p.sum(axis=1, keepdims=True)
    check(x, p, rng.random(7), reduction=reduction, label_smoothing=0.05,
          ignore_index=-100)


@pytest.mark.slow
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_many_blocks_float32(rng: np.random.Generator, reduction: str) -> None:
    x, t = _big(rng, 200_000, 7, np.float32, "finite")
    check(x, t, rng.random(7).astype(np.float32), reduction=reduction, label_smoothing=0.1,
          tol=(1e-4, 1e-5))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_many_blocks_kdim(rng: np.random.Generator, kind: str, reduction: str) -> None:
    """(N, C, H, W) with one sample larger than a block, and many small samples."""
    for shape in [(3, 5, 300, 301), (400, 5, 7, 11)]:
        x = rng.standard_normal(shape) * 4
        x[0, 1, 0, :] = -np.inf
        if kind == "index":
            t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
            t[:, ::7, ::3] = -100
        else:
            t = rng.random(shape)
        check(x, t, rng.random(shape[1]), reduction=reduction, label_smoothing=0.2)
