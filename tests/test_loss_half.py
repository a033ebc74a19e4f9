"""torch's half-precision answers at float32 speed: the float16 kernel (half_lp_at), the
half cascade in batches, and the float16 range found on the bits.

The float16 kernel repeats the reference arithmetic (max shift, exp, sums, the roundings
torch makes) in float32 passes over reused buffers: its results are the reference's to the
bit, which is checked here on every layout, and torch's, checked against real torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import REDUCTIONS, ce_settings, ignore_indices, index_targets, input_shapes
from conftest import logits as logits_strategy
from conftest import weights as weights_strategy
from helpers import torch_ce
from hypothesis import given
from hypothesis import strategies as st
from test_loss_kernel import tiny_chunks

from ce_cli import loss
from ce_cli.loss import half
from ce_cli.loss.half import HalfCascade, _half_add, half_lp_at, half_range, round_bfloat16

pytest.importorskip("torch")

F16 = np.dtype(np.float16)


def _bits_equal(got: Any, want: Any) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    return got.dtype == want.dtype and got.shape == want.shape and \
        np.array_equal(got, want, equal_nan=True)


# -- the float16 kernel is the reference arithmetic, to the bit ---------------------------------


def _evaluate(x: np.ndarray, t: np.ndarray, w: Any, kw: dict[str, Any], *, blocks: bool,
              threads: int, fast: bool) -> np.ndarray:
    """torch's loss of ``x`` by the float16 kernel (``fast``) or by the reference path,
    fed as ``evaluate`` feeds it (planes) or as the command line does (blocks)."""
    reduction = kw["reduction"]
    spec = loss.make_spec(x.shape, x.dtype, t.shape, t.dtype, w, **kw)
    acc = loss.LossAccumulator(spec, keep_losses=True, threads=threads)
    acc._half = fast and acc._half
    if blocks:
        for xb, tb in loss.iter_blocks(x, t, spec.target_kind):
            acc.update(xb, tb)
    else:
        acc._feed(x, t)
    return acc.finalize(reduction).loss


@st.composite
def half_problems(draw: Any) -> dict[str, Any]:
    shape = draw(input_shapes(max_n=40, max_c=40))
    x = draw(logits_strategy(shape, F16))
    layout = draw(st.sampled_from(["c", "c", "fortran", "reversed"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "reversed" and x.ndim > 1:  # a view with negative strides
        x = x[::-1][::-1] if x.shape[0] < 2 else x[::-1]
    c = shape[0] if len(shape) == 1 else shape[1]
    ii = draw(ignore_indices(c))
    t = draw(index_targets(shape, np.int64, ii))
    if layout == "reversed" and x.ndim > 1 and t.ndim and t.shape[0] > 1:
        t = t[::-1]
    return {"x": x, "t": t, "w": draw(weights_strategy(c, F16)),
            "kw": {"ignore_index": ii, "reduction": draw(st.sampled_from(REDUCTIONS)),
                   "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))},
            "threads": draw(st.sampled_from([1, 2, 3])),
            "kernel": draw(st.sampled_from([1, 16, 64, 1 << 18]))}


@ce_settings(300)
@given(p=half_problems(), blocks=st.booleans())
def test_float16_kernel_is_the_reference_arithmetic(p: dict[str, Any], blocks: bool) -> None:
    """Every layout (rows, transposed views, class-first planes, one-position chunks),
    NaN/inf/6e4 logits, ignored targets, weights and label smoothing: the float16 kernel
    gives the reference path's bits."""
    x, t, w = p["x"], p["t"], p["w"]
    with tiny_chunks(max(p["kernel"], x.shape[1] if x.ndim > 1 else 1)):
        want = _evaluate(x, t, w, p["kw"], blocks=blocks, threads=p["threads"], fast=False)
        got = _evaluate(x, t, w, p["kw"], blocks=blocks, threads=p["threads"], fast=True)
    assert _bits_equal(got, want), (got, want)


def _sequential(a: np.ndarray) -> np.ndarray:
    """Column sums of ``(C, m)``, one addition at a time (torch's order off the last axis)."""
    s = np.zeros(a.shape[1], a.dtype)
    for row in a:
        s = s + row
    return s


@pytest.mark.parametrize("c", [1, 7, 100, 3000])
@pytest.mark.parametrize("m", [1, 2, 3, 8, 33])
def test_class_sums_off_the_last_axis_run_class_after_class(c: int, m: int) -> None:
    """torch sums a class axis that is not the last one class after class; NumPy's
    reductions sum one column pairwise, so the kernel must not use them there."""
    rng = np.random.default_rng(c * 100 + m)
    a = np.exp(rng.standard_normal((c, m)).astype(np.float32) * 3)
    out = np.empty(m, np.float32)
    half._sequential_sums(a, out)
    assert _bits_equal(out, _sequential(a))
    # the kernel's lse, class-first (planes) and class-contiguous rows alike
    x = (rng.standard_normal((m, c)) * 3).astype(np.float16)
    t = rng.integers(0, c, m)
    shifted = x.astype(np.float32) - x.astype(np.float32).max(axis=1, keepdims=True)
    want = np.log(_sequential(np.exp(shifted).T))
    for chunk in (x, np.ascontiguousarray(x.T).T, np.ascontiguousarray(x.T)[None]):
        _, _, lse = half_lp_at(chunk, t, class_last=False)
        assert _bits_equal(lse, want)


# -- against real torch -------------------------------------------------------------------------


def _half_case(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float16
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = (rng.standard_normal(shape) * rng.choice([0.5, 2.0, 6.0])).astype(dtype)
    c = shape[-1]
    t = rng.integers(0, c, shape[:-1])
    t[rng.random(t.shape) < rng.choice([0.0, 0.1, 0.9])] = -100
    w = (rng.random(c) * 2).astype(dtype) if rng.random() < 0.4 else None
    return x, t, w


@pytest.mark.parametrize("shape", [(3000, 10), (700, 300), (2, 64, 5000), (3, 40, 50)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_float16_matches_torch_classes_last_and_moved(shape: tuple[int, ...], eps: float
                                                      ) -> None:
    """(N, C) as it is, and (B, L, V) both read as ``--class-axis -1`` does (torch's
    ``x.movedim(-1, 1)``) and given class-first: torch's float16 result to the bit for
    mean and sum; per position, all but a float32 sum within an ulp of a half boundary."""
    rng = np.random.default_rng(sum(shape) + int(eps * 10))
    x, t, w = _half_case(rng, shape)
    inputs = [x] if x.ndim == 2 else [np.moveaxis(x, -1, 1),
                                      np.ascontiguousarray(np.moveaxis(x, -1, 1))]
    for xi in inputs:
        for reduction in REDUCTIONS:
            kw = {"reduction": reduction, "label_smoothing": eps}
            want = torch_ce(xi, t, w, **kw)
            for blocks in (False, True):
                got = _evaluate(xi, t, w, {"ignore_index": -100, **kw}, blocks=blocks,
                                threads=2, fast=True).reshape(want.shape)
                assert got.dtype == want.dtype and got.shape == want.shape
                if reduction != "none":
                    assert _bits_equal(got, want), (reduction, blocks, got, want)
                else:
                    differ = int(np.count_nonzero(~np.isclose(got, want, rtol=0, atol=0)))
                    assert differ <= max(1, want.size // 1000), differ


@pytest.mark.parametrize("ignored", [0.0, 0.3])
def test_float16_sums_of_many_positions_match_torch(ignored: float) -> None:
    """Enough positions for every level of the cascade to fill, in batches: torch's
    half mean and sum to the bit (the sum overflows half to inf; so can the mean)."""
    rng = np.random.default_rng(7)
    n = 300_000
    x = (rng.standard_normal((n, 3)) * 0.5).astype(np.float16)
    t = rng.integers(0, 3, n)
    t[rng.random(n) < ignored] = -100
    w = (rng.random(3) + 0.5).astype(np.float16)
    for weight in (None, w):
        for reduction in ("mean", "sum"):
            want = torch_ce(x, t, weight, reduction=reduction)
            got = _evaluate(x, t, weight, {"reduction": reduction}, blocks=True, threads=2,
                            fast=True)
            assert _bits_equal(got, want), (weight is None, reduction, got, want)


# -- the cascade --------------------------------------------------------------------------------


def _cascade(values: np.ndarray, weights: np.ndarray | None, counted: np.ndarray,
             bfloat16: bool) -> tuple[Any, Any]:
    """torch's nll_loss loop for half sums (LossNLL.cpp), one position at a time."""
    zero = (np.float32 if bfloat16 else np.float16)(0)
    loss, weight = [zero] * 8, [zero] * 8
    for b in range(values.shape[0]):
        if not counted[b]:
            continue
        loss[0] = _half_add(loss[0], values[b], bfloat16)
        if weights is not None:
            weight[0] = _half_add(weight[0], weights[b], bfloat16)
        for j in range(7):
            if b % 16 ** (j + 1):
                break
            loss[j + 1], loss[j] = _half_add(loss[j + 1], loss[j], bfloat16), zero
            weight[j + 1], weight[j] = _half_add(weight[j + 1], weight[j], bfloat16), zero
    total_loss = total_weight = zero
    for a, w in zip(loss, weight):
        total_loss = _half_add(total_loss, a, bfloat16)
        total_weight = _half_add(total_weight, w, bfloat16)
    return total_loss, total_weight


@ce_settings(60)
@given(seed=st.integers(0, 2**32 - 1), bfloat16=st.booleans(),
       batch=st.sampled_from([1, 100, 5000, 1 << 16]))
def test_cascade_in_batches_is_torchs_loop(seed: int, bfloat16: bool, batch: int) -> None:
    """Fed in blocks of any size, summed in batches of any size, with runs of equal
    length summed as one block: the bits of torch's position-by-position loop."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6000))
    values = (rng.standard_normal(n) * rng.choice([1.0, 100.0, 3000.0])).astype(np.float32)
    values[rng.random(n) < 0.01] = -0.0
    weights = (rng.random(n) * 3).astype(np.float32) if rng.random() < 0.5 else None
    cast = round_bfloat16 if bfloat16 else (lambda a: a.astype(np.float16))
    values = cast(values)
    weights = None if weights is None else cast(weights)
    counted = rng.random(n) >= rng.choice([0.0, 0.0, 0.1, 0.5, 0.95])
    if rng.random() < 0.2:
        counted[::16] = False  # every first-level flush skipped: runs past 16
    with np.errstate(all="ignore"):
        want = _cascade(values, weights, counted, bfloat16)
        cascade = HalfCascade(bfloat16)
        cascade.BATCH = batch
        at = 0
        while at < n:
            part = slice(at, at + int(rng.integers(1, 3000)))
            c = counted[part]
            cascade.feed(values[part].copy(), None if weights is None else weights[part].copy(),
                         None if c.all() else c.copy())
            at = part.stop
        got = cascade.totals()
    assert cascade.positions == n
    assert _bits_equal(got[0], want[0]) and np.signbit(got[0]) == np.signbit(want[0])
    if weights is not None:
        assert _bits_equal(got[1], want[1])


# -- the float16 range --------------------------------------------------------------------------


def test_half_range_is_numpys_min_and_max() -> None:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    ordered = every[~np.isnan(every)]
    rng = np.random.default_rng(0)
    for _ in range(500):
        x = rng.choice(ordered, size=int(rng.integers(1, 60)))
        if rng.random() < 0.2:  # any NaN, either sign
            x[rng.integers(0, x.size)] = every[rng.choice(np.flatnonzero(np.isnan(every)))]
        lo, hi = half_range(x.reshape(-1, 1)[::-1].T)  # any layout
        if np.isnan(x).any():
            assert np.isnan(lo) and np.isnan(hi)
        else:
            assert (lo, hi) == (float(x.min()), float(x.max()))
    assert [str(v) for v in half_range(np.array([-0.0, 0.0], np.float16))] == ["0.0", "0.0"]
    for values in ([-3.0, -0.5, -2.0], [0.5, 2.0], [-np.inf, 1.0, np.inf], [-0.0],
                   [-6e4, -0.0, 3.0], [6e4, 1e-7]):  # all negative, none, both, subnormal
        x = np.array(values, np.float16)
        assert half_range(x) == (float(x.min()), float(x.max()))


# -- bfloat16 logits, through the command line --------------------------------------------------


@pytest.mark.parametrize("shape, fmt", [((3000, 10), "npy"), ((2, 40, 300), "safetensors")])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bfloat16_file_gives_torchs_bfloat16_result(tmp_path: Any, monkeypatch: Any,
                                                    shape: tuple[int, ...], fmt: str,
                                                    reduction: str) -> None:
    """A bfloat16 file read in reused blocks, classes last (``--class-axis -1`` for
    (B, L, V)), some targets ignored: torch's bfloat16 mean, sum and per-position losses,
    bit for bit (its bfloat16 log_softmax, sums and divisions rounded as torch rounds)."""
    import ml_dtypes
    import torch
    from helpers import run

    from ce_cli.readers import base

    monkeypatch.setattr(base, "BUFFERED_BYTES", 256)  # many blocks, buffers reused
    rng = np.random.default_rng(len(shape))
    x, t, _ = _half_case(rng, shape, np.float32)
    xb = torch.from_numpy(x).bfloat16()
    if fmt == "npy":
        np.save(tmp_path / "x.npy", xb.float().numpy().astype(ml_dtypes.bfloat16))
        logits = tmp_path / "x.npy"
    else:
        from safetensors.torch import save_file

        save_file({"logits": xb}, str(tmp_path / "x.safetensors"))
        logits = tmp_path / "x.safetensors"
    np.save(tmp_path / "t.npy", t)
    moved = xb.movedim(-1, 1) if x.ndim == 3 else xb
    want = torch.nn.functional.cross_entropy(moved, torch.from_numpy(t),
                                             reduction=reduction).float().numpy()
    want = want.reshape(-1).astype(np.float64)
    args = ["--class-axis", "-1"] if x.ndim == 3 else []
    done = run("compute", logits, tmp_path / "t.npy", *args, "--reduction", reduction,
               "--format", "plain")
    got = np.array(done.stdout.split(), np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_bfloat16_blocks_reuse_buffers_nothing_holds() -> None:
    """Widened blocks go into two buffers taking turns while the consumer lets go of
    each block, and into new ones for a consumer that keeps them (or views of them)."""
    from ce_cli.readers import base

    rng = np.random.default_rng(1)
    raw = [rng.integers(0, 1 << 16, (3, 5)).astype(np.uint16) for _ in range(6)]
    want = [base.bfloat16_to_float32(r) for r in raw]
    assert len({b.ctypes.data for b in base.widened_blocks(iter(raw))}) == 2
    kept = list(base.widened_blocks(iter(raw)))
    views = [b[1:, ::2].T for b in base.widened_blocks(iter(raw))]
    for k, v, w in zip(kept, views, want):
        assert _bits_equal(k.view(np.uint32), w.view(np.uint32))
        assert _bits_equal(v.view(np.uint32), w[1:, ::2].T.view(np.uint32))


def test_round_bfloat16_is_ml_dtypes_rounding() -> None:
    """Ties to even, overflow to inf, subnormals, NaN kept: ml_dtypes' conversion, over a
    sample of every float32 bit pattern and the edges."""
    import ml_dtypes

    bits = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32)
    edges = [0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000,
             0x80000000, 0, 0x00008000, 0x00018000, 0x3F808000, 0x3F818000, 0x7FFFFFFF]
    x = np.concatenate([bits, np.array(edges, np.uint32)]).view(np.float32)
    got = round_bfloat16(x)
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on NaN
        want = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert _bits_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.isnan(got[nan]).all()
    assert round_bfloat16(np.float32(1.00390625)).shape == ()


def test_half_row_max_is_the_row_max() -> None:
    """Rows of every sign mix, infinities, subnormals and -0: the widened row max (a
    row with a NaN has a NaN loss whatever its max)."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    ordered = every[~np.isnan(every)]
    rng = np.random.default_rng(3)
    x = rng.choice(ordered, size=(4000, 7))
    x[:1000] = -np.abs(x[:1000])  # all negative (or -0)
    x[1000:1100] = np.float16(-0.0)
    out = np.empty(x.shape[0], np.float32)
    for rows in (x, np.asfortranarray(x)):
        half._half_row_max(rows, out)
        assert np.array_equal(out, rows.astype(np.float32).max(axis=1))
