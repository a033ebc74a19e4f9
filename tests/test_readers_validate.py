"""Checks on read arrays (ce_cli/readers/validate.py): the logits' dtype, targets as
torch takes them, class indices int64 holds exactly; each refusal names the file and
the row (or the line of a text file)."""

from __future__ import annotations

import numpy as np
import pytest

from ce_cli.errors import InputFileError
from ce_cli.readers.validate import (
    INDEX_HINT,
    check_class_indices,
    check_numeric,
    coerce_targets,
    index_problem,
    logits_dtype,
)

BIG = 2**63 + 5  # one past int64 and then some: a cast would wrap it negative


def lines(row):
    """A text file whose data starts on line 3 (a header, a blank line)."""
    return row + 3


# -- coerce_targets ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8,
                                   np.int32, np.int64])
def test_integer_labels_become_int64(dtype):
    t = np.array([0, 3, 1], dtype=dtype)
    out = coerce_targets(t, (3, 4), "t.npy")
    assert out.dtype == np.int64
    assert out.tolist() == [0, 3, 1]


def test_uint64_labels_beyond_int64_are_refused_with_their_row():
    t = np.array([1, 2, BIG, 0], dtype=np.uint64)
    with pytest.raises(InputFileError) as err:
        coerce_targets(t, (4, 3), "t.npy")
    assert str(err.value) == (f"t.npy: row index 2 ({BIG}) is too large for a class index; "
                              f"{INDEX_HINT}")
    with pytest.raises(InputFileError) as err:  # a later block: rows count from offset
        coerce_targets(t, (4, 3), "t.npy", offset=1000)
    assert err.value.problem == f"row index 1002 ({BIG}) is too large for a class index"


def test_uint64_labels_in_a_text_file_name_the_line():
    t = np.array([1, BIG], dtype=np.uint64)
    with pytest.raises(InputFileError) as err:
        coerce_targets(t, (2, 3), "t.csv", offset=10, line_of=lines)
    assert str(err.value) == (f"t.csv, line 14: target {BIG} is too large for a class "
                              f"index; {INDEX_HINT}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_whole_float_labels_become_int64(dtype):
    out = coerce_targets(np.array([2.0, 0.0, -1.0, 65504.0], dtype=dtype), (4, 3), "t.npy")
    assert out.dtype == np.int64
    assert out.tolist() == [2, 0, -1, 65504]  # -1: ignore_index is torch's business


@pytest.mark.parametrize(("value", "shown", "why"), [
    (2.5, "2.5", "is not a whole number"),
    (np.nan, "nan", "is not a class index (not a finite number)"),
    (-np.inf, "-inf", "is not a class index (not a finite number)"),
    (1e30, "1e+30", "is too large for a class index"),
    (2.0**63, "9.223372036854776e+18", "is too large for a class index"),
])
def test_float_labels_that_are_no_class_index(value, shown, why):
    t = np.array([0.0, 1.0, value, 2.5])  # the first bad value is reported
    with pytest.raises(InputFileError) as err:
        coerce_targets(t, (4, 3), "t.npy", offset=5)
    assert err.value.problem == f"row index 7 ({shown}) {why}"
    assert err.value.hint == INDEX_HINT
    with pytest.raises(InputFileError) as err:
        coerce_targets(t, (4, 3), "t.csv", offset=5, line_of=lines)
    assert (err.value.line, err.value.problem) == (10, f"target {shown} {why}")


def test_bool_labels_are_class_indices_0_and_1():
    out = coerce_targets(np.array([True, False, True]), (3, 2), "t.npy")
    assert out.dtype == np.int64 and out.tolist() == [1, 0, 1]


def test_k_dim_labels_name_the_position():
    t = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, 0.0]])  # (N, d1) targets for (N, C, d1) logits
    with pytest.raises(InputFileError) as err:
        coerce_targets(t, (2, 4, 3), "t.npy", offset=8)
    assert err.value.problem == "row index 9, target at (9, 1) (0.5) is not a whole number"


def test_targets_of_the_logits_shape_are_probabilities():
    p = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    out = coerce_targets(p, p.shape, "t.npy")
    assert out is p  # floats as they are, no copy
    one_hot = coerce_targets(np.array([[0, 1], [1, 0]], dtype=np.uint8), (2, 2), "t.npy")
    assert one_hot.dtype == np.float64 and one_hot.tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize(("t", "words"), [
    (np.array(["0", "1"]), "text"),
    (np.array([1 + 0j, 2j]), "complex numbers"),
    (np.array([b"0", b"1"]), "bytes"),
])
def test_targets_that_are_not_numbers(t, words):
    with pytest.raises(InputFileError) as err:
        coerce_targets(t, (2, 3), "t.npy")
    assert err.value.problem == f"the targets have dtype {t.dtype} ({words}), not numbers"
    assert err.value.hint == "save int64 class indices"


# -- logits_dtype and check_numeric ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_logits_are_computed_as_they_are(dtype):
    assert logits_dtype(np.dtype(dtype), "x.npy") == (np.dtype(dtype), None)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.bool_])
def test_integer_logits_are_widened_with_a_note(dtype):
    got, note = logits_dtype(np.dtype(dtype), "x.npy")
    assert got == np.float64
    # no file named: the shards of one run, and their merge, say it alike
    assert note == (f"the logits are {np.dtype(dtype).name}; computing in float64 "
                    "(torch refuses integer logits)")
    assert logits_dtype(np.dtype(dtype), "-") == (got, note)


def test_logits_that_are_not_real_numbers():
    with pytest.raises(InputFileError) as err:
        logits_dtype(np.dtype("<U3"), "x.npy")
    assert str(err.value) == ("x.npy: the logits have dtype <U3 (text), not real numbers; "
                              "save float32 or float64 logits")


@pytest.mark.parametrize(("dtype", "words"), [
    ("<U3", "text"), ("|S2", "bytes"), ("<c16", "complex numbers"), ("|O", "Python objects"),
    ("<M8[s]", "dates"), ("<m8[s]", "time deltas"), ([("a", "<f4")], "records"),
])
def test_check_numeric_names_what_the_array_holds(dtype, words):
    dt = np.dtype(dtype)
    with pytest.raises(InputFileError) as err:
        check_numeric("x.npy", "logits", dt)
    assert err.value.problem == f"the logits hold {words} ({dt.str}), not real numbers"
    assert err.value.hint == "save a float32 or float64 array"
    with pytest.raises(InputFileError) as err:
        check_numeric("t.npy", "targets", dt, what="the labels")
    assert err.value.problem == f"the labels hold {words} ({dt.str}), not real numbers"
    assert err.value.hint == "save int64 class indices"


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint64, np.float16, np.float64])
def test_check_numeric_takes_numbers(dtype):
    check_numeric("x.npy", "logits", np.dtype(dtype))


# -- index_problem and check_class_indices -------------------------------------------------------


def test_index_problem_finds_the_first_bad_value():
    assert index_problem(np.array([0.0, 1.0, 2.0])) is None
    assert index_problem(np.array([0, 2**62], dtype=np.uint64)) is None
    assert index_problem(np.array([-5, 7], dtype=np.int64)) is None
    assert index_problem(np.array([0.0, 1.5, np.nan])) == (1, "is not a whole number")
    assert index_problem(np.array([[0.0, 1.0], [np.inf, 0.5]])) == \
        (2, "is not a class index (not a finite number)")
    assert index_problem(np.array([3, BIG, BIG], dtype=np.uint64)) == \
        (1, "is too large for a class index")
    assert index_problem(np.array([], dtype=np.uint64)) is None


def test_check_class_indices_on_an_unbatched_target():
    check_class_indices(np.array(3.0), "t.npy")
    with pytest.raises(InputFileError) as err:
        check_class_indices(np.array(0.5), "t.npy")
    assert err.value.problem == "row index 0 (0.5) is not a whole number"
