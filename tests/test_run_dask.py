"""``--engine dask``: the same numbers as the default engine, locally and on a cluster."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_error_line, json_run, run, save, torch_ce

pytest.importorskip("dask")
pytestmark = pytest.mark.filterwarnings("ignore")  # distributed's own deprecations


#: threads meant to live as long as the process: the kernel's pool, and distributed's
#: one offload executor (a module global it creates once and reuses)
_PROCESS_WIDE = ("ce-loss", "Dask-Offload")


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every Client and cluster a test (or ce-loss) made is closed when it ends, and its
    threads are gone, so the next test starts from a clean process."""
    import gc
    import threading
    import time

    before = {t.ident for t in threading.enumerate()}
    yield
    gc.collect()
    try:
        from distributed.client import _global_clients
    except ImportError:
        return
    assert not list(_global_clients.values()), "a Dask Client was left open"
    deadline = time.monotonic() + 10
    while True:
        left = [t.name for t in threading.enumerate() if t.ident not in before
                and not t.name.startswith(_PROCESS_WIDE) and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"threads left running: {left}"


@pytest.fixture
def environment_restored():
    """The environment as it was before the test. A LocalCluster of worker processes sets
    OMP_NUM_THREADS=1, PYTHONHASHSEED, MALLOC_TRIM_THRESHOLD_, ... in this process's
    environment for the workers its nannies start, and leaves them there."""
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update(saved)


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
    save(tmp_path, x, t)
    return x, t, tmp_path


def test_threads_equal_default_engine_and_torch(shards, monkeypatch):
    x, t, d = shards
    from ce_cli.run import dask_engine

    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", 7 * 64)  # a .npy in 15 row ranges
    assert len(dask_engine.plan(str(d / "x.npy"), str(d / "t.npy"))) == 15
    opts = ["--weight", "1,2,3,1,1,0.5,2", "--label-smoothing", "0.1"]
    w = np.array([1, 2, 3, 1, 1, 0.5, 2], dtype=np.float32)
    want = float(torch_ce(x, t, weight=w, label_smoothing=0.1))
    for args in (["compute", d / "pq", "--target-column", "label"],
                 ["compute", d / "x.npy", d / "t.npy"]):
        default = json_run(*args, *opts)[0]
        dask = json_run(*args, *opts, "--engine", "dask")[0]
        assert dask["loss"] == pytest.approx(default["loss"], rel=1e-6)
        assert dask["loss"] == pytest.approx(want, rel=2e-5)
        assert dask["counted"] == default["counted"] == int((t != -100).sum())
        assert dask["metrics"]["accuracy"] == default["metrics"]["accuracy"]


@pytest.mark.slow
def test_distributed_local_cluster_with_two_workers(shards, environment_restored):
    distributed = pytest.importorskip("distributed")
    x, t, d = shards
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        got = json_run("compute", d / "pq", "--target-column", "label", "--engine", "dask",
                       "--scheduler", cluster.scheduler_address)[0]
        with distributed.Client(cluster) as client:
            workers = client.run(lambda: 1)
    assert len(workers) == 2
    default = json_run("compute", d / "pq", "--target-column", "label")[0]
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
    from ce_cli.run import dask_engine

    monkeypatch.setattr(dask_engine, "available", lambda: False)
    result = run("compute", d / "x.npy", d / "t.npy", "--engine", "dask", exit_code=2)
    assert_one_error_line(result, "pip install 'ce-loss[dask]'")


def test_dask_refuses_per_sample_output(shards):
    _, _, d = shards
    result = run("compute", d / "x.npy", d / "t.npy", "--engine", "dask", "--reduction",
                 "none", exit_code=2)
    assert_one_error_line(result, "--engine dask")


@pytest.mark.slow
def test_a_port_that_is_not_a_scheduler_gives_up_in_time(shards, monkeypatch):
    """Something listens but never speaks Dask: exit 2 within the connect timeout."""
    pytest.importorskip("distributed")
    import socket
    import time

    from ce_cli.run import dask_engine

    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT", 1.0)
    _, _, d = shards
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        result = run("compute", d / "x.npy", d / "t.npy", "--engine", "dask", "--scheduler",
                     address, exit_code=2)
        assert time.monotonic() - start < 30
    assert_one_error_line(result, "cannot reach the Dask scheduler", address)


@pytest.mark.slow
@pytest.mark.parametrize("address, why", [
    ("notaurl", "no port"), ("tcp://127.0.0.1", "no port"), ("foo://x:1", "unknown protocol"),
    ("tcp://127.0.0.1:1", "refused"), ("tcp://[::1", "no port"),
])
def test_unusable_addresses_after_a_cluster_ran_in_this_process(shards, address, why):
    """The order CI hit: a LocalCluster and its Client came and went, then bad addresses."""
    distributed = pytest.importorskip("distributed")
    _, _, d = shards
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        pass
    for _ in range(2):
        result = run("compute", d / "x.npy", d / "t.npy", "--engine", "dask", "--scheduler",
                     address, exit_code=2)
        assert_one_error_line(result, "cannot reach the Dask scheduler", why)


def _saved_sequences(folder, shape, dtype, seed):
    """(B, L, V) logits of ``dtype`` and (B, L) labels, sequence 2 padded with -100 from
    two thirds on, saved as x.npy and t.npy in ``folder``."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 2).astype(dtype)
    t = rng.integers(0, shape[-1], size=shape[:2])
    t[2, shape[1] * 2 // 3:] = -100
    np.save(folder / "x.npy", x)
    np.save(folder / "t.npy", t)
    return x, t


@pytest.mark.parametrize("shift", [False, True])
def test_bfloat16_npy_in_row_ranges_is_the_default_engines_bfloat16_result(tmp_path,
                                                                           monkeypatch, shift):
    """An ml_dtypes bfloat16 .npy cut into row ranges: every task reads only its rows
    (no task holds the whole file), keeps the file's bfloat16, and the merged result is
    the default engine's (and torch's) bfloat16 value."""
    import ml_dtypes
    import torch

    from ce_cli.run import dask_engine

    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", 3 * 20 * 9)  # 3 sequences a task
    x, t = _saved_sequences(tmp_path, (10, 20, 9), ml_dtypes.bfloat16, seed=9)
    args = ["compute", tmp_path / "x.npy", tmp_path / "t.npy", "--class-axis", "-1",
            *(["--shift"] if shift else [])]
    default = json_run(*args)[0]
    dask = json_run(*args, "--engine", "dask")[0]
    tx = torch.from_numpy(x.astype(np.float32)).bfloat16()
    tt = torch.from_numpy(t)
    if shift:
        v = x.shape[-1]
        want = torch.nn.functional.cross_entropy(tx[:, :-1].reshape(-1, v),
                                                 tt[:, 1:].reshape(-1))
    else:
        want = torch.nn.functional.cross_entropy(tx.movedim(-1, 1), tt)
    assert default["dtype"] == dask["dtype"] == "bfloat16"
    assert default["loss"] == float(want)
    assert dask["counted"] == default["counted"]
    # merged shards fall back from torch's bfloat16 cascade to the float sums rounded
    # once: within a bfloat16 ulp
    assert abs(dask["loss"] - float(want)) <= 2.0 ** (np.floor(np.log2(float(want))) - 7)


def test_long_unshifted_sequences_in_tasks_are_runs_of_tokens(tmp_path, monkeypatch):
    """--class-axis -1 without --shift on Dask: each task reads its sequences as runs of
    tokens when one is longer than a block, with the default engine's result and
    per-sequence rows."""
    import torch

    from ce_cli.options import ReadOptions
    from ce_cli.run import dask_engine, pipeline

    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", 4 * 30 * 8)  # 4 sequences a task
    monkeypatch.setattr(pipeline, "READ_ELEMENTS", 5 * 8)  # a block: 5 tokens
    x, t = _saved_sequences(tmp_path, (9, 30, 8), np.float32, seed=4)
    tasks = dask_engine.plan(str(tmp_path / "x.npy"), str(tmp_path / "t.npy"))
    assert len(tasks) == 3
    read = ReadOptions(str(tmp_path / "x.npy"), str(tmp_path / "t.npy"))
    xs, _ = dask_engine._open(tasks[1], read, -1, tokens=True)
    assert xs.tokens == (4, 30) and xs.row_shape == (8,)
    args = ["compute", tmp_path / "x.npy", tmp_path / "t.npy", "--class-axis", "-1"]
    default = json_run(*args, "--per-sequence", tmp_path / "a.csv")[0]
    dask = json_run(*args, "--engine", "dask", "--per-sequence", tmp_path / "b.csv")[0]
    want = torch.nn.functional.cross_entropy(torch.from_numpy(x).movedim(-1, 1),
                                             torch.from_numpy(t))
    assert dask["loss"] == pytest.approx(default["loss"], rel=1e-6)
    assert dask["loss"] == pytest.approx(float(want), rel=1e-6)
    a = np.genfromtxt(tmp_path / "a.csv", delimiter=",", names=True)
    b = np.genfromtxt(tmp_path / "b.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    np.testing.assert_allclose(a["nll_sum"], b["nll_sum"], rtol=1e-6)
