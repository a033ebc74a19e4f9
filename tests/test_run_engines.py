"""Every engine reports the same input the same way: the default engine, ``--engine dask``
and shards + ``merge`` print the same number and say the same findings, because all of
them end in one report path (issue 13: the dask engine used to drop the class-axis
finding)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run, torch_ce

pytest.importorskip("dask")
pytestmark = pytest.mark.filterwarnings("ignore")  # distributed's own deprecations


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _case(name):
    """``(logits, labels, options, a fragment the findings must hold)``."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "class axis":  # (N, C, L) with C == L: fits (N, L) labels both ways
        return (rng.normal(size=(60, 4, 4)).astype(np.float32), rng.integers(0, 4, (60, 4)),
                [], "--class-axis -1")
    if name == "probabilities as logits":
        x = _softmax(rng.normal(size=(200, 5)) * 2).astype(np.float32)
        return x, rng.integers(0, 5, 200), [], "--input-kind probs"
    if name == "log-probabilities as logits":
        x = np.log(_softmax(rng.normal(size=(200, 5)) * 2))
        return x, rng.integers(0, 5, 200), [], "look like log-probabilities"
    if name == "1-based labels":
        return (rng.normal(size=(300, 6)).astype(np.float32), rng.integers(1, 6, 300), [],
                "1-based")
    if name == "ignore_index is a class":
        return (rng.normal(size=(100, 5)), rng.integers(0, 5, 100), ["--ignore-index", "2"],
                "ignore_index 2 is also a class id")
    if name == "every target ignored":
        return rng.normal(size=(40, 3)), np.full(40, -100), [], "0/0 = NaN"
    if name == "non-finite logits":
        x = rng.normal(size=(80, 4))
        x[[3, 50]] = np.nan
        return x, rng.integers(0, 4, 80), [], "hold NaN or +inf"
    if name == "integer logits":
        return (rng.integers(-5, 5, (90, 4)).astype(np.int32), rng.integers(0, 4, 90), [],
                "int32")
    if name == "a class never seen":
        return (rng.normal(size=(400, 4)).astype(np.float32), rng.integers(0, 3, 400), [],
                "never appear as a target")
    raise AssertionError(name)


CASES = ["class axis", "probabilities as logits", "log-probabilities as logits",
         "1-based labels", "ignore_index is a class", "every target ignored",
         "non-finite logits", "integer logits", "a class never seen"]


@pytest.mark.parametrize("name", CASES)
def test_default_dask_and_merge_print_and_say_the_same(tmp_path, monkeypatch, name):
    from ce_cli.run import dask_engine

    x, t, options, fragment = _case(name)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    (tmp_path / "xs").mkdir()
    (tmp_path / "ts").mkdir()
    cut = x.shape[0] // 3
    for i, rows in enumerate((slice(0, cut), slice(cut, None))):
        np.save(tmp_path / "xs" / f"s{i}.npy", x[rows])
        np.save(tmp_path / "ts" / f"s{i}.npy", t[rows])
    # the single .npy file runs as several row-range tasks
    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", max(1, x[0].size * 17))
    args = [*options, "--format", "plain"]
    default = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", *args)
    assert fragment in default.stderr, default.stderr
    if x.dtype.kind == "f":  # the oracle, where torch takes the input as it is
        axis_options = dict(ignore_index=int(options[1])) if options else {}
        want = torch_ce(x, t, **axis_options)
        assert float(default.stdout) == pytest.approx(float(want), rel=1e-6, nan_ok=True)

    engines = {
        "dask, row ranges": run("compute", tmp_path / "x.npy", tmp_path / "t.npy", *args,
                                "--engine", "dask"),
        "dask, shards": run("compute", tmp_path / "xs", tmp_path / "ts", *args,
                            "--engine", "dask"),
    }
    parts = []
    for i in range(2):
        part = tmp_path / f"part{i}.json"
        run("compute", tmp_path / "xs" / f"s{i}.npy", tmp_path / "ts" / f"s{i}.npy",
            *options, "-q", "--partial", part)
        parts.append(part)
    engines["shards + merge"] = run("merge", *parts, "--format", "plain")
    for engine, result in engines.items():
        assert result.stderr == default.stderr, (engine, result.stderr, default.stderr)
        if x.dtype == np.float32:
            assert result.stdout == default.stdout, (engine, result.stdout, default.stdout)
        else:  # float64 sums cut elsewhere (chunks, tasks, shards) may differ in an ulp
            got, want = np.float64(result.stdout), np.float64(default.stdout)
            np.testing.assert_array_max_ulp(got, want, maxulp=2)


def test_strict_fails_alike_on_every_engine(tmp_path):
    x, t, _, _ = _case("1-based labels")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--strict", exit_code=1)
    run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--strict", "--engine", "dask",
        exit_code=1)
    run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "-q", "--partial",
        tmp_path / "p.json")
    run("merge", tmp_path / "p.json", "--strict", exit_code=1)
