"""The .npz reader: compressed members streamed in row blocks, the logits and targets of one
archive by their names, and bfloat16 (ml_dtypes, saved by np.save as 2-byte raw values) in
.npy files and .npz members."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import json_run, run, said

from ce_cli import readers
from ce_cli.readers import base

ml_dtypes = pytest.importorskip("ml_dtypes")

ROOT = Path(__file__).resolve().parents[1]
N, C = 300, 9


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(N, C)) * 3).astype(np.float32)
    t = rng.integers(0, C, N)
    t[::13] = -100
    return x, t


def _torch(x, t, **kw):
    return F.cross_entropy(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(t),
                           **kw).numpy()


@pytest.fixture
def small_buffers(monkeypatch):
    """Stream every member larger than 256 bytes, as a large one is."""
    monkeypatch.setattr(base, "BUFFERED_BYTES", 256)


# -- compressed members, streamed ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8"])
def test_compressed_member_streams_the_rows_of_the_stored_one(tmp_path, small_buffers, dtype):
    x, t = _data()
    x = x.astype(dtype)
    np.savez(tmp_path / "s.npz", logits=x, labels=t)
    np.savez_compressed(tmp_path / "c.npz", logits=x, labels=t)
    s = readers.open_source(f"{tmp_path}/s.npz:logits", role="logits")
    c = readers.open_source(f"{tmp_path}/c.npz:logits", role="logits")
    assert c.array is None and c.n_rows == N and c.row_shape == (C,)
    assert c.dtype == s.dtype == np.dtype(dtype).newbyteorder("=")
    for _ in range(2):  # each pass starts over (the member is opened again)
        blocks = [np.array(b) for b in c.blocks(64)]
        assert [b.shape[0] for b in blocks] == [64, 64, 64, 64, 44]
        np.testing.assert_array_equal(np.concatenate(blocks), x)
    np.testing.assert_array_equal(c.read(), s.read())
    np.testing.assert_array_equal(c.read(), x)


def test_compressed_member_gives_torchs_loss(tmp_path, small_buffers):
    x, t = _data(1)
    np.savez_compressed(tmp_path / "c.npz", logits=x, labels=t)
    np.savez(tmp_path / "s.npz", logits=x, labels=t)
    for reduction in ("mean", "none"):
        want = _torch(x, t, reduction=reduction)
        got = {}
        for f in ("c", "s"):
            p = tmp_path / f"{f}.npz"
            doc = json.loads(run("compute", f"{p}:logits", f"{p}:labels", "--reduction",
                                 reduction, "--format", "json").stdout)
            got[f] = np.asarray(doc["loss"])
        np.testing.assert_array_equal(got["c"], got["s"])
        np.testing.assert_allclose(got["c"], want, rtol=1e-6, atol=1e-6)


def test_compressed_member_on_stdin_streams(tmp_path, small_buffers):
    x, t = _data(2)
    buf = io.BytesIO()
    np.savez_compressed(buf, logits=x, other=np.zeros(3))
    np.save(tmp_path / "t.npy", t)
    done = run("compute", "--format", "json", "--", "-:logits", tmp_path / "t.npy",
               input=buf.getvalue())
    assert json.loads(done.stdout)["loss"] == pytest.approx(float(_torch(x, t)), rel=1e-6)
    src = readers.npz.read_npz("-", role="logits", data=buf.getvalue(), member="logits")
    assert src.array is None and src.n_rows == N
    np.testing.assert_array_equal(src.read(), x)


def test_stored_member_on_stdin_is_read_in_place(tmp_path):
    x, _ = _data(3)
    buf = io.BytesIO()
    np.savez(buf, logits=x)
    src = readers.npz.read_npz("-", role="logits", data=buf.getvalue())
    np.testing.assert_array_equal(src.read(), x)


def test_fortran_and_0d_compressed_members(tmp_path, small_buffers):
    x, _ = _data(4)
    np.savez_compressed(tmp_path / "f.npz", logits=np.asfortranarray(x), one=np.array(2))
    src = readers.open_source(f"{tmp_path}/f.npz:logits", role="logits")
    np.testing.assert_array_equal(np.concatenate(list(src.blocks(100))), x)
    one = readers.open_source(f"{tmp_path}/f.npz:one", role="targets")
    assert one.read().tolist() == 2


def _deflated_zip(path, name, content, inflated_size):
    """A zip whose member ``name`` is the raw deflate stream of ``content`` but declares
    ``inflated_size`` bytes (and their CRC): a stream that ends early."""
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = raw.compress(content) + raw.flush()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(name, comp)
    b = bytearray(buf.getvalue())
    crc = zlib.crc32(content + bytes(inflated_size - len(content)))
    for at, method, fields in ((0, 8, 14), (b.index(b"PK\x01\x02"), 10, 16)):
        b[at + method:at + method + 2] = struct.pack("<H", zipfile.ZIP_DEFLATED)
        b[at + fields:at + fields + 12] = struct.pack("<III", crc, len(comp), inflated_size)
    Path(path).write_bytes(bytes(b))


@pytest.mark.parametrize("stream", [False, True])
def test_compressed_member_ending_early_is_truncated(tmp_path, monkeypatch, stream):
    if stream:
        monkeypatch.setattr(base, "BUFFERED_BYTES", 256)
    x, t = _data(5)
    full = io.BytesIO()
    np.save(full, x)
    image = full.getvalue()
    _deflated_zip(tmp_path / "x.npz", "logits.npy", image[:len(image) // 2], len(image))
    np.save(tmp_path / "t.npy", t)
    done = run("compute", tmp_path / "x.npz", tmp_path / "t.npy", exit_code=2)
    assert "truncated" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_compressed_member_whose_header_promises_more_is_truncated(tmp_path):
    x, t = _data(6)
    full = io.BytesIO()
    np.save(full, x)
    with zipfile.ZipFile(tmp_path / "x.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("logits.npy", full.getvalue()[:-100])
    np.save(tmp_path / "t.npy", t)
    done = run("compute", tmp_path / "x.npz", tmp_path / "t.npy", exit_code=2)
    assert "truncated" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_compressed_member_damaged_is_one_line(tmp_path, small_buffers):
    x, t = _data(7)
    np.savez_compressed(tmp_path / "x.npz", logits=x)
    b = bytearray((tmp_path / "x.npz").read_bytes())
    mid = len(b) // 2
    b[mid:mid + 200] = bytes(range(200))
    (tmp_path / "x.npz").write_bytes(bytes(b))
    np.save(tmp_path / "t.npy", t)
    done = run("compute", tmp_path / "x.npz", tmp_path / "t.npy", exit_code=2)
    assert "x.npz" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/time"), reason="needs GNU time")
def test_large_compressed_member_is_read_in_bounded_memory(tmp_path):
    """A 1 GB array of zeros, compressed to ~1 MB: read in blocks, not inflated whole."""
    n = 2_500_000
    np.savez_compressed(tmp_path / "x.npz", logits=np.zeros((n, 100), np.float32))
    assert (tmp_path / "x.npz").stat().st_size < 5 << 20
    np.save(tmp_path / "t.npy", np.zeros(n, np.int64))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "ce_cli",
                           "compute", str(tmp_path / "x.npz"), str(tmp_path / "t.npy"),
                           "--format", "plain", "--quiet"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(np.log(100), rel=1e-6)
    peak_mib = int(done.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mib < 300, peak_mib


# -- the logits and the targets of one archive ----------------------------------------------------


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_two_array_archive_without_targets(tmp_path, save):
    x, t = _data(8)
    save(tmp_path / "eval.npz", logits=x, labels=t)
    done = run("compute", tmp_path / "eval.npz", "--format", "json")
    assert json.loads(done.stdout)["loss"] == pytest.approx(float(_torch(x, t)), rel=1e-6)
    assert "took the logits from 'logits' and the targets from 'labels'" in done.stderr


def test_pair_by_other_conventional_names_and_options(tmp_path):
    x, t = _data(9)
    np.savez(tmp_path / "a.npz", scores=x, y=t)
    xs, ts = readers.open_table_pair(str(tmp_path / "a.npz"), target_column=None)
    np.testing.assert_array_equal(xs.read(), x)
    np.testing.assert_array_equal(ts.read(), t)
    assert xs.path.endswith("a.npz:scores") and ts.path.endswith("a.npz:y")
    np.savez(tmp_path / "b.npz", p=x, q=t)
    done = run("compute", tmp_path / "b.npz", "--target-column", "q", "--format", "json")
    assert json.loads(done.stdout)["loss"] == pytest.approx(float(_torch(x, t)), rel=1e-6)
    assert "took the logits from 'p'" in done.stderr


def test_pair_unclear_names_list_the_arrays(tmp_path):
    x, t = _data(10)
    np.savez(tmp_path / "a.npz", first=x, second=t)
    done = run("compute", tmp_path / "a.npz", exit_code=2)
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "first, second" in err and f"{tmp_path / 'a.npz'}:first" in err


def test_one_array_archive_without_targets(tmp_path):
    np.savez(tmp_path / "a.npz", logits=np.zeros((3, 2)))
    done = run("compute", tmp_path / "a.npz", exit_code=2)
    assert "missing TARGETS" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_pair_missing_named_array(tmp_path):
    x, t = _data(11)
    np.savez(tmp_path / "a.npz", logits=x, labels=t)
    done = run("compute", tmp_path / "a.npz", "--target-column", "gold", exit_code=2)
    assert "no array named 'gold'" in done.stderr and "labels, logits" in done.stderr


# -- bfloat16 (ml_dtypes) -----------------------------------------------------------------------


def _bf16():
    rng = np.random.default_rng(12)
    xb = torch.from_numpy((rng.normal(size=(N, C)) * 5).astype(np.float32)).bfloat16()
    t = torch.from_numpy(rng.integers(0, C, N))
    return xb, t, xb.float().numpy().astype(ml_dtypes.bfloat16)


def test_ml_dtypes_bfloat16_is_saved_as_2_byte_raw_values():
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, ml_dtypes.bfloat16))
    assert b"V2'" in buf.getvalue()[:128]


def _ulp(v):
    return 2.0 ** (np.floor(np.log2(abs(v))) - 7)


def _check_bf16(args, xb, t, *, input=None):
    theirs = F.cross_entropy(xb, t).item()
    done = run("compute", *args, "--format", "plain", input=input)
    assert abs(float(done.stdout) - theirs) <= _ulp(theirs)
    assert "as NumPy saves ml_dtypes' bfloat16: read as bfloat16" in done.stderr
    widened = F.cross_entropy(xb.float(), t).item()
    done32 = run("compute", *args, "--format", "plain", "--dtype", "float32", input=input)
    assert float(done32.stdout) == pytest.approx(widened, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("large", [False, True])
def test_bfloat16_npy_gives_torchs_bf16_loss(tmp_path, monkeypatch, large):
    if large:
        monkeypatch.setattr(base, "BUFFERED_BYTES", 256)
    xb, t, x = _bf16()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t.numpy())
    src = readers.open_source(str(tmp_path / "x.npy"), role="logits")
    assert src.stored_dtype == "bfloat16" and src.dtype == np.float32
    assert src.notes == [f"{tmp_path / 'x.npy'} holds 2-byte raw values ({x.dtype.str}), "
                         "as NumPy saves ml_dtypes' bfloat16: read as bfloat16"]
    want = xb.float().numpy()
    np.testing.assert_array_equal(np.concatenate([np.array(b) for b in src.blocks(50)]).view(
        np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(src.read().view(np.uint32), want.view(np.uint32))
    _check_bf16([tmp_path / "x.npy", tmp_path / "t.npy"], xb, t)


def test_bfloat16_npy_on_stdin(tmp_path):
    xb, t, x = _bf16()
    buf = io.BytesIO()
    np.save(buf, x)
    np.save(tmp_path / "t.npy", t.numpy())
    _check_bf16(["-", tmp_path / "t.npy"], xb, t, input=buf.getvalue())


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("large", [False, True])
def test_bfloat16_npz_member(tmp_path, monkeypatch, save, large):
    if large:
        monkeypatch.setattr(base, "BUFFERED_BYTES", 256)
    xb, t, x = _bf16()
    save(tmp_path / "e.npz", logits=x, labels=t.numpy())
    src = readers.open_source(f"{tmp_path}/e.npz:logits", role="logits")
    assert src.stored_dtype == "bfloat16"
    np.testing.assert_array_equal(src.read(), xb.float().numpy())
    _check_bf16([f"{tmp_path}/e.npz:logits", f"{tmp_path}/e.npz:labels"], xb, t)
    _check_bf16([tmp_path / "e.npz"], xb, t)  # the pair, by their names


def test_other_void_arrays_are_still_records(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3, "V4"))
    np.save(tmp_path / "t.npy", np.zeros(3, np.int64))
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", exit_code=2)
    assert "records" in done.stderr


def test_bfloat16_npy_shards_keep_their_dtype(tmp_path):
    xb, t, x = _bf16()
    (tmp_path / "x").mkdir()
    (tmp_path / "t").mkdir()
    for i, (a, b) in enumerate(((0, 100), (100, N))):
        np.save(tmp_path / "x" / f"part-{i}.npy", x[a:b])
        np.save(tmp_path / "t" / f"part-{i}.npy", t.numpy()[a:b])
    src = readers.open_source(str(tmp_path / "x"), role="logits")
    assert src.stored_dtype == "bfloat16"
    _check_bf16([tmp_path / "x", tmp_path / "t"], xb, t)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("shift", [False, True])
def test_sequences_in_a_member_are_read_as_token_rows(tmp_path, monkeypatch, compressed, big,
                                                      shift):
    """(B, L, V) members, bfloat16 (ml_dtypes) among them: with --shift, or longer than a
    block without it, read as token rows (a big compressed member: inflated a run of
    tokens at a time), with torch's bfloat16 result (--shift once read the raw bits)."""
    import ml_dtypes
    import torch

    from ce_cli.options import ReadOptions
    from ce_cli.readers import base
    from ce_cli.run import pipeline
    from ce_cli.run.sources import open_sources

    monkeypatch.setattr(pipeline, "READ_ELEMENTS", 6 * 5)  # a block: 6 tokens
    if big:
        monkeypatch.setattr(base, "BUFFERED_BYTES", 64)  # streamed, not inflated whole
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(3, 16, 5)) * 2).astype(ml_dtypes.bfloat16)
    t = rng.integers(0, 5, (3, 16))
    t[1, 12:] = -100
    path = tmp_path / "lm.npz"
    (np.savez_compressed if compressed else np.savez)(path, logits=x, labels=t)
    xs, _ = open_sources(ReadOptions(f"{path}:logits", f"{path}:labels", shift=shift), -1)
    assert xs.tokens == (3, 15 if shift else 16) and tuple(xs.row_shape) == (5,)
    assert xs.stored_dtype == "bfloat16"
    doc, result = json_run("compute", f"{path}:logits", f"{path}:labels", "--class-axis", "-1",
                           *(["--shift"] if shift else []))
    assert any("2-byte raw values" in line for line in said(result.stderr, "note"))
    tx, tt = torch.from_numpy(x.astype(np.float32)).bfloat16(), torch.from_numpy(t)
    want = torch.nn.functional.cross_entropy(tx[:, :-1].reshape(-1, 5), tt[:, 1:].reshape(-1)) \
        if shift else torch.nn.functional.cross_entropy(tx.movedim(-1, 1), tt)
    assert doc["dtype"] == "bfloat16" and doc["loss"] == float(want)
