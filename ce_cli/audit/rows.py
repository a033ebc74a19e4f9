"""The audit's per-row values: from the kernel's own pass, or from a float64 log_softmax.

:class:`KernelRows` is a kernel hook (:class:`~ce_cli.loss.hook.ChunkHook`): per chunk,
in the kernel's threads and while the chunk is in cache, it turns the kernel's unshifted
``exp(x)`` into each position's top class, confidence, log-probability of the target,
entropy and rank of the target. :func:`reference_rows` computes the same from a float64
log_softmax: for the rows the hook leaves to it, and for the inputs it does not serve.
:class:`~ce_cli.audit.metrics.AuditStats` sums them.
"""

from __future__ import annotations

import math
import threading
from typing import Any, NamedTuple

import numpy as np

from ..loss import LossSpec, normalise
from ..loss.half import _widen


class Values(NamedTuple):
    """Per-row values of counted rows, which :class:`~ce_cli.audit.metrics.AuditStats`
    sums."""

    pred: np.ndarray  # the top class (the first of equal ones)
    conf: np.ndarray  # its probability (float64)
    lp_t: np.ndarray  # log-probability of the target (float64)
    rank: np.ndarray | None  # classes more probable than the target (None: not needed)
    entropy: np.ndarray  # of the softmax (float64)
    nonfinite: np.ndarray  # the row holds NaN or +inf
    redo: np.ndarray | None = None  # the kernel could not take the row (KernelRows)


def reference_rows(x: np.ndarray, t: np.ndarray, spec: LossSpec, rank: bool) -> Values:
    """Per-row values of ``(m, C)`` rows with labels ``t``: log_softmax in float64."""
    xf = x.astype(np.float64, copy=False)
    logp = normalise(xf, spec.input_kind).values
    r = np.arange(t.shape[0])
    lp_t = logp[r, t]
    p = np.exp(logp)
    p_t = p[r, t]
    pred = np.argmax(np.nan_to_num(p, nan=-1.0), axis=1)
    plogp = np.where(p > 0, p * logp, 0.0)
    return Values(pred=pred, conf=p[r, pred], lp_t=lp_t,
                   rank=(p > p_t[:, None]).sum(axis=1) if rank else None,
                   entropy=-plogp.sum(axis=1),
                   nonfinite=(np.isnan(xf) | (xf == np.inf)).any(axis=1))


#: The smallest top-class term ``exp(x_max)`` whose row :class:`KernelRows` takes (as the
#: kernel's own bound): no term that matters is then a subnormal or flushed to 0.
_SAFE_TOP = {np.dtype(np.float32): 2.0 ** -80, np.dtype(np.float64): 2.0 ** -900}

#: Targets whose log-probability is below this (p_t near float64's underflow, 0 for a
#: -inf logit) are ranked the reference way: float64 ranks them among equal zeros.
_LOW_LOG_P = -700.0

#: Confidences this close to a calibration bin's edge are taken the reference way, so
#: that the bins count exactly what float64 counts (the fast ones are good to ~1e-7).
_EDGE = 1e-6


class KernelRows:
    """The audit's per-row values from the kernel's own pass: a kernel hook
    (:class:`~ce_cli.loss.hook.ChunkHook`; see
    :meth:`~ce_cli.audit.metrics.AuditStats.kernel_rows`).

    Per chunk, in the kernel's thread, from its unshifted ``e = exp(x)`` (float16 logits,
    or chunks the fast kernel did not take, get their own in float32 or float64):
    ``pred = argmax(x)``, ``R = sum_{c != pred} e_c / e_pred`` (a sum without the top
    term, so a confident row's R of 1e-20 keeps its digits), the confidence
    ``1 / (1 + R)``, ``lp_t = (x_t - x_max) - log1p(R)``, the entropy
    ``log1p(R) + sum_c p_c (x_max - x_c)`` (every term >= 0: nothing cancels) and the
    rank ``#{c: x_c > x_t}`` (compared as logits: float64 probabilities tie only where
    the logits differ by less than an ulp of their log-sum-exp). Rows with NaN or +inf,
    whose top term over- or underflows, whose target's probability (nearly) underflows,
    or whose confidence lies within :data:`_EDGE` of an inner bin edge are marked for
    the float64 reference (:func:`reference_rows`).
    """

    def __init__(self, top_k: tuple[int, ...], bins: int) -> None:
        self.rank = max(top_k, default=1) > 1  # else rank < 1 is all that is asked
        self.bins = bins
        self.block: np.ndarray | None = None

    def start(self, x: np.ndarray) -> None:
        """A block (or whole array) begins: room for its positions' values."""
        n = x.shape[0] * math.prod(x.shape[2:]) if x.ndim > 1 else 1
        self.block = x
        self.pred = np.empty(n, np.intp)
        self.conf = np.empty(n)
        self.lp_t = np.empty(n)
        self.entropy = np.empty(n)
        self.rank_of = np.empty(n, np.int64)
        self.redo = np.ones(n, np.bool_)  # a position no chunk() reached: the reference

    def values(self, sel: np.ndarray | None) -> Values:
        """The values of the block's rows ``sel`` (None: all of them, as views)."""
        n = self.pred.shape[0]
        sel = slice(None) if sel is None else sel
        return Values(pred=self.pred[sel], conf=self.conf[sel], lp_t=self.lp_t[sel],
                       rank=self.rank_of[sel], entropy=self.entropy[sel],
                       nonfinite=np.zeros(n, np.bool_)[sel], redo=self.redo[sel])

    def chunk(self, x: np.ndarray, t: np.ndarray, offset: int, e: np.ndarray | None
              ) -> None:
        m = t.shape[0]
        if m == 0 or x.shape[1] == 0 or self.block is None:
            return
        if e is None:
            x, e = _own_exp(x)
        elif x.dtype != e.dtype:  # float16 logits with their float32 exp
            x = _widened(x, e.dtype)
        if x.ndim == 3:  # (g, C, L) planes: position i is (i // L, :, i % L)
            g, _, span = x.shape
            key = (g, 1, span)
            pred = _plane_argmax(x).reshape(m)
            gi, li = np.divmod(np.arange(m), span)
            at = (gi, pred, li)
            top = x[at].reshape(key)
            xt = x[gi, t, li].reshape(key)
            e_top = e[at]
            e[at] = 0  # the other classes' sum, then e as it was
            rest = _class_sum(e)
            e[at] = e_top
        else:  # (m, C) rows: flat indices where contiguous (nearly always)
            key = (m, 1)
            pred = np.argmax(x, axis=1)
            if x.flags.c_contiguous and e.flags.c_contiguous:
                xf, ef = x.reshape(-1), e.reshape(-1)
                at = np.arange(0, x.size, x.shape[1])
                xt = xf.take(at + t).reshape(key)
                at += pred
            else:
                xf, ef = x, e
                at = (np.arange(m), pred)
                xt = x[at[0], t].reshape(key)
            top = xf[at].reshape(key)
            e_top = ef[at]
            ef[at] = 0  # the other classes' sum, then e as it was
            rest = _class_sum(e)
            ef[at] = e_top
        d = np.subtract(x, top, out=_scratch("d", x.shape, x.dtype))
        w = _weighted_sum(d, e)  # sum_c e_c (x_c - x_max) <= 0
        if not np.isfinite(w).all():  # 0 * -inf at a -inf logit: that class adds nothing
            np.subtract(x, top, out=d)
            np.maximum(d, np.finfo(d.dtype).min, out=d)
            w = _weighted_sum(d, e)
        sl = slice(offset, offset + m)
        if self.rank:
            beats = np.greater(x, xt, out=_scratch("b", x.shape, np.bool_))
            self.rank_of[sl] = _class_count(beats)
        else:
            self.rank_of[sl] = (xt < top).reshape(m)
        self.pred[sl] = pred.reshape(m)
        e_top = e_top.reshape(m).astype(np.float64)
        rest /= e_top  # R = sum_{c != top} p_c / p_top
        lse = np.log1p(rest)  # log-sum-exp of x - x_max
        rest += 1.0
        conf = np.divide(1.0, rest, out=self.conf[sl])  # p_top
        lp_t = np.subtract(xt.reshape(m), top.reshape(m), dtype=np.float64, out=self.lp_t[sl])
        lp_t -= lse
        w /= e_top
        w *= conf  # sum_c p_c (x_c - x_max)
        entropy = np.subtract(lse, w, out=self.entropy[sl])
        ok = e_top >= _SAFE_TOP[e.dtype]
        ok &= np.isfinite(entropy)  # NaN or +inf logits
        # p_t of 0 (a -inf target): float64 ranks only the classes that did not underflow
        ok &= lp_t > _LOW_LOG_P
        # a confidence at an inner bin edge (the outer ones, 0 and 1, bin alike either way)
        edge = conf * self.bins
        near = np.abs(edge - np.rint(edge)) <= _EDGE * self.bins
        if near.any():
            i = np.flatnonzero(near)
            k = np.rint(edge[i])
            ok[i[(k > 0) & (k < self.bins)]] = False
        np.logical_not(ok, out=self.redo[sl])


_LOCAL = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A per-thread buffer of ``shape``, reused from chunk to chunk (contents garbage)."""
    bufs: dict[tuple[str, str], np.ndarray] = _LOCAL.__dict__.setdefault("bufs", {})
    n = math.prod(shape)
    key = (name, np.dtype(dtype).char)
    b = bufs.get(key)
    if b is None or b.shape[0] < n:
        b = np.empty(max(n, 1), dtype)
        if n <= 1 << 20:  # a chunk's worth; a giant single row is not kept
            bufs[key] = b
    return b[:n].reshape(shape)


def _own_exp(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A chunk the fast kernel did not take: its logits in float32 (from float16) or as
    they are, copied to the kernel's layouts, and their exp."""
    xc = _widened(x, np.float32 if x.dtype.itemsize < 4 else x.dtype)
    return xc, np.exp(xc, out=_scratch("e", x.shape, xc.dtype))


def _widened(x: np.ndarray, dtype: Any) -> np.ndarray:
    """``x`` as ``dtype``, C-contiguous, in a per-thread buffer (float16 by the loss's
    table of all 65536 values, three times as fast as a cast)."""
    xc = _scratch("x", x.shape, dtype)
    if x.dtype == np.float16 and xc.dtype == np.float32:
        _widen(x, xc)
    else:
        np.copyto(xc, x)
    return xc


def _plane_argmax(x: np.ndarray) -> np.ndarray:
    """The first top class of each position of ``(g, C, L)`` planes, ``(g, L)``: for a few
    classes their max, then class by class downwards (``argmax(axis=1)`` copies the
    planes to rows first, three times slower). NaN positions get some class."""
    g, c, span = x.shape
    if c > 64:
        return np.argmax(x, axis=1)
    top = np.maximum.reduce(x, axis=1)
    pred = np.zeros((g, span), np.intp)
    hit = np.empty((g, span), np.bool_)
    for k in range(c - 1, -1, -1):
        np.copyto(pred, k, where=np.equal(x[:, k], top, out=hit))
    return pred


def _class_sum(a: np.ndarray) -> np.ndarray:
    """Sums over the classes (axis 1) of rows or planes, one per position, in float64.

    Row sums are einsum's in the rows' dtype (fast, and a row's sum does not depend on
    where it sits), taken in pieces of at most :data:`_PIECE` classes (whose error stays
    near 1e-7) that are added in float64; plane sums, class after class, accumulate in
    float64 past 64 classes (as the kernel's).
    """
    if a.ndim == 3:
        wide = a.shape[1] > 64
        return np.add.reduce(a, axis=1, dtype=np.float64 if wide else None).reshape(-1) \
            .astype(np.float64, copy=False)
    m, c = a.shape
    if c <= _PIECE:
        return np.einsum("mc->m", a).astype(np.float64, copy=False)
    k = c // _PIECE
    parts = np.einsum("mkq->mk", a[:, :k * _PIECE].reshape(m, k, _PIECE))
    total = parts.sum(axis=1, dtype=np.float64)
    total += np.einsum("mc->m", a[:, k * _PIECE:])
    return total


#: Classes per piece of a float32 row sum (einsum's error grows with the count: 1e-6 near
#: 30,000 classes, 1e-7 at 4,096)
_PIECE = 4096


def _weighted_sum(d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``sum_c d_c e_c`` per position, in float64 (``d`` is scratch: it may be overwritten):
    einsum's products and sums for rows of at most :data:`_PIECE` classes, else the
    products, then :func:`_class_sum`."""
    if d.ndim == 2 and d.shape[1] <= _PIECE:
        return np.einsum("mc,mc->m", d, e).astype(np.float64)
    return _class_sum(np.multiply(d, e, out=d))


def _class_count(b: np.ndarray) -> np.ndarray:
    """True values over the classes (axis 1) of rows or planes, one count per position."""
    if b.ndim == 3:
        return np.add.reduce(b, axis=1, dtype=np.int32).reshape(-1)
    if b.shape[1] < 256:  # bytes summed as bytes: no count overflows
        return np.einsum("mc->m", b.view(np.uint8))
    if b.shape[0] <= 64:  # a few long rows: count_nonzero of each is 3x einsum's speed
        return np.array([np.count_nonzero(row) for row in b], np.int64)
    return np.einsum("mc->m", b.view(np.uint8), dtype=np.int32)
