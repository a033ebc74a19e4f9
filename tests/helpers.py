"""Shared helpers for the CLI tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from ce_cli.cli import cli


def run(*args, exit_code=0, env=None, input=None):
    """Invoke ``ce-loss`` in-process; fail loudly on an unexpected exit code."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False,
                                env=env, input=input)
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    return result


def torch_ce(x, t, **kw):
    """torch's value for numpy inputs (the oracle)."""
    w = kw.pop("weight", None)
    out = F.cross_entropy(torch.from_numpy(np.ascontiguousarray(x)),
                          torch.from_numpy(np.ascontiguousarray(t)),
                          weight=None if w is None else torch.from_numpy(np.asarray(w)), **kw)
    return out.numpy()


def assert_one_error_line(result, *fragments):
    """Exactly one ``ce-loss: error:`` line on stderr, nothing on stdout."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ce-loss: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
