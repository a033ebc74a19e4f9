"""The audit statistics taken from the kernel's own pass (issue 15, point 6).

:class:`~ce_cli.audit.rows.KernelRows` reads the kernel's ``exp(x)`` per chunk (its
hook) and the audit then only sums per-row values; the reference recomputes every row's
softmax in float64 (``AuditStats._update``). Both must give the same statistics: counts
exactly, float sums to ~1e-6 (float32 and float16 ``exp`` round; float64 to ~1e-12),
whatever the layout, block size, dtype and values (ties, -inf, NaN, +inf, huge logits).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import ce_settings
from hypothesis import given
from hypothesis import strategies as st

from ce_cli import loss
from ce_cli.audit import metrics, rows
from ce_cli.loss import blocks
from ce_cli.readers.base import array_source
from ce_cli.run import pipeline

#: float statistics: fast against reference, by the logits' dtype
RTOL = {np.dtype(np.float16): 1e-6, np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

COUNTS = ("counted", "correct", "topk_hits", "zero_weight", "nonfinite_logits", "underflow",
          "bin_count", "bin_correct", "class_support", "class_correct", "loss_hist")
SUMS = ("nll_sum", "entropy_sum", "clipped_nll_sum", "loss_sum", "bin_conf", "class_loss",
        "class_conf")


def audit(x, t, *, fast, weight=None, ignore_index=-100, eps=0.0, top_k=(1, 5), bins=15,
          worst_k=10, block=None, threads=None):
    """The pipeline's loop: blocks through one accumulator and one AuditStats."""
    w = None if weight is None else np.asarray(weight, x.dtype)
    spec = loss.make_spec(x.shape, x.dtype, t.shape, t.dtype, w, ignore_index, "mean", eps)
    acc = loss.LossAccumulator(spec, threads=threads)
    stats = metrics.AuditStats(spec.n_classes, top_k=top_k, bins=bins, worst_k=worst_k)
    if fast:
        acc.hook = stats.kernel_rows(spec)
    position = 0
    for xb, tb in loss.iter_blocks(x, t, spec.target_kind, block):
        losses = acc.update(xb, tb)
        stats.update(xb, tb, losses, spec, offset=position)
        position += xb.shape[0]
    return stats


def assert_same(fast, ref, rtol):
    """Counts equal; float sums within ``rtol``, or 1e-15 a row (NaN where the other is
    NaN): the reference's log-sum-exp of a confident row, ``log(1 + 1e-12)``, keeps
    only float64's absolute digits (the fast ``log1p(R)`` keeps them all)."""
    for name in COUNTS:
        a, b = getattr(fast, name), getattr(ref, name)
        assert (a == b).all() if isinstance(a, np.ndarray) else a == b, (name, a, b)
    for name in SUMS:
        a, b = np.asarray(getattr(fast, name)), np.asarray(getattr(ref, name))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-15 * ref.counted, equal_nan=True,
                                   err_msg=name)
    assert len(fast.worst) == len(ref.worst)
    for a, b in zip(sorted(fast.worst), sorted(ref.worst)):
        assert a[1:5] == b[1:5]  # index, target, predicted
        np.testing.assert_allclose([a[0], a[5], a[6]], [b[0], b[5], b[6]], rtol=2 * rtol,
                                   equal_nan=True)


def logits(rng, shape, dtype, scale=3.0):
    x = rng.standard_normal(shape) * scale
    return x.astype(dtype)


def targets(rng, shape, c, ignored=0.1):
    t = rng.integers(0, c, shape)
    t[rng.random(shape) < ignored] = -100
    return t


def spoil(x):
    """NaN, +inf, -inf, huge logits, ties of all classes and at the top, in rows 0..6."""
    big = np.finfo(x.dtype).max / 2 if x.dtype == np.float16 else 1e30
    x[0, 0] = np.nan
    x[1, 1] = np.inf
    x[2, 0] = -np.inf
    x[3] = 1.0  # every class ties: confidence 1/C, maybe a calibration bin's edge
    x[4, :2] = x[4].max() + 1  # two top classes tie
    x[5, 0] = big  # the kernel's exp overflows
    x[6] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("c", [2, 3, 15, 100, 300])
def test_fast_audit_matches_the_reference_on_rows(dtype, c):
    rng = np.random.default_rng(c)
    x = spoil(logits(rng, (2000, c), dtype))
    t = targets(rng, 2000, c)
    t[:7] = 0
    fast, ref = audit(x, t, fast=True), audit(x, t, fast=False)
    assert_same(fast, ref, RTOL[x.dtype])
    assert ref.nonfinite_logits == 2 and fast.counted == ref.counted > 1500


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("opts", [{"weight": True}, {"eps": 0.1}, {"ignore_index": 2},
                                  {"weight": True, "eps": 0.2, "ignore_index": 0},
                                  {"top_k": (1,)}, {"top_k": (), "bins": 7, "worst_k": 0},
                                  {"top_k": (2, 3, 40), "bins": 1, "worst_k": 30}])
def test_fast_audit_matches_the_reference_with_options(dtype, opts):
    rng = np.random.default_rng(7)
    c = 12
    x = spoil(logits(rng, (1500, c), dtype))
    t = targets(rng, 1500, c)
    kw = dict(opts)
    if kw.pop("weight", False):
        w = rng.random(c) * 2
        w[3] = 0.0  # zero-weight targets are counted
        kw["weight"] = w
    if "ignore_index" in kw:
        t[t == -100] = kw["ignore_index"]
    fast, ref = audit(x, t, fast=True, **kw), audit(x, t, fast=False, **kw)
    assert_same(fast, ref, RTOL[x.dtype])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape, block", [
    ((6, 5, 40), None),  # small samples: class-last copies of groups
    ((3, 6, 5000), 6 * 700),  # large samples: transposed views, the kernel's planes
    ((2, 4, 30, 40), 4 * 500),  # two spatial axes, cut within a sample
])
def test_fast_audit_matches_the_reference_on_k_dim_input(dtype, shape, block):
    rng = np.random.default_rng(len(shape))
    x = logits(rng, shape, dtype)
    c = shape[1]
    t = targets(rng, (shape[0], *shape[2:]), c)
    k = (0,) * (len(shape) - 2)  # the first position of a sample
    x[(0, slice(None), *k)] = np.nan
    x[(0, 1, *k[:-1], 1)] = -np.inf
    x[(-1, slice(None), *k[:-1], -1)] = 2.0  # ties
    fast = audit(x, t, fast=True, block=block)
    ref = audit(x, t, fast=False, block=block)
    assert_same(fast, ref, RTOL[x.dtype])
    assert fast.nonfinite_logits == (t.reshape(shape[0], -1)[0, 0] != -100)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_fast_audit_matches_the_reference_with_the_class_axis_last(dtype):
    """(B, L, V) sequence logits as ``--class-axis -1`` reads them: ``moveaxis`` views."""
    rng = np.random.default_rng(11)
    x = logits(rng, (2, 300, 700), dtype, scale=4.0)
    t = targets(rng, (2, 300), 700, ignored=0.05)
    xm = np.moveaxis(x, -1, 1)
    fast = audit(xm, t, fast=True, block=700 * 64)
    ref = audit(xm, t, fast=False, block=700 * 64)
    assert_same(fast, ref, RTOL[x.dtype])


def test_fast_audit_of_confident_rows_keeps_its_digits(monkeypatch):
    """Near-one-hot rows: an entropy of 1e-20 and a confidence of 1 - 1e-20 (or 1) come
    out of ``R = sum_{c != top} e_c / e_top`` as accurately as from float64 log-softmax,
    and the kernel's values are used (a confidence of 1 is no bin edge to check)."""
    rng = np.random.default_rng(5)
    x = logits(rng, (3000, 50), np.float32, scale=1.0)
    t = rng.integers(0, 50, 3000)
    x[np.arange(3000), t] += rng.uniform(20, 45, 3000).astype(np.float32)
    ref = audit(x, t, fast=False)
    calls = count_reference_rows(monkeypatch)
    fast = audit(x, t, fast=True)
    assert_same(fast, ref, 1e-6)
    assert 0 < ref.entropy_sum < 1e-3 and ref.bin_count[-1] == 3000
    assert sum(calls) == 0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_fast_audit_of_strided_rows_and_of_one_class(dtype):
    """Rows that are a slice of wider ones (the kernel reads them in place), and C = 1
    (torch's log_softmax is 0: the kernel's own arithmetic, the audit's exp)."""
    rng = np.random.default_rng(6)
    wide = spoil(logits(rng, (3000, 40), dtype))
    t = targets(rng, 3000, 25)
    t[:7] = 0
    x = wide[:, 5:30]
    assert not x.flags.c_contiguous
    assert_same(audit(x, t, fast=True), audit(x, t, fast=False), RTOL[x.dtype])
    one = wide[:, 7:8]
    t1 = np.where(t == -100, -100, 0)
    assert_same(audit(one, t1, fast=True), audit(one, t1, fast=False), RTOL[x.dtype])


def test_float16_logits_with_a_float32_exp_are_widened_once():
    """A kernel that hands float16 logits with their float32 exp: the same values as a
    chunk the audit exponentiates itself."""
    rng = np.random.default_rng(12)
    x = logits(rng, (300, 30), np.float16)
    t = rng.integers(0, 30, 300)
    got = {}
    for e in (None, np.exp(x.astype(np.float32))):
        kr = rows.KernelRows((1, 5), 15)
        kr.start(x)
        kr.chunk(x, t, 0, e)
        v = kr.values(None)
        got[e is None] = v
    for a, b in zip(got[True], got[False]):
        np.testing.assert_array_equal(a, b)


def test_a_row_shifted_exp_gives_the_same_values():
    """The hook's values are ratios within a row: exp(x - max) serves as exp(x) does."""
    rng = np.random.default_rng(14)
    x = logits(rng, (400, 50), np.float32, scale=5.0)
    t = rng.integers(0, 50, 400)
    got = []
    for e in (np.exp(x), np.exp(x - x.max(axis=1, keepdims=True))):
        kr = rows.KernelRows((1, 5), 15)
        kr.start(x)
        kr.chunk(x, t, 0, e)
        got.append(kr.values(None))
    a, b = got
    assert (a.pred == b.pred).all() and (a.rank == b.rank).all() and not b.redo.any()
    for name in ("conf", "lp_t", "entropy"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-12)


def test_confidence_on_a_calibration_bins_edge_is_binned_as_float64_bins_it():
    """All-equal rows have confidence 1/C: for C = 3, 5 and 15 a bin edge of 15 bins."""
    for c in (3, 5, 15):
        x = np.zeros((50, c), np.float32)
        x[25:] = np.linspace(-1, 1, c, dtype=np.float32)
        t = np.arange(50) % c
        fast, ref = audit(x, t, fast=True), audit(x, t, fast=False)
        assert_same(fast, ref, 1e-6)
        assert fast.bin_count.sum() == 50


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fast_audit_does_not_depend_on_the_thread_count(threads):
    rng = np.random.default_rng(9)
    x = spoil(logits(rng, (20_000, 40), np.float32))
    t = targets(rng, 20_000, 40)
    one = audit(x, t, fast=True, threads=1)
    many = audit(x, t, fast=True, threads=threads)
    for name in COUNTS + SUMS:
        a, b = getattr(one, name), getattr(many, name)
        assert np.array_equal(a, b, equal_nan=True) if isinstance(a, np.ndarray) \
            else (a == b or (a != a and b != b)), name
    assert repr(sorted(one.worst)) == repr(sorted(many.worst))  # NaN p_t, loss alike


def count_reference_rows(monkeypatch):
    """A list that gets the row count of every call of the float64 reference."""
    calls = []
    real = metrics.reference_rows

    def counting(x, *a, **k):
        calls.append(x.shape[0])
        return real(x, *a, **k)

    monkeypatch.setattr(metrics, "reference_rows", counting)
    return calls


def test_only_rows_the_kernel_cannot_take_are_recomputed(monkeypatch):
    calls = count_reference_rows(monkeypatch)
    rng = np.random.default_rng(3)
    x = logits(rng, (50_000, 30), np.float32)
    x[10, 3] = np.nan
    x[20, 4] = np.inf
    x[30, 5] = -np.inf  # taken: a masked class adds nothing
    t = rng.integers(0, 30, 50_000)
    audit(x, t, fast=True)
    assert sum(calls) <= 2 + 5  # the two non-finite rows, and any right on a bin edge


def test_positions_the_hook_never_saw_are_taken_the_reference_way(monkeypatch):
    """A kernel path that starts a block but skips ``chunk`` for some chunks (a new fast
    path without the call, say) costs speed, not correctness."""
    real = rows.KernelRows.chunk
    seen = []

    def every_other(self, x, t, offset, e):
        seen.append(offset)
        if len(seen) % 2:
            real(self, x, t, offset, e)

    monkeypatch.setattr(rows.KernelRows, "chunk", every_other)
    rng = np.random.default_rng(13)
    x = spoil(logits(rng, (30_000, 20), np.float32))
    t = targets(rng, 30_000, 20)
    fast, ref = audit(x, t, fast=True), audit(x, t, fast=False)
    assert len(seen) >= 3  # one of them skipped
    assert_same(fast, ref, 1e-6)


def test_the_pipeline_takes_the_audit_from_the_kernel(monkeypatch):
    """``ce-loss compute``'s pass hands the kernel the audit's hook, and every row of a
    clean input is summed from the kernel's values."""
    calls = count_reference_rows(monkeypatch)
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 10 * 37)
    rng = np.random.default_rng(4)
    x = logits(rng, (3000, 10), np.float32)
    t = targets(rng, 3000, 10)
    from ce_cli.options import AuditOptions

    def run(fast):
        if not fast:
            monkeypatch.setattr(metrics.AuditStats, "kernel_rows", lambda self, spec: None)
        return pipeline.run(array_source("x.npy", "logits", x),
                            array_source("t.npy", "targets", t), weight=None,
                            ignore_index=-100, reduction="mean", label_smoothing=0.0,
                            input_kind="logits", keep_losses=False,
                            audit=AuditOptions()).stats

    fast = run(True)
    assert sum(calls) <= 5
    ref = run(False)
    assert sum(calls) >= (t != -100).sum()
    assert_same(fast, ref, 1e-6)


def test_the_hook_sees_every_chunk_with_the_kernels_exp():
    """The kernel's side of the contract: ``start`` per block, then each chunk with its
    targets (ignored ones 0), its offset and ``exp(x)`` where the fast kernel took one;
    float16 rows come widened to float32 with their row-shifted ``exp(x - max)`` (the
    half kernel's own), and class-first float16 chunks as they are, with no exp."""

    class Spy:
        def __init__(self, shifted):
            self.starts, self.chunks = [], []
            self.shifted = shifted

        def start(self, x):
            self.starts.append(x.shape)

        def chunk(self, x, t, offset, e):
            if e is not None:
                assert x.dtype == e.dtype == np.float32
                want = x - x.max(axis=1, keepdims=True) if self.shifted else x
                np.testing.assert_allclose(e, np.exp(want), rtol=1e-6)
            self.chunks.append((offset, t.shape[0], t.min(initial=0), e is not None))

    rng = np.random.default_rng(2)
    x = logits(rng, (5000, 60), np.float32)
    t = targets(rng, 5000, 60, ignored=0.3)
    for dtype, fast in ((np.float32, True), (np.float16, True)):
        spy = Spy(shifted=dtype == np.float16)
        spec = loss.make_spec(x.shape, dtype, t.shape, t.dtype)
        acc = loss.LossAccumulator(spec, threads=2, hook=spy)
        acc.update(x.astype(dtype), t)
        assert spy.starts == [x.shape]
        got = sorted(spy.chunks)
        assert sum(m for _, m, _, _ in got) == 5000 and got[0][0] == 0
        assert all(a[0] + a[1] == b[0] for a, b in zip(got, got[1:]))
        assert all(lo >= 0 and took == fast for _, _, lo, took in got)
    # float16 (1, C, L) read as rows whose classes are not contiguous: the half kernel
    # reads them class-major, and the hook gets them as they are, with no exp
    planes = logits(rng, (1, 60, 5000), np.float16)
    spy = Spy(shifted=True)
    spec = loss.make_spec(planes.shape, np.float16, (1, 5000), t.dtype)
    loss.LossAccumulator(spec, threads=2, hook=spy).update(planes[0].T, t)
    assert spy.starts == [(5000, 60)]
    assert sum(m for _, m, _, _ in spy.chunks) == 5000
    assert not any(took for *_, took in spy.chunks)


def test_merged_fast_audits_equal_one_fast_pass():
    """The statistics keep their fields: shards audited the fast way merge as before."""
    rng = np.random.default_rng(8)
    x = spoil(logits(rng, (4000, 9), np.float32))
    t = targets(rng, 4000, 9)
    whole = audit(x, t, fast=True)
    a = audit(x[:1700], t[:1700], fast=True)
    b = audit(x[1700:], t[1700:], fast=True)
    b.worst = [(k, -(i + 1700), i + 1700, *rest) for k, _, i, *rest in b.worst]
    merged = a.merge(b)
    assert_same(merged, whole, 1e-12)


# -- property: any values on a grid (ties everywhere), plus the special ones ----------------
# (CE_AUDIT_EXAMPLES=1500 for a deeper run; logits a fraction of an ulp apart are left out:
# float64 probabilities may tie where the logits do not, and the fast rank counts logits)

GRID = st.one_of(st.integers(-400, 400).map(lambda v: v / 8),
                 st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 88.0, -104.0]))


@ce_settings(int(os.environ.get("CE_AUDIT_EXAMPLES", "60")))
@given(data=st.data())
def test_fast_audit_matches_the_reference_on_any_values(data):
    dtype = data.draw(st.sampled_from([np.float16, np.float32, np.float64]), label="dtype")
    c = data.draw(st.integers(1, 9), label="C")
    n = data.draw(st.integers(1, 60), label="N")
    x = np.array(data.draw(st.lists(GRID, min_size=n * c, max_size=n * c)),
                 dtype=np.float64).reshape(n, c)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    t = np.array(data.draw(st.lists(st.sampled_from([*range(c), -100]), min_size=n,
                                    max_size=n)), np.int64)
    top_k = tuple(data.draw(st.lists(st.integers(1, 6), max_size=3), label="top_k"))
    bins = data.draw(st.integers(1, 20), label="bins")
    fast = audit(x, t, fast=True, top_k=top_k, bins=bins, block=c * 7)
    ref = audit(x, t, fast=False, top_k=top_k, bins=bins, block=c * 7)
    assert_same(fast, ref, RTOL[x.dtype])
