"""The kernel: :class:`LossAccumulator` turns blocks of logits into torch's loss.

It cuts blocks into cache-sized chunks (:data:`~ce_cli.loss.blocks.KERNEL_ELEMENTS`)
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

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import blocks
from .blocks import (
    _Chunk,
    _chunk_rows,
    _kernel_layout,
    _row_chunks,
    _rows_per_chunk,
    _rows_view,
    _targets_like,
)
from .half import (
    HalfCascade,
    _class_sums,
    _half_lse,
    _per_class,
    _scaled,
    _smooth_target,
    bfloat16_log_softmax,
    half_lp_at,
    half_rows,
    half_smooth_term,
    round_bfloat16,
)
from .hook import ChunkHook
from .kinds import normalise, row_lse
from .reduce import index_reduce
from .spec import LossSpec, _check_targets
from .sums import (
    _F64,
    _SAFE_SUM,
    _SAFE_TERM,
    _SEQUENTIAL_CLASSES,
    _WIDE_ROW_CLASSES,
    _gather,
    _plane_sums,
    _row_sums,
    _total,
)
from .threads import _buf, _run_parallel, _workspace, default_threads


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

    @classmethod
    def sum(cls, parts: list[LossTotals]) -> LossTotals:
        """The totals of all ``parts`` (shards, partial results): counts added, float sums
        added exactly (``math.fsum``), so their order changes nothing."""
        return cls(**{
            name: (math.fsum(getattr(p, name) for p in parts)
                   if isinstance(default, float) else sum(getattr(p, name) for p in parts))
            for name, default in ((f, getattr(cls, f)) for f in cls.__dataclass_fields__)})


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


_TOTAL_FIELDS = ("positions", "counted", "ignored", "nll", "smooth", "denominator", "nonfinite")


class LossAccumulator:
    """Feed ``(m, C)`` blocks of logits with their targets; read torch's loss at the end.

    >>> from ce_cli.loss import make_spec
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
                 threads: int | None = None, hook: ChunkHook | None = None) -> None:
        self.spec = spec
        self.hook = hook  # told about every chunk of class-index targets
        self.totals = LossTotals()
        self.keep_losses = keep_losses
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._parts: list[np.ndarray] = []
        self._may_ignore = True  # whether a block's targets may hold ignore_index
        dt = spec.input_dtype
        # torch computes half log_softmax in float, rounding some steps to half (_half_lse)
        self._cdt = np.dtype(np.float32) if dt == np.float16 else dt
        self._lse = functools.partial(_half_lse, class_last=spec.class_last) \
            if dt == np.float16 else row_lse
        # The fast kernel: log-sum-exp without the max shift, rows outside its safe range
        # (and every non-finite result) recomputed the shifted way torch computes them.
        # (C=1 stays on torch's arithmetic: its log_softmax is exactly 0, unshifted is not.)
        self._fast = spec.input_kind == "logits" and dt in _SAFE_SUM and spec.n_classes > 1 \
            and not spec.bfloat16
        # float16 logits, and bfloat16 ones (held in float32): torch's half arithmetic in
        # float32 passes (half_lp_at)
        self._half = spec.input_kind == "logits" and (dt == np.float16 or spec.bfloat16) \
            and spec.n_classes > 0
        w = spec.weight
        self._w_c = None if w is None else np.ascontiguousarray(w, dtype=self._cdt)
        self._w_sum = 0.0 if w is None else float(np.add.reduce(self._w_c, dtype=_F64))
        # float16 class indices: torch's nll sums are half sums in its order
        self._cascade = HalfCascade(bfloat16=spec.bfloat16) \
            if (dt == np.float16 or spec.bfloat16) and spec.target_kind == "index" else None

    @classmethod
    def from_totals(cls, spec: LossSpec, totals: LossTotals) -> LossAccumulator:
        """An accumulator that has seen ``totals`` (say, merged partial results), ready to
        :meth:`finalize`. It holds no per-position losses, and float16 sums fall back from
        torch's half cascade to the float totals rounded once."""
        acc = cls(spec)
        acc.totals = totals
        return acc

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
            rows = _rows_per_chunk(spec.n_classes)
            if self._half and not spec.class_last:
                # class sums run down (C, m) columns: m of 16 or more keeps them fast
                rows = max(rows, min(-(-x.shape[0] // self.threads),
                                     _rows_per_chunk(spec.n_classes, 4 * blocks.KERNEL_ELEMENTS)))
            self._consume(list(_row_chunks(x, t, 0, rows)), out, x)
        if self.keep_losses:
            self._parts.append(out)
        return out

    def _feed(self, x: np.ndarray, t: np.ndarray, may_ignore: bool = True) -> None:
        """Add a whole validated array (``evaluate``): all its chunks in one parallel run."""
        self._may_ignore = may_ignore
        chunks = list(blocks.walk(x, t, self.spec.target_kind, blocks.KERNEL_ELEMENTS,
                                  planes=True))
        n = chunks[-1][2] + _chunk_rows(chunks[-1]) if chunks else 0
        out = np.empty(n, dtype=self.spec.dtype) if self.keep_losses else None
        with np.errstate(all="ignore"):
            self._consume(chunks, out, x)
        if out is not None:
            self._parts.append(out)

    def _consume(self, chunks: list[_Chunk], out: np.ndarray | None, x: np.ndarray) -> None:
        index = self.spec.target_kind == "index"
        if self.hook is not None and index:
            self.hook.start(x)  # the chunks of block (or array) x follow

        def work(i: int) -> tuple[Any, ...]:
            xb, tb, off = chunks[i]
            m = _chunk_rows(chunks[i])
            o = out[off:off + m] if out is not None else _buf("out", m, self.spec.dtype)
            return self._index_chunk(xb, tb, o, off) if index else self._probs_chunk(xb, tb, o)

        tot = self.totals
        for part in _run_parallel(len(chunks), work, self.threads):
            for name, value in zip(_TOTAL_FIELDS, part):
                setattr(tot, name, getattr(tot, name) + value)
            if self._cascade is not None and len(part) > len(_TOTAL_FIELDS):
                self._cascade.feed(*part[-1])

    # -- the kernel: class-index targets ----------------------------------------------------

    def _index_chunk(self, xb: np.ndarray, tb: np.ndarray, out: np.ndarray, off: int = 0
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
            nll, smooth, nll_sum, smooth_sum, clean = self._fast_index(xb, safe_t, ignored, out,
                                                                       off)
        else:
            half = self._half and m
            if self.hook is not None and not (half and half_rows(xb, spec.class_last)):
                self.hook.chunk(xb, safe_t, off, None)
            if half:
                nll, smooth = self._half_index(xb, safe_t, off)
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
            np.add(_scaled(nll, 1.0 - eps, spec.bfloat16),
                   _scaled(smooth, _per_class(eps, spec.n_classes), spec.bfloat16), out=out)
            if spec.bfloat16:
                np.copyto(out, round_bfloat16(out))
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
                    out: np.ndarray, off: int = 0
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
        if self.hook is not None:  # before the smoothing term reuses e
            self.hook.chunk(x, safe_t, off, e)
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

    def _half_index(self, xb: np.ndarray, safe_t: np.ndarray, off: int
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`_reference_index` for float16 logits: the same arithmetic, to the bit,
        in float32 passes over reused buffers (:func:`~ce_cli.loss.half.half_lp_at`,
        which also hands the hook its chunk of rows)."""
        spec = self.spec
        lp_t, shift, lse = half_lp_at(xb, safe_t, spec.class_last, self.hook, off,
                                      bfloat16=spec.bfloat16)
        nll = self._target_nll(lp_t, safe_t)
        smooth = None
        if spec.smoothing:
            xc = _rows_view(xb).astype(self._cdt)
            smooth = self._smooth_term(xc, shift, lse).astype(spec.dtype, copy=False)
        return nll, smooth

    def _target_nll(self, lp_t: np.ndarray, safe_t: np.ndarray) -> np.ndarray:
        """``-w[t] * lp[t]`` in the result's dtype, each step rounded as torch rounds it
        (bfloat16 values, held in float32, rounded explicitly)."""
        spec = self.spec
        lp_t = round_bfloat16(lp_t) if spec.bfloat16 else lp_t.astype(spec.dtype, copy=False)
        if spec.weight is None:
            return -lp_t
        nll = -lp_t * _gather(spec.weight, safe_t)
        return round_bfloat16(nll) if spec.bfloat16 else nll

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
            lp_t, shift, lse = normalise(xc, spec.input_kind, lse=self._lse,
                                         at=(np.arange(m), safe_t))
        nll = self._target_nll(lp_t, safe_t)
        smooth = None
        if spec.smoothing:
            smooth = self._smooth_term(xc, shift, lse).astype(dt, copy=False)
        return nll, smooth

    def _smooth_term(self, x: np.ndarray, shift: np.ndarray | None, lse: np.ndarray | None
                     ) -> np.ndarray:
        """``-sum_c w[c] * lp[c]`` per row, without building the full log_softmax.

        sum_c w_c (x_c - shift - lse) = sum_c w_c x_c - (shift + lse) sum_c w_c: with
        non-negative weights both parts have the result's sign, so nothing cancels.
        """
        w = self.spec.weight
        if self.spec.bfloat16 or self.spec.input_dtype == np.float16:
            lp = self._log_probs(x) if shift is None or lse is None \
                else (x - shift[:, None]) - lse[:, None]
            return half_smooth_term(lp, w, self.spec.bfloat16)
        if shift is None or lse is None:
            lp = self._log_probs(x)
            return -(lp.sum(axis=1) if w is None else (lp * w).sum(axis=1))
        sx = x - shift[:, None]
        if w is None:
            return -(sx.sum(axis=1) - lse * x.shape[1])
        wc = w.astype(x.dtype, copy=False)
        if not np.isfinite(wc).all():  # inf * (the top class's shifted 0) would be NaN
            return -((sx - lse[:, None]) * wc).sum(axis=1)
        return -((sx * wc).sum(axis=1) - lse * wc.sum(dtype=x.dtype))

    def _log_probs(self, x: np.ndarray) -> np.ndarray:
        """log_softmax of ``(m, C)`` rows in the compute dtype, as torch's reference takes it."""
        return normalise(x, self.spec.input_kind, lse=self._lse).values

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
        elif spec.bfloat16:
            lp = bfloat16_log_softmax(x, spec.class_last)
        else:
            lp = self._log_probs(x.astype(self._cdt, copy=False))
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
            if spec.bfloat16 and spec.target_kind == "index":  # torch's are bfloat16s
                losses = round_bfloat16(losses)
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
                loss = np.asarray(index_reduce(spec, tot, self._cascade, reduction), dtype=dt)
        return LossResult(loss=loss, reduction=reduction, spec=spec, totals=tot, losses=losses)
