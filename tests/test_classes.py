"""Class names (issue 14, item 7): string labels matched to the logits' column names or to
``--classes``, the names in every output, and a CSV header of integer class names (item 9).

The oracles are independent of ce-loss: scikit-learn's ``log_loss`` on the string labels
(its ``y_pred`` columns are in sorted label order, as a fitted classifier's ``classes_``)
and torch on the integer mapping.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_one_error_line, close, json_run, run, torch_ce

sklearn_metrics = pytest.importorskip("sklearn.metrics")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

NAMES = ["cat", "dog", "bird"]


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * 2
    t = rng.integers(0, 3, n)
    t[:3] = [0, 1, 2]  # every class once at least
    return x, t


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _csv(path, matrix: np.ndarray, labels: list[str], header=NAMES) -> None:
    lines = [",".join([*header, "label"])]
    lines += [",".join([*(repr(float(v)) for v in row), lab]) for row, lab in zip(matrix, labels)]
    path.write_text("\n".join(lines) + "\n")


def _sklearn(labels: list[str], proba: np.ndarray, model_order: list[str]) -> float:
    """log_loss of ``proba`` whose columns are the classes in ``model_order``."""
    order = np.argsort(model_order)  # sklearn reads y_pred's columns in sorted label order
    return float(sklearn_metrics.log_loss(labels, proba[:, order],
                                          labels=sorted(model_order)))


def test_csv_string_labels_match_sklearn_and_torch(tmp_path):
    x, t = _data()
    labels = [NAMES[i] for i in t]
    p = _softmax(x)
    _csv(tmp_path / "probs.csv", p, labels)
    _csv(tmp_path / "logits.csv", x, labels)
    got = run("compute", tmp_path / "probs.csv", "--target-column", "label",
              "--input-kind", "probs").stdout
    close(got, _sklearn(labels, p, NAMES), rtol=1e-12)
    got = run("compute", tmp_path / "logits.csv", "--target-column", "label").stdout
    close(got, torch_ce(x, t), rtol=1e-12)
    # sum and none follow the same mapping
    got = run("compute", tmp_path / "logits.csv", "--target-column", "label",
              "--reduction", "none").stdout.split()
    np.testing.assert_allclose([float(v) for v in got], torch_ce(x, t, reduction="none"),
                               rtol=1e-12)


def test_labels_in_their_own_file(tmp_path):
    x, t = _data(seed=1)
    (tmp_path / "x.csv").write_text(",".join(NAMES) + "\n" + "".join(
        ",".join(repr(float(v)) for v in row) + "\n" for row in x))
    (tmp_path / "y.csv").write_text("label\n" + "".join(f"{NAMES[i]}\n" for i in t))
    got = run("compute", tmp_path / "x.csv", tmp_path / "y.csv").stdout
    close(got, torch_ce(x, t), rtol=1e-12)


def test_parquet_dictionary_labels(tmp_path):
    x, t = _data(n=100, seed=2)
    labels = [NAMES[i] for i in t]
    label_col = pa.array(labels).dictionary_encode()
    # a categorical whose dictionary is in first-seen order, not the classes' order
    label_col = pa.DictionaryArray.from_arrays(
        pa.array([["dog", "bird", "cat"].index(v) for v in labels], pa.int8()),
        pa.array(["dog", "bird", "cat"]))
    table = pa.table({"cat": x[:, 0], "dog": x[:, 1], "bird": x[:, 2], "label": label_col})
    assert pa.types.is_dictionary(table.schema.field("label").type)
    pq.write_table(table, tmp_path / "preds.parquet", row_group_size=17)
    got = run("compute", tmp_path / "preds.parquet", "--target-column", "label").stdout
    close(got, torch_ce(x, t), rtol=1e-12)
    p = _softmax(x)
    close(got, _sklearn(labels, p, NAMES), rtol=1e-9)


def test_parquet_plain_string_labels_and_weight(tmp_path):
    x, t = _data(n=30, seed=3)
    table = pa.table({"cat": x[:, 0], "dog": x[:, 1], "bird": x[:, 2],
                      "label": pa.array([NAMES[i] for i in t], pa.large_string())})
    pq.write_table(table, tmp_path / "p.parquet")
    got = run("compute", tmp_path / "p.parquet", "--target-column", "label",
              "--weight", "1,2,0.5").stdout
    close(got, torch_ce(x, t, weight=np.array([1, 2, 0.5])), rtol=1e-12)


def test_classes_option_wins_over_column_order(tmp_path):
    """The columns are in the model's classes_ order (bird, cat, dog, sorted, as a fitted
    scikit-learn classifier has), but the header was written cat,dog,bird: only --classes
    gives the right loss, and without it the column names decide (a different number)."""
    x, t_model = _data(seed=4)
    model_order = ["bird", "cat", "dog"]
    labels = [model_order[i] for i in t_model]
    p = _softmax(x)
    _csv(tmp_path / "probs.csv", p, labels, header=NAMES)
    right = _sklearn(labels, p, model_order)
    got = run("compute", tmp_path / "probs.csv", "--target-column", "label",
              "--input-kind", "probs", "--classes", ",".join(model_order)).stdout
    close(got, right, rtol=1e-12)
    # the column-order mapping: file column j is NAMES[j]
    by_columns = run("compute", tmp_path / "probs.csv", "--target-column", "label",
                     "--input-kind", "probs").stdout
    close(by_columns, _sklearn(labels, p, NAMES), rtol=1e-12)
    assert abs(float(by_columns) - right) > 1e-3
    # and torch agrees on the integer mapping each gives
    _csv(tmp_path / "logits.csv", x, labels, header=NAMES)
    got = run("compute", tmp_path / "logits.csv", "--target-column", "label",
              "--classes", ",".join(model_order)).stdout
    close(got, torch_ce(x, t_model), rtol=1e-12)
    t_cols = np.array([NAMES.index(lab) for lab in labels])
    got = run("compute", tmp_path / "logits.csv", "--target-column", "label").stdout
    close(got, torch_ce(x, t_cols), rtol=1e-12)


def test_a_label_that_is_not_a_class(tmp_path):
    x, t = _data(n=10, seed=5)
    labels = [NAMES[i] for i in t]
    labels[5] = "cow"
    _csv(tmp_path / "labels.csv", x, labels)
    result = run("compute", tmp_path / "labels.csv", "--target-column", "label", exit_code=None)
    assert result.exit_code != 0
    assert_one_error_line(result, "line 7", "'cow' is not one of the classes cat, dog, bird",
                          "pass --classes in your model's order")
    # in a binary table: the row index
    table = pa.table({"cat": x[:, 0], "dog": x[:, 1], "bird": x[:, 2],
                      "label": pa.array(labels).dictionary_encode()})
    pq.write_table(table, tmp_path / "p.parquet")
    result = run("compute", tmp_path / "p.parquet", "--target-column", "label", exit_code=None)
    assert_one_error_line(result, "row index 5", "'cow'", "not one of the classes")


def test_string_labels_without_names_say_pass_classes(tmp_path):
    x, t = _data(n=6, seed=6)
    table = pa.table({"logits": pa.array(list(x), pa.list_(pa.float64())),
                      "label": [NAMES[i] for i in t]})
    pq.write_table(table, tmp_path / "p.parquet")
    result = run("compute", tmp_path / "p.parquet", "--target-column", "label", exit_code=None)
    assert result.exit_code != 0
    assert_one_error_line(result, "class names", "pass --classes")
    got = run("compute", tmp_path / "p.parquet", "--target-column", "label",
              "--classes", "cat,dog,bird").stdout
    close(got, torch_ce(x, t), rtol=1e-12)


def test_classes_must_name_each_class_once(tmp_path):
    x, t = _data(n=6, seed=7)
    _csv(tmp_path / "a.csv", x, [NAMES[i] for i in t])
    result = run("compute", tmp_path / "a.csv", "--target-column", "label",
                 "--classes", "cat,dog", exit_code=None)
    assert result.exit_code != 0
    assert "2 class names" in result.stderr and "3 classes" in result.stderr
    result = run("compute", tmp_path / "a.csv", "--target-column", "label",
                 "--classes", "cat,cat,dog", exit_code=None)
    assert result.exit_code != 0 and "more than once" in result.stderr


def test_json_names_the_classes(tmp_path):
    x, t = _data(n=12, seed=8)
    labels = [NAMES[i] for i in t]
    _csv(tmp_path / "a.csv", x, labels)
    doc, _ = json_run("compute", tmp_path / "a.csv", "--target-column", "label",
                      "--rows", "4", "--worst", "3")
    assert doc["classes"] == NAMES
    assert [r["target"] for r in doc["rows"]] == labels[:4]
    assert [r["top"][0]["class"] for r in doc["rows"]] == [NAMES[i] for i in x[:4].argmax(1)]
    for c in doc["metrics"]["per_class"]:
        assert c["class_name"] == NAMES[c["class"]]
    p = _softmax(x)
    for w in doc["metrics"]["worst"]:
        assert w["target_name"] == labels[w["index"]]
        assert w["predicted_name"] == NAMES[int(np.argmax(p[w["index"]]))]


def test_table_names_the_classes(tmp_path):
    x, t = _data(n=12, seed=9)
    _csv(tmp_path / "a.csv", x, [NAMES[i] for i in t])
    out = run("compute", tmp_path / "a.csv", "--target-column", "label", "--format", "table",
              "--no-plots", env={"COLUMNS": "120"}).stdout
    assert "p[cat]" in out and "p[dog]" in out and "p[bird]" in out
    assert "p[0]" not in out
    per_class = out.split("per class")[1]
    assert all(name in per_class for name in NAMES)


def test_softmax_file_columns_are_the_classes(tmp_path):
    x, t = _data(n=8, seed=10)
    _csv(tmp_path / "a.csv", x, [NAMES[i] for i in t])
    run("compute", tmp_path / "a.csv", "--target-column", "label",
        "--softmax", tmp_path / "p.parquet")
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == NAMES
    np.testing.assert_allclose(np.column_stack([table[n].to_numpy() for n in NAMES]),
                               _softmax(x), rtol=1e-12)


def test_integer_labels_unchanged(tmp_path):
    """Integer labels beside named logits columns: the output is as it was (indices), unless
    --classes names them; the loss is the same either way."""
    x, t = _data(n=10, seed=11)
    lines = ["cat,dog,bird,label"] + [",".join([*(repr(float(v)) for v in row), str(int(k))])
                                       for row, k in zip(x, t)]
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    doc, _ = json_run("compute", tmp_path / "a.csv", "--target-column", "label", "--rows", "3")
    close(doc["loss"], torch_ce(x, t), rtol=1e-12)
    assert "classes" not in doc
    assert [r["target"] for r in doc["rows"]] == [int(v) for v in t[:3]]
    assert "class_name" not in doc["metrics"]["per_class"][0]
    assert "target_name" not in doc["metrics"]["worst"][0]
    run("compute", tmp_path / "a.csv", "--target-column", "label",
        "--softmax", tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "p0,p1,p2"
    doc, _ = json_run("compute", tmp_path / "a.csv", "--target-column", "label", "--rows", "3",
                      "--classes", "x,y,z")
    close(doc["loss"], torch_ce(x, t), rtol=1e-12)
    assert doc["classes"] == ["x", "y", "z"]
    assert [r["target"] for r in doc["rows"]] == [["x", "y", "z"][i] for i in t[:3]]


def test_jsonl_and_tsv_string_labels(tmp_path):
    x, t = _data(n=9, seed=12)
    rows = [{"cat": float(r[0]), "dog": float(r[1]), "bird": float(r[2]), "label": NAMES[k]}
            for r, k in zip(x, t)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = run("compute", tmp_path / "a.jsonl", "--target-column", "label").stdout
    close(got, torch_ce(x, t), rtol=1e-12)
    lines = ["cat\tdog\tbird\tlabel"] + ["\t".join([*(repr(float(v)) for v in r), NAMES[k]])
                                         for r, k in zip(x, t)]
    (tmp_path / "a.tsv").write_text("\n".join(lines) + "\n")
    got = run("compute", tmp_path / "a.tsv", "--target-column", "label").stdout
    close(got, torch_ce(x, t), rtol=1e-12)


# -- a CSV header of integer class names (item 9) ---------------------------------------------


def test_integer_header_over_probabilities_is_a_header(tmp_path):
    rng = np.random.default_rng(13)
    p = rng.dirichlet([1, 1, 1], size=5)
    t = np.array([0, 2, 1, 1, 0])
    (tmp_path / "p.csv").write_text("1,2,3\n" + "".join(
        ",".join(repr(float(v)) for v in row) + "\n" for row in p))
    np.save(tmp_path / "t.npy", t)
    result = run("compute", tmp_path / "p.csv", tmp_path / "t.npy", "--input-kind", "probs")
    close(result.stdout, sklearn_metrics.log_loss(t, p, labels=[0, 1, 2]), rtol=1e-12)
    assert "header" in result.stderr


def test_integer_first_row_over_logits_suggests_header(tmp_path):
    x = np.array([[-0.5, 1.5, 0.25], [2.0, -1.0, 0.5]])
    (tmp_path / "x.csv").write_text("1,2,3\n" + "".join(
        ",".join(repr(float(v)) for v in row) + "\n" for row in x))
    np.save(tmp_path / "t.npy", np.array([1, 0]))
    result = run("compute", tmp_path / "x.csv", tmp_path / "t.npy", exit_code=None)
    assert result.exit_code != 0
    assert_one_error_line(result, "3 rows of logits", "pass --header")
    got = run("compute", tmp_path / "x.csv", tmp_path / "t.npy", "--header").stdout
    close(got, torch_ce(x, np.array([1, 0])), rtol=1e-12)


def test_whole_number_rows_stay_data(tmp_path):
    """1,2,3 over whole numbers (toy logits) is data, as before."""
    (tmp_path / "x.csv").write_text("1,2,3\n0,1,0\n")
    np.save(tmp_path / "t.npy", np.array([2, 1]))
    got = run("compute", tmp_path / "x.csv", tmp_path / "t.npy").stdout
    close(got, torch_ce(np.array([[1.0, 2, 3], [0, 1, 0]]), np.array([2, 1])), rtol=1e-12)


def test_sharded_tables_with_string_labels(tmp_path):
    """Every shard's labels are matched to the same classes (--classes reaches them all)."""
    folder = tmp_path / "shards"
    folder.mkdir()
    xs, ts = [], []
    for k in range(3):
        x, t = _data(n=7, seed=20 + k)
        xs.append(x)
        ts.append(t)
        pq.write_table(pa.table({"cat": x[:, 0], "dog": x[:, 1], "bird": x[:, 2],
                                 "label": [NAMES[i] for i in t]}), folder / f"p{k}.parquet")
    x, t = np.vstack(xs), np.concatenate(ts)
    close(run("compute", folder, "--target-column", "label").stdout, torch_ce(x, t),
          rtol=1e-12)
    order = ["bird", "cat", "dog"]
    t_given = np.array([order.index(NAMES[i]) for i in t])
    close(run("compute", folder, "--target-column", "label", "--classes", ",".join(order)
              ).stdout, torch_ce(x, t_given), rtol=1e-12)


def test_dask_engine_reads_and_names_string_labels(tmp_path):
    pytest.importorskip("dask")
    x, t = _data(n=20, seed=30)
    _csv(tmp_path / "a.csv", x, [NAMES[i] for i in t])
    doc, _ = json_run("compute", tmp_path / "a.csv", "--target-column", "label",
                      "--engine", "dask")
    close(doc["loss"], torch_ce(x, t), rtol=1e-12)
    assert doc["classes"] == NAMES
    result = run("compute", tmp_path / "a.csv", "--target-column", "label", "--engine", "dask",
                 "--classes", "a,b", exit_code=None)
    assert_one_error_line(result, "2 class names", "3 classes")


def test_partials_keep_the_names_and_merge_refuses_another_order(tmp_path):
    x, t = _data(n=20, seed=31)
    labels = [NAMES[i] for i in t]
    _csv(tmp_path / "a.csv", x[:10], labels[:10])
    _csv(tmp_path / "b.csv", x[10:], labels[10:])
    _csv(tmp_path / "c.csv", x[10:, [2, 0, 1]], labels[10:], header=["bird", "cat", "dog"])
    for name in "abc":
        run("compute", tmp_path / f"{name}.csv", "--target-column", "label",
            "--partial", tmp_path / f"{name}.json")
    doc, _ = json_run("merge", tmp_path / "a.json", tmp_path / "b.json")
    close(doc["loss"], torch_ce(x, t), rtol=1e-12)
    assert doc["classes"] == NAMES
    result = run("merge", tmp_path / "a.json", tmp_path / "c.json", exit_code=None)
    assert result.exit_code != 0
    assert "classes are bird, cat, dog" in result.stderr
