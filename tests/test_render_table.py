"""The default table (issue 17, points 4-6): the headline first and never split inside a
phrase, sections set apart by a blank line and a heading that stands out without colour and
never wraps, the audit before the preview rows and the plots, one rule for the numbers
(decimal points in line, thousands separators), a loss histogram over the losses' real range,
and "perplexity" for classification but "token perplexity" for sequences.

Rendered whole through rich at 80 and 140 columns without colour (rich's own tests' way), or
through the command with COLUMNS set.
"""

from __future__ import annotations

import copy
import io
import re
from dataclasses import replace

import numpy as np
import pytest
from helpers import run, save
from rich.console import Console

from ce_cli import render, tables
from ce_cli.audit.metrics import LOSS_EDGES, AuditStats, explain
from ce_cli.loss import LossAccumulator, make_spec

WIDTHS = [80, 140]
RULE = "─"


def draw(report: render.Report, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    render.write_table(report, console)
    return console.file.getvalue()


def _run(n: int = 60, c: int = 4, seed: int = 0, *, weight=None, eps: float = 0.0):
    """A LossResult and AuditStats of random (n, c) logits, every tenth target ignored."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    t = rng.integers(0, c, n)
    t[::10] = -100
    spec = make_spec(x.shape, x.dtype, t.shape, t.dtype, weight=weight, label_smoothing=eps)
    acc = LossAccumulator(spec)
    losses = acc.update(x, t)
    stats = AuditStats(c, top_k=(1, 2), worst_k=5)
    stats.update(x, t, losses, spec)
    return acc.finalize("mean"), stats, x, t, losses


def _preview(x, t, losses, k: int, total: int) -> render.Preview:
    p = np.exp(x - x.max(axis=1, keepdims=True))
    return render.Preview(index=[str(i) for i in range(k)], targets=[int(v) for v in t[:k]],
                          losses=np.asarray(losses[:k], np.float64),
                          probs=p[:k] / p[:k].sum(axis=1, keepdims=True), total=total)


def large_report(*, sequences: bool = False, weighted: bool = True) -> render.Report:
    """A report of a small real run told it covered 1,000,000 positions: counts large enough
    for separators, a long headline (ignored, weighted, smoothed), 30 classes (more than the
    per-class table shows), the preview rows and both plots."""
    c = 30
    weight = np.full(c, 1.5, np.float32) if weighted else None
    result, stats, x, t, losses = _run(400, c, weight=weight, eps=0.1)
    tot = replace(result.totals, positions=1_000_000, counted=999_990, ignored=10,
                  denominator=1_499_985.0)
    result = replace(result, totals=tot)
    summary = stats.summary()
    for cls in summary["per_class"]:
        cls["support"] *= 2_500
    summary["loss_histogram"]["counts"] = [v * 2_500 for v in summary["loss_histogram"]
                                           ["counts"]]
    for b in summary["calibration_bins"]:
        b["count"] *= 2_500
    seq = None
    if sequences:
        seq = {"sequences": 40_000, "tokens_per_sequence": 25, "with_tokens": 40_000,
               "token_weighted_perplexity": 12.25,
               "perplexity": {"p10": 3.5, "median": 11.0, "p90": 40.125},
               "worst": [{"sequence": i, "tokens": 25, "nll_mean": 5.0 - i,
                          "perplexity": float(np.exp(5.0 - i))} for i in range(5)]}
    return render.Report(result=result, preview=_preview(x, t, losses, 10, 1_000_000),
                         stats=summary, explain=explain(result, stats), sequences=seq)


HEADINGS = ["explain", "metrics", "per sequence", "worst samples", "per class", "first",
            "loss histogram", "reliability"]


def heading_lines(out: str) -> dict[str, int]:
    """Each section's heading: its line number, by the first words of its title."""
    lines = out.splitlines()
    found = {}
    for i, line in enumerate(lines):
        if RULE * 3 in line and not line.startswith(RULE):
            title = line.split(" " + RULE)[0]
            key = next(h for h in HEADINGS if h in title)
            found[key] = i
    return found


# -- the headline ----------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_headline_is_the_loss_alone_then_whole_phrases(width):
    report = large_report()
    lines = draw(report, width).splitlines()
    assert lines[0] == f"mean loss  {report.text(report.result.loss)}"  # torch's, exact
    details = []
    for line in lines[1:]:
        if not line:
            break
        assert len(line) <= width
        details.append(line)
    phrases = ["float32", "30 classes", "999,990 of 1,000,000 targets counted",
               "10 ignored (ignore_index -100)", "weighted (denominator 1,499,985)",
               "label smoothing 0.1"]
    for phrase in phrases:  # each phrase whole on one line
        assert sum(phrase in line for line in details) == 1, (phrase, details)
    assert " ".join(d.strip() for d in details) == ", ".join(phrases)
    assert len(details) == (3 if width == 80 else 2)  # wrapped between phrases only


def test_headline_of_a_short_run_and_of_per_sample_losses():
    result, stats, *_ = _run(8, 3)
    out = draw(render.Report(result=result, stats=stats.summary()), 80).splitlines()
    assert out[0] == f"mean loss  {render.scalar_text(result.loss)}"
    assert out[1] == "  float32, 3 classes, 7 of 8 targets counted, 1 ignored (ignore_index -100)"
    none = replace(result, reduction="none", loss=np.zeros(8, np.float32))
    assert draw(render.Report(result=none), 80).splitlines()[0] == "per-sample losses"


# -- sections ---------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_sections_have_a_heading_rule_after_a_blank_line(width):
    out = draw(large_report(sequences=True), width)
    lines = out.splitlines()
    found = heading_lines(out)
    assert set(found) == set(HEADINGS)
    for i in found.values():
        assert lines[i - 1] == ""  # a blank line before every section
        title, rule = lines[i].split(" " + RULE, 1)
        assert set(rule) == {RULE}  # a heading line that stands out without colour
        assert len(lines[i]) == min(width, tables.HEADING_WIDTH)  # one line, never wrapped
        assert len(title) < 60
    assert "per class: 20 of 30, highest mean loss first " in out
    assert all(len(line) <= width for line in lines)


def test_what_a_user_acts_on_comes_before_the_rows_and_the_plots():
    found = heading_lines(draw(large_report(sequences=True), 80))
    order = sorted(found, key=found.get)
    assert order == HEADINGS


def test_headings_never_wrap_at_the_minimum_width():
    out = draw(large_report(sequences=True), render.MIN_WIDTH)
    lines = out.splitlines()
    for i in heading_lines(out).values():
        assert lines[i - 1] == "" and lines[i + 1].strip()  # the heading is one line


def test_headings_read_without_colour_when_piped(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3)) * 3
    t = rng.integers(0, 3, 50)
    out = run("compute", *save(tmp_path, x, t), "--format", "table", "--explain",
              env={"COLUMNS": "80", "NO_COLOR": "1"}).stdout
    assert "\x1b[" not in out
    found = heading_lines(out)
    assert set(found) == set(HEADINGS) - {"per sequence"}
    assert "\n\n\n" not in out and not out.startswith("\n")


# -- numbers ----------------------------------------------------------------------------------

def _table_after(out: str, key: str) -> list[str]:
    """The data rows of the table under the heading ``key`` (after its header and rule)."""
    lines = out.splitlines()
    start = heading_lines(out)[key] + 3
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("--format"):
            break
        rows.append(line)
    return rows


def _point_offsets(rows: list[str]) -> dict[int, set[int]]:
    """For each column (by position) holding numbers with a point: the line offsets of the
    points."""
    offsets: dict[int, set[int]] = {}
    for row in rows:
        for j, cell in enumerate(re.finditer(r"\S+", row)):
            if re.fullmatch(r"-?\d+\.\d+(e[-+]\d+)?", cell.group()):
                offsets.setdefault(j, set()).add(cell.start() + cell.group().index("."))
    return offsets


def crafted_stats() -> dict:
    """Statistics whose columns mix magnitudes: 0.26 beside 4.57 and 33.1, tiny p[target]."""
    result, stats, *_ = _run(60, 4)
    st = stats.summary()
    st["worst"] = [
        {"index": 969985, "loss": 33.139694, "target": 1, "predicted": 2, "p_target": 4.05e-15},
        {"index": 10847, "loss": 4.57124, "target": 3, "predicted": 2, "p_target": 0.0103},
        {"index": 7, "loss": 1.9592, "target": 0, "predicted": 2, "p_target": 0.141},
        {"index": 12, "loss": 0.262013, "target": 2, "predicted": 2, "p_target": 0.7695}]
    for cls, (loss, acc, conf) in zip(st["per_class"], [(1.9592, 0.0, 0.5821),
                                                       (4.57124, 1.0, 0.6091),
                                                       (0.262013, 0.3333, 0.7695),
                                                       (12.5, 0.298, 0.954)]):
        cls.update(support=1_000 * (cls["class"] + 1), mean_loss=loss, accuracy=acc,
                   mean_confidence=conf)
    return st


@pytest.mark.parametrize("width", WIDTHS)
def test_numbers_line_up_on_their_points(width):
    result, *_ = _run(60, 4)
    out = draw(render.Report(result=result, stats=crafted_stats()), width)
    worst = _table_after(out, "worst samples")
    assert len(worst) == 4
    offsets = _point_offsets(worst)
    assert len(offsets) == 2 and all(len(v) == 1 for v in offsets.values()), worst
    assert "33.139694" in out and "0.262013" in out and "4.571240" in out  # 6 decimals
    assert "4.050e-15" in worst[0] and "7.695e-01" in worst[3]  # one form in the column
    classes = _table_after(out, "per class")
    assert len(classes) == 4
    offsets = _point_offsets(classes)
    assert len(offsets) == 3 and all(len(v) == 1 for v in offsets.values()), classes
    assert classes[0].split() == ["0", "1,000", "1.959200", "0.0000", "0.5821"]
    assert classes[2].split()[3] == "0.3333" and classes[3].split()[3] == "0.2980"


def test_a_column_too_wide_for_fixed_decimals_is_scientific_throughout():
    assert tables.column_texts([0.5, 2e7]) == ["5.000e-01", "2.000e+07"]
    assert tables.column_texts([0.5, 1e308, None, float("nan")]) == [
        "5.000e-01", "1.00e+308", "nan", "nan"]  # a 3-digit exponent keeps the point in line
    assert tables.column_texts([0.25, 4.5e-9], small=True) == ["2.500e-01", "4.500e-09"]
    assert tables.column_texts([0.25, 4.5e-9]) == ["0.2500", "0.0000"]
    assert tables.column_texts([-1e-9, 3.0], 6) == ["0.000000", "3.000000"]  # no "-0"
    assert tables.number_text(float("inf")) == "inf"


@pytest.mark.parametrize("width", WIDTHS)
def test_counts_have_thousands_separators(width):
    out = draw(large_report(), width)
    flat = " ".join(out.split())
    assert "999,990 of 1,000,000 targets counted" in flat
    assert "999,990 more rows not shown" in out
    assert "999,990 counted, 10 ignored" in flat  # --explain
    supports = [row.split()[1] for row in _table_after(out, "per class")]
    assert supports and all(re.fullmatch(r"\d{1,3}(,\d{3})+", s) for s in supports)
    hist = out.split("loss histogram")[1].split("reliability")[0]
    assert re.search(r" \d{1,3},\d{3}\n", hist)
    assert re.search(r"n=\d{1,3},\d{3}", out)
    assert not re.search(r"\d{4,}", re.sub(r"\d+\.\d+|e[-+]\d+", "", hist))


def test_plain_csv_and_json_keep_every_digit(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 3))
    t = rng.integers(0, 3, 2000)
    xp, tp = save(tmp_path, x, t)
    plain = run("compute", xp, tp).stdout
    assert "," not in plain and len(plain.strip()) > 12  # float64's shortest repr
    head, row = run("compute", xp, tp, "--format", "csv").stdout.splitlines()
    assert dict(zip(head.split(","), row.split(",")))["positions"] == "2000"
    table = run("compute", xp, tp, "--format", "table").stdout
    assert table.splitlines()[0] == f"mean loss  {plain.strip()}"


# -- perplexity ---------------------------------------------------------------------------------

def test_perplexity_is_token_perplexity_for_sequences_only():
    flat = " ".join(draw(large_report(), 80).split())
    assert " perplexity " in flat and "token perplexity" not in flat
    flat = " ".join(draw(large_report(sequences=True), 80).split())
    assert "token perplexity" in flat
    assert "40,000 sequences of 25 tokens, perplexity 12.2500 over all tokens" in flat


# -- the loss histogram -------------------------------------------------------------------------

def issue_histogram(largest: float | None = 25.3) -> dict:
    """1,000,000 losses like the issue's: 31% above 10 up to ``largest``, none below 0.25."""
    counts = [0] * (len(LOSS_EDGES) - 1)
    for i in range(1, 40):  # 0.25 ... 10
        counts[i] = 17_700
    counts[40], counts[41], counts[42] = 250_000, 50_000, 9_700
    assert sum(counts) == 1_000_000
    worst = [] if largest is None else [
        {"index": 0, "loss": None, "target": 0, "predicted": 1, "p_target": 0.0},  # NaN first
        {"index": 1, "loss": largest, "target": 0, "predicted": 1, "p_target": 1e-11}]
    return {"loss_histogram": {"edges": [None if e == np.inf else float(e) for e in LOSS_EDGES],
                               "counts": counts}, "worst": worst}


def _histogram(st: dict, width: int = 80) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    tables.print_histogram(st, console)
    return [line for line in console.file.getvalue().splitlines()[2:]]


@pytest.mark.parametrize("width", WIDTHS)
def test_histogram_spans_the_losses_real_range(width):
    rows = _histogram(issue_histogram(25.3), width)
    labels = [row.split()[0] for row in rows]
    assert labels[0].split("-")[0] == "0.25"  # the first non-empty bin
    assert labels[-1] == "20.00-25.30"  # the largest loss, not the bin's edge 50
    assert sum(int(row.split()[-1].replace(",", "")) for row in rows) == 1_000_000
    assert len(rows) <= 16
    # by density: the 10-15 bin holds 25% of the samples in 5 units of loss, and does not set
    # the scale; the rows 1 unit wide hold 70,800 samples each
    bars = {row.split()[0]: row.count("█") for row in rows}
    full = max(bars.values())
    assert bars["1.00-2.00"] == full and bars["10.00-15.00"] < full
    assert bars["20.00-25.30"] < bars["15.00-20.00"] < bars["10.00-15.00"]


def test_histogram_without_the_largest_loss_ends_at_the_bins_edge():
    labels = [row.split()[0] for row in _histogram(issue_histogram(None))]
    assert labels[-1] == "20.00-50.00"
    st = issue_histogram(25.3)
    st["worst"] = st["worst"][:1]  # only a NaN: the largest finite loss is not known
    assert [row.split()[0] for row in _histogram(st)][-1] == "20.00-50.00"


def test_histogram_of_a_few_losses_keeps_the_fine_bins():
    st = {"loss_histogram": {"edges": list(LOSS_EDGES[:-1]) + [None],
                             "counts": [0, 1, 1, 0, 3, 2, 0, 1] + [0] * 37},
          "worst": [{"loss": 1.791979}]}
    rows = tables.histogram_rows(st)
    assert [(a, round(b, 2), n) for a, b, n, _ in rows] == [
        (0.25, 0.5, 1), (0.5, 0.75, 1), (0.75, 1.0, 0), (1.0, 1.25, 3), (1.25, 1.5, 2),
        (1.5, 1.75, 0), (1.75, 1.79, 1)]
    assert rows[-1][3] == 0.25  # cut at the largest loss, counted as wide as a bin
    labels = [row.split()[0] for row in _histogram(st)]
    assert labels[0] == "0.25-0.50" and labels[-1] == "1.75-1.79"


def test_one_loss_just_past_an_edge_does_not_swamp_the_histogram():
    st = copy.deepcopy(issue_histogram(20.01))
    st["loss_histogram"]["counts"][42] = 1
    bars = {row.split()[0]: row.count("█") for row in _histogram(st)}
    assert bars["20.00-20.01"] < max(bars.values())


# -- the command, at 80 and 140 columns -----------------------------------------------------------

@pytest.mark.parametrize("columns", WIDTHS)
def test_command_table_fits_the_terminal(tmp_path, columns):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(3000, 30)) * 4).astype(np.float32)
    t = rng.integers(0, 30, 3000)
    t[::100] = -100
    out = run("compute", *save(tmp_path, x, t), "--format", "table", "--explain",
              env={"COLUMNS": str(columns)}).stdout
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines)
    assert lines[1].startswith("  float32, 30 classes, 2,970 of 3,000 targets counted,")
    assert set(heading_lines(out)) == set(HEADINGS) - {"per sequence"}
    assert "per class: 20 of 30, highest mean loss first" in out
    assert "2,990 more rows not shown" in out
    hist = [line.split()[0] for line in out.split("loss histogram")[1].splitlines()[1:]
            if line.startswith("  ")]
    assert float(hist[-1].split("-")[1]) < 50  # cut at the largest loss


# -- compare --------------------------------------------------------------------------------------

SAMPLES = ["sample_data/model_a_300x5.npy", "sample_data/model_b_300x5.npy",
           "sample_data/labels_300.npy"]


@pytest.mark.parametrize("columns", WIDTHS)
def test_compare_table_follows_the_same_rules(columns):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    a, b, y = (root / s for s in SAMPLES)
    out = run("compare", a, b, y, "--format", "table", "--worst", "3",
              env={"COLUMNS": str(columns)}).stdout
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines)
    # each model's mean loss exactly as compute prints it, the points in line
    exact = [run("compute", m, y).stdout.strip() for m in (a, b)]
    rows = [line for line in lines if line.startswith(("A ", "B "))][:2]
    assert [r.split()[2] for r in rows] == exact
    assert len({r.index(e) + e.index(".") for r, e in zip(rows, exact)}) == 1
    i = lines.index(next(line for line in lines if line.startswith("B - A")))
    assert lines[i - 1] == "" and re.fullmatch(r"B - A  -?\d+\.\d{6}", lines[i])
    assert "over 300 clusters" in lines[i + 1] or "over 300 clusters" in lines[i + 2]
    for title in ("per class, largest changes first", "where the two differ most"):
        j = next(k for k, line in enumerate(lines) if line.startswith(title + " " + RULE))
        assert lines[j - 1] == ""
        body = []
        for line in lines[j + 3:]:
            if not line.strip():
                break
            body.append(line)
        offsets = _point_offsets(body)
        assert len(offsets) == 3 and all(len(v) == 1 for v in offsets.values()), body
        assert all(re.fullmatch(r"-?\d+\.\d{6}", c) for row in body for c in row.split()[2:])


def test_json_rows_rank_tied_classes_by_index_and_nan_last():
    """A row's five most probable classes: ties in class order, whatever
    argpartition's order; a NaN probability ranks below every number (and is null)."""
    from ce_cli.render import Preview, _json_row

    probs = np.array([[0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.05], [np.nan, 0.2, 0.1, 0, 0, 0, 0, 0]])
    p = Preview(index=["0", "1"], targets=[1, 2], losses=np.array([0.5, 0.5]), probs=probs,
                total=2)
    assert [c["class"] for c in _json_row(p, 0, None)["top"]] == [1, 2, 3, 4, 5]
    second = _json_row(p, 1, None)
    assert [c["class"] for c in second["top"]] == [1, 2, 3, 4, 5]
    assert second["p_target"] == 0.1
