"""HDF5 files (ce_cli/readers/hdf5.py), written by h5py itself (plain, chunked and
compressed, nested groups), read block by block and compared with torch's
``F.cross_entropy``; damaged files and a missing h5py are one error line each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TOLERANCES
from helpers import assert_one_error_line, close, json_run, run, said, torch_ce

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from ce_cli import readers  # noqa: E402
from ce_cli.errors import InputFileError  # noqa: E402
from ce_cli.readers import registry  # noqa: E402

N, C = 23, 5
INSTALL = "reading HDF5 needs h5py: pip install 'ce-loss[hdf5]'"


def _arrays(seed=7):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, C)) * 3).astype(np.float32), rng.integers(0, C, size=N)


def save(path, _chunks=None, _compression=None, **arrays):
    """``arrays`` saved by h5py as datasets named by their keys (``group/name`` nests);
    the path as a string."""
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a, chunks=_chunks if np.ndim(a) else None,
                             compression=_compression if np.ndim(a) else None)
    return str(path)


def plain(*args, **kw):
    """The number ``ce-loss compute ... --format plain`` prints."""
    return float(run("compute", *args, "--format", "plain", **kw).stdout)


def open_files():
    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


# -- dtypes ---------------------------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_reads_back_exactly(tmp_path, dtype):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(N, 3, 2)) * 40).astype(dtype)
    path = save(tmp_path / "a.h5", a=a)
    with h5py.File(path) as f:
        assert f["a"].dtype == a.dtype  # the file holds the dtype under test
    src = readers.open_source(path, role="logits")
    assert src.dtype == a.dtype and src.row_shape == (3, 2) and src.n_rows == N
    got = np.concatenate(list(src.blocks(4)))
    np.testing.assert_array_equal(got, a)
    assert got.dtype == a.dtype


def test_big_endian_data_reads_native(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "be.hdf5", logits=x.astype(">f4"), labels=t.astype(">i8"))
    src = readers.open_source(f"{path}:logits", role="logits")
    assert src.dtype == np.dtype("=f4")
    got = np.concatenate(list(src.blocks(5)))
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, x)
    close(plain(f"{path}:logits", f"{path}:labels"), torch_ce(x, t), 2e-5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64],
                         ids=lambda d: np.dtype(d).name)
def test_float_logits_give_torchs_loss(tmp_path, dtype):
    x, t = _arrays()
    x = x.astype(dtype)
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    rtol, atol = TOLERANCES[x.dtype]
    for reduction in ("mean", "sum"):
        want = torch_ce(x, t, reduction=reduction)
        close(plain(f"{path}:logits", f"{path}:labels", "--reduction", reduction), want,
              rtol, atol)
    out = tmp_path / "losses.npy"
    run("compute", f"{path}:logits", f"{path}:labels", "--reduction", "none", "-o", out,
        "--format", "plain")
    np.testing.assert_allclose(np.load(out), torch_ce(x, t, reduction="none"), rtol=rtol,
                               atol=atol)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                   np.uint16, np.uint32, np.uint64, np.bool_],
                         ids=lambda d: np.dtype(d).name)
def test_integer_targets_of_every_dtype(tmp_path, dtype):
    x, t = _arrays()
    t = (t % 2).astype(dtype)  # 0 and 1: every integer dtype holds them
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    close(plain(f"{path}:logits", f"{path}:labels"), torch_ce(x, t.astype(np.int64)), 2e-5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_],
                         ids=lambda d: np.dtype(d).name)
def test_integer_logits_are_computed_in_float64(tmp_path, dtype):
    x, t = _arrays()
    x = (np.abs(x) > 2 if dtype is np.bool_ else np.abs(x * 10)).astype(dtype)
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    doc, _ = json_run("compute", f"{path}:logits", f"{path}:labels")
    assert doc["dtype"] == "float64"
    close(doc["loss"], torch_ce(x.astype(np.float64), t), 1e-9, 1e-12)


def test_probability_targets(tmp_path):
    x, _ = _arrays()
    p = np.random.default_rng(3).random((N, C)).astype(np.float32)
    p /= p.sum(axis=1, keepdims=True)
    path = save(tmp_path / "eval.h5", logits=x, probs=p)
    close(plain(f"{path}:logits", f"{path}:probs"), torch_ce(x, p), 2e-5, 1e-6)


def test_k_dim_logits_chunked_and_compressed(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, C, 4, 3)).astype(np.float32)
    t = rng.integers(0, C, size=(N, 4, 3))
    path = save(tmp_path / "seg.h5", _chunks=True, _compression="gzip", **{
        "out/logits": x, "out/labels": t})
    for reduction in ("mean", "sum"):
        close(plain(f"{path}:out/logits", f"{path}:out/labels", "--reduction", reduction),
              torch_ce(x, t, reduction=reduction), 2e-5, 1e-6)
    src = readers.open_source(f"{path}:out/logits", role="logits")
    assert src.row_shape == (C, 4, 3) and src.n_rows == N


@pytest.mark.parametrize("dtype,why", [
    (h5py.string_dtype(), "strings"),
    (np.dtype("S4"), "strings"),
    (np.dtype([("a", "<f4"), ("b", "<i4")]), "compound records"),
    (h5py.vlen_dtype(np.int32), "variable-length sequences"),
    (np.dtype(np.complex64), "complex numbers"),
])
def test_datasets_of_no_numbers_are_named(tmp_path, dtype, why):
    x, t = _arrays()
    path = str(tmp_path / "bad.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("logits", data=x)
        f.create_dataset("odd", shape=(N,), dtype=dtype)
    result = run("compute", f"{path}:logits", f"{path}:odd", exit_code=2)
    assert_one_error_line(result, f"{path}:odd: the targets are a dataset of {why} (",
                          "which ce-loss cannot read; save int64 class indices")


# -- members ------------------------------------------------------------------------------------


def test_one_dataset_needs_no_name_even_nested(tmp_path):
    x, t = _arrays()
    xp = save(tmp_path / "x.h5", **{"run/outputs/logits": x})
    tp = save(tmp_path / "t.hdf", labels=t)
    close(plain(xp, tp), torch_ce(x, t), 2e-5)
    src = readers.open_source(xp, role="logits")
    assert src.path == xp


def test_nested_members_by_path(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", **{"group/logits": x, "group/sub/labels": t})
    want = torch_ce(x, t)
    close(plain(f"{path}:group/logits", f"{path}:group/sub/labels"), want, 2e-5)
    close(plain(f"{path}:/group/logits", f"{path}:/group/sub/labels"), want, 2e-5)


def test_several_datasets_and_no_name_list_them(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", logits=x, labels=t, **{"meta/extra": t})
    result = run("compute", path, f"{path}:labels", exit_code=2)
    assert_one_error_line(result, f"{path}: the HDF5 file holds 3 datasets (labels, logits, "
                          f"meta/extra); name the one to read, e.g. {path}:logits")
    result = run("compute", f"{path}:logits", path, exit_code=2)
    assert_one_error_line(result, f"e.g. {path}:labels")


def test_a_missing_member_lists_the_datasets(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", logits=x, **{"g/labels": t})
    result = run("compute", f"{path}:logit", f"{path}:g/labels", exit_code=2)
    assert_one_error_line(result, f"{path}: the HDF5 file holds no dataset named 'logit'; its "
                          "datasets are: g/labels, logits")


def test_a_group_is_not_a_dataset(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", **{"out/logits": x, "out/labels": t})
    result = run("compute", f"{path}:out", f"{path}:out/labels", exit_code=2)
    assert_one_error_line(result, f"{path}: 'out' is a group of the HDF5 file, not a dataset; "
                          "name one of its datasets: out/labels, out/logits")
    result = run("compute", f"{path}:out", exit_code=2)  # the pair, with a group named
    assert_one_error_line(result, "'out' is a group of the HDF5 file, not a dataset")


def test_no_datasets_empty_datasets_and_scalars(tmp_path):
    path = str(tmp_path / "none.h5")
    with h5py.File(path, "w") as f:
        f.create_group("g")
    with pytest.raises(InputFileError, match="the HDF5 file holds no datasets"):
        readers.open_source(path, role="logits")
    path = save(tmp_path / "e.h5", x=np.zeros((0, C), np.float32), t=np.zeros(0, np.int64),
                s=np.array(3, np.int64))
    src = readers.open_source(f"{path}:x", role="logits")
    assert (src.n_rows, src.row_shape) == (0, (C,)) and list(src.blocks(4)) == []
    assert readers.read_array(f"{path}:s", role="targets").reshape(-1).tolist() == [3]
    doc, _ = json_run("compute", f"{path}:x", f"{path}:t", "--reduction", "sum")
    assert doc["loss"] == 0.0
    with h5py.File(path, "a") as f:
        f.create_dataset("nothing", data=h5py.Empty("f4"))
    with pytest.raises(InputFileError, match="the logits are an empty dataset"):
        readers.open_source(f"{path}:nothing", role="logits")


# -- logits and targets of one file -------------------------------------------------------------


def test_the_pair_by_conventional_names_with_a_note(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    result = run("compute", path, "--format", "plain")
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert said(result.stderr, "note") == [f"{path}: took the logits from 'logits' and the "
                                           "targets from 'labels'"]
    assert run("compute", path, "--format", "plain", "-q").stderr == ""


@pytest.mark.parametrize(("names", "taken"), [
    (("scores", "y"), ("scores", "y")),
    (("outputs/logits", "batch/targets"), ("outputs/logits", "batch/targets")),
    (("hidden", "label"), ("hidden", "label")),  # the other dataset of two
])
def test_the_pair_by_other_names(tmp_path, names, taken):
    x, t = _arrays()
    path = save(tmp_path / "eval.hdf5", **{names[0]: x, names[1]: t})
    xs, ts = readers.open_table_pair(path, target_column=None)
    assert (xs.path, ts.path) == (f"{path}:{taken[0]}", f"{path}:{taken[1]}")
    assert xs.notes == [f"{path}: took the logits from {taken[0]!r} and the targets from "
                        f"{taken[1]!r}"]
    np.testing.assert_array_equal(xs.read(), x)
    np.testing.assert_array_equal(ts.read(), t)


def test_the_pair_with_one_side_named(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", scores=x, gold=t, ids=t + 100)
    result = run("compute", f"{path}:scores", "--format", "plain")
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert said(result.stderr, "note") == [f"{path}: took the targets from 'gold'"]
    result = run("compute", path, "--target-column", "gold", "--format", "plain")
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert said(result.stderr, "note") == [f"{path}: took the logits from 'scores'"]


def test_the_pair_it_cannot_tell(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", a=x, b=t)
    result = run("compute", path, exit_code=2)
    assert_one_error_line(result, f"{path}: cannot tell which datasets of the HDF5 file are "
                          "the logits and which the targets: it holds a, b; name both as "
                          f"FILE:NAME, e.g. ce-loss compute {path}:a {path}:b")
    one = save(tmp_path / "one.h5", logits=x)
    result = run("compute", one, exit_code=2)
    assert_one_error_line(result, "holds one dataset ('logits'), not both logits and "
                          "targets; pass the targets as a second file")
    result = run("compute", path, "--target-column", "c", exit_code=2)
    assert_one_error_line(result, "holds no dataset named 'c' (--target-column 'c'); its "
                          "datasets are: a, b")


# -- reading in blocks ------------------------------------------------------------------------


def test_the_file_is_open_only_while_blocks_are_read(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    before = open_files()
    src = readers.open_source(f"{path}:logits", role="logits")
    assert open_files() == before
    blocks = src.blocks(10)
    first = next(blocks)
    assert first.shape == (10, C) and open_files() == before + 1
    rest = list(blocks)
    assert [b.shape[0] for b in rest] == [10, 3] and open_files() == before
    blocks = src.blocks(10)
    next(blocks)
    blocks.close()  # a consumer that stops early closes the file too
    assert open_files() == before


def test_a_big_chunked_dataset_is_read_in_row_slices(tmp_path, monkeypatch):
    n, c = 200_000, 50
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, c)).astype(np.float32)
    t = rng.integers(0, c, size=n)
    path = str(tmp_path / "big.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("logits", data=x, chunks=(4096, c), compression="gzip",
                         compression_opts=1)
        f.create_dataset("labels", data=t, chunks=(65536,), compression="gzip")
    reads = []
    getitem = h5py.Dataset.__getitem__

    def counted(self, index, *args, **kw):
        out = getitem(self, index, *args, **kw)
        reads.append((self.name, out.shape))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counted)
    close(plain(f"{path}:logits", f"{path}:labels"), torch_ce(x, t), 2e-5, 1e-6)
    logits = [shape for name, shape in reads if name == "/logits"]
    assert len(logits) > 1 and sum(s[0] for s in logits) == n
    assert max(s[0] for s in logits) < n  # never the whole dataset at once
    reads.clear()
    src = readers.open_source(f"{path}:logits", role="logits")
    assert [b.shape[0] for b in src.blocks(70_000)] == [70_000, 70_000, 60_000]
    assert reads == [("/logits", (70_000, c)), ("/logits", (70_000, c)),
                     ("/logits", (60_000, c))]


# -- damaged files, the missing extra, standard input -----------------------------------------


def test_without_h5py_the_error_names_the_extra(tmp_path, monkeypatch):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    result = run("compute", f"{path}:logits", f"{path}:labels", exit_code=2)
    assert_one_error_line(result, f"{path}: {INSTALL}")
    result = run("compute", path, exit_code=2)
    assert_one_error_line(result, f"{path}: {INSTALL}")


def test_importing_the_reader_imports_no_h5py():
    code = ("import sys, ce_cli.readers.hdf5; print('h5py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_text_file_named_h5_is_not_hdf5(tmp_path):
    path = tmp_path / "eval.h5"
    path.write_text("0.5,1.0\n2,3\n")
    result = run("compute", path, path, exit_code=2)
    assert_one_error_line(result, f"{path}: not an HDF5 file (it does not start with HDF5's "
                          "signature)")


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_truncated_file(tmp_path, keep):
    x, t = _arrays()
    whole = Path(save(tmp_path / "whole.h5", logits=np.tile(x, (200, 1)),
                      labels=np.tile(t, 200)))
    data = whole.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[:int(len(data) * keep)])
    result = run("compute", f"{path}:logits", f"{path}:labels", exit_code=2)
    assert_one_error_line(result, f"{path}", "the HDF5 file is truncated or damaged",
                          "copy or save the file again")


def test_stdin_holding_hdf5_asks_for_a_file(tmp_path, monkeypatch):
    x, t = _arrays()
    path = save(tmp_path / "eval.h5", logits=x, labels=t)
    data = Path(path).read_bytes()
    assert registry.sniff_binary(data[:4096]) == "hdf5"
    result = run("compute", "-", f"{path}:labels", input=data, exit_code=2)
    assert_one_error_line(result, "<stdin>: cannot read HDF5 data from standard input; save "
                          "it to a .h5 file and pass its path")


def test_a_csv_holding_hdf5_is_told_what_it_holds(tmp_path):
    x, t = _arrays()
    data = Path(save(tmp_path / "eval.h5", logits=x)).read_bytes()
    path = tmp_path / "logits.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError) as err:
        readers.read_array(str(path), role="logits")
    assert err.value.problem == "holds HDF5 data, not CSV text"
    assert err.value.hint == "name it with .h5, or pass the format (e.g. --logits-format hdf5)"


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 3, 5, 4), (4, 7)])
def test_a_dataset_flattens_to_rows_of_its_last_axes(tmp_path, shape):
    """``flatten(keep)``: every axis but the last ``keep`` spread into rows, read as slabs
    of whole samples or runs of one, never more than ``rows`` a block."""
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    save(tmp_path / "a.h5", _chunks=True, x=x)
    src = readers.open_source(f"{tmp_path / 'a.h5'}:x", role="logits")
    for keep in range(len(shape) - 1):
        flat = src.flatten(keep)
        want = x.reshape(-1, *shape[len(shape) - keep:])
        assert flat.n_rows == want.shape[0] and tuple(flat.row_shape) == want.shape[1:]
        for rows in (1, 2, 3, 5, 6, 100):
            got = list(flat.blocks(rows))
            assert max(b.shape[0] for b in got) <= rows
            np.testing.assert_array_equal(np.concatenate(got), want)


@pytest.mark.parametrize("shift", [False, True])
def test_sequences_are_read_as_token_rows_with_the_npy_result(tmp_path, monkeypatch, shift):
    """(B, L, V) logits in HDF5 with --shift, or longer than a block without it, are read
    as token rows, with the same numbers as the same arrays in .npy files."""
    from ce_cli.options import ReadOptions
    from ce_cli.run import pipeline
    from ce_cli.run.sources import open_sources

    monkeypatch.setattr(pipeline, "READ_ELEMENTS", 6 * 9)  # a block: 6 tokens
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(4, 25, 9)) * 2).astype(np.float16)
    t = rng.integers(0, 9, size=(4, 25))
    t[1, 18:] = -100
    save(tmp_path / "lm.h5", _chunks=True, logits=x, labels=t)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    h5 = f"{tmp_path / 'lm.h5'}"
    opts = ["--class-axis", "-1", *(["--shift"] if shift else [])]
    xs, _ = open_sources(ReadOptions(f"{h5}:logits", f"{h5}:labels", shift=shift), -1)
    assert xs.tokens == (4, 24 if shift else 25) and tuple(xs.row_shape) == (9,)
    got = json_run("compute", f"{h5}:logits", f"{h5}:labels", *opts, "-q")[0]
    want = json_run("compute", tmp_path / "x.npy", tmp_path / "t.npy", *opts, "-q")[0]
    assert got["loss"] == want["loss"] and got["counted"] == want["counted"]
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)
    torch_loss = torch.nn.functional.cross_entropy(tx[:, :-1].reshape(-1, 9),
                                                   tt[:, 1:].reshape(-1)) if shift \
        else torch.nn.functional.cross_entropy(tx.movedim(-1, 1), tt)
    assert got["loss"] == float(torch_loss)
