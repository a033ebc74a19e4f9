"""The blocked kernel of ce_cli.loss against real torch: many chunks, several threads,
every layout it reads in place, and the rows its fast path hands to torch's arithmetic.

The fast path skips the max shift (``-lp[t] = log(sum_c exp(x_c) / exp(x_t))``) and
redoes the rows whose sums leave the safe range (huge/tiny logits, -inf, NaN, +inf) the
shifted way. Chunks are made tiny here so that small arrays span many of them.
Accuracy: ``|ours - torch| / max(|torch|, 1)`` <= 1e-6 (float32), 1e-12 (float64).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import REDUCTIONS, ce_settings, loss_shape
from helpers import torch_ce
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ce_cli import loss
from ce_cli.errors import CeLossError, OptionError
from ce_cli.loss import blocks

pytest.importorskip("torch")

#: the accuracy the kernel promises, relative to max(|torch|, 1)
ACCURACY = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


@contextlib.contextmanager
def tiny_chunks(kernel: int, block: int | None = None) -> Iterator[None]:
    """Make the kernel's chunks (and iter_blocks' blocks) ``kernel``/``block`` elements."""
    with pytest.MonkeyPatch.context() as mp:  # hypothesis tests cannot take monkeypatch
        mp.setattr(blocks, "KERNEL_ELEMENTS", kernel)
        mp.setattr(blocks, "BLOCK_ELEMENTS", block if block is not None else 4 * kernel)
        yield


def assert_accurate(got: np.ndarray, want: np.ndarray, dtype: Any, what: str = "") -> None:
    """Same dtype and shape; NaN and infinities exactly; finite values within
    ACCURACY * max(|torch|, 1)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, what)
    g = np.atleast_1d(got).astype(np.float64)
    w = np.atleast_1d(want).astype(np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(w)), (what, g[np.isnan(g) != np.isnan(w)][:5])
    inf = np.isinf(w)
    assert np.array_equal(g[inf], w[inf]), what
    fin = np.isfinite(w)
    assert np.all(np.isfinite(g[fin])), what
    err = np.abs(g[fin] - w[fin]) / np.maximum(np.abs(w[fin]), 1.0)
    tol = ACCURACY[np.dtype(dtype)]
    assert err.size == 0 or err.max() <= tol, (what, err.max(), tol)


# -- strategies ---------------------------------------------------------------------------------

SPECIAL = {"huge": 1e30, "big": 150.0, "overflow32": 100.0, "tiny": -1e30, "low": -120.0,
           "minus_inf": -np.inf, "plus_inf": np.inf, "nan": np.nan}


@st.composite
def special_logits(draw: Any, shape: tuple[int, ...], dtype: Any, axis: int) -> np.ndarray:
    """Standard-normal-ish logits, some rows shifted or scaled out of exp's range, and a
    few entries set to -inf, +inf, NaN or +-1e30 (rows that take the shifted path)."""
    dtype = np.dtype(dtype)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * draw(st.sampled_from([1.0, 3.0, 10.0]))).astype(dtype)
    if x.size == 0:
        return x
    xm = np.moveaxis(x, axis, -1).reshape(-1, shape[axis])  # a view: rows are positions
    n_rows = xm.shape[0]
    for _ in range(draw(st.integers(0, 6))):
        row = draw(st.integers(0, n_rows - 1))
        kind = draw(st.sampled_from(sorted(SPECIAL)))
        with np.errstate(over="ignore", invalid="ignore"):
            if kind in ("big", "overflow32", "low"):  # shift the whole row
                xm[row] += dtype.type(SPECIAL[kind])
            else:
                col = draw(st.integers(0, shape[axis] - 1))
                xm[row, col] = dtype.type(SPECIAL[kind])
    return x


@st.composite
def problems(draw: Any, *, kdim: bool) -> dict[str, Any]:
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    c = draw(st.integers(2, 7))
    if kdim:
        shape: tuple[int, ...] = (draw(st.integers(1, 4)), c, draw(st.integers(1, 12)),
                                  draw(st.integers(5, 40)))
    else:
        shape = (draw(st.integers(1, 400)), c)
    x = draw(special_logits(shape, dtype, 1))
    kind = draw(st.sampled_from(["index", "index", "prob"]))
    w = None
    if draw(st.booleans()):
        w = draw(arrays(dtype, (c,), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5])))
    if kind == "index":
        ii = draw(st.sampled_from([-100, -100, 0, c + 1]))
        tshape = loss_shape(shape)
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        t = rng.integers(0, c, tshape)
        t[rng.random(tshape) < draw(st.sampled_from([0.0, 0.1, 0.5]))] = ii
        t = t.astype(draw(st.sampled_from([np.int64, np.int64, np.uint8]))) if ii >= 0 \
            else t
    else:
        ii = -100
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        t = rng.random(shape).astype(dtype)
        t /= t.sum(axis=1, keepdims=True)
    return {"x": x, "t": t, "w": w, "ignore_index": ii,
            "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
            "reduction": draw(st.sampled_from(REDUCTIONS)),
            "threads": draw(st.sampled_from([1, 2, 3])),
            "kernel": draw(st.sampled_from([64, 256, 1024])) * (c if kdim else 1)}


def check(p: dict[str, Any], *, via_blocks: bool = False) -> None:
    x, t, w = p["x"], p["t"], p["w"]
    kw = {"ignore_index": p["ignore_index"], "label_smoothing": p["label_smoothing"]}
    if t.dtype == np.uint8:
        try:  # where torch 2.13 refuses uint8 targets, evaluate() must refuse too
            torch_ce(x, t, w, reduction=p["reduction"], **kw)
        except RuntimeError:
            if not via_blocks:
                with pytest.raises(CeLossError):
                    loss.evaluate(x, t, w, reduction=p["reduction"], **kw)
                return
            t = t.astype(np.int64)  # the CLI feeds int64 targets
    # torch's value on the same targets as int64 (uint8 ones where torch takes them)
    want = torch_ce(x, t.astype(np.int64) if t.dtype == np.uint8 else t, w,
                    reduction=p["reduction"], **kw)
    with tiny_chunks(p["kernel"]):
        if via_blocks:  # as the CLI feeds it: iter_blocks, update, finalize
            spec = loss.make_spec(x.shape, x.dtype, t.shape, t.dtype, w, reduction=p[
                "reduction"], **kw)
            acc = loss.LossAccumulator(spec, keep_losses=True, threads=p["threads"])
            for xb, tb in loss.iter_blocks(x, t, spec.target_kind):
                acc.update(xb, tb)
            res = acc.finalize(p["reduction"])
            got = res.loss if p["reduction"] != "none" else res.loss.reshape(want.shape)
        else:
            got = loss.evaluate(x, t, w, reduction=p["reduction"], threads=p["threads"],
                                **kw).loss
    assert_accurate(got, want, x.dtype, what=str({k: v for k, v in p.items() if k not in "xtw"}))


@pytest.mark.slow
@ce_settings(300)
@given(p=problems(kdim=False))
def test_many_chunks_match_torch(p: dict[str, Any]) -> None:
    check(p)


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(kdim=True))
def test_kdim_chunks_match_torch(p: dict[str, Any]) -> None:
    """Class-first planes read in place (and groups of small samples), many chunks."""
    check(p)


@pytest.mark.slow
@ce_settings(200)
@given(p=problems(kdim=False) | problems(kdim=True))
def test_update_blocks_match_torch(p: dict[str, Any]) -> None:
    """The CLI's way: iter_blocks (transposed views for K-dim) into update()."""
    check(p, via_blocks=True)


# -- the fast path's escape hatches, one by one ---------------------------------------------------

ROWS = {
    "target -inf": ([-np.inf, 1.0, 2.0], 0),
    "other -inf": ([1.0, -np.inf, 2.0], 0),
    "all -inf": ([-np.inf, -np.inf, -np.inf], 1),
    "plus inf": ([np.inf, 1.0, 2.0], 1),
    "nan": ([1.0, np.nan, 2.0], 0),
    "huge": ([1e30, 0.0, -1e30], 1),
    "all huge": ([1e30, 1e30, 1e30], 2),
    "beyond exp (float32)": ([100.0, 99.0, 98.0], 2),
    "beyond exp (float64)": ([800.0, 799.0, 700.0], 2),
    "below exp": ([-120.0, -121.0, -150.0], 0),
    "target far below": ([0.0, 1.0, -200.0], 2),
    "large and alike": ([30.0, 30.001, 29.999], 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(ROWS))
def test_escape_rows_in_a_big_block(name: str, weighted: bool, eps: float, dtype: Any,
                                    rng: np.random.Generator) -> None:
    """One special row among 3000 ordinary ones, at several places of several chunks."""
    row, target = ROWS[name]
    n = 3000
    x = rng.standard_normal((n, 3)).astype(dtype)
    t = rng.integers(0, 3, n)
    places = [0, 1, 777, 1500, n - 1]
    with np.errstate(over="ignore"):
        x[places] = np.array(row, dtype=dtype)
    t[places] = target
    w = np.array([0.0, 2.0, 0.5], dtype=dtype) if weighted else None
    for reduction in REDUCTIONS:
        want = torch_ce(x, t, w, reduction=reduction, label_smoothing=eps)
        with tiny_chunks(3 * 256):
            for threads in (1, 2):
                got = loss.evaluate(x, t, w, reduction=reduction, label_smoothing=eps,
                                    threads=threads).loss
                assert_accurate(got, want, dtype, f"{name} {reduction} threads={threads}")


def test_zero_weight_on_a_masked_class_is_nan_with_smoothing() -> None:
    """torch: w[c] * lp[c] = 0 * -inf = NaN in the smoothing term; no BLAS may skip it."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 4)).astype(np.float32)
    x[123, 2] = -np.inf
    t = rng.integers(0, 2, 5000)
    w = np.array([1.0, 1.0, 0.0, 1.0], dtype=np.float32)
    for reduction in REDUCTIONS:
        want = torch_ce(x, t, w, reduction=reduction, label_smoothing=0.2)
        got = loss.evaluate(x, t, w, reduction=reduction, label_smoothing=0.2, threads=2).loss
        assert_accurate(got, want, np.float32, reduction)
    assert np.isnan(loss.evaluate(x, t, w, reduction="none", label_smoothing=0.2).loss[123])


# -- real sizes --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(300_000, 10), (20_000, 100), (60, 7, 70, 80), (3, 50_000)])
def test_real_blocks_with_scattered_escapes(shape: tuple[int, ...], dtype: Any,
                                            rng: np.random.Generator) -> None:
    """Default chunk sizes, two threads, ~0.1% rows out of the fast path's range."""
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    c = shape[1]
    rows = np.moveaxis(x, 1, -1)  # a view: position index, then class
    tshape = loss_shape(shape)
    t = rng.integers(0, c, tshape)
    t[rng.random(tshape) < 0.05] = -100
    pos = rng.choice(t.size, max(3, t.size // 1000), replace=False)
    idx = np.unravel_index(pos, tshape)
    with np.errstate(over="ignore"):
        rows[idx] += dtype(95.0)  # beyond float32 exp; fine for float64's
        rows[tuple(i[::5] for i in idx)] = dtype(-np.inf)
        rows[tuple(i[1::7] for i in idx) + (0,)] = dtype(np.nan)
    w = rng.random(c).astype(dtype) + dtype(0.5)
    for kw in ({}, {"weight": w, "label_smoothing": 0.1}):
        for reduction in ("none", "mean"):
            want = torch_ce(x, t, kw.get("weight"), reduction=reduction,
                            label_smoothing=kw.get("label_smoothing", 0.0))
            got = loss.evaluate(x, t, reduction=reduction, threads=2, **kw).loss
            assert_accurate(got, want, dtype, f"{shape} {reduction} {sorted(kw)}")


def test_result_does_not_depend_on_threads(rng: np.random.Generator) -> None:
    """Chunks are merged in order: 1, 2 and 3 threads give the same bits."""
    x = rng.standard_normal((50_000, 30)).astype(np.float32)
    t = rng.integers(0, 30, 50_000)
    w = rng.random(30).astype(np.float32)
    with tiny_chunks(30 * 500):
        results = [loss.evaluate(x, t, w, label_smoothing=0.1, threads=n, keep_losses=True)
                   for n in (1, 2, 3)]
    for r in results[1:]:
        assert r.loss.tobytes() == results[0].loss.tobytes()
        assert r.losses is not None and results[0].losses is not None
        assert r.losses.tobytes() == results[0].losses.tobytes()
        assert r.totals == results[0].totals


@pytest.mark.parametrize("layout", ["F", "strided", "transposed-view"])
def test_layouts_read_in_place_or_copied(layout: str, rng: np.random.Generator) -> None:
    base = rng.standard_normal((5000, 9)).astype(np.float32)
    if layout == "F":
        x = np.asfortranarray(base)
    elif layout == "strided":
        x = np.repeat(base, 2, axis=1)[:, ::2]
    else:  # what iter_blocks yields for one large K-dim sample
        x = np.ascontiguousarray(base.T).T
    t = rng.integers(0, 9, 5000)
    want = torch_ce(base, t, reduction="none", label_smoothing=0.3)
    spec = loss.make_spec(x.shape, x.dtype, t.shape, t.dtype, label_smoothing=0.3)
    with tiny_chunks(9 * 300):
        got = loss.LossAccumulator(spec, threads=2).update(x, t)
    assert_accurate(got, want, np.float32, layout)


def test_iter_blocks_yields_views_of_large_samples(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 40, 50)).astype(np.float32)
    t = rng.integers(0, 3, (2, 40, 50))
    blocks = list(loss.iter_blocks(x, t, "index", block_elements=600))
    assert all(np.shares_memory(xb, x) for xb, _ in blocks)
    assert sum(xb.shape[0] for xb, _ in blocks) == 2 * 40 * 50
    got = np.concatenate([xb for xb, _ in blocks])
    np.testing.assert_array_equal(got, np.moveaxis(x, 1, -1).reshape(-1, 3))


@pytest.mark.parametrize("shape", [(5, 3), (0, 3), (7, 3, 4, 5), (2, 3, 40, 50), (3, 3, 0)])
@pytest.mark.parametrize("planes", [False, True])
def test_walk_covers_every_position_in_order(rng: np.random.Generator, shape: tuple[int, ...],
                                            planes: bool) -> None:
    """The one walker, both ways: blocks follow each other (offsets), nothing is left out,
    and the kernel's chunks of K-dim input are views, never copies."""
    x = rng.standard_normal(shape).astype(np.float32)
    t = rng.integers(0, 3, (shape[0],) + shape[2:])
    pieces = list(blocks.walk(x, t, "index", 60, planes=planes))
    at = 0
    rows = []
    for xb, tb, offset in pieces:
        assert offset == at
        m = blocks._chunk_rows((xb, tb, offset))
        assert tb.size == m
        at += m
        rows.append(blocks._rows_view(xb))
        if planes and xb.ndim == 3:
            assert np.shares_memory(xb, x)
    assert at == t.size
    want = np.moveaxis(x, 1, -1).reshape(-1, 3)
    np.testing.assert_array_equal(np.concatenate(rows) if rows else want, want)


# -- threads ------------------------------------------------------------------------------------


def test_threads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CE_LOSS_THREADS", "3")
    assert loss.default_threads() == 3
    spec = loss.make_spec((4, 3), np.float32, (4,), np.int64)
    assert loss.LossAccumulator(spec).threads == 3
    assert loss.LossAccumulator(spec, threads=1).threads == 1
    monkeypatch.delenv("CE_LOSS_THREADS")
    assert 1 <= loss.default_threads() <= loss.MAX_DEFAULT_THREADS
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("CE_LOSS_THREADS", bad)
        with pytest.raises(OptionError, match="CE_LOSS_THREADS must be a positive integer"):
            loss.default_threads()


def test_a_worker_error_reaches_the_caller() -> None:
    def work(i: int) -> int:
        if i == 5:
            raise ZeroDivisionError("chunk 5")
        return i

    with pytest.raises(ZeroDivisionError, match="chunk 5"):
        loss.threads._run_parallel(40, work, 2)
    assert loss.threads._run_parallel(40, lambda i: i * i, 3) == [i * i for i in range(40)]


def test_importing_loss_starts_no_threads() -> None:
    import subprocess
    import sys

    code = ("import sys, threading, ce_cli.loss; "
            "assert threading.active_count() == 1; "
            "assert 'concurrent.futures' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
