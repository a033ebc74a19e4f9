"""What the kernel tells an observer about each chunk it computes (:class:`ChunkHook`)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ChunkHook(Protocol):
    """Someone who reads the kernel's chunks as it computes them (the audit statistics
    take their softmax from the kernel's ``exp``, in its threads, while it is in cache).

    ``start(x)`` is called before the chunks of each block (or array) ``x`` of class-index
    targets; ``chunk(x, t, offset, e)`` then for each chunk, in the thread computing it:
    ``x`` the chunk's logits as the kernel reads them (``(m, C)`` rows with the classes
    contiguous, or ``(g, C, L)`` planes), ``t`` its ``m`` targets with ignored ones set
    to 0, ``offset`` its first position in the block, and ``e = exp(x)`` (unshifted, in
    the compute dtype) where the fast kernel took it, else None. ``e`` is the kernel's
    scratch, still to be read: a hook that writes into it puts it back before returning.
    float16 logits in rows come widened to float32 with the half kernel's row-shifted
    ``e = exp(x - max)`` (the audit's hook takes ratios of ``e`` within a row, so either
    serves); float16 planes come as they are, with None.
    """

    def start(self, x: np.ndarray) -> None: ...

    def chunk(self, x: np.ndarray, t: np.ndarray, offset: int, e: np.ndarray | None
              ) -> None: ...
