"""Helpers shared by the test modules: the torch oracle, the in-process command, what the
command said, and input files or bytes written the way users write them.

torch and pyarrow are imported where they are used, so that importing this module costs
neither (and ``pytest.importorskip("torch")`` in a test module still skips it).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from ce_cli.cli import cli


def run(*args, exit_code=0, env=None, input=None):
    """Invoke ``ce-loss`` in-process; fail loudly on an unexpected exit code (any exit code
    is accepted with ``exit_code=None``)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False,
                                env=env, input=input)
    if exit_code is not None:
        assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    return result


def json_run(*args, exit_code=0):
    """``run`` with ``--format json``: (the parsed document, the result)."""
    result = run(*args, "--format", "json", exit_code=exit_code)
    return json.loads(result.stdout), result


# -- the oracle ---------------------------------------------------------------------------------


def _tensor(a: Any) -> Any:
    """``a`` as a torch tensor of the same values, dtype and shape (0-d stays 0-d): a C-order
    copy when it is not C-contiguous or not writable (torch warns on read-only arrays)."""
    import torch

    a = np.asarray(a)
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = np.array(a, order="C", copy=True)
    return torch.from_numpy(a)


def torch_ce(x: Any, t: Any, w: Any = None, *, weight: Any = None, **kw: Any) -> np.ndarray:
    """torch's ``F.cross_entropy`` for NumPy inputs (the oracle), as a NumPy array of the
    dtype torch computed in (float16 stays float16; a 0-d array for mean and sum).

    The class weight is ``w`` (positional) or ``weight=``; the other keywords
    (``ignore_index``, ``reduction``, ``label_smoothing``) go to torch as they are. torch's
    own refusals (``RuntimeError`` for the uint8 targets torch 2.13 refuses, ...) propagate.
    """
    import torch
    import torch.nn.functional as F

    if w is not None and weight is not None:
        raise TypeError("torch_ce: give the weight once (w or weight=)")
    w = weight if w is None else w
    out = F.cross_entropy(_tensor(x), _tensor(t), weight=None if w is None else _tensor(w),
                          **kw)
    want = out.numpy()
    assert want.dtype == {torch.float16: np.float16, torch.float32: np.float32,
                          torch.float64: np.float64}[out.dtype]
    return want


# -- what the command said ----------------------------------------------------------------------


def assert_one_error_line(result, *fragments):
    """Exactly one ``ce-loss: error:`` line on stderr, nothing on stdout."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ce-loss: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def said(stderr: str, kind: str = "warning") -> list[str]:
    """The ``ce-loss: <kind>: `` lines of ``stderr``, without that prefix."""
    prefix = f"ce-loss: {kind}: "
    return [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]


def close(got: Any, want: Any, rtol: float, atol: float = 0.0) -> None:
    """``got`` (a number, None, or the text the command printed) within ``rtol``/``atol`` of
    ``want``; a ``want`` of None or a float NaN needs None or NaN."""
    got = None if got is None else float(got)
    if want is None or (isinstance(want, float) and math.isnan(want)):
        assert got is None or math.isnan(got), (got, want)
        return
    assert got is not None, (got, want)
    assert math.isclose(got, float(want), rel_tol=rtol, abs_tol=atol), (got, want)


# -- inputs and outputs -------------------------------------------------------------------------


def save(folder: Path, x: np.ndarray, t: np.ndarray, xname: str = "x.npy",
         tname: str = "t.npy") -> tuple[Path, Path]:
    """``x`` and ``t`` in ``folder``: ``.npy`` by ``np.save``, any other name as CSV by
    ``np.savetxt`` (integers as integers, floats to 17 digits)."""
    xp, tp = folder / xname, folder / tname
    for path, a in ((xp, x), (tp, t)):
        if str(path).endswith(".npy"):
            np.save(path, a)
        else:
            np.savetxt(path, a, fmt="%d" if a.dtype.kind in "iu" else "%.17g", delimiter=",")
    return xp, tp


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in NumPy."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def npy_bytes(a: Any) -> bytes:
    """What ``np.save`` writes for ``a``."""
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def npz_bytes(**arrays: Any) -> bytes:
    """What ``np.savez`` writes for ``arrays``."""
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def parquet_bytes(table: Any) -> bytes:
    """What ``pyarrow.parquet.write_table`` writes for ``table``."""
    import pyarrow.parquet as pq

    b = io.BytesIO()
    pq.write_table(table, b)
    return b.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Temp files (``*.tmp``) the writers may have left anywhere under ``folder``."""
    return sorted(p.name for p in Path(folder).rglob("*.tmp"))
