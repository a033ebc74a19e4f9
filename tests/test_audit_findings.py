"""The diagnostics called directly: the input scan and the findings, without the CLI.

Expected values come from the inputs' construction (a softmax row sums to 1, a label
set without 0 is what the 1-based check looks for), never from ce-loss's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ce_cli.audit.findings import Finding, findings
from ce_cli.audit.scan import InputScan, label_counts
from ce_cli.loss import LossTotals, make_spec


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _spec(c=4, **kw):
    return make_spec((10, c), np.float64, (10,), np.int64, **kw)


def _say(spec, totals, *, scan=None, labels=None, loss=1.0, x_row=None, t_row=(),
         class_axis_given=False):
    return findings(scan or InputScan(), spec, totals, labels=labels,
                    loss=np.asarray(loss), reduction="mean",
                    x_row=x_row if x_row is not None else (spec.n_classes,), t_row=t_row,
                    class_axis_given=class_axis_given)


def _kinds(said, fragment):
    return [f.kind for f in said if fragment in f.message]


# -- the scan -----------------------------------------------------------------------------


def test_scan_tells_softmax_rows_from_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 6)) * 3
    probs, raw = InputScan(), InputScan()
    probs.update(_softmax(logits))
    raw.update(logits)
    assert probs.looks_like_probabilities(np.dtype(np.float64), 6)
    assert not raw.looks_like_probabilities(np.dtype(np.float64), 6)
    assert probs.rows == raw.rows == 50
    assert probs.worst_sum_error < 1e-12  # each row sums to 1 up to rounding


def test_scan_tells_log_softmax_rows():
    logits = np.random.default_rng(1).normal(size=(30, 5))
    scan = InputScan()
    scan.update(np.log(_softmax(logits)))
    assert scan.looks_like_log_probabilities(5)
    assert not scan.looks_like_probabilities(np.dtype(np.float64), 5)


def test_scan_counts_nonfinite_rows_and_judges_the_others():
    x = _softmax(np.random.default_rng(2).normal(size=(20, 3)))
    x[[4, 9]] = np.nan
    scan = InputScan()
    scan.update(x)
    assert scan.nonfinite_rows == 2 and scan.finite_rows == 18
    assert scan.looks_like_probabilities(np.dtype(np.float64), 3)  # NaN rows left out


def test_scans_of_two_parts_merge_into_the_scan_of_the_whole():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    x[7, 2] = np.inf
    whole, a, b = InputScan(), InputScan(), InputScan()
    whole.update(x)
    a.update(x[:15])
    b.update(x[15:])
    merged = a.merge(b)
    assert merged == whole


def test_loss_counts_of_the_scan():
    scan = InputScan()
    scan.update_losses(np.array([0.5, np.inf, np.nan, np.inf, 0.0]))
    assert (scan.inf_losses, scan.nan_losses) == (2, 1)


def test_label_counts_leave_ignored_targets_out():
    t = np.array([0, 2, 2, -100, 3, 2])
    counts = label_counts(None, t, 4, -100)
    np.testing.assert_array_equal(counts, [1, 0, 3, 1])
    counts = label_counts(counts, np.array([1, 1]), 4, -100)
    np.testing.assert_array_equal(counts, [1, 2, 3, 1])


# -- the findings -------------------------------------------------------------------------


def test_every_target_ignored_is_a_warning_naming_nan():
    said = _say(_spec(), LossTotals(positions=5, counted=0, ignored=5), loss=math.nan)
    assert _kinds(said, "0/0 = NaN") == ["warning"]


@pytest.mark.parametrize("ignore, kind", [(0, "note"), (2, "warning"), (-100, None)])
def test_an_ignore_index_that_is_a_class(ignore, kind):
    said = _say(_spec(ignore_index=ignore), LossTotals(positions=8, counted=8,
                                                       denominator=8.0))
    assert _kinds(said, "is also a class id") == ([kind] if kind else [])


def test_labels_without_class_0_look_1_based():
    rng = np.random.default_rng(4)
    t = rng.integers(1, 5, 400)  # 1..4 of classes 0..4: 0 is never seen
    labels = label_counts(None, t, 5, -100)
    totals = LossTotals(positions=400, counted=400, denominator=400.0)
    said = _say(_spec(5), totals, labels=labels)
    assert _kinds(said, "1-based") == ["warning"]
    with_zero = label_counts(None, np.concatenate([t, [0]]), 5, -100)
    assert not _kinds(_say(_spec(5), totals, labels=with_zero), "1-based")


def test_a_missing_class_among_many_targets_is_a_note():
    labels = np.array([100, 100, 0, 100])  # class 2 never seen, class 0 seen
    said = _say(_spec(4), LossTotals(positions=300, counted=300, denominator=300.0),
                labels=labels)
    assert _kinds(said, "never appear as a target") == ["note"]


def test_a_single_class_is_a_warning():
    spec = make_spec((3, 1), np.float64, (3,), np.int64)
    said = _say(spec, LossTotals(positions=3, counted=3, denominator=3.0), loss=0.0)
    assert _kinds(said, "single class") == ["warning"]


def test_nonfinite_rows_are_a_warning_with_their_count():
    scan = InputScan()
    x = np.zeros((6, 4))
    x[[1, 3, 5], 0] = np.nan
    scan.update(x)
    said = _say(_spec(), LossTotals(positions=6, counted=6, denominator=6.0), scan=scan)
    assert _kinds(said, "3 of 6 rows of logits hold NaN") == ["warning"]


@pytest.mark.parametrize("per_target, given, kind", [
    (4.0, False, "warning"),  # far above log 4 = 1.39: the classes are likely last
    (1.4, False, "note"),  # near a uniform guess: either reading
    (0.2, False, None),  # a low loss says nothing about the axis
    (4.0, True, None),  # --class-axis given: the user chose
])
def test_square_layouts_are_questioned_by_their_loss(per_target, given, kind):
    spec = make_spec((10, 4, 4), np.float64, (10, 4), np.int64)
    totals = LossTotals(positions=40, counted=40, nll=per_target * 40, denominator=40.0)
    said = _say(spec, totals, x_row=(4, 4), t_row=(4,), class_axis_given=given,
                loss=per_target)
    assert _kinds(said, "--class-axis -1") == ([kind] if kind else [])


def test_findings_are_values():
    """Findings compare and hash by content: a merge says each once."""
    a, b = Finding("note", "x"), Finding("note", "x")
    assert a == b and len({a, b}) == 1
