"""What torch refuses, ce_cli refuses with torch's words; what torch accepts, so do we.

Each refusal case is checked against torch first (it must raise, and its message must
hold the key text), then against ce_cli: a CeLossError that is also a ValueError,
TypeError or IndexError, whose message contains the same key text.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
from conftest import TOLERANCES, assert_close, assert_unchanged, frozen
from helpers import torch_ce

from ce_cli import cross_entropy
from ce_cli.errors import CeLossError

pytest.importorskip("torch")

X = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0], [1.5, 1.5, -2.0]])
P = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
W = np.array([0.25, 2.0, 0.5])
i64 = np.int64


def T(*values: int, dtype: Any = i64) -> np.ndarray:
    return np.array(values, dtype=dtype)


class Case(NamedTuple):
    id: str
    x: np.ndarray
    t: np.ndarray
    kwargs: dict[str, Any]
    key: str | None  # text both messages must contain; None: not compared


def case(id: str, x: Any, t: Any, key: str | None, **kwargs: Any) -> Any:
    return pytest.param(Case(id, np.asarray(x), np.asarray(t), kwargs, key), id=id)


def zeros(*shape: int, dtype: Any = np.float64) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


WEIGHT_2 = "weight tensor should be defined either for all 3 classes or no classes but got " \
    "weight tensor of shape: [2]"

REFUSALS = [
    # targets out of range: the first offending value in memory order
    case("oob-3", X, T(0, 3, 1, 2), "Target 3 is out of bounds."),
    case("oob-minus1", X, T(0, -1, 1, 2), "Target -1 is out of bounds."),
    case("oob-first-in-memory", X, T(0, 5, -3, 1), "Target 5 is out of bounds."),
    case("oob-first-negative", X, T(0, -3, 5, 1), "Target -3 is out of bounds."),
    case("oob-default-ignore-when-ignore-is-1", X, T(0, -100, 1, 2),
         "Target -100 is out of bounds.", ignore_index=1),
    case("oob-uint8", X, T(0, 5, 1, 2, dtype=np.uint8), "Target 5 is out of bounds."),
    case("oob-uint8-200", X, T(0, 200, 1, 2, dtype=np.uint8), "Target 200 is out of bounds."),
    case("oob-unbatched", X[0], np.array(3), "Target 3 is out of bounds."),
    case("oob-unbatched-1d-target", X[0], T(4), "Target 4 is out of bounds."),
    case("oob-none", X, T(0, 3, 1, 2), "Target 3 is out of bounds.", reduction="none"),
    case("oob-sum-smoothing-weight", X, T(0, 1, 1, 3), "Target 3 is out of bounds.",
         reduction="sum", label_smoothing=0.2, weight=W),
    case("oob-kdim", zeros(2, 3, 4), np.array([[0, 1, 2, 0], [1, 2, 7, -5]]),
         "Target 7 is out of bounds."),
    case("oob-4d", zeros(1, 3, 2, 2), np.array([[[0, 1], [-2, 0]]]),
         "Target -2 is out of bounds."),
    case("oob-zero-classes", zeros(4, 0), T(0, 0, 0, 0), "Target 0 is out of bounds."),
    # shapes
    case("batch-mismatch", X, T(0, 1, 2), "Expected input batch_size (4) to match target "
         "batch_size (3)."),
    case("batch-mismatch-kdim", zeros(2, 3, 4), zeros(3, 4, dtype=i64),
         "Expected input batch_size (2) to match target batch_size (3)."),
    case("batch-mismatch-0d-target", X, np.array(1), "Expected input batch_size (4) to match "
         "target batch_size (0)."),
    case("batch-mismatch-empty", zeros(0, 3), T(0, 1), "Expected input batch_size (0) to "
         "match target batch_size (2)."),
    case("1d-input-target-size-2", X[0], T(0, 1), "For 1D input, 1D target must have size 1, "
         "but got target size: 2"),
    case("1d-input-target-size-0", X[0], T(), "For 1D input, 1D target must have size 1, "
         "but got target size: 0"),
    case("zero-classes-kdim-index", zeros(2, 0, 4), np.full((2, 4), -100),
         "size mismatch (got input: [2, 0, 0, 0] , target: [2, 1, 4]"),
    case("zero-classes-5d-index", zeros(2, 0, 2, 3, 4), np.full((2, 2, 3, 4), -100),
         "size mismatch (got input: [2, 0, 0, 0] , target: [2, 1, 24]"),
    case("1d-input-2d-target", X[0], T(1).reshape(1, 1), "0D or 1D target tensor "
         "expected, multi-target not supported"),
    case("1d-input-2x2-target", X[0], zeros(2, 2, dtype=i64), "0D or 1D target tensor "
         "expected, multi-target not supported"),
    # scalar arguments, checked by torch's argument parser before anything else
    case("ignore-index-float", X, T(0, 1, 2, 1), "must be int, not float", ignore_index=1.5),
    case("ignore-index-float-whole", X, T(0, 1, 2, 1), "must be int, not float",
         ignore_index=-100.0),
    case("ignore-index-bool", X, T(0, 1, 2, 1), "must be int, not bool", ignore_index=True),
    case("ignore-index-none", X, T(0, 1, 2, 1), "must be int, not NoneType",
         ignore_index=None),
    case("ignore-index-past-int64", X, T(0, 1, 2, 1), "Overflow when unpacking long long",
         ignore_index=2 ** 70),
    case("smoothing-none", X, T(0, 1, 2, 1), "must be float, not NoneType",
         label_smoothing=None),
    case("smoothing-str", X, T(0, 1, 2, 1), "must be float, not str", label_smoothing="0.1"),
    case("2d-input-2d-target", X, T(0, 1, 2, 1).reshape(4, 1), "0D or 1D target tensor "
         "expected, multi-target not supported"),
    case("2d-input-3d-target", X, zeros(4, 3, 2, dtype=i64), "0D or 1D target tensor "
         "expected, multi-target not supported"),
    case("c1-index-shaped-like-input", X[:, :1], zeros(4, 1, dtype=i64),
         "Expected floating point type for target with class probabilities, got Long"),
    case("1d-c1-index-shaped-like-input", X[0, :1], T(0), "Expected floating point type for "
         "target with class probabilities, got Long"),
    case("3d-spatial-mismatch", zeros(2, 3, 4), zeros(2, 5, dtype=i64),
         "Expected target size [2, 4], got [2, 5]"),
    case("3d-target-extra-dim", zeros(2, 3, 4), zeros(2, 4, 1, dtype=i64),
         "Expected target size [2, 4], got [2, 4, 1]"),
    case("3d-target-1d", zeros(2, 3, 4), zeros(2, dtype=i64),
         "Expected target size [2, 4], got [2]"),
    case("4d-spatial-mismatch", zeros(2, 3, 4, 5), zeros(2, 4, 4, dtype=i64),
         "size mismatch (got input: [2, 3, 4, 5] , target: [2, 4, 4]"),
    case("4d-target-not-3d", zeros(2, 3, 4, 5), zeros(2, 4, dtype=i64),
         "only batches of spatial targets supported (3D tensors) but got targets of "
         "dimension: 2"),
    case("5d-spatial-mismatch", zeros(2, 3, 4, 5, 6), zeros(2, 4, 5, 7, dtype=i64),
         "Expected target size [2, 4, 5, 6], got [2, 4, 5, 7]"),
    case("5d-prob-target-wrong-shape-is-index", zeros(2, 3, 4, 5, 6), zeros(2, 3, 4, 5, 7),
         "Expected target size [2, 4, 5, 6], got [2, 3, 4, 5, 7]"),
    # weight
    case("weight-length-index", X, T(0, 1, 2, 1), WEIGHT_2, weight=np.ones(2)),
    case("weight-length-prob", X, P, WEIGHT_2, weight=np.ones(2)),
    case("weight-2d-index", X, T(0, 1, 2, 1), "weight tensor should be defined either for all "
         "3 classes or no classes but got weight tensor of shape: [1, 3]",
         weight=np.ones((1, 3))),
    case("weight-2d-prob", X, P, "weight tensor should be defined either for all 3 classes "
         "or no classes but got weight tensor of shape: [1, 3]", weight=np.ones((1, 3))),
    case("weight-length-empty", zeros(0, 3), T(), WEIGHT_2, weight=np.ones(2)),
    case("weight-float32-for-float64", X, T(0, 1, 2, 1), "expected scalar type Double but "
         "found Float", weight=W.astype(np.float32)),
    case("weight-float64-for-float32", X.astype(np.float32), T(0, 1, 2, 1), "expected scalar "
         "type Float but found Double", weight=W),
    case("weight-int64", X, T(0, 1, 2, 1), "expected scalar type Double but found Long",
         weight=np.ones(3, dtype=i64)),
    case("weight-dtype-empty", zeros(0, 3), T(), "expected scalar type Double but found "
         "Float", weight=np.ones(3, dtype=np.float32)),
    # options
    case("smoothing-1.5", X, T(0, 1, 2, 1), "label_smoothing must be between 0.0 and 1.0. "
         "Got: 1.5", label_smoothing=1.5),
    case("smoothing-inf", X, T(0, 1, 2, 1), "label_smoothing must be between 0.0 and 1.0. "
         "Got: inf", label_smoothing=float("inf")),
    case("smoothing-1.5-prob", X, P, "label_smoothing must be between 0.0 and 1.0. Got: 1.5",
         label_smoothing=1.5),
    case("smoothing-2-unbatched", X[0], np.array(1), "label_smoothing must be between 0.0 and "
         "1.0. Got: 2", label_smoothing=2.0),
    case("reduction-avg", X, T(0, 1, 2, 1), "avg is not a valid value for reduction",
         reduction="avg"),
    case("reduction-Mean", X, P, "Mean is not a valid value for reduction", reduction="Mean"),
    case("prob-ignore-index-0", X, P, "ignore_index is not supported for floating point "
         "target", ignore_index=0),
    case("prob-ignore-index-7", X, P, "ignore_index is not supported for floating point "
         "target", ignore_index=7),
    # dtypes
    case("float32-index-target", X, T(0, 1, 2, 1, dtype=np.float32), "expected target dtype "
         "to be Long or Byte, but got Float"),
    case("float64-index-target", X, T(0, 1, 2, 1, dtype=np.float64), "expected target dtype "
         "to be Long or Byte, but got Double"),
    case("float16-index-target", X, T(0, 1, 2, 1, dtype=np.float16), "expected target dtype "
         "to be Long or Byte, but got Half"),
    case("int32-target", X, T(0, 1, 2, 1, dtype=np.int32), "expected target dtype to be Long "
         "or Byte, but got Int"),
    case("int16-target", X, T(0, 1, 2, 1, dtype=np.int16), "expected target dtype to be Long "
         "or Byte, but got Short"),
    case("int8-target", X, T(0, 1, 2, 1, dtype=np.int8), "expected target dtype to be Long "
         "or Byte, but got Char"),
    case("bool-target", X, T(0, 1, 1, 0, dtype=bool), "expected target dtype to be Long or "
         "Byte, but got Bool"),
    case("int32-target-unbatched", X[0], np.array(1, dtype=np.int32), "expected target dtype "
         "to be Long or Byte, but got Int"),
    case("float-target-kdim", zeros(2, 3, 4), zeros(2, 4), "expected target dtype to be Long "
         "or Byte, but got Double"),
    case("int64-prob-shaped", X, np.ones((4, 3), dtype=i64), "Expected floating point type "
         "for target with class probabilities, got Long"),
    case("uint8-prob-shaped", X, np.ones((4, 3), dtype=np.uint8), "Expected floating point "
         "type for target with class probabilities, got Byte"),
    case("bool-prob-shaped", X, np.ones((4, 3), dtype=bool), "Expected floating point type for "
         "target with class probabilities, got Bool"),
    case("int32-prob-shaped-unbatched", X[0], np.ones(3, dtype=np.int32), "Expected floating "
         "point type for target with class probabilities, got Int"),
    case("int64-input", X.astype(i64), T(0, 1, 2, 1), "not implemented for 'Long'"),
    case("int32-input", X.astype(np.int32), T(0, 1, 2, 1), "not implemented for 'Int'"),
    case("bool-input", X.astype(bool), T(0, 1, 2, 1), "not implemented for 'Bool'"),
    case("0d-input-0d-int-target", np.array(1.0), np.array(0), None),
    case("0d-input-0d-float-target", np.array(1.0), np.array(0.5), None),
    case("0d-input-1d-target", np.array(1.0), T(0), None),
    # the order in which torch reports several problems
    case("order-reduction-before-smoothing", X, T(0, 1, 2), "avg is not a valid value for "
         "reduction", reduction="avg", label_smoothing=1.5),
    case("order-smoothing-before-batch", X, T(0, 1, 2), "label_smoothing must be between 0.0 "
         "and 1.0. Got: 1.5", label_smoothing=1.5),
    case("order-smoothing-before-target-dtype", X, T(0, 1, 2, 1, dtype=np.float32),
         "label_smoothing must be between 0.0 and 1.0. Got: 2", label_smoothing=2.0),
    case("order-smoothing-before-weight-dtype", X, T(0, 1, 2, 1), "label_smoothing must be "
         "between 0.0 and 1.0. Got: 1.5", label_smoothing=1.5, weight=W.astype(np.float32)),
    case("order-smoothing-before-int-input", X.astype(i64), T(0, 1, 2, 1), "label_smoothing "
         "must be between 0.0 and 1.0. Got: 1.5", label_smoothing=1.5),
    case("order-batch-before-weight-length", X, T(0, 1, 2), "Expected input batch_size (4) to "
         "match target batch_size (3).", weight=np.ones(2)),
    case("order-batch-before-target-dtype", X, T(0, 1, 2, dtype=np.float32), "Expected input "
         "batch_size (4) to match target batch_size (3)."),
    case("order-batch-before-weight-dtype", X, T(0, 1, 2), "Expected input batch_size (4) to "
         "match target batch_size (3).", weight=W.astype(np.float32)),
    case("order-weight-length-before-oob", X, T(0, 1, 2, 7), WEIGHT_2, weight=np.ones(2)),
    case("order-weight-dtype-before-oob", X, T(0, 1, 2, 7), "expected scalar type Double but "
         "found Float", weight=W.astype(np.float32)),
    case("order-empty-still-checks-smoothing", zeros(0, 3), T(), "label_smoothing must be "
         "between 0.0 and 1.0. Got: 1.5", label_smoothing=1.5),
    case("order-empty-prob-still-checks-smoothing", zeros(0, 3), zeros(0, 3), "label_smoothing"
         " must be between 0.0 and 1.0. Got: 1.5", label_smoothing=1.5),
    case("order-prob-target-dtype-before-smoothing", X, np.ones((4, 3), dtype=i64), "Expected "
         "floating point type for target with class probabilities, got Long",
         label_smoothing=1.5),
    case("order-prob-target-dtype-before-ignore-index", X, np.ones((4, 3), dtype=i64),
         "Expected floating point type for target with class probabilities, got Long",
         ignore_index=0),
    case("order-prob-ignore-index-before-smoothing", X, P, "ignore_index is not supported for "
         "floating point target", ignore_index=0, label_smoothing=1.5),
    case("order-prob-ignore-index-before-weight", X, P, "ignore_index is not supported for "
         "floating point target", ignore_index=0, weight=np.ones(2)),
    case("order-prob-weight-before-smoothing", X, P, WEIGHT_2, weight=np.ones(2),
         label_smoothing=1.5),
]


def torch_message(exc: BaseException) -> str:
    """torch's message without its framing: first line, no ``cross_entropy: `` prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text.removeprefix("cross_entropy: ")


@pytest.mark.parametrize("c", REFUSALS)
def test_refusal_matches_torch(c: Case) -> None:
    with pytest.raises(Exception) as torch_exc:
        torch_ce(c.x, c.t, **c.kwargs)
    theirs = torch_message(torch_exc.value)
    if c.key is not None:
        assert c.key in theirs, f"torch now says {theirs!r}"
    before = frozen(c.x, c.t, c.kwargs.get("weight"))
    with pytest.raises(CeLossError) as our_exc:
        cross_entropy(c.x, c.t, **c.kwargs)
    assert isinstance(our_exc.value, (ValueError, TypeError, IndexError))
    ours = str(our_exc.value)
    assert "\n" not in ours
    if c.key is not None:
        assert c.key in ours, f"torch: {theirs!r}\nours:  {ours!r}"
    assert_unchanged(before, c.x, c.t, c.kwargs.get("weight"))


# -- torch 2.13 refuses uint8 targets where its kernels only take int64 -------------------------
# Not in TORCH-SEMANTICS.md (which says uint8 index targets are accepted): every K-dim input
# (nll_loss2d) and weight + label smoothing + mean (a gather over the weight) raise.

UINT8_REFUSALS = [
    case("uint8-kdim", zeros(2, 3, 4), zeros(2, 4, dtype=np.uint8),
         "expected scalar type Long but found Byte"),
    case("uint8-4d-none", zeros(2, 3, 4, 5), zeros(2, 4, 5, dtype=np.uint8),
         "expected scalar type Long but found Byte", reduction="none"),
    case("uint8-kdim-empty-none", zeros(2, 3, 0), zeros(2, 0, dtype=np.uint8),
         "expected scalar type Long but found Byte", reduction="none"),
    case("uint8-weight-smoothing-mean", X, T(0, 2, 1, 1, dtype=np.uint8),
         "gather(): Expected dtype int32/int64 for index", weight=W, label_smoothing=0.1),
    case("uint8-weight-smoothing-mean-unbatched", X[0], np.array(1, dtype=np.uint8),
         "gather(): Expected dtype int32/int64 for index", weight=W, label_smoothing=1.0),
]


@pytest.mark.parametrize("c", UINT8_REFUSALS)
def test_uint8_target_refusals_of_torch(c: Case) -> None:
    test_refusal_matches_torch(c)


def test_uint8_target_255_out_of_bounds() -> None:
    """torch itself fails to format this one (UnicodeDecodeError); ours must be readable."""
    t = T(0, 255, 1, 2, dtype=np.uint8)
    with pytest.raises(Exception):  # noqa: B017 - torch's own formatting bug
        torch_ce(X, t)
    with pytest.raises(CeLossError, match="Target 255 is out of bounds.") as exc:
        cross_entropy(X, t)
    assert isinstance(exc.value, IndexError)


# -- what torch accepts ------------------------------------------------------------------------

ACCEPTED = [
    case("negative-smoothing", X, T(0, 2, -100, 1), None, label_smoothing=-0.5),
    case("negative-smoothing-prob", X, P, None, label_smoothing=-0.5, weight=W),
    case("nan-smoothing", X, T(0, 2, -100, 1), None, label_smoothing=float("nan")),
    case("nan-smoothing-prob", X, P, None, label_smoothing=float("nan")),
    case("minus-inf-smoothing", X, T(0, 2, 1, 1), None, label_smoothing=float("-inf")),
    case("smoothing-1", X, T(0, 2, 1, 1), None, label_smoothing=1.0),
    case("negative-weights", X, T(0, 2, 1, 1), None, weight=np.array([-1.0, 2.0, 0.5])),
    case("negative-weights-smoothing", X, T(0, 2, 1, 1), None,
         weight=np.array([-1.0, 2.0, 0.5]), label_smoothing=0.3),
    case("negative-weights-prob", X, P, None, weight=np.array([-1.0, 2.0, 0.5])),
    case("zero-weights", X, T(0, 2, 1, 1), None, weight=np.zeros(3)),
    case("1d-input-target-of-shape-1", X[0], T(1), None),
    case("1d-input-target-of-shape-1-weight", X[0], T(1), None, weight=W),
    case("1d-input-target-of-shape-1-ignored", X[0], T(-100), None),
    case("prob-not-summing-to-1", X, P * 3, None),
    case("prob-negative-entries", X, P - 0.4, None, weight=W, label_smoothing=0.2),
    case("prob-ignore-index-minus-1", X, P, None, ignore_index=-1),
    case("prob-ignore-index-minus-5", X, P, None, ignore_index=-5, weight=W),
    case("uint8-ignore-index-255", X, T(0, 255, 2, 1, dtype=np.uint8), None, ignore_index=255),
    case("uint8-ignore-index-class", X, T(0, 2, 1, 1, dtype=np.uint8), None, ignore_index=1),
    case("ignore-index-past-classes", X, T(0, 7, 1, 7), None, ignore_index=7),
    case("unbatched-0d-uint8", X[0], np.array(2, dtype=np.uint8), None, weight=W),
    case("zero-classes-all-ignored", zeros(4, 0), T(-100, -100, -100, -100), None),
    # eps / C with C = 0 is inf in torch's C++: NaN smoothing terms, no error
    case("zero-classes-all-ignored-smoothing", zeros(4, 0), T(-100, -100, -100, -100), None,
         label_smoothing=0.1),
    case("zero-classes-prob-smoothing", zeros(4, 0), zeros(4, 0), None, label_smoothing=0.1),
    case("zero-classes-empty-smoothing", zeros(0, 0), T(), None, label_smoothing=0.1),
    case("zero-classes-all-ignored-smoothing-weight", zeros(4, 0), T(-100, -100, -100, -100),
         None, label_smoothing=0.1, weight=zeros(0)),
    case("ignore-index-numpy-int", X, T(0, 1, 2, 1), None, ignore_index=np.int64(2)),
    case("ignore-index-0d-array", X, T(0, 1, 2, 1), None, ignore_index=np.array(1)),
    case("smoothing-numpy-bool", X, T(0, 1, 2, 1), None, label_smoothing=np.bool_(True)),
    # an infinite weight on a row's top class: -inf log-probability terms, not 0 * inf
    case("inf-weight-smoothing", X, T(0, 1, 2, 1), None, label_smoothing=0.2,
         weight=np.array([1.0, np.inf, 0.5])),
    case("inf-weight-smoothing-float32", X.astype(np.float32), T(0, 1, 2, 1), None,
         label_smoothing=0.2, weight=np.array([1.0, np.inf, 0.5], np.float32)),
    # K-dim input with no classes: an empty class axis over a real spatial extent
    case("zero-classes-kdim-prob", zeros(2, 0, 4), zeros(2, 0, 4), None),
    case("zero-classes-4d-all-ignored", zeros(2, 0, 3, 4), np.full((2, 3, 4), -100), None),
    # half lp * half q rounds to half before a wider weight multiplies it
    case("prob-half-target-float32-weight", X.astype(np.float16), P.astype(np.float16), None,
         weight=W.astype(np.float32)),
    case("smoothing-int-and-numpy", X, T(0, 1, 2, 1), None, label_smoothing=1),
    case("smoothing-numpy-float32", X, T(0, 1, 2, 1), None,
         label_smoothing=np.float32(0.25)),
    # a probability target promotes with the weight too: no dtype check on that path
    case("prob-weight-float64-for-float32", X.astype(np.float32), P.astype(np.float32), None,
         weight=W),
    case("prob-weight-float32-for-float64", X, P, None, weight=W.astype(np.float32)),
    case("prob-weight-float16-for-float32", X.astype(np.float32), P.astype(np.float32), None,
         weight=W.astype(np.float16)),
    case("prob-weight-float32-for-float16", X.astype(np.float16), P.astype(np.float16), None,
         weight=W.astype(np.float32)),
    case("prob-weight-int64", X.astype(np.float32), P.astype(np.float32), None,
         weight=np.array([1, 2, 3])),
    case("prob-target-float64-for-float32", X.astype(np.float32), P, None),
    case("prob-target-float32-for-float16", X.astype(np.float16), P.astype(np.float32), None,
         weight=W.astype(np.float16)),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("c", ACCEPTED)
def test_accepted_like_torch(c: Case, reduction: str) -> None:
    kwargs = {**c.kwargs, "reduction": reduction}
    want = torch_ce(c.x, c.t, **kwargs)
    before = frozen(c.x, c.t, kwargs.get("weight"))
    got = cross_entropy(c.x, c.t, **kwargs)
    assert_unchanged(before, c.x, c.t, kwargs.get("weight"))
    dtypes = [np.dtype(a.dtype) for a in (c.x, c.t, kwargs.get("weight"))
              if a is not None and a.dtype.kind == "f"]
    rtol, atol = TOLERANCES[min(dtypes, key=lambda d: d.itemsize)]
    assert_close(got, want, rtol=rtol, atol=atol, what=c.id)


def test_negative_and_nan_smoothing_mean_no_smoothing() -> None:
    for eps in (-0.5, float("nan"), float("-inf")):
        for t in (T(0, 2, -100, 1), P):
            assert np.array_equal(cross_entropy(X, t, label_smoothing=eps),
                                  cross_entropy(X, t))


def test_elementwise_mean_is_mean_with_torchs_warning() -> None:
    with pytest.warns(UserWarning, match="elementwise_mean' is deprecated") as ours:
        got = cross_entropy(X, T(0, 2, 1, 1), reduction="elementwise_mean")
    with pytest.warns(UserWarning) as theirs:
        want = torch_ce(X, T(0, 2, 1, 1), reduction="elementwise_mean")
    assert str(ours[0].message) == str(theirs[0].message)
    assert got == want.item() and got == cross_entropy(X, T(0, 2, 1, 1))


def test_refusals_are_catchable_as_builtins() -> None:
    """Every refusal is a CeLossError; callers can catch torch's builtin class."""
    cases: list[tuple[Callable[[], Any], type[BaseException]]] = [
        (lambda: cross_entropy(X, T(0, 3, 1, 2)), IndexError),
        (lambda: cross_entropy(X, T(0, 1, 2)), ValueError),
        (lambda: cross_entropy(X, T(0, 1, 2, 1), reduction="avg"), ValueError),
        (lambda: cross_entropy(X, T(0, 1, 2, 1), label_smoothing=1.5), ValueError),
    ]
    for call, builtin in cases:
        with pytest.raises(builtin) as exc:
            call()
        assert isinstance(exc.value, CeLossError)
