"""``ce-loss compute`` through Click's CliRunner: stdout and stderr checked apart."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_error_line, json_run, run, save, torch_ce

from ce_cli import __version__

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
TUTORIAL = (SAMPLE / "tutorial_probs.npy", SAMPLE / "tutorial_labels.npy")
SMALL = (SAMPLE / "logits_4x10.npy", SAMPLE / "labels_4.npy")
PADDED = (SAMPLE / "logits_6x5.npy", SAMPLE / "labels_6_padded.npy")


@pytest.fixture
def arrays(tmp_path):
    """Random float64 logits (7, 4) and labels with one ignored row, saved as .npy."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4)) * 3
    t = np.array([0, 3, 1, -100, 2, 2, 0])
    xp, tp = save(tmp_path, x, t)
    return x, t, xp, tp


def plain_value(text: str) -> float:
    return float(text.strip())


def test_tutorial_plain_is_torch_number_and_warns():
    x, t = (np.load(p) for p in TUTORIAL)
    result = run("compute", *TUTORIAL)
    want = torch_ce(x, t)
    assert plain_value(result.stdout) == pytest.approx(float(want), rel=2e-6)
    assert float(want) == pytest.approx(0.72884, abs=1e-5)
    assert "look like probabilities" in result.stderr
    assert "--input-kind probs" in result.stderr
    # the loss the warning offers is -mean(log p[target]), computed independently here
    offered = -np.mean(np.log(x[np.arange(2), t].astype(np.float64)))
    assert f"{offered:.5f}"[:6] in result.stderr  # 0.28991


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("opts", [[], ["--weight", "0.25,2,0.5,1"], ["--label-smoothing", "0.1"],
                                  ["--weight", "0.25,2,0.5,1", "--label-smoothing", "0.3"],
                                  ["--ignore-index", "2"]])
def test_plain_matches_torch(arrays, reduction, opts):
    x, t, xp, tp = arrays
    kw = {}
    if "--weight" in opts:
        kw["weight"] = np.array([0.25, 2, 0.5, 1.0])
    if "--label-smoothing" in opts:
        kw["label_smoothing"] = float(opts[opts.index("--label-smoothing") + 1])
    if "--ignore-index" in opts:
        kw["ignore_index"] = 2
        t = np.where(t == -100, 0, t)
        np.save(tp, t)
    want = float(torch_ce(x, t, reduction=reduction, **kw))
    result = run("compute", xp, tp, "--reduction", reduction, *opts)
    if "--ignore-index" in opts:  # a real class id as ignore_index is legal, but said
        assert "ignore_index 2 is also a class id" in result.stderr
    else:
        assert result.stderr == ""
    assert float(result.stdout) == want or math.isclose(float(result.stdout), want, rel_tol=1e-12)


def test_none_prints_one_loss_per_line(arrays):
    x, t, xp, tp = arrays
    result = run("compute", xp, tp, "--reduction", "none")
    got = np.array([float(v) for v in result.stdout.splitlines()])
    np.testing.assert_allclose(got, torch_ce(x, t, reduction="none"), rtol=1e-12)
    assert got[3] == 0.0


def test_kdim_none_is_flattened_in_c_order(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)
    t = rng.integers(0, 3, size=(2, 2, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    result = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--reduction", "none")
    got = np.array([float(v) for v in result.stdout.split()], dtype=np.float32)
    np.testing.assert_allclose(got, torch_ce(x, t, reduction="none").reshape(-1), rtol=2e-6)


def test_json_has_counts_and_torch_value():
    x, t = (np.load(p) for p in PADDED)
    doc = json.loads(run("compute", *PADDED, "--format", "json").stdout)
    assert doc["loss"] == pytest.approx(float(torch_ce(x, t)), rel=1e-6)
    assert doc["reduction"] == "mean" and doc["dtype"] == "float32" and doc["n_classes"] == 5
    assert (doc["counted"], doc["ignored"], doc["positions"]) == (4, 2, 6)
    assert len(doc["rows"]) == 6 and doc["rows_not_shown"] == 0
    probs = np.array(doc["rows"][0]["softmax"])
    e = np.exp(x[0].astype(np.float64) - x[0].max())
    np.testing.assert_allclose(probs, e / e.sum(), rtol=1e-6)


def test_json_rows_carry_target_and_top_classes_and_the_softmax_when_it_is_readable(tmp_path):
    import torch

    rng = np.random.default_rng(5)
    for n_classes, whole in ((7, True), (1000, True), (1001, False)):
        x = (rng.standard_normal((3, n_classes)) * 4).astype(np.float32)
        t = np.array([2, -100, n_classes - 1])
        doc = json.loads(run("compute", *save(tmp_path, x, t), "--format", "json").stdout)
        want = torch.softmax(torch.from_numpy(x).double(), dim=1).numpy()
        for i, row in enumerate(doc["rows"]):
            assert ("softmax" in row) is whole
            if whole:
                np.testing.assert_allclose(row["softmax"], want[i], rtol=1e-6)
            order = np.argsort(-want[i], kind="stable")[:5]
            assert [c["class"] for c in row["top"]] == order.tolist()
            np.testing.assert_allclose([c["p"] for c in row["top"]], want[i][order], rtol=1e-6)
            if t[i] >= 0:
                assert row["p_target"] == pytest.approx(want[i][t[i]], rel=1e-6)
            else:
                assert row["p_target"] is None


def test_json_all_ignored_is_null_with_note(tmp_path, arrays):
    x, _, xp, _ = arrays
    np.save(tmp_path / "ign.npy", np.full(7, -100))
    assert math.isnan(float(torch_ce(x, np.full(7, -100))))
    doc = json.loads(run("compute", xp, tmp_path / "ign.npy", "--format", "json").stdout)
    assert doc["loss"] is None
    assert "0 of 7 targets counted: all equal ignore_index -100" in doc["loss_note"]
    plain = run("compute", xp, tmp_path / "ign.npy").stdout
    assert plain == "nan\n"


def test_json_none_is_nested_list_with_nulls(tmp_path):
    x = np.array([[[0.0, np.inf], [1.0, 2.0]], [[1.0, 0.5], [0.0, 0.0]]])  # (N=2, C=2, d=2)
    t = np.array([[0, 1], [1, 0]])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    want = torch_ce(x, t, reduction="none")
    doc = json.loads(run("compute", tmp_path / "x.npy", tmp_path / "t.npy",
                         "--reduction", "none", "--format", "json").stdout)
    assert doc["loss"][0][1] is None and math.isnan(want[0, 1])
    assert doc["loss"][1][0] == pytest.approx(float(want[1, 0]), rel=1e-12)
    assert "NaN or infinite" in doc["loss_note"]


def test_table_shows_aggregate_rows_and_elision(arrays):
    x, t, xp, tp = arrays
    result = run("compute", xp, tp, "--format", "table", "--rows", "3")
    want = float(torch_ce(x, t))
    assert float(result.stdout.split()[2]) == pytest.approx(want, rel=1e-12)
    assert "4 more rows not shown" in result.stdout
    assert "p[0]" in result.stdout and "target" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes


def test_csv_none_has_index_target_loss(arrays):
    x, t, xp, tp = arrays
    lines = run("compute", xp, tp, "--reduction", "none", "--format", "csv").stdout.splitlines()
    assert lines[0] == "index,target,loss"
    idx, tgt, loss = lines[2].split(",")
    assert (idx, tgt) == ("1", "3")
    assert float(loss) == pytest.approx(float(torch_ce(x, t, reduction="none")[1]), rel=1e-12)


def test_format_env_default(arrays):
    _, _, xp, tp = arrays
    result = run("compute", xp, tp, env={"CE_LOSS_FORMAT": "json"})
    assert json.loads(result.stdout)["reduction"] == "mean"


def test_input_kind_probs_and_log_probs():
    x, t = (np.load(p) for p in TUTORIAL)
    want = -np.mean(np.log(x[np.arange(2), t].astype(np.float64)))  # no second softmax
    probs = run("compute", *TUTORIAL, "--input-kind", "probs")
    assert float(probs.stdout) == pytest.approx(want, rel=1e-6)
    assert probs.stderr == ""
    assert float(probs.stdout) == pytest.approx(0.28991, abs=1e-5)


def test_weight_from_file(arrays, tmp_path):
    x, t, xp, tp = arrays
    w = np.array([1.0, 0.5, 2.0, 0.1])
    np.save(tmp_path / "w.npy", w)
    result = run("compute", xp, tp, "--weight", tmp_path / "w.npy")
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t, weight=w)), rel=1e-12)


def test_output_file_holds_per_sample_losses(arrays, tmp_path):
    x, t, xp, tp = arrays
    out = tmp_path / "losses.npy"
    result = run("compute", xp, tp, "-o", out)
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=1e-12)
    np.testing.assert_allclose(np.load(out), torch_ce(x, t, reduction="none"), rtol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.npy", "t.npy", "x.npy"]


# -- errors: one line, exit 2, stdout empty, nothing clobbered ---------------------------------

def test_bad_label_leaves_existing_output_untouched(arrays, tmp_path):
    x, _, xp, _ = arrays
    np.save(tmp_path / "bad.npy", np.array([0, 1, 2, 3, 4, 0, 1]))
    out = tmp_path / "losses.npy"
    out.write_bytes(b"precious")
    result = run("compute", xp, tmp_path / "bad.npy", "-o", out, exit_code=2)
    assert_one_error_line(result, "Target 4 is out of bounds", "4 classes (0..3)",
                          "--ignore-index 4")
    assert out.read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".losses")]


@pytest.mark.parametrize("case, fragments", [
    ("missing", ["nope.npy", "no such file"]),
    ("directory", ["d.npy", "folder holds no files"]),
    ("suffix", ["x.txt", "suffix", ".npy"]),
    ("empty", ["empty"]),
    ("not-npy", ["not a .npy file"]),
    ("truncated", ["truncated"]),
    ("object", ["object array"]),
    ("batch", ["Expected input batch_size (7) to match target batch_size (5)"]),
    ("labels-float", ["2.5", "not a whole number"]),
    ("labels-nan", ["nan", "not a class index"]),
    ("weight-length", ["--weight has 2 values", "4 classes"]),
    ("weight-text", ["--weight", "comma-separated"]),
    ("bad-option", ["No such option", "--bogus", "ce-loss compute --help"]),
    ("bad-choice", ["--reduction", "avg"]),
    ("smoothing-range", ["--label-smoothing", "1.5"]),
    ("output-suffix", ["out.xyz", "cannot write"]),
    ("output-folder", ["does not exist"]),
    ("logits-complex", ["complex"]),
])
def test_bad_input_is_one_line_exit_2(arrays, tmp_path, case, fragments):
    x, t, xp, tp = arrays
    args = ["compute", xp, tp]
    if case == "missing":
        args[1] = tmp_path / "nope.npy"
    elif case == "directory":
        (tmp_path / "d.npy").mkdir()
        args[1] = tmp_path / "d.npy"
    elif case == "suffix":
        (tmp_path / "x.txt").write_text("1,2\n")
        args[1] = tmp_path / "x.txt"
    elif case == "empty":
        (tmp_path / "e.npy").write_bytes(b"")
        args[1] = tmp_path / "e.npy"
    elif case == "not-npy":
        (tmp_path / "n.npy").write_text("0.1,0.2\n")
        args[1] = tmp_path / "n.npy"
    elif case == "truncated":
        data = xp.read_bytes()
        (tmp_path / "tr.npy").write_bytes(data[: len(data) - 20])
        args[1] = tmp_path / "tr.npy"
    elif case == "object":
        np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        args[2] = tmp_path / "o.npy"
    elif case == "batch":
        np.save(tmp_path / "t5.npy", t[:5])
        args[2] = tmp_path / "t5.npy"
    elif case == "labels-float":
        np.save(tmp_path / "tf.npy", np.array([0, 1, 2.5, 1, 0, 1, 2]))
        args[2] = tmp_path / "tf.npy"
    elif case == "labels-nan":
        np.save(tmp_path / "tn.npy", np.array([0, 1, np.nan, 1, 0, 1, 2]))
        args[2] = tmp_path / "tn.npy"
    elif case == "weight-length":
        args += ["--weight", "1,2"]
    elif case == "weight-text":
        args += ["--weight", "a,b"]
    elif case == "bad-option":
        args += ["--bogus"]
    elif case == "bad-choice":
        args += ["--reduction", "avg"]
    elif case == "smoothing-range":
        args += ["--label-smoothing", "1.5"]
    elif case == "output-suffix":
        args += ["-o", tmp_path / "out.xyz"]
    elif case == "output-folder":
        args += ["-o", tmp_path / "no" / "out.npy"]
    elif case == "logits-complex":
        np.save(tmp_path / "c.npy", x.astype(np.complex128))
        args[1] = tmp_path / "c.npy"
    result = run(*args, exit_code=2)
    assert_one_error_line(result, *fragments)


def test_internal_error_is_one_line_exit_3(arrays, monkeypatch):
    _, _, xp, tp = arrays
    from ce_cli.run import pipeline

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(pipeline, "run", boom)
    result = run("compute", xp, tp, exit_code=3)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "ce-loss: internal error: RuntimeError: kaboom (a bug in ce-loss; "
        "CE_LOSS_TRACEBACK=1 shows the traceback)"]
    monkeypatch.setenv("CE_LOSS_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="kaboom"):
        run("compute", xp, tp, exit_code=3)


def test_version_and_help():
    assert run("--version").stdout == f"ce-loss {__version__}\n"
    helptext = run("compute", "--help").stdout
    for option in ("--reduction", "--weight", "--ignore-index", "--label-smoothing",
                   "--input-kind", "--format", "--output", "--rows", "Exit codes"):
        assert option in helptext


def test_integer_logits_are_widened_with_a_warning(tmp_path):
    np.save(tmp_path / "xi.npy", np.array([[1, 2, 0], [0, 0, 3]]))
    np.save(tmp_path / "t.npy", np.array([1, 2]))
    result = run("compute", tmp_path / "xi.npy", tmp_path / "t.npy")
    want = torch_ce(np.array([[1.0, 2, 0], [0, 0, 3]]), np.array([1, 2]))
    assert float(result.stdout) == pytest.approx(float(want), rel=1e-12)
    assert "int64" in result.stderr and "float64" in result.stderr


# -- end to end: the installed command in a pipe -----------------------------------------------

def _ce_loss_command():
    exe = shutil.which("ce-loss", path=os.path.dirname(sys.executable)) or shutil.which("ce-loss")
    assert exe, "ce-loss is not installed (pip install -e '.[test]')"
    return exe


def test_installed_command_in_a_pipe():
    x, t = (np.load(p) for p in SMALL)
    pipe = subprocess.run(f"'{_ce_loss_command()}' compute '{SMALL[0]}' '{SMALL[1]}' "
                          "--reduction none | sort -g | tail -n 1",
                          shell=True, capture_output=True, text=True, check=True)
    worst = float(torch_ce(x, t, reduction="none").max())
    assert float(pipe.stdout) == pytest.approx(worst, rel=1e-6)
    assert pipe.stderr == ""


def test_python_dash_m_and_head_closing_the_pipe(tmp_path):
    x = np.random.default_rng(2).normal(size=(20000, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.arange(20000) % 3)
    pipe = subprocess.run(f"'{sys.executable}' -m ce_cli compute '{tmp_path}/x.npy' "
                          f"'{tmp_path}/t.npy' --reduction none | head -n 1",
                          shell=True, capture_output=True, text=True)
    assert pipe.returncode == 0
    assert len(pipe.stdout.splitlines()) == 1
    assert pipe.stderr == ""


@pytest.mark.slow
def test_every_line_is_out_before_the_hard_exit(tmp_path):
    """The program leaves with os._exit (no interpreter teardown): what it printed must
    all be flushed first, far more than a pipe holds."""
    x = np.random.default_rng(3).normal(size=(30000, 4))
    t = np.arange(30000) % 4
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    pipe = subprocess.run([_ce_loss_command(), "compute", str(tmp_path / "x.npy"),
                           str(tmp_path / "t.npy"), "--reduction", "none"],
                          capture_output=True, text=True)
    assert pipe.returncode == 0, pipe.stderr
    got = np.array(pipe.stdout.split(), dtype=np.float64)
    np.testing.assert_allclose(got, torch_ce(x, t, reduction="none"), rtol=1e-12)
    bad = subprocess.run([_ce_loss_command(), "compute", str(tmp_path / "x.npy"),
                          str(tmp_path / "nope.npy")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    # and text still in Python's buffers when the program ends goes out too
    code = ("import sys; from ce_cli.cli import _leave; sys.stdout.write('x' * 100); "
            "sys.stderr.write('y' * 10); _leave(3)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    left = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env)
    assert (left.returncode, left.stdout, left.stderr) == (3, "x" * 100, "y" * 10)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["plain", "csv", "json"])
def test_a_reader_that_goes_away_is_not_an_error(tmp_path, fmt):
    np.save(tmp_path / "x.npy", np.random.default_rng(4).normal(size=(100000, 4)))
    np.save(tmp_path / "t.npy", np.arange(100000) % 4)
    pipe = subprocess.run(["bash", "-c", f"'{_ce_loss_command()}' compute '{tmp_path}/x.npy' "
                           f"'{tmp_path}/t.npy' --reduction none --format {fmt} | head -c 20 "
                           ">/dev/null; echo ${PIPESTATUS[0]}"],
                          capture_output=True, text=True)
    assert pipe.stdout.strip() == "0" and pipe.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_closed_stdout_or_stderr(tmp_path, closed):
    np.save(tmp_path / "x.npy", np.random.default_rng(5).normal(size=(50, 3)))
    np.save(tmp_path / "t.npy", np.arange(50) % 3)
    done = subprocess.run(["bash", "-c", f"'{_ce_loss_command()}' compute '{tmp_path}/x.npy' "
                           f"'{tmp_path}/t.npy' -o '{tmp_path}/l.npy' {closed}"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "l.npy"),
                               torch_ce(np.load(tmp_path / "x.npy"), np.arange(50) % 3,
                                        reduction="none"), rtol=1e-12)


def test_main_is_callable_from_python():
    """``main`` raises SystemExit like any Click program; only the installed program
    leaves with os._exit."""
    from ce_cli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_interrupted_message_names_the_files_written(tmp_path):
    from ce_cli import cli, writers

    assert cli._outputs_note([]) == "no output file was written"
    assert cli._outputs_note(["losses.npy", "p.json"]) == \
        "losses.npy, p.json were written in full"
    written: list[str] = []  # the batch records what lands, in order
    with writers.Batch(written) as batch:
        writers.write_text(str(tmp_path / "a.json"), "{}", batch=batch)
        writers.write_text(str(tmp_path / "b.json"), "{}", batch=batch)
        assert written == []  # nothing lands before the batch commits
    assert written == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]


def test_nan_rows_in_probability_like_input_give_no_numpy_warning(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[np.nan, 0.5], [0.2, np.nan]]))
    np.save(tmp_path / "t.npy", np.array([0, 1]))
    done = subprocess.run([_ce_loss_command(), "compute", str(tmp_path / "x.npy"),
                           str(tmp_path / "t.npy")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "nan"
    assert "RuntimeWarning" not in done.stderr
    assert done.stderr.startswith("ce-loss: warning: 2 of 2 rows")


def test_half_log_probs_smoothing_rounds_like_torch_on_logits(tmp_path):
    """Normalised half log-probabilities are their own log_softmax: as log-probs they give
    torch's number for them as logits, half overflow of w * lp included."""
    x = np.array([[0, -6e4, -6e4], [-0.5, -1.5, -1.5]], dtype=np.float16)
    x[1] = np.log(np.exp(x[1].astype(np.float64)) / np.exp(x[1].astype(np.float64)).sum())
    t = np.array([0, 1])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    w = np.array([1, -2, 2], dtype=np.float16)
    for reduction in ("sum", "none"):
        result = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--input-kind",
                     "log-probs", "--weight=1,-2,2", "--label-smoothing", "0.1",
                     "--reduction", reduction, "--format", "plain", "-q")
        got = np.array(result.stdout.split(), dtype=np.float64)
        want = torch_ce(x, t, weight=w, reduction=reduction, label_smoothing=0.1)
        np.testing.assert_allclose(got, np.atleast_1d(want).astype(np.float64), rtol=1e-2)


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path):
    import signal
    import time

    np.save(tmp_path / "t.npy", np.zeros(3, dtype=np.int64))
    out = tmp_path / "losses.npy"
    out.write_bytes(b"precious")
    proc = subprocess.Popen([_ce_loss_command(), "compute", "-", str(tmp_path / "t.npy"),
                             "-o", str(out), "--reduction", "none"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # it is waiting for stdin now
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert stdout == ""
    assert stderr.splitlines() == ["ce-loss: error: interrupted; no output file was written"]
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.npy", "t.npy"]


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet", ".arrow"])
def test_softmax_and_losses_written_by_suffix(arrays, tmp_path, suffix):
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    x, t, xp, tp = arrays
    out, soft = tmp_path / f"losses{suffix}", tmp_path / f"soft{suffix}"
    run("compute", xp, tp, "-o", out, "--softmax", soft)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    want_p = e / e.sum(axis=1, keepdims=True)
    want_l = torch_ce(x, t, reduction="none")
    if suffix == ".npy":
        got_p, got_l = np.load(soft), np.load(out)
    else:
        if suffix == ".csv":
            def read(p):
                rec = np.genfromtxt(p, delimiter=",", names=True)
                return {name: rec[name] for name in rec.dtype.names}
        else:
            reader = pq.read_table if suffix == ".parquet" else feather.read_table

            def read(p):
                table = reader(p)
                return {name: table.column(name).to_numpy() for name in table.column_names}
        sp, lo = read(soft), read(out)
        got_p = np.column_stack([sp[f"p{c}"] for c in range(4)])
        assert list(lo["index"]) == list(range(7)) and list(lo["target"]) == list(t)
        got_l = np.asarray(lo["loss"])
    np.testing.assert_allclose(got_p, want_p, rtol=1e-12)
    np.testing.assert_allclose(got_l, want_l, rtol=1e-12)


def test_probabilities_warning_from_stdin_names_the_other_loss():
    """One pass serves both numbers, so stdin (read once) still gets the offered loss."""
    x, t = (np.load(p) for p in TUTORIAL)
    result = run("compute", "-", TUTORIAL[1], input=TUTORIAL[0].read_bytes())
    assert float(result.stdout) == pytest.approx(float(torch_ce(x, t)), rel=2e-6)
    offered = -np.mean(np.log(x[np.arange(2), t].astype(np.float64)))
    assert f"--input-kind probs, which gives {offered:.5f}"[:-1] in result.stderr


def test_a_weight_list_too_long_for_a_file_name_is_a_usage_error(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "t.npy", np.array([0, 1]))
    weight = ",".join(["np.float64(1.5)"] * 40)  # what str() of a NumPy list gives
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--weight", weight,
               exit_code=2)
    assert "neither a readable file" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_none_is_torchs_half_values_exactly_in_plain_csv_and_json(tmp_path, dtype):
    """--reduction none of half logits: every format gives each loss as its exact decimal
    value, so float() of it is torch's value (JSON too: it spelled them shortest)."""
    import ml_dtypes
    import torch

    rng = np.random.default_rng(17)
    x = (rng.standard_normal((300, 9)) * 4).astype(np.float32)
    t = rng.integers(0, 9, 300)
    t[::13] = -100
    tx = torch.from_numpy(x).to(getattr(torch, dtype))
    want = torch.nn.functional.cross_entropy(tx, torch.from_numpy(t), reduction="none")
    want = want.float().numpy().astype(np.float64)
    saved = x.astype(np.float16) if dtype == "float16" else x.astype(ml_dtypes.bfloat16)
    xp, tp = save(tmp_path, saved, t)
    plain = run("compute", xp, tp, "--reduction", "none", "-q").stdout.split()
    assert [float(v) for v in plain] == want.tolist()
    csv_rows = run("compute", xp, tp, "--reduction", "none", "--format", "csv",
                   "-q").stdout.splitlines()
    assert csv_rows[0] == "index,target,loss"
    assert [r.split(",")[2] for r in csv_rows[1:]] == plain
    assert [int(r.split(",")[1]) for r in csv_rows[1:]] == t.tolist()
    doc, _ = json_run("compute", xp, tp, "--reduction", "none", "-q")
    assert doc["loss"] == [float(v) for v in plain]
    from decimal import Decimal
    assert all(Decimal(v) == Decimal(float(v)) for v in plain)  # exact, not shortest


def test_bulk_texts_are_the_one_by_one_texts():
    """The per-position writers spell a whole chunk at once: the same text as one by one,
    for every float32 bit pattern class (subnormal, huge, NaN, -0.0) and float64."""
    from ce_cli.render import Report, exact_text, scalar_text, scalar_texts

    rng = np.random.default_rng(8)
    v = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    v = np.concatenate([v, np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e8, 123456790.0,
                                     1e-5, 3.0, 1e16], np.float32)])
    assert scalar_texts(v) == [scalar_text(x) for x in v]
    with np.errstate(invalid="ignore"):  # NaN payloads
        d = v.astype(np.float64) * 1.000001
    assert scalar_texts(d) == [scalar_text(x) for x in d]
    h = rng.integers(0, 2**16, 50_000, dtype=np.uint32).astype(np.uint16).view(np.float16)

    class Half(Report):
        def __init__(self, name):  # only what texts() reads
            self.dtype = name

    assert Half("float16").texts(h) == [exact_text(x) for x in h]
    b = (rng.integers(0, 2**16, 50_000, dtype=np.uint32) << 16).view(np.float32)
    assert Half("bfloat16").texts(b) == [exact_text(x) for x in b]
    assert Half("bfloat16").texts(np.array([-0.0, 0.0], np.float32)) == ["-0.0", "0.0"]
