"""``--engine dask``: the same numbers as the default engine, locally and on a cluster."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_error_line, run, torch_ce

pytest.importorskip("dask")
pytestmark = pytest.mark.filterwarnings("ignore")  # distributed's own deprecations


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(21)
    x = rng.normal(size=(900, 7)).astype(np.float32)
    t = rng.integers(0, 7, size=900)
    t[::13] = -100
    (tmp_path / "pq").mkdir()
    for i, a in enumerate(range(0, 900, 100)):
        cols = {f"l{c}": x[a:a + 100, c] for c in range(7)}
        cols["label"] = t[a:a + 100]
        pq.write_table(pa.table(cols), tmp_path / "pq" / f"s{i:02d}.parquet")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    return x, t, tmp_path


def _json(*args):
    return json.loads(run(*args, "--format", "json").stdout)


def test_threads_equal_default_engine_and_torch(shards, monkeypatch):
    x, t, d = shards
    from ce_cli import dask_engine

    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", 7 * 64)  # a .npy in 15 row ranges
    opts = ["--weight", "1,2,3,1,1,0.5,2", "--label-smoothing", "0.1"]
    w = np.array([1, 2, 3, 1, 1, 0.5, 2], dtype=np.float32)
    want = float(torch_ce(x, t, weight=w, label_smoothing=0.1))
    for args in (["compute", d / "pq", "--target-column", "label"],
                 ["compute", d / "x.npy", d / "t.npy"]):
        default = _json(*args, *opts)
        dask = _json(*args, *opts, "--engine", "dask")
        assert dask["loss"] == pytest.approx(default["loss"], rel=1e-6)
        assert dask["loss"] == pytest.approx(want, rel=2e-5)
        assert dask["counted"] == default["counted"] == int((t != -100).sum())
        assert dask["metrics"]["accuracy"] == default["metrics"]["accuracy"]


def test_distributed_local_cluster_with_two_workers(shards):
    distributed = pytest.importorskip("distributed")
    x, t, d = shards
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        got = _json("compute", d / "pq", "--target-column", "label", "--engine", "dask",
                    "--scheduler", cluster.scheduler_address)
        with distributed.Client(cluster) as client:
            workers = client.run(lambda: 1)
    assert len(workers) == 2
    default = _json("compute", d / "pq", "--target-column", "label")
    assert got["loss"] == pytest.approx(default["loss"], rel=1e-6)
    assert got["loss"] == pytest.approx(float(torch_ce(x, t)), rel=2e-5)
    assert got["positions"] == 900


def test_bad_shard_on_dask_is_a_located_error(shards):
    _, _, d = shards
    (d / "pq" / "s03.parquet").write_bytes(b"PAR1 this is not parquet")
    result = run("compute", d / "pq", "--target-column", "label", "--engine", "dask",
                 exit_code=2)
    assert_one_error_line(result, "s03.parquet")


def test_without_the_extra_says_how_to_install(shards, monkeypatch):
    _, _, d = shards
    from ce_cli import dask_engine

    monkeypatch.setattr(dask_engine, "available", lambda: False)
    result = run("compute", d / "x.npy", d / "t.npy", "--engine", "dask", exit_code=2)
    assert_one_error_line(result, "pip install 'ce-loss[dask]'")


def test_dask_refuses_per_sample_output(shards):
    _, _, d = shards
    result = run("compute", d / "x.npy", d / "t.npy", "--engine", "dask", "--reduction",
                 "none", exit_code=2)
    assert_one_error_line(result, "--engine dask")
