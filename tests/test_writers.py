"""Writers: every suffix round-trips; a failed write leaves no file and no temp file."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from helpers import leftovers

from ce_cli import writers
from ce_cli.errors import OutputFileError
from ce_cli.readers import open_source, read_array

RNG = np.random.default_rng(1)
LOSS = RNG.random(6).astype(np.float32) * 3
COLUMNS = {"index": np.arange(6, dtype=np.int64), "target": np.array([0, 2, 1, -100, 1, 0]),
           "loss": LOSS}
MATRIX = RNG.random((6, 3)).astype(np.float32)
TABLE_SUFFIXES = [".csv", ".tsv", ".parquet", ".arrow", ".feather", ".ipc"]


def read_table(path):
    """The file as column name -> array, read by pyarrow itself (not by our readers)."""
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        opts = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        table = pcsv.read_csv(path, parse_options=opts)
    elif suffix == ".parquet":
        table = pq.read_table(path)
    else:
        with ipc.open_file(str(path)) as reader:  # the IPC *file* format
            table = reader.read_all()
    return {name: table.column(name).to_numpy() for name in table.column_names}


def test_npy_holds_the_main_column(tmp_path):
    writers.write_columns(str(tmp_path / "l.npy"), COLUMNS, main="loss")
    got = np.load(tmp_path / "l.npy")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, LOSS)


@pytest.mark.parametrize("suffix", TABLE_SUFFIXES)
def test_tables_hold_every_column_in_order(tmp_path, suffix):
    path = tmp_path / f"losses{suffix}"
    writers.write_columns(str(path), COLUMNS, main="loss")
    got = read_table(path)
    assert list(got) == list(COLUMNS)
    for name, values in COLUMNS.items():
        np.testing.assert_array_equal(got[name].astype(values.dtype), values)
    if suffix in (".parquet", ".arrow", ".feather", ".ipc"):
        assert got["loss"].dtype == np.float32 and got["index"].dtype == np.int64
    # and our own readers take the file back
    back = read_array(str(path), role="logits", logits_columns="loss")
    np.testing.assert_array_equal(back.reshape(-1).astype(np.float32), LOSS)
    assert leftovers(tmp_path) == []


def test_feather_output_is_readable_by_feather(tmp_path):
    writers.write_columns(str(tmp_path / "l.feather"), COLUMNS, main="loss")
    np.testing.assert_array_equal(feather.read_table(tmp_path / "l.feather")["loss"], LOSS)


def test_csv_numbers_are_shortest_round_trip(tmp_path):
    cols = {"f32": np.array([0.1, 1 / 3, 1e30, np.nan, -np.inf], np.float32),
            "f64": np.array([0.1, 1 / 3, 1e-300, np.inf, -0.0]),
            "f16": np.array([0.1, 65504, 1, 0.5, 2], np.float16)}
    writers.write_columns(str(tmp_path / "v.csv"), cols, main="f64")
    lines = (tmp_path / "v.csv").read_text().splitlines()
    assert lines[0] == "f32,f64,f16"
    assert lines[1] == "0.1,0.1,0.1"
    f32, f64, f16 = zip(*(line.split(",") for line in lines[1:]))
    assert f32[1] == "0.33333334" and f64[1] == repr(1 / 3)
    for name, texts in (("f32", f32), ("f64", f64), ("f16", f16)):
        want = cols[name]
        back = np.array([float(s) for s in texts]).astype(want.dtype)
        np.testing.assert_array_equal(back, want)  # NaN == NaN here
        if name != "f16":  # numpy prints half floats as 6.55e+04, still the shortest digits
            assert all(len(s) <= len(repr(float(v))) for s, v in zip(texts, want))


def test_csv_header_quotes_only_when_needed(tmp_path):
    writers.write_columns(str(tmp_path / "q.csv"), {"a,b": LOSS, "loss": LOSS}, main="loss")
    assert (tmp_path / "q.csv").read_text().splitlines()[0] == '"a,b",loss'
    got = read_array(str(tmp_path / "q.csv"), role="logits", logits_columns="a?b")
    np.testing.assert_array_equal(got.reshape(-1).astype(np.float32), LOSS)


@pytest.mark.parametrize("suffix", [".npy", *TABLE_SUFFIXES])
def test_matrix_round_trip(tmp_path, suffix):
    path = tmp_path / f"probs{suffix}"
    writers.write_matrix(str(path), MATRIX, prefix="p")
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(path), MATRIX)
    else:
        got = read_table(path)
        assert list(got) == ["p0", "p1", "p2"]
        np.testing.assert_array_equal(np.column_stack(list(got.values())).astype(np.float32),
                                      MATRIX)
    back = open_source(str(path), role="logits").read()
    np.testing.assert_array_equal(back.astype(np.float32), MATRIX)


def test_kdim_matrix_needs_npy(tmp_path):
    with pytest.raises(OutputFileError, match="write them to a .npy file"):
        writers.write_matrix(str(tmp_path / "p.parquet"), np.zeros((2, 3, 4)))
    writers.write_matrix(str(tmp_path / "p.npy"), np.zeros((2, 3, 4)))
    assert np.load(tmp_path / "p.npy").shape == (2, 3, 4)


def test_new_file_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        writers.write_columns(str(tmp_path / "l.csv"), COLUMNS, main="loss")
    finally:
        os.umask(umask)
    assert (tmp_path / "l.csv").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet", ".arrow"])
def test_failed_write_leaves_existing_target_and_no_temp(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"precious")

    def broken(path, columns, main):
        path.write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(writers.WRITERS, suffix, broken)
    with pytest.raises(OutputFileError, match="No space left on device"):
        writers.write_columns(str(target), COLUMNS, main="loss")
    assert target.read_bytes() == b"precious" and leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_interrupted_write_leaves_existing_target_and_no_temp(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"precious")

    def interrupted(path, columns, main):
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setitem(writers.WRITERS, suffix, interrupted)
    with pytest.raises(KeyboardInterrupt):
        writers.write_columns(str(target), COLUMNS, main="loss")
    assert target.read_bytes() == b"precious" and leftovers(tmp_path) == []


def test_unequal_columns_leave_existing_target(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_bytes(b"precious")
    with pytest.raises(OutputFileError, match="differ in length"):
        writers.write_columns(str(target), {"a": np.zeros(3), "loss": np.zeros(4)}, main="loss")
    assert target.read_bytes() == b"precious" and leftovers(tmp_path) == []


def test_missing_folder_and_unknown_suffix(tmp_path):
    with pytest.raises(OutputFileError, match="cannot write"):
        writers.write_columns(str(tmp_path / "no" / "l.csv"), COLUMNS, main="loss")
    with pytest.raises(OutputFileError, match="name the output with one of .arrow, .csv"):
        writers.check_output(str(tmp_path / "l.xlsx"))
    with pytest.raises(OutputFileError, match=".xlsx"):
        writers.write_columns(str(tmp_path / "l.xlsx"), COLUMNS, main="loss")


def test_write_text_is_atomic_and_check_output_takes_suffixes(tmp_path, monkeypatch):
    writers.check_output(str(tmp_path / "part.json"), suffixes=(".json",))
    with pytest.raises(OutputFileError, match="name the output with .json"):
        writers.check_output(str(tmp_path / "part.csv"), suffixes=(".json",))
    target = tmp_path / "part.json"
    writers.write_text(str(target), '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    monkeypatch.setattr(writers.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "EIO")))
    with pytest.raises(OutputFileError, match="EIO"):
        writers.write_text(str(target), "new")
    assert target.read_text() == '{"a": 1}\n' and leftovers(tmp_path) == []


def test_write_matrix_saves_c_order(tmp_path):
    """A class-major block from a table reader arrives as a transposed (F-ordered) view."""
    from ce_cli.writers import write_matrix

    m = np.arange(12.0).reshape(3, 4).T  # (4, 3), F-ordered
    path = tmp_path / "p.npy"
    write_matrix(str(path), m)
    with open(path, "rb") as fh:
        np.lib.format.read_magic(fh)
        _, fortran, _ = np.lib.format.read_array_header_1_0(fh)
    assert not fortran
    np.testing.assert_array_equal(np.load(path), m)
