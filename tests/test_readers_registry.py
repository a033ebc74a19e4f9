"""The format registry (ce_cli/readers/registry.py): every row detects, reads and writes
its format, and everything that lists formats lists the registry's."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from ce_cli import readers, writers
from ce_cli.errors import InputFileError, OutputFileError
from ce_cli.readers import registry, shards

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=np.float32)

#: what each suffix is, written down independently of the registry
EXPECTED_SUFFIXES = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".tsv": "tsv",
                     ".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow",
                     ".ipc": "arrow", ".safetensors": "safetensors", ".jsonl": "jsonl",
                     ".ndjson": "jsonl", ".pt": "pt", ".pth": "pt", ".h5": "hdf5",
                     ".hdf5": "hdf5", ".hdf": "hdf5"}
EXPECTED_WRITTEN = {".npy", ".csv", ".tsv", ".parquet", ".arrow", ".feather", ".ipc"}


def _bytes_of(kind: str) -> bytes:
    """A real file of ``kind``, written by numpy or pyarrow themselves."""
    b = io.BytesIO()
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    if kind == "npy":
        np.save(b, X)
    elif kind == "npz":
        np.savez(b, x=X)
    elif kind == "npz-compressed":
        np.savez_compressed(b, x=X)
    elif kind == "parquet":
        pq.write_table(table, b)
    elif kind == "feather-v2":
        feather.write_feather(table, b, compression="uncompressed")
    elif kind == "feather-v1":
        with warnings.catch_warnings():  # writing V1 is deprecated; old files still exist
            warnings.simplefilter("ignore", DeprecationWarning)
            feather.write_feather(table, b, version=1)
    elif kind == "ipc-stream":
        with ipc.new_stream(b, table.schema) as w:
            w.write_table(table)
    return b.getvalue()


SNIFFED = [("npy", "npy"), ("npz", "npz"), ("npz-compressed", "npz"),
           ("parquet", "parquet"), ("feather-v2", "arrow"), ("feather-v1", "arrow"),
           ("ipc-stream", "arrow")]


# -- the table itself ---------------------------------------------------------------------------


def test_the_table_holds_the_formats_read_today():
    assert registry.suffixes() == EXPECTED_SUFFIXES
    assert registry.names() == ["arrow", "csv", "hdf5", "jsonl", "npy", "npz", "parquet",
                                "pt", "safetensors", "tsv"]
    assert set(registry.writer_suffixes()) == EXPECTED_WRITTEN


def test_a_suffix_maps_to_exactly_one_format():
    seen: dict[str, list[str]] = {}
    for f in registry.FORMATS:
        for s in f.suffixes:
            seen.setdefault(s, []).append(f.name)
            assert s.startswith(".") and s == s.lower(), s
    assert {s: names for s, names in seen.items() if len(names) > 1} == {}
    assert len({f.name for f in registry.FORMATS}) == len(registry.FORMATS)


def test_every_reference_names_a_function():
    for f in registry.FORMATS:
        for ref in (f.reader, f.pair, f.writer):
            if ref is not None:
                assert callable(registry.load(ref)), ref
        assert f.pair is not None or not f.table  # a table can hold logits and targets


@pytest.mark.parametrize("fmt", registry.FORMATS, ids=lambda f: f.name)
def test_every_suffix_detects_its_format(fmt):
    for suffix in fmt.suffixes:
        assert readers.detect_format(f"dir.v2/run{suffix}") == fmt.name
        assert readers.detect_format(f"RUN{suffix.upper()}") == fmt.name
        # --logits-format takes the name, or a suffix with or without its dot
        assert readers.detect_format("x.bin", suffix.lstrip(".")) == fmt.name
        assert readers.detect_format("x.bin", suffix.upper()) == fmt.name
    assert readers.detect_format("x.bin", fmt.name) == fmt.name


@pytest.mark.parametrize("fmt", [f for f in registry.FORMATS if f.magics], ids=lambda f: f.name)
def test_every_magic_sniffs_its_format(fmt):
    for magic in fmt.magics:
        head = b"\x01" * magic.offset + magic.data + b"rest of the file"
        # a magic two formats share (a zip: .npz and .pt) sniffs as the first row's
        first = next(f for f in registry.FORMATS if magic in f.magics)
        assert registry.sniff_binary(head) == first.name
        assert readers.stdin_format(head) == first.name
    assert fmt.name != "pt" or first.name == "npz"


@pytest.mark.parametrize(("kind", "name"), SNIFFED)
def test_real_files_sniff_as_what_wrote_them(kind, name):
    data = _bytes_of(kind)
    assert registry.sniff_binary(data[:8]) == name
    assert readers.stdin_format(data) == name


def test_sniffing_text_and_unknown_binary():
    assert registry.sniff_binary(b"0.5,1.0\n2,3\n") is None
    assert registry.sniff_binary(b"GIF89a\x00\x00") == "binary"
    assert readers.stdin_format(b"a,b\n1,2\n") == "csv"  # text on stdin is CSV
    assert readers.stdin_format(b"\n {\"a\": 1}\n") == "jsonl"  # unless it starts with {
    with pytest.raises(InputFileError) as err:
        readers.stdin_format(b"\x7fELF\x02\x01\x00\x00")
    assert err.value.problem == "standard input holds binary data of no known format"
    assert err.value.hint == "pipe .npy, .npz, .pt, .parquet, .arrow, .safetensors or CSV text"


def test_magic_at_an_offset():
    magic = registry.Magic(b"HDF", offset=4)
    assert magic.found_in(b"\x00\x00\x00\x00HDF\r\n")
    assert not magic.found_in(b"HDF\r\n\x00\x00\x00\x00")
    assert not magic.found_in(b"\x00\x00\x00\x00HD")


# -- messages that list formats ------------------------------------------------------------------


def test_unknown_suffix_lists_the_accepted_ones():
    with pytest.raises(InputFileError) as err:
        readers.detect_format("logits.xlsx")
    assert err.value.problem == "cannot tell the format from the suffix '.xlsx'"
    assert err.value.hint == ("name the file with one of .arrow, .csv, .feather, .h5, .hdf, "
                              ".hdf5, .ipc, .jsonl, .ndjson, .npy, .npz, .parquet, .pt, .pth, "
                              ".safetensors, .tsv, or pass the format")
    with pytest.raises(InputFileError, match=r"suffix '\(none\)'"):
        readers.detect_format("logits")


@pytest.mark.parametrize("role, option", [("logits", "--logits-format"),
                                          ("targets", "--targets-format")])
def test_unknown_suffix_names_the_option_that_reads_it(tmp_path, role, option):
    (tmp_path / "x.xlsx").write_text("1,2\n")
    with pytest.raises(InputFileError) as err:
        readers.open_source(str(tmp_path / "x.xlsx"), role=role)
    assert err.value.hint.endswith(
        f", or pass {option} (one of arrow, csv, hdf5, jsonl, npy, npz, parquet, pt, "
        "safetensors, tsv)")


def test_unknown_format_name_lists_the_names():
    with pytest.raises(InputFileError) as err:
        readers.detect_format("x.bin", "xls")
    assert err.value.hint == ("use one of arrow, csv, hdf5, jsonl, npy, npz, parquet, pt, "
                              "safetensors, tsv")


def test_unknown_output_suffix_lists_the_written_ones(tmp_path):
    with pytest.raises(OutputFileError) as err:
        writers.check_output(str(tmp_path / "out.npz"))
    assert str(err.value) == (f"{tmp_path}/out.npz: cannot write '.npz'; name the output with "
                              "one of .arrow, .csv, .feather, .ipc, .npy, .parquet, .tsv")


def test_writers_are_the_registrys():
    assert set(writers.WRITERS) == EXPECTED_WRITTEN
    for suffix, fmt in registry.writer_suffixes().items():
        assert fmt.writer is not None
        assert writers.WRITERS[suffix] is registry.load(fmt.writer)


@pytest.mark.parametrize("suffix", sorted(EXPECTED_WRITTEN))
def test_every_written_suffix_reads_back(tmp_path, suffix):
    path = str(tmp_path / f"p{suffix}")
    writers.write_matrix(path, X)
    back = readers.read_array(path, role="logits")
    np.testing.assert_array_equal(back.astype(np.float32), X)


def test_a_text_file_holding_binary_data_is_told_what_it_holds(tmp_path):
    for kind, name in SNIFFED:
        path = tmp_path / f"{kind}.csv"
        path.write_bytes(_bytes_of(kind))
        with pytest.raises(InputFileError) as err:
            readers.read_array(str(path), role="logits")
        suffix = {"npy": ".npy", "npz": ".npz", "parquet": ".parquet", "arrow": ".arrow"}[name]
        assert err.value.problem == f"holds {name.upper()} data, not CSV text"
        assert err.value.hint == (f"name it with {suffix}, or pass the format "
                                  f"(e.g. --logits-format {name})")
    other = tmp_path / "other.csv"
    other.write_bytes(b"GIF89a\x00\x00\x00")
    with pytest.raises(InputFileError) as err:
        readers.read_array(str(other), role="logits")
    assert err.value.hint == "save logits and labels as CSV text, .npy, .parquet or .arrow"


def test_a_one_array_format_is_no_table(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, X)
    with pytest.raises(InputFileError) as err:
        readers.open_table_pair(str(path), target_column="label")
    assert err.value.problem == "a .npy file holds one array, not a table with a 'label' column"
    assert err.value.hint == ("pass the targets as a second file, or save a table "
                              "(.parquet, .arrow or .csv)")


def test_members_only_where_the_registry_says(tmp_path):
    assert registry.member_suffixes() == (".npz", ".pt", ".pth", ".safetensors", ".h5",
                                          ".hdf5", ".hdf")
    assert readers.split_member("run.v1/a.npz:enc/out") == ("run.v1/a.npz", "enc/out")
    assert readers.split_member("a.npy:x") == ("a.npy:x", None)
    np.save(tmp_path / "a.npy", X)
    with pytest.raises(InputFileError) as err:
        readers.read_array(f"{tmp_path}/a.npy:x", role="logits")
    assert err.value.hint == ("only .npz archives, .pt files, .safetensors files and .h5 "
                              "files take ':NAME' to pick an array")


def test_shard_folders_take_the_registrys_suffixes(tmp_path):
    for i, suffix in enumerate(EXPECTED_SUFFIXES):
        (tmp_path / f"{i}{suffix.upper() if i % 2 else suffix}").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / ".hidden.npy").write_bytes(b"x")
    found = shards.expand(str(tmp_path))
    assert len(found) == len(EXPECTED_SUFFIXES)
    assert shards.expand(str(tmp_path), readers.SUFFIXES) == found
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError) as err:
        shards.expand(str(tmp_path / "empty"))
    assert err.value.hint == ("shards end in one of .arrow, .csv, .feather, .h5, .hdf, .hdf5, "
                              ".ipc, .jsonl, .ndjson, .npy, .npz, .parquet, .pt, .pth, "
                              ".safetensors, .tsv")


# -- one row plus one module ------------------------------------------------------------------


def read_doubled(path, *, role, data=None, **_):
    """A stand-in reader of a made-up format: text numbers, one row each, doubled."""
    from ce_cli.readers.base import array_source

    if data is None:
        with open(path, "rb") as fh:
            data = fh.read()
    text = data.decode()
    return array_source(path, role, 2 * np.array([float(v) for v in text.split()]))


@pytest.fixture
def doubled_format(monkeypatch):
    row = registry.Format("dbl", "DBL", (".dbl",), f"{__name__}:read_doubled",
                          magics=(registry.Magic(b"DBL1", offset=2),))
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, row))
    return row


def test_a_new_row_is_detected_sniffed_and_read(tmp_path, monkeypatch, doubled_format):
    path = tmp_path / "x.dbl"
    path.write_text("1 2 3")
    assert readers.detect_format(str(path)) == "dbl"
    np.testing.assert_array_equal(readers.read_array(str(path), role="weight"), [2, 4, 6])
    assert registry.sniff_binary(b"..DBL1") == "dbl"
    with pytest.raises(InputFileError, match=r"\.dbl, \.feather"):
        readers.detect_format("x.xlsx")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"4 5")))
    np.testing.assert_array_equal(readers.read_array("-", role="weight", fmt="dbl"), [8, 10])


def test_a_format_that_cannot_come_from_stdin(monkeypatch, doubled_format):
    monkeypatch.setattr(registry, "FORMATS", tuple(
        dataclasses.replace(f, stdin=False) if f.name == "dbl" else f
        for f in registry.FORMATS))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"..DBL1 7")))
    with pytest.raises(InputFileError) as err:
        readers.read_array("-", role="weight")
    assert err.value.problem == "cannot read DBL data from standard input"
    assert err.value.hint == "save it to a .dbl file and pass its path"
    assert ".dbl" not in registry.stdin_advice()


def test_the_registry_imports_no_numpy():
    code = ("import sys, ce_cli.readers.registry as r; r.names(); r.sniff_binary(b'PAR1'); "
            "print(sorted(m for m in ('numpy', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
