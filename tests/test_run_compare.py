"""``ce-loss compare``: both losses equal ``compute``'s, and the paired difference, its
clustered standard error and interval equal the formula, computed here from torch's
per-position losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import json_run, run

Z95 = 1.959963984540054


def paired_reference(la, lb, w, clusters):
    """The issue's formula over per-position losses (torch's 'none', weighted) ``la``,
    ``lb``, denominators ``w`` (0 where not counted) and a cluster id per position."""
    la, lb, w = (np.asarray(v, np.float64).reshape(-1) for v in (la, lb, w))
    ids = np.asarray(clusters).reshape(-1)
    counted = w != 0
    groups = np.unique(ids[counted])
    d = np.array([(lb - la)[ids == g].sum() for g in groups])
    wg = np.array([w[ids == g].sum() for g in groups])
    big_d = d.sum() / wg.sum()
    g = len(groups)
    se = math.sqrt(g / (g - 1) * ((d - big_d * wg) ** 2).sum()) / wg.sum()
    return big_d, se, g


def _losses(x, t, w=None, **kw):
    x, t = torch.from_numpy(x), torch.from_numpy(t)
    weight = None if w is None else torch.from_numpy(w).to(x.dtype)
    none = F.cross_entropy(x, t, weight=weight, reduction="none", **kw).double().numpy()
    return none


@pytest.fixture
def nc(tmp_path):
    rng = np.random.default_rng(21)
    n, c = 400, 7
    t = rng.integers(0, c, n)
    t[::9] = -100
    a = rng.normal(size=(n, c))  # float64: torch's losses agree to 1e-15, the formula to 1e-9
    b = a + rng.normal(size=(n, c)) * 0.3
    b[np.arange(n), np.where(t < 0, 0, t)] += 0.1  # B a little better
    for name, v in (("a", a), ("b", b), ("t", t)):
        np.save(tmp_path / f"{name}.npy", v)
    return a, b, t, tmp_path


@pytest.mark.parametrize("weighted", [False, True])
def test_nc_difference_and_standard_error_are_the_formula(nc, weighted):
    a, b, t, d = nc
    w = np.linspace(0.5, 2.0, a.shape[1]) if weighted else None
    opts = ["--weight", ",".join(repr(float(v)) for v in w)] if weighted else []
    doc, _ = json_run("compare", d / "a.npy", d / "b.npy", d / "t.npy", *opts, "-q")
    la, lb = _losses(a, t, w), _losses(b, t, w)
    counted = t != -100
    den = np.where(counted, w[np.where(counted, t, 0)] if weighted else 1.0, 0.0)
    want_d, want_se, g = paired_reference(la, lb, den, np.arange(len(t)))
    assert doc["difference"] == pytest.approx(want_d, rel=1e-9)
    assert doc["standard_error"] == pytest.approx(want_se, rel=1e-9)
    assert doc["ci95"] == pytest.approx([want_d - Z95 * want_se, want_d + Z95 * want_se],
                                        rel=1e-9)
    assert doc["clusters"] == g == counted.sum()
    # each loss is exactly what compute prints for that file
    for key, path in (("a", "a.npy"), ("b", "b.npy")):
        alone, _ = json_run("compute", d / path, d / "t.npy", *opts, "-q")
        assert doc[key]["loss"] == alone["loss"]
    assert doc["b_better_share"] == pytest.approx((lb < la)[counted].mean())
    assert doc["a"]["accuracy"] == pytest.approx((a.argmax(1) == t)[counted].mean())
    assert doc["b"]["accuracy"] == pytest.approx((b.argmax(1) == t)[counted].mean())
    # the usual paired standard error, for (N, C) without weights
    if not weighted:
        diff = (lb - la)[counted]
        assert doc["standard_error"] == pytest.approx(diff.std(ddof=1) / math.sqrt(len(diff)),
                                                      rel=1e-9)
    top = doc["disagreements"][0]
    i = int(np.argmax(np.where(counted, np.abs(lb - la), -1)))
    assert top["index"] == i and top["a_loss"] == pytest.approx(la[i], rel=1e-6)


def test_k_dim_positions_are_clustered_by_sample(tmp_path):
    rng = np.random.default_rng(3)
    n, c, h = 12, 5, 9
    t = rng.integers(0, c, (n, h))
    t[:, 7:] = -100
    t[4] = -100  # a sample with nothing counted: not a cluster
    a = rng.normal(size=(n, c, h))
    b = a * 1.2
    for name, v in (("a", a), ("b", b), ("t", t)):
        np.save(tmp_path / f"{name}.npy", v)
    doc, _ = json_run("compare", tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "t.npy",
                      "--label-smoothing", "0.1", "-q")
    la, lb = _losses(a, t, label_smoothing=0.1), _losses(b, t, label_smoothing=0.1)
    den = (t != -100).astype(float)
    want_d, want_se, g = paired_reference(la, lb, den, np.repeat(np.arange(n), h))
    assert (doc["difference"], doc["standard_error"], doc["clusters"]) == \
        (pytest.approx(want_d, rel=1e-9), pytest.approx(want_se, rel=1e-9), n - 1)
    assert "note" in doc and "fewer than 30" in doc["note"]


def test_language_model_outputs_cluster_by_sequence(tmp_path):
    rng = np.random.default_rng(8)
    bsz, length, v = 6, 30, 40
    ids = rng.integers(0, v, (bsz, length))
    ids[2, 20:] = -100
    a = (rng.normal(size=(bsz, length, v)) * 2).astype(np.float16)
    b = (a.astype(np.float32) * 0.8).astype(np.float16)
    for name, arr in (("a", a), ("b", b), ("ids", ids)):
        np.save(tmp_path / f"{name}.npy", arr)
    doc, _ = json_run("compare", tmp_path / "a.npy", tmp_path / "b.npy",
                      tmp_path / "ids.npy", "--shift", "--dtype", "float32", "-q")
    flat = ids[:, 1:].reshape(-1)

    def hf(x):  # Hugging Face's recipe: upcast, shift, flatten
        return _losses(x.astype(np.float32)[:, :-1].reshape(-1, v), flat)

    la, lb = hf(a), hf(b)
    den = (flat != -100).astype(float)
    want_d, want_se, g = paired_reference(la, lb, den, np.repeat(np.arange(bsz), length - 1))
    assert doc["difference"] == pytest.approx(want_d, rel=1e-6)
    assert doc["standard_error"] == pytest.approx(want_se, rel=1e-6)
    assert doc["clusters"] == bsz


@pytest.mark.parametrize("read_elements", [7 * 40, 1 << 20])
def test_long_unshifted_sequences_cluster_by_sequence(tmp_path, monkeypatch, read_elements):
    """``--class-axis -1`` without ``--shift``: torch's loss of ``x.movedim(-1, 1)``; a
    sequence longer than a block (7 * 40 values: read as runs of tokens) is still one
    cluster, and the numbers are those of whole sequences."""
    from ce_cli.run import pipeline

    monkeypatch.setattr(pipeline, "READ_ELEMENTS", read_elements)
    rng = np.random.default_rng(9)
    bsz, length, v = 5, 26, 40
    ids = rng.integers(0, v, (bsz, length))
    ids[3, 18:] = -100
    a = (rng.normal(size=(bsz, length, v)) * 2).astype(np.float32)
    b = a * 0.8
    for name, arr in (("a", a), ("b", b), ("ids", ids)):
        np.save(tmp_path / f"{name}.npy", arr)
    doc, _ = json_run("compare", tmp_path / "a.npy", tmp_path / "b.npy",
                      tmp_path / "ids.npy", "--class-axis", "-1", "-q")

    def torch_none(x):
        return _losses(np.moveaxis(x, -1, 1).copy(), ids).reshape(-1)

    la, lb = torch_none(a), torch_none(b)
    den = (ids != -100).astype(float).reshape(-1)
    want_d, want_se, g = paired_reference(la, lb, den, np.repeat(np.arange(bsz), length))
    assert doc["difference"] == pytest.approx(want_d, rel=1e-5)
    assert doc["standard_error"] == pytest.approx(want_se, rel=1e-5)
    assert doc["clusters"] == bsz


def test_merged_shards_and_dask_equal_one_run(nc, monkeypatch):
    a, b, t, d = nc
    one, _ = json_run("compare", d / "a.npy", d / "b.npy", d / "t.npy", "-q")
    for i, (lo, hi) in enumerate([(0, 150), (150, 151), (151, 400)]):
        for name, v in (("a", a), ("b", b), ("t", t)):
            np.save(d / f"{name}{i}.npy", v[lo:hi])
        run("compare", d / f"a{i}.npy", d / f"b{i}.npy", d / f"t{i}.npy", "-q",
            "--partial", d / f"p{i}.json")
    merged, _ = json_run("merge", *(d / f"p{i}.json" for i in range(3)), "-q")
    from ce_cli.run import dask_engine

    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", 7 * 60)  # seven row ranges
    dask, _ = json_run("compare", d / "a.npy", d / "b.npy", d / "t.npy", "-q",
                       "--engine", "dask")
    for doc in (merged, dask):
        for key in ("difference", "standard_error", "b_better_share"):
            assert doc[key] == pytest.approx(one[key], rel=1e-9)
        assert doc["ci95"] == pytest.approx(one["ci95"], rel=1e-9)
        assert doc["clusters"] == one["clusters"]
        assert doc["a"]["loss"] == pytest.approx(one["a"]["loss"], rel=1e-6)
        assert [r["index"] for r in doc["disagreements"]] == \
            [r["index"] for r in one["disagreements"]]


def test_bootstrap_is_reproducible_for_a_seed(nc):
    _, _, _, d = nc
    args = ["compare", d / "a.npy", d / "b.npy", d / "t.npy", "-q", "--bootstrap", "300"]
    first, _ = json_run(*args, "--seed", "5")
    again, _ = json_run(*args, "--seed", "5")
    other, _ = json_run(*args, "--seed", "6")
    assert first["bootstrap"] == again["bootstrap"]
    assert first["bootstrap"]["ci95"] != other["bootstrap"]["ci95"]
    lo, hi = first["bootstrap"]["ci95"]
    assert lo < first["difference"] < hi
    # close to the normal interval on 356 clusters
    assert lo == pytest.approx(first["ci95"][0], abs=2 * first["standard_error"])


def test_fail_if_worse_gates(nc):
    a, b, t, d = nc
    better = run("compare", d / "a.npy", d / "b.npy", d / "t.npy", "--fail-if-worse", "-q")
    assert float(better.stdout) < 0
    worse = run("compare", d / "b.npy", d / "a.npy", d / "t.npy", "--fail-if-worse",
                exit_code=1)
    assert float(worse.stdout) > 0  # printed first
    assert "check failed: B is worse than A" in worse.stderr
    diff = float(worse.stdout)
    # within the margin: passes
    run("compare", d / "b.npy", d / "a.npy", d / "t.npy", "--fail-if-worse", "--margin",
        diff * 2)
    doc, _ = json_run("compare", d / "b.npy", d / "a.npy", d / "t.npy", "--fail-if-worse",
                      "-q", exit_code=1)
    assert doc["gate"] == {"margin": 0.0, "failed": True}
    for key in ("difference", "standard_error", "ci95", "clusters", "b_better_share"):
        assert key in doc
    assert set(doc["a"]) >= {"loss", "path"} and len(doc["ci95"]) == 2


def test_fail_if_worse_fails_on_nan(nc):
    a, b, _, d = nc
    np.save(d / "none.npy", np.full(a.shape[0], -100))
    done = run("compare", d / "a.npy", d / "b.npy", d / "none.npy", "--fail-if-worse",
               "-q", exit_code=1)
    assert done.stdout.strip() == "nan"
    assert "nan" in done.stderr and "--fail-if-worse" in done.stderr


def test_models_that_do_not_match_are_refused(nc, tmp_path):
    a, b, t, d = nc
    np.save(d / "short.npy", b[:-1])
    np.save(d / "wide.npy", np.zeros((a.shape[0], a.shape[1] + 1)))
    short = run("compare", d / "a.npy", d / "short.npy", d / "t.npy", exit_code=2)
    assert "short.npy" in short.stderr and short.stderr.count("\n") == 1
    wide = run("compare", d / "a.npy", d / "wide.npy", d / "t.npy", exit_code=2)
    assert "classes" in wide.stderr and wide.stderr.count("\n") == 1
    both = run("compare", "-", "-", d / "t.npy", exit_code=2)
    assert "stdin" in both.stderr
    # one input on stdin: said, not read as empty the second time it is opened
    for args in (["-", d / "b.npy", d / "t.npy"], [d / "a.npy", d / "b.npy", "-"]):
        done = run("compare", *args, input=(d / "t.npy").read_bytes(), exit_code=2)
        assert "(stdin); save it to a file first" in done.stderr
        assert done.stderr.count("\n") == 1
