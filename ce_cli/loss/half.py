"""torch's scalar and float16 arithmetic: where half rounds, and in which order.

torch computes half in float32 ("opmath") and rounds to half after each operation, and
sums half losses through a cascade of half partial sums (:class:`HalfCascade`); these
helpers repeat those roundings so float16 results match torch's to the bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .threads import _arange, _buf


def _scaled(a: Any, factor: float, bfloat16: bool = False) -> Any:
    """``a * factor`` as torch multiplies a tensor by a Python scalar: in the tensor's
    dtype, except that half is computed in float32 with the scalar unrounded (so a tiny
    eps/C is not 0 and inf * eps/C stays inf); ``bfloat16``: ``a`` holds bfloat16 values
    in float32, and the product is rounded to bfloat16 the same way."""
    dt = np.asarray(a).dtype
    if dt == np.float16:
        return (np.float32(factor) * np.asarray(a, np.float32)).astype(np.float16)
    if bfloat16:
        return round_bfloat16(np.float32(factor) * np.asarray(a, np.float32))
    return a * dt.type(factor)



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


def _half_lse(shifted: np.ndarray, class_last: bool) -> np.ndarray:
    """``log(sum_c exp(shifted))`` per row for half input (``shifted`` is then float32),
    as torch's half log_softmax takes it.

    With the classes on the last axis (``class_last``), torch rounds the sum to half,
    then its log to half (``log_softmax([0, -8])`` is exactly 0 there); on another class
    axis it keeps both in float and sums class after class. With the classes last, a
    float32 sum within an ulp of a half rounding boundary may still round the other way
    than torch's (its exp and order differ): about 1 row in 70,000, whether the rows are
    summed by einsum (as here: 4 times faster) or pairwise (1.4M rows, C from 3 to 1000).
    """
    if class_last:
        e = np.ascontiguousarray(np.exp(shifted))
        s = np.einsum("mc->m", e).astype(np.float16).astype(shifted.dtype)
        return np.log(s).astype(np.float16).astype(shifted.dtype)
    e = np.ascontiguousarray(np.exp(shifted).T)
    sums = np.empty(e.shape[1], e.dtype)
    _sequential_sums(e, sums)
    return np.log(sums)


def half_rows(x: np.ndarray, class_last: bool) -> bool:
    """Whether :func:`half_lp_at` widens the chunk ``x`` into ``(m, C)`` rows (the classes
    last, or 2-D with the classes contiguous), the layout a chunk hook reads."""
    return class_last or (x.ndim == 2 and x.strides[1] == x.itemsize)


def half_lp_at(x: np.ndarray, t: np.ndarray, class_last: bool, hook: Any = None,
               offset: int = 0, bfloat16: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's half log_softmax of a chunk of float16 logits at the targets ``t``:
    ``lp[t]`` (float32, still to be rounded to half), the row shift (max) and the
    log-sum-exp (float32), as :func:`~ce_cli.loss.kinds.normalise` with
    :func:`_half_lse` takes them, in float32 passes over a reused buffer.

    ``x`` is ``(m, C)`` rows in any layout, or ``(g, C, L)`` planes (class-first, not
    ``class_last``). The chunk is widened into ``(m, C)`` rows (class-first chunks into
    ``(C, m)`` columns), shifted by their max and exponentiated in place. With the
    classes last the rows are summed by einsum, as :func:`_half_lse` sums them; else
    they are turned class-major and summed class after class, the order of torch's
    kernel for a class axis that is not the last.

    A ``hook`` (:class:`~ce_cli.loss.hook.ChunkHook`) is handed the widened rows and
    their row-shifted ``exp(x - max)`` (kept in a second buffer: the same passes, no
    second exp), as ``hook.chunk(rows, t, offset, e)``; only in the rows layout
    (:func:`half_rows`), where the caller leaves it to this function.

    ``bfloat16``: ``x`` holds bfloat16 values as float32 (read as they are), and the
    class-last sum and its log are rounded to bfloat16, as torch's bfloat16 log_softmax
    rounds them (``LogSoftmaxKernelImpl.h`` keeps both in ``scalar_t``).
    """
    f32 = np.float32
    m, c = t.shape[0], x.shape[1]
    at = _buf("half_at", m, np.intp)
    shift = _buf("half_shift", m, f32)
    lse = _buf("half_lse", m, f32)
    # classes contiguous: exp of the shifted rows, then (not class_last) turned class-major
    rows = half_rows(x, class_last)
    if rows:
        if bfloat16:  # float32 already: read in place, the exp into a buffer
            a = x
            x_t = x[_arange(m), t].astype(f32, copy=False)
            np.maximum.reduce(x, axis=1, out=shift)
            e = _buf("half_x", m * c, f32).reshape(m, c)
        else:
            a = _buf("half_x", m * c, f32).reshape(m, c)
            _widen(x, a)
            np.multiply(_arange(m), c, out=at)
            at += t
            x_t = a.reshape(-1).take(at, out=_buf("half_xt", m, f32))
            _half_row_max(x, shift)
            e = a if hook is None else _buf("half_e", m * c, f32).reshape(m, c)
        np.subtract(a, shift[:, None], out=e)
        np.exp(e, out=e)
        if hook is not None:
            hook.chunk(a, t, offset, e)
        a = e
    else:  # class-first: a (C, m) block, g * L positions for (g, C, L) planes
        a = _buf("half_x", m * c, f32).reshape(c, m)
        src, dst = (x.transpose(1, 0, 2), a.reshape(c, *x.shape[::2])) if x.ndim == 3 \
            else (x.T, a)
        if bfloat16:
            np.copyto(dst, src)
        else:
            _widen(src, dst)
        np.multiply(t, m, out=at)
        at += _arange(m)
        x_t = a.reshape(-1).take(at, out=_buf("half_xt", m, f32))
        np.maximum.reduce(a, axis=0, out=shift)
        np.subtract(a, shift, out=a)
        np.exp(a, out=a)
    if class_last:  # torch rounds the sum, then its log, to half (or bfloat16)
        np.einsum("mc->m", a, out=lse)
        _round_into(lse, bfloat16)
        np.log(lse, out=lse)
        _round_into(lse, bfloat16)
    else:
        if rows:
            cols = _buf("half_cols", m * c, f32).reshape(c, m)
            np.copyto(cols, a.T)
            a = cols
        _sequential_sums(a, lse)
        np.log(lse, out=lse)
    x_t -= shift
    x_t -= lse
    return x_t, shift, lse


def half_smooth_term(lp: np.ndarray, w: np.ndarray | None, bfloat16: bool) -> np.ndarray:
    """``-sum_c w[c] * lp[c]`` per row of float32 log-probabilities as torch takes it for
    half (or bfloat16) input: the log_softmax rounded to half, and so is each product
    with the weight (w = -2 and lp = -6e4 overflow to -inf); the sum accumulates in float."""
    if bfloat16:  # values held in float32; the row's sum is a bfloat16 too
        lp = round_bfloat16(lp)
        if w is not None:
            lp = round_bfloat16(lp * w)
        return round_bfloat16(-lp.sum(axis=1, dtype=np.float32))
    lp16 = lp.astype(np.float16)
    if w is not None:
        lp16 = lp16 * w.astype(np.float16, copy=False)
    return -lp16.sum(axis=1, dtype=np.float32)


def bfloat16_log_softmax(x: np.ndarray, class_last: bool) -> np.ndarray:
    """torch's bfloat16 log_softmax of ``(m, C)`` rows of bfloat16 values (held in
    float32), as float32 holding bfloat16 values: ``(x - max) - lse`` rounded once, where
    with the classes last ``lse`` is the log of the sum rounded to bfloat16, itself
    rounded (as :func:`half_lp_at` takes the target's)."""
    with np.errstate(all="ignore"):
        xc = np.asarray(x, np.float32)
        d = xc - xc.max(axis=1, keepdims=True) if xc.shape[1] else xc.copy()
        s = np.exp(d).sum(axis=1, dtype=np.float32, keepdims=True)
        lse = round_bfloat16(np.log(round_bfloat16(s))) if class_last else np.log(s)
        return round_bfloat16(d - lse)


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 values, given as their raw 16 bits (``uint16``, native order), as float32:
    a bfloat16 is the top half of a float32, so every value (NaN and inf included) is
    exact. One pass, into one new array (five times faster than a cast, then a shift)."""
    out = np.empty(raw.shape, np.uint32)
    np.left_shift(raw, 16, out=out, dtype=np.uint32)
    return out.view(np.float32)


def _round_into(a: np.ndarray, bfloat16: bool) -> None:
    """float32 ``a`` rounded in place to half, or to bfloat16."""
    np.copyto(a, round_bfloat16(a) if bfloat16 else a.astype(np.float16))


_TO_FLOAT32: list[np.ndarray] = []


def _widen(x: np.ndarray, out: np.ndarray) -> None:
    """float16 ``x`` as float32 into ``out`` (same shape), exactly, four times as fast as
    NumPy's cast (which converts value by value), on the bits: the sign goes to bit 31,
    exponent and mantissa to bits 13-27, and a multiplication by 2**112 moves the exponent
    from half's bias (15) to float32's (127), subnormals included. Infinities and NaN
    (exponent 31) would not survive that: a chunk holding one is looked up in a table of
    all 65536 values instead."""
    u = x.view(np.uint16)
    magnitude = np.bitwise_and(u, 0x7FFF, out=_buf("widen_mag", u.size, np.uint16)
                               .reshape(u.shape))
    if u.size and int(np.maximum.reduce(magnitude, axis=None)) >= 0x7C00:
        if not _TO_FLOAT32:
            _TO_FLOAT32.append(np.arange(1 << 16, dtype=np.uint16).view(np.float16)
                               .astype(np.float32))
        np.take(_TO_FLOAT32[0], u, out=out, mode="clip")  # (all in range)
        return
    bits = out.view(np.uint32)
    np.left_shift(u, 16, out=bits, dtype=np.uint32)  # sign at 31, the rest at 16-30
    signed = bits.view(np.int32)
    np.right_shift(signed, 3, out=signed)  # the rest at 13-27; the sign copied to 28-31
    np.bitwise_and(bits, 0x8FFFFFFF, out=bits)
    np.multiply(out, np.float32(2.0 ** 112), out=out)


def _half_row_max(x: np.ndarray, out: np.ndarray) -> None:
    """The largest of each ``(m, C)`` float16 row, into float32 ``out``, found on the
    bits (twice as fast as on the widened rows): as int16 the non-negative values order
    as their floats; a row with none takes its negative nearest 0 (the least as uint16).
    A row holding a NaN may get a number instead of NaN: its sum, and loss, are NaN."""
    top = np.maximum.reduce(x.view(np.int16), axis=1, out=_buf("half_top", x.shape[0],
                                                                np.int16))
    negative = np.flatnonzero(top < 0)
    if negative.size:
        top[negative] = np.minimum.reduce(x[negative].view(np.uint16), axis=1).view(np.int16)
    _widen(top.view(np.float16), out)


def _sequential_sums(a: np.ndarray, out: np.ndarray) -> None:
    """``out[j] = (((a[0, j] + a[1, j]) + a[2, j]) + ...)`` for a contiguous ``(C, m)``
    block, in ``a``'s dtype: vector adds, class after class. For one column NumPy's
    reductions would sum pairwise, so that one is accumulated."""
    if a.shape[1] == 1:
        out[0] = np.add.accumulate(a[:, 0])[-1] if a.shape[0] else 0
    else:
        np.einsum("cm->m", a, out=out)


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

    #: positions gathered before they are summed: NumPy calls cost per call, not per value
    BATCH = 1 << 16

    def __init__(self, bfloat16: bool = False) -> None:
        # bfloat16 (torch's bfloat16 result of bfloat16 logits): the same cascade, each
        # addition rounded to bfloat16; its values are held in float32
        self.bfloat16 = bfloat16
        self.positions = 0
        dtype = np.float32 if bfloat16 else np.float16
        self.loss = np.zeros(self.LEVELS, dtype)
        self.weight = np.zeros(self.LEVELS, dtype)
        self._pending: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        self._pending_from = 0  # the first pending position
        self._pending_n = 0

    def feed(self, loss: np.ndarray, weight: np.ndarray | None, counted: np.ndarray | None
             ) -> None:
        """Add the next positions: their half losses (``-lp[t] * w[t]``), weights
        ``w[t]`` (None: unweighted) and which are counted (None: all). The arrays are
        kept until summed (at :data:`BATCH` positions, or at :meth:`totals`)."""
        if not self._pending:
            self._pending_from = self.positions
        self._pending.append((loss, weight, counted))
        self.positions += loss.shape[0]
        self._pending_n += loss.shape[0]
        if self._pending_n >= self.BATCH:
            self._sum_pending()

    def _sum_pending(self) -> None:
        parts, self._pending, self._pending_n = self._pending, [], 0
        if not parts:
            return
        loss = _joined([p[0] for p in parts])
        weight = None if parts[0][1] is None else _joined([p[1] for p in parts])
        counted = None
        if any(p[2] is not None for p in parts):
            counted = _joined([np.ones(p[0].shape[0], np.bool_) if p[2] is None else p[2]
                               for p in parts])
        b = np.arange(self._pending_from, self._pending_from + loss.shape[0], dtype=np.int64)
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
                values, levels[j] = _half_runs(_rounded(values, self.bfloat16), ends,
                                               levels[j], self.bfloat16)
                at = at[ends]
                if not values.size:
                    break

    def totals(self) -> tuple[Any, Any]:
        """The loss and weight sums, as torch accumulates its levels."""
        self._sum_pending()
        loss = weight = self.loss.dtype.type(0)
        for a, w in zip(self.loss, self.weight):
            loss = _half_add(loss, a, self.bfloat16)
            weight = _half_add(weight, w, self.bfloat16)
        return loss, weight


def _joined(arrays: list[Any]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _rounded(values: np.ndarray, bfloat16: bool) -> np.ndarray:
    """``values`` rounded to half (float16), or to bfloat16 (held in float32)."""
    return round_bfloat16(values) if bfloat16 else values.astype(np.float16)


def _class_sums(a: np.ndarray) -> np.ndarray:
    """Row sums of ``(m, C)`` rows taken class after class, in ``a``'s dtype: the order
    torch's kernels sum over a class axis that is not the input's last."""
    return np.add.reduce(np.ascontiguousarray(a.T), axis=0)


def _half_add(a: Any, b: Any, bfloat16: bool = False) -> Any:
    """``a + b`` as c10::Half (or c10::BFloat16) adds: in float32, rounded to half."""
    total = np.asarray(a, np.float32) + np.asarray(b, np.float32)
    if bfloat16:
        return round_bfloat16(total)[()] if total.ndim == 0 else round_bfloat16(total)
    return total.astype(np.float16)


#: runs longer than this are summed one by one (numpy's accumulate), shorter ones together
_LONG_RUN = 64


def _half_runs(values: np.ndarray, ends: np.ndarray, carry: Any, bfloat16: bool = False
               ) -> tuple[np.ndarray, Any]:
    """Sequential half sums of ``values`` cut into runs, a run ending after each value
    whose ``ends`` is set; the first run starts from ``carry``. Returns the sums of the
    ended runs in order, and the sum of the open run left at the end (the new carry).
    Vectorised over runs: step ``k`` adds every run's ``k``-th value."""
    n = values.shape[0]
    if n == 0:
        return values, carry
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    lengths = np.diff(np.append(starts, n))
    acc = np.zeros(starts.shape[0], values.dtype)
    acc[0] = carry
    todo = np.ones(starts.shape[0], np.bool_)
    # the closed runs after the first all of one length (all positions counted): a
    # (runs, length) block summed column by column
    closed = starts.shape[0] - (0 if ends[-1] else 1)
    if closed > 2:
        length = int(lengths[1])
        if length <= _LONG_RUN and (lengths[1:closed] == length).all():
            block = values[starts[1]:starts[1] + (closed - 1) * length]
            block = block.reshape(closed - 1, length)
            total = np.zeros(closed - 1, values.dtype)
            for k in range(length):
                total = _half_add(total, block[:, k], bfloat16)
            acc[1:closed] = total
            todo[1:closed] = False
    if not bfloat16:
        # long runs (every flush point ignored, say) one at a time: add.accumulate in
        # half rounds after every addition, as a sequential half sum does
        for r in np.flatnonzero((lengths > _LONG_RUN) & todo):
            part = np.concatenate((acc[r:r + 1], values[starts[r]:starts[r] + lengths[r]]))
            acc[r] = np.add.accumulate(part, dtype=np.float16)[-1]
            todo[r] = False
    runs = np.flatnonzero(todo)
    if runs.size:
        # the longest first, so that the runs still going at step k are the first ones
        runs = runs[np.argsort(-lengths[runs], kind="stable")]
        first, left = starts[runs], lengths[runs]
        total = acc[runs]
        going = np.searchsorted(-left, -np.arange(int(left[0])), side="left")
        for k, m in enumerate(going.tolist()):
            total[:m] = _half_add(total[:m], values[first[:m] + k], bfloat16)
        acc[runs] = total
    if ends[-1]:
        return acc, values.dtype.type(0)
    return acc[:-1], acc[-1]


def half_range(x: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of float16 values as floats, NaN for both if any is NaN; a zero
    comes out as +0. Found on the bits, in two or three integer reductions (NumPy's
    float16 min and max convert value by value, 40 times slower): as int16 the
    non-negative values order as their floats, as uint16 the negative ones (sign bit
    set) order by magnitude."""
    signed, unsigned = x.view(np.int16), x.view(np.uint16)
    top, low = int(np.maximum.reduce(signed, axis=None)), \
        int(np.maximum.reduce(unsigned, axis=None))
    if top > 0x7C00 or low > 0xFC00:  # a NaN (bits past those of +inf, -inf)
        return math.nan, math.nan
    # the largest: the largest non-negative, else the negative nearest 0
    hi = top if top >= 0 else int(np.minimum.reduce(unsigned, axis=None))
    # the smallest: the negative farthest from 0, else the smallest non-negative
    lo = low if low >= 0x8000 else int(np.minimum.reduce(signed, axis=None))
    return tuple(float(np.uint16(v).view(np.float16)) + 0.0  # type: ignore[return-value]
                 for v in (lo, hi))


def round_bfloat16(a: Any) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32:
    a bfloat16 is the top 16 bits of a float32. NaN stays NaN; past the largest
    bfloat16, inf."""
    x = np.asarray(a, dtype=np.float32)
    bits = x.view(np.uint32)
    # in uint32: only NaN bits (put back below) can wrap past 2**32
    out = np.right_shift(bits, 16, out=np.empty(x.shape, np.uint32))
    out &= 1
    out += 0x7FFF
    out += bits
    out &= 0xFFFF0000
    rounded = out.view(np.float32)
    np.copyto(rounded, x, where=np.isnan(x))
    return rounded
