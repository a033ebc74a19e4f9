"""Sums of the kernel: over a row's classes, over a plane's classes, and of a chunk.

A row's sum must not depend on where the row sits in its block, and a chunk's sum is
taken wider than its terms, so that however positions are cut into chunks, threads or
shards the totals agree to an ulp (and bit for bit for the same cut).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .threads import _buf

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

#: A chunk's sum is taken in a wider type than its terms, so that how the positions are
#: cut into chunks, threads or shards changes the totals by an ulp at most: float32 (and
#: half) terms in float64, float64 terms in long double (80-bit on x86; elsewhere it
#: may be float64 itself).
_WIDER = {np.dtype(np.float16): _F64, np.dtype(np.float32): _F64,
          np.dtype(np.float64): np.dtype(np.longdouble)}


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
