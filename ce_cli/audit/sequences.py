"""Per-sequence results: a language model's loss and perplexity per document.

A sequence is every leading index of the targets but the last axis, the tokens: one row
of ``(B, L)`` labels, one ``(b, h)`` of ``(B, H, L)``. Its loss is torch's mean over its
counted tokens (the per-token losses summed, divided by their count, or by the sum of
their class weights with ``--weight``), its perplexity ``exp`` of that mean. The sums
are kept per sequence in float64, O(sequences) memory, and add up across blocks,
shards and partials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SequenceStats:
    """Sums per sequence; ``length`` is the tokens per sequence."""

    length: int
    #: counted tokens, the summed per-token losses, and what the mean divides them by
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    nll_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weight_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: how many sequences there are (the arrays grow by doubling)
    n: int = 0

    def update(self, losses: np.ndarray, counted: np.ndarray, weights: np.ndarray | None,
               offset: int) -> None:
        """Add torch's per-token losses of the flat positions ``offset ...``: ``counted``
        says which tokens count, ``weights`` what each adds to the denominator (None: 1
        for each counted token)."""
        m = losses.shape[0]
        if m == 0 or self.length == 0:
            return
        first = offset // self.length
        last = (offset + m - 1) // self.length
        ids = np.arange(offset, offset + m, dtype=np.int64) // self.length - first
        size = last - first + 1
        self._grow(last + 1)
        with np.errstate(all="ignore"):
            loss = np.where(counted, losses.astype(np.float64), 0.0)
        self.tokens[first:last + 1] += np.bincount(ids, weights=counted,
                                                   minlength=size).astype(np.int64)
        self.nll_sum[first:last + 1] += np.bincount(ids, weights=loss, minlength=size)
        den = counted if weights is None else np.where(counted, weights, 0.0)
        self.weight_sum[first:last + 1] += np.bincount(ids, weights=den, minlength=size)

    def extend(self, n: int) -> None:
        """Sequences up to ``n`` exist, with no tokens yet (a sequence of length 0)."""
        self._grow(n)

    def _grow(self, n: int) -> None:
        if n > self.tokens.shape[0]:
            size = max(n, 2 * self.tokens.shape[0], 64)
            for name in ("tokens", "nll_sum", "weight_sum"):
                old = getattr(self, name)
                new = np.zeros(size, old.dtype)
                new[:old.shape[0]] = old
                setattr(self, name, new)
        self.n = max(self.n, n)

    def then(self, other: SequenceStats) -> SequenceStats:
        """These sequences followed by ``other``'s (the next shard's)."""
        out = SequenceStats(self.length)
        out.tokens = np.concatenate([self.tokens[:self.n], other.tokens[:other.n]])
        out.nll_sum = np.concatenate([self.nll_sum[:self.n], other.nll_sum[:other.n]])
        out.weight_sum = np.concatenate([self.weight_sum[:self.n],
                                         other.weight_sum[:other.n]])
        out.n = self.n + other.n
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """One row per sequence: ``sequence``, ``tokens``, ``nll_sum``, ``nll_mean``,
        ``perplexity`` (NaN where no token counts)."""
        n = self.n
        with np.errstate(all="ignore"):
            mean = self.nll_sum[:n] / self.weight_sum[:n]
            mean[self.tokens[:n] == 0] = np.nan
            ppl = np.exp(mean)
        return {"sequence": np.arange(n, dtype=np.int64), "tokens": self.tokens[:n].copy(),
                "nll_sum": self.nll_sum[:n].copy(), "nll_mean": mean, "perplexity": ppl}

    def summary(self, worst: int = 5) -> dict[str, Any]:
        """The token-weighted perplexity, the spread of the per-sequence perplexities and
        the sequences with the highest mean loss (JSON-ready; NaN as None)."""
        cols = self.columns()
        n = self.n
        with np.errstate(all="ignore"):
            total = float(self.nll_sum[:n].sum()) / float(self.weight_sum[:n].sum()) \
                if n else math.nan
        ppl = cols["perplexity"]
        have = np.isfinite(cols["nll_mean"])
        p = ppl[have]
        spread = {k: (_num(np.percentile(p, q)) if p.size else None)
                  for k, q in (("p10", 10), ("median", 50), ("p90", 90))}
        order = np.flatnonzero(have)
        order = order[np.lexsort((order, -cols["nll_mean"][order]))][:worst]
        return {
            "sequences": n,
            "tokens_per_sequence": self.length,
            "with_tokens": int(have.sum()),
            "token_weighted_perplexity": _num(math.exp(total)) if math.isfinite(total)
            and total < 700 else None,
            "perplexity": spread,
            "worst": [{"sequence": int(i), "tokens": int(cols["tokens"][i]),
                       "nll_mean": _num(cols["nll_mean"][i]),
                       "perplexity": _num(ppl[i])} for i in order],
        }

    def to_doc(self) -> dict[str, Any]:
        """Plain lists (non-finite floats stay floats: the partial encodes them)."""
        n = self.n
        return {"length": self.length, "tokens": self.tokens[:n].tolist(),
                "nll_sum": self.nll_sum[:n].tolist(),
                "weight_sum": self.weight_sum[:n].tolist()}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SequenceStats:
        out = cls(int(doc["length"]))
        out.tokens = np.asarray(doc["tokens"], np.int64).reshape(-1)
        out.nll_sum = np.asarray(doc["nll_sum"], np.float64).reshape(-1)
        out.weight_sum = np.asarray(doc["weight_sum"], np.float64).reshape(-1)
        out.n = out.tokens.shape[0]
        if out.nll_sum.shape[0] != out.n or out.weight_sum.shape[0] != out.n:
            raise ValueError("per-sequence lists of different lengths")
        return out


def _num(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f

