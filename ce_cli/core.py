"""Cross-entropy exactly as ``torch.nn.functional.cross_entropy`` computes it, in NumPy.

Pure NumPy: no I/O, no click, no rich. One kernel serves every caller:
:func:`cross_entropy` feeds a whole array through :class:`LossAccumulator` block by
block, and the command line feeds the same accumulator with the blocks it reads.
A block is always 2-D with the class axis last, ``(m, C)``; K-dim inputs are
re-laid out one cache-sized block at a time, never as a whole.

Semantics follow torch 2.13 (``aten/src/ATen/native/LossNLL.cpp``); the comments
say where a line copies one of its quirks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DTypeError, OptionError, ShapeError, TargetError

REDUCTIONS = ("mean", "sum", "none")
INPUT_KINDS = ("logits", "probs", "log-probs")
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

#: Elements per block: 256K-1M fit this machine's caches best (issue 5).
BLOCK_ELEMENTS = 1 << 18

_TORCH_DTYPE_NAMES = {
    "float16": "Half",
    "float32": "Float",
    "float64": "Double",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}


def _torch_name(dtype: np.dtype[Any]) -> str:
    return _TORCH_DTYPE_NAMES.get(dtype.name, dtype.name)


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
    validate_options(reduction, label_smoothing, input_kind)
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
        dtypes = [input_dtype, target_dtype]
        if w is not None:
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
        if len(target_shape) > 1 or (len(target_shape) == 1 and target_shape[0] != 1):
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
    if target_dtype not in (np.dtype(np.int64), np.dtype(np.uint8)):
        raise DTypeError(
            "expected target dtype to be Long or Byte, but got "
            f"{_torch_name(target_dtype)}; class-index targets must be int64 or uint8 "
            "(use .astype(np.int64))"
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


@dataclass
class LossTotals:
    """Sums of one pass, kept in float64 so blocks and shards merge without loss.

    The smoothed mean needs its two terms apart (torch divides each by the
    denominator separately), so ``nll`` and ``smooth`` are never added here.
    """

    positions: int = 0  # loss positions seen (N * d1 * ... * dk)
    counted: int = 0  # not ignored
    ignored: int = 0
    nll: float = 0.0  # index: sum of w[t] * -lp[t]; probs: sum of -sum_c w q lp
    smooth: float = 0.0  # index: sum of -sum_c w[c] lp[c] over counted positions
    denominator: float = 0.0  # index: sum of w[t] over counted positions
    nonfinite: int = 0  # counted positions whose loss is NaN or inf

    def merge(self, other: LossTotals) -> LossTotals:
        return LossTotals(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )


@dataclass
class LossResult:
    """The finished loss: torch's value for the chosen reduction, and what it came from."""

    loss: np.ndarray
    reduction: str
    spec: LossSpec
    totals: LossTotals
    losses: np.ndarray | None = None  # per-position losses, when kept

    @property
    def n_classes(self) -> int:
        return self.spec.n_classes


class LossAccumulator:
    """Feed ``(m, C)`` blocks of logits with their targets; read torch's loss at the end.

    >>> acc = LossAccumulator(make_spec((4, 3), np.float64, (4,), np.int64))
    >>> x = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0], [1.5, 1.5, -2.0]])
    >>> _ = acc.update(x[:2], np.array([0, 2]))
    >>> _ = acc.update(x[2:], np.array([-100, 1]))
    >>> round(float(acc.finalize("mean").loss), 5)
    0.79384
    """

    def __init__(self, spec: LossSpec, *, keep_losses: bool = False) -> None:
        self.spec = spec
        self.totals = LossTotals()
        self.keep_losses = keep_losses
        self._parts: list[np.ndarray] = []

    def update(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one block; return its per-position losses (torch's ``none``) in ``spec.dtype``."""
        spec = self.spec
        with np.errstate(all="ignore"):
            if spec.target_kind == "index":
                losses = self._update_index(x, np.asarray(target))
            else:
                losses = self._update_probs(x, np.asarray(target))
        if self.keep_losses:
            self._parts.append(losses)
        return losses

    # -- the kernel -------------------------------------------------------------------------

    def _log_probs_at(self, x: np.ndarray, rows: np.ndarray, cols: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """log_softmax gathered at ``(rows, cols)``, plus the row shift and log-sum-exp.

        For ``input_kind='logits'`` the shift is the row max, so 1e30-sized logits stay
        exact; a row with +inf or NaN, or all -inf, gives NaN as in torch.
        """
        picked = x[rows, cols]
        kind = self.spec.input_kind
        if kind == "log-probs":
            return picked, None, None
        if kind == "probs":
            return np.log(picked), None, None
        shift = x.max(axis=1)
        lse = np.log(np.exp(x - shift[:, None]).sum(axis=1))
        return (picked - shift) - lse, shift, lse

    def _full_log_probs(self, x: np.ndarray) -> np.ndarray:
        kind = self.spec.input_kind
        if kind == "log-probs" or x.shape[1] == 0:  # C = 0: nothing to normalise
            return x
        if kind == "probs":
            return np.log(x)
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _compute_dtype(self) -> np.dtype[Any]:
        # torch's CPU log_softmax accumulates half in float and rounds the result to half.
        dt = self.spec.input_dtype
        return np.dtype(np.float32) if dt == np.float16 else dt

    def _update_index(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        spec = self.spec
        dt = spec.input_dtype
        m = target.shape[0]
        t = target.astype(np.int64, copy=False)
        ignored = t == spec.ignore_index
        bad = ~ignored & ((t < 0) | (t >= spec.n_classes))
        if bad.any():
            raise _out_of_bounds(t, bad, spec)
        safe_t = np.where(ignored, 0, t)
        rows = np.arange(m)
        xc = x.astype(self._compute_dtype(), copy=False)
        if spec.n_classes == 0:  # every target was ignored, or we raised above
            lp_t, shift, lse = np.zeros(m, xc.dtype), None, None
        else:
            lp_t, shift, lse = self._log_probs_at(xc, rows, safe_t)
        lp_t = lp_t.astype(dt, copy=False)
        if spec.weight is None:
            w_t = None
            nll = -lp_t
            den_part = float(m - int(ignored.sum()))
        else:
            w_t = spec.weight[safe_t]
            nll = -lp_t * w_t
            den_part = float(np.where(ignored, 0, w_t).astype(np.float64).sum())
        nll = np.where(ignored, dt.type(0), nll)
        tot = self.totals
        tot.positions += m
        n_ignored = int(ignored.sum())
        tot.ignored += n_ignored
        tot.counted += m - n_ignored
        tot.denominator += den_part
        tot.nll += float(nll.astype(np.float64).sum())
        if spec.smoothing:
            smooth = self._smooth_term(xc, shift, lse).astype(dt, copy=False)
            smooth = np.where(ignored, dt.type(0), smooth)
            tot.smooth += float(smooth.astype(np.float64).sum())
            eps = spec.label_smoothing
            losses = dt.type(1.0 - eps) * nll + smooth * dt.type(eps / spec.n_classes)
        else:
            losses = nll
        tot.nonfinite += int((~np.isfinite(losses) & ~ignored).sum())
        return losses

    def _smooth_term(self, x: np.ndarray, shift: np.ndarray | None, lse: np.ndarray | None
                     ) -> np.ndarray:
        """``-sum_c w[c] * lp[c]`` per row, without building the full log_softmax.

        sum_c w_c (x_c - shift - lse) = sum_c w_c x_c - (shift + lse) sum_c w_c: with
        non-negative weights both parts have the result's sign, so nothing cancels.
        """
        w = self.spec.weight
        if shift is None or lse is None:
            lp = self._full_log_probs(x)
            return -(lp.sum(axis=1) if w is None else (lp * w).sum(axis=1))
        sx = x - shift[:, None]
        if w is None:
            return -(sx.sum(axis=1) - lse * x.shape[1])
        wc = w.astype(x.dtype, copy=False)
        return -((sx * wc).sum(axis=1) - lse * wc.sum(dtype=x.dtype))

    def _update_probs(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        spec = self.spec
        dt = spec.dtype
        lp = self._full_log_probs(x.astype(self._compute_dtype(), copy=False))
        lp = lp.astype(spec.input_dtype, copy=False).astype(dt, copy=False)
        q = target
        if spec.smoothing:
            # torch smooths the target in its own dtype, then promotes (a float16 target
            # rounds eps/C to half precision)
            eps = spec.label_smoothing
            qt = q.dtype.type
            q = q * qt(1.0 - eps) + qt(eps / spec.n_classes)
        q = q.astype(dt, copy=False)
        prod = lp * q
        if spec.weight is not None:
            prod = prod * spec.weight
        s = prod.sum(axis=1)
        tot = self.totals
        m = x.shape[0]
        tot.positions += m
        tot.counted += m
        tot.nll += float(s.astype(np.float64).sum())
        losses = -s
        tot.nonfinite += int((~np.isfinite(losses)).sum())
        return losses

    # -- the reduction ----------------------------------------------------------------------

    def finalize(self, reduction: str = "mean") -> LossResult:
        """torch's result for ``reduction`` from the totals (and kept per-position losses)."""
        spec = self.spec
        dt = spec.dtype
        tot = self.totals
        losses = None
        if self.keep_losses:
            losses = (np.concatenate(self._parts) if self._parts
                      else np.zeros(0, dtype=dt)).astype(dt, copy=False)
        with np.errstate(all="ignore"):
            if reduction == "none":
                if losses is None:
                    raise ValueError("reduction 'none' needs keep_losses=True")
                loss = losses
            elif spec.target_kind == "probs":
                total = -dt.type(tot.nll)  # torch: -(...).sum(), so an empty sum is -0.0
                if reduction == "sum":
                    loss = np.asarray(total, dtype=dt)
                elif tot.positions == 0 or spec.n_classes == 0:
                    loss = np.asarray(np.nan, dtype=dt)  # torch: numel() == 0 gives NaN
                else:
                    loss = np.asarray(np.float64(total) / tot.positions).astype(dt)
            else:
                loss = np.asarray(self._index_reduce(reduction), dtype=dt)
        return LossResult(loss=loss, reduction=reduction, spec=spec, totals=tot, losses=losses)

    def _index_reduce(self, reduction: str) -> Any:
        spec, tot, dt = self.spec, self.totals, self.spec.dtype
        nll = dt.type(tot.nll)
        smooth = dt.type(tot.smooth)
        if reduction == "mean":
            # torch: 0/0 is NaN on purpose when every target is ignored (LossNLL.cpp).
            den = dt.type(tot.denominator)
            nll = nll / den
            smooth = smooth / den
        if not spec.smoothing:
            return nll
        # torch adds two separately reduced terms; (1-eps)*nll is kept even at eps=1.
        eps = spec.label_smoothing
        return dt.type(1.0 - eps) * nll + smooth * dt.type(eps / spec.n_classes)


def _out_of_bounds(t: np.ndarray, bad: np.ndarray, spec: LossSpec) -> TargetError:
    value = int(t[np.flatnonzero(bad)[0]])
    return TargetError(
        f"Target {value} is out of bounds. Class indices must lie in [0, {spec.n_classes}) "
        f"or equal ignore_index ({spec.ignore_index})"
    )


# -- walking arrays in blocks -------------------------------------------------------------------


def iter_blocks(x: np.ndarray, target: np.ndarray, target_kind: str,
                block_elements: int = BLOCK_ELEMENTS
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(m, C)`` logits blocks (class axis last) with their targets, in torch's order.

    ``(N, C, d1..dk)`` inputs are moved to class-last one block at a time, so a K-dim
    array is never copied whole. Positions come out in the C order of the target.
    """
    if x.ndim == 1:
        yield x[None, :], target.reshape(1, -1) if target_kind == "probs" else target.reshape(1)
        return
    n, c = x.shape[0], x.shape[1]
    spatial = math.prod(x.shape[2:])
    probs = target_kind == "probs"
    if x.ndim == 2:
        rows = max(1, block_elements // max(c, 1))
        for start in range(0, n, rows):
            yield x[start:start + rows], target[start:start + rows]
        return
    x3 = x.reshape(n, c, spatial)
    t3 = target.reshape(n, c, spatial) if probs else target.reshape(n, spatial)
    per_sample = c * spatial
    if per_sample <= block_elements:
        group = max(1, block_elements // max(per_sample, 1))
        for start in range(0, n, group):
            xb = x3[start:start + group].transpose(0, 2, 1).reshape(-1, c)
            if probs:
                tb = t3[start:start + group].transpose(0, 2, 1).reshape(-1, c)
            else:
                tb = t3[start:start + group].reshape(-1)
            yield xb, tb
        return
    step = max(1, block_elements // max(c, 1))
    for i in range(n):
        for s in range(0, spatial, step):
            xb = x3[i, :, s:s + step].T
            tb = t3[i, :, s:s + step].T if probs else t3[i, s:s + step]
            yield np.ascontiguousarray(xb), tb


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
) -> LossResult:
    """:func:`cross_entropy` with the totals behind the number (for the CLI and audits)."""
    x = np.asarray(input)
    t = np.asarray(target)
    spec = make_spec(x.shape, x.dtype, t.shape, t.dtype, weight, ignore_index, reduction,
                     label_smoothing, input_kind)
    if spec.target_kind == "index" and t.size:
        # torch names the first offending target in memory order before computing.
        t64 = t.astype(np.int64, copy=False).reshape(-1)
        bad = (t64 != spec.ignore_index) & ((t64 < 0) | (t64 >= spec.n_classes))
        if bad.any():
            raise _out_of_bounds(t64, bad, spec)
    keep = reduction == "none" if keep_losses is None else keep_losses
    acc = LossAccumulator(spec, keep_losses=keep)
    for xb, tb in iter_blocks(x, t, spec.target_kind):
        acc.update(xb, tb)
    result = acc.finalize(reduction)
    if result.losses is not None:
        result.losses = result.losses.reshape(loss_shape(x.shape, t.shape, spec))
        if reduction == "none":
            result.loss = result.losses
    return result


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
            float32 or float64. The class axis is 1 (0 for 1-D input).
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
        array(0.9...)
    """
    return evaluate(input, target, weight, ignore_index, reduction, label_smoothing).loss


def softmax(x: np.ndarray, input_kind: str = "logits") -> np.ndarray:
    """Class probabilities of ``(m, C)`` rows as the loss sees them (for display)."""
    with np.errstate(all="ignore"):
        xc = x.astype(np.float64)
        if input_kind == "probs":
            return xc
        if input_kind == "log-probs":
            return np.exp(xc)
        shifted = xc - xc.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
