"""Inputs a tester broke on purpose: each is read correctly or refused with one located line.

Big-endian arrays, labels too large for int64, NPY headers that are damaged or promise
impossible sizes, CSV files with CR line ends or a bad first row, .npz archives on stdin
or with ``/`` in member names, ``--engine dask`` on damaged files, and damaged partials.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from helpers import assert_one_error_line, npz_bytes, run, save, torch_ce

X = np.array([[0.5, 1.0, -1.0], [2.0, 0.1, 0.3], [0.0, 0.0, 1.0], [1.5, -2.0, 0.25],
              [0.3, 0.3, 0.3]], dtype=np.float32)
T = np.array([0, 2, 1, 1, 0])


@pytest.fixture
def files(tmp_path):
    save(tmp_path, X, T)
    return tmp_path


def _npy_with_header(header: str, body: bytes = b"\x00" * 60, version: int = 1) -> bytes:
    """NPY bytes whose header text is ``header`` (padded as numpy pads it)."""
    text = header.encode("latin1")
    size = "<H" if version == 1 else "<I"
    lead = 6 + 2 + struct.calcsize(size)
    pad = (-(lead + len(text) + 1)) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(size, len(text)) + text + body


def _plain(result) -> float:
    return float(result.stdout)


# -- 1. big-endian arrays ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8"])
def test_big_endian_logits_give_the_native_result(files, dtype):
    np.save(files / "be.npy", X.astype(dtype))
    np.save(files / "le.npy", X.astype(dtype).astype(np.dtype(dtype).newbyteorder("=")))
    got = run("compute", files / "be.npy", files / "t.npy")
    want = run("compute", files / "le.npy", files / "t.npy")
    assert got.stdout == want.stdout and got.stderr == ""


def test_big_endian_probability_targets_and_npz(files):
    p = np.exp(X) / np.exp(X).sum(1, keepdims=True)
    np.save(files / "p.npy", p.astype(">f8"))
    want = float(torch_ce(X.astype(np.float64), p))
    assert _plain(run("compute", files / "x.npy", files / "p.npy")) == pytest.approx(want)
    for savez in (np.savez, np.savez_compressed):
        savez(files / "be.npz", logits=X.astype(">f4"), labels=T.astype(">i8"))
        got = run("compute", f"{files / 'be.npz'}:logits", f"{files / 'be.npz'}:labels")
        assert _plain(got) == pytest.approx(float(torch_ce(X, T)), rel=1e-6)


def test_big_endian_large_file_is_swapped_block_by_block(files, monkeypatch):
    from ce_cli.readers import base
    from ce_cli.run import pipeline

    monkeypatch.setattr(base, "BUFFERED_BYTES", 64)  # read through the reused buffers
    monkeypatch.setattr(pipeline, "READ_ELEMENTS", 6)  # two rows per block
    x = np.random.default_rng(3).normal(size=(41, 3))
    t = np.arange(41) % 3
    np.save(files / "big.npy", x.astype(">f8"))
    np.save(files / "tb.npy", t)
    got = _plain(run("compute", files / "big.npy", files / "tb.npy"))
    assert got == pytest.approx(float(torch_ce(x, t)), rel=1e-12)


# -- 2. labels too large for a class index ----------------------------------------------------


@pytest.mark.parametrize("labels, fragment", [
    (np.array([0, 1, 2, 1, 2 ** 63 + 5], dtype=np.uint64),
     "row index 4 (9223372036854775813) is too large for a class index"),
    (np.array([0.0, 1.0, 1e30, 1.0, 0.0]), "row index 2 (1e+30) is too large for a class index"),
    (np.array([0.0, 1.0, 2.5, 1.0, 0.0]), "row index 2 (2.5) is not a whole number"),
    (np.array([0.0, np.inf, 2.0, 1.0, 0.0]), "row index 1 (inf) is not a class index"),
])
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_labels_that_are_no_class_index_are_named_with_their_row(files, labels, fragment,
                                                                 suffix):
    path = files / f"labels{suffix}"
    (np.save if suffix == ".npy" else np.savez)(path, labels)
    result = run("compute", files / "x.npy", path, exit_code=2)
    assert_one_error_line(result, f"labels{suffix}: ", fragment, "class indices are whole")
    assert "-9223372036854775" not in result.stderr and "Warning" not in result.stderr


def test_too_large_k_dim_label_is_located(files):
    x = np.zeros((2, 3, 4), np.float32)
    t = np.zeros((2, 4))
    t[1, 2] = 1e30
    np.save(files / "xk.npy", x)
    np.save(files / "tk.npy", t)
    result = run("compute", files / "xk.npy", files / "tk.npy", exit_code=2)
    assert_one_error_line(result, "tk.npy: row index 1, target at (1, 2) (1e+30) is too large")


# -- 3. and 10. NPY headers -------------------------------------------------------------------


@pytest.mark.parametrize("content, fragments", [
    (_npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2**62, 2**62), }"
                      .replace("2**62", str(2 ** 62))), ["damaged header", "impossible"]),
    (_npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (10**20, 3), }"
                      .replace("10**20", str(10 ** 20))), ["damaged header", "impossible"]),
    (_npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 3), }"),
     ["truncated", "holds 60 bytes", "promises 12000000"]),
    (_npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3)"),
     ["damaged header", "not closed"]),
    (_npy_with_header("__import__('os')"), ["damaged header", "not a Python dictionary"]),
    (_npy_with_header("{'descr': 'zz', 'fortran_order': False, 'shape': (5, 3), }"),
     ["damaged header", "'zz' is not a NumPy dtype"]),
    (_npy_with_header("{'descr': '<f4', 'fortran_order': 'x', 'shape': (5, 3), }"),
     ["damaged header", "fortran_order"]),
    (_npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }"),
     ["damaged header", "negative"]),
    (_npy_with_header("{'descr': '<f4', 'shape': (5, 3), }"), ["damaged header", "keys"]),
    (b"\x93NUMPY\x09\x00" + b"x" * 40, ["damaged header", "version 9.0"]),
    (b"\x93NUMPY\x01\x00\xff\xff" + b"x" * 40, ["damaged header", "65535 bytes"]),
    (b"\x93NUMPY", ["truncated", "inside its header"]),
    (_npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }"),
     ["object array"]),
])
@pytest.mark.parametrize("engine", ["default", "dask"])
def test_damaged_npy_header_is_named(files, content, fragments, engine):
    if engine == "dask":
        pytest.importorskip("dask")
    (files / "bad.npy").write_bytes(content)
    result = run("compute", files / "bad.npy", files / "t.npy", "--engine", engine,
                 exit_code=2)
    assert_one_error_line(result, "bad.npy: ", *fragments)
    assert "Warning" not in result.stderr
    if "object array" not in fragments:
        assert "object array" not in result.stderr


def test_damaged_npz_member_header_is_named(files):
    import zipfile

    bad = _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3)")
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with zipfile.ZipFile(files / "bad.npz", "w", method) as z:
            z.writestr("logits.npy", bad)
        result = run("compute", files / "bad.npz", files / "t.npy", exit_code=2)
        assert_one_error_line(result, "bad.npz", ".npz member has a damaged header")


def test_npz_member_names_may_hold_a_slash(files):
    np.savez(files / "nested.npz", **{"enc/out": X, "c.d": T})
    got = run("compute", f"{files / 'nested.npz'}:enc/out", f"{files / 'nested.npz'}:c.d")
    assert _plain(got) == pytest.approx(float(torch_ce(X, T)), rel=1e-6)
    result = run("compute", f"{files / 'nested.npz'}:enc/nope", files / "t.npy", exit_code=2)
    assert_one_error_line(result, "no array named 'enc/nope'", "enc/out")


# -- 4. and 5. CSV ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "--no-header"])
@pytest.mark.parametrize("piece", [None, 7])
def test_csv_with_cr_line_ends_is_read(files, header, piece, monkeypatch):
    if piece is not None:
        from ce_cli.readers import text

        monkeypatch.setattr(text, "PIECE_BYTES", piece)
    rows = "\r".join(",".join(repr(float(v)) for v in row) for row in X) + "\r"
    (files / "cr.csv").write_bytes(rows.encode())
    (files / "tcr.csv").write_bytes(b"0\r2\r1\r1\r0\r")
    args = [header] if header else []
    got = _plain(run("compute", files / "cr.csv", files / "tcr.csv", *args))
    assert got == pytest.approx(float(torch_ce(X.astype(np.float64), T)), rel=1e-12)
    (files / "crh.csv").write_bytes(b"a,b,c\r" + rows.encode())
    if header is None:
        got = _plain(run("compute", files / "crh.csv", files / "t.npy"))
        assert got == pytest.approx(float(torch_ce(X.astype(np.float64), T)), rel=1e-12)


def test_csv_with_cr_line_ends_locates_a_bad_cell(files):
    (files / "cr.csv").write_bytes(b"1,2,3\r4,x,6\r7,8,9\r1,1,1\r2,2,2\r")
    result = run("compute", files / "cr.csv", files / "t.npy", exit_code=2)
    assert_one_error_line(result, "cr.csv, line 2, column 2: 'x' is not a number")


@pytest.mark.parametrize("first, fragment", [
    (b"1,,3", "line 1, column 2: the value is missing"),
    (b"1,-,3", "line 1, column 2: '-' is not a number"),
    (b"TRUE,2,3", "line 1, column 1: 'TRUE' is not a number"),
    (b"NA,2,3", "line 1, column 1: 'NA' is not a number"),
    (b"1,\xff,3", "line 1, column 2: '\ufffd' is not a number (it holds bytes that are not "
                  "UTF-8 text)"),
])
def test_bad_first_csv_row_is_not_taken_for_a_header(files, first, fragment):
    (files / "x.csv").write_bytes(first + b"\n4,5,6\n")
    (files / "t.csv").write_text("0\n1\n")
    result = run("compute", files / "x.csv", files / "t.csv", exit_code=2)
    assert_one_error_line(result, "x.csv, " + fragment)


@pytest.mark.parametrize("first", ["a,b,c", "logit_0,logit_1,logit_2", ",0,1,2", ",1,2,3",
                                   ",7,8,9"])
def test_csv_headers_are_still_detected(files, first):
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n"
    if first.startswith(","):  # pandas' df.to_csv(): an index column, columns 0..C-1
        body = "".join(f"{i},{line}\n" for i, line in enumerate(body.splitlines()))
    (files / "x.csv").write_text(first + "\n" + body)
    got = _plain(run("compute", files / "x.csv", files / "t.npy"))
    assert got == pytest.approx(float(torch_ce(X.astype(np.float64), T)), rel=1e-12)


@pytest.mark.parametrize("first", ["0,1,2,label", "1,2,3,label", "label,1,2,3"])
def test_numeric_column_names_beside_a_label_column_are_a_header(files, first):
    """A frame whose class columns are named by numbers (0.., 1.., any) and a label."""
    rows = [[*(repr(float(v)) for v in row), str(t)] for row, t in zip(X, T)]
    if first.startswith("label"):
        rows = [[r[-1], *r[:-1]] for r in rows]
    (files / "both.csv").write_text(first + "\n" + "".join(",".join(r) + "\n" for r in rows))
    got = _plain(run("compute", files / "both.csv", "--target-column", "label"))
    assert got == pytest.approx(float(torch_ce(X.astype(np.float64), T)), rel=1e-12)


# -- 6. shapes in mismatch errors for text inputs ---------------------------------------------


def test_mismatch_error_gives_the_row_counts_of_csv_inputs(files):
    (files / "x5.csv").write_text("\n".join(",".join(map(str, r)) for r in X) + "\n")
    (files / "tp52.csv").write_text("0.5,0.5\n" * 5)
    result = run("compute", files / "x5.csv", files / "tp52.csv", exit_code=2)
    assert_one_error_line(result, "x5.csv (5, 3) and", "tp52.csv (5, 2)",
                          "got target shape [5, 2] for logits [5, 3]")


# -- 7. an .npz archive on stdin --------------------------------------------------------------


def test_stdin_npz_member_can_be_named_as_the_hint_says(files):
    data = npz_bytes(logits=X, labels=T)
    want = float(torch_ce(X, T))
    result = run("compute", "-", files / "t.npy", input=data, exit_code=2)
    assert_one_error_line(result, "<stdin>: the .npz archive holds 2 arrays",
                          "-- -:logits TARGETS")
    got = run("compute", "--format", "plain", "--", "-:logits", files / "t.npy", input=data)
    assert _plain(got) == pytest.approx(want, rel=1e-6)
    result = run("compute", files / "x.npy", "-", input=data, exit_code=2)
    assert_one_error_line(result, "LOGITS -- -:labels")
    assert _plain(run("compute", files / "x.npy", "--", "-:labels", input=data)) == \
        pytest.approx(want, rel=1e-6)
    result = run("compute", "--", "-:logits", files / "t.npy",
                 input=(files / "x.npy").read_bytes(), exit_code=2)
    assert_one_error_line(result, "standard input holds NPY data, not a .npz archive")


# -- 8. --engine dask validates like the default engine ---------------------------------------


def test_dask_names_the_targets_file_of_an_out_of_bounds_label(files):
    pytest.importorskip("dask")
    np.save(files / "oob.npy", np.array([0, 1, 7, 1, 2]))
    result = run("compute", files / "x.npy", files / "oob.npy", "--engine", "dask",
                 exit_code=2)
    assert_one_error_line(result, "oob.npy: Target 7 is out of bounds")


def test_dask_refuses_damaged_targets_and_row_mismatch_before_running(files):
    pytest.importorskip("dask")
    (files / "bad.npy").write_bytes((files / "t.npy").read_bytes()[:-9])
    result = run("compute", files / "x.npy", files / "bad.npy", "--engine", "dask",
                 exit_code=2)
    assert_one_error_line(result, "bad.npy: ", "truncated")
    np.save(files / "t4.npy", T[:4])
    result = run("compute", files / "x.npy", files / "t4.npy", "--engine", "dask",
                 exit_code=2)
    assert_one_error_line(result, "x.npy has 5 rows of logits but", "t4.npy has 4 targets")


# -- 9. damaged partial results ---------------------------------------------------------------


@pytest.fixture
def part(files):
    path = files / "a.json"
    run("compute", files / "x.npy", files / "t.npy", "--partial", path)
    return path


def _tampered(part, keys, value):
    doc = json.loads(part.read_text())
    cur = doc
    for k in keys[:-1]:
        cur = cur[k]
    if value is KeyError:
        del cur[keys[-1]]
    else:
        cur[keys[-1]] = value
    out = part.with_name("bad.json")
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("keys, value, fragment", [
    (["spec", "dtype"], "float999", "field spec.dtype is \"float999\", not one of float16"),
    (["spec", "n_classes"], "x", "field spec.n_classes is \"x\""),
    (["spec", "n_classes"], 10 ** 30, "field spec.n_classes"),
    (["spec", "weight"], "abc", "field spec.weight is \"abc\""),
    (["spec", "weight"], [1, 2], "field spec.weight is [1, 2], not null or a list of 3"),
    (["spec", "dtype"], KeyError, "field spec.dtype is missing"),
    (["spec"], [], "field spec is [], not an object"),
    (["totals", "nll"], "abc", "field totals.nll is \"abc\", not a number"),
    (["totals", "nll"], KeyError, "field totals.nll is missing"),
    (["totals", "counted"], -5, "field totals.counted is -5, not a count"),
    (["totals", "counted"], 1.5, "field totals.counted is 1.5, not a count"),
    (["totals", "denominator"], 0, "field totals.denominator is 0, not totals.counted (5)"),
    (["scan", "rows"], "x", "field scan.rows is \"x\", not a count"),
    (["reduction"], 5, "field reduction is 5, not one of mean, sum, none"),
    (["reduction"], {"a": 1}, "field reduction is {\"a\": 1}"),
    (["labels"], [1, 2], "field labels is [1, 2], not null or 3 counts"),
    (["stats", "bins"], 3, "stats"),
])
def test_damaged_partial_is_one_error_naming_the_field(part, keys, value, fragment):
    bad = _tampered(part, keys, value)
    for args in ([bad], [part, bad]):
        result = run("merge", *args, exit_code=2)
        assert_one_error_line(result, "bad.json: a damaged partial result", fragment,
                              "recompute it with 'ce-loss compute --partial'")


def test_partials_of_mean_and_sum_do_not_merge_silently(files, part):
    run("compute", files / "x.npy", files / "t.npy", "--reduction", "sum", "--partial",
        files / "s.json")
    result = run("merge", part, files / "s.json", exit_code=2)
    assert_one_error_line(result, "s.json: computed with --reduction sum but",
                          "a.json with --reduction mean", "same --reduction")
    run("compute", files / "x.npy", files / "t.npy", "--bins", "10", "--partial",
        files / "b.json")
    result = run("merge", part, files / "b.json", exit_code=2)
    assert_one_error_line(result, "b.json: computed with --bins 10 but", "--bins 15")


def test_merge_with_a_reduction_given_merges_mean_and_sum():
    from ce_cli.run import partial

    rng = np.random.default_rng(1)
    docs = []
    for reduction in ("mean", "sum"):
        x = rng.normal(size=(4, 3)).astype(np.float32)
        t = rng.integers(0, 3, size=4)
        from ce_cli.readers.base import array_source
        from ce_cli.run import pipeline

        p = pipeline.run(array_source("x", "logits", x), array_source("t", "targets", t),
                         weight=None, ignore_index=-100, reduction=reduction,
                         label_smoothing=0.0, input_kind="logits", keep_losses=False)
        docs.append(partial.Partial(json.loads(json.dumps(partial.to_document(p, ["x"]))),
                                    reduction))
    assert partial.merge(docs, reduction="sum").reduction == "sum"
    with pytest.raises(Exception, match="--reduction sum"):
        partial.merge(docs)


def test_python2_npy_header_with_long_integers_is_read(files):
    """numpy reads headers written by Python 2 (``(5L, 3L)``); so does ce-loss, without
    numpy's warning about them, from a file, from stdin and inside an .npz."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (5L, 3L), }"
    data = _npy_with_header(header, X.astype("<f8").tobytes())
    (files / "py2.npy").write_bytes(data)
    want = float(torch_ce(X.astype(np.float64), T))
    assert _plain(run("compute", files / "py2.npy", files / "t.npy")) == pytest.approx(
        want, rel=1e-12)
    result = run("compute", "-", files / "t.npy", "--format", "plain", "-q", input=data)
    assert float(result.stdout) == pytest.approx(want, rel=1e-12) and result.stderr == ""
