"""Walking arrays in blocks: whole inputs into the pipeline's blocks and the kernel's chunks.

One walker (:func:`walk`) cuts an input into pieces of about a given number of values,
in torch's position order, copying as little as possible: the command line cuts its read
blocks into ``(m, C)`` blocks with it (:func:`iter_blocks`, :data:`BLOCK_ELEMENTS`),
:func:`~ce_cli.loss.evaluate` a whole array into kernel chunks (:data:`KERNEL_ELEMENTS`,
class-first planes allowed). The helpers below lay a chunk out as the kernel reads it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .threads import _buf

#: Elements per block that :func:`iter_blocks` yields: the unit of one
#: :meth:`~ce_cli.loss.LossAccumulator.update` call, which cuts it into kernel chunks for
#: its threads.
BLOCK_ELEMENTS = 1 << 20

#: Elements per kernel call: one thread's chunk plus its exp scratch stay in cache
#: (256K-1M were best here; 16K-element chunks lose 1.5-3x to per-call overhead).
KERNEL_ELEMENTS = 1 << 18

#: ``(x, target, offset)``: ``x`` is ``(m, C)`` in any layout or a class-first group
#: ``(g, C, L)`` of K-dim samples; ``offset`` is the chunk's first position.
_Chunk = tuple[np.ndarray, np.ndarray, int]


def _rows_per_chunk(c: int, elements: int | None = None) -> int:
    """Rows of ``c`` classes in ``elements`` values (default :data:`KERNEL_ELEMENTS`)."""
    return max(1, (KERNEL_ELEMENTS if elements is None else elements) // max(c, 1))


def _chunk_rows(chunk: _Chunk) -> int:
    x = chunk[0]
    return x.shape[0] if x.ndim == 2 else x.shape[0] * x.shape[2]


def _even(n: int, step: int) -> int:
    """A step of at most ``step`` that shares ``n > 0`` evenly (no sliver at the end)."""
    return -(-n // -(-n // step))


def _row_chunks(x: np.ndarray, t: np.ndarray, offset: int, rows: int, even: bool = True
                ) -> Iterator[_Chunk]:
    """At most ``rows`` rows per chunk. ``even``: the rows shared evenly (no sliver at the
    end), and no rows make one empty chunk; else plain steps, and no rows no chunk."""
    n = x.shape[0]
    if even:
        if n == 0:
            yield x, t, offset
            return
        rows = _even(n, rows)
    for start in range(0, n, rows):
        yield x[start:start + rows], t[start:start + rows], offset + start


def walk(x: np.ndarray, target: np.ndarray, target_kind: str, elements: int, *,
         planes: bool = False) -> Iterator[_Chunk]:
    """Cut a whole input into blocks of about ``elements`` values, in torch's position
    order; yields ``(x, target, offset)``, ``offset`` being the block's first position.

    ``(N, C, d1..dk)`` inputs are never copied whole. With ``planes=False`` every block
    is ``(m, C)``, class axis last, its targets flat (index) or ``(m, C)`` (probs): a
    block of one large sample is a transposed view (the accumulator reads it in place),
    blocks of small samples are moved to class-last one block at a time. With
    ``planes=True`` (the kernel's chunks) groups of small samples stay class-first
    ``(g, C, L)`` planes and blocks of a large sample ``(1, C, L)`` ones, so nothing is
    copied; rows are shared evenly between chunks (no sliver for the last thread), and
    an input without positions is one empty chunk.
    """
    probs = target_kind == "probs"
    if x.ndim == 1:
        yield x[None, :], (target.reshape(1, -1) if probs else target.reshape(1)), 0
        return
    n, c = x.shape[0], x.shape[1]
    rows = _rows_per_chunk(c, elements)
    if x.ndim == 2:
        yield from _row_chunks(x, target, 0, rows, even=planes)
        return
    spatial = math.prod(x.shape[2:])
    x3 = x.reshape(n, c, spatial)
    t3 = target.reshape(n, c, spatial) if probs else target.reshape(n, spatial)
    if planes and (n == 0 or spatial == 0):
        yield _as_rows(x3), (_as_rows(t3) if probs else t3.reshape(-1)), 0
        return
    per_sample = c * spatial
    if per_sample <= elements:  # groups of whole samples
        group = max(1, elements // max(per_sample, 1))
        for start in range(0, n, group):
            xb, tb = x3[start:start + group], t3[start:start + group]
            if not planes:  # moved to class-last, one block at a time
                xb, tb = _as_rows(xb), (_as_rows(tb) if probs else tb.reshape(-1))
            yield xb, tb, start * spatial
        return
    step = _even(spatial, rows) if planes else rows  # pieces of one sample
    for i in range(n):
        for s in range(0, spatial, step):
            xb, tb = x3[i:i + 1, :, s:s + step], t3[i:i + 1, ..., s:s + step]
            if not planes:  # a view: the accumulator reads class-first data in place
                xb, tb = xb[0].T, (tb[0].T if probs else tb[0])
            yield xb, tb, i * spatial + s


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
    for xb, tb, _ in walk(x, target, target_kind, block_elements):
        yield xb, tb


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
