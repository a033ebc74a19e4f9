"""The README's commands work as written, and its examples show real output."""

from __future__ import annotations

import doctest
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import readme_transcripts
from helpers import torch_ce

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    found = re.findall(rf"^([ \t]*)```{lang}\n(.*?)^[ \t]*```", README, flags=re.S | re.M)
    return [textwrap.dedent(indent + body) for indent, body in found]


def _setup_block() -> list[str]:
    return [line for line in _blocks("console")[0].splitlines() if line.strip()]


def test_readme_has_two_setup_commands_a_run_and_the_test_command():
    lines = _setup_block()
    assert len(lines) == 4
    assert lines[1] == "pip install -e '.[test]'"
    assert lines[2].startswith("ce-loss compute sample_data/")
    assert lines[3] == "python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-e '.[test]'" in ci
    assert ci.strip().splitlines()[-1] == lines[3]  # CI runs exactly the README's test command


def test_readme_run_command_prints_torchs_number():
    args = shlex.split(_setup_block()[2])[1:]
    proc = readme_transcripts.ce_loss(args)
    assert proc.returncode == 0, proc.stderr
    x, t = np.load(ROOT / args[1]), np.load(ROOT / args[2])
    assert float(proc.stdout) == pytest.approx(float(torch_ce(x, t)), rel=2e-6)


@pytest.mark.slow
def test_readme_transcripts_match_real_output():
    """Every ``$ ce-loss ...`` transcript shows what the command prints (stderr, then stdout).

    Refresh them with ``python tests/readme_transcripts.py``.
    """
    found = readme_transcripts.transcripts(README)
    assert len(found) >= 5
    for command, shown in found:
        code, real = readme_transcripts.real_output(command)
        if shown and shown[0].startswith("ce-loss: error:"):
            assert code == 2, command
        else:
            assert code == 0, (command, real)
        if shown:
            assert [s.rstrip() for s in shown] == [r.rstrip() for r in real], command


def test_readme_python_examples():
    for block in _blocks("python"):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block, {}, "README", "README.md", 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.failures == 0 and runner.tries > 0


def test_import_is_light():
    """`ce-loss --help` must not pay for NumPy, pyarrow or rich."""
    code = ("import sys, ce_cli, ce_cli.cli; "
            "print(sorted(m for m in ('numpy', 'pyarrow', 'rich', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "[]"
