"""``.safetensors`` files (ce_cli/readers/safetensors.py), written by the ``safetensors``
package itself (its NumPy and torch savers), read block by block and compared with
torch's ``F.cross_entropy``; damaged files are one error line each."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import TOLERANCES
from helpers import assert_one_error_line, close, json_run, run, said, torch_ce

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
safetensors_torch = pytest.importorskip("safetensors.torch")

from ce_cli import readers  # noqa: E402
from ce_cli.errors import InputFileError  # noqa: E402
from ce_cli.readers import base, registry  # noqa: E402

N, C = 23, 5


def _arrays(seed=7):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, C)) * 3).astype(np.float32), rng.integers(0, C, size=N)


def save(path, **arrays):
    """``arrays`` saved by ``safetensors.numpy.save_file``; the path as a string."""
    safetensors_numpy.save_file(arrays, str(path))
    return str(path)


def plain(*args, **kw):
    """The number ``ce-loss compute ... --format plain`` prints."""
    return float(run("compute", *args, "--format", "plain", **kw).stdout)


def craft(path, header, data=b"", length=None):
    """A file by hand: ``header`` (an object, or the JSON text as str/bytes), its length
    (or ``length``), then ``data``."""
    if isinstance(header, dict):
        header = json.dumps(header)
    raw = header.encode() if isinstance(header, str) else header
    n = len(raw) if length is None else length
    path.write_bytes(n.to_bytes(8, "little") + raw + data)
    return str(path)


# -- dtypes ---------------------------------------------------------------------------------------

#: every dtype safetensors and NumPy share, as the format names it
NUMPY_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8,
                "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
                "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_}


@pytest.mark.parametrize("name", NUMPY_DTYPES)
def test_every_dtype_reads_back_exactly(tmp_path, name):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(N, 3, 2)) * 40).astype(NUMPY_DTYPES[name])
    path = save(tmp_path / "a.safetensors", a=a)
    raw = Path(path).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["a"]["dtype"] == name  # the file holds the dtype under test
    src = readers.open_source(path, role="logits")
    assert src.dtype == a.dtype and src.row_shape == (3, 2) and src.n_rows == N
    assert src.stored_dtype is None
    got = np.concatenate(list(src.blocks(4)))
    np.testing.assert_array_equal(got, a)
    assert got.dtype == a.dtype


@pytest.mark.parametrize("name", ["F16", "F32", "F64"])
def test_float_logits_give_torchs_loss(tmp_path, name):
    x, t = _arrays()
    x = x.astype(NUMPY_DTYPES[name])
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
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


@pytest.mark.parametrize("name", ["I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64",
                                  "BOOL"])
def test_integer_targets_of_every_dtype(tmp_path, name):
    x, t = _arrays()
    t = (t % 2).astype(NUMPY_DTYPES[name])  # 0 and 1: every integer dtype holds them
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
    close(plain(f"{path}:logits", f"{path}:labels"), torch_ce(x, t.astype(np.int64)), 2e-5)


@pytest.mark.parametrize("name", ["I32", "I64", "U8", "BOOL"])
def test_integer_logits_are_computed_in_float64(tmp_path, name):
    x, t = _arrays()
    x = (np.abs(x) > 2 if name == "BOOL" else np.abs(x * 10)).astype(NUMPY_DTYPES[name])
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
    doc, result = json_run("compute", f"{path}:logits", f"{path}:labels")
    assert doc["dtype"] == "float64"
    close(doc["loss"], torch_ce(x.astype(np.float64), t), 1e-9, 1e-12)


def test_float_targets_are_probabilities_or_whole_class_indices(tmp_path):
    x, t = _arrays()
    rng = np.random.default_rng(3)
    p = rng.random((N, C)).astype(np.float32)
    p /= p.sum(axis=1, keepdims=True)
    path = save(tmp_path / "eval.safetensors", logits=x, probs=p, whole=t.astype(np.float64))
    close(plain(f"{path}:logits", f"{path}:probs"), torch_ce(x, p), 2e-5, 1e-6)
    close(plain(f"{path}:logits", f"{path}:whole"), torch_ce(x, t), 2e-5)


@pytest.mark.parametrize(("name", "what"), [("F8_E4M3", "8-bit floats"),
                                            ("F8_E5M2", "8-bit floats"),
                                            ("C64", "complex numbers")])
def test_dtypes_numpy_has_not_are_named(tmp_path, name, what):
    path = craft(tmp_path / "x.safetensors",
                 {"x": {"dtype": name, "shape": [2, 2], "data_offsets": [0, 4 * (
                     8 if name == "C64" else 1)]}}, bytes(32))
    result = run("compute", path, tmp_path / "x.safetensors", exit_code=2)
    assert_one_error_line(result, f"the logits have the safetensors dtype {name} ({what}), "
                          "which ce-loss cannot read; save the logits as F32")


def test_a_real_fp8_file_is_refused_by_name(tmp_path):
    x = torch.arange(6, dtype=torch.float32).reshape(3, 2).to(torch.float8_e4m3fn)
    path = str(tmp_path / "x.safetensors")
    safetensors_torch.save_file({"x": x}, path)
    with pytest.raises(InputFileError) as err:
        readers.open_source(path, role="targets")
    assert err.value.problem == ("the targets have the safetensors dtype F8_E4M3 "
                                 "(8-bit floats), which ce-loss cannot read")
    assert err.value.hint == "save int64 (I64) class indices"


# -- bfloat16 -------------------------------------------------------------------------------------


def _bf16_logits():
    x, t = _arrays(11)
    xb = torch.from_numpy(x * 7).bfloat16()
    specials = torch.tensor([float("inf"), float("-inf"), 1e-40, -0.0, 3.0e38],
                            dtype=torch.bfloat16)
    xb[0] = specials  # infinities, a subnormal, negative zero, near the largest value
    xb[1, 0] = float("nan")
    return xb, torch.from_numpy(t)


def test_bf16_blocks_are_the_floats_torch_widens_them_to(tmp_path):
    xb, t = _bf16_logits()
    path = str(tmp_path / "bf.safetensors")
    safetensors_torch.save_file({"logits": xb, "labels": t}, path)
    src = readers.open_source(f"{path}:logits", role="logits")
    assert src.stored_dtype == "bfloat16"
    assert src.dtype == np.float32 and src.row_shape == (C,) and src.n_rows == N
    blocks = list(src.blocks(7))
    assert [b.shape[0] for b in blocks] == [7, 7, 7, 2]
    want = xb.float().numpy()
    got = np.concatenate(blocks)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit
    np.testing.assert_array_equal(src.read().view(np.uint32), want.view(np.uint32))


def _bf16_ulp(v: float) -> float:
    return 2.0 ** (np.floor(np.log2(abs(v))) - 7)


def test_bf16_logits_give_torchs_bf16_loss_and_dtype_float32_the_widened_one(tmp_path):
    x, t = _arrays(5)
    xb = torch.from_numpy(x).bfloat16()
    path = str(tmp_path / "bf.safetensors")
    safetensors_torch.save_file({"logits": xb, "labels": torch.from_numpy(t)}, path)
    for reduction in ("mean", "sum"):
        theirs = torch.nn.functional.cross_entropy(xb, torch.from_numpy(t),
                                                   reduction=reduction).item()
        got = float(plain(f"{path}:logits", f"{path}:labels", "--reduction", reduction))
        assert abs(got - theirs) <= _bf16_ulp(theirs), (got, theirs)  # torch's bf16 result
        want = torch.nn.functional.cross_entropy(xb.float(), torch.from_numpy(t),
                                                 reduction=reduction).item()
        close(plain(f"{path}:logits", f"{path}:labels", "--reduction", reduction,
                    "--dtype", "float32"), want, 1e-6)


def test_bf16_kdim_and_bf16_targets(tmp_path):
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.normal(size=(4, C, 3, 2)).astype(np.float32)).bfloat16()
    t = torch.from_numpy(rng.integers(0, C, size=(4, 3, 2)))
    path = str(tmp_path / "bf.safetensors")
    safetensors_torch.save_file({"logits": x, "labels": t, "bf_labels": t.bfloat16()}, path)
    want = torch.nn.functional.cross_entropy(x.float(), t).item()
    close(plain(f"{path}:logits", f"{path}:labels", "--dtype", "float32"), want, 1e-6)
    close(plain(f"{path}:logits", f"{path}:bf_labels", "--dtype", "float32"), want, 1e-6)
    theirs = torch.nn.functional.cross_entropy(x, t).item()
    got = float(plain(f"{path}:logits", f"{path}:labels"))
    assert abs(got - theirs) <= _bf16_ulp(theirs), (got, theirs)


# -- shapes, members ------------------------------------------------------------------------------


def test_kdim_logits(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, C, 4, 3)).astype(np.float32)
    t = rng.integers(0, C, size=(6, 4, 3))
    path = save(tmp_path / "seg.safetensors", logits=x, labels=t)
    src = readers.open_source(f"{path}:logits", role="logits")
    assert src.row_shape == (C, 4, 3) and src.n_rows == 6
    close(plain(f"{path}:logits", f"{path}:labels"), torch_ce(x, t), 2e-5)
    close(plain(path), torch_ce(x, t), 2e-5)  # the pair, by name
    out = tmp_path / "none.npy"
    run("compute", path, "--reduction", "none", "-o", out, "--format", "plain")
    np.testing.assert_allclose(np.load(out), torch_ce(x, t, reduction="none"), rtol=2e-5)


def test_one_tensor_needs_no_name_and_names_may_hold_dots_slashes_and_colons(tmp_path):
    x, t = _arrays()
    xs = save(tmp_path / "x.safetensors", **{"model.out/logits": x})
    ts = save(tmp_path / "t.safetensors", **{"a:b": t, "other": t + 1})
    want = torch_ce(x, t)
    close(plain(xs, f"{ts}:a:b"), want, 2e-5)
    close(plain(f"{xs}:model.out/logits", f"{ts}:a:b"), want, 2e-5)
    doc, _ = json_run("compute", xs, f"{ts}:a:b")
    assert doc["sources"] == {"logits": xs, "targets": f"{ts}:a:b"}


def test_several_tensors_and_no_name_list_them(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t, extra=t)
    result = run("compute", path, f"{path}:labels", exit_code=2)
    assert_one_error_line(result, f"{path}: the .safetensors file holds 3 tensors (extra, "
                          f"labels, logits); name the one to read, e.g. {path}:logits")
    result = run("compute", f"{path}:logits", path, exit_code=2)
    assert_one_error_line(result, f"e.g. {path}:labels")


def test_a_missing_member_lists_the_tensors(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
    result = run("compute", f"{path}:logit", f"{path}:labels", exit_code=2)
    assert_one_error_line(result, f"{path}: the .safetensors file holds no tensor named "
                          "'logit'; its tensors are: labels, logits")


def test_no_tensors_empty_tensors_and_scalars(tmp_path):
    meta = craft(tmp_path / "meta.safetensors", {"__metadata__": {"format": "pt"}})
    with pytest.raises(InputFileError, match="the .safetensors file holds no tensors"):
        readers.open_source(meta, role="logits")
    path = save(tmp_path / "e.safetensors", x=np.zeros((0, C), np.float32),
                t=np.zeros(0, np.int64), s=np.array(3, np.int64))
    src = readers.open_source(f"{path}:x", role="logits")
    assert (src.n_rows, src.row_shape) == (0, (C,)) and list(src.blocks(4)) == []
    assert readers.read_array(f"{path}:s", role="targets").reshape(-1).tolist() == [3]
    doc, _ = json_run("compute", f"{path}:x", f"{path}:t", "--reduction", "sum")
    assert doc["loss"] == 0.0


# -- logits and targets of one file ---------------------------------------------------------------


def test_the_pair_by_conventional_names_with_a_note(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
    result = run("compute", path, "--format", "plain")
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert said(result.stderr, "note") == [f"{path}: took the logits from 'logits' and the "
                                           "targets from 'labels'"]
    assert run("compute", path, "--format", "plain", "-q").stderr == ""


@pytest.mark.parametrize(("names", "taken"), [
    (("scores", "y"), ("scores", "y")),
    (("outputs.logits", "batch.targets"), ("outputs.logits", "batch.targets")),
    (("hidden", "label"), ("hidden", "label")),  # the other tensor of two
])
def test_the_pair_by_other_names(tmp_path, names, taken):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", **{names[0]: x, names[1]: t})
    xs, ts = readers.open_table_pair(path, target_column=None)
    assert (xs.path, ts.path) == (f"{path}:{taken[0]}", f"{path}:{taken[1]}")
    assert xs.notes == [f"{path}: took the logits from {taken[0]!r} and the targets from "
                        f"{taken[1]!r}"]


def test_the_pair_with_one_side_named(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", scores=x, gold=t, ids=t + 100)
    result = run("compute", f"{path}:scores", "--format", "plain")
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert said(result.stderr, "note") == [f"{path}: took the targets from 'gold'"]
    result = run("compute", path, "--target-column", "gold", "--format", "plain")
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert said(result.stderr, "note") == [f"{path}: took the logits from 'scores'"]


def test_the_pair_it_cannot_tell(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", a=x, b=t)
    result = run("compute", path, exit_code=2)
    assert_one_error_line(result, f"{path}: cannot tell which tensors of the .safetensors "
                          "file are the logits and which the targets: it holds a, b; name "
                          f"both as FILE:NAME, e.g. ce-loss compute {path}:a {path}:b")
    one = save(tmp_path / "one.safetensors", logits=x)
    result = run("compute", one, exit_code=2)
    assert_one_error_line(result, "holds one tensor ('logits'), not both logits and targets; "
                          "pass the targets as a second file")
    result = run("compute", path, "--target-column", "c", exit_code=2)
    assert_one_error_line(result, "holds no tensor named 'c' (--target-column 'c'); its "
                          "tensors are: a, b")


def test_other_one_array_files_still_need_targets(tmp_path):
    x, _ = _arrays()
    np.save(tmp_path / "x.npy", x)
    result = run("compute", tmp_path / "x.npy", exit_code=2)
    assert "missing TARGETS" in result.stderr


# -- standard input, sniffing ---------------------------------------------------------------------


def test_stdin(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
    data = Path(path).read_bytes()
    assert readers.stdin_format(data) == "safetensors"
    result = run("compute", "--format", "plain", "--", "-:logits", f"{path}:labels",
                 input=data)
    close(result.stdout, torch_ce(x, t), 2e-5)
    bf = str(tmp_path / "bf.safetensors")
    xb = torch.from_numpy(x).bfloat16()
    safetensors_torch.save_file({"x": xb}, bf)
    result = run("compute", "--format", "plain", "--dtype", "float32", "-", f"{path}:labels",
                 input=Path(bf).read_bytes())
    close(result.stdout, torch.nn.functional.cross_entropy(xb.float(), torch.from_numpy(t)),
          1e-6)
    result = run("compute", "--", "-", f"{path}:labels", input=data, exit_code=2)
    assert_one_error_line(result, "<stdin>: the .safetensors file holds 2 tensors (labels, "
                          "logits); name the one to read as -:NAME after '--'")


@pytest.mark.parametrize("text", [b'{"logits": [1.0, 2.0], "label": 1}\n',
                                  b"0.5,1.0,{2}\n", b"1234567{\n", b"{}{}{}{}{}{}\n"])
def test_text_is_never_taken_for_safetensors(text):
    assert registry.sniff_binary(text) is None
    # text: JSON Lines when it starts with "{", else CSV
    assert readers.stdin_format(text) == ("jsonl" if text.startswith(b"{") else "csv")


def test_a_csv_named_file_holding_safetensors_says_so(tmp_path):
    x, t = _arrays()
    bad = tmp_path / "x.csv"
    bad.write_bytes(Path(save(tmp_path / "x.safetensors", x=x)).read_bytes())
    with pytest.raises(InputFileError) as err:
        readers.read_array(str(bad), role="logits")
    assert err.value.problem == "holds SAFETENSORS data, not CSV text"
    assert err.value.hint == ("name it with .safetensors, or pass the format "
                              "(e.g. --logits-format safetensors)")


# -- damaged files --------------------------------------------------------------------------------

F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}

DAMAGED = [
    ("short", None, "the .safetensors file is truncated: it ends inside its header length"),
    ("past-end", 1000, "the .safetensors file is truncated: it ends inside its "
     "header (1000 bytes long"),
    ("absurd", 2**60, "it says it is 1152921504606846976 bytes long, and "
     "safetensors reads headers of at most 100000000"),
    ("not-json", '{"x": {"dtype": "F32",', "has a damaged header: it is not JSON"),
    ("not-utf8", b'{"\xff": 1}', "has a damaged header: it is not UTF-8 text"),
    ("not-object", "[1, 2, 3]", "has a damaged header: it is not a JSON object"),
    ("deep", "[" * 100_000 + "]" * 100_000, "has a damaged header: it is not"),
    ("duplicate", f'{{"x": {json.dumps(F32_2x2)}, "x": {json.dumps(F32_2x2)}}}',
     "it names 'x' twice"),
    ("entry", {"x": [1, 2]}, "the tensor 'x' is not described by a JSON object"),
    ("keys", {"x": {"dtype": "F32", "shape": [4]}}, "the tensor 'x' has no 'data_offsets'"),
    ("shape", {"x": {**F32_2x2, "shape": [2, "2"]}}, "has the shape [2, '2'], not a list"),
    ("negative-shape", {"x": {**F32_2x2, "shape": [-2, -2]}}, "with a negative size"),
    ("negative", {"x": {**F32_2x2, "data_offsets": [-16, 0]}},
     "the tensor 'x' has the negative data_offsets [-16, 0]"),
    ("backwards", {"x": {**F32_2x2, "data_offsets": [16, 0]}}, "which end before they begin"),
    ("offsets", {"x": {**F32_2x2, "data_offsets": [0]}}, "not two whole numbers"),
    ("beyond", {"x": {**F32_2x2, "data_offsets": [8, 24]}},
     "the .safetensors file is truncated or its header damaged: the tensor 'x' ends at byte"),
    ("far-beyond", {"x": {**F32_2x2, "shape": [2**40, 2**20],
                          "data_offsets": [0, 2**62]}}, "the tensor 'x' ends at byte"),
    ("size", {"x": {**F32_2x2, "shape": [2, 3]}},
     "the tensor 'x' has the shape [2, 3] of F32 (24 bytes) but its data_offsets [0, 16] "
     "hold 16 bytes"),
    ("absurd-shape", {"x": {**F32_2x2, "shape": [2**62, 2**62]}},
     "bytes) but its data_offsets [0, 16] hold 16 bytes"),
    ("overlap", {"x": {**F32_2x2, "shape": [2], "data_offsets": [0, 8]},
                 "y": {**F32_2x2, "shape": [2], "data_offsets": [4, 12]}},
     "the tensors 'x' and 'y' overlap (bytes 0..8 and 4..12 of the data)"),
    ("unknown", {"x": {**F32_2x2, "dtype": "Q7", "shape": [16]}},
     "the logits have the dtype 'Q7', which is no safetensors dtype ce-loss knows"),
    ("dtype", {"x": {**F32_2x2, "dtype": 32}}, "has the dtype 32, not a name"),
]


@pytest.mark.parametrize(("kind", "header", "fragment"), DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_files_are_one_error_line(tmp_path, kind, header, fragment):
    path = tmp_path / "bad.safetensors"
    if header is None:
        path.write_bytes(b"\x10\x00\x00")
    elif isinstance(header, int):  # a header length that is a lie
        craft(path, {"x": F32_2x2}, bytes(16), length=header)
    else:
        craft(path, header, bytes(16))
    result = run("compute", path, "labels.npy", exit_code=2)
    assert_one_error_line(result, f"{path}: ", fragment)


def test_damaged_stdin_is_one_error_line():
    data = (1000).to_bytes(8, "little") + b"{}"
    result = run("compute", "--", "-", "labels.npy", input=data, exit_code=2)
    assert_one_error_line(result, "<stdin>: the .safetensors file is truncated: it ends "
                          "inside its header (1000 bytes long, and 2 bytes follow the length)")
    data = (2**60).to_bytes(8, "little") + b"{}"  # not even sniffed as safetensors
    result = run("compute", "--logits-format", "safetensors", "--", "-", "labels.npy",
                 input=data, exit_code=2)
    assert_one_error_line(result, "<stdin>: the .safetensors file has a damaged header: it "
                          "says it is 1152921504606846976 bytes long")


def test_a_header_padded_with_spaces_and_a_gap_between_tensors_read(tmp_path):
    x = np.arange(4, dtype=np.float32)
    header = {"x": {**F32_2x2, "shape": [4], "data_offsets": [8, 24]}, "__metadata__": {}}
    path = craft(tmp_path / "x.safetensors", json.dumps(header) + "   ",
                 b"\xee" * 8 + x.tobytes())
    np.testing.assert_array_equal(readers.read_array(path, role="logits"), x)


def test_unaligned_tensors_read_by_map_and_by_buffer(tmp_path, monkeypatch):
    x, t = _arrays()
    x = x.astype(np.float64)
    header = {"x": {"dtype": "F64", "shape": [N, C], "data_offsets": [1, 1 + x.nbytes]}}
    path = craft(tmp_path / "odd.safetensors", header, b"\x00" + x.tobytes())
    np.save(tmp_path / "t.npy", t)
    want = torch_ce(x, t)
    close(plain(path, tmp_path / "t.npy"), want, 1e-12)
    monkeypatch.setattr(base, "BUFFERED_BYTES", 100)
    src = readers.open_source(path, role="logits")
    # (buffers are reused: a block is intact until the one after next)
    np.testing.assert_array_equal(np.concatenate([b.copy() for b in src.blocks(4)]), x)
    close(plain(path, tmp_path / "t.npy"), want, 1e-12)


# -- large files ----------------------------------------------------------------------------------


def test_a_large_tensor_is_read_block_by_block(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300_000, 100)).astype(np.float32)
    t = rng.integers(0, 100, size=300_000)
    path = save(tmp_path / "big.safetensors", logits=x, labels=t)
    want = torch_ce(x, t)
    del x
    src = readers.open_source(f"{path}:logits", role="logits")
    assert isinstance(src.array, np.memmap)  # the file is mapped, not loaded
    assert src.array.nbytes > base.BUFFERED_BYTES  # so its blocks come through buffers
    tracemalloc.start()
    try:
        rows = sum(b.shape[0] for b in src.blocks(10_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 300_000
    assert peak < 5 * 10_000 * 100 * 4  # four buffers of one block each, not 120 MB
    close(plain(path, "-q"), want, 2e-5)


def test_large_bf16_is_widened_block_by_block(tmp_path, monkeypatch):
    xb = torch.randn(5000, 10).bfloat16()
    path = str(tmp_path / "bf.safetensors")
    safetensors_torch.save_file({"x": xb}, path)
    monkeypatch.setattr(base, "BUFFERED_BYTES", 1000)  # the buffered path, on a small file
    src = readers.open_source(path, role="logits")
    blocks = list(src.blocks(1000))
    assert len(blocks) == 5 and all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), xb.float().numpy())


# -- what ce_cli imports --------------------------------------------------------------------------


def test_reading_imports_neither_torch_nor_safetensors(tmp_path):
    x, t = _arrays()
    path = save(tmp_path / "eval.safetensors", logits=x, labels=t)
    code = ("import sys; from ce_cli import readers; "
            f"xs, ts = readers.open_table_pair({path!r}, target_column=None); xs.read(); "
            "print(sorted(m for m in ('torch', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
