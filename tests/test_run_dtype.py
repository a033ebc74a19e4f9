"""``--dtype`` (torch's ``F.cross_entropy(logits.to(dtype), ...)``) and bfloat16 logits,
whose result torch gives in bfloat16."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ce_settings
from helpers import run
from hypothesis import given
from hypothesis import strategies as st

from ce_cli import report
from ce_cli.loss import round_bfloat16
from ce_cli.options import OutputOptions
from ce_cli.readers.base import array_source
from ce_cli.run import partial, pipeline


@pytest.fixture
def half(tmp_path):
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(300, 12)) * 4).astype(np.float16)
    t = rng.integers(0, 12, 300)
    t[::17] = -100
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    return x, t, tmp_path


@pytest.mark.parametrize("dtype, torch_dtype, rtol", [
    ("float32", torch.float32, 1e-6), ("float64", torch.float64, 1e-12)])
def test_dtype_casts_the_logits_first(half, dtype, torch_dtype, rtol):
    x, t, d = half
    want = F.cross_entropy(torch.from_numpy(x).to(torch_dtype), torch.from_numpy(t)).item()
    got = json.loads(run("compute", d / "x.npy", d / "t.npy", "--dtype", dtype,
                         "--format", "json").stdout)
    assert got["dtype"] == dtype
    assert got["loss"] == pytest.approx(want, rel=rtol)
    # without it: torch's float16 result (printed as the shortest text of that float16)
    plain = np.float16(run("compute", d / "x.npy", d / "t.npy").stdout)
    assert plain == np.float16(F.cross_entropy(torch.from_numpy(x), torch.from_numpy(t)).item())


def test_dtype_on_integer_logits_says_nothing(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1, 5, 2], [0, 0, 3]], dtype=np.int32))
    np.save(tmp_path / "t.npy", np.array([1, 2]))
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--dtype", "float32")
    want = F.cross_entropy(torch.tensor([[1, 5, 2], [0, 0, 3]]).float(), torch.tensor([1, 2]))
    assert float(done.stdout) == pytest.approx(want.item(), rel=1e-6)
    assert done.stderr == ""


def test_round_bfloat16_is_torchs_rounding():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-30, 30, 5000),
                        [0.0, -0.0, np.inf, -np.inf, 3.4e38, 1e-40]]).astype(np.float32)
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(round_bfloat16(x), want)
    assert np.isnan(round_bfloat16(np.float32(np.nan)))


def _bf16_summary(x, t, **kw):
    """A pass over bfloat16 logits as a reader yields them: float32, stored_dtype set."""
    xs = array_source("x.pt", "logits", x.float().numpy())
    xs.stored_dtype = "bfloat16"
    return pipeline.run(xs, array_source("t.pt", "targets", t.numpy()), weight=None,
                        ignore_index=-100, reduction="mean", label_smoothing=0.0,
                        input_kind="logits", keep_losses=False, **kw)


def test_bfloat16_logits_give_a_bfloat16_result_printed_exactly(capsys):
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.normal(size=(500, 20)).astype(np.float32) * 3).bfloat16()
    t = torch.from_numpy(rng.integers(0, 20, 500))
    want = F.cross_entropy(x, t)  # torch's bfloat16 result
    summary = _bf16_summary(x, t)
    assert summary.result_dtype == "bfloat16"
    assert report.finish(summary, OutputOptions(fmt="plain")) == 0
    text = capsys.readouterr().out.strip()
    got = float(text)
    assert got == float(np.float32(got))  # exactly a bfloat16 value
    assert round_bfloat16(np.float32(got)) == np.float32(got)
    assert got == want.item()  # torch's bfloat16 value, bit for bit
    from decimal import Decimal
    assert Decimal(text) == Decimal(got)  # the exact decimal value, not a shortest repr
    # --dtype float32: F.cross_entropy(x.float(), t)
    summary32 = _bf16_summary(x, t, dtype="float32")
    assert summary32.result_dtype is None
    assert float(summary32.result.loss) == pytest.approx(
        F.cross_entropy(x.float(), t).item(), rel=1e-6)


def test_a_bfloat16_partial_keeps_its_result_dtype(capsys):
    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.normal(size=(40, 5)).astype(np.float32)).bfloat16()
    t = torch.from_numpy(rng.integers(0, 5, 40))
    docs = [partial.Partial(json.loads(partial.dumps(partial.to_document(
        _bf16_summary(x[a:b], t[a:b])))), f"p{a}") for a, b in ((0, 15), (15, 40))]
    merged = partial.merge(docs)
    summary = merged.summary()
    assert summary.result_dtype == "bfloat16"
    report.finish(summary, OutputOptions(fmt="json"))
    doc = json.loads(capsys.readouterr().out)
    assert doc["dtype"] == "bfloat16"
    assert doc["loss"] == float(round_bfloat16(np.float32(doc["loss"])))
    plain32 = partial.Partial(json.loads(partial.dumps(partial.to_document(
        _bf16_summary(x, t, dtype="float32")))), "p32")
    with pytest.raises(Exception, match="one dtype"):
        partial.merge([docs[0], plain32])


@pytest.mark.parametrize("n, c, weighted", [(60_000, 50, False), (30_000, 7, True),
                                            (5_000, 10, False)])
def test_bfloat16_sums_follow_torchs_bfloat16_cascade(capsys, n, c, weighted):
    """torch sums bfloat16 losses in bfloat16 through its cascade: rounding the float32
    mean once lands ulps away on large inputs; the emulation stays within one."""
    gen = torch.Generator().manual_seed(n + c)
    x = torch.randn(n, c, generator=gen).bfloat16()
    t = torch.randint(0, c, (n,), generator=gen)
    t[::11] = -100
    w = torch.linspace(0.5, 2.0, c) if weighted else None
    want = F.cross_entropy(x, t, weight=None if w is None else w.bfloat16()).item()
    xs = array_source("x.pt", "logits", x.float().numpy())
    xs.stored_dtype = "bfloat16"
    summary = pipeline.run(xs, array_source("t.pt", "targets", t.numpy()),
                           weight=None if w is None else w.numpy(), ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, input_kind="logits",
                           keep_losses=False)
    report.finish(summary, OutputOptions(fmt="plain"))
    got = float(capsys.readouterr().out)
    ulp = 2.0 ** (np.floor(np.log2(abs(want))) - 7)
    assert abs(got - want) <= ulp, (got, want)


@pytest.mark.parametrize("fmt", ["plain", "csv", "json"])
def test_a_float16_result_is_printed_as_its_exact_value(half, fmt):
    """14.796875, not the shortest text of the float16 (14.8), which a float reader takes
    for another number than torch's."""
    from decimal import Decimal

    x, t, d = half
    want = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(t)).item()  # float16
    out = run("compute", d / "x.npy", d / "t.npy", "--format", fmt).stdout
    if fmt == "plain":
        text = out.strip()
    elif fmt == "csv":
        text = out.splitlines()[1].split(",")[0]
    else:
        text = out.split('"loss": ')[1].split(",")[0]
    assert float(text) == want  # a reader recovers torch's value exactly
    assert Decimal(text) == Decimal(want)  # the exact decimal, every digit


@pytest.mark.parametrize("layout", ["rows", "sequences"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_bfloat16_is_torchs_bfloat16_arithmetic_bit_for_bit(tmp_path, layout, weighted,
                                                             smoothing):
    """bfloat16 logits, no --dtype: torch rounds its log_softmax (the class-last sum and
    its log too), each weighted loss, the smoothing term, the count it divides by and
    every step of the combination to bfloat16. Every reduction, rows (N, C) and
    sequences (B, L, V) with --class-axis -1 (torch's K-dim layout), ignored targets,
    a weight (rounded to bfloat16, as torch needs its weight in the logits' dtype)."""
    import ml_dtypes

    rng = np.random.default_rng(2 + weighted + 4 * (layout == "rows"))
    shape = (700, 300) if layout == "rows" else (5, 60, 40)  # 700 counts round in bfloat16
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[-1], shape[:-1])
    t[rng.random(t.shape) < 0.1] = -100
    w = rng.uniform(0.2, 2.0, shape[-1])
    np.save(tmp_path / "x.npy", x.astype(ml_dtypes.bfloat16))
    np.save(tmp_path / "t.npy", t)
    np.savetxt(tmp_path / "w.csv", w[None], delimiter=",")
    xb = torch.from_numpy(x).bfloat16()
    moved = xb.movedim(-1, 1) if layout == "sequences" else xb
    opts = ["--label-smoothing", str(smoothing)]
    opts += ["--class-axis", "-1"] if layout == "sequences" else []
    opts += ["--weight", str(tmp_path / "w.csv")] if weighted else []
    weight = torch.from_numpy(w).bfloat16() if weighted else None
    for reduction in ("mean", "sum", "none"):
        want = F.cross_entropy(moved, torch.from_numpy(t), weight=weight,
                               label_smoothing=smoothing, reduction=reduction)
        out = tmp_path / "none.npy"
        done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", *opts, "-q",
                   "--reduction", reduction, "-o", out)
        if reduction == "none":
            np.testing.assert_array_equal(np.load(out).astype(np.float32),
                                          want.float().numpy())
            printed = [float(v) for v in done.stdout.split()]
            assert printed == want.float().numpy().ravel().tolist()
        else:
            assert float(done.stdout) == float(want), (reduction, done.stdout, float(want))


@ce_settings(60)
@given(seed=st.integers(0, 2**32 - 1), kdim=st.booleans(), weighted=st.booleans(),
       smoothing=st.sampled_from([0.0, 0.1]), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_python_api_takes_ml_dtypes_bfloat16_as_torch_takes_bfloat16(seed, kdim, weighted,
                                                                    smoothing, reduction):
    """``cross_entropy`` on ml_dtypes' bfloat16 arrays: torch's bfloat16 result, to the bit
    and in the input's dtype, for rows and K-dim input, weights, ignored targets and
    smoothing."""
    import ml_dtypes

    from ce_cli import cross_entropy

    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 300)), int(rng.integers(2, 80))
    shape = (n, c, int(rng.integers(1, 12))) if kdim else (n, c)
    x = (rng.standard_normal(shape) * 3).astype(ml_dtypes.bfloat16)
    t = rng.integers(0, c, (n, *shape[2:]))
    t[rng.random(t.shape) < 0.1] = -100
    w = rng.uniform(0.2, 2.0, c).astype(ml_dtypes.bfloat16) if weighted else None
    got = cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=smoothing)
    tx = torch.from_numpy(x.astype(np.float32)).bfloat16()
    tw = None if w is None else torch.from_numpy(w.astype(np.float32)).bfloat16()
    want = F.cross_entropy(tx, torch.from_numpy(t), weight=tw, reduction=reduction,
                           label_smoothing=smoothing)
    assert got.dtype == x.dtype and got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got.astype(np.float32), want.float().numpy())


def test_python_api_bfloat16_refuses_a_weight_of_another_dtype_and_promotes_soft_targets():
    import ml_dtypes

    from ce_cli import cross_entropy
    from ce_cli.errors import DTypeError

    x = (np.arange(12).reshape(4, 3) / 5).astype(ml_dtypes.bfloat16)
    t = np.array([0, 1, 2, -100])
    with pytest.raises(DTypeError, match="expected scalar type BFloat16 but found Float"):
        cross_entropy(x, t, weight=np.ones(3, np.float32))
    tx = torch.from_numpy(x.astype(np.float32)).bfloat16()
    with pytest.raises(RuntimeError, match="expected scalar type BFloat16 but found Float"):
        F.cross_entropy(tx, torch.from_numpy(t), weight=torch.ones(3))
    q = np.full((4, 3), 1 / 3)
    for soft in (q.astype(np.float32), q, q.astype(ml_dtypes.bfloat16)):
        got = cross_entropy(x, soft)
        ts = torch.from_numpy(soft.astype(np.float32)).bfloat16() \
            if soft.dtype == ml_dtypes.bfloat16 else torch.from_numpy(soft)
        want = F.cross_entropy(tx, ts)
        assert str(got.dtype) == str(want.dtype).replace("torch.", "")
        # float targets: torch's bfloat16 log-softmax, then float sums; bfloat16 targets'
        # products and sums are rounded by torch, not here (within bfloat16's precision)
        rel = 2 ** -7 if soft.dtype == ml_dtypes.bfloat16 else 1e-6
        assert float(got) == pytest.approx(float(want), rel=rel)


def test_bfloat16_logits_against_float_probabilities_give_a_float_result(tmp_path):
    """torch promotes bfloat16 logits with float32 class probabilities to float32: so does
    the command line, from torch's bfloat16 log-softmax (float32 sums: to float32's
    rounding)."""
    import ml_dtypes

    rng = np.random.default_rng(6)
    x = (rng.standard_normal((50, 7)) * 2).astype(ml_dtypes.bfloat16)
    q = rng.dirichlet(np.ones(7), 50).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    doc = json.loads(run("compute", tmp_path / "x.npy", tmp_path / "q.npy", "--format",
                         "json", "-q").stdout)
    want = F.cross_entropy(torch.from_numpy(x.astype(np.float32)).bfloat16(),
                           torch.from_numpy(q))
    assert want.dtype == torch.float32 and doc["dtype"] == "float32"
    assert doc["loss"] == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("kind", ["probs", "log-probs"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_bfloat16_probabilities_as_input_round_their_log_and_its_product(tmp_path, kind,
                                                                         smoothing):
    """--input-kind probs of bfloat16 values: torch's F.nll_loss(p.log(), t, weight) in
    bfloat16 (the log rounded, then each product with the weight); log-probs as given."""
    import ml_dtypes

    rng = np.random.default_rng(11)
    z = rng.normal(0, 2, (300, 10)).astype(np.float32)
    p = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(ml_dtypes.bfloat16)
    pt = torch.from_numpy(p.astype(np.float32)).bfloat16()
    x = p if kind == "probs" else pt.log().float().numpy().astype(ml_dtypes.bfloat16)
    t = rng.integers(0, 10, 300)
    t[::17] = -100
    w = np.round(rng.random(10) * 3, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    lp = pt.log()
    for reduction in ("none", "mean", "sum"):
        # torch's cross_entropy on log-probabilities is log_softmax's no-op on them only
        # up to rounding: the reference is the loss written out in torch's bfloat16
        tw = torch.tensor(w).bfloat16()
        nll = F.nll_loss(lp, torch.from_numpy(t), weight=tw, reduction=reduction)
        if smoothing:
            keep = torch.from_numpy(t != -100)
            smooth = -(lp * tw).sum(1)
            smooth = torch.where(keep, smooth, torch.zeros_like(smooth))
            if reduction == "mean":
                smooth = smooth.sum() / tw[torch.from_numpy(np.where(t < 0, 0, t))][keep].sum()
            elif reduction == "sum":
                smooth = smooth.sum()
            want = (1 - smoothing) * nll + smooth * (smoothing / 10)
        else:
            want = nll
        done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--input-kind", kind,
                   "--weight", ",".join(map(str, w)), "--label-smoothing", str(smoothing),
                   "--reduction", reduction, "-q")
        got = np.array(done.stdout.split(), np.float64)
        np.testing.assert_array_equal(got, want.float().numpy().reshape(-1))


def test_python_api_bfloat16_with_float_probabilities_takes_a_float_weight():
    """torch needs a bfloat16 weight against class indices only: with float probability
    targets a float weight is multiplied in, and the result promoted."""
    import ml_dtypes

    from ce_cli import cross_entropy

    x = np.array([[1, 2, 3], [0, -1, 5]], np.float32).astype(ml_dtypes.bfloat16)
    q = np.array([[0.2, 0.3, 0.5], [1, 0, 0]], np.float32)
    w = np.array([1, 2, 3], np.float32)
    want = F.cross_entropy(torch.from_numpy(x.astype(np.float32)).bfloat16(),
                           torch.from_numpy(q), weight=torch.from_numpy(w))
    got = cross_entropy(x, q, weight=w)
    assert got.dtype == np.float32 and float(got) == pytest.approx(float(want), rel=1e-6)
