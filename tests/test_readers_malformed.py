"""Malformed input through the whole command: exit 2, one located line, nothing written.

A table of hand-made bad files for every format, and hypothesis-made corruptions of
valid files (truncated at random offsets, flipped bytes).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from helpers import npy_bytes, parquet_bytes, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

X = np.array([[0.5, 1.0, -1.0], [2.0, 0.1, 0.3], [0.0, 0.0, 1.0]], dtype=np.float32)
T = np.array([0, 2, 1])
PRECIOUS = b"precious bytes"


def _check_refused(result, name, out):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ce-loss: error: "), result.stderr
    assert name in lines[0], (name, lines[0])
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == PRECIOUS


def _arrow_bytes(table):
    buf = io.BytesIO()
    feather.write_feather(table, buf)
    return buf.getvalue()


LOGIT_TABLE = pa.table({f"c{i}": X[:, i] for i in range(3)})
LABEL_TABLE = pa.table({"label": T})

# (name, role, suffix, content, fragment of the error)
CASES = [
    ("empty-npy", "logits", ".npy", b"", "empty"),
    ("wrong-magic", "logits", ".npy", b"NUMPY\x01\x00" + b"x" * 80, "not a .npy file"),
    ("truncated-npy", "logits", ".npy", npy_bytes(X)[:-7], "truncated"),
    ("header-only-npy", "logits", ".npy", npy_bytes(X)[:128], "truncated"),
    ("complex-npy", "logits", ".npy", npy_bytes(X.astype(np.complex64)), "complex"),
    ("text-npy", "logits", ".npy", npy_bytes(np.array(["a", "b"])), "text"),
    ("0d-logits", "logits", ".npy", npy_bytes(np.float32(1.0)), "dimensions"),
    ("1d-logits-batch", "logits", ".npy", npy_bytes(np.ones(3, np.float32)), "one sample"),
    ("labels-float", "targets", ".npy", npy_bytes(np.array([0.0, 2.5, 1.0])), "2.5"),
    ("labels-out-of-range", "targets", ".npy", npy_bytes(np.array([0, 7, 1])), "Target 7"),
    ("labels-negative", "targets", ".npy", npy_bytes(np.array([0, -1, 1])), "--ignore-index -1"),
    ("labels-1-based", "targets", ".npy", npy_bytes(np.array([1, 3, 2])), "1-based"),
    ("labels-rows", "targets", ".npy", npy_bytes(np.array([0, 1])), "batch_size"),
    ("npz-several", "logits", ".npz", None, "2 arrays (a, b)"),
    ("csv-cell", "logits", ".csv", b"0.5,1.0,-1\n2,x,0.3\n0,0,1\n", "line 2"),
    ("csv-ragged", "logits", ".csv", b"0.5,1.0,-1\n2,0.3\n0,0,1\n", "line 2"),
    ("csv-header-only", "logits", ".csv", b"a,b,c\n", "header"),
    ("csv-label-2.5", "targets", ".csv", b"0\n2.5\n1\n", "line 2"),
    ("csv-label-nan", "targets", ".csv", b"0\nnan\n1\n", "line 2"),
    ("csv-binary", "logits", ".csv", b"\x00\x01\x02\xff" * 20, ".csv"),
    ("parquet-truncated", "logits", ".parquet", parquet_bytes(LOGIT_TABLE)[:-30], ".parquet"),
    ("parquet-garbage", "logits", ".parquet", b"PAR1" + b"\x00" * 50, ".parquet"),
    ("parquet-text-column", "logits", ".parquet",
     parquet_bytes(pa.table({"a": ["x", "y", "z"]})), "a"),
    ("parquet-nulls", "logits", ".parquet",
     parquet_bytes(pa.table({"a": pa.array([1.0, None, 2.0]), "b": [1.0, 2.0, 3.0]})), "null"),
    ("arrow-truncated", "logits", ".arrow", _arrow_bytes(LOGIT_TABLE)[:-40], ".arrow"),
    ("arrow-wrong-magic", "logits", ".arrow", b"NOTARROW" * 10, ".arrow"),
    ("targets-parquet-no-column", "targets", ".parquet",
     parquet_bytes(pa.table({"a": [1, 2, 0], "b": [0, 1, 1]})), "multi-target"),
]


@pytest.mark.parametrize("name, role, suffix, content, fragment", CASES,
                         ids=[c[0] for c in CASES])
def test_malformed_file_is_refused(tmp_path, name, role, suffix, content, fragment):
    good_x, good_t = tmp_path / "x.npy", tmp_path / "t.npy"
    np.save(good_x, X)
    np.save(good_t, T)
    bad = tmp_path / f"bad{suffix}"
    if name == "npz-several":
        np.savez(bad, a=X, b=X)
    else:
        bad.write_bytes(content)
    out = tmp_path / "out.npy"
    out.write_bytes(PRECIOUS)
    args = ["compute", bad, good_t] if role == "logits" else ["compute", good_x, bad]
    result = run(*args, "-o", out, exit_code=None)
    _check_refused(result, "bad" + suffix, out)
    assert fragment in result.stderr, (fragment, result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["x.npy", "t.npy", "out.npy", bad.name])


VALID = {
    ".npy": npy_bytes(X),
    ".parquet": parquet_bytes(LOGIT_TABLE),
    ".arrow": _arrow_bytes(LOGIT_TABLE),
    ".csv": b"0.5,1.0,-1.0\n2.0,0.1,0.3\n0.0,0.0,1.0\n",
}


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(sorted(VALID)), data=st.data(),
       role=st.sampled_from(["logits", "targets"]))
def test_corrupted_files_never_crash(tmp_path_factory, suffix, data, role):
    tmp = tmp_path_factory.mktemp("fuzz")
    raw = bytearray(VALID[suffix] if role == "logits" else {
        ".npy": npy_bytes(T), ".parquet": parquet_bytes(LABEL_TABLE),
        ".arrow": _arrow_bytes(LABEL_TABLE), ".csv": b"0\n2\n1\n"}[suffix])
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            i = data.draw(st.integers(0, len(raw) - 1), label="offset")
            raw[i] = data.draw(st.integers(0, 255).filter(lambda b, old=raw[i]: b != old))
    bad = tmp / f"bad{suffix}"
    bad.write_bytes(bytes(raw))
    np.save(tmp / "x.npy", X)
    np.save(tmp / "t.npy", T)
    out = tmp / "out.npy"
    out.write_bytes(PRECIOUS)
    args = ["compute", bad, tmp / "t.npy"] if role == "logits" else ["compute", tmp / "x.npy", bad]
    result = run(*args, "-o", out, "--reduction", "none", exit_code=None)
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        _check_refused(result, "bad" + suffix, out)
    else:  # the damage left readable numbers: a whole, valid output
        assert len(np.load(out)) == len(result.stdout.splitlines())
    assert not [p for p in tmp.iterdir() if p.name.startswith(".out")]
