"""Gates for scripts: ``--fail-above``, and exit codes that mean one thing each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run, torch_ce


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    t = rng.integers(0, 4, 50)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    np.save(tmp_path / "ignored.npy", np.full(50, -100))
    return float(torch_ce(x, t)), tmp_path


def test_fail_above_passes_below_and_fails_above_with_the_result_printed(pair):
    loss, d = pair
    below = run("compute", d / "x.npy", d / "t.npy", "--fail-above", loss * 1.01)
    assert float(below.stdout) == pytest.approx(loss) and below.stderr == ""
    above = run("compute", d / "x.npy", d / "t.npy", "--fail-above", loss * 0.99, exit_code=1)
    assert float(above.stdout) == pytest.approx(loss)  # printed first, as usual
    [line] = above.stderr.splitlines()
    assert line.startswith("ce-loss: check failed: the mean loss ") and "--fail-above" in line
    # equal passes: only above fails
    exact = run("compute", d / "x.npy", d / "t.npy", "--format", "json").stdout
    run("compute", d / "x.npy", d / "t.npy", "--fail-above", repr(json.loads(exact)["loss"]))


def test_fail_above_fails_on_nan_even_when_quiet(pair):
    _, d = pair
    done = run("compute", d / "x.npy", d / "ignored.npy", "--fail-above", "1e9", "-q",
               exit_code=1)
    assert done.stdout.strip() == "nan"
    [line] = done.stderr.splitlines()
    assert "loss is nan" in line and "--fail-above" in line
    doc = json.loads(run("compute", d / "x.npy", d / "ignored.npy", "--format", "json",
                         "--fail-above", "3", "-q", exit_code=1).stdout)
    assert doc["loss"] is None  # JSON's null: jq -e '.loss < 3' would pass, the gate does not


def test_fail_above_on_sum_and_through_merge(pair):
    loss, d = pair
    run("compute", d / "x.npy", d / "t.npy", "--reduction", "sum", "--fail-above",
        loss * 50 * 0.99, exit_code=1)
    run("compute", d / "x.npy", d / "t.npy", "-q", "--partial", d / "p.json")
    run("merge", d / "p.json", "--fail-above", loss * 0.99, exit_code=1)
    run("merge", d / "p.json", "--fail-above", loss * 1.01)


def test_fail_above_with_reduction_none_is_a_usage_error(pair):
    _, d = pair
    done = run("compute", d / "x.npy", d / "t.npy", "--reduction", "none", "--fail-above", "1",
               exit_code=2)
    assert "--fail-above" in done.stderr


def test_exit_codes_are_listed_in_help():
    text = run("compute", "--help").stdout
    for code, words in (("0", "success"), ("1", "a check failed"), ("2", "bad input"),
                        ("3", "internal error"), ("130", "interrupted")):
        assert any(line.strip().startswith(f"{code}  {words}") for line in text.splitlines())


def test_strict_is_a_failed_check_not_an_internal_error(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[0.2, 0.8], [0.6, 0.4]], np.float32))
    np.save(tmp_path / "t.npy", np.array([1, 0]))
    done = run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--strict", exit_code=1)
    assert "probabilities" in done.stderr
