"""Diagnostics on stderr: no false alarm on healthy input, no silence on clear mistakes.

Each test builds the input of one audit finding (healthy or mistaken), checks what is
said and that the printed number is torch's (computed here with torch, never copied
from ce-loss's output).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_one_error_line, close, run, said, save, softmax, torch_ce

from ce_cli.audit import scan as input_scan


def trained(rng, t, c, margin=8.0):
    """Logits of a confident model that is right about ``t``: (N, C), float32."""
    x = rng.normal(0, 2, (len(t), c)).astype(np.float32)
    x[np.arange(len(t)), t] += margin
    return x


# == 1. 1-based labels only when class 0 missing is no chance ==================================

@pytest.mark.parametrize("labels, c", [([1, 1, 1], 2), ([9, 7, 6, 8, 1, 2, 3, 2, 4, 4], 10)])
def test_small_healthy_batches_are_not_called_one_based(tmp_path, labels, c):
    t = np.array(labels)
    x = trained(np.random.default_rng(1), t, c)
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, "--strict")  # no warning: exit 0
    close(result.stdout, torch_ce(x, t), 2e-5)
    assert "1-based" not in result.stderr and said(result.stderr) == []


def test_healthy_small_batches_never_say_one_based(tmp_path):
    rng = np.random.default_rng(2)
    for _ in range(30):
        t = rng.integers(0, 10, 10)
        x = trained(rng, t, 10)
        xp, tp = save(tmp_path, x, t)
        assert "1-based" not in run("compute", xp, tp).stderr


def test_many_labels_without_class_zero_still_look_one_based(tmp_path):
    rng = np.random.default_rng(3)
    t = rng.integers(1, 5, 200)  # classes 1..4 of 5, class 0 never: (4/5)^200 ~ 4e-20
    x = trained(rng, t, 5)
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, "--strict", exit_code=1)
    close(result.stdout, torch_ce(x, t), 2e-5)
    (w,) = said(result.stderr)
    assert "1-based" in w and "subtract 1" in w


def test_skewed_classes_missing_class_zero_are_not_called_one_based(tmp_path):
    # class 4 is seen only twice: class 0 could as well be missing by chance
    t = np.array([1] * 40 + [2] * 40 + [3] * 40 + [4] * 2)
    x = trained(np.random.default_rng(4), t, 5)
    xp, tp = save(tmp_path, x, t)
    assert "1-based" not in run("compute", xp, tp).stderr


# == 2-5. out-of-range targets: the class count, where, and the fix ===========================

def test_class_axis_last_padding_names_the_right_class_count(tmp_path):
    rng = np.random.default_rng(5)
    b, length, v = 4, 12, 50
    t = rng.integers(0, v, (b, length))
    x = rng.normal(0, 2, (b, length, v)).astype(np.float32)
    t[1, 9:] = -1
    t[2, 5:] = -1
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, "--class-axis", "-1", exit_code=2)
    assert_one_error_line(result, "Target -1 is out of bounds", "(first at target (1, 9))",
                          "50 classes (0..49)", "-1 is the only value out of range",
                          "pass --ignore-index -1")
    assert "12 classes" not in result.stderr
    fixed = run("compute", xp, tp, "--class-axis", "-1", "--ignore-index", "-1")
    want = F.cross_entropy(torch.from_numpy(x).movedim(-1, 1), torch.from_numpy(t),
                           ignore_index=-1)
    close(fixed.stdout, want, 2e-5)


def test_channels_last_segmentation_with_255_void(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 16, 16, 21)).astype(np.float32)
    t = rng.integers(0, 21, (2, 16, 16))
    t[:, :3] = 255
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, "--class-axis", "-1", exit_code=2)
    assert_one_error_line(result, "21 classes (0..20)", "pass --ignore-index 255",
                          "(first at target (0, 0, 0))")
    fixed = run("compute", xp, tp, "--class-axis", "-1", "--ignore-index", "255")
    want = F.cross_entropy(torch.from_numpy(x).movedim(-1, 1), torch.from_numpy(t),
                           ignore_index=255)
    close(fixed.stdout, want, 2e-5)


@pytest.mark.parametrize("tname, where", [("t.npy", "(first at target #4)"),
                                          ("t.csv", "(first at target #4, line 5)")])
def test_out_of_range_target_is_located_among_ignored_ones(tmp_path, tname, where):
    x = np.random.default_rng(7).normal(size=(6, 10)).astype(np.float32)
    t = np.array([-100, -100, -100, 3, 12, 4])
    xp, tp = save(tmp_path, x, t, tname=tname)
    result = run("compute", xp, tp, exit_code=2)
    assert_one_error_line(result, "Target 12 is out of bounds", where, "labels run 3..12")


@pytest.mark.parametrize("pad", [None, -1])
def test_one_based_labels_whose_minimum_is_not_one(tmp_path, pad):
    rng = np.random.default_rng(8)
    t = rng.integers(2, 1001, 256)  # ImageNet-style 1..1000 labels, 1 not drawn
    t[0] = 1000
    if pad is not None:
        t[[5, 9]] = pad
    x = rng.normal(size=(256, 1000)).astype(np.float32)
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, exit_code=2)
    assert_one_error_line(result, "1000 classes (0..999)", "look 1-based", "subtract 1")
    assert "--ignore-index 1000" not in result.stderr
    if pad is not None:
        assert "pass --ignore-index -1" in result.stderr
    # the advice works
    fixed = np.where(t == -1, -1, t - 1)
    np.save(tp, fixed)
    got = run("compute", xp, tp, "--ignore-index", "-1")
    close(got.stdout, torch_ce(x, fixed, ignore_index=-1), 2e-5)


@pytest.mark.parametrize("labels", [[0, 1, 1, 0, 1, 0, 0, 1], [1] * 8])
def test_single_logit_column_with_binary_labels(tmp_path, labels):
    x = np.random.default_rng(9).normal(0, 3, (8, 1)).astype(np.float32)
    t = np.array(labels)
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, exit_code=2)
    assert_one_error_line(result, "1 class (0..0)", "[0, z]", "binary cross-entropy")
    assert "--ignore-index" not in result.stderr and "1-based" not in result.stderr
    # the advice works: two columns [0, z] give the binary cross-entropy of z
    two = np.concatenate([np.zeros_like(x), x], axis=1)
    np.save(xp, two)
    got = run("compute", xp, tp)
    bce = F.binary_cross_entropy_with_logits(torch.from_numpy(x[:, 0]),
                                             torch.from_numpy(t.astype(np.float32)))
    close(got.stdout, torch_ce(two, t), 2e-5)
    close(got.stdout, bce, 1e-5)


# == 6. integer logits: a finding like the others ===========================================

def test_integer_logits_warning_obeys_quiet_and_strict(tmp_path):
    t = np.arange(20) % 10
    x = (np.random.default_rng(10).integers(-5, 5, (20, 10)) + 8 * np.eye(10, dtype=int)[t])
    xp, tp = save(tmp_path, x.astype(np.int32), t)
    want = torch_ce(x.astype(np.float64), t)
    loud = run("compute", xp, tp)
    close(loud.stdout, want, 1e-12)
    (w,) = said(loud.stderr)
    assert "int32" in w and "torch refuses integer logits" in w
    quiet = run("compute", xp, tp, "-q")
    assert quiet.stderr == "" and quiet.stdout == loud.stdout
    strict = run("compute", xp, tp, "--strict", exit_code=1)
    assert strict.stdout == loud.stdout and strict.stderr.count("int32") == 1
    assert run("compute", xp, tp, "--strict", "-q", exit_code=1).stderr == ""


# == 7. integer probability targets =========================================================

def test_integer_one_hot_targets_say_torch_refuses_them(tmp_path):
    rng = np.random.default_rng(11)
    y = rng.integers(0, 10, 50)
    x = trained(rng, y, 10)
    oh = np.eye(10, dtype=np.int64)[y]
    xp, tp = save(tmp_path, x, oh)
    with pytest.raises(RuntimeError, match="Expected floating point type"):
        torch_ce(x, oh)
    result = run("compute", xp, tp, "--strict")  # a note
    want = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(oh).double())
    close(result.stdout, want, 1e-6)
    (note,) = said(result.stderr, "note")
    assert "torch refuses integer class probabilities" in note
    assert "got Long" in note and "argmax" in note
    assert "as torch does" not in note
    # float one-hot targets: torch takes them, and the note says so
    np.save(tp, oh.astype(np.float32))
    (note,) = said(run("compute", xp, tp).stderr, "note")
    assert "as torch does" in note and "refuses" not in note


# == 8. probabilities passed as logits, rounded, sigmoid, with a NaN row =====================

@pytest.mark.parametrize("decimals", [2, 3])
def test_rounded_softmax_in_csv_is_recognised(tmp_path, decimals):
    rng = np.random.default_rng(12)
    y = rng.integers(0, 10, 50)
    p = softmax(trained(rng, y, 10).astype(np.float64))
    xp = tmp_path / "p.csv"
    np.savetxt(xp, p, fmt=f"%.{decimals}f", delimiter=",")
    tp = tmp_path / "y.npy"
    np.save(tp, y)
    q = np.loadtxt(xp, delimiter=",")
    assert np.abs(q.sum(axis=1) - 1).max() > 1e-3  # rounding moved the sums
    result = run("compute", xp, tp)
    close(result.stdout, torch_ce(q, y), 1e-12)
    (w,) = said(result.stderr)
    assert "look like probabilities" in w and f"{decimals} decimals" in w
    offered = float(re.search(r"--input-kind probs, which gives (\S+)$", w).group(1))
    with np.errstate(divide="ignore"):
        probs_loss = float(F.nll_loss(torch.log(torch.from_numpy(q)), torch.from_numpy(y)))
    close(offered, probs_loss, 1e-12)
    as_probs = run("compute", xp, tp, "--input-kind", "probs")
    close(as_probs.stdout, probs_loss, 1e-12)
    assert as_probs.stderr == ""  # rounding is no reason to doubt probabilities


def test_sigmoid_outputs_get_a_note(tmp_path):
    rng = np.random.default_rng(13)
    y = rng.integers(0, 10, 50)
    s = (1 / (1 + np.exp(-trained(rng, y, 10)))).astype(np.float32)
    xp, tp = save(tmp_path, s, y)
    result = run("compute", xp, tp, "--strict")
    close(result.stdout, torch_ce(s, y), 2e-5)
    (note,) = said(result.stderr, "note")
    assert "sigmoid" in note


def test_a_nan_row_does_not_hide_softmax_outputs(tmp_path):
    rng = np.random.default_rng(14)
    y = rng.integers(0, 10, 50)
    p = softmax(trained(rng, y, 10).astype(np.float64)).astype(np.float32)
    p[3] = np.nan
    xp, tp = save(tmp_path, p, y)
    result = run("compute", xp, tp)
    assert result.stdout == "nan\n" and math.isnan(float(torch_ce(p, y)))
    ws = said(result.stderr)
    assert any("look like probabilities" in w and "49 rows without NaN" in w for w in ws)
    assert any(w.startswith("1 of 50 rows of logits hold NaN") for w in ws)
    # without the NaN row the offered loss is what --input-kind probs gives
    keep = np.arange(50) != 3
    y2 = np.where(keep, y, -100)
    np.save(tp, y2)
    result = run("compute", xp, tp)
    close(result.stdout, torch_ce(p, y2), 2e-5)
    (w,) = [w for w in said(result.stderr) if "look like probabilities" in w]
    offered = float(re.search(r"--input-kind probs, which gives (\S+)$", w).group(1))
    want = F.nll_loss(torch.log(torch.from_numpy(p[keep])), torch.from_numpy(y[keep]))
    close(offered, want, 2e-5)


# == 9. the --input-kind fix named is the one that fits =====================================

def test_probabilities_given_as_log_probs_name_probs(tmp_path):
    rng = np.random.default_rng(15)
    y = rng.integers(0, 10, 50)
    p = softmax(trained(rng, y, 10).astype(np.float64)).astype(np.float32)
    xp, tp = save(tmp_path, p, y)
    result = run("compute", xp, tp, "--input-kind", "log-probs")
    close(result.stdout, F.nll_loss(torch.from_numpy(p), torch.from_numpy(y)), 2e-5)
    (w,) = said(result.stderr)
    assert "looks like probabilities" in w and w.endswith("pass --input-kind probs")
    assert "--input-kind logits" not in w


def test_log_probs_given_as_probs_name_log_probs_and_the_nan(tmp_path):
    rng = np.random.default_rng(16)
    y = rng.integers(0, 10, 50)
    lp = np.log(softmax(trained(rng, y, 10).astype(np.float64))).astype(np.float32)
    xp, tp = save(tmp_path, lp, y)
    result = run("compute", xp, tp, "--input-kind", "probs")
    with np.errstate(invalid="ignore"):
        want = F.nll_loss(torch.log(torch.from_numpy(lp)), torch.from_numpy(y))
    assert math.isnan(float(want)) and result.stdout == "nan\n"
    (w,) = said(result.stderr)
    assert "looks like log-probabilities" in w and "why the loss is nan" in w
    assert w.endswith("pass --input-kind log-probs") and "--input-kind logits" not in w
    fixed = run("compute", xp, tp, "--input-kind", "log-probs")
    close(fixed.stdout, F.nll_loss(torch.from_numpy(lp), torch.from_numpy(y)), 2e-5)
    assert fixed.stderr == ""


# == 10. probability targets that are no distribution ========================================

def test_all_zero_target_rows_are_said(tmp_path):
    rng = np.random.default_rng(17)
    y = rng.integers(0, 10, 50)
    x = trained(rng, y, 10)
    t = np.eye(10, dtype=np.float32)[y]
    t[-10:] = 0
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp, "--strict", exit_code=1)
    close(result.stdout, torch_ce(x, t), 2e-5)
    (w,) = said(result.stderr)
    assert w.startswith("10 of 50 rows of the probability targets are all zero")
    assert "denominator" in w and "ignore_index" in w
    # the mean the user wanted: class indices with the padding ignored
    y2 = np.where(np.arange(50) < 40, y, -100)
    assert not math.isclose(float(torch_ce(x, t)), float(torch_ce(x, y2)), rel_tol=1e-3)
    # with sum the rows change nothing: only a note
    summed = run("compute", xp, tp, "--reduction", "sum", "--strict")
    close(summed.stdout, torch_ce(x, t, reduction="sum"), 2e-5)
    assert said(summed.stderr) == [] and said(summed.stderr, "note")


def test_multi_hot_targets_are_said(tmp_path):
    rng = np.random.default_rng(18)
    x = rng.normal(size=(50, 10)).astype(np.float32)
    t = (rng.random((50, 10)) < 0.3).astype(np.float32)
    t[0] = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp)
    close(result.stdout, torch_ce(x, t), 2e-5)
    ws = said(result.stderr)
    over = [w for w in ws if "sum to more than 1" in w]
    assert len(over) == 1 and "multi-label" in over[0] and "binary cross-entropy" in over[0]
    n_over = int(((t.sum(axis=1)) > 1.01).sum())
    assert over[0].startswith(f"{n_over} of 50 rows")


def test_nan_in_soft_targets_is_said(tmp_path):
    rng = np.random.default_rng(19)
    x = rng.normal(size=(20, 5))
    t = softmax(rng.normal(size=(20, 5)))
    t[7, 2] = np.nan
    xp, tp = save(tmp_path, x, t)
    result = run("compute", xp, tp)
    assert result.stdout == "nan\n" and math.isnan(float(torch_ce(x, t)))
    (w,) = said(result.stderr)
    assert w.startswith("1 of 20 rows of the probability targets hold NaN")


def test_soft_targets_rounded_in_csv_are_healthy(tmp_path):
    rng = np.random.default_rng(20)
    x = rng.normal(size=(40, 10))
    y = rng.integers(0, 10, 40)
    smooth = 0.9 * np.eye(10)[y] + 0.01  # label smoothing written with 2 decimals
    xp = tmp_path / "x.npy"
    np.save(xp, x)
    tp = tmp_path / "t.csv"
    np.savetxt(tp, softmax(np.log(smooth) + rng.normal(0, 0.05, (40, 10))), fmt="%.2f",
               delimiter=",")
    t = np.loadtxt(tp, delimiter=",")
    result = run("compute", xp, tp, "--strict")
    close(result.stdout, torch_ce(x, t), 1e-12)
    assert said(result.stderr) == []


# == 11. square (N, C, L) logits ============================================================

def test_square_layout_is_only_questioned_when_the_loss_says_so(tmp_path):
    rng = np.random.default_rng(21)
    b, length = 3, 8
    y = rng.integers(0, length, (b, length))
    x = rng.normal(0, 2, (b, length, length)).astype(np.float32)
    for i in range(b):
        x[i, np.arange(length), y[i]] += 8  # (B, L, V): classes last
    ok = np.ascontiguousarray(x.transpose(0, 2, 1))  # (N, C, L): torch's layout
    xp, tp = save(tmp_path, ok, y)
    healthy = run("compute", xp, tp, "--strict")
    close(healthy.stdout, torch_ce(ok, y), 2e-5)
    assert healthy.stderr == ""
    np.save(xp, x)
    wrong = run("compute", xp, tp, "--strict", exit_code=1)
    close(wrong.stdout, torch_ce(x, y), 2e-5)
    (w,) = said(wrong.stderr)
    assert "pass --class-axis -1" in w and "uniform guess" in w
    fixed = run("compute", xp, tp, "--class-axis", "-1")
    close(fixed.stdout, torch_ce(np.moveaxis(x, -1, 1), y), 2e-5)
    assert fixed.stderr == ""


# == 12. --ignore-index 0 ===================================================================

def test_ignore_index_zero_as_pad_id_is_a_note(tmp_path):
    rng = np.random.default_rng(22)
    y = rng.integers(1, 30, (4, 9))
    y[:, 6:] = 0  # padding with the vocabulary's pad id 0
    x = rng.normal(size=(4, 9, 30)).astype(np.float32)
    xp, tp = save(tmp_path, x, y)
    result = run("compute", xp, tp, "--class-axis", "-1", "--ignore-index", "0", "--strict")
    want = F.cross_entropy(torch.from_numpy(x).movedim(-1, 1), torch.from_numpy(y),
                           ignore_index=0)
    close(result.stdout, want, 2e-5)
    assert said(result.stderr) == []
    (note,) = said(result.stderr, "note")
    assert "ignore_index 0 is also a class id" in note and "1-based" not in note


# == the scan: rounding, merging ============================================================

@pytest.mark.parametrize("values, dtype, want", [
    ([0.5, 0.25, 0.125], np.float64, 3),
    ([0.1, 0.7, 0.2], np.float64, 1),
    ([0.123, 0.877], np.float32, 3),
    ([0.0, 1.0], np.float64, 0),
    ([1 / 3, 2 / 3], np.float64, input_scan.NOT_ROUNDED),
    ([0.1234567, 0.8765433], np.float32, input_scan.NOT_ROUNDED),  # beyond float32's digits
])
def test_decimals_of(values, dtype, want):
    assert input_scan.decimals_of(np.array(values, dtype=dtype)) == want


def test_scan_merge_equals_one_scan():
    rng = np.random.default_rng(23)
    p = np.round(softmax(rng.normal(size=(40, 6)) * 3), 3)
    p[5] = np.nan
    t = np.eye(6)[rng.integers(0, 6, 40)]
    t[:4] = 0
    t[10] = 1
    whole, a, b = (input_scan.InputScan() for _ in range(3))
    whole.update(p)
    whole.update_targets(t)
    a.update(p[:17])
    a.update_targets(t[:17])
    b.update(p[17:])
    b.update_targets(t[17:])
    assert a.merge(b) == whole
    assert whole.decimals == 3 and whole.looks_like_probabilities(np.dtype(np.float64), 6)
    assert (whole.target_zero_rows, whole.target_over_rows) == (4, 1)
    assert json.dumps(whole.target_sum_high) == "6.0"


# == review fixes ===========================================================================

def test_untrained_square_layout_is_a_note_not_a_warning(tmp_path):
    """A random-init model's loss sits just above log C on the right axis too: a note."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.5, (64, 10, 10)).astype(np.float32)
    y = rng.integers(0, 10, (64, 10))
    xp, tp = save(tmp_path, x, y)
    result = run("compute", xp, tp, "--strict")
    close(result.stdout, torch_ce(x, y), 2e-5)
    assert float(torch_ce(x, y)) > math.log(10)  # the case the old rule warned about
    assert said(result.stderr) == [] and len(said(result.stderr, "note")) == 1


def test_binary_batch_of_one_class_is_not_called_one_based(tmp_path):
    y = np.ones(30, np.int64)
    x = trained(np.random.default_rng(4), y, 2)
    xp, tp = save(tmp_path, x, y)
    result = run("compute", xp, tp, "--strict")
    close(result.stdout, torch_ce(x, y), 2e-5)
    assert not any("1-based" in w for w in said(result.stderr))


def test_rounded_softmax_of_many_classes_is_recognised(tmp_path):
    """ImageNet-sized softmax outputs saved with %.3f: rounding moves the row sums by up
    to ~0.1 (many tiny probabilities round to 0); still probabilities."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 1000, 40)
    x = rng.normal(0, 1, (40, 1000))
    x[np.arange(40), y] += 8
    xp = tmp_path / "p.csv"
    np.savetxt(xp, softmax(x), fmt="%.3f", delimiter=",")
    np.save(tmp_path / "y.npy", y)
    q = np.loadtxt(xp, delimiter=",")
    assert np.abs(q.sum(axis=1) - 1).max() > 0.1
    result = run("compute", xp, tmp_path / "y.npy")
    close(result.stdout, torch_ce(q, y), 1e-12)
    assert any("look like probabilities" in w for w in said(result.stderr))


def test_float16_sums_past_65504_are_said(tmp_path):
    """torch's half mean over 70,000 targets divides by half(70000) = inf: 0.0. That is
    its number, printed; the warning says why it means nothing."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(70_000, 2)).astype(np.float16)
    y = rng.integers(0, 2, 70_000)
    xp, tp = save(tmp_path, x, y)
    result = run("compute", xp, tp, "--format", "plain")
    want = torch_ce(x, y)
    assert float(result.stdout) == float(want) == 0.0
    (w,) = said(result.stderr)
    assert "65504" in w and "float32" in w
    small = run("compute", *save(tmp_path, x[:1000], y[:1000], "s.npy", "st.npy"),
                "--format", "plain")
    assert said(small.stderr) == []


@pytest.mark.parametrize("fmt", ["json", "table", "csv", "plain"])
def test_zero_classes_render_in_every_format(tmp_path, fmt):
    x = np.zeros((3, 0), np.float32)
    for t in (np.array([-100, -100, -100]), np.zeros((3, 0), np.float32)):
        xp, tp = save(tmp_path, x, t)
        result = run("compute", xp, tp, "--format", fmt)
        assert "internal error" not in result.stderr


def test_weight_counts_classes_on_the_class_axis(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 5, 7)).astype(np.float32)  # (B, L, V)
    y = rng.integers(0, 7, (4, 5))
    w = np.arange(1, 8, dtype=np.float32)
    xp, tp = save(tmp_path, x, y)
    result = run("compute", xp, tp, "--class-axis", "-1", "--weight", "1,2,3,4,5,6,7",
                 "--format", "plain")
    close(result.stdout, torch_ce(np.moveaxis(x, -1, 1), y, weight=w), 2e-6)
