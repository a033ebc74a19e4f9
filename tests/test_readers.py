"""Readers: every format round-trips, every unreadable file is one located InputFileError.

Files are written the way users write them (``np.save``, ``np.savetxt``, pyarrow's
Parquet/Feather/IPC writers, plain text), read back through ``ce_cli.readers`` and
compared with the arrays they were written from.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from helpers import npy_bytes, npz_bytes, parquet_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ce_cli
from ce_cli import readers
from ce_cli.errors import InputFileError
from ce_cli.readers import open_source, open_table_pair, read_array

N, C = 7, 4
RNG = np.random.default_rng(0)
X = (RNG.standard_normal((N, C)) * 3).astype(np.float32)
T = np.array([0, 3, 1, -100, 2, 2, 0], dtype=np.int64)
P = (np.exp(X) / np.exp(X).sum(1, keepdims=True)).astype(np.float32)
NAMES = [f"logit_{j}" for j in range(C)]

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def logit_table(x: np.ndarray = X, **extra: object) -> pa.Table:
    cols = {f"logit_{j}": x[:, j] for j in range(x.shape[1])}
    cols.update(extra)  # type: ignore[arg-type]
    return pa.table(cols)


def write_ipc_file(path: Path, table: pa.Table) -> None:
    with ipc.new_file(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=3)  # several record batches


def write_ipc_stream(path: Path, table: pa.Table) -> None:
    with ipc.new_stream(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=3)


def text(values: np.ndarray, header: list[str] | None = None, sep: str = ",") -> str:
    """Plain CSV text as a user types it: the shortest repr of each number."""
    rows = [sep.join(header)] if header else []
    rows += [sep.join(repr(v.item()) for v in row) for row in values.reshape(len(values), -1)]
    return "\n".join(rows) + "\n"


# -- logits round trips -------------------------------------------------------------------------


def _np_savetxt(p: Path) -> str:
    np.savetxt(p, X, delimiter=",")
    return str(p)


def _np_savetxt_header(p: Path) -> str:
    np.savetxt(p, X, delimiter=",", header=",".join(NAMES), comments="")
    return str(p)


def _np_savetxt_spaces(p: Path) -> str:
    np.savetxt(p, X)  # numpy's default: one space between values
    return str(p)


def _plain_csv(p: Path) -> str:
    p.write_text(text(X.astype(np.float64)))
    return str(p)


def _plain_csv_header_crlf_blank_tail(p: Path) -> str:
    p.write_bytes((text(X.astype(np.float64), NAMES).replace("\n", "\r\n") + "\r\n\r\n").encode())
    return str(p)


def _tsv(p: Path) -> str:
    p.write_text(text(X.astype(np.float64), NAMES, sep="\t"))
    return str(p)


def _pandas_csv(p: Path) -> str:
    # DataFrame.to_csv(): an unnamed index column first, quoted names are legal too
    lines = [",".join(['""'] + [f'"{n}"' for n in NAMES])]
    lines += [",".join([str(i)] + [repr(float(v)) for v in row]) for i, row in enumerate(X)]
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def _npz_only(p: Path) -> str:
    np.savez(p, X)
    return str(p)


def _npz_named(p: Path) -> str:
    np.savez(p, logits=X, labels=T)
    return f"{p}:logits"


def _npz_compressed(p: Path) -> str:
    np.savez_compressed(p, logits=X, labels=T)
    return f"{p}:logits"


def _parquet(p: Path) -> str:
    pq.write_table(logit_table(), p, row_group_size=3)
    return str(p)


def _parquet_pandas_index(p: Path) -> str:
    table = logit_table(__index_level_0__=np.arange(N) * 10)
    pq.write_table(table, p)
    return str(p)


def _parquet_list(p: Path) -> str:
    pq.write_table(pa.table({"logits": pa.array(list(X), pa.list_(pa.float32()))}), p)
    return str(p)


def _feather(p: Path) -> str:
    feather.write_feather(logit_table(), p)  # lz4-compressed IPC file
    return str(p)


def _feather_v1(p: Path) -> str:
    with warnings.catch_warnings():  # writing V1 is deprecated; old files still exist
        warnings.simplefilter("ignore", DeprecationWarning)
        feather.write_feather(logit_table(), p, version=1)
    return str(p)


def _ipc_file(p: Path) -> str:
    write_ipc_file(p, logit_table())
    return str(p)


def _ipc_stream(p: Path) -> str:
    write_ipc_stream(p, logit_table())
    return str(p)


def _arrow_fixed_list(p: Path) -> str:
    col = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), C)
    write_ipc_file(p, pa.table({"id": np.arange(N), "logits": col}))
    return str(p)


LOGIT_FILES = {  # name: (suffix, writer, dtype read back)
    "npy": (".npy", lambda p: (np.save(p, X), str(p))[1], np.float32),
    "npz-only": (".npz", _npz_only, np.float32),
    "npz-named": (".npz", _npz_named, np.float32),
    "npz-compressed": (".npz", _npz_compressed, np.float32),
    "savetxt": (".csv", _np_savetxt, np.float64),
    "savetxt-header": (".csv", _np_savetxt_header, np.float64),
    "savetxt-spaces": (".csv", _np_savetxt_spaces, np.float64),
    "plain-csv": (".csv", _plain_csv, np.float64),
    "csv-header-crlf": (".csv", _plain_csv_header_crlf_blank_tail, np.float64),
    "pandas-csv": (".csv", _pandas_csv, np.float64),
    "tsv": (".tsv", _tsv, np.float64),
    "parquet": (".parquet", _parquet, np.float32),
    "parquet-pandas-index": (".parquet", _parquet_pandas_index, np.float32),
    "parquet-list": (".parquet", _parquet_list, np.float32),
    "feather": (".feather", _feather, np.float32),
    "feather-v1": (".feather", _feather_v1, np.float32),
    "ipc-file": (".arrow", _ipc_file, np.float32),
    "ipc-stream": (".arrow", _ipc_stream, np.float32),
    "ipc-stream-as-.ipc": (".ipc", _ipc_stream, np.float32),
    "arrow-fixed-size-list": (".arrow", _arrow_fixed_list, np.float32),
}


@pytest.mark.parametrize("kind", LOGIT_FILES)
def test_logits_round_trip(tmp_path, kind):
    suffix, write, dtype = LOGIT_FILES[kind]
    path = write(tmp_path / f"logits{suffix}")
    source = open_source(path, role="logits")
    got = source.read()
    assert got.dtype == dtype and got.shape == (N, C)
    assert source.row_shape == (C,) and source.dtype == dtype
    # text holds the float32 values exactly (savetxt) or by shortest repr of their float64
    np.testing.assert_array_equal(got.astype(np.float32), X)
    if dtype == np.float32:
        np.testing.assert_array_equal(got, X)
    blocks = list(source.blocks(3))
    assert [b.shape[0] for b in blocks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), got)


@pytest.mark.parametrize("kind", ["parquet", "ipc-file", "feather", "npy"])
def test_row_count_from_metadata(tmp_path, kind):
    suffix, write, _ = LOGIT_FILES[kind]
    assert open_source(write(tmp_path / f"x{suffix}"), role="logits").n_rows == N


@pytest.mark.parametrize("kind", ["savetxt", "ipc-stream"])
def test_row_count_unknown_for_text_and_streams(tmp_path, kind):
    suffix, write, _ = LOGIT_FILES[kind]
    assert open_source(write(tmp_path / f"x{suffix}"), role="logits").n_rows is None


def test_kdim_npy_keeps_its_shape(tmp_path, rng):
    x = rng.standard_normal((3, C, 2, 5))
    np.save(tmp_path / "k.npy", x)
    source = open_source(str(tmp_path / "k.npy"), role="logits")
    assert source.row_shape == (C, 2, 5) and source.n_rows == 3
    np.testing.assert_array_equal(source.read(), x)


def test_npy_is_memory_mapped(tmp_path):
    np.save(tmp_path / "x.npy", X)
    assert isinstance(read_array(str(tmp_path / "x.npy"), role="logits"), np.memmap)


def test_uncompressed_npz_member_is_memory_mapped(tmp_path):
    np.savez(tmp_path / "a.npz", logits=X, labels=T)
    got = read_array(f"{tmp_path}/a.npz:labels", role="targets")
    assert isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, T)


def test_big_csv_streams_in_blocks(tmp_path, rng):
    x = rng.standard_normal((20_000, 3))
    pcsv.write_csv(pa.table({f"c{j}": x[:, j] for j in range(3)}), tmp_path / "big.csv")
    source = open_source(str(tmp_path / "big.csv"), role="logits")
    sizes = [b.shape[0] for b in source.blocks(4096)]
    assert sizes[:-1] == [4096] * (len(sizes) - 1) and sum(sizes) == 20_000
    np.testing.assert_array_equal(source.read(), x)


# -- targets ------------------------------------------------------------------------------------


def _t_npy(p):
    np.save(p, T)
    return str(p)


def _t_savetxt(p):
    np.savetxt(p, T, fmt="%d")
    return str(p)


def _t_float_text(p):  # labels written as floats, the way DataFrames with NaN write them
    p.write_text("\n".join(f"{v}.0" for v in T) + "\n\n")
    return str(p)


def _t_header(p):
    p.write_text("label\n" + "\n".join(str(v) for v in T) + "\n")
    return str(p)


def _t_parquet_only(p):
    pq.write_table(pa.table({"y": T.astype(np.int32)}), p)
    return str(p)


def _t_parquet_named(p):
    pq.write_table(pa.table({"id": np.arange(N), "label": T, "weight": np.ones(N)}), p)
    return str(p)


def _t_arrow_target(p):
    write_ipc_stream(p, pa.table({"target": T.astype(np.float64), "x": np.ones(N)}))
    return str(p)


def _t_npz(p):
    np.savez(p, logits=X, labels=T)
    return f"{p}:labels"


TARGET_FILES = {
    "npy": (".npy", _t_npy),
    "savetxt": (".csv", _t_savetxt),
    "float-text": (".csv", _t_float_text),
    "header": (".csv", _t_header),
    "parquet-only-column": (".parquet", _t_parquet_only),
    "parquet-label-column": (".parquet", _t_parquet_named),
    "arrow-float-target-column": (".arrow", _t_arrow_target),
    "npz": (".npz", _t_npz),
}


@pytest.mark.parametrize("kind", TARGET_FILES)
def test_index_targets_round_trip(tmp_path, kind):
    suffix, write = TARGET_FILES[kind]
    source = open_source(write(tmp_path / f"t{suffix}"), role="targets")
    got = source.read()
    assert got.dtype == np.int64 and source.row_shape == ()
    np.testing.assert_array_equal(got, T)


def test_categorical_label_column(tmp_path):
    labels = pa.array(T).dictionary_encode()
    pq.write_table(pa.table({"label": labels}), tmp_path / "t.parquet")
    write_ipc_file(tmp_path / "t.arrow", pa.table({"label": labels}))
    for name in ("t.parquet", "t.arrow"):
        np.testing.assert_array_equal(read_array(str(tmp_path / name), role="targets"), T)


def test_target_column_option(tmp_path):
    pq.write_table(pa.table({"a": np.zeros(N), "y_true": T}), tmp_path / "t.parquet")
    got = read_array(str(tmp_path / "t.parquet"), role="targets", target_column="y_true")
    np.testing.assert_array_equal(got, T)


def _p_savetxt(p):
    np.savetxt(p, P, delimiter=",")
    return str(p)


def _p_parquet(p):
    pq.write_table(pa.table({f"p{j}": P[:, j] for j in range(C)}), p)
    return str(p)


def _p_list(p):
    write_ipc_file(p, pa.table({"probs": pa.array(list(P), pa.list_(pa.float32()))}))
    return str(p)


def _p_npz(p):
    np.savez(p, probs=P)
    return str(p)


@pytest.mark.parametrize("suffix, write", [(".csv", _p_savetxt), (".parquet", _p_parquet),
                                           (".arrow", _p_list), (".npz", _p_npz)])
def test_probability_targets(tmp_path, suffix, write):
    source = open_source(write(tmp_path / f"p{suffix}"), role="targets")
    got = source.read()
    assert got.dtype.kind == "f" and source.row_shape == (C,)
    np.testing.assert_array_equal(got.astype(np.float32), P)


# -- one table holding logits and targets -------------------------------------------------------


def _pair_parquet(p):
    pq.write_table(logit_table(label=T), p)


def _pair_parquet_pandas(p):  # df.to_parquet() with a non-default index
    table = logit_table(label=T, __index_level_0__=np.arange(N) + 100)
    meta = {b"pandas": b'{"index_columns": ["__index_level_0__"], "columns": []}'}
    pq.write_table(table.replace_schema_metadata(meta), p)


def _pair_feather(p):
    feather.write_feather(logit_table(label=T), p)


def _pair_stream(p):
    write_ipc_stream(p, logit_table(label=T))


def _pair_list(p):
    pq.write_table(pa.table({"path": [f"img{i}.png" for i in range(N)], "label": T,
                             "logits": pa.array(list(X), pa.list_(pa.float32()))}), p)


def _pair_csv(p):
    header = ["Unnamed: 0", "label", *NAMES]
    rows = [",".join([str(i), str(T[i])] + [repr(float(v)) for v in X[i]]) for i in range(N)]
    p.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")


def _pair_csv_text_column(p):
    rows = [",".join([f"img{i}.png", str(T[i])] + [repr(float(v)) for v in X[i]])
            for i in range(N)]
    p.write_text(",".join(["path", "label", *NAMES]) + "\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("suffix, write", [
    (".parquet", _pair_parquet), (".parquet", _pair_parquet_pandas), (".feather", _pair_feather),
    (".arrow", _pair_stream), (".parquet", _pair_list), (".csv", _pair_csv),
    (".csv", _pair_csv_text_column)])
def test_table_pair(tmp_path, suffix, write):
    path = tmp_path / f"preds{suffix}"
    write(path)
    xs, ts = open_table_pair(str(path), target_column="label")
    x, t = xs.read(), ts.read()
    np.testing.assert_array_equal(x.astype(np.float32), X)
    np.testing.assert_array_equal(t, T)
    assert t.dtype == np.int64 and xs.row_shape == (C,) and ts.row_shape == ()


def test_table_pair_notes_ignored_columns(tmp_path):
    _pair_csv_text_column(tmp_path / "p.csv")
    xs, _ = open_table_pair(str(tmp_path / "p.csv"), target_column="label")
    assert any("'path'" in note for note in xs.notes)
    pq.write_table(logit_table(label=T, epoch=np.ones(N, np.int64)), tmp_path / "p.parquet")
    xs, _ = open_table_pair(str(tmp_path / "p.parquet"), target_column="label")
    assert xs.row_shape == (C,) and any("'epoch'" in note for note in xs.notes)


@pytest.mark.parametrize("spec", ["logit_*", "logit_", "logit_0,logit_1,logit_2,logit_3"])
def test_logits_columns_selection(tmp_path, spec):
    pq.write_table(logit_table(label=T, other=np.ones(N)), tmp_path / "p.parquet")
    xs, ts = open_table_pair(str(tmp_path / "p.parquet"), target_column="label",
                             logits_columns=spec)
    np.testing.assert_array_equal(xs.read(), X)
    got = read_array(str(tmp_path / "p.parquet"), role="logits", logits_columns=spec)
    np.testing.assert_array_equal(got, X)


def test_table_pair_missing_column_names_the_columns(tmp_path):
    _pair_parquet(tmp_path / "p.parquet")
    with pytest.raises(InputFileError) as err:
        open_table_pair(str(tmp_path / "p.parquet"), target_column="y")
    assert "'y'" in str(err.value) and "'logit_0'" in str(err.value) and "'label'" in str(err.value)


def test_table_pair_refuses_an_array_file(tmp_path):
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(InputFileError, match="one array"):
        open_table_pair(str(tmp_path / "x.npy"), target_column="label")


# -- stdin, formats by name ---------------------------------------------------------------------


def write_pair_csv(path: Path, x: np.ndarray, t: np.ndarray) -> Path:
    """Logits ``x0..`` and a ``label`` column in one CSV, numbers to 9 digits."""
    body = "\n".join(",".join(f"{v:.9g}" for v in r) + f",{k}" for r, k in zip(x, t))
    path.write_text(",".join(f"x{j}" for j in range(x.shape[1])) + ",label\n" + body + "\n")
    return path


def feed(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def _bytes(write, path):
    path = write(path)
    return Path(path.rpartition(":")[0] if path.endswith(":logits") else path).read_bytes()


@pytest.mark.parametrize("kind", ["npy", "plain-csv", "savetxt-header", "parquet", "feather",
                                  "ipc-stream", "npz-only"])
def test_stdin_by_magic(tmp_path, monkeypatch, kind):
    suffix, write, dtype = LOGIT_FILES[kind]
    feed(monkeypatch, _bytes(write, tmp_path / f"f{suffix}"))
    source = open_source("-", role="logits")
    assert source.path == "-"
    np.testing.assert_array_equal(source.read().astype(np.float32), X)


def test_stdin_targets_and_format_override(monkeypatch):
    feed(monkeypatch, b"1\n0\n2\n")
    np.testing.assert_array_equal(read_array("-", role="targets"), [1, 0, 2])
    feed(monkeypatch, b"1\t2\n3\t4\n")
    np.testing.assert_array_equal(read_array("-", role="logits", fmt="tsv"), [[1, 2], [3, 4]])


def test_empty_stdin(monkeypatch):
    feed(monkeypatch, b"")
    with pytest.raises(InputFileError, match="<stdin>: standard input is empty"):
        read_array("-", role="logits")


def test_format_by_name_overrides_the_suffix(tmp_path):
    (tmp_path / "x.txt").write_text("1,2\n3,4\n")
    np.testing.assert_array_equal(read_array(str(tmp_path / "x.txt"), role="logits", fmt="csv"),
                                  [[1, 2], [3, 4]])
    with pytest.raises(InputFileError, match="unknown format 'xls'"):
        read_array(str(tmp_path / "x.txt"), role="logits", fmt="xls")


def test_header_option(tmp_path):
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    got = read_array(str(tmp_path / "x.csv"), role="logits", header=True)
    np.testing.assert_array_equal(got, [[3, 4]])
    (tmp_path / "h.csv").write_text("a,b\n3,4\n")
    with pytest.raises(InputFileError) as err:
        read_array(str(tmp_path / "h.csv"), role="logits", header=False)
    assert "line 1, column 1: 'a' is not a number" in str(err.value)


def test_pandas_column_number_header(tmp_path):
    # pd.DataFrame(x).to_csv(index=False) writes the column numbers as a header
    (tmp_path / "x.csv").write_text(text(X.astype(np.float64), [str(j) for j in range(C)]))
    source = open_source(str(tmp_path / "x.csv"), role="logits")
    np.testing.assert_array_equal(source.read().astype(np.float32), X)
    assert any("--no-header" in note for note in source.notes)
    (tmp_path / "p.csv").write_text("0,1\n1,0\n0,1\n")  # one-hot rows, not a header
    assert read_array(str(tmp_path / "p.csv"), role="targets").shape == (3, 2)
    (tmp_path / "q.csv").write_text("0,1\n0.25,0.75\n")
    assert read_array(str(tmp_path / "q.csv"), role="targets").shape == (1, 2)
    assert read_array(str(tmp_path / "x.csv"), role="logits", header=False).shape == (N + 1, C)


def test_line_of_maps_rows_to_file_lines(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n\n1,2\n3,4\n\n5,6\n")
    source = open_source(str(tmp_path / "x.csv"), role="logits")
    assert [source.line_of(i) for i in range(3)] == [3, 4, 6]


def test_import_does_not_load_pyarrow():
    code = "import sys, ce_cli.readers, ce_cli.writers; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# -- malformed files: one located error ---------------------------------------------------------


def _ipc_bytes(table: pa.Table) -> bytes:
    b = io.BytesIO()
    with ipc.new_file(b, table.schema) as w:
        w.write_table(table)
    return b.getvalue()


MALFORMED = [
    # (file name, content, role, options, fragments of str(error))
    ("t.csv", "0\n2\n2.5\n", "targets", {}, ["t.csv, line 3, column 1: '2.5' is not a whole"]),
    ("t.csv", "label\n0\n\n1\n2.5\n", "targets", {},
     ["t.csv, line 5, column 'label': '2.5' is not a whole number"]),
    ("t.csv", "0\nnan\n", "targets", {}, ["line 2, column 1: 'nan' is not a class index"]),
    ("t.csv", "0\n-inf\n", "targets", {}, ["line 2, column 1: '-inf' is not a class index"]),
    ("t.csv", "0\ncat\n", "targets", {}, ["line 2, column 1: 'cat' is not a number"]),
    ("x.csv", "1,2\nx,3\n", "logits", {}, ["x.csv, line 2, column 1: 'x' is not a number"]),
    ("x.csv", "1,2,3\n4,5,6\n7,8\n", "logits", {}, ["x.csv, line 3: expected 3 values, got 2"]),
    ("x.csv", "a,b,c\n1,2,3\n4,5,6,7\n", "logits", {}, ["line 3: expected 3 values, got 4"]),
    ("x.csv", "a,b,c\n", "logits", {}, ["x.csv: has a header but no data rows"]),
    ("x.csv", "a,b,c\n\n\n", "logits", {}, ["has a header but no data rows"]),
    ("x.csv", "\n\n", "logits", {}, ["x.csv: holds no data"]),
    ("x.csv", "", "logits", {}, ["x.csv: the file is empty"]),
    ("x.csv", "1,2\n3,\n", "logits", {}, ["line 2, column 2: the value is missing"]),
    ("x.csv", "a,b\n1,2\n3,4e\n", "logits", {}, ["line 3, column 'b': '4e' is not a number"]),
    ("x.csv", "id,a\nimg1,2\n", "logits", {}, ["columns that are not numbers: 'id'",
                                               "--logits-columns"]),
    ("x.tsv", "1\t2\n3\t1_000\n", "logits", {}, ["line 2, column 2: '1_000' is not a number"]),
    ("x.csv", npy_bytes(X), "logits", {}, ["holds NPY data, not CSV text", "npy"]),
    ("x.npy", b"hello world", "logits", {}, ["x.npy: not a .npy file"]),
    ("x.npy", npy_bytes(X)[:-7], "logits", {}, ["x.npy: the .npy file is truncated"]),
    ("x.npy", npy_bytes(np.array(["a", "b"])), "logits", {}, ["hold text", "not real numbers"]),
    ("x.npy", npy_bytes(np.array([1j, 2j])), "logits", {}, ["complex numbers"]),
    ("x.npy", npy_bytes(np.array([{}, 1], dtype=object)), "logits", {}, ["object array"]),
    ("x.npy", npy_bytes(np.zeros(2, [("a", "f4"), ("b", "i4")])), "logits", {}, ["records"]),
    ("x.npz", npz_bytes(a=X, b=T), "logits", {}, ["holds 2 arrays (a, b)", "x.npz:a"]),
    ("x.npz", npz_bytes(a=X)[:-30], "logits", {}, ["x.npz: not a .npz file"]),
    ("x.npz", npz_bytes(a=np.array(["s"])), "logits", {}, ["hold text"]),
    ("x.parquet", b"PAR1 not really", "logits", {}, ["x.parquet: the Parquet file is"]),
    ("x.parquet", parquet_bytes(logit_table())[:-9], "logits", {}, ["Parquet file is truncated"]),
    ("x.parquet", npy_bytes(X), "logits", {}, ["not a Parquet file (it holds npy data)"]),
    ("x.parquet", parquet_bytes(pa.table({"a": [1.0, None, 2.0], "b": [1.0, 2.0, 3.0]})),
     "logits", {}, ["column 'a': row index 1 is missing (null)"]),
    ("x.parquet", parquet_bytes(pa.table({"a": [1.0, 2.0], "s": ["u", "v"]})), "logits", {},
     ["columns that are not numbers: 's' (string)"]),
    ("x.parquet", parquet_bytes(pa.table({"label": [0.0, 1.5]})), "targets", {},
     ["column 'label': row index 1 (1.5) is not a whole number"]),
    ("x.parquet", parquet_bytes(pa.table({"label": [0, None]})), "targets", {},
     ["row index 1 is missing"]),
    ("x.parquet", parquet_bytes(pa.table({"a": [1.0], "b": [2.0]})), "targets", {
        "target_column": "y"}, ["has no column 'y'", "'a', 'b'"]),
    ("x.parquet", parquet_bytes(pa.table({"l": pa.array([[1.0, 2.0], [3.0]])})), "logits", {},
     ["column 'l': row index 1 holds 1 values but the first row holds 2"]),
    ("x.parquet", parquet_bytes(pa.table({"l": pa.array([[1.0, 2.0], [3.0, None]])})),
     "logits", {}, ["column 'l': row index 1 holds a missing (null) value"]),
    ("x.parquet", parquet_bytes(logit_table()), "logits", {"logits_columns": "z*"},
     ["no column matches 'z*'", "'logit_0'"]),
    ("x.parquet", parquet_bytes(logit_table(label=T)), "logits", {"logits_columns": None},
     []),  # fine: the integer label column is left out with a note
    ("x.parquet", parquet_bytes(logit_table(label=T.astype(float))), "logits", {},
     ["has a column named 'label' among the logits", "--target-column label"]),
    ("x.arrow", b"just some text", "logits", {}, ["x.arrow: not an Arrow IPC file or stream"]),
    ("x.arrow", _ipc_bytes(logit_table())[:-20], "logits", {}, ["Arrow IPC file is truncated"]),
    ("x.arrow", _ipc_bytes(pa.table({"a": [1.0, None]})), "logits", {},
     ["column 'a': row index 1 is missing"]),
    ("x.xlsx", b"PK..", "logits", {}, ["cannot tell the format from the suffix '.xlsx'", ".csv"]),
]


@pytest.mark.parametrize("name, content, role, options, fragments", MALFORMED,
                         ids=[f"{i}-{m[0]}" for i, m in enumerate(MALFORMED)])
def test_malformed_is_one_located_error(tmp_path, name, content, role, options, fragments):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    options = {k: v for k, v in options.items() if v is not None}
    if not fragments:
        assert read_array(str(path), role=role, **options).shape[0] > 0
        return
    with pytest.raises(InputFileError) as err:
        read_array(str(path), role=role, **options)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_directory_and_member(tmp_path):
    cases = {str(tmp_path / "nope.csv"): "no such file", str(tmp_path): "folder holds no files",
             f"{tmp_path}/x.parquet:logits": "no such file"}
    for path, fragment in cases.items():
        with pytest.raises(InputFileError, match=fragment):
            read_array(path, role="logits")
    np.savez(tmp_path / "a.npz", logits=X)
    with pytest.raises(InputFileError, match="no array named 'x'; its arrays are: logits"):
        read_array(f"{tmp_path}/a.npz:x", role="logits")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("1,2\n")
    path.chmod(0)
    with pytest.raises(InputFileError, match="permission denied"):
        read_array(str(path), role="logits")


def test_check_path_splits_npz_member(tmp_path):
    np.savez(tmp_path / "a.npz", logits=X)
    readers.check_path(f"{tmp_path}/a.npz:logits")
    assert readers.detect_format(f"{tmp_path}/a.npz:logits") == "npz"
    assert readers.split_member(f"{tmp_path}/a.npz:logits") == (f"{tmp_path}/a.npz", "logits")


# -- corrupted files: InputFileError or numbers, never another exception ------------------------


def _valid_files() -> dict[str, bytes]:
    table = logit_table(label=T, lst=pa.array(list(X), pa.list_(pa.float32())))
    files = {"x.npy": npy_bytes(X), "x.npz": npz_bytes(a=X), "x.parquet": parquet_bytes(table),
             "x.arrow": _ipc_bytes(table)}
    b = io.BytesIO()
    feather.write_feather(table, b)  # compressed
    files["x.feather"] = b.getvalue()
    b = io.BytesIO()
    with ipc.new_stream(b, table.schema) as w:
        w.write_table(table, max_chunksize=3)
    files["s.ipc"] = b.getvalue()
    files["x.csv"] = text(X.astype(np.float64), NAMES).encode()
    files["t.csv"] = text(T).encode()
    return files


VALID = _valid_files()


@st.composite
def corruptions(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "bytes", "zeros"]))
    d = bytearray(data)
    if kind == "truncate":
        return bytes(d[:draw(st.integers(1, len(d) - 1))])
    if kind == "flip":
        i = draw(st.integers(0, len(d) - 1))
        d[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(d)
    if kind == "zeros":
        i = draw(st.integers(0, len(d) - 1))
        d[i:i + draw(st.integers(1, 64))] = b"\0" * len(d[i:i + 64])
        return bytes(d[:len(data)])
    for _ in range(draw(st.integers(1, 8))):
        d[draw(st.integers(0, len(d) - 1))] = draw(st.integers(0, 255))
    return bytes(d)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.slow
@pytest.mark.parametrize("name", VALID)
def test_corrupted_file_is_input_error_or_numbers(fuzz_dir, name):
    roles = ["targets"] if name == "t.csv" else ["logits", "targets"]
    path = fuzz_dir / name

    @FUZZ
    @given(data=corruptions(VALID[name]), role=st.sampled_from(roles),
           listed=st.booleans())
    def check(data, role, listed):
        path.write_bytes(data)
        options = {"logits_columns": "lst"} if listed and name.endswith(
            (".parquet", ".arrow", ".feather", ".ipc")) and role == "logits" else {}
        try:
            got = read_array(str(path), role=role, **options)
        except InputFileError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
        # a flipped data byte changes a value, not the kind of thing read
        assert isinstance(got, np.ndarray) and got.dtype.kind in "biuf"

    check()


def test_truncated_binary_files_always_fail(fuzz_dir):
    for name in ("x.npy", "x.parquet", "x.arrow", "x.feather"):
        data = VALID[name]
        for cut in sorted({1, 5, 9, len(data) // 3, len(data) // 2, len(data) - 1}):
            (fuzz_dir / name).write_bytes(data[:cut])
            with pytest.raises(InputFileError):
                read_array(str(fuzz_dir / name), role="logits")


@pytest.mark.parametrize("kind", ["parquet-list", "arrow-fixed-size-list", "ipc-file",
                                  "feather-v1", "savetxt"])
def test_batches_cut_into_slices(tmp_path, monkeypatch, kind):
    from ce_cli.readers import table

    monkeypatch.setattr(table, "BATCH_ELEMENTS", 1)  # every record batch sliced row by row
    suffix, write, _ = LOGIT_FILES[kind]
    source = open_source(write(tmp_path / f"x{suffix}"), role="logits")
    blocks = list(source.blocks(2))
    assert [b.shape[0] for b in blocks] == [2, 2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(blocks).astype(np.float32), X)


# -- the streaming machinery: rechunk, prefetched, to_numpy, Parquet column groups ----------


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), max_size=12), rows=st.integers(1, 7))
def test_rechunk_cuts_any_parts_into_blocks(sizes, rows):
    from ce_cli.readers.base import rechunk

    whole = np.arange(sum(sizes) * 2).reshape(-1, 2)
    bounds = np.cumsum([0] + sizes)
    parts = [whole[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    blocks = list(rechunk(iter(parts), rows))
    assert all(b.shape[0] == rows for b in blocks[:-1])
    assert not blocks or 0 < blocks[-1].shape[0] <= rows
    got = np.concatenate(blocks) if blocks else whole[:0]
    np.testing.assert_array_equal(got, whole)


def test_rechunk_takes_views_inside_a_part():
    from ce_cli.readers.base import rechunk

    part = np.arange(20.0).reshape(10, 2)
    blocks = list(rechunk(iter([part[:3], part[3:]]), 3))
    assert [b.shape[0] for b in blocks] == [3, 3, 3, 1]
    assert all(np.shares_memory(b, part) for b in blocks)


def test_prefetched_keeps_order_and_raises_where_the_error_was():
    from ce_cli.readers.base import prefetched

    def items():
        yield from range(5)
        raise InputFileError("f.parquet", "damaged at item 5")

    got = []
    with pytest.raises(InputFileError, match="damaged at item 5"):
        for v in prefetched(items(), depth=2):
            got.append(v)
    assert got == [0, 1, 2, 3, 4]
    assert list(prefetched(iter([]))) == []


def test_prefetched_stops_its_thread_when_closed():
    import threading
    import time

    from ce_cli.readers.base import prefetched

    made = []

    def endless():
        while True:
            made.append(1)
            yield len(made)

    before = set(threading.enumerate())  # reader threads of other tests are not this one's
    it = prefetched(endless())
    assert next(it) == 1
    it.close()
    deadline = time.monotonic() + 5
    while any(t.name == "ce-loss-reader" for t in set(threading.enumerate()) - before):
        assert time.monotonic() < deadline, "the reader thread did not stop"
        time.sleep(0.01)
    assert len(made) <= 4  # one in hand, one queued, one waiting to be put


@pytest.mark.parametrize("values", [
    pa.array(np.arange(10, dtype=np.float32)).slice(3, 5),
    pa.array(np.arange(10, dtype=np.int8)).slice(1),
    pa.array(np.arange(10, dtype=np.uint64)),
    pa.array(np.arange(10, dtype=np.float16)),
    pa.array([True, False, True, True, False, False, True, False, True, True]).slice(3, 6),
    pa.array([], type=pa.float64()),
    pa.array([], type=pa.bool_()),
])
def test_to_numpy_matches_pyarrow(values):
    from ce_cli.readers.table import to_numpy

    got = to_numpy(values)
    want = values.to_numpy(zero_copy_only=False)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_reading_a_table_does_not_import_pandas(tmp_path):
    """pyarrow's to_numpy imports pandas when it is installed (~0.3 s per run). A stand-in
    ``pandas`` first on the path records any attempt, installed or not."""
    path = tmp_path / "t.parquet"
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                             "label": np.arange(50) % 3}), path)
    fake = tmp_path / "fake"
    fake.mkdir()
    marker = tmp_path / "pandas-imported"
    (fake / "pandas.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                    "raise ImportError('stand-in')\n")
    code = ("from ce_cli.readers import open_table_pair; "
            f"xs, ts = open_table_pair({str(path)!r}, target_column='label'); "
            "print(xs.read().sum(), ts.read().sum())")
    # the ce_cli under test, wherever pytest runs from (not the cwd, not an installed one)
    tree = str(Path(ce_cli.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), tree]))
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                   check=True, env=env)
    assert not marker.exists()


@pytest.mark.parametrize("row_groups", ["by column groups", "all columns in step"])
@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_parquet_column_groups(tmp_path, monkeypatch, rows, row_groups):
    """More columns than one decode group, several row groups and batch sizes that cut
    across them, read either way: the blocks are the file's values in order."""
    from ce_cli.readers import parquet, table

    monkeypatch.setattr(parquet, "GROUP_COLUMNS", 3)
    if row_groups == "all columns in step":
        monkeypatch.setattr(parquet, "ROW_GROUP_BYTES", 0)
    monkeypatch.setattr(table, "BATCH_ELEMENTS", 50)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 10)).astype(np.float32)
    cols = {f"logit_{j}": x[:, j] for j in range(10)}
    cols["label"] = rng.integers(0, 10, 300)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=70)
    xs, ts = open_table_pair(str(path), target_column="label")
    blocks = list(xs.blocks(rows))
    assert all(b.shape == (rows, 10) for b in blocks[:-1])
    np.testing.assert_array_equal(np.concatenate(blocks), x)
    np.testing.assert_array_equal(np.concatenate(list(ts.blocks(rows))), cols["label"])


def test_a_csv_pair_is_parsed_once(tmp_path, monkeypatch):
    from ce_cli.readers import text
    from ce_cli.run.pipeline import aligned_blocks

    calls = []
    real = text.CsvTable.batches

    def counted(self, fields, rows):
        calls.append([f.name for f in fields])
        return real(self, fields, rows)

    monkeypatch.setattr(text.CsvTable, "batches", counted)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 4))
    t = rng.integers(0, 4, 500)
    path = tmp_path / "pair.csv"
    lines = ["a,b,label,c,d"] + [",".join(f"{v:.17g}" for v in r[:2]) + f",{k}," +
                                 ",".join(f"{v:.17g}" for v in r[2:]) for r, k in zip(x, t)]
    path.write_text("\n".join(lines) + "\n")
    xs, ts = open_table_pair(str(path), target_column="label")
    pairs = list(aligned_blocks(xs, ts, 64))
    assert calls == [["a", "b", "c", "d", "label"]]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pairs]), x)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pairs]), t)
    # reading a side again starts a new shared read, which the other side then joins
    np.testing.assert_array_equal(ts.read(), t)
    np.testing.assert_array_equal(xs.read(), x)
    np.testing.assert_array_equal(xs.read(), x)
    assert len(calls) == 3


def test_to_numpy_with_nulls_gives_nan():
    from ce_cli.readers.table import to_numpy

    got = to_numpy(pa.array([1.0, None, 3.0]))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [1.0, np.nan, 3.0])


def test_fanout_gives_every_side_every_item_in_order():
    from ce_cli.readers.shared import Fanout as _Fanout

    fan = _Fanout(iter(range(20)), 2, limit=3)
    first = fan.branch(0)
    assert [next(first) for _ in range(3)] == [0, 1, 2]
    assert list(fan.branch(1)) == list(range(20))  # side 0 has started: it is kept
    assert list(first) == list(range(3, 20))


def test_fanout_lets_a_side_that_never_comes_go(monkeypatch):
    from ce_cli.readers import shared

    fan = shared.Fanout(iter(range(20)), 2, limit=3)
    assert list(fan.branch(1)) == list(range(20))
    assert not fan.holds(0)  # nothing kept for it: it will read on its own


def test_fanout_error_reaches_every_side_after_its_items():
    from ce_cli.readers.shared import Fanout as _Fanout

    def items():
        yield from range(4)
        raise InputFileError("t.csv", "bad cell", line=6)

    fan = _Fanout(items(), 2, limit=10)
    a, b = fan.branch(0), fan.branch(1)
    got_a = []
    with pytest.raises(InputFileError, match="bad cell"):
        for v in a:
            got_a.append(v)
    got_b = []
    with pytest.raises(InputFileError, match="bad cell"):
        for v in b:
            got_b.append(v)
    assert got_a == got_b == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_csv_pair_side_read_alone_keeps_no_copy_of_the_file(tmp_path, monkeypatch):
    """The CLI reads the labels alone to locate a bad one: the logits side must not
    buffer the whole file meanwhile, and still reads right afterwards."""
    from ce_cli.readers import shared, text

    monkeypatch.setattr(shared, "SHARED_LAG_BYTES", 2 << 20)
    monkeypatch.setattr(text, "PIECE_BYTES", 256 << 10)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((80_000, 8))
    t = rng.integers(0, 8, 80_000)
    path = write_pair_csv(tmp_path / "pair.csv", x, t)
    assert path.stat().st_size > 6 << 20  # many pieces
    xs, ts = open_table_pair(str(path), target_column="label")
    np.testing.assert_array_equal(ts.read(), t)
    # the parsed file is 80,000 x 9 float64 = 5.8 MB; a side let go keeps none of it
    assert pa.total_allocated_bytes() < 2 << 20, pa.total_allocated_bytes()
    np.testing.assert_allclose(xs.read(), x, rtol=1e-8)


def test_parquet_duplicate_column_names_across_groups(tmp_path, monkeypatch):
    from ce_cli.readers import parquet

    monkeypatch.setattr(parquet, "GROUP_COLUMNS", 2)
    x = np.arange(30, dtype=np.float32).reshape(6, 5)
    names = ["a", "b", "a", "c", "d"]
    tbl = pa.Table.from_arrays([pa.array(x[:, j]) for j in range(5)] +
                               [pa.array(np.arange(6) % 5)], names=names + ["label"])
    path = tmp_path / "dup.parquet"
    pq.write_table(tbl, path, row_group_size=4)
    xs, ts = open_table_pair(str(path), target_column="label")
    np.testing.assert_array_equal(xs.read(), x)


def test_parquet_row_group_error_is_located(tmp_path, monkeypatch):
    from ce_cli.readers import parquet

    monkeypatch.setattr(parquet, "GROUP_COLUMNS", 2)
    x = np.arange(60, dtype=np.float32).reshape(12, 5)
    cols = {f"x{j}": x[:, j] for j in range(5)}
    cols["label"] = np.arange(12) % 5
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=3)
    real = pq.ParquetFile.read_row_group

    def failing(self, i, *args, **kwargs):
        if i == 2:
            raise pa.ArrowInvalid("corrupt page in row group 2")
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", failing)
    xs, _ = open_table_pair(str(path), target_column="label")
    with pytest.raises(InputFileError, match="damaged.*corrupt page"):
        xs.read()


def test_parquet_reader_threads_stop_when_the_reading_stops(tmp_path, monkeypatch):
    import threading
    import time

    from ce_cli.readers import parquet

    monkeypatch.setattr(parquet, "GROUP_COLUMNS", 2)
    x = np.zeros((400, 5), dtype=np.float32)
    cols = {f"x{j}": x[:, j] for j in range(5)}
    cols["label"] = np.zeros(400, dtype=np.int64)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=10)
    before = set(threading.enumerate())  # reader threads of other tests are not this one's
    xs, _ = open_table_pair(str(path), target_column="label")
    blocks = xs.blocks(10)
    next(blocks)
    blocks.close()
    deadline = time.monotonic() + 5
    while any(t.name == "ce-loss-reader" for t in set(threading.enumerate()) - before):
        assert time.monotonic() < deadline, "reader threads still running"
        time.sleep(0.01)


def test_a_csv_pair_block_spanning_many_parse_blocks_is_parsed_once(tmp_path, monkeypatch):
    """The logits side fills a whole block (many parse blocks) before the labels side
    asks: the labels must still join the same parse, not start a second one."""
    from ce_cli.readers import text
    from ce_cli.run.pipeline import aligned_blocks

    calls = []
    real_batches = text.CsvTable.batches

    def counted(self, fields, rows):
        calls.append(1)
        return real_batches(self, fields, rows)

    monkeypatch.setattr(text, "PARSE_BLOCK_BYTES", 4096)
    monkeypatch.setattr(text.CsvTable, "batches", counted)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 8))
    t = rng.integers(0, 8, 3000)
    path = write_pair_csv(tmp_path / "pair.csv", x, t)
    xs, ts = open_table_pair(str(path), target_column="label")
    pairs = list(aligned_blocks(xs, ts, 1500))  # ~30 parse blocks per block
    assert len(calls) == 1
    np.testing.assert_allclose(np.concatenate([p[0] for p in pairs]), x, rtol=1e-8)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pairs]), t)


# -- CSV read in pieces of whole lines ----------------------------------------------------------


@st.composite
def csv_texts(draw):
    """CSV text as users write it: a header or not, CRLF or LF, blank lines, a text id
    column (quoted, maybe with a line break inside the quotes), a last line with or
    without its newline; and the (rows, classes) array it holds."""
    n = draw(st.integers(1, 40))
    c = draw(st.integers(1, 5))
    x = np.array(draw(st.lists(st.lists(st.floats(-1e6, 1e6, width=32), min_size=c,
                                        max_size=c), min_size=n, max_size=n)))
    header = draw(st.booleans())
    ids = draw(st.sampled_from(["none", "plain", "quoted", "quoted-newline"]))
    if ids != "none":
        header = True  # a text column needs a header to be told from data
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    blanks = draw(st.sets(st.integers(0, n), max_size=3))
    lines = []
    if header:
        lines.append(",".join((["id"] if ids != "none" else []) +
                              [f"x{j}" for j in range(c)]))
    for i, row in enumerate(x):
        if i in blanks and i > 0:  # a blank line right below the header is a data row
            lines.append("")
        cells = [repr(float(v)) for v in row]
        if ids == "plain":
            cells.insert(0, f"r{i}")
        elif ids == "quoted":
            cells.insert(0, f'"row, {i}"')
        elif ids == "quoted-newline":
            cells.insert(0, f'"row{eol}{i}"' if i % 3 == 1 else f"r{i}")
        lines.append(",".join(cells))
    body = eol.join(lines) + (eol if draw(st.booleans()) else "")
    return body.encode(), x, ids != "none"


@pytest.mark.slow
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=csv_texts(), piece=st.integers(1, 120), stdin=st.booleans())
def test_csv_read_in_pieces_of_any_size_gives_the_rows(tmp_path, case, piece, stdin):
    from ce_cli.readers import text
    from ce_cli.readers.table import table_source

    data, x, has_ids = case
    path = tmp_path / "x.csv"  # one file, rewritten by every example
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:  # hypothesis tests cannot take monkeypatch
        mp.setattr(text, "PIECE_BYTES", piece)
        table = text.CsvTable("-" if stdin else str(path), data=data if stdin else None)
        spec = ",".join(f"x{j}" for j in range(x.shape[1])) if has_ids else None
        got = table_source(table, "logits", logits_columns=spec).read()
    np.testing.assert_array_equal(got.reshape(x.shape), x)


def test_csv_pieces_hand_quoted_text_to_the_streaming_parser(tmp_path, monkeypatch):
    """A line break inside quotes must not cut a row: from the first piece holding a
    quote on, the file goes to pyarrow's streaming reader, which knows quotes."""
    from ce_cli.readers import text

    monkeypatch.setattr(text, "PIECE_BYTES", 64)
    rows = [f"{i},{i + 0.5}" for i in range(40)]
    rows[30] = '"30",30.5'
    path = tmp_path / "q.csv"
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    streamed = []
    real = text.CsvTable._arrow_stream
    monkeypatch.setattr(text.CsvTable, "_arrow_stream",
                        lambda self, offset: streamed.append(offset) or real(self, offset))
    got = open_source(str(path), role="logits").read()
    np.testing.assert_array_equal(got, [[i, i + 0.5] for i in range(40)])
    assert len(streamed) == 1 and 0 < streamed[0] < path.stat().st_size


def test_csv_bad_cell_in_a_later_piece_names_its_line(tmp_path, monkeypatch):
    from ce_cli.readers import text

    monkeypatch.setattr(text, "PIECE_BYTES", 100)
    rows = [f"{i},{i}.5" for i in range(200)]
    rows[150] = "150,oops"
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputFileError, match=r"line 152.*'oops' is not a number"):
        open_source(str(path), role="logits").read()


@pytest.mark.slow
def test_a_dense_csv_pair_is_parsed_once_at_the_default_sizes(tmp_path, monkeypatch):
    """Short cells make big batches (an 8 MB piece of '0,1,...' is 32 MB as float64):
    the labels side must still join the read the logits side started, with the command
    line's block size."""
    from ce_cli.readers import text
    from ce_cli.run.pipeline import READ_ELEMENTS, aligned_blocks

    calls = []
    real = text.CsvTable.batches
    monkeypatch.setattr(text.CsvTable, "batches",
                        lambda self, fields, rows: calls.append(1) or real(self, fields, rows))
    path = tmp_path / "dense.csv"
    rows = 2_000_000
    path.write_bytes(b"a,b,c,d,label\n" + b"0,1,0,1,2\n" * rows)
    xs, ts = open_table_pair(str(path), target_column="label")
    n = 0
    for xb, tb in aligned_blocks(xs, ts, READ_ELEMENTS // 4):
        assert (xb == [0, 1, 0, 1]).all() and (tb == 2).all()
        n += len(tb)
    assert n == rows and calls == [1]


def test_csv_quoted_line_breaks_across_parse_blocks(tmp_path, monkeypatch):
    """Many of pyarrow's parse blocks of rows whose quoted ids hold line breaks: the
    streaming reader must not cut a block inside the quotes."""
    from ce_cli.readers import text

    monkeypatch.setattr(text, "PARSE_BLOCK_BYTES", 4096)
    x = np.random.default_rng(8).random((3000, 2)).round(6)
    for pad in range(4):  # where the blocks fall depends on the row lengths
        path = tmp_path / f"ids{pad}.csv"
        body = "".join(f'"row{"_" * pad}\n{i}",{float(a)!r},{float(b)!r}\n'
                       for i, (a, b) in enumerate(x))
        path.write_text("id,x0,x1\n" + body)
        got = open_source(str(path), role="logits", logits_columns="x0,x1").read()
        np.testing.assert_array_equal(got, x)
