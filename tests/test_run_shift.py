"""``--shift`` (Hugging Face's causal-LM loss), ``--per-sequence`` and the check of the
labels' alignment, against Hugging Face's recipe written in torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ce_settings
from helpers import json_run, run, said
from hypothesis import given
from hypothesis import strategies as st

safetensors_torch = pytest.importorskip("safetensors.torch")


def hf_causal_lm_loss(logits, labels, *, weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, upcast=True):
    """transformers' ForCausalLMLoss, spelled out: upcast the logits to float, pad the
    labels on the right with ignore_index, shift them left by one, flatten, cross-entropy.
    'none' comes back as (B, L - 1): the padded last position dropped."""
    if upcast:
        logits = logits.float()
    labels = F.pad(labels, (0, 1), value=ignore_index)
    shift_labels = labels[..., 1:].contiguous()
    v = logits.shape[-1]
    if weight is not None:
        weight = weight.to(logits.dtype)
    out = F.cross_entropy(logits.reshape(-1, v), shift_labels.reshape(-1), weight=weight,
                          ignore_index=ignore_index, reduction=reduction,
                          label_smoothing=label_smoothing)
    if reduction == "none":
        out = out.reshape(labels.shape[0], -1)[:, :-1]
    return out


def sliced_loss(logits, labels, **kw):
    """The loss as the issue states it, in the logits' own dtype: ``logits[..., :-1, :]``
    against ``labels[..., 1:]``, flattened as Hugging Face flattens them. (HF's recipe
    always upcasts; without the upcast its padded rows would move torch's float16 sums.)"""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1), **kw)


def _save_pair(folder, x, t, dtype):
    """float16/float32 logits as .npy, bfloat16 as a safetensors file (torch's own writer)
    holding both; returns the command's file arguments."""
    if dtype == "bfloat16":
        path = folder / "eval.safetensors"
        safetensors_torch.save_file({"logits": x.contiguous(), "labels": t}, str(path))
        return [path]
    np.save(folder / "x.npy", x.numpy())
    np.save(folder / "t.npy", t.numpy())
    return [folder / "x.npy", folder / "t.npy"]


@st.composite
def lm_case(draw):
    b = draw(st.integers(1, 3))
    length = draw(st.integers(1, 6))
    v = draw(st.integers(2, 6))
    dtype = draw(st.sampled_from(["float16", "bfloat16", "float32"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(b, length, v)) * 3).to(getattr(torch, dtype))
    t = rng.integers(0, v, (b, length))
    for i in range(b):  # right padding, as a collator pads
        pad = draw(st.integers(0, length))
        if pad:
            t[i, length - pad:] = -100
    weight = draw(st.none() | st.just(rng.uniform(0.2, 2.0, v)))
    return x, torch.from_numpy(t), weight, dtype


@ce_settings(40)
@given(case=lm_case(), reduction=st.sampled_from(["mean", "sum", "none"]),
       upcast=st.booleans(), smoothing=st.sampled_from([0.0, 0.1]))
def test_shift_is_hugging_faces_causal_lm_loss(tmp_path_factory, case, reduction, upcast,
                                               smoothing):
    x, t, weight, dtype = case
    folder = tmp_path_factory.mktemp("lm")
    files = _save_pair(folder, x, t, dtype)
    opts = ["--shift", "--reduction", reduction, "--label-smoothing", smoothing]
    if upcast:
        opts += ["--dtype", "float32"]
    if weight is not None:
        opts += ["--weight", ",".join(repr(float(w)) for w in weight)]
    w = None if weight is None else torch.from_numpy(weight)
    if upcast:
        want = hf_causal_lm_loss(x, t, weight=w, reduction=reduction,
                                 label_smoothing=smoothing).float().numpy()
    else:
        want = sliced_loss(x, t, weight=None if w is None else w.to(x.dtype),
                           reduction=reduction, label_smoothing=smoothing).float().numpy()
        if reduction == "none":
            want = want.reshape(x.shape[0], x.shape[1] - 1)
    if reduction == "none":
        out = folder / "losses.npy"
        run("compute", *files, *opts, "-o", out, "-q")
        got = np.load(out).astype(np.float32)
        assert got.shape == want.shape == (x.shape[0], x.shape[1] - 1)
    else:
        got = np.float32(run("compute", *files, *opts, "-q").stdout)
    half = dtype != "float32" and not upcast
    np.testing.assert_allclose(got, want, rtol=1e-2 if half else 2e-5,
                               atol=1e-2 if half else 1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_shift_without_dtype_prints_torchs_half_result_exactly(tmp_path, dtype):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2, 50, 40)) * 2).to(getattr(torch, dtype))
    t = torch.from_numpy(rng.integers(0, 40, (2, 50)))
    t[1, 45:] = -100
    files = _save_pair(tmp_path, x, t, dtype)
    want = sliced_loss(x, t)
    got = run("compute", *files, "--shift").stdout.strip()
    assert float(got) == float(want)  # the exact decimal of torch's float16 value
    upcast = run("compute", *files, "--shift", "--dtype", "float32").stdout
    assert float(upcast) == pytest.approx(hf_causal_lm_loss(x, t).item(), rel=1e-6)


@pytest.fixture
def lm(tmp_path):
    """A model that predicts the next token: logits peak at the next input id."""
    rng = np.random.default_rng(5)
    b, length, v = 6, 40, 30
    ids = rng.integers(0, v, (b, length))
    x = rng.normal(size=(b, length, v)).astype(np.float32)
    x[np.arange(b)[:, None], np.arange(length - 1)[None, :], ids[:, 1:]] += 3.0
    ids[2, 30:] = -100  # padding
    ids[4, :] = -100  # a sequence with no counted token
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ids.npy", ids)
    # labels saved aligned with the logits already (labels[j] = ids[j + 1])
    np.save(tmp_path / "aligned.npy", np.concatenate([ids[:, 1:], np.full((b, 1), -100)], 1))
    return x, ids, tmp_path


def test_per_sequence_rows_match_torch(lm):
    x, ids, d = lm
    w = np.linspace(0.5, 2.0, x.shape[2])
    weight = ",".join(repr(float(v)) for v in w)
    for suffix in (".csv", ".parquet", ".arrow", ".npy"):
        out = d / f"seq{suffix}"
        doc, _ = json_run("compute", d / "x.npy", d / "ids.npy", "--shift", "--weight",
                          weight, "--per-sequence", out, "-q")
        if suffix == ".npy":
            rows = np.load(out)
            cols = {name: rows[name] for name in rows.dtype.names}
        else:
            import pyarrow.csv as pcsv
            import pyarrow.feather as feather
            import pyarrow.parquet as pq

            table = {".csv": pcsv.read_csv, ".parquet": pq.read_table,
                     ".arrow": feather.read_table}[suffix](out)
            cols = {name: table[name].to_numpy(zero_copy_only=False)
                    for name in table.column_names}
        assert list(cols) == ["sequence", "tokens", "nll_sum", "nll_mean", "perplexity"]
        losses = hf_causal_lm_loss(torch.from_numpy(x), torch.from_numpy(ids),
                                   weight=torch.from_numpy(w), reduction="none").double()
        labels = torch.from_numpy(ids)[:, 1:]
        counted = labels != -100
        den = torch.where(counted, torch.from_numpy(w)[labels.clamp(min=0)], 0.0).sum(1)
        np.testing.assert_array_equal(cols["sequence"], np.arange(x.shape[0]))
        np.testing.assert_array_equal(cols["tokens"], counted.sum(1).numpy())
        np.testing.assert_allclose(cols["nll_sum"], losses.sum(1).numpy(), rtol=1e-6)
        mean = (losses.sum(1) / den).numpy()
        mean[4] = np.nan  # no counted token: no mean
        np.testing.assert_allclose(cols["nll_mean"], mean, rtol=1e-6)
        np.testing.assert_allclose(cols["perplexity"], np.exp(mean), rtol=1e-6)
        # the sequences add up to the headline: torch's weighted mean over all tokens
        assert np.nansum(cols["nll_sum"]) / den.sum().item() == pytest.approx(doc["loss"],
                                                                              rel=1e-6)
        seq = doc["sequences"]
        assert seq["token_weighted_perplexity"] == pytest.approx(np.exp(doc["loss"]), rel=1e-6)
        finite = np.exp(mean[np.isfinite(mean)])
        assert seq["perplexity"]["median"] == pytest.approx(np.median(finite))
        assert seq["perplexity"]["p10"] == pytest.approx(np.percentile(finite, 10))
        assert seq["worst"][0]["sequence"] == int(np.nanargmax(mean))


def test_per_sequence_is_the_same_from_every_engine(lm, monkeypatch):
    x, ids, d = lm
    from ce_cli.run import dask_engine

    one, _ = json_run("compute", d / "x.npy", d / "ids.npy", "--shift", "-q")
    monkeypatch.setattr(dask_engine, "TASK_ELEMENTS", 2 * 40 * 30)  # two sequences a task
    dask, _ = json_run("compute", d / "x.npy", d / "ids.npy", "--shift", "-q",
                       "--engine", "dask")
    (d / "xs").mkdir()
    (d / "ts").mkdir()
    for i, (a, b) in enumerate([(0, 1), (1, 4), (4, 6)]):
        np.save(d / "xs" / f"p{i}.npy", x[a:b])
        np.save(d / "ts" / f"p{i}.npy", ids[a:b])
        run("compute", d / "xs" / f"p{i}.npy", d / "ts" / f"p{i}.npy", "--shift", "-q",
            "--partial", d / f"p{i}.json")
    merged, _ = json_run("merge", *(d / f"p{i}.json" for i in range(3)), "-q")
    shards, _ = json_run("compute", d / "xs", d / "ts", "--shift", "-q")
    for doc in (dask, merged, shards):
        assert doc["loss"] == pytest.approx(one["loss"], rel=1e-6)
        assert doc["sequences"]["sequences"] == 6
        assert doc["sequences"]["perplexity"] == pytest.approx(one["sequences"]["perplexity"])
        assert [w["sequence"] for w in doc["sequences"]["worst"]] == \
            [w["sequence"] for w in one["sequences"]["worst"]]


def test_partials_with_and_without_shift_do_not_merge(lm):
    _, _, d = lm
    run("compute", d / "x.npy", d / "ids.npy", "--shift", "-q", "--partial", d / "a.json")
    run("compute", d / "x.npy", d / "ids.npy", "--class-axis", "-1", "-q",
        "--partial", d / "b.json")
    done = run("merge", d / "a.json", d / "b.json", exit_code=2)
    assert "--shift" in done.stderr and done.stderr.count("\n") == 1


def test_one_sequence_saved_as_l_by_v_is_one_row_of_a_batch(lm):
    x, ids, d = lm
    np.save(d / "x1.npy", x[0])
    np.save(d / "t1.npy", ids[0])
    np.save(d / "xb.npy", x[:1])
    np.save(d / "tb.npy", ids[:1])
    flat, _ = json_run("compute", d / "x1.npy", d / "t1.npy", "--shift", "-q",
                       "--per-sequence", d / "one.csv")
    batch, _ = json_run("compute", d / "xb.npy", d / "tb.npy", "--shift", "-q")
    assert flat["loss"] == pytest.approx(batch["loss"], rel=1e-6)
    assert flat["positions"] == batch["positions"] == x.shape[1] - 1
    text = (d / "one.csv").read_text().splitlines()
    assert len(text) == 2 and text[1].startswith(f"0,{x.shape[1] - 1},")


def test_unshifted_ids_are_said_and_shifted_ones_are_not(lm):
    x, ids, d = lm
    plain = run("compute", d / "x.npy", d / "ids.npy", "--class-axis", "-1")
    [warning] = said(plain.stderr)
    assert "unshifted input ids" in warning and "pass --shift" in warning
    assert said(run("compute", d / "x.npy", d / "ids.npy", "--shift").stderr) == []
    assert said(run("compute", d / "x.npy", d / "aligned.npy", "--class-axis", "-1").stderr) \
        == []
    twice = said(run("compute", d / "x.npy", d / "aligned.npy", "--shift").stderr)
    assert len(twice) == 1 and "drop --shift" in twice[0]


def test_alignment_check_is_quiet_on_other_data(tmp_path):
    rng = np.random.default_rng(2)
    # random labels of a sequence model, and ordinary (N, C) classification
    np.save(tmp_path / "x3.npy", rng.normal(size=(4, 50, 20)).astype(np.float32))
    np.save(tmp_path / "t3.npy", rng.integers(0, 20, (4, 50)))
    x2 = rng.normal(size=(500, 20)).astype(np.float32)
    t2 = np.roll(np.argmax(x2, 1), -1)  # each row's label is the next row's top class
    np.save(tmp_path / "x2.npy", x2)
    np.save(tmp_path / "t2.npy", t2)
    assert said(run("compute", tmp_path / "x3.npy", tmp_path / "t3.npy",
                    "--class-axis", "-1").stderr) == []
    assert said(run("compute", tmp_path / "x2.npy", tmp_path / "t2.npy").stderr) == []


def test_alignment_warning_survives_a_partial(lm):
    _, _, d = lm
    run("compute", d / "x.npy", d / "ids.npy", "--class-axis", "-1", "-q",
        "--partial", d / "p.json")
    assert json.loads((d / "p.json").read_text())["alignment"][0] > 0
    merged = run("merge", d / "p.json")
    assert any("pass --shift" in w for w in said(merged.stderr))


@pytest.mark.parametrize("args, fragment", [
    (["--class-axis", "1"], "--class-axis 1 is not the last"),
    (["--class-axis", "-2"], "--class-axis -2 is not the last"),
])
def test_shift_needs_the_classes_last(lm, args, fragment):
    _, _, d = lm
    done = run("compute", d / "x.npy", d / "ids.npy", "--shift", *args, exit_code=2)
    assert fragment in done.stderr


def test_shift_on_one_sample_and_mismatched_shapes_are_refused(tmp_path):
    np.save(tmp_path / "x1.npy", np.zeros(5, np.float32))
    np.save(tmp_path / "t1.npy", np.array(2))
    done = run("compute", tmp_path / "x1.npy", tmp_path / "t1.npy", "--shift", exit_code=2)
    assert "--shift needs logits with a sequence axis" in done.stderr
    np.save(tmp_path / "x.npy", np.zeros((2, 6, 5), np.float32))
    np.save(tmp_path / "t.npy", np.zeros((2, 7), np.int64))
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--shift", exit_code=2)
    assert "(2, 6, 5)" in done.stderr and "(2, 7)" in done.stderr
    assert done.stderr.count("\n") == 1


def test_per_sequence_output_refuses_to_replace_an_input(lm):
    _, _, d = lm
    before = (d / "ids.npy").read_bytes()
    done = run("compute", d / "x.npy", d / "ids.npy", "--shift", "--per-sequence",
               d / "ids.npy", exit_code=2)
    assert "--per-sequence" in done.stderr
    assert (d / "ids.npy").read_bytes() == before


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_explain_agrees_with_the_headline(tmp_path, dtype):
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(size=(2, 300, 64)) * 3).to(getattr(torch, dtype))
    t = torch.from_numpy(rng.integers(0, 64, (2, 300)))
    files = _save_pair(tmp_path, x, t, dtype)
    doc, _ = json_run("compute", *files, "--shift", "--explain")
    ex = doc["explain"]
    losses = hf_causal_lm_loss(x.double(), t, reduction="none", upcast=False)
    assert ex["numerator"] == pytest.approx(losses.sum().item(), rel=1e-3 if dtype ==
                                            "float16" else 1e-6)
    assert ex["denominator"] == 2 * 299
    assert ex["quotient"] == ex["numerator"] / ex["denominator"]
    assert ex["values"].endswith(f"= {ex['quotient']:.10g}")
    assert ex["headline"].startswith(f"torch's {dtype} result")
    if dtype == "float16":  # the headline is torch's half value, and explain says so
        assert doc["loss"] == float(sliced_loss(x, t))
        assert f"rounded to float16 is {float(np.float16(ex['quotient']))!r}" in ex["headline"]
    else:
        assert doc["loss"] == pytest.approx(ex["quotient"], rel=1e-6)


@pytest.mark.parametrize("fmt", ["npy", "safetensors", "pt"])
def test_shift_reads_mapped_files_as_token_rows(tmp_path, fmt):
    """A sequence of a large vocabulary is too big for one block: mapped files are read
    as (B * L, V) token rows, a few at a time, with the same result."""
    from ce_cli.options import ReadOptions
    from ce_cli.readers.base import array_source
    from ce_cli.run import pipeline
    from ce_cli.run.shift import shift_pair
    from ce_cli.run.sources import open_sources

    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.normal(size=(3, 20, 9)) * 2).to(torch.bfloat16 if fmt != "npy"
                                                             else torch.float16)
    t = torch.from_numpy(rng.integers(0, 9, (3, 20)))
    t[1, 15:] = -100
    if fmt == "npy":
        files = _save_pair(tmp_path, x, t, "float16")
    elif fmt == "safetensors":
        files = _save_pair(tmp_path, x, t, "bfloat16")
    else:
        torch.save({"logits": x, "labels": t}, tmp_path / "eval.pt")
        files = [tmp_path / "eval.pt"]
    read = ReadOptions(str(files[0]), str(files[1]) if len(files) > 1 else None, shift=True)
    xs, ts = open_sources(read, -1)
    assert xs.tokens == ts.tokens == (3, 19) and xs.row_shape == (9,) and xs.n_rows == 57
    blocks = list(pipeline.aligned_blocks(xs, ts, 7))
    assert max(b.shape[0] for b, _ in blocks) <= 7  # token rows, not whole sequences
    got = np.concatenate([b for b, _ in blocks])
    np.testing.assert_array_equal(got, x[:, :-1].float().reshape(-1, 9).numpy())
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]),
                                  t[:, 1:].reshape(-1).numpy())
    # the same number and the same (B, L - 1) losses as whole sequences give
    whole_x = array_source("x", "logits", x.float().numpy())
    whole_t = array_source("t", "targets", t.numpy())
    whole = shift_pair(whole_x, whole_t, -1)
    assert whole[0].tokens is not None  # arrays in memory flatten too
    out = tmp_path / "losses.npy"
    doc, _ = json_run("compute", *files, "--shift", "-q", "-o", out)
    assert np.load(out).shape == (3, 19)
    assert doc["loss"] == float(sliced_loss(x, t))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_long_unshifted_sequences_are_read_as_runs_of_tokens(tmp_path, monkeypatch, dtype,
                                                             reduction):
    """``--class-axis -1`` without ``--shift``: a sequence longer than a block is read as
    runs of tokens (a 128K vocabulary's is gigabytes), and the result is still torch's
    loss of ``logits.movedim(-1, 1)``, bit for bit in half precision, with the same
    per-sequence rows and audit as whole sequences give."""
    from ce_cli.options import ReadOptions
    from ce_cli.run import pipeline
    from ce_cli.run.sources import open_sources

    rng = np.random.default_rng(21)
    b, length, v = 3, 23, 11
    x = torch.from_numpy(rng.normal(size=(b, length, v)) * 3).to(getattr(torch, dtype))
    t = torch.from_numpy(rng.integers(0, v, (b, length)))
    t[1, 17:] = -100
    weight = rng.uniform(0.2, 2.0, v)
    np.savetxt(tmp_path / "w.csv", weight[None], delimiter=",")
    files = _save_pair(tmp_path, x, t, dtype)
    args = [*files, "--class-axis", "-1", "--weight", tmp_path / "w.csv",
            "--label-smoothing", "0.1", "--reduction", reduction]
    w = torch.from_numpy(weight).to(x.dtype)
    want = F.cross_entropy(x.movedim(-1, 1), t, weight=w, label_smoothing=0.1,
                           reduction=reduction)

    def computed(read_elements):
        monkeypatch.setattr(pipeline, "READ_ELEMENTS", read_elements)
        read = ReadOptions(str(files[0]), str(files[1]) if len(files) > 1 else None)
        xs, _ = open_sources(read, -1)
        out = tmp_path / f"none_{read_elements}.npy"
        doc, _ = json_run("compute", *args, "-q", "-o", out,
                          "--per-sequence", tmp_path / f"seq_{read_elements}.csv")
        return xs, doc, np.load(out), (tmp_path / f"seq_{read_elements}.csv").read_text()

    xs, doc, losses, seqs = computed(4 * v)  # a block: a few tokens
    assert xs.tokens == (b, length) and xs.row_shape == (v,)
    whole_xs, whole_doc, whole_losses, whole_seqs = computed(1 << 20)
    assert whole_xs.tokens is None  # a sequence fits a block: read as rows, as before
    assert losses.shape == (b, length)
    np.testing.assert_array_equal(losses, whole_losses)
    torch_none = F.cross_entropy(x.movedim(-1, 1), t, weight=w, label_smoothing=0.1,
                                 reduction="none")
    got = losses.astype(np.float32) if dtype == "bfloat16" else losses
    if dtype == "float32":
        np.testing.assert_allclose(got, torch_none.numpy(), rtol=2e-6, atol=1e-6)
    else:  # half precision: torch's own roundings
        np.testing.assert_array_equal(got, torch_none.float().numpy().astype(got.dtype))
    if reduction == "none":
        assert doc["loss"] == whole_doc["loss"]
    elif dtype == "float32":
        assert doc["loss"] == pytest.approx(float(want), rel=1e-6)
    else:
        assert doc["loss"] == float(want)
    assert doc["loss"] == whole_doc["loss"]
    assert seqs == whole_seqs
    for key in ("accuracy", "top_k", "mean_entropy", "ece"):
        if key in doc["metrics"]:
            assert doc["metrics"][key] == pytest.approx(whole_doc["metrics"][key], rel=1e-9)


@pytest.mark.parametrize("shift", [False, True])
def test_token_rows_keep_the_readers_notes_and_the_class_names(tmp_path, monkeypatch, shift):
    """Read as token rows (with or without --shift), a file still says what its reader
    said (an ml_dtypes bfloat16 .npy) and its classes keep their names."""
    import ml_dtypes

    from ce_cli.run import pipeline

    monkeypatch.setattr(pipeline, "READ_ELEMENTS", 20)  # a sequence is 60 values
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2, 12, 5)) * 2).astype(ml_dtypes.bfloat16)
    t = rng.integers(0, 5, (2, 12))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    names = ["a", "b", "c", "d", "e"]
    doc, result = json_run("compute", tmp_path / "x.npy", tmp_path / "t.npy",
                           "--class-axis", "-1", "--classes", ",".join(names),
                           *(["--shift"] if shift else []))
    assert any("2-byte raw values" in line for line in said(result.stderr, "note"))
    labels = t[:, 1:] if shift else t
    assert [r["target"] for r in doc["rows"]] == [names[i] for i in labels.reshape(-1)[:10]]
    assert doc["dtype"] == "bfloat16"
    want = F.cross_entropy(torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
                           [:, :-1 if shift else None].movedim(-1, 1),
                           torch.from_numpy(labels))
    assert doc["loss"] == float(want)
