"""What the input holds: logits, probabilities or log-probabilities (``--input-kind``).

:func:`normalise` is the one place the three kinds part ways: the loss's reference
arithmetic, its audit statistics and the preview's probabilities all read the input
through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Normalised(NamedTuple):
    """Rows read as their kind says: ``values`` are log-probabilities (or probabilities);
    for logits, also the row shift (the max) and the log-sum-exp of the shifted row."""

    values: np.ndarray
    shift: np.ndarray | None = None
    lse: np.ndarray | None = None


def row_lse(shifted: np.ndarray) -> np.ndarray:
    """``log(sum_c exp(shifted))`` per row (float32 and float64 input)."""
    return np.log(np.exp(shifted).sum(axis=1))


def normalise(x: np.ndarray, input_kind: str, *, log: bool = True,
              lse: Callable[[np.ndarray], np.ndarray] = row_lse,
              at: tuple[np.ndarray, np.ndarray] | None = None) -> Normalised:
    """log_softmax of ``(m, C)`` rows (``log=False``: softmax) as the loss reads them.

    Logits are shifted by their row max, as torch does, so 1e30-sized logits stay
    exact; a row with +inf or NaN, or all -inf, gives NaN as in torch. ``lse`` takes
    the log-sum-exp of the shifted rows (half input rounds it as torch does, see
    :func:`~ce_cli.loss.half._half_lse`). Probabilities are logged, log-probabilities
    taken as they are. ``at=(rows, cols)``: only those entries, gathered before the
    normalisation (the shift and lse are still the whole rows'). No classes: ``x``.

    >>> normalise(np.array([[0.0, 0.0]]), "logits").values
    array([[-0.69314718, -0.69314718]])
    >>> normalise(np.array([[0.25, 0.75]]), "probs", log=False).values
    array([[0.25, 0.75]])
    """
    if x.shape[1] == 0:  # no classes: nothing to normalise
        return Normalised(x)
    if input_kind == "log-probs":
        picked = x if at is None else x[at]
        return Normalised(picked if log else np.exp(picked))
    if input_kind == "probs":
        picked = x if at is None else x[at]
        return Normalised(np.log(picked) if log else picked)
    shift = x.max(axis=1, keepdims=True)
    shifted = x - shift
    if not log:
        e = np.exp(shifted)
        return Normalised(e / e.sum(axis=1, keepdims=True), shift[:, 0])
    s = lse(shifted)
    if at is None:
        return Normalised(shifted - s[:, None], shift[:, 0], s)
    return Normalised((x[at] - shift[:, 0]) - s, shift[:, 0], s)
