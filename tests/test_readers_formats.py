"""Every input format, written the way users write it, gives torch's loss through the CLI."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from helpers import npy_bytes, run, torch_ce

N, C = 23, 5


def _arrays(dtype, kind):
    """The same arrays for every test, whichever ran before it (no module-wide generator)."""
    rng = np.random.default_rng(42)
    x = (rng.normal(size=(N, C)) * 3).astype(dtype)
    if kind == "index":
        t = rng.integers(0, C, size=N)
    else:
        t = rng.random((N, C)).astype(dtype)
        t /= t.sum(axis=1, keepdims=True)
    return x, t


def _table(a, prefix):
    if a.ndim == 1:
        return pa.table({"label": a})
    return pa.table({f"{prefix}{i}": a[:, i] for i in range(a.shape[1])})


def _write(path, a, fmt, prefix):
    """Save ``a`` as ``fmt``; return the argument that names it on the command line."""
    if fmt == "npy":
        np.save(path, a)
    elif fmt == "npz":
        np.savez(path, arr=a)
        return f"{path}:arr"
    elif fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        fmt_num = "%d" if a.dtype.kind in "iu" else "%.17g"
        header = "" if a.ndim == 1 else sep.join(f"{prefix}{i}" for i in range(a.shape[1]))
        np.savetxt(path, a, delimiter=sep, fmt=fmt_num, header=header, comments="")
    elif fmt == "parquet":
        pq.write_table(_table(a, prefix), path)
    elif fmt == "feather":
        feather.write_feather(_table(a, prefix), path)
    elif fmt == "arrow-stream":
        table = _table(a, prefix)
        with ipc.new_stream(str(path), table.schema) as writer:
            writer.write_table(table)
    return str(path)


SUFFIX = {"npy": ".npy", "npz": ".npz", "csv": ".csv", "tsv": ".tsv", "parquet": ".parquet",
          "feather": ".feather", "arrow-stream": ".arrow"}


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_format_gives_torchs_loss(tmp_path, fmt, kind, dtype):
    x, t = _arrays(dtype, kind)
    xa = _write(tmp_path / f"x{SUFFIX[fmt]}", x, fmt, "logit_")
    ta = _write(tmp_path / f"t{SUFFIX[fmt]}", t, fmt, "p_")
    # text formats hold float64 numbers; the loss is torch's on what the file holds
    x_read = x.astype(np.float64) if fmt in ("csv", "tsv") else x
    t_read = t.astype(np.float64) if fmt in ("csv", "tsv") and kind == "probs" else t
    rtol = 2e-5 if x_read.dtype == np.float32 else 1e-9
    for reduction in ("mean", "sum"):
        got = run("compute", xa, ta, "--reduction", reduction, "-q").stdout
        want = torch_ce(x_read, t_read, reduction=reduction)
        assert float(got) == pytest.approx(float(want), rel=rtol)
    none = run("compute", xa, ta, "--reduction", "none", "-q").stdout.split()
    np.testing.assert_allclose(np.array(none, dtype=np.float64),
                               torch_ce(x_read, t_read, reduction="none"), rtol=rtol)


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_stdin(tmp_path, fmt):
    x, t = _arrays(np.float32, "index")
    np.save(tmp_path / "t.npy", t)
    if fmt == "npy":
        data, x_read = npy_bytes(x), x
    else:
        data = "\n".join(",".join(repr(float(v)) for v in row) for row in x).encode()
        x_read = x.astype(np.float64)
    got = run("compute", "-", tmp_path / "t.npy", input=data)
    assert float(got.stdout) == pytest.approx(float(torch_ce(x_read, t)), rel=2e-5)


@pytest.mark.parametrize("fmt", ["parquet", "feather", "csv"])
def test_one_table_holding_both(tmp_path, fmt):
    x, t = _arrays(np.float32, "index")
    cols = {f"logit_{i}": x[:, i] for i in range(C)}
    cols["label"] = t
    table = pa.table(cols)
    path = tmp_path / f"preds.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "feather":
        feather.write_feather(table, path)
    else:
        np.savetxt(path, np.column_stack([x.astype(np.float64), t]), delimiter=",",
                   header=",".join(table.column_names), comments="", fmt="%.17g")
    x_read = x.astype(np.float64) if fmt == "csv" else x
    got = run("compute", path, "--target-column", "label", "-q")
    assert float(got.stdout) == pytest.approx(float(torch_ce(x_read, t)), rel=2e-5)
    picked = run("compute", path, "--target-column", "label", "--logits-columns", "logit_*",
                 "-q")
    assert picked.stdout == got.stdout
