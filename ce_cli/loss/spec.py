"""The loss's options and layout, checked in torch's order: :class:`LossSpec`.

:func:`make_spec` raises torch's refusals for shapes, dtypes and options (as
:class:`~ce_cli.errors.CeLossError` subclasses, with a hint where one helps);
:func:`_check_targets` raises its refusal for a target value out of range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DTypeError, OptionError, ShapeError, TargetError
from ..names import INPUT_KINDS, REDUCTIONS, torch_dtype_name

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _torch_name(dtype: np.dtype[Any]) -> str:
    return torch_dtype_name(dtype.name)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class LossSpec:
    """Everything about a loss except the data: validated options and the layout.

    ``target_kind`` is ``"index"`` or ``"probs"`` (torch decides by shape alone).
    ``dtype`` is the dtype of the result; ``input_dtype`` the dtype the
    log-probabilities are computed in (they differ only for promoted prob targets).
    """

    n_classes: int
    target_kind: str
    input_dtype: np.dtype[Any]
    dtype: np.dtype[Any]
    weight: np.ndarray | None = None
    ignore_index: int = -100
    label_smoothing: float = 0.0
    input_kind: str = "logits"
    #: the class axis is the input's last ((C,) or (N, C)); torch's half log_softmax
    #: rounds differently there (see ``_half_lse``)
    class_last: bool = True
    #: the logits were bfloat16 (computed in float32): torch's bfloat16 nll sums are
    #: emulated (each loss and each partial sum rounded to bfloat16, see HalfCascade)
    bfloat16: bool = False

    @property
    def smoothing(self) -> bool:
        # torch: only eps > 0 takes the smoothing branch; negative or NaN eps is 0.
        return self.label_smoothing > 0.0


def validate_options(reduction: str, label_smoothing: float, input_kind: str = "logits") -> None:
    if reduction not in REDUCTIONS:
        raise OptionError(
            f"{reduction} is not a valid value for reduction; use one of mean, sum, none"
        )
    if input_kind not in INPUT_KINDS:
        raise OptionError(
            f"{input_kind} is not a valid input kind; use one of {', '.join(INPUT_KINDS)}"
        )
    _check_smoothing(label_smoothing)


def _check_smoothing(label_smoothing: float) -> None:
    if label_smoothing > 0.0 and not label_smoothing <= 1.0:
        raise OptionError(
            f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}"
        )


def make_spec(
    input_shape: tuple[int, ...],
    input_dtype: np.dtype[Any],
    target_shape: tuple[int, ...],
    target_dtype: np.dtype[Any],
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    input_kind: str = "logits",
) -> LossSpec:
    """Check shapes, dtypes and options in torch's order; return the :class:`LossSpec`.

    Raises the same refusals as torch, as :class:`~ce_cli.errors.CeLossError`
    subclasses. Target *values* are checked per block by the accumulator.
    """
    validate_options(reduction, 0.0, input_kind)
    if tuple(target_shape) != tuple(input_shape):
        _check_smoothing(label_smoothing)  # torch checks it first for class indices
    input_dtype = np.dtype(input_dtype)
    target_dtype = np.dtype(target_dtype)
    ndim = len(input_shape)
    if ndim == 0:
        raise ShapeError(
            "Expected 1 or more dimensions (got 0); logits need a class axis, "
            "shape (C,), (N, C) or (N, C, d1, ..., dk)"
        )
    if input_dtype not in FLOAT_DTYPES:
        raise DTypeError(
            f"cross_entropy not implemented for '{_torch_name(input_dtype)}': logits must be "
            f"float16, float32 or float64, got {input_dtype.name}; "
            "cast them with .astype(np.float32)"
        )
    n_classes = input_shape[0] if ndim == 1 else input_shape[1]
    w = None if weight is None else np.asarray(weight)
    weight_shape_ok = w is None or (w.ndim == 1 and w.shape[0] == n_classes)
    weight_message = (
        f"weight tensor should be defined either for all {n_classes} classes or no classes "
        f"but got weight tensor of shape: {_shape(w.shape) if w is not None else '[]'}"
    )

    if tuple(target_shape) == tuple(input_shape):
        # torch: same shape means class probabilities, whatever the dtype.
        if target_dtype not in FLOAT_DTYPES:
            raise DTypeError(
                "Expected floating point type for target with class probabilities, got "
                f"{_torch_name(target_dtype)}; class-index targets have the logits' shape "
                "without the class axis"
            )
        if ignore_index >= 0:
            raise OptionError("ignore_index is not supported for floating point target")
        if not weight_shape_ok:
            raise ShapeError("cross_entropy: " + weight_message)
        _check_smoothing(label_smoothing)  # ... and last for probabilities
        dtypes = [input_dtype, target_dtype]
        if w is not None and w.dtype.kind in "fc":  # torch: an integer weight never promotes
            dtypes.append(w.dtype)
        result_dtype = np.result_type(*dtypes)
        if result_dtype not in FLOAT_DTYPES:
            raise DTypeError(f"weight dtype {w.dtype.name if w is not None else ''} not supported")
        return LossSpec(
            n_classes=n_classes,
            target_kind="probs",
            input_dtype=input_dtype,
            dtype=np.dtype(result_dtype),
            weight=None if w is None else w.astype(result_dtype),
            ignore_index=int(ignore_index),
            label_smoothing=float(label_smoothing),
            input_kind=input_kind,
            class_last=ndim <= 2,
        )

    # Class-index targets: checks in the order nll_loss_nd makes them.
    if ndim != 1:
        batch = target_shape[0] if len(target_shape) else 0
        if input_shape[0] != batch:
            raise ShapeError(
                f"Expected input batch_size ({input_shape[0]}) to match target batch_size "
                f"({batch}).{_transpose_hint(input_shape, target_shape)}"
            )
    if ndim == 1:
        if len(target_shape) > 1:
            raise ShapeError(
                "0D or 1D target tensor expected, multi-target not supported; got target "
                f"shape {_shape(target_shape)} for logits {_shape(input_shape)} (one sample: "
                "pass a single class index)"
            )
        if len(target_shape) == 1 and target_shape[0] != 1:
            size = math.prod(target_shape)
            raise ShapeError(
                f"For 1D input, 1D target must have size 1, but got target size: {size}; "
                "a batch of logits has shape (N, C)"
            )
    elif ndim == 2:
        if len(target_shape) != 1:
            raise ShapeError(
                "0D or 1D target tensor expected, multi-target not supported; got target "
                f"shape {_shape(target_shape)} for logits {_shape(input_shape)}"
                + _multi_target_hint(input_shape, target_shape)
            )
    elif ndim == 4:
        if len(target_shape) != 3:
            raise ShapeError(
                "only batches of spatial targets supported (3D tensors) but got targets of "
                f"dimension: {len(target_shape)}"
            )
        if tuple(target_shape[1:]) != tuple(input_shape[2:]):
            raise ShapeError(
                f"size mismatch (got input: {_shape(input_shape)} , target: "
                f"{_shape(target_shape)}"
                + _transpose_hint(input_shape, target_shape)
            )
    else:
        if tuple(target_shape[1:]) != tuple(input_shape[2:]):
            want = (input_shape[0],) + tuple(input_shape[2:])
            raise ShapeError(
                f"Expected target size {_shape(want)}, got {_shape(target_shape)}"
                + _transpose_hint(input_shape, target_shape)
            )
    if not weight_shape_ok:
        raise ShapeError(weight_message)
    spatial = math.prod(input_shape[2:])
    if ndim == 3 or ndim >= 5:
        if n_classes == 0 and input_shape[0] and spatial:
            # torch views the input as (N, C, 1, -1), which C = 0 turns into (N, 0, 0, 0)
            raise ShapeError(
                f"size mismatch (got input: [{input_shape[0]}, 0, 0, 0] , target: "
                f"[{input_shape[0]}, 1, {spatial}]; logits with no classes hold no scores"
            )
    if target_dtype not in (np.dtype(np.int64), np.dtype(np.uint8)):
        raise DTypeError(
            "expected target dtype to be Long or Byte, but got "
            f"{_torch_name(target_dtype)}; class-index targets must be int64 or uint8 "
            "(use .astype(np.int64))"
        )
    if target_dtype == np.uint8:
        # torch 2.13 takes uint8 indices only on some paths; mirror where it refuses them
        # (measured: K-dim refuses for 'none', and for mean/sum once the input is not
        # empty; the weighted smoothed mean's gather: see evaluate, it depends on values)
        empty_input = math.prod(input_shape) == 0
        if ndim >= 3 and (reduction == "none" or not empty_input):
            raise DTypeError(
                "expected scalar type Long but found Byte; class-index targets of K-dim "
                "logits must be int64 (use .astype(np.int64))"
            )
    if w is not None and w.dtype != input_dtype:
        raise DTypeError(
            f"expected scalar type {_torch_name(input_dtype)} but found "
            f"{_torch_name(w.dtype)}; weight must have the logits' dtype "
            f"(use weight.astype(np.{input_dtype.name}))"
        )
    return LossSpec(
        n_classes=n_classes,
        target_kind="index",
        input_dtype=input_dtype,
        dtype=input_dtype,
        weight=w,
        ignore_index=int(ignore_index),
        label_smoothing=float(label_smoothing),
        input_kind=input_kind,
        class_last=ndim <= 2,
    )


def _transpose_hint(input_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> str:
    """Name the class axis when the targets fit the logits without their *last* axis."""
    if len(input_shape) >= 2 and tuple(target_shape) == tuple(input_shape[:-1]):
        return (
            f"; the targets match the logits without their last axis, so the classes "
            f"({input_shape[-1]}) are probably last: move them to axis 1 "
            "(np.moveaxis(x, -1, 1))"
        )
    return ""


def _multi_target_hint(input_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> str:
    if len(target_shape) == 2 and target_shape[0] == input_shape[0] and target_shape[1] == 1:
        return "; flatten the targets to shape (N,) (target.reshape(-1))"
    return ""



def _check_targets(t: np.ndarray, spec: LossSpec) -> bool:
    """Raise torch's error for the first target outside ``[0, C)`` that is not ignored.

    Returns whether any target may equal ``ignore_index`` (else the kernel skips the
    per-row test).
    """
    if t.size == 0:
        return False
    lo, hi = int(t.min()), int(t.max())
    may_ignore = lo <= spec.ignore_index <= hi
    if lo >= 0 and hi < spec.n_classes:
        return may_ignore
    t64 = t.astype(np.int64, copy=False)
    bad = (t64 != spec.ignore_index) & ((t64 < 0) | (t64 >= spec.n_classes))
    if bad.any():
        raise _out_of_bounds(t64, bad, spec)
    return may_ignore


def _out_of_bounds(t: np.ndarray, bad: np.ndarray, spec: LossSpec) -> TargetError:
    value = int(t[np.flatnonzero(bad)[0]])
    return TargetError(
        f"Target {value} is out of bounds. Class indices must lie in [0, {spec.n_classes}) "
        f"or equal ignore_index ({spec.ignore_index})", n_classes=spec.n_classes
    )
