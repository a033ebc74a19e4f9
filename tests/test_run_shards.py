"""Sharded inputs: a folder or glob of files is one dataset, with errors naming the shard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_error_line, run, torch_ce


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    t = rng.integers(0, 6, size=120)
    t[::17] = -100
    return x, t


CUTS = [(0, 40), (40, 41), (41, 120)]


def _npy_shards(tmp_path, x, t):
    (tmp_path / "x").mkdir()
    (tmp_path / "t").mkdir()
    for i, (a, b) in enumerate(CUTS):
        np.save(tmp_path / "x" / f"part-{i:03d}.npy", x[a:b])
        np.save(tmp_path / "t" / f"part-{i:03d}.npy", t[a:b])


def test_npy_folders_pair_by_name_and_equal_one_file(tmp_path, data):
    x, t = data
    _npy_shards(tmp_path, x, t)
    for reduction in ("mean", "sum"):
        got = run("compute", tmp_path / "x", tmp_path / "t", "--reduction", reduction)
        assert float(got.stdout) == pytest.approx(float(torch_ce(x, t, reduction=reduction)),
                                                  rel=2e-6)
    none = run("compute", f"{tmp_path}/x/*.npy", f"{tmp_path}/t/part-*.npy",
               "--reduction", "none").stdout.split()
    np.testing.assert_allclose(np.array(none, dtype=np.float32),
                               torch_ce(x, t, reduction="none"), rtol=2e-6)


def test_parquet_folder_with_target_column(tmp_path, data):
    x, t = data
    (tmp_path / "pq").mkdir()
    for i, (a, b) in enumerate(CUTS):
        cols = {f"logit_{c}": x[a:b, c] for c in range(6)}
        cols["label"] = t[a:b]
        pq.write_table(pa.table(cols), tmp_path / "pq" / f"shard{i}.parquet")
    got = run("compute", tmp_path / "pq", "--target-column", "label", "--format", "json")
    import json

    doc = json.loads(got.stdout)
    assert doc["loss"] == pytest.approx(float(torch_ce(x, t)), rel=2e-6)
    assert doc["positions"] == 120 and doc["ignored"] == int((t == -100).sum())


def test_shard_with_other_class_count_is_named(tmp_path, data):
    x, t = data
    _npy_shards(tmp_path, x, t)
    np.save(tmp_path / "x" / "part-001.npy", np.zeros((1, 5), np.float32))
    result = run("compute", tmp_path / "x", tmp_path / "t", exit_code=2)
    assert_one_error_line(result, "part-001.npy", "5 classes", "part-000.npy has 6")


def test_shards_that_do_not_pair_are_named(tmp_path, data):
    x, t = data
    _npy_shards(tmp_path, x, t)
    np.save(tmp_path / "t" / "part-000.npy", t[:39])
    np.save(tmp_path / "t" / "part-001.npy", t[39:41])
    result = run("compute", tmp_path / "x", tmp_path / "t", exit_code=2)
    assert_one_error_line(result, "t/part-000.npy", "39 targets for the 40 rows")


def test_empty_folder_and_unmatched_glob(tmp_path, data):
    (tmp_path / "empty").mkdir()
    x, t = data
    np.save(tmp_path / "t.npy", t)
    assert_one_error_line(run("compute", tmp_path / "empty", tmp_path / "t.npy", exit_code=2),
                          "holds no files")
    assert_one_error_line(run("compute", f"{tmp_path}/nothing*.npy", tmp_path / "t.npy",
                              exit_code=2), "matches no files")
