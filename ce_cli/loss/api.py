"""The library's entry points: :func:`cross_entropy` as torch computes it, in NumPy.

:func:`cross_entropy` feeds a whole array through
:class:`~ce_cli.loss.LossAccumulator` chunk by chunk (:func:`evaluate` also returns
the totals behind the number); the command line feeds the same accumulator with the
blocks it reads. K-dim inputs are read in place as class-first planes, never copied
whole.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import DTypeError, OptionError
from ..names import INT64_MAX, INT64_MIN, torch_dtype_name
from .half import bfloat16_to_float32, round_bfloat16
from .kernel import LossAccumulator, LossResult
from .kinds import normalise
from .spec import LossSpec, _check_targets, make_spec, validate_options


def loss_shape(input_shape: tuple[int, ...], target_shape: tuple[int, ...],
               spec: LossSpec) -> tuple[int, ...]:
    """Shape of torch's ``reduction='none'`` result."""
    if len(input_shape) == 1:
        return ()
    if spec.target_kind == "probs":
        return (input_shape[0],) + tuple(input_shape[2:])
    return tuple(target_shape)


def evaluate(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    input_kind: str = "logits",
    keep_losses: bool | None = None,
    threads: int | None = None,
) -> LossResult:
    """:func:`cross_entropy` with the totals behind the number (for the CLI and audits).

    ``threads``: how many threads share the blocks (default :func:`default_threads`,
    i.e. ``CE_LOSS_THREADS`` or the CPU count); the result does not depend on it.
    """
    x = np.asarray(input)
    t = np.asarray(target)
    # ml_dtypes' bfloat16 logits: held in float32, with torch's bfloat16 roundings
    bfloat16 = _is_bfloat16(x)
    soft_bfloat16 = bfloat16 and _is_bfloat16(t)
    w = None if weight is None else np.asarray(weight)
    if bfloat16:
        x = _bfloat16_values(x)
        t = _bfloat16_values(t) if soft_bfloat16 else t
        weight = _bfloat16_values(w) if w is not None and _is_bfloat16(w) else weight
    spec = make_spec(x.shape, x.dtype, t.shape, t.dtype, weight, ignore_index, reduction,
                     label_smoothing, input_kind)
    if bfloat16 and w is not None and not _is_bfloat16(w) and spec.target_kind == "index":
        raise DTypeError(  # torch needs the weight in the logits' dtype (for class indices)
            f"expected scalar type BFloat16 but found {torch_dtype_name(w.dtype.name)}; "
            "weight must have the logits' dtype (use weight.astype(ml_dtypes.bfloat16))")
    if bfloat16:
        spec = replace(spec, bfloat16=True)
    # a bfloat16 result: class indices, or bfloat16 probabilities (others promote it)
    bfloat16 = bfloat16 and (spec.target_kind == "index" or soft_bfloat16)
    may_ignore = True
    if spec.target_kind == "index":
        # torch names the first offending target in memory order before computing.
        may_ignore = _check_targets(t.reshape(-1), spec)
        if (t.dtype == np.uint8 and spec.weight is not None and spec.smoothing
                and reduction == "mean" and (t.reshape(-1) != spec.ignore_index).any()):
            # torch 2.13 gathers the weights of the counted uint8 targets and refuses
            raise DTypeError(
                "gather(): Expected dtype int32/int64 for index; with weight, label "
                "smoothing and the mean, the targets must be int64 (use .astype(np.int64))"
            )
    keep = reduction == "none" if keep_losses is None else keep_losses
    acc = LossAccumulator(spec, keep_losses=keep, threads=threads)
    acc._feed(x, t, may_ignore)
    result = acc.finalize(reduction)
    if bfloat16:  # the result in the input's own dtype, as torch's
        result.loss = round_bfloat16(result.loss).astype(np.asarray(input).dtype)
        if result.losses is not None:
            result.losses = round_bfloat16(result.losses).astype(np.asarray(input).dtype)
    if result.losses is not None:
        result.losses = result.losses.reshape(loss_shape(x.shape, t.shape, spec))
        if reduction == "none":
            result.loss = result.losses
    return result


def _is_bfloat16(a: np.ndarray) -> bool:
    """Whether ``a`` holds ml_dtypes' bfloat16 (NumPy has no bfloat16 of its own)."""
    return a.dtype.name == "bfloat16" and a.dtype.itemsize == 2


def _bfloat16_values(a: np.ndarray) -> np.ndarray:
    """ml_dtypes' bfloat16 array as float32, exactly."""
    return bfloat16_to_float32(np.ascontiguousarray(a).view(np.uint16))


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""Cross-entropy of logits against class indices or class probabilities.

    Mirrors ``torch.nn.functional.cross_entropy`` (torch 2.13) on NumPy arrays, value
    for value: ``l_n = -w[y_n] * log_softmax(x_n)[y_n]``, reduced as torch reduces it.

    Args:
        input: logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; float16,
            float32 or float64, or ml_dtypes' bfloat16 (torch's bfloat16 arithmetic:
            to the bit against class indices; bfloat16 probability targets' products
            and sums are not rounded). The class axis is 1 (0 for 1-D input).
        target: class indices, int64 or uint8, shape ``()``, ``(N,)`` or
            ``(N, d1, ..., dk)``; or class probabilities, float, of ``input``'s shape.
            As in torch, the kind is decided by shape alone.
        weight: optional rescaling weight per class, shape ``(C,)``, of ``input``'s
            dtype. Default: ``None``.
        ignore_index: a target value that is ignored and does not count towards the
            mean's denominator (index targets only). Default: ``-100``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. ``'mean'`` divides by the sum
            of ``weight[target]`` over counted targets (their count without weight);
            NaN when nothing is counted. Default: ``'mean'``.
        label_smoothing: amount of smoothing in ``[0.0, 1.0]``; the target becomes a
            mix of itself and the uniform distribution. Default: ``0.0``.

    Returns:
        A 0-d array for ``'mean'`` and ``'sum'``; for ``'none'`` an array of the
        index target's shape (``input``'s shape without the class axis). The dtype is
        ``input``'s (promoted with a float probability target's).

    Raises:
        ValueError, TypeError, IndexError: where torch refuses the same call (as
        :class:`~ce_cli.errors.CeLossError` subclasses), e.g. ``Target 3 is out of
        bounds.``

    Shape:
        - Input: :math:`(C)`, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        - Target: :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)` with values in
          :math:`[0, C)`; or the input's shape for probabilities.
        - Output: scalar, or the target's shape for ``reduction='none'``.

    Examples:
        >>> x = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
        >>> cross_entropy(x, np.array([0, 2]))  # doctest: +ELLIPSIS
        array(0.836...)
        >>> cross_entropy(x, np.array([0, 2]), reduction="none")  # doctest: +ELLIPSIS
        array([1.464..., 0.209...])
        >>> cross_entropy(x, np.array([0, -100]))  # the ignored row does not count
        ... # doctest: +ELLIPSIS
        array(1.464...)
        >>> p = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
        >>> cross_entropy(x, p, label_smoothing=0.1)  # doctest: +ELLIPSIS
        array(1.514...)
    """
    reduction, ignore_index, label_smoothing = _arguments(reduction, ignore_index,
                                                          label_smoothing)
    return evaluate(input, target, weight, ignore_index, reduction, label_smoothing).loss


def _arguments(reduction: Any, ignore_index: Any, label_smoothing: Any
               ) -> tuple[str, int, float]:
    """The scalar arguments as torch's Python layer and argument parser take them:
    ``'elementwise_mean'`` is ``'mean'`` with a warning; ``ignore_index`` an integer
    (not a bool, not a float) within int64; ``label_smoothing`` a real number."""
    if isinstance(reduction, str) and reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use "
                      "reduction='mean' instead.", UserWarning, stacklevel=3)
        reduction = "mean"
    validate_options(reduction, 0.0)
    try:
        if isinstance(ignore_index, (bool, np.bool_)) or np.asarray(ignore_index).dtype == bool:
            raise TypeError
        index = operator.index(ignore_index)  # ints, NumPy integers and 0-d int arrays
    except TypeError:
        raise DTypeError(f"argument 'ignore_index' must be int, not "
                         f"{type(ignore_index).__name__}") from None
    if not INT64_MIN <= index <= INT64_MAX:
        raise OptionError(f"Overflow when unpacking long long: ignore_index {ignore_index} "
                          "is outside int64")
    if not isinstance(label_smoothing, (int, float, np.integer, np.floating, np.bool_)):
        raise DTypeError(f"argument 'label_smoothing' must be float, not "
                         f"{type(label_smoothing).__name__}")
    return reduction, index, float(label_smoothing)




def softmax(x: np.ndarray, input_kind: str = "logits") -> np.ndarray:
    """Class probabilities of ``(m, C)`` rows as the loss sees them (for display)."""
    with np.errstate(all="ignore"):
        return normalise(x.astype(np.float64), input_kind, log=False).values
