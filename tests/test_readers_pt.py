"""PyTorch ``.pt``/``.pth`` files (ce_cli/readers/pt.py): tensors saved by torch itself read
exactly as torch holds them, without torch and without running pickled code; views,
members, the logits and targets of one file, refused pickles and damaged files."""

from __future__ import annotations

import collections
import io
import os
import pickle
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_error_line, run, said, torch_ce

torch = pytest.importorskip("torch")
F = torch.nn.functional

from ce_cli import readers  # noqa: E402 (after the skip)
from ce_cli.errors import InputFileError  # noqa: E402
from ce_cli.readers import pt as pt_reader  # noqa: E402


def _x(n: int = 60, c: int = 5, seed: int = 0, dtype=None):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=dtype or torch.float32)


def _t(n: int = 60, c: int = 5, seed: int = 1):
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _read(path, role: str = "logits", **kw) -> np.ndarray:
    return readers.open_source(str(path), role=role, **kw).read()


def _blocks(path, rows: int = 7, role: str = "logits") -> np.ndarray:
    return np.concatenate(list(readers.open_source(str(path), role=role).blocks(rows)))


def _same(got: np.ndarray, tensor) -> None:
    want = tensor.numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)


def _loss(*args) -> float:
    return float(run("compute", *args, "--format", "plain").stdout)


def _close(got: float, want, rtol: float) -> None:
    assert got == pytest.approx(float(want), rel=rtol, abs=rtol)


RTOL = {torch.float16: 1e-2, torch.float32: 2e-5, torch.float64: 1e-9}

# -- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_float_logits_of_each_dtype(tmp_path, dtype):
    x, t = _x(dtype=dtype), _t()
    p = _save(tmp_path / "eval.pt", {"logits": x, "labels": t})
    _same(_read(f"{p}:logits"), x)
    _same(_blocks(f"{p}:logits"), x)
    _same(_read(f"{p}:labels", "targets"), t)
    want = torch_ce(x.numpy(), t.numpy())
    _close(_loss(f"{p}:logits", f"{p}:labels"), want, RTOL[dtype])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.int8,
                                   torch.uint8, torch.bool])
def test_label_dtypes(tmp_path, dtype):
    x = _x(c=2)
    t = _t(c=2).to(dtype)
    p = _save(tmp_path / "eval.pth", {"logits": x, "labels": t})
    _same(_read(f"{p}:labels", "targets"), t)
    want = F.cross_entropy(x, t.long()).item()
    _close(_loss(f"{p}:logits", f"{p}:labels"), want, 2e-5)


def test_bfloat16_logits_read_as_float32_exactly(tmp_path):
    x, t = _x(n=300, c=7).bfloat16(), _t(n=300, c=7)
    p = _save(tmp_path / "bf.pt", {"logits": x, "labels": t})
    source = readers.open_source(f"{p}:logits", role="logits")
    assert source.stored_dtype == "bfloat16"
    assert source.dtype == np.float32 and source.row_shape == (7,) and source.n_rows == 300
    blocks = list(source.blocks(64))
    assert [b.shape[0] for b in blocks] == [64, 64, 64, 64, 44]
    assert all(b.dtype == np.float32 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), x.float().numpy())
    assert np.array_equal(source.read(), x.float().numpy())
    want = F.cross_entropy(x.float(), t).item()
    _close(_loss(f"{p}:logits", f"{p}:labels", "--dtype", "float32"), want, 1e-6)
    theirs = F.cross_entropy(x, t).item()  # torch's bfloat16 result, by default
    got = _loss(f"{p}:logits", f"{p}:labels")
    assert abs(got - theirs) <= 2.0 ** (np.floor(np.log2(abs(theirs))) - 7), (got, theirs)


def test_bfloat16_views_and_a_single_value(tmp_path):
    base = _x(n=20, c=6).bfloat16()
    p = _save(tmp_path / "bf.pt", {"t": base.t(), "one": base[3, 2]})
    assert np.array_equal(_read(f"{p}:t"), base.t().float().numpy())
    assert np.array_equal(_read(f"{p}:one"), base[3, 2].float().numpy().reshape(1))


def test_complex_tensors_are_refused_when_picked(tmp_path):
    x = _x()
    p = _save(tmp_path / "c.pt", {"logits": x, "z": torch.zeros(3, dtype=torch.complex64),
                                  "u": torch.zeros(3, dtype=torch.float8_e4m3fn)})
    _same(_read(f"{p}:logits"), x)  # the other tensors do not stop the file being read
    for name, dtype in (("z", "complex64"), ("u", "float8_e4m3fn")):
        result = run("compute", f"{p}:{name}", f"{p}:logits", exit_code=2)
        assert_one_error_line(result, f"{p}:{name}: the tensor is {dtype}, which ce-loss "
                              "does not read")


# -- views --------------------------------------------------------------------------------------


def test_views_read_as_torch_holds_them(tmp_path):
    base = _x(n=80, c=6)
    col = torch.randn(6, 80, generator=torch.Generator().manual_seed(3))
    views = {"slice": base[10:50], "transposed": col.t(), "every_other": base[:, ::2],
             "offset": base[7:], "row": base[5], "column": base[:, 4],
             "expanded": base[0:1].expand(30, 6), "whole": base}
    p = _save(tmp_path / "v.pt", views)
    for name, tensor in views.items():
        _same(_read(f"{p}:{name}"), tensor)
        if tensor.ndim:
            _same(_blocks(f"{p}:{name}", rows=9), tensor)
    with zipfile.ZipFile(p) as z:  # the views share their storages, saved once
        assert len([n for n in z.namelist() if "/data/" in n]) == 2


def test_views_give_torchs_loss(tmp_path):
    col = torch.randn(5, 90, generator=torch.Generator().manual_seed(4))
    x, t = col.t()[10:70:2], _t(n=120)[::4]
    assert not x.is_contiguous() and x.storage_offset() == 10 and t.stride() == (4,)
    p = _save(tmp_path / "v.pt", {"logits": x, "labels": t})
    _close(_loss(f"{p}:logits", f"{p}:labels"), F.cross_entropy(x, t).item(), 2e-5)
    shifted = {"logits": _x(n=100)[40:], "labels": _t(n=100)[40:]}
    p2 = _save(tmp_path / "s.pt", shifted)
    _close(_loss(p2), F.cross_entropy(shifted["logits"], shifted["labels"]).item(), 2e-5)


def test_a_tensor_sharing_storage_with_another(tmp_path):
    base = _x(n=40, c=4)
    p = _save(tmp_path / "shared.pt", {"all": base, "head": base[:10], "tail": base[25:]})
    for name, want in (("all", base), ("head", base[:10]), ("tail", base[25:])):
        _same(_read(f"{p}:{name}"), want)


@pytest.mark.parametrize("shape", [(5,), (8, 5), (4, 5, 3), (3, 5, 2, 4)])
def test_one_k_and_many_dimensions(tmp_path, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
    t = torch.tensor(2) if len(shape) == 1 else \
        torch.randint(0, 5, (shape[0], *shape[2:]), generator=torch.Generator().manual_seed(6))
    p = _save(tmp_path / "k.pt", {"logits": x, "labels": t})
    _same(_read(f"{p}:logits"), x)
    _close(_loss(p), F.cross_entropy(x, t).item(), 2e-5)


def test_a_permuted_k_dim_tensor(tmp_path):
    nhwc = torch.randn(3, 4, 2, 5, generator=torch.Generator().manual_seed(7))
    x = nhwc.permute(0, 3, 1, 2)  # (N, C, H, W), saved as the view it is
    t = torch.randint(0, 5, (3, 4, 2), generator=torch.Generator().manual_seed(8))
    p = _save(tmp_path / "k.pt", {"logits": x, "labels": t})
    _same(_read(f"{p}:logits"), x)
    _close(_loss(p), F.cross_entropy(x, t).item(), 2e-5)


def test_big_endian_storages(tmp_path):
    """A file saved on a big-endian machine says so in its byteorder record."""
    x = _x(n=6, c=3).double()
    p = _craft(tmp_path / "be.pt", _Rebuild("0", torch.DoubleStorage, 18, 0, (6, 3), (3, 1)),
               {"0": x.numpy().astype(">f8").tobytes()}, byteorder=b"big")
    _same(_read(p), x)


# -- members ------------------------------------------------------------------------------------


def test_members_of_dicts_lists_and_ordered_dicts(tmp_path):
    x, t = _x(), _t()
    obj = collections.OrderedDict(
        outputs={"logits": x, "hidden": [x[:3], (t, 2.5, "text", None)]}, labels=t, epoch=3)
    p = _save(tmp_path / "eval.pt", obj)
    _same(_read(f"{p}:outputs/logits"), x)
    _same(_read(f"{p}:outputs/hidden/0"), x[:3])
    _same(_read(f"{p}:outputs/hidden/1/0", "targets"), t)
    _same(_read(f"{p}:labels", "targets"), t)
    p2 = _save(tmp_path / "list.pt", [x, t])
    _same(_read(f"{p2}:0"), x)
    _close(_loss(f"{p2}:0", f"{p2}:1"), F.cross_entropy(x, t).item(), 2e-5)


def test_one_tensor_needs_no_name(tmp_path):
    x, t = _x(), _t()
    px, pt = _save(tmp_path / "x.pt", x), _save(tmp_path / "t.pth", t)
    _same(_read(px), x)
    _close(_loss(px, pt), F.cross_entropy(x, t).item(), 2e-5)
    _same(_read(_save(tmp_path / "d.pt", {"only": {"logits": x}})), x)
    p = _save(tmp_path / "g.pt", {"out": {"logits": x}, "labels": t})
    _same(_read(f"{p}:out"), x)  # a container of one tensor names it


def test_several_tensors_need_a_name(tmp_path):
    p = _save(tmp_path / "eval.pt", {"logits": _x(), "labels": _t(), "ids": torch.arange(60)})
    result = run("compute", p, tmp_path / "eval.pt:labels", exit_code=2)
    assert_one_error_line(result, f"{p}: the .pt file holds 3 tensors (logits, labels, ids); "
                          f"name the one to read, e.g. {p}:logits")
    result = run("compute", f"{p}:logits", p, exit_code=2)
    assert_one_error_line(result, f"e.g. {p}:labels")
    result = run("compute", f"{p}:scores", f"{p}:labels", exit_code=2)
    assert_one_error_line(result, f"{p}: the .pt file holds no tensor named 'scores'; its "
                          "tensors are: logits, labels, ids")
    single = _save(tmp_path / "x.pt", _x())
    result = run("compute", f"{single}:logits", f"{p}:labels", exit_code=2)
    assert_one_error_line(result, f"it holds one tensor: pass {single} alone")
    empty = _save(tmp_path / "e.pt", {"epoch": 3, "names": ["a"]})
    result = run("compute", empty, f"{p}:labels", exit_code=2)
    assert_one_error_line(result, f"{empty}: the .pt file holds no tensors")


# -- the logits and the targets of one file -----------------------------------------------------


def test_one_file_holding_both(tmp_path):
    x, t = _x(), _t()
    p = _save(tmp_path / "eval.pt", {"logits": x, "labels": t, "epoch": 4})
    result = run("compute", p)
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)
    assert said(result.stderr, "note") == [
        f"{p}: took the logits from 'logits' and the targets from 'labels'"]
    assert run("compute", p, "-q").stderr == ""


def test_both_by_nested_and_other_conventional_names(tmp_path):
    x, t = _x(), _t()
    p = _save(tmp_path / "eval.pt", {"model": {"outputs": x}, "batch": {"target": t}})
    result = run("compute", p)
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)
    assert said(result.stderr, "note") == [
        f"{p}: took the logits from 'model/outputs' and the targets from 'batch/target'"]
    runs = _save(tmp_path / "runs.pt", {"a": {"scores": x, "y": t}, "b": {"logits": x[:5]}})
    result = run("compute", f"{runs}:a")  # both from one container of the file
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)
    assert said(result.stderr, "note") == [
        f"{runs}: took the logits from 'a/scores' and the targets from 'a/y'"]


def test_both_with_target_column(tmp_path):
    x, t = _x(), _t()
    p = _save(tmp_path / "eval.pt", {"h": x, "gold_ids": t})
    result = run("compute", p, "--target-column", "gold_ids")
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)
    result = run("compute", p, "--target-column", "nope", exit_code=2)
    assert_one_error_line(result, f"{p}: the .pt file holds no tensor named 'nope' for the "
                          "targets; its tensors are: h, gold_ids")


def test_both_unclear_names_the_tensors(tmp_path):
    p = _save(tmp_path / "eval.pt", {"a": _x(), "b": _t()})
    result = run("compute", p, exit_code=2)
    assert_one_error_line(result, f"{p}: cannot tell which of its 2 tensors are the logits and "
                          f"which the targets (a, b); name them, e.g. ce-loss compute {p}:a "
                          f"{p}:b")
    two = _save(tmp_path / "two.pt", {"run1": {"logits": _x()}, "run2": {"logits": _x()},
                                      "labels": _t()})
    assert_one_error_line(run("compute", two, exit_code=2), "cannot tell",
                          f"ce-loss compute {two}:run1/logits {two}:labels")
    one = _save(tmp_path / "one.pt", _x())
    assert_one_error_line(run("compute", one, exit_code=2),
                          f"{one}: missing TARGETS: the .pt file holds one tensor")
    result = run("compute", f"{two}:labels", exit_code=2)
    assert_one_error_line(result, f"{two}:labels: is one tensor, and the targets are missing")


def test_tables_and_npy_still_need_targets(tmp_path):
    np.save(tmp_path / "x.npy", _x().numpy())
    result = run("compute", tmp_path / "x.npy", exit_code=2)
    assert "missing TARGETS: give a targets file, or --target-column NAME" in result.stderr
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    result = run("compute", tmp_path / "x.csv", exit_code=2)
    assert "missing TARGETS" in result.stderr


def test_a_folder_of_pt_shards_holding_both(tmp_path):
    x, t = _x(n=50), _t(n=50)
    (tmp_path / "shards").mkdir()
    for i, (a, b) in enumerate(((0, 20), (20, 50))):
        _save(tmp_path / "shards" / f"part{i}.pt", {"logits": x[a:b], "labels": t[a:b]})
    result = run("compute", tmp_path / "shards")
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)


# -- standard input -----------------------------------------------------------------------------


def test_stdin_with_the_format_named(tmp_path):
    x, t = _x(), _t()
    np.save(tmp_path / "t.npy", t.numpy())
    buf = io.BytesIO()
    torch.save({"logits": x, "labels": t}, buf)
    result = run("compute", "--logits-format", "pt", "--", "-:logits", tmp_path / "t.npy",
                 input=buf.getvalue())
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)
    result = run("compute", "--logits-format", "pt", "-", input=buf.getvalue())
    _close(float(result.stdout), F.cross_entropy(x, t).item(), 2e-5)
    assert said(result.stderr, "note") == [
        "<stdin>: took the logits from 'logits' and the targets from 'labels'"]
    # sniffed as .npz, a zip archive too: it says what to pass
    result = run("compute", "-", tmp_path / "t.npy", input=buf.getvalue(), exit_code=2)
    assert_one_error_line(result, "<stdin>: a PyTorch file (torch.save), not a .npz archive; "
                          "read it with --logits-format pt")


# -- pickles that would run code ----------------------------------------------------------------


class _System:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Open:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("role", ["logits", "targets"])
def test_pickled_code_is_refused_and_never_run(tmp_path, role):
    pwned, pwned2 = tmp_path / "pwned", tmp_path / "pwned2"
    np.save(tmp_path / "x.npy", _x().numpy())
    np.save(tmp_path / "t.npy", _t().numpy())
    cases = ((_save(tmp_path / "a.pt", {"logits": _x(), "x": _System(pwned)}), "posix.system"),
             (_save(tmp_path / "b.pt", [_Open(pwned2), _t()]), "io.open"))
    for p, name in cases:
        args = (p, tmp_path / "t.npy") if role == "logits" else (tmp_path / "x.npy", p)
        result = run("compute", *args, exit_code=2)
        assert_one_error_line(result, f"{p}: refuses to load '{name}' from the pickle (only "
                              "tensors and plain containers are read; nothing was run)")
        assert run("compute", p, exit_code=2).stderr == result.stderr
    assert not pwned.exists() and not pwned2.exists()


def test_other_objects_are_refused_by_name(tmp_path):
    p = _save(tmp_path / "model.pt", torch.nn.Linear(3, 2))
    assert_one_error_line(run("compute", p, exit_code=2),
                          "refuses to load 'torch.nn.modules.linear.Linear'")
    p = _craft(tmp_path / "eval.pt", {"f": eval}, {})
    assert_one_error_line(run("compute", p, exit_code=2), "refuses to load '__builtin__.eval'")


def test_numpy_arrays_in_a_torch_file_are_refused_with_a_hint(tmp_path):
    p = _save(tmp_path / "np.pt", {"logits": _x().numpy()})
    assert_one_error_line(run("compute", p, exit_code=2), "refuses to load 'numpy.",
                          "; save NumPy arrays as tensors (torch.from_numpy(a)) or with "
                          "numpy.save")


def test_containers_in_loops_deep_or_shared_exponentially(tmp_path, monkeypatch):
    monkeypatch.setattr(pt_reader, "MAX_VISITS", 5000)  # the walk stops there
    loop: list = [_x()]
    loop.append(loop)
    deep: list = [_x()]
    for _ in range(150):
        deep = [deep]
    shared: list = [_x()]
    for _ in range(40):  # a few hundred bytes of pickle, 2**40 paths to the tensor
        shared = [shared, shared]
    for name, obj, message in (("loop", loop, "nests containers more than 100 deep (or in "
                                "a loop)"),
                               ("deep", deep, "nests containers more than 100 deep"),
                               ("shared", shared, "holds more than 5000 tensors and "
                                "containers")):
        p = _save(tmp_path / f"{name}.pt", obj)
        assert_one_error_line(run("compute", p, exit_code=2), f"{p}: the .pt file {message}")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols(tmp_path, protocol):
    x, t = _x(), _t()
    p = tmp_path / "eval.pt"
    torch.save({"logits": x[5:], "labels": t[5:]}, p, pickle_protocol=protocol)
    _close(_loss(p), F.cross_entropy(x[5:], t[5:]).item(), 2e-5)


def test_parameters_read_as_their_tensor(tmp_path):
    w = torch.nn.Parameter(_x(n=4, c=3))
    p = _save(tmp_path / "p.pt", {"w": w})
    _same(_read(f"{p}:w"), w.detach())


# -- damaged files ------------------------------------------------------------------------------


class _Storage:
    def __init__(self, key: str, storage_type, numel: int) -> None:
        self.record = ("storage", storage_type, key, "cpu", numel)


class _Rebuild:
    """What torch pickles for a tensor: ``_rebuild_tensor_v2(storage, offset, size, ...)``."""

    def __init__(self, key, storage_type, numel, offset, size, stride) -> None:
        self.args = (_Storage(key, storage_type, numel), offset, size, stride, False,
                     collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.record if isinstance(obj, _Storage) else None


def _craft(path: Path, obj, storages: dict[str, bytes], byteorder: bytes = b"little") -> Path:
    """A torch.save-like zip written by hand: ``obj`` pickled as torch pickles tensors."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", b"3\n")
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
    return path


def _rewrite(src: Path, dst: Path, drop: str = "", replace: dict | None = None) -> Path:
    """``src`` copied to ``dst`` without the records ending in ``drop`` (``replace``: new
    bytes for records ending so)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            if drop and info.filename.endswith(drop):
                continue
            data = a.read(info)
            for end, new in (replace or {}).items():
                if info.filename.endswith(end):
                    data = new
            b.writestr(info.filename, data)
    return dst


def test_hand_made_files_read_like_torchs(tmp_path):
    x = _x(n=4, c=3)
    p = _craft(tmp_path / "ok.pt", {"logits": _Rebuild("0", torch.FloatStorage, 12, 3,
                                                       (3, 3), (3, 1))},
               {"0": x.numpy().tobytes()})
    _same(_read(f"{p}:logits"), x[1:])
    assert torch.equal(torch.load(p, weights_only=True)["logits"], x[1:])  # torch agrees


@pytest.mark.parametrize(("offset", "size", "stride", "numel", "problem"), [
    (3, (4, 3), (3, 1), 12, "reaches element 14 of its storage, which holds 12"),
    (0, (5, 3), (3, 1), 12, "reaches element 14 of its storage, which holds 12"),
    (0, (4, 3), (4, 1), 12, "reaches element 14 of its storage, which holds 12"),
    (12, (1,), (1,), 12, "reaches element 12 of its storage, which holds 12"),
    (-1, (2,), (1,), 12, "holds a negative number"),
    (0, (2, -3), (3, 1), 12, "holds a negative number"),
    (0, (1 << 40, 1 << 40), (0, 0), 12, "promises an impossible size"),
    (0, (4, 3), (3, 1), 1 << 40, "holds 48 bytes, and the tensor's storage 4398046511104"),
    (0, (4, 3), (3,), 12, "is not whole numbers"),
])
def test_views_past_the_storage_are_errors(tmp_path, offset, size, stride, numel, problem):
    p = _craft(tmp_path / "bad.pt", _Rebuild("0", torch.FloatStorage, numel, offset, size,
                                             stride), {"0": bytes(48)})
    np.save(tmp_path / "t.npy", np.zeros(4, np.int64))
    result = run("compute", p, tmp_path / "t.npy", exit_code=2)
    assert_one_error_line(result, problem)


def test_damaged_files(tmp_path):
    x, t = _x(), _t()
    good = _save(tmp_path / "good.pt", {"logits": x, "labels": t})
    np.save(tmp_path / "t.npy", t.numpy())
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[:len(data) // 2])
    nostorage = _rewrite(good, tmp_path / "nostorage.pt", drop="/data/0")
    short = _rewrite(good, tmp_path / "short.pt", replace={"/data/0": bytes(40)})
    badpkl = _rewrite(good, tmp_path / "badpkl.pt", replace={"data.pkl": b"\x80\x02}q\x00(X"})
    order = _rewrite(good, tmp_path / "order.pt", replace={"byteorder": b"middle"})
    legacy, legacy4 = tmp_path / "legacy.pt", tmp_path / "legacy4.pt"
    torch.save(x, legacy, _use_new_zipfile_serialization=False)
    torch.save(x, legacy4, _use_new_zipfile_serialization=False, pickle_protocol=4)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"logits": x.numpy()}))
    text = tmp_path / "text.pt"
    text.write_text("logits\n")
    script = tmp_path / "script.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated; its files still exist
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    npz = tmp_path / "arrays.pt"
    np.savez(npz.with_suffix(".npz"), logits=x.numpy())
    npz.write_bytes(npz.with_suffix(".npz").read_bytes())
    cases = [
        (cut, f"{cut}: the .pt file is truncated or damaged (not a readable zip archive"),
        (f"{nostorage}:logits", f"{nostorage}:logits: the .pt file has no storage record "
         "'good/data/0' for this tensor"),
        (f"{short}:logits", "the storage record 'good/data/0' holds 40 bytes, and the "
         "tensor's storage 1200"),
        (f"{badpkl}:logits", f"{badpkl}: the .pt file's pickle (data.pkl) is damaged"),
        (f"{order}:logits", "gives the byte order b'middle', not 'little' or 'big'"),
        (legacy, f"{legacy}: a legacy torch.save file (the format before torch 1.6, or "
         "_use_new_zipfile_serialization=False), not the zip format ce-loss reads; load it "
         "with torch and save it again with torch.save(obj, path) in torch >= 1.6"),
        (legacy4, f"{legacy4}: a legacy torch.save file"),
        (plain, f"{plain}: a Python pickle, not a torch.save file (ce-loss runs no pickled "
         "code)"),
        (text, f"{text}: not a .pt file"),
        (script, f"{script}: a TorchScript model (torch.jit.save), not saved tensors"),
        (npz, f"{npz}: a NumPy .npz archive, not a torch.save file; read it with "
         "--logits-format npz"),
    ]
    for path, message in cases:
        assert_one_error_line(run("compute", path, tmp_path / "t.npy", exit_code=2), message)
        with pytest.raises(InputFileError):
            readers.open_source(str(path), role="logits")


def test_npz_format_on_a_torch_file_says_what_it_is(tmp_path):
    p = _save(tmp_path / "x.pt", _x())
    np.save(tmp_path / "t.npy", _t().numpy())
    for args, flag in ((("--logits-format", "npz", p, tmp_path / "t.npy"), "--logits-format"),
                       (("--targets-format", "npz", tmp_path / "t.npy", f"{p}:a"),
                        "--targets-format")):
        result = run("compute", *args, exit_code=2)
        assert_one_error_line(result, f"{p}", "a PyTorch file (torch.save), not a .npz archive; "
                              f"read it with {flag} pt")


def test_a_storage_record_that_is_compressed_is_read(tmp_path):
    x = _x()
    good = _save(tmp_path / "good.pt", {"logits": x})
    zipped = tmp_path / "zipped.pt"
    with zipfile.ZipFile(good) as a, zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            b.writestr(info.filename, a.read(info))
    _same(_read(zipped), x)


# -- large tensors are mapped, not read whole ---------------------------------------------------


def _mapped_from(array: np.ndarray, path: Path) -> bool:
    base = array
    while base is not None:
        if isinstance(base, np.memmap):
            return Path(base.filename) == path.resolve()
        base = base.base
    return False


def test_a_large_tensor_is_memory_mapped(tmp_path):
    x = torch.randn(200_000, 100, generator=torch.Generator().manual_seed(9))
    p = _save(tmp_path / "big.pt", {"logits": x[:, :50], "all": x})
    del x
    for name, row_shape in (("all", (100,)), ("logits", (50,))):
        source = readers.open_source(f"{p}:{name}", role="logits")
        assert source.row_shape == row_shape and source.n_rows == 200_000
        assert _mapped_from(source.array, p)
        assert not source.array.flags.owndata and not source.array.flags.writeable
        tracemalloc.start()
        try:
            rows = sum(b.shape[0] for b in source.blocks(8192))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert rows == 200_000
        # the tensor is 80 MB; it is read through four reused buffers of a block each
        assert peak < 5 * 8192 * 100 * 4, peak


@pytest.mark.slow
def test_a_large_tensor_gives_torchs_loss(tmp_path):
    x = torch.randn(200_000, 100, generator=torch.Generator().manual_seed(10))
    t = torch.randint(0, 100, (200_000,), generator=torch.Generator().manual_seed(11))
    p = _save(tmp_path / "big.pt", {"logits": x, "labels": t})
    _close(_loss(p), F.cross_entropy(x, t).item(), 2e-5)


def test_the_reader_does_not_import_torch(tmp_path):
    p = _save(tmp_path / "eval.pt", {"logits": _x(), "labels": _t()})
    code = ("import sys; from ce_cli import readers; readers.read_array(sys.argv[1], "
            "role='logits'); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code, f"{p}:logits"], check=True,
                   cwd=Path(__file__).resolve().parent.parent)
