"""Cross-entropy exactly as ``torch.nn.functional.cross_entropy`` computes it, in NumPy.

Pure NumPy: no I/O, no click, no rich. One kernel serves every caller:
:func:`cross_entropy` feeds a whole array through :class:`LossAccumulator` block by
block, and the command line feeds the same accumulator with the blocks it reads.
A block is 2-D with the class axis last, ``(m, C)``, in any memory layout: K-dim
inputs are read in place as class-first planes (or re-laid out one cache-sized block
at a time), never copied whole.

The kernel (issue 5) cuts blocks into cache-sized chunks (:data:`KERNEL_ELEMENTS`)
shared by a few threads (``CE_LOSS_THREADS``; NumPy releases the GIL) and merges their
totals in order, so the thread count never changes a bit of the result. Per chunk it
takes one ``exp`` of the logits into a reused buffer, row sums, and
``-lp[t] = log(sum_c exp(x_c) / exp(x_t))``: no max shift and no log_softmax array.
Rows that leave the range where that is exact (overflow, underflow, NaN, +-inf) are
redone with torch's own max-shifted arithmetic.

Semantics follow torch 2.13 (``aten/src/ATen/native/LossNLL.cpp``); the comments
say where a line copies one of its quirks.
"""

from __future__ import annotations

import math
import operator
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DTypeError, OptionError, ShapeError, TargetError

if TYPE_CHECKING:  # concurrent.futures is imported when a second thread is first needed
    from concurrent.futures import ThreadPoolExecutor

from .names import INPUT_KINDS, INT64_MAX, INT64_MIN, REDUCTIONS, torch_dtype_name  # noqa: F401  (the option names re-exported)

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

#: Elements per block that :func:`iter_blocks` yields: the unit of one
#: :meth:`LossAccumulator.update` call, which cuts it into kernel chunks for its threads.
BLOCK_ELEMENTS = 1 << 20

#: Elements per kernel call: one thread's chunk plus its exp scratch stay in cache
#: (256K-1M were best here; 16K-element chunks lose 1.5-3x to per-call overhead).
KERNEL_ELEMENTS = 1 << 18

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


# -- threads and per-thread scratch -------------------------------------------------------------

#: The default thread count never exceeds this (the kernel is bound by exp and memory).
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """Threads the kernel uses when none are given: ``CE_LOSS_THREADS`` if set, else the
    CPUs this process may run on (at most :data:`MAX_DEFAULT_THREADS`)."""
    env = os.environ.get("CE_LOSS_THREADS", "").strip()
    if env:
        n = int(env) if env.isdigit() else 0
        if n < 1:
            raise OptionError(f"CE_LOSS_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


_LOCAL = threading.local()


def _buf(name: str, n: int, dtype: Any) -> np.ndarray:
    """A 1-D per-thread buffer of ``n`` elements, reused from call to call (contents are
    garbage). Freshly allocated memory is slow to touch, so the kernel writes its
    temporaries here instead of allocating them per block."""
    dtype = np.dtype(dtype)
    bufs: dict[tuple[str, str], np.ndarray] | None = getattr(_LOCAL, "bufs", None)
    if bufs is None:
        bufs = _LOCAL.bufs = {}
    key = (name, dtype.char)
    b = bufs.get(key)
    if b is None or b.shape[0] < n:
        b = np.empty(max(n, 1), dtype)
        if n <= 4 * max(KERNEL_ELEMENTS, 1 << 16):  # a giant single row is not kept
            bufs[key] = b
    return b[:n]


def _arange(n: int) -> np.ndarray:
    ar: np.ndarray | None = getattr(_LOCAL, "arange", None)
    if ar is None or ar.shape[0] < n:
        ar = _LOCAL.arange = np.arange(max(n, 1024), dtype=np.intp)
    return ar[:n]


class _Workspace:
    """One thread's scratch for chunks of one geometry, reused while chunks keep it:
    ``exp(x)`` (``e``), row sums, gather indices and gathered terms, and the index of
    each row's first class (``base``: ``i * C`` for rows, ``i + (i // L) (C - 1) L`` for
    ``(g, C, L)`` planes, to which ``t * L`` is added)."""

    def __init__(self, shape: tuple[int, ...], cdt: np.dtype[Any]) -> None:
        self.key = (shape, cdt)
        size = math.prod(shape)
        m = shape[0] * shape[2] if len(shape) == 3 else shape[0]
        self.e_flat = _buf("e", size, cdt)
        self.e = self.e_flat.reshape(shape)
        self.s = _buf("s", m, cdt)
        self.idx = _buf("idx", m, np.intp)
        self.e_t = _buf("e_t", m, cdt)
        self.base = _buf("base", m, np.intp)
        np.copyto(self.base, _arange(m))
        if len(shape) == 3:
            g, c, span = shape
            if g > 1:
                self.base += (_arange(m) // span) * ((c - 1) * span)
        else:
            self.base *= shape[1]


def _workspace(shape: tuple[int, ...], cdt: np.dtype[Any]) -> _Workspace:
    ws: _Workspace | None = getattr(_LOCAL, "workspace", None)
    if ws is None or ws.key != (shape, cdt):
        ws = _LOCAL.workspace = _Workspace(shape, cdt)
    return ws


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor

    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ce-loss")
            _POOL_SIZE = workers
        return _POOL


def _forget_pool() -> None:  # a forked child inherits the pool but not its threads
    global _POOL, _POOL_SIZE
    _POOL, _POOL_SIZE = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run_parallel(n: int, work: Callable[[int], Any], threads: int) -> list[Any]:
    """``[work(0), ..., work(n - 1)]`` on up to ``threads`` threads, this one included.

    NumPy's ufuncs release the GIL, so chunks of one array run side by side.
    Workers take the next index as they finish; the results keep their order.
    """
    k = min(threads, n)
    if k <= 1:
        return [work(i) for i in range(n)]
    results: list[Any] = [None] * n
    lock = threading.Lock()  # a shared iterator is not thread-safe without a GIL
    indices = iter(range(n))
    stop: list[bool] = []

    def loop() -> None:
        with np.errstate(all="ignore"):  # the error state is per thread
            while not stop:
                with lock:
                    i = next(indices, None)
                if i is None:
                    return
                try:
                    results[i] = work(i)
                except BaseException:
                    stop.append(True)
                    raise

    from concurrent.futures import wait

    futures = [_executor(k - 1).submit(loop) for _ in range(k - 1)]
    try:
        loop()
    except BaseException:
        stop.append(True)
        raise
    finally:
        wait(futures)
    for f in futures:
        f.result()  # a worker's exception
    return results


# -- the accumulator ----------------------------------------------------------------------------

_F64 = np.dtype(np.float64)

#: Where an unshifted sum of exponentials can be trusted: above LO no term that matters
#: was flushed to zero or a subnormal; below HI nothing overflowed (NaN fails both).
_SAFE_SUM = {
    np.dtype(np.float32): (2.0 ** -80, float(np.finfo(np.float32).max)),
    np.dtype(np.float64): (2.0 ** -900, float(np.finfo(np.float64).max)),
}

#: The smallest target term ``exp(x_t)`` the fast kernel takes (else the shifted path):
#: far above the subnormals, and since the row sum is at least this term, the sum too.
_SAFE_TERM = {np.dtype(np.float32): 2.0 ** -80, np.dtype(np.float64): 2.0 ** -900}

#: Class sums over planes (K-dim input) run class after class; past this many classes
#: a float32 sum is accumulated in float64 (its error grows with C, pairwise sums' does not)
_SEQUENTIAL_CLASSES = 64

_TOTAL_FIELDS = ("positions", "counted", "ignored", "nll", "smooth", "denominator", "nonfinite")


class LossAccumulator:
    """Feed ``(m, C)`` blocks of logits with their targets; read torch's loss at the end.

    >>> acc = LossAccumulator(make_spec((4, 3), np.float64, (4,), np.int64))
    >>> x = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0], [1.5, 1.5, -2.0]])
    >>> _ = acc.update(x[:2], np.array([0, 2]))
    >>> _ = acc.update(x[2:], np.array([-100, 1]))
    >>> round(float(acc.finalize("mean").loss), 5)
    0.79384

    A block may have any memory layout (a transposed view of class-first data is read in
    place) and any size: it is cut into cache-sized pieces that ``threads`` threads share
    (default :func:`default_threads`). The result does not depend on the thread count.
    """

    def __init__(self, spec: LossSpec, *, keep_losses: bool = False,
                 threads: int | None = None) -> None:
        self.spec = spec
        self.totals = LossTotals()
        self.keep_losses = keep_losses
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._parts: list[np.ndarray] = []
        self._may_ignore = True  # whether a block's targets may hold ignore_index
        dt = spec.input_dtype
        # torch computes half log_softmax in float (rounding some steps to half, see _lse).
        self._cdt = np.dtype(np.float32) if dt == np.float16 else dt
        # The fast kernel: log-sum-exp without the max shift, rows outside its safe range
        # (and every non-finite result) recomputed the shifted way torch computes them.
        # (C=1 stays on torch's arithmetic: its log_softmax is exactly 0, unshifted is not.)
        self._fast = spec.input_kind == "logits" and dt in _SAFE_SUM and spec.n_classes > 1
        w = spec.weight
        self._w_c = None if w is None else np.ascontiguousarray(w, dtype=self._cdt)
        self._w_sum = 0.0 if w is None else float(np.add.reduce(self._w_c, dtype=_F64))
        # float16 class indices: torch's nll sums are half sums in its order
        self._cascade = HalfCascade() if dt == np.float16 and spec.target_kind == "index" \
            else None

    def update(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one block; return its per-position losses (torch's ``none``) in ``spec.dtype``."""
        spec = self.spec
        x = np.asarray(x)
        t = np.asarray(target)
        with np.errstate(all="ignore"):
            if spec.target_kind == "index":
                t = t.reshape(-1)
                self._may_ignore = _check_targets(t, spec)
            out = np.empty(x.shape[0], dtype=spec.dtype)
            self._consume(list(_row_chunks(x, t, 0, _rows_per_chunk(spec.n_classes))), out)
        if self.keep_losses:
            self._parts.append(out)
        return out

    def _feed(self, x: np.ndarray, t: np.ndarray, may_ignore: bool = True) -> None:
        """Add a whole validated array (``evaluate``): all its chunks in one parallel run."""
        self._may_ignore = may_ignore
        chunks = list(_array_chunks(x, t, self.spec.target_kind))
        n = chunks[-1][2] + _chunk_rows(chunks[-1]) if chunks else 0
        out = np.empty(n, dtype=self.spec.dtype) if self.keep_losses else None
        with np.errstate(all="ignore"):
            self._consume(chunks, out)
        if out is not None:
            self._parts.append(out)

    def _consume(self, chunks: list[_Chunk], out: np.ndarray | None) -> None:
        index = self.spec.target_kind == "index"

        def work(i: int) -> tuple[Any, ...]:
            xb, tb, off = chunks[i]
            m = _chunk_rows(chunks[i])
            o = out[off:off + m] if out is not None else _buf("out", m, self.spec.dtype)
            return self._index_chunk(xb, tb, o) if index else self._probs_chunk(xb, tb, o)

        tot = self.totals
        for part in _run_parallel(len(chunks), work, self.threads):
            for name, value in zip(_TOTAL_FIELDS, part):
                setattr(tot, name, getattr(tot, name) + value)
            if self._cascade is not None and len(part) > len(_TOTAL_FIELDS):
                self._cascade.feed(*part[-1])

    # -- the kernel: class-index targets ----------------------------------------------------

    def _index_chunk(self, xb: np.ndarray, tb: np.ndarray, out: np.ndarray
                     ) -> tuple[Any, ...]:
        """Losses of one chunk into ``out``; returns its share of the totals."""
        spec = self.spec
        t = tb.reshape(-1).astype(np.int64, copy=False)
        m = t.shape[0]
        ignored = None
        n_ignored = 0
        if self._may_ignore:
            ignored = np.equal(t, spec.ignore_index, out=_buf("ignored", m, np.bool_))
            n_ignored = int(np.count_nonzero(ignored))
        safe_t = t
        if n_ignored:
            safe_t = _buf("safe_t", m, np.int64)
            np.copyto(safe_t, t)
            safe_t[ignored] = 0
        else:
            ignored = None
        smooth: np.ndarray | None
        if self._fast and m:
            nll, smooth, nll_sum, smooth_sum, clean = self._fast_index(xb, safe_t, ignored, out)
        else:
            nll, smooth = self._reference_index(_rows_view(xb), safe_t)
            if ignored is not None:
                # torch overwrites ignored positions (their logits never reach the result)
                nll[ignored] = 0
                if smooth is not None:
                    smooth[ignored] = 0
            nll_sum = _total(nll)
            smooth_sum = _total(smooth) if smooth is not None else 0.0
            clean = False
        if spec.smoothing and smooth is not None:
            eps = spec.label_smoothing
            np.add(_scaled(nll, 1.0 - eps), _scaled(smooth, _per_class(eps, spec.n_classes)),
                   out=out)
            clean = False  # the sum of two finite terms could still overflow
        elif nll is not out:
            np.copyto(out, nll)
        w_t = None
        if self._w_c is None:
            den = float(m - n_ignored)
        else:
            w_t = _gather(spec.weight, safe_t, _buf("w_t", m, spec.weight.dtype))
            if ignored is not None:
                w_t[ignored] = 0
            den = _total(w_t)
        # clean: every loss is finite (ignored ones are 0), no need to count
        nonfinite = 0 if clean else m - int(np.count_nonzero(np.isfinite(out)))
        totals = (m, m - n_ignored, n_ignored, nll_sum, smooth_sum, den, nonfinite)
        if self._cascade is None:
            return totals
        # half: the nll terms in order, for the cascade (the buffers are reused)
        counted = None if ignored is None else ~ignored
        return totals + ((nll.copy(), None if w_t is None else w_t.copy(), counted),)

    def _fast_index(self, xb: np.ndarray, safe_t: np.ndarray, ignored: np.ndarray | None,
                    out: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray | None, float, float, bool]:
        """Per-row ``w[t] * -lp[t]`` and (with smoothing) ``-sum_c w[c] lp[c]`` in ``dt``,
        ignored rows 0; their float64 sums; and whether all of them are finite.

        No max shift: ``-lp[t] = log(sum_c exp(x_c) / exp(x_t))``, the sum taken by
        einsum (rows) or vector adds (planes). The ratio keeps the result accurate where
        ``lse`` and ``x_t`` are both large. Rows whose target term is
        not safely normal (so neither it nor the sum, which holds it, under- or
        overflowed), or whose result is not finite, are redone by the shifted
        reference, which is torch's arithmetic (NaN, +-inf, 1e30-sized logits all end up
        there). The common case checks the whole chunk at once: the smallest target
        term, and whether the sums are finite.
        """
        spec = self.spec
        dt, cdt = spec.dtype, self._cdt
        x = _kernel_layout(xb)
        planes = x.ndim == 3
        m = safe_t.shape[0]
        ws = _workspace(x.shape, cdt)
        e, s, idx, e_t = ws.e, ws.s, ws.idx, ws.e_t
        np.exp(x, out=e)
        if planes:  # (g, C, L): positions contiguous, class sums are vector adds
            g, _, span = x.shape
            _plane_sums(e, s)
            np.multiply(safe_t, span, out=idx)  # flat index of (i // L, t_i, i % L)
            idx += ws.base
        else:  # (m, C) rows
            _row_sums(e, s)
            np.add(ws.base, safe_t, out=idx)
        ws.e_flat.take(idx, out=e_t)
        nll = out if not spec.smoothing else _buf("nll", m, dt)
        np.divide(s, e_t, out=nll)
        np.log(nll, out=nll)
        if self._w_c is not None:
            nll *= spec.weight.take(safe_t, out=_buf("w_t", m, spec.weight.dtype))
        smooth = None
        if spec.smoothing:
            smooth = self._fast_smooth(x, e, s)
        if ignored is not None:
            # torch overwrites ignored positions (their logits never reach the result)
            nll[ignored] = 0
            e_t[ignored] = 1
            if smooth is not None:
                smooth[ignored] = 0
        nll_sum = _total(nll)
        smooth_sum = _total(smooth) if smooth is not None else 0.0
        tiny = _SAFE_TERM[cdt]
        if (math.isfinite(nll_sum) and math.isfinite(smooth_sum)
                and np.minimum.reduce(e_t) >= tiny):
            return nll, smooth, nll_sum, smooth_sum, True
        ok = np.greater_equal(e_t, tiny, out=_buf("ok", m, np.bool_))
        ok &= np.isfinite(nll, out=_buf("ok2", m, np.bool_))
        if smooth is not None:
            ok &= np.isfinite(smooth, out=_buf("ok2", m, np.bool_))
        if not ok.all():
            redo = np.flatnonzero(~ok)
            if planes:
                span = x.shape[2]
                rows = x[redo // span, :, redo % span]
            else:
                rows = x[redo]
            r_nll, r_smooth = self._reference_index(rows, safe_t[redo])
            nll[redo] = r_nll
            if smooth is not None and r_smooth is not None:
                smooth[redo] = r_smooth
            nll_sum = _total(nll)
            if smooth is not None:
                smooth_sum = _total(smooth)
        return nll, smooth, nll_sum, smooth_sum, False

    def _fast_smooth(self, x: np.ndarray, e: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``-sum_c w[c] lp[c]`` per row, in ``dt``, reusing the exp scratch ``e``.

        ``lp = x - lse`` is written over ``e`` and summed: its terms share one sign, so
        nothing cancels (``lse * sum(w) - sum_c w_c x_c`` would lose digits when the
        logits are large and alike). For float32, ``lse`` is taken in float64 and its
        rounding to float32 added back once per row.
        """
        spec = self.spec
        dt, cdt = spec.dtype, self._cdt
        m = s.shape[0]
        planes = x.ndim == 3
        lse64 = _buf("lse64", m, _F64)
        np.copyto(lse64, s)
        np.log(lse64, out=lse64)
        lse = lse64
        if cdt != _F64:
            lse = _buf("lse", m, cdt)
            np.copyto(lse, lse64, casting="same_kind")
            lse64 -= lse  # now the part of lse that float32 lost
        lp = e  # exp(x) is no longer needed
        np.subtract(x, lse.reshape(x.shape[0], 1, x.shape[2]) if planes else lse[:, None],
                    out=lp)
        sw = _buf("sw", m, cdt)
        if planes:
            wide = cdt != _F64 and x.shape[1] > _SEQUENTIAL_CLASSES
            acc = _buf("sw64", m, _F64) if wide else sw
            out = acc.reshape(x.shape[0], x.shape[2])
            if self._w_c is not None:  # numpy's loops: 0 * -inf is NaN
                np.einsum("gcl,c->gl", lp, self._w_c, out=out, dtype=acc.dtype)
            else:
                np.add.reduce(lp, axis=1, out=out)
            sums = acc
        elif cdt != _F64 and x.shape[1] > _WIDE_ROW_CLASSES:  # a long float32 row sum
            sums = _buf("sw64", m, _F64)
            _row_sums(lp, sums, self._w_c)
        else:
            _row_sums(lp, sw, self._w_c)
            sums = sw
        smooth = _buf("smooth", m, dt)
        w_sum = self._w_sum if self._w_c is not None else float(spec.n_classes)
        if cdt == _F64 or not math.isfinite(w_sum):  # (an inf weight: no correction)
            np.negative(sums, out=smooth, casting="same_kind")
        else:
            lse64 *= w_sum
            lse64 -= sums
            np.copyto(smooth, lse64, casting="same_kind")
        return smooth

    def _reference_index(self, x: np.ndarray, safe_t: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """torch's arithmetic, row by row: max-shifted log_softmax gathered at the target.

        Per-row ``w[t] * -lp[t]`` and (with smoothing) ``-sum_c w[c] lp[c]`` in ``dt``;
        ignored rows are left for the caller to overwrite.
        """
        spec = self.spec
        dt = spec.dtype
        m = safe_t.shape[0]
        xc = x.astype(self._cdt, copy=False)
        if spec.n_classes == 0:  # every target was ignored, or we raised before
            lp_t, shift, lse = np.zeros(m, xc.dtype), None, None
        else:
            lp_t, shift, lse = self._log_probs_at(xc, np.arange(m), safe_t)
        lp_t = lp_t.astype(dt, copy=False)
        nll = -lp_t if spec.weight is None else -lp_t * _gather(spec.weight, safe_t)
        smooth = None
        if spec.smoothing:
            smooth = self._smooth_term(xc, shift, lse).astype(dt, copy=False)
        return nll, smooth

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
        lse = self._lse(x - shift[:, None])
        return (picked - shift) - lse, shift, lse

    def _lse(self, shifted: np.ndarray) -> np.ndarray:
        """``log(sum_c exp(shifted))`` per row, as torch's log_softmax takes it.

        For half (``shifted`` is then float32) with the classes on the last axis, torch
        rounds the sum to half, then its log to half (``log_softmax([0, -8])`` is exactly
        0 there); on another class axis it keeps both in float and sums class after
        class. A float32 sum within an ulp of a half rounding boundary may still round
        the other way than torch's (its exp and order differ): about 1 row in 20,000.
        """
        if self.spec.input_dtype != np.float16:
            return np.log(np.exp(shifted).sum(axis=1))
        if self.spec.class_last:
            s = np.exp(shifted).sum(axis=1).astype(np.float16).astype(shifted.dtype)
            return np.log(s).astype(np.float16).astype(shifted.dtype)
        return np.log(_class_sums(np.exp(shifted)))

    def _smooth_term(self, x: np.ndarray, shift: np.ndarray | None, lse: np.ndarray | None
                     ) -> np.ndarray:
        """``-sum_c w[c] * lp[c]`` per row, without building the full log_softmax.

        sum_c w_c (x_c - shift - lse) = sum_c w_c x_c - (shift + lse) sum_c w_c: with
        non-negative weights both parts have the result's sign, so nothing cancels.
        """
        w = self.spec.weight
        if self.spec.input_dtype == np.float16:
            # torch's half log_softmax is rounded to half, and so is each product with the
            # weight (w = -2 and lp = -6e4 overflow to -inf); the sum accumulates in float
            lp = self._full_log_probs(x) if shift is None or lse is None \
                else (x - shift[:, None]) - lse[:, None]
            lp16 = lp.astype(np.float16)
            if w is not None:
                lp16 = lp16 * w.astype(np.float16, copy=False)
            return -lp16.sum(axis=1, dtype=np.float32)
        if shift is None or lse is None:
            lp = self._full_log_probs(x)
            return -(lp.sum(axis=1) if w is None else (lp * w).sum(axis=1))
        sx = x - shift[:, None]
        if w is None:
            return -(sx.sum(axis=1) - lse * x.shape[1])
        wc = w.astype(x.dtype, copy=False)
        if not np.isfinite(wc).all():  # inf * (the top class's shifted 0) would be NaN
            return -((sx - lse[:, None]) * wc).sum(axis=1)
        return -((sx * wc).sum(axis=1) - lse * wc.sum(dtype=x.dtype))

    def _full_log_probs(self, x: np.ndarray) -> np.ndarray:
        kind = self.spec.input_kind
        if kind == "log-probs" or x.shape[1] == 0:  # C = 0: nothing to normalise
            return x
        if kind == "probs":
            return np.log(x)
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - self._lse(shifted)[:, None]

    # -- the kernel: class-probability targets ----------------------------------------------

    def _probs_chunk(self, xb: np.ndarray, tb: np.ndarray, out: np.ndarray
                     ) -> tuple[Any, ...]:
        spec = self.spec
        dt = spec.dtype
        x = _kernel_layout(xb) if self._fast else _rows_view(xb)
        q = _targets_like(tb, x)
        m = out.shape[0]
        if self._fast and m:
            lp = self._fast_log_probs(x)
        else:
            lp = self._full_log_probs(x.astype(self._cdt, copy=False))
        if spec.smoothing:
            q = _smooth_target(q, spec.label_smoothing, spec.n_classes)
        # torch: (lp * q) in their promoted dtype, then * weight (which may widen it)
        pq = np.result_type(spec.input_dtype, q.dtype)
        lp = lp.astype(spec.input_dtype, copy=False).astype(pq, copy=False)
        prod = np.multiply(lp, q.astype(pq, copy=False),
                           out=lp if lp.dtype == pq and self._fast else None)
        prod = prod.astype(dt, copy=False)
        if spec.weight is not None:
            prod *= spec.weight if x.ndim == 2 else spec.weight[:, None]
        if self._fast and x.ndim == 2 and (dt == _F64 or x.shape[1] <= _WIDE_ROW_CLASSES):
            _row_sums(prod, out)
            np.negative(out, out=out)
            total = -_total(out)
        elif self._fast and x.ndim == 2:  # a long float32 row sum: in float64
            rows = _buf("rows64", m, _F64)
            _row_sums(prod, rows)
            np.negative(rows, out=out, casting="same_kind")
            total = _total(rows)
        else:
            # half: torch sums the half products in float, rounding each row's sum once
            # ('none') or the sum of all of them once (mean, sum)
            if dt != np.float16:
                wide = dt != _F64 and x.ndim == 3 and x.shape[1] > _SEQUENTIAL_CLASSES
                rows = prod.sum(axis=1, dtype=_F64 if wide else None).reshape(-1)
            elif spec.class_last:
                rows = prod.sum(axis=1, dtype=np.float32).reshape(-1)
            else:
                rows = _class_sums(_rows_view(prod).astype(np.float32))
            np.negative(rows, out=out, casting="same_kind")
            total = _total(rows)
        nonfinite = m - int(np.count_nonzero(np.isfinite(out)))
        return (m, m, 0, total, 0.0, 0.0, nonfinite)

    def _fast_log_probs(self, x: np.ndarray) -> np.ndarray:
        """log_softmax of a chunk (rows or planes layout) in the compute dtype, shifted by
        the row max as torch computes it: ``(x - max) - log(sum(exp(x - max)))``.

        Probability targets use every class's log-probability, so the unshifted trick of
        the index kernel does not carry over: there the rounding of a dominant
        ``exp(x_max)`` would land in every term (a confident row's top class is exactly
        -0 in torch, ``0 * lp`` NaN where a target is infinite). NaN, infinities and
        all -inf rows come out as torch's.
        """
        cdt = self._cdt
        planes = x.ndim == 3
        d = _buf("e", x.size, cdt).reshape(x.shape)
        e = _buf("e2", x.size, cdt).reshape(x.shape)
        m = x.shape[0] * x.shape[2] if planes else x.shape[0]
        shift = _buf("shift", m, cdt)
        s = _buf("s", m, cdt)
        if planes:
            g, _, span = x.shape
            np.maximum.reduce(x, axis=1, out=shift.reshape(g, span))
            np.subtract(x, shift.reshape(g, 1, span), out=d)
            np.exp(d, out=e)
            _plane_sums(e, s)
            np.log(s, out=s)
            d -= s.reshape(g, 1, span)
        else:
            np.maximum.reduce(x, axis=1, out=shift)
            np.subtract(x, shift[:, None], out=d)
            np.exp(d, out=e)
            _row_sums(e, s)
            np.log(s, out=s)
            d -= s[:, None]
        return d

    # -- the reduction ----------------------------------------------------------------------

    def finalize(self, reduction: str = "mean") -> LossResult:
        """torch's result for ``reduction`` from the totals (and kept per-position losses)."""
        spec = self.spec
        dt = spec.dtype
        tot = self.totals
        losses = None
        if self.keep_losses:
            losses = (np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0]
                      ) if self._parts else np.zeros(0, dtype=dt)
            losses = losses.astype(dt, copy=False)
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
        den = den_smooth = dt.type(tot.denominator)
        cascade = self._cascade
        if cascade is not None and cascade.positions == tot.positions:
            # half, every position seen here in order: torch's half sums (merged shards
            # fall back to the float sums rounded once, at most an ulp or so away)
            nll, w_sum = cascade.totals()
            if spec.weight is not None:
                den = w_sum
            if spec.weight is None:  # torch: smooth_loss.sum() / true_mask.sum(), in float
                den_smooth = tot.counted
        if reduction == "mean":
            # torch: 0/0 is NaN on purpose when every target is ignored (LossNLL.cpp).
            nll = nll / den
            smooth = (np.float32(smooth) / np.float32(den_smooth)).astype(dt) \
                if dt == np.float16 else smooth / den_smooth
        if not spec.smoothing:
            return nll
        # torch adds two separately reduced terms; (1-eps)*nll is kept even at eps=1.
        eps = spec.label_smoothing
        return _scaled(nll, 1.0 - eps) + _scaled(smooth, _per_class(eps, spec.n_classes))


def _scaled(a: Any, factor: float) -> Any:
    """``a * factor`` as torch multiplies a tensor by a Python scalar: in the tensor's
    dtype, except that half is computed in float32 with the scalar unrounded (so a tiny
    eps/C is not 0 and inf * eps/C stays inf)."""
    dt = np.asarray(a).dtype
    if dt == np.float16:
        return (np.float32(factor) * np.asarray(a, np.float32)).astype(np.float16)
    return a * dt.type(factor)


#: A chunk's sum is taken in a wider type than its terms, so that how the positions are
#: cut into chunks, threads or shards changes the totals by an ulp at most: float32 (and
#: half) terms in float64, float64 terms in long double (80-bit on x86; elsewhere it
#: may be float64 itself).
_WIDER = {np.dtype(np.float16): _F64, np.dtype(np.float32): _F64,
          np.dtype(np.float64): np.dtype(np.longdouble)}


class HalfCascade:
    """torch's float16 ``nll_loss`` sums, in its order and its roundings.

    torch (LossNLL.cpp, LossNLL2d.cpp) sums half losses and weights in half, through 8
    levels of partial sums: each counted position ``b`` (flat over N, d1..dk) is added to
    level 0, then level ``j`` is added into ``j + 1`` and reset while ``b`` is a multiple
    of ``16 ** (j + 1)``; an ignored position is skipped, flush included. The total is the
    levels summed in order. Every addition rounds to half, so the result differs from a
    float sum rounded once. Fed in order, block by block; the state is the position
    count and the two sets of levels. (torch takes levels of 32 past 2**39 positions.)
    """

    LEVELS = 8
    STEP = 16

    def __init__(self) -> None:
        self.positions = 0
        self.loss = np.zeros(self.LEVELS, np.float16)
        self.weight = np.zeros(self.LEVELS, np.float16)

    def feed(self, loss: np.ndarray, weight: np.ndarray | None, counted: np.ndarray | None
             ) -> None:
        """Add the next positions: their half losses (``-lp[t] * w[t]``), weights
        ``w[t]`` (None: unweighted) and which are counted (None: all)."""
        m = loss.shape[0]
        b = np.arange(self.positions, self.positions + m, dtype=np.int64)
        self.positions += m
        if counted is not None:
            b, loss = b[counted], loss[counted]
            weight = None if weight is None else weight[counted]
        for values, levels in ((loss, self.loss), (weight, self.weight)):
            if values is None:
                continue
            at = b
            for j in range(self.LEVELS):
                if j + 1 < self.LEVELS:
                    ends = at % (self.STEP ** (j + 1)) == 0
                else:
                    ends = np.zeros(at.shape[0], np.bool_)
                values, levels[j] = _half_runs(values.astype(np.float16), ends, levels[j])
                at = at[ends]
                if not values.size:
                    break

    def totals(self) -> tuple[np.float16, np.float16]:
        """The loss and weight sums, as torch accumulates its levels."""
        loss = weight = np.float16(0)
        for a, w in zip(self.loss, self.weight):
            loss = _half_add(loss, a)
            weight = _half_add(weight, w)
        return loss, weight


def _class_sums(a: np.ndarray) -> np.ndarray:
    """Row sums of ``(m, C)`` rows taken class after class, in ``a``'s dtype: the order
    torch's kernels sum over a class axis that is not the input's last."""
    return np.add.reduce(np.ascontiguousarray(a.T), axis=0)


def _half_add(a: Any, b: Any) -> Any:
    """``a + b`` as c10::Half adds: in float32, rounded to half."""
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)).astype(np.float16)


#: runs longer than this are summed one by one (numpy's accumulate), shorter ones together
_LONG_RUN = 64


def _half_runs(values: np.ndarray, ends: np.ndarray, carry: np.float16
               ) -> tuple[np.ndarray, np.float16]:
    """Sequential half sums of ``values`` cut into runs, a run ending after each value
    whose ``ends`` is set; the first run starts from ``carry``. Returns the sums of the
    ended runs in order, and the sum of the open run left at the end (the new carry).
    Vectorised over runs: step ``k`` adds every run's ``k``-th value."""
    n = values.shape[0]
    if n == 0:
        return values, carry
    run = np.zeros(n, np.int64)
    np.cumsum(ends[:-1], out=run[1:])
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    lengths = np.diff(np.append(starts, n))
    acc = np.zeros(starts.shape[0], np.float16)
    acc[0] = carry
    # long runs (every flush point ignored, say) one at a time: add.accumulate in half
    # rounds after every addition, as a sequential half sum does
    for r in np.flatnonzero(lengths > _LONG_RUN):
        part = np.concatenate((acc[r:r + 1], values[starts[r]:starts[r] + lengths[r]]))
        acc[r] = np.add.accumulate(part, dtype=np.float16)[-1]
    short = np.flatnonzero(lengths[run] <= _LONG_RUN)
    rank = np.arange(n)[short] - starts[run[short]]
    order = short[np.argsort(rank, kind="stable")]
    at = 0
    for count in np.bincount(rank):
        idx = order[at:at + count]
        at += count
        r = run[idx]
        acc[r] = _half_add(acc[r], values[idx])
    if ends[-1]:
        return acc, np.float16(0)
    return acc[:-1], acc[-1]


def _total(a: np.ndarray) -> float:
    return float(np.add.reduce(a, dtype=_WIDER.get(a.dtype, _F64)))


#: Row sums of more classes than this are accumulated in float64 for float32 input (the
#: error of einsum's lane-wise float32 sums grows with C: 1e-6 near C = 30,000)
_WIDE_ROW_CLASSES = 4096


def _plane_sums(a: np.ndarray, out: np.ndarray) -> None:
    """``out[(i, l)] = sum_c a[i, c, l]`` for ``(g, C, L)`` planes: vector adds, class
    after class; past :data:`_SEQUENTIAL_CLASSES` a float32 sum accumulates in float64."""
    g, c, span = a.shape
    if a.dtype != _F64 and c > _SEQUENTIAL_CLASSES:
        s64 = _buf("s64", out.shape[0], _F64)
        np.add.reduce(a, axis=1, out=s64.reshape(g, span))
        np.copyto(out, s64, casting="same_kind")
    else:
        np.add.reduce(a, axis=1, out=out.reshape(g, span))


def _row_sums(a: np.ndarray, out: np.ndarray, weights: np.ndarray | None = None) -> None:
    """``out[i] = sum_c a[i, c] (* weights[c])`` for ``(m, C)`` rows.

    einsum's contiguous sum-of-products loop: fast for every C (``add.reduce(axis=1)``
    is slow below C ~ 100), IEEE throughout (0 * -inf is NaN), and a row's sum does not
    depend on where the row sits in the block. A BLAS product with a ones vector is a
    little faster but rounds a row differently by its position (so sharded runs would
    not merge to the single run's bits), and OpenBLAS's own threads fight ours.
    """
    wide = {"dtype": out.dtype} if out.dtype != a.dtype else {}  # accumulate in out's
    if weights is None:
        np.einsum("mc->m", a, out=out, **wide)
    else:
        np.einsum("mc,c->m", a, weights, out=out, **wide)


def _gather(w: np.ndarray, t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``w[t]``; zeros when there are no classes (every target was ignored, or the call
    was refused before)."""
    if w.shape[0] == 0:
        return np.zeros(t.shape[0], w.dtype) if out is None else _fill(out, 0)
    return np.take(w, t, out=out)


def _fill(a: np.ndarray, value: Any) -> np.ndarray:
    a.fill(value)
    return a


def _per_class(eps: float, c: int) -> float:
    """``eps / C`` as torch's C++ takes it: a double division, so C = 0 gives inf (and
    the smoothing term of an empty class axis, 0 * inf, NaN)."""
    return eps / c if c else math.copysign(math.inf, eps) if eps else math.nan


def _smooth_target(q: np.ndarray, eps: float, c: int) -> np.ndarray:
    """``q * (1 - eps) + eps / C`` as torch computes it, in the target's own dtype.

    A float16 target is computed in float32 (torch's opmath) and rounded to half after
    each operation; torch's ``mul`` takes the scalar ``1 - eps`` as given, its ``add``
    takes ``eps / C`` rounded to half first.
    """
    if q.dtype == np.float16:
        f32, f16 = np.float32, np.float16
        q = (q.astype(f32) * f32(1.0 - eps)).astype(f16)
        return (q.astype(f32) + f32(f16(_per_class(eps, c)))).astype(f16)
    qt = q.dtype.type
    return q * qt(1.0 - eps) + qt(_per_class(eps, c))


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


# -- chunks: the kernel's unit of work ----------------------------------------------------------

#: ``(x, target, offset)``: ``x`` is ``(m, C)`` in any layout or a class-first group
#: ``(g, C, L)`` of K-dim samples; ``offset`` is the chunk's first position.
_Chunk = tuple[np.ndarray, np.ndarray, int]


def _rows_per_chunk(c: int) -> int:
    return max(1, KERNEL_ELEMENTS // max(c, 1))


def _chunk_rows(chunk: _Chunk) -> int:
    x = chunk[0]
    return x.shape[0] if x.ndim == 2 else x.shape[0] * x.shape[2]


def _row_chunks(x: np.ndarray, t: np.ndarray, offset: int, rows: int) -> Iterator[_Chunk]:
    """At most ``rows`` rows per chunk, the rows shared evenly (no sliver at the end)."""
    n = x.shape[0]
    if n == 0:
        yield x, t, offset
        return
    rows = -(-n // -(-n // rows))
    for start in range(0, n, rows):
        yield x[start:start + rows], t[start:start + rows], offset + start


def _array_chunks(x: np.ndarray, t: np.ndarray, target_kind: str) -> Iterator[_Chunk]:
    """Cache-sized chunks of a whole input, in torch's position order, copying nothing."""
    if x.ndim == 1:
        yield x[None, :], (t.reshape(1, -1) if target_kind == "probs" else t.reshape(1)), 0
        return
    n, c = x.shape[0], x.shape[1]
    if x.ndim == 2:
        yield from _row_chunks(x, t, 0, _rows_per_chunk(c))
        return
    spatial = math.prod(x.shape[2:])
    probs = target_kind == "probs"
    x3 = x.reshape(n, c, spatial)
    t3 = t.reshape(n, c, spatial) if probs else t.reshape(n, spatial)
    per_sample = c * spatial
    if n == 0 or spatial == 0:
        yield _as_rows(x3), (_as_rows(t3) if probs else t3.reshape(-1)), 0
        return
    if per_sample <= KERNEL_ELEMENTS:
        group = max(1, KERNEL_ELEMENTS // max(per_sample, 1))
        for start in range(0, n, group):
            yield x3[start:start + group], t3[start:start + group], start * spatial
        return
    step = _rows_per_chunk(c)
    step = -(-spatial // -(-spatial // step))  # shared evenly, no sliver at the end
    for i in range(n):
        for s in range(0, spatial, step):
            yield x3[i:i + 1, :, s:s + step], t3[i:i + 1, ..., s:s + step], i * spatial + s


def _kernel_layout(xb: np.ndarray) -> np.ndarray:
    """``xb`` as the fast kernel reads it: ``(m, C)`` rows with the classes contiguous, or
    ``(g, C, L)`` planes with the positions contiguous (no copy where possible)."""
    item = xb.itemsize
    if xb.ndim == 3:
        g, c, span = xb.shape
        if xb.strides[2] == item and span >= 64:
            return xb
        rows = _buf("rows", xb.size, xb.dtype).reshape(g, span, c)
        np.copyto(rows, xb.transpose(0, 2, 1))
        return rows.reshape(g * span, c)
    m, c = xb.shape
    if c == 1 or xb.strides[1] == item:
        return xb
    if xb.strides[0] == item and m >= 64:
        return xb.T[None]
    rows = _buf("rows", xb.size, xb.dtype).reshape(m, c)
    np.copyto(rows, xb)
    return rows


def _as_rows(a: np.ndarray) -> np.ndarray:
    """``(g, C, L)`` planes as ``(g * L, C)`` rows (a copy); C may be 0."""
    g, c, span = a.shape
    return a.transpose(0, 2, 1).reshape(g * span, c)


def _rows_view(xb: np.ndarray) -> np.ndarray:
    """``(m, C)`` rows of a chunk (a copy for class-first groups)."""
    if xb.ndim == 3:
        return _as_rows(xb)
    return xb


def _targets_like(tb: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Probability targets laid out like the kernel's ``x`` (rows or planes)."""
    if x.ndim == 3:  # planes: tb is (g, C, L), or (m, C) rows of a transposed view
        return tb if tb.ndim == 3 else tb.T[None]
    if tb.ndim == 3:
        return _as_rows(tb)
    return tb


# -- walking arrays in blocks -------------------------------------------------------------------


def iter_blocks(x: np.ndarray, target: np.ndarray, target_kind: str,
                block_elements: int | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(m, C)`` logits blocks (class axis last) with their targets, in torch's order.

    ``(N, C, d1..dk)`` inputs are never copied whole: a block of one large sample is a
    transposed view (the accumulator reads it in place), blocks of small samples are
    moved to class-last one block at a time. Positions come out in the C order of the
    target. Blocks hold about ``block_elements`` (default :data:`BLOCK_ELEMENTS`).
    """
    if block_elements is None:
        block_elements = BLOCK_ELEMENTS
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
            xb = _as_rows(x3[start:start + group])
            if probs:
                tb = _as_rows(t3[start:start + group])
            else:
                tb = t3[start:start + group].reshape(-1)
            yield xb, tb
        return
    step = max(1, block_elements // max(c, 1))
    for i in range(n):
        for s in range(0, spatial, step):
            xb = x3[i, :, s:s + step].T  # a view: the accumulator reads class-first data
            tb = t3[i, :, s:s + step].T if probs else t3[i, s:s + step]
            yield xb, tb


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
    spec = make_spec(x.shape, x.dtype, t.shape, t.dtype, weight, ignore_index, reduction,
                     label_smoothing, input_kind)
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
        xc = x.astype(np.float64)
        if input_kind == "probs":
            return xc
        if input_kind == "log-probs":
            return np.exp(xc)
        if xc.shape[1] == 0:  # no classes: nothing to normalise
            return xc
        shifted = xc - xc.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
