"""The command line keeps its promises when things go wrong: outputs never replace inputs,
a failed run replaces no output, stdout failures are one line, odd options and odd values
are refused or drawn without a crash."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_error_line, leftovers, run, save, torch_ce

from ce_cli import writers
from ce_cli.errors import OutputFileError

PROGRAM = [sys.executable, "-m", "ce_cli"]


@pytest.fixture
def data(tmp_path):
    """float32 logits (6, 3) and labels, as .npy in tmp_path."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    t = np.array([0, 2, 1, 1, 0, 2])
    return (x, t, *save(tmp_path, x, t))


def shell(command, **kw):
    """``command`` (a bash line; ``{ce}`` is the program) run in a real process."""
    ce = " ".join(shlex.quote(a) for a in PROGRAM)
    return subprocess.run(["bash", "-c", command.format(ce=ce)], capture_output=True,
                          text=True, **kw)


# -- 1. an output never replaces an input ----------------------------------------------------

def _table_inputs(tmp_path, x, t):
    (tmp_path / "both.csv").write_text("a,b,c,label\n" + "".join(
        f"{r[0]},{r[1]},{r[2]},{y}\n" for r, y in zip(x.tolist(), t.tolist())))
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": t}),
                   tmp_path / "both.parquet")
    np.save(tmp_path / "w.npy", np.ones(3, np.float32))
    (tmp_path / "shards").mkdir()
    np.save(tmp_path / "shards" / "a.npy", x)
    os.link(tmp_path / "x.npy", tmp_path / "hard.npy")
    os.link(tmp_path / "x.npy", tmp_path / "link.json")


@pytest.mark.parametrize("args, named", [
    (["x.npy", "t.npy", "--reduction", "none", "-o", "x.npy"], ["-o x.npy", "logits"]),
    (["x.npy", "t.npy", "--softmax", "x.npy"], ["--softmax x.npy", "logits"]),
    (["x.npy", "t.npy", "-o", "t.npy"], ["-o t.npy", "targets"]),
    (["x.npy", "t.npy", "-o", "./x.npy"], ["-o ./x.npy", "logits file x.npy"]),
    (["x.npy", "t.npy", "-o", "{abs}/t.npy"], ["/t.npy", "targets file t.npy"]),
    (["x.npy", "t.npy", "-o", "hard.npy"], ["-o hard.npy", "logits file x.npy",
                                            "the same file"]),
    (["both.csv", "--target-column", "label", "-o", "both.csv"], ["-o both.csv", "logits"]),
    (["both.parquet", "--target-column", "label", "--softmax", "both.parquet"],
     ["--softmax both.parquet"]),
    (["x.npy", "t.npy", "--weight", "w.npy", "-o", "w.npy"], ["-o w.npy", "--weight file"]),
    (["shards", "t.npy", "-o", "shards/a.npy"], ["-o shards/a.npy", "logits shards"]),
    (["x.npy", "t.npy", "--partial", "link.json"], ["--partial link.json",
                                                     "logits file x.npy"]),
])
def test_an_output_that_is_an_input_is_refused_before_any_work(data, tmp_path, monkeypatch,
                                                               args, named):
    x, t, _, _ = data
    _table_inputs(tmp_path, x, t)
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = [a.replace("{abs}", str(tmp_path)) for a in args]
    result = run("compute", *args, exit_code=2)
    assert_one_error_line(result, *named)
    assert "writing it would replace the input; name another output file" in result.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert leftovers(tmp_path) == []


def test_two_outputs_naming_one_file_are_refused(data, tmp_path, monkeypatch):
    _, _, xp, tp = data
    monkeypatch.chdir(tmp_path)
    result = run("compute", xp, tp, "-o", "l.npy", "--softmax", f"{tmp_path}/l.npy",
                 exit_code=2)
    assert_one_error_line(result, "-o and --softmax both name", "give each output its own")
    assert not (tmp_path / "l.npy").exists()


def test_merge_partial_output_that_is_an_input_is_refused(data, tmp_path):
    _, _, xp, tp = data
    part = tmp_path / "p.json"
    run("compute", xp, tp, "--partial", part)
    before = part.read_bytes()
    result = run("merge", part, "--partial", part, exit_code=2)
    assert_one_error_line(result, f"--partial {part}", "partial results merged")
    assert part.read_bytes() == before


# -- 2. a failed run replaces no output ------------------------------------------------------

def test_a_failed_second_output_leaves_the_first_as_it_was(data, tmp_path, monkeypatch):
    _, _, xp, tp = data
    out, soft, part = tmp_path / "out.csv", tmp_path / "sm.parquet", tmp_path / "p.json"
    for p in (out, soft, part):
        p.write_bytes(b"precious")

    def full_disk(path, columns, main):
        path.write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(writers.WRITERS, ".parquet", full_disk)
    result = run("compute", xp, tp, "-o", out, "--softmax", soft, "--partial", part,
                 exit_code=2)
    assert_one_error_line(result, str(soft), "No space left on device")
    assert [p.read_bytes() for p in (out, soft, part)] == [b"precious"] * 3
    assert leftovers(tmp_path) == []


def test_all_outputs_are_written_when_all_succeed(data, tmp_path):
    x, t, xp, tp = data
    out, soft, part = tmp_path / "out.npy", tmp_path / "sm.npy", tmp_path / "p.json"
    out.write_bytes(b"old")
    run("compute", xp, tp, "-o", out, "--softmax", soft, "--partial", part)
    np.testing.assert_allclose(np.load(out), torch_ce(x, t, reduction="none"), rtol=1e-6)
    assert np.load(soft).shape == (6, 3) and json.loads(part.read_text())
    assert leftovers(tmp_path) == []


def test_batch_moves_all_or_none(tmp_path, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("old a")
    with pytest.raises(KeyboardInterrupt):
        with writers.Batch() as batch:
            writers.write_text(str(a), "new a", batch=batch)
            assert a.read_text() == "old a"  # not before all are written
            raise KeyboardInterrupt
    assert a.read_text() == "old a" and leftovers(tmp_path) == []
    with writers.Batch() as batch:
        writers.write_text(str(a), "new a", batch=batch)
        writers.write_text(str(b), "new b", batch=batch)
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    # a rename that fails: the temp files go, the error is one line
    monkeypatch.setattr(writers.os, "replace",
                        lambda *_: (_ for _ in ()).throw(OSError(5, "EIO")))
    with pytest.raises(OutputFileError, match="cannot write .EIO"):
        with writers.Batch() as batch:
            writers.write_text(str(a), "newer", batch=batch)
    assert a.read_text() == "new a" and leftovers(tmp_path) == []


# -- 3, 4. stdout: a full disk is an error, a reader that has gone is not ---------------------

@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["plain", "json", "csv", "table"])
def test_stdout_on_a_full_disk_is_one_line_and_replaces_no_file(data, tmp_path, fmt):
    _, _, xp, tp = data
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    done = shell(f"{{ce}} compute {xp} {tp} -o {out} --format {fmt} > /dev/full")
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("ce-loss: error: cannot write to standard output (No space left "
                           "on device); free some space or send the output elsewhere\n")
    assert out.read_bytes() == b"precious" and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["plain", "table"])
def test_merge_stdout_on_a_full_disk(data, tmp_path, fmt):
    _, _, xp, tp = data
    run("compute", xp, tp, "--partial", tmp_path / "p.json")
    done = shell(f"{{ce}} merge {tmp_path}/p.json --format {fmt} > /dev/full")
    assert done.returncode == 2
    assert done.stderr.startswith("ce-loss: error: cannot write to standard output (No space")
    assert done.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["head -c1 >/dev/null", "true"])  # true: gone at once
@pytest.mark.parametrize("command", ["compute {x} {t} --reduction none --rows 3000",
                                     "merge {p}"])
def test_table_into_a_pipe_closed_early_is_a_success(tmp_path, command, reader):
    x = np.random.default_rng(8).normal(size=(3000, 40))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.arange(3000) % 40)
    run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--partial", tmp_path / "p.json")
    line = command.format(x=tmp_path / "x.npy", t=tmp_path / "t.npy", p=tmp_path / "p.json")
    done = shell(f"{{ce}} {line} --format table | {reader}; "
                 "echo ${{PIPESTATUS[0]}}")
    assert done.stdout.strip() == "0" and done.stderr == ""


# -- 5. wild values are drawn, not crashed on ------------------------------------------------

@pytest.mark.parametrize("x", [[[1e308, 1e308], [0.2, 0.8]],
                               [[np.inf, 1.0], [0.2, 0.8]],
                               [[np.nan, 0.5], [-np.inf, 1e300]]])
@pytest.mark.parametrize("kind", ["probs", "logits", "log-probs"])
@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_huge_and_non_finite_values_never_crash_the_output(tmp_path, x, kind, fmt):
    np.save(tmp_path / "x.npy", np.array(x))
    np.save(tmp_path / "t.npy", np.array([1, 1]))
    result = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--input-kind", kind,
                 "--format", fmt, "-q")
    assert result.stdout and result.stderr == ""
    if fmt == "json":
        json.loads(result.stdout)  # RFC 8259: no NaN or Infinity


def test_reliability_diagram_with_wild_bins():
    from io import StringIO

    from rich.console import Console

    from ce_cli import render

    console = Console(file=StringIO(), width=80, color_system=None)
    bins = [{"low": 0.0, "high": 0.5, "count": 1, "accuracy": 0.0, "confidence": float("inf")},
            {"low": 0.5, "high": 1.0, "count": 2, "accuracy": float("nan"),
             "confidence": 1e308},
            {"low": 0.5, "high": 1.0, "count": 1, "accuracy": None, "confidence": None}]
    render._print_reliability({"calibration_bins": bins}, console)
    text = " ".join(console.file.getvalue().split())  # columns padded to line up
    assert "conf inf n=1" in text and "acc nan conf 1.00e+308 n=2" in text
    assert "acc nan conf nan n=1" in text


# -- 6, 7, 8. options refused the same way whatever the format -------------------------------

@pytest.mark.parametrize("value", ["nan", "NaN", "-nan"])
def test_label_smoothing_nan_is_a_usage_error(data, value):
    _, _, xp, tp = data
    result = run("compute", xp, tp, "--label-smoothing", value, exit_code=2)
    assert_one_error_line(result, "'--label-smoothing'", "0<=x<=1")


@pytest.mark.parametrize("fmt", ["plain", "json", "csv", "table"])
@pytest.mark.parametrize("value", ["0", "-1", "x", "", "1,0"])
def test_bad_top_k_is_a_usage_error_in_every_format(data, fmt, value):
    _, _, xp, tp = data
    result = run("compute", xp, tp, "--top-k", value, "--format", fmt, exit_code=2)
    assert_one_error_line(result, "'--top-k'", "whole numbers >= 1")


@pytest.mark.parametrize("value", ["99999999999999999999999", "-9223372036854775809"])
def test_ignore_index_outside_int64_is_a_usage_error(data, value):
    _, _, xp, tp = data
    result = run("compute", xp, tp, "--ignore-index", value, exit_code=2)
    assert_one_error_line(result, "'--ignore-index'", "9223372036854775807")


def test_ignore_index_at_the_int64_edge_is_accepted(data):
    x, t, xp, tp = data
    result = run("compute", xp, tp, "--ignore-index", str(-2**63))
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=1e-6)


def test_no_arguments_prints_the_help_on_stderr():
    result = run(exit_code=2)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "Usage: ce-loss [OPTIONS] COMMAND [ARGS]..."
    assert any(line.strip().startswith("compute") for line in lines)
    assert "ce-loss: error" not in result.stderr


@pytest.mark.parametrize("columns", ["0", "5"])
def test_table_has_a_minimum_width(data, columns):
    _, _, xp, tp = data
    result = run("compute", xp, tp, "--format", "table", env={"COLUMNS": columns})
    assert result.stdout.startswith("mean loss")
    assert "per class" in result.stdout


def test_closed_stdin_is_a_clean_error(data):
    _, _, _, tp = data
    done = shell(f"{{ce}} compute - {tp} <&-")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("ce-loss: error: <stdin>: standard input is closed; pipe the data "
                           "in, or name a file instead of -\n")


@pytest.mark.parametrize("args, name", [(["", "{t}"], "LOGITS"), (["{x}", ""], "TARGETS"),
                                        (["{x}", "{t}", "-o", ""], "-o"),
                                        (["{x}", "{t}", "--weight", ""], "--weight")])
def test_an_empty_path_is_named_as_such(data, args, name):
    _, _, xp, tp = data
    result = run("compute", *[a.format(x=xp, t=tp) for a in args], exit_code=2)
    assert_one_error_line(result, f"{name} is an empty path; name a file")


def test_merge_empty_path(data):
    result = run("merge", "", exit_code=2)
    assert_one_error_line(result, "PARTIAL.json #1 is an empty path")


def test_a_weight_that_overflows_half_becomes_inf_as_in_torch(tmp_path):
    x = np.array([[1.0, 2, 3], [0, 1, 0]], dtype=np.float16)
    t = np.array([0, 2])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    # pytest turns warnings into errors: a raw NumPy cast warning would fail this run
    result = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--weight", "1,0,1e308")
    with np.errstate(over="ignore"):
        w = np.array([1, 0, 1e308]).astype(np.float16)
    want = torch_ce(x, t, weight=w)
    assert np.isnan(float(result.stdout)) and np.isnan(float(want))
    assert "--weight 1e+308 does not fit float16" in result.stderr
    assert "becomes inf, as in torch" in result.stderr
    assert "RuntimeWarning" not in result.stderr
    quiet = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--weight", "1,0,1e308",
                "-q")
    assert quiet.stderr == ""


# -- review fixes -------------------------------------------------------------------------------


def test_stdin_redirected_from_the_output_file_is_refused(data):
    """``compute - t.npy -o in.npy < in.npy``: standard input is that file."""
    _, _, x_path, t_path = data
    before = x_path.read_bytes()
    with open(x_path, "rb") as stdin:
        proc = subprocess.run([*PROGRAM, "compute", "-", str(t_path), "-o", str(x_path)],
                              stdin=stdin, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "standard input" in proc.stderr and "would replace the input" in proc.stderr
    assert x_path.read_bytes() == before


def test_infinite_weight_partial_round_trips(data, tmp_path):
    """A weight that overflows float16 is inf, as in torch; the partial stays valid JSON
    and merges to the same number."""
    x, t, _, t_path = data
    np.save(tmp_path / "xh.npy", x.astype(np.float16))
    part = tmp_path / "q.json"
    run("compute", tmp_path / "xh.npy", t_path, "--weight", "70000,1,1", "--partial", part,
        "--format", "plain", "-q")
    json.loads(part.read_text())  # RFC 8259: no bare Infinity
    with np.errstate(over="ignore"):
        w16 = np.array([70000, 1, 1]).astype(np.float16)
    want = torch_ce(x.astype(np.float16), t, weight=w16)
    merged = run("merge", part, "--format", "plain", "-q").stdout.strip()
    assert np.isnan(want) and merged == "nan"


def test_zero_class_partial_merges(tmp_path):
    np.save(tmp_path / "x0.npy", np.zeros((5, 0), np.float32))
    np.save(tmp_path / "p0.npy", np.zeros((5, 0), np.float32))
    run("compute", tmp_path / "x0.npy", tmp_path / "p0.npy", "--partial", tmp_path / "q.json",
        "--format", "plain", "-q")
    got = run("merge", tmp_path / "q.json", "--format", "plain", "-q").stdout.strip()
    assert got == "nan" and np.isnan(torch_ce(np.zeros((5, 0), np.float32),
                                              np.zeros((5, 0), np.float32)))


# -- second fuzz round ----------------------------------------------------------------------


def test_csv_header_of_empty_cells_is_data_with_missing_values(tmp_path):
    (tmp_path / "x.csv").write_text(",,\n5,2,3\n0.5,0.1,-1\n")
    (tmp_path / "t.csv").write_text("1\n0\n")
    result = run("compute", tmp_path / "x.csv", tmp_path / "t.csv", exit_code=2)
    assert_one_error_line(result, "line 1, column 1", "missing")


def test_csv_id_column_is_left_out_as_in_parquet(tmp_path):
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.1, -1.0]])
    t = np.array([2, 0])
    lines = ["id,a,b,c,label"] + [f"{i},{r[0]},{r[1]},{r[2]},{k}" for i, (r, k)
                                   in enumerate(zip(x, t))]
    (tmp_path / "idl.csv").write_text("\n".join(lines) + "\n")
    result = run("compute", tmp_path / "idl.csv", "--target-column", "label",
                 "--format", "plain")
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=1e-12)
    assert "ignored the integer columns 'id'" in result.stderr


def test_float16_labels_print_no_numpy_warning(data, tmp_path):
    _, t, x_path, _ = data
    np.save(tmp_path / "t16.npy", t.astype(np.float16))
    result = run("compute", x_path, tmp_path / "t16.npy", "-q", "--format", "plain")
    assert result.stderr == ""


def test_half_weight_times_loss_overflow_is_explained(data, tmp_path):
    x, t, _, t_path = data
    np.save(tmp_path / "xh.npy", x.astype(np.float16))
    result = run("compute", tmp_path / "xh.npy", t_path, "--weight", "60000,60000,60000",
                 "--reduction", "sum", "--format", "plain")
    w = np.full(3, 60000, np.float16)
    assert np.isinf(torch_ce(x.astype(np.float16), t, weight=w, reduction="sum"))
    assert result.stdout.strip() == "inf"
    assert "a product past 65504 is inf" in result.stderr
    assert "probability 0 under their logits (a -inf" not in result.stderr


def test_npy_losses_keep_torchs_none_shape(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    t = rng.integers(0, 3, (2, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "-o", tmp_path / "l.npy", "-q")
    got = np.load(tmp_path / "l.npy")
    want = torch_ce(x, t, reduction="none")
    assert got.shape == want.shape == (2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_merge_refuses_a_partial_twice_and_warns_on_shared_inputs(data, tmp_path):
    _, _, x_path, t_path = data
    a = tmp_path / "a.json"
    run("compute", x_path, t_path, "--partial", a, "-q", "--format", "plain")
    twice = run("merge", a, a, exit_code=2)
    assert_one_error_line(twice, "same partial result")
    run("merge", a, "--partial", tmp_path / "m.json", "-q", "--format", "plain")
    again = run("merge", tmp_path / "m.json", a, "--format", "plain", "--strict")
    assert "ce-loss: note:" in again.stderr and "counted twice" in again.stderr


def test_unusable_dask_scheduler_address_is_exit_2(data):
    pytest.importorskip("distributed")
    _, _, x_path, t_path = data
    for address in ("notaurl", "tcp://127.0.0.1", "foo://x:1"):
        result = run("compute", x_path, t_path, "--engine", "dask", "--scheduler", address,
                     exit_code=2)
        assert_one_error_line(result, "cannot reach the Dask scheduler")


def test_csv_column_named_id_with_fractions_stays_a_logit(tmp_path):
    """Only whole numbers make an 'id' column an id (as only integer columns in Parquet)."""
    x = np.array([[1.0, 0.5, 0.1], [2.5, 0.2, 0.3], [0.7, 0.9, 0.4]])
    t = np.array([0, 1, 1])
    (tmp_path / "x.csv").write_text("id,a,b\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in x))
    (tmp_path / "t.csv").write_text("0\n1\n1\n")
    result = run("compute", tmp_path / "x.csv", tmp_path / "t.csv", "--format", "plain")
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=1e-12)
    assert "ignored" not in result.stderr
