"""Partial results: merging the parts of any split equals one run, equals torch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import assert_one_error_line, run, torch_ce
from hypothesis import given, settings
from hypothesis import strategies as st

from ce_cli.options import AuditOptions
from ce_cli.readers.base import array_source
from ce_cli.run import partial, pipeline


def _partial_of(x, t, **options):
    p = pipeline.run(array_source("x", "logits", x), array_source("t", "targets", t),
                     input_kind="logits", keep_losses=False,
                     audit=AuditOptions(top_k=(1, 2), bins=5, worst=3), **options)
    doc = partial.to_document(p, ["x t"])
    return partial.Partial(json.loads(partial.dumps(doc)), "part"), p


OPTIONS = st.fixed_dictionaries({
    "weight": st.sampled_from([None, np.array([0.5, 2.0, 0.0, 1.0])]),
    "ignore_index": st.sampled_from([-100, 1]),
    "reduction": st.sampled_from(["mean", "sum"]),
    "label_smoothing": st.sampled_from([0.0, 0.1, 1.0]),
})


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(0, 40), options=OPTIONS,
       dtype=st.sampled_from([np.float32, np.float64]))
def test_merge_of_random_splits_equals_one_run_and_torch(data, n, options, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.normal(size=(n, 4)) * 3).astype(dtype)
    t = rng.integers(0, 4, size=n)
    t[rng.random(n) < 0.2] = options["ignore_index"]
    if options["weight"] is not None:
        options = dict(options, weight=options["weight"].astype(dtype))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    bounds = [0, *cuts, n]
    parts = [_partial_of(x[a:b], t[a:b], **options)[0] for a, b in zip(bounds, bounds[1:])]
    order = data.draw(st.permutations(range(len(parts))))
    merged = partial.merge([parts[i] for i in order])
    got = merged.finish(options["reduction"]).loss
    whole, one = _partial_of(x, t, **options)
    torch_kw = {k: v for k, v in options.items() if v is not None}
    want = torch_ce(x, t, **torch_kw)
    rtol = 2e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7, equal_nan=True)
    assert got.dtype == want.dtype
    single = one.result.loss
    if np.isfinite(single):  # the order of the shards changes nothing beyond an ulp
        np.testing.assert_array_max_ulp(got, single, maxulp=2)
    else:
        np.testing.assert_array_equal(got, single)
    a, b = merged.stats.summary(), whole.stats.summary()
    assert a["counted"] == b["counted"] and a["accuracy"] == b["accuracy"]
    assert a["top_k_accuracy"] == b["top_k_accuracy"]
    # worst-sample indices are positions within each shard; their losses are global
    np.testing.assert_allclose([w["loss"] for w in a["worst"]],
                               [w["loss"] for w in b["worst"]], rtol=2e-6)
    assert a["loss_histogram"] == b["loss_histogram"]
    assert merged.totals.positions == n


def test_all_ignored_shards_merge_to_nan_mean():
    x = np.ones((3, 2))
    t = np.full(3, -100)
    parts = [_partial_of(x[:1], t[:1], weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0)[0],
             _partial_of(x[1:], t[1:], weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0)[0]]
    merged = partial.merge(parts)
    assert math.isnan(float(merged.finish("mean").loss))
    assert math.isnan(float(torch_ce(x, t)))
    assert float(merged.finish("sum").loss) == 0.0


def test_cli_compute_partial_then_merge(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    t = rng.integers(0, 5, size=30)
    parts = []
    for i, (a, b) in enumerate([(0, 7), (7, 20), (20, 30)]):
        np.save(tmp_path / f"x{i}.npy", x[a:b])
        np.save(tmp_path / f"t{i}.npy", t[a:b])
        part = tmp_path / f"part{i}.json"
        run("compute", tmp_path / f"x{i}.npy", tmp_path / f"t{i}.npy", "--partial", part,
            "--weight", "1,2,3,4,5")
        parts.append(part)
    merged = run("merge", *parts)
    w = np.array([1, 2, 3, 4, 5], dtype=np.float32)
    assert float(merged.stdout) == pytest.approx(float(torch_ce(x, t, weight=w)), rel=2e-6)
    doc = json.loads(run("merge", *reversed(parts), "--format", "json").stdout)
    assert doc["loss"] == pytest.approx(float(torch_ce(x, t, weight=w)), rel=2e-6)
    assert doc["counted"] == 30 and doc["metrics"]["counted"] == 30


def test_merge_refuses_mismatched_partials(tmp_path):
    for i, c in enumerate((3, 4)):
        np.save(tmp_path / f"x{i}.npy", np.zeros((2, c)))
        np.save(tmp_path / f"t{i}.npy", np.zeros(2, dtype=np.int64))
        run("compute", tmp_path / f"x{i}.npy", tmp_path / f"t{i}.npy", "--partial",
            tmp_path / f"p{i}.json")
    result = run("merge", tmp_path / "p0.json", tmp_path / "p1.json", exit_code=2)
    assert_one_error_line(result, "p1.json", "n_classes is 4", "p0.json has 3")
    (tmp_path / "bad.json").write_text("{not json")
    assert_one_error_line(run("merge", tmp_path / "bad.json", exit_code=2), "bad.json",
                          "not JSON")
    (tmp_path / "other.json").write_text('{"a": 1}')
    assert_one_error_line(run("merge", tmp_path / "other.json", exit_code=2),
                          "not a ce-loss partial result")


# -- version 3: what every engine says travels in the partial --------------------------------


def _parts_of(tmp_path, x, t, cuts, *options):
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        np.save(tmp_path / f"x{i}.npy", x[a:b])
        np.save(tmp_path / f"t{i}.npy", t[a:b])
        part = tmp_path / f"p{i}.json"
        run("compute", tmp_path / f"x{i}.npy", tmp_path / f"t{i}.npy", *options, "-q",
            "--partial", part)
        parts.append(part)
    return parts


def test_merged_none_partials_merge_again(tmp_path):
    """A merge keeps its partials' reduction, so merging is associative for 'none' too."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    t = rng.integers(0, 4, 30)
    p0, p1, p2 = _parts_of(tmp_path, x, t, [0, 10, 20, 30], "--reduction", "none")
    run("merge", p0, p1, "--partial", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["reduction"] == "none"
    chained = float(run("merge", tmp_path / "m.json", p2).stdout)
    at_once = float(run("merge", p0, p1, p2).stdout)
    assert chained == at_once == pytest.approx(float(torch_ce(x, t)), rel=2e-6)


def _edited(tmp_path, edit):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(12, 3, 2)).astype(np.float32)
    t = rng.integers(0, 3, (12, 2))
    (part,) = _parts_of(tmp_path, x, t, [0, 12])
    doc = json.loads(part.read_text())
    edit(doc)
    part.write_text(json.dumps(doc))
    return part


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["layout"].update(target_dtype="foo"), "layout.target_dtype"),
    (lambda d: d["layout"].update(logits_row=[4, 5]), "layout.logits_row"),
    (lambda d: d["layout"].update(logits_row=[3, 5]), "layout.logits_row"),
    (lambda d: d["layout"].update(class_axis_given="yes"), "layout.class_axis_given"),
    (lambda d: d.update(as_probs={"positions": -5}), "as_probs"),
    (lambda d: d.update(findings=[["shout", "x"]]), "findings"),
    (lambda d: d.update(result_dtype="float8"), "result_dtype"),
    (lambda d: d.pop("layout"), "layout"),
])
def test_damaged_version_3_fields_are_located_errors(tmp_path, edit, field):
    part = _edited(tmp_path, edit)
    result = run("merge", part, exit_code=2)
    assert_one_error_line(result, "a damaged partial result", f"field {field}")


def test_damaged_probabilities_reading_is_checked_as_totals(tmp_path):
    def edit(doc):
        doc["as_probs"] = dict(doc["totals"], counted=1.5)
    result = run("merge", _edited(tmp_path, edit), exit_code=2)
    assert_one_error_line(result, "field as_probs.counted")


def test_a_version_2_partial_still_merges(tmp_path):
    def edit(doc):
        for key in ("layout", "as_probs", "findings", "result_dtype"):
            doc.pop(key)
        doc["version"] = 2
    part = _edited(tmp_path, edit)
    got = json.loads(run("merge", part, "--format", "json").stdout)
    rng = np.random.default_rng(9)  # the data _edited saved
    x = rng.normal(size=(12, 3, 2)).astype(np.float32)
    t = rng.integers(0, 3, (12, 2))
    assert got["positions"] == 24
    assert got["loss"] == pytest.approx(float(torch_ce(x, t)), rel=2e-6)


def test_an_empty_shard_leaves_the_probabilities_reading_alone(tmp_path):
    """Softmax outputs passed as logits: the warning offers the probabilities' loss from a
    merge as from one run, though one shard is empty."""
    rng = np.random.default_rng(10)
    z = rng.normal(size=(40, 5)) * 2
    x = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(np.float32)
    t = rng.integers(0, 5, 40)
    parts = _parts_of(tmp_path, x, t, [0, 0, 25, 40])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    whole = run("compute", tmp_path / "x.npy", tmp_path / "t.npy")
    merged = run("merge", *parts)
    assert "which gives" in whole.stderr
    assert merged.stderr == whole.stderr and merged.stdout == whole.stdout


def test_weight_and_reader_findings_reach_the_merge(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    x = rng.normal(size=(20, 3)).astype(np.float16)
    t = rng.integers(0, 3, 20)
    cols = {"id": np.arange(20), **{f"l{c}": x[:, c] for c in range(3)}, "label": t}
    pq.write_table(pa.table(cols), tmp_path / "a.parquet")
    args = ["--target-column", "label", "--weight", "1,1e6,1"]  # 1e6 overflows float16
    whole = run("compute", tmp_path / "a.parquet", *args)
    assert "ignored the integer columns 'id'" in whole.stderr
    assert "--weight 1e+06 does not fit float16" in whole.stderr
    run("compute", tmp_path / "a.parquet", *args, "--strict", exit_code=1)
    run("compute", tmp_path / "a.parquet", *args, "-q", "--partial", tmp_path / "p.json")
    merged = run("merge", tmp_path / "p.json")
    assert merged.stderr == whole.stderr
