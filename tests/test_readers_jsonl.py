"""JSON Lines (ce_cli/readers/jsonl.py): files written by Python's json module, read
through the command line and ``ce_cli.readers``, compared with torch; every bad line is
one located error naming its 1-based line."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_error_line, close, json_run, run, torch_ce

from ce_cli import readers
from ce_cli.errors import InputFileError
from ce_cli.readers import jsonl, open_source, open_table_pair, read_array

pytest.importorskip("torch")

RTOL, ATOL = 1e-9, 1e-12
N, C = 9, 4
RNG = np.random.default_rng(14)
X = RNG.standard_normal((N, C)) * 3
T = RNG.integers(0, C, N)
NAMES = ["cat", "dog", "eel", "fox"]


def write(path: Path, rows: list, blank: str = "") -> Path:
    """One ``json.dumps`` of each of ``rows`` per line (a str row is written as it is),
    with ``blank`` after each line."""
    with open(path, "w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n" + blank)
    return path


def list_rows(x=X, t=T, key="logits", target="label") -> list[dict]:
    return [{key: r.tolist(), target: int(k)} for r, k in zip(x, t)]


def loss(*args) -> float:
    doc, _ = json_run("compute", *args)
    return doc["loss"]


def want(x=X, t=T, **kw) -> float:
    return float(torch_ce(np.asarray(x, np.float64), np.asarray(t, np.int64), **kw))


# -- what works ---------------------------------------------------------------------------------


def test_list_column_and_integer_label(tmp_path):
    p = write(tmp_path / "eval.jsonl", [{"id": f"s{i}", **r} for i, r in enumerate(list_rows())])
    close(loss(p, "--target-column", "label"), want(), RTOL, ATOL)
    xs, ts = open_table_pair(str(p), target_column="label")
    np.testing.assert_array_equal(xs.read(), X)
    np.testing.assert_array_equal(ts.read(), T)
    assert ts.read().dtype == np.int64


def test_ndjson_suffix_and_no_final_newline(tmp_path):
    p = tmp_path / "eval.ndjson"
    p.write_text("\n".join(json.dumps(r) for r in list_rows()))
    close(loss(p, "--target-column", "label"), want(), RTOL, ATOL)


def test_label_column_read_by_default_from_a_second_file(tmp_path):
    x = write(tmp_path / "x.jsonl", [{"logits": r.tolist()} for r in X])
    t = write(tmp_path / "t.jsonl", [{"id": i, "label": int(k)} for i, k in enumerate(T)])
    close(loss(x, t), want(), RTOL, ATOL)
    close(loss(x, t, "--reduction", "sum"), want(reduction="sum"), RTOL, ATOL)


def test_probabilities_with_input_kind_probs(tmp_path):
    p = np.exp(X) / np.exp(X).sum(1, keepdims=True)
    f = write(tmp_path / "p.jsonl", list_rows(p, key="probs", target="target"))
    close(loss(f, "--target-column", "target", "--input-kind", "probs"), want(np.log(p)),
          1e-7, ATOL)


def test_probability_targets_as_a_list_column(tmp_path):
    p = np.exp(X) / np.exp(X).sum(1, keepdims=True)
    x = write(tmp_path / "x.jsonl", [{"logits": r.tolist()} for r in X])
    t = write(tmp_path / "t.jsonl", [{"probs": r.tolist()} for r in p])
    got = read_array(str(t), role="targets")
    np.testing.assert_array_equal(got, p)
    import torch
    import torch.nn.functional as F

    expect = F.cross_entropy(torch.tensor(X), torch.tensor(p)).item()
    close(loss(x, t), expect, RTOL, ATOL)


def test_one_field_per_class(tmp_path):
    rows = [{**{n: float(v) for n, v in zip(NAMES, r)}, "label": int(k)} for r, k in zip(X, T)]
    p = write(tmp_path / "eval.jsonl", rows)
    close(loss(p, "--target-column", "label"), want(), RTOL, ATOL)
    # the label is left out of the logits, with a note, when logits are read alone
    source = open_source(str(p), role="logits")
    np.testing.assert_array_equal(source.read(), X)
    assert any("'label'" in note for note in source.notes)


def test_logits_columns_pick_the_fields(tmp_path):
    rows = [{"id": i, **{f"logit_{j}": float(v) for j, v in enumerate(r)}, "other": 1.5,
             "extra": [1.0, 2.0], "label": int(k)} for i, (r, k) in enumerate(zip(X, T))]
    p = write(tmp_path / "eval.jsonl", rows)
    close(loss(p, "--target-column", "label", "--logits-columns", "logit_*"), want(), RTOL, ATOL)
    xs, _ = open_table_pair(str(p), target_column="label", logits_columns="logit_0,logit_2")
    np.testing.assert_array_equal(xs.read(), X[:, [0, 2]])
    xs, _ = open_table_pair(str(p), target_column="label", logits_columns="extra")
    np.testing.assert_array_equal(xs.read(), np.tile([1.0, 2.0], (N, 1)))


def test_numbers_whole_on_some_lines(tmp_path):
    # json writes 1 for an int and 1.0 for a float: a field holding both is numbers
    rows = [{"logits": [int(v) if j == 0 else float(v) for j, v in enumerate(r)],
             "label": float(k)} for r, k in zip(np.round(X), T)]
    p = write(tmp_path / "eval.jsonl", rows)
    close(loss(p, "--target-column", "label"), want(np.round(X)), RTOL, ATOL)


@pytest.mark.parametrize("n, c", [(2, 2), (1, 3), (257, 2), (50, 100)])
def test_shapes_and_ignore_index(tmp_path, n, c):
    rng = np.random.default_rng(n * c)
    x = rng.standard_normal((n, c))
    t = rng.integers(0, c, n)
    t[::3] = -100
    p = write(tmp_path / "eval.jsonl", list_rows(x, t))
    for red in ("mean", "sum"):
        close(loss(p, "--target-column", "label", "--reduction", red),
              want(x, t, reduction=red), RTOL, ATOL)
    out = run("compute", p, "--target-column", "label", "--reduction", "none",
              "--format", "plain").stdout.split()
    np.testing.assert_allclose(np.array(out, float), torch_ce(x, t, reduction="none"),
                               rtol=RTOL, atol=ATOL)


def test_blank_lines_are_skipped_and_errors_count_them(tmp_path):
    rows = list_rows()
    p = write(tmp_path / "eval.jsonl", rows, blank="\n  \n")
    close(loss(p, "--target-column", "label"), want(), RTOL, ATOL)
    source = open_source(str(p), role="logits", logits_columns="logits")
    assert [source.line_of(i) for i in range(3)] == [1, 4, 7]
    rows[2] = {"logits": [1.0, 2.0], "label": 0}
    p = write(tmp_path / "bad.jsonl", rows, blank="\n\n")
    result = run("compute", p, "--target-column", "label", exit_code=2)
    assert_one_error_line(result, "bad.jsonl, line 7, column 'logits'",
                          "holds 2 values but the first row holds 4")


def test_crlf_and_bom(tmp_path):
    p = tmp_path / "eval.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\r\n"
                                             for r in list_rows()))
    close(loss(p, "--target-column", "label"), want(), RTOL, ATOL)


# -- standard input -----------------------------------------------------------------------------


def test_stdin_json_is_read_as_json_lines(tmp_path):
    data = write(tmp_path / "eval.jsonl", list_rows()).read_bytes()
    doc = json.loads(run("compute", "-", "--target-column", "label", "--format", "json",
                         input=data).stdout)
    close(doc["loss"], want(), RTOL, ATOL)
    # leading blank lines and spaces before the first {
    doc = json.loads(run("compute", "-", "--target-column", "label", "--format", "json",
                         input=b"\n  \n" + data).stdout)
    close(doc["loss"], want(), RTOL, ATOL)
    assert readers.stdin_format(data) == "jsonl"
    assert readers.stdin_format(b"\xef\xbb\xbf" + data) == "jsonl"
    assert readers.stdin_format(b"logit_0,label\n1,2\n") == "csv"
    assert readers.stdin_format(b"[1, 2]\n") == "csv"


def test_stdin_logits_with_a_targets_file(tmp_path, monkeypatch):
    data = write(tmp_path / "x.jsonl", [{"logits": r.tolist()} for r in X]).read_bytes()
    t = write(tmp_path / "t.jsonl", [{"label": int(k)} for k in T])
    doc = json.loads(run("compute", "-", t, "--format", "json", input=data).stdout)
    close(doc["loss"], want(), RTOL, ATOL)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    np.testing.assert_array_equal(read_array("-", role="logits"), X)


def test_stdin_bad_line_is_located():
    data = b'{"logits": [1.0, 2.0], "label": 0}\n{"logits": [1.0, 2.0], "label": 0\n'
    result = run("compute", "-", "--target-column", "label", input=data, exit_code=2)
    assert_one_error_line(result, "<stdin>, line 2: is not valid JSON")


def test_csv_on_stdin_is_unchanged():
    result = run("compute", "-", "--target-column", "label", "--format", "json",
                 input=b"a,b,label\n1.5,0.5,1\n0.25,2.0,0\n")
    close(json.loads(result.stdout)["loss"], want([[1.5, 0.5], [0.25, 2.0]], [1, 0]),
          RTOL, ATOL)


# -- what is refused ----------------------------------------------------------------------------


def _bad(tmp_path, lines, *args, name="bad.jsonl"):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return run("compute", p, *(args or ("--target-column", "label")), exit_code=2)


OK = json.dumps({"logits": [0.5, 1.0, -1.0], "label": 1})


@pytest.mark.parametrize("line, fragments", [
    ('{"logits": [0.5, 1.0, -1.0], "label": 1', ["line 3: is not valid JSON"]),
    ("not json at all", ["line 3: is not valid JSON"]),
    ("[0.5, 1.0, -1.0]", ["line 3: holds an array, not a JSON object", "one object per line"]),
    ("42", ["line 3: holds a number, not a JSON object"]),
    ('{"logits": "0.5 1.0", "label": 1}', ["line 3, column 'logits'", "is a string"]),
    ('{"logits": [0.5, "x", 1.0], "label": 1}', ["line 3, column 'logits'", "'\"x\"'"]),
    ('{"logits": [0.5, 1.0, -1.0], "label": "cat"}', ["line 3, column 'label'", "'\"cat\"'"]),
    ('{"logits": [0.5, 1.0, -1.0], "label": true}', ["line 3, column 'label'"]),
    ('{"logits": [0.5, 1.0], "label": 1}', ["line 3, column 'logits': '[0.5, 1.0]' holds 2 "
                                            "values but the first row holds 3"]),
    ('{"logits": [0.5, 1.0, -1.0]}', ["line 3: the field 'label' is missing"]),
    ('{"logits": [0.5, 1.0, -1.0], "label": null}', ["line 3: the field 'label' is null"]),
    ('{"logits": null, "label": 1}', ["line 3: the field 'logits' is null"]),
    ('{"logits": [0.5, null, -1.0], "label": 1}', ["line 3, column 'logits'",
                                                   "holds a missing (null) value"]),
    ('{"logits": [0.5, 1.0, -1.0], "label": 1.5}', ["line 3, column 'label'", "whole number"]),
    ('{"logits": [0.5, 1.0, -1.0], "label": 7}', ["7"]),
    ('{"logits": [0.5, 1e400, -1.0], "label": 1}', ["line 3: is not valid JSON",
                                                    "too large for float64"]),
    ('{"logits": [0.5, 1.0, -1.0], "label": 1}}', ["line 3: is not valid JSON"]),
])
def test_bad_line_is_one_located_error(tmp_path, line, fragments):
    result = _bad(tmp_path, [OK, OK, line, OK])
    assert_one_error_line(result, "bad.jsonl", *fragments)


def test_a_field_whose_type_changes_in_the_first_block(tmp_path):
    result = _bad(tmp_path, [OK, json.dumps({"logits": [1.0, 2.0, 3.0], "label": 1,
                                             "note": "x"}),
                             json.dumps({"logits": [1.0, 2.0, 3.0], "label": 1, "note": 5})])
    # a field not read may change type: only the fields read are checked
    assert_one_error_line(result, "bad.jsonl, line 3, column 'note'", "is a number",
                          "line 2 holds a string")


@pytest.mark.parametrize("meta, fragments", [
    ({"a": [1, "x"]}, ["line 2, column 'meta'", "'\"x\"' in", "is a string, but line 1 "
                                                              "holds a number"]),
    ({"a": [1], "c": [2, "y"]}, ["line 2, column 'meta'", "'\"y\"' in",
                                 "is a string, but this line holds a number"]),
    ({"a": 3}, ["line 2, column 'meta'", "is a number, but line 1 holds an array"]),
])
def test_a_nested_field_whose_type_changes(tmp_path, meta, fragments):
    # pyarrow infers the type of every field, read or not, from the first block
    first = json.dumps({"logits": [1.0, 2.0], "label": 1, "meta": {"a": [1, 2]}})
    result = _bad(tmp_path, [first, json.dumps({"logits": [1.0, 2.0], "label": 1,
                                                "meta": meta})])
    assert_one_error_line(result, *fragments)


def test_the_only_field_missing_from_the_first_line(tmp_path):
    result = _bad(tmp_path, ['{"logits": [0.5, 1.0, 2.0]}', OK], "--target-column", "label")
    assert_one_error_line(result, "line 1: the field 'label' is missing")


def test_an_empty_file_and_blank_lines_only(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = run("compute", tmp_path / "empty.jsonl", "--target-column", "label", exit_code=2)
    assert_one_error_line(result, "empty.jsonl: the file is empty")
    (tmp_path / "blank.jsonl").write_text("\n\n  \n")
    result = run("compute", tmp_path / "blank.jsonl", "--target-column", "label", exit_code=2)
    assert_one_error_line(result, "blank.jsonl: holds no data (only blank lines)")
    result = run("compute", "-", "--target-column", "label", input=b"", exit_code=2)
    assert_one_error_line(result, "standard input is empty")


def test_missing_target_column_lists_the_fields(tmp_path):
    p = write(tmp_path / "eval.jsonl", list_rows())
    result = run("compute", p, "--target-column", "y", exit_code=2)
    assert_one_error_line(result, "has no column 'y'", "'logits', 'label'")


def test_binary_data_under_a_jsonl_name(tmp_path):
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "x.jsonl").write_bytes((tmp_path / "x.npy").read_bytes())
    with pytest.raises(InputFileError, match="holds NPY data, not JSON Lines text"):
        read_array(str(tmp_path / "x.jsonl"), role="logits")


# -- big files ----------------------------------------------------------------------------------


def _big(path: Path, n: int, c: int = 5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` rows of ``c`` logits and a label in ``path``; and its lines."""
    rng = np.random.default_rng(n)
    x = np.round(rng.standard_normal((n, c)), 6)
    t = rng.integers(0, c, n)
    lines = [json.dumps({"logits": r, "label": k}) + "\n"
             for r, k in zip(x.tolist(), t.tolist())]
    path.write_text("".join(lines))
    return x, t, lines


def test_big_file_is_read_in_blocks(tmp_path, monkeypatch):
    n = 200_000
    x, t, _ = _big(tmp_path / "big.jsonl", n)
    blocks = []
    batches = jsonl.JsonlTable.batches

    def counted(self, fields, rows):
        for batch in batches(self, fields, rows):
            blocks.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(jsonl.JsonlTable, "batches", counted)
    close(loss(tmp_path / "big.jsonl", "--target-column", "label", "--no-plots"),
          want(x, t), RTOL, 1e-10)
    # ~12 MB in blocks of 1 MB, parsed once for both the logits and the labels (and the
    # first block once more, for the length of the lists)
    assert sum(blocks) == n + blocks[0]
    assert len(blocks) >= 8
    assert max(blocks) * 55 <= 2 * jsonl.BLOCK_BYTES


@pytest.mark.parametrize("bad, fragments", [
    ('{"logits": [1, 2, 3, 4, 5], "label": 1,', [": is not valid JSON"]),
    ('{"logits": [1, 2], "label": 1}', [", column 'logits'", "holds 2 values but the first "
                                        "row holds 5"]),
    ('{"logits": [1, 2, 3, 4, "5"], "label": 1}', [", column 'logits'", "not a number"]),
    ('{"logits": [1, 2, 3, 4, 5]}', [": the field 'label' is missing"]),
])
def test_bad_line_in_the_middle_of_a_big_file(tmp_path, big_lines, bad, fragments):
    line = 123_457
    lines = list(big_lines)
    lines[line - 1] = bad + "\n"
    (tmp_path / "big.jsonl").write_text("".join(lines))
    result = run("compute", tmp_path / "big.jsonl", "--target-column", "label", exit_code=2)
    assert_one_error_line(result, f"big.jsonl, line {line}{fragments[0]}", *fragments[1:])


@pytest.fixture(scope="module")
def big_lines(tmp_path_factory):
    return _big(tmp_path_factory.mktemp("big") / "big.jsonl", 200_000)[2]


def test_lines_longer_than_a_block(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "BLOCK_BYTES", 256)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 30))  # ~600 bytes a line
    t = rng.integers(0, 30, 40)
    p = write(tmp_path / "wide.jsonl", list_rows(x, t))
    assert jsonl.JsonlTable(str(p)).block_size >= 1024  # grown to hold a line
    close(loss(p, "--target-column", "label"), want(x, t), RTOL, ATOL)
    xs, ts = open_table_pair(str(p), target_column="label")
    np.testing.assert_array_equal(xs.read(), x)
    np.testing.assert_array_equal(ts.read(), t)


def test_a_long_line_after_short_ones(tmp_path, monkeypatch):
    # the read starts again with a bigger block; the rows already handed on are skipped
    monkeypatch.setattr(jsonl, "BLOCK_BYTES", 4096)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((600, 3))
    t = rng.integers(0, 3, 600)
    rows = [{"logits": r.tolist(), "label": int(k), "note": ""} for r, k in zip(x, t)]
    rows[400]["note"] = "x" * 20_000
    p = write(tmp_path / "long.jsonl", rows)
    table = jsonl.JsonlTable(str(p))
    assert table.block_size == 4096
    got = [b.num_rows for b in table.batches([table.field("label")], 100)]
    assert sum(got) == 600 and table.block_size > 4096  # grown on the way
    close(loss(p, "--target-column", "label"), want(x, t), RTOL, ATOL)
    xs, ts = open_table_pair(str(p), target_column="label")
    np.testing.assert_array_equal(xs.read(), x)
    np.testing.assert_array_equal(ts.read(), t)
