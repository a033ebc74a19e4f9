"""The command in a terminal: help and messages at 80 and 140 columns, completion,
``--color``, ``ce-loss help``, JSON on a terminal, and messages that name the fix."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run

from ce_cli import console

CE_LOSS = str(Path(sys.executable).with_name("ce-loss"))
ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def in_terminal(args, columns, *, stdout_tty=False, env=None):
    """Run ``ce-loss args`` with stderr (and stdout if asked) on a pseudo-terminal of
    ``columns`` columns; returns (exit code, stdout text, terminal text)."""
    main, side = pty.openpty()
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": str(columns),
                   "TERM": "xterm", **(env or {})}
    if os.environ.get("PYTHONPATH"):
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    proc = subprocess.Popen([CE_LOSS, *map(str, args)], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=side if stdout_tty else subprocess.PIPE, stderr=side,
                            env=environment)
    os.close(side)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait()
    os.close(main)
    if proc.stdout:
        proc.stdout.close()
    return code, out, b"".join(chunks).decode().replace("\r\n", "\n")


PROBS = ["sample_data/tutorial_probs.npy", "sample_data/tutorial_labels.npy"]


@pytest.mark.parametrize("columns", [80, 140])
def test_warnings_wrap_at_word_boundaries_with_a_coloured_prefix(columns):
    code, out, term = in_terminal(["compute", *PROBS], columns)
    assert code == 0 and out.strip() == "0.7288381"
    piped = subprocess.run([CE_LOSS, "compute", *PROBS], cwd=ROOT, capture_output=True,
                           text=True).stderr
    [one_line] = piped.splitlines()
    assert "\x1b" not in piped  # piped: one plain line
    lines = ANSI.sub("", term).splitlines()
    assert len(lines) > 1 and all(len(line) <= columns for line in lines)
    assert " ".join(line.strip() for line in lines) == one_line  # no word was split
    assert "\x1b[1;33mwarning:\x1b[0m" in term


@pytest.mark.parametrize("mode, coloured", [("always", True), ("never", False),
                                            ("auto", False)])
def test_color_option_through_a_pipe(mode, coloured):
    done = subprocess.run([CE_LOSS, "compute", *PROBS, "--color", mode, "--format", "table"],
                          cwd=ROOT, capture_output=True, text=True)
    assert ("\x1b[" in done.stderr) is coloured
    assert ("\x1b[" in done.stdout) is coloured
    before = subprocess.run([CE_LOSS, "--color", mode, "compute", *PROBS], cwd=ROOT,
                            capture_output=True, text=True)
    assert ("\x1b[" in before.stderr) is coloured


def test_color_never_wins_on_a_terminal_and_auto_follows_no_color():
    _, _, term = in_terminal(["compute", *PROBS, "--color", "never"], 80)
    assert "\x1b[" not in term
    _, _, term = in_terminal(["compute", *PROBS], 80, env={"NO_COLOR": "1"})
    assert "\x1b[" not in term
    assert console.COLOR == "auto"


@pytest.mark.parametrize("columns", [80, 140])
def test_help_never_splits_a_value_and_uses_the_width(columns):
    code, _, term = in_terminal(["compute", "--help"], columns, stdout_tty=True)
    assert code == 0
    lines = term.splitlines()
    text = "\n".join(lines)
    assert "'ce-loss[dask]'" in text and "'ce-loss[hdf5]'" in text
    assert "-9223372036854775808" not in text.replace("\n", "")  # no range at all, now
    assert not any(line.rstrip().endswith(("ce-", "'ce-", "-92233")) for line in lines)
    widest = max(len(line) for line in lines)
    assert widest <= columns
    if columns == 140:
        assert widest > 100  # the terminal's width, not Click's 80
    code, _, top = in_terminal(["--help"], columns, stdout_tty=True)
    commands = top.split("Commands:")[1].split("Exit codes")[0]
    assert "..." not in commands  # whole command summaries
    for name in ("compute", "compare", "merge", "help"):
        assert re.search(rf"^  {name}\s+\S", top, flags=re.M)


def test_help_command():
    assert run("help", "compute").stdout == run("compute", "--help").stdout
    assert "Commands:" in run("help").stdout
    wrong = run("help", "comput", exit_code=2)
    assert "Did you mean 'compute'?" in wrong.stderr


@pytest.mark.parametrize("words, cword", [
    ("ce-loss compute sample_data/seq_lo", 2),
    ("ce-loss compute sample_data/seq_logits_2x5x8.npy sample_data/seq_la", 3),
    ("ce-loss merge parts/p", 2),
    ("ce-loss compare a.npy b.npy lab", 4),
    ("ce-loss compute x.npy --weight w", 4),
])
def test_file_arguments_complete_as_files(words, cword):
    done = run(env={"_CE_LOSS_COMPLETE": "bash_complete", "COMP_WORDS": words,
                    "COMP_CWORD": str(cword)}, exit_code=None)
    assert done.stdout.splitlines()[0] == f"file,{words.split()[cword]}"


def test_json_is_pretty_on_a_terminal_and_compact_piped():
    _, _, term = in_terminal(["compute", *PROBS, "--format", "json", "-q"], 80,
                             stdout_tty=True)
    assert term.startswith("{\n  \"loss\"")
    piped = subprocess.run([CE_LOSS, "compute", *PROBS, "--format", "json", "-q"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert piped.count("\n") == 1 and json.loads(piped) == json.loads(ANSI.sub("", term))


def test_dumb_terminal_gets_plain_progress_lines(monkeypatch, capsys):
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr(console.Progress, "EVERY", 0.0)
    with console.Progress(300) as bar:
        for _ in range(3):
            bar.advance(np.zeros((100, 4)))
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("ce-loss: progress: 300 of 300 positions (100%)")


def test_swapped_files_are_recognised(tmp_path):
    np.save(tmp_path / "logits.npy", np.zeros((4, 10), np.float32))
    np.save(tmp_path / "labels.npy", np.array([1, 2, 3, 4]))
    done = run("compute", tmp_path / "labels.npy", tmp_path / "logits.npy", exit_code=2)
    [line] = done.stderr.splitlines()
    assert line.startswith("ce-loss: error: the files look swapped")
    assert f"ce-loss compute {tmp_path / 'logits.npy'} {tmp_path / 'labels.npy'}" in line
    assert "(torch: 0D or 1D target tensor expected" in line  # kept, for searching
    np.save(tmp_path / "seq.npy", np.zeros((2, 5, 8), np.float32))
    np.save(tmp_path / "ids.npy", np.zeros((2, 5), np.int64))
    done = run("compute", tmp_path / "ids.npy", tmp_path / "seq.npy", exit_code=2)
    assert done.stderr.rstrip().split(" (torch:")[0].endswith(
        f"{tmp_path / 'ids.npy'} --class-axis -1")


def test_row_counts_that_differ_are_said_first(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "t.npy", np.zeros(5, np.int64))
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", exit_code=2)
    [line] = done.stderr.splitlines()
    assert line.startswith(f"ce-loss: error: {tmp_path / 'x.npy'} has 4 rows of logits but ")
    assert line.endswith("(torch: Expected input batch_size (4) to match target "
                         "batch_size (5))")


def test_class_axis_message_for_two_axes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "t.npy", np.zeros(4, np.int64))
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--class-axis", "5",
               exit_code=2)
    assert "classes are on axis 1 (or -1)" in done.stderr and "1..1" not in done.stderr
