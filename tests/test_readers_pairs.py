"""One file holding both arrays (issue 14): ``ce-loss compute FILE`` with no TARGETS takes
the targets by their conventional name (a table's label column, ...) and says which."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_error_line, run, torch_ce


@pytest.fixture
def data():
    rng = np.random.default_rng(31)
    return rng.normal(size=(50, 4)), rng.integers(0, 4, 50)


@pytest.mark.parametrize("name", ["label", "labels", "Target", "targets"])
def test_a_parquet_table_with_a_label_column(tmp_path, data, name):
    x, t = data
    cols = {f"l{c}": x[:, c] for c in range(4)}
    cols[name] = t
    pq.write_table(pa.table(cols), tmp_path / "p.parquet")
    result = run("compute", tmp_path / "p.parquet")
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=1e-12)
    assert result.stderr == (f"ce-loss: note: {tmp_path / 'p.parquet'}: took the targets from "
                             f"the column {name!r} (--target-column NAME picks another)\n")


def test_a_csv_with_a_label_column(tmp_path, data):
    x, t = data
    lines = ["a,b,c,d,label"] + [",".join(repr(float(v)) for v in r) + f",{k}"
                                 for r, k in zip(x, t)]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    result = run("compute", tmp_path / "p.csv")
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=1e-12)
    assert "took the targets from the column 'label'" in result.stderr


def test_a_table_without_a_label_column_says_how_to_name_one(tmp_path, data):
    x, _ = data
    pq.write_table(pa.table({f"l{c}": x[:, c] for c in range(4)}), tmp_path / "p.parquet")
    result = run("compute", tmp_path / "p.parquet", exit_code=2)
    assert_one_error_line(result, "missing TARGETS", "--target-column NAME",
                          "the columns are 'l0', 'l1', 'l2', 'l3'")


def test_a_two_array_file_of_another_kind_still_needs_targets(tmp_path, data):
    x, _ = data
    np.save(tmp_path / "x.npy", x)
    result = run("compute", tmp_path / "x.npy", exit_code=2)
    assert_one_error_line(result, "missing TARGETS")
