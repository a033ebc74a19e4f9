"""Is model B better than model A? The paired difference of two losses, with its error.

Both models are scored on the same targets, so their per-position losses pair up. The
positions of one sample (the first axis: a sequence's tokens, an image's pixels) are not
independent, so the standard error is clustered by sample. With ``l`` torch's per-position
losses (``reduction='none'``, already weighted by ``w[t]``) and ``w`` what torch's mean
divides by (``w[t]`` of counted class indices, 1 for each position of probabilities):

    d_g = sum over cluster g of (lB - lA),   W_g = sum over g of w
    D   = sum d_g / sum W_g                  (= mean B - mean A, torch's means)
    SE  = sqrt(G / (G - 1) * sum (d_g - D W_g)^2) / sum W_g

over the ``G`` clusters that hold a counted target. The sums merge exactly (shards,
partials): each part keeps ``sum (d_g - D_p W_g)^2`` and ``sum (d_g - D_p W_g) W_g`` about
its own ``D_p``, moved to the merged ``D`` without cancellation.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the two-sided 95% quantile of the normal distribution
Z95 = 1.959963984540054
#: fewer clusters than this: the normal interval is said to be rough
FEW_CLUSTERS = 30


@dataclass
class PairedStats:
    """Sums behind the paired difference of two models' losses (see the module)."""

    clusters: int = 0  # G: clusters with a counted target
    sum_w: float = 0.0  # sum W_g
    sum_d: float = 0.0  # sum d_g
    sum_ww: float = 0.0  # sum W_g^2
    centre: float = 0.0  # D_p, the reference of m2 and cross (0 until there are weights)
    m2: float = 0.0  # sum (d_g - centre W_g)^2
    cross: float = 0.0  # sum (d_g - centre W_g) W_g
    counted: int = 0  # counted positions
    b_better: int = 0  # counted positions where B's loss is lower
    a_better: int = 0
    #: the positions where the two differ most: (|lB - lA|, -position, position, target,
    #: lA, lB), a min-heap of at most ``worst_k``
    worst_k: int = 10
    worst: list[tuple[float, int, int, int, float, float]] = field(default_factory=list)
    #: per-cluster (d_g, W_g) of clusters with a counted target, for the bootstrap (kept
    #: only when asked: ``keep_clusters``)
    keep_clusters: bool = False
    cluster_d: list[np.ndarray] = field(default_factory=list)
    cluster_w: list[np.ndarray] = field(default_factory=list)
    #: the last cluster seen, which the next block may go on with: (id, d, W, counted)
    _open: tuple[int, float, float, float] | None = None

    def update(self, la: np.ndarray, lb: np.ndarray, w: np.ndarray, counted: np.ndarray,
               per_cluster: int, offset: int, targets: np.ndarray | None = None) -> None:
        """Add a block: per-position losses ``la``, ``lb`` and weights ``w`` of the flat
        positions ``offset ...``, ``counted`` positions; a cluster is ``per_cluster``
        positions in a row. A cluster may run on into the next block: it is held open
        until one starts after it (or :meth:`close`)."""
        m = la.shape[0]
        if m == 0:
            return
        k = max(per_cluster, 1)
        with np.errstate(all="ignore"):
            a = la.astype(np.float64)
            b = lb.astype(np.float64)
            diff = np.where(counted, b - a, 0.0)
            first = offset // k
            ids = np.arange(offset, offset + m, dtype=np.int64) // k - first
            size = int(ids[-1]) + 1
            d_g = np.bincount(ids, weights=diff, minlength=size)
            w_g = np.bincount(ids, weights=np.where(counted, w, 0.0), minlength=size)
            n_g = np.bincount(ids, weights=counted, minlength=size)
        if self._open is not None:
            if self._open[0] == first:  # the cluster held open goes on here
                d_g[0] += self._open[1]
                w_g[0] += self._open[2]
                n_g[0] += self._open[3]
            else:
                self._add(*(np.array([v]) for v in self._open[1:]))
        self._open = (first + size - 1, float(d_g[-1]), float(w_g[-1]), float(n_g[-1]))
        self._add(d_g[:-1], w_g[:-1], n_g[:-1])
        self.counted += int(counted.sum())
        self.b_better += int((counted & (b < a)).sum())
        self.a_better += int((counted & (a < b)).sum())
        if self.worst_k:
            gap = np.where(counted, np.abs(diff), -1.0)
            gap = np.where(np.isnan(gap), np.inf, gap)
            k = min(self.worst_k, m)
            top = np.argpartition(-gap, k - 1)[:k] if k < m else np.arange(m)
            top = top[np.lexsort((top, -gap[top]))]  # largest first, earlier on ties
            for i in top:
                if gap[i] < 0:
                    break
                item = (float(gap[i]), -(offset + int(i)), offset + int(i),
                        -1 if targets is None else int(targets[i]), float(a[i]), float(b[i]))
                if len(self.worst) < self.worst_k:
                    heapq.heappush(self.worst, item)
                else:
                    heapq.heappushpop(self.worst, item)

    def close(self) -> PairedStats:
        """Count the cluster still held open (the last one); returns self."""
        if self._open is not None:
            self._add(*(np.array([v]) for v in self._open[1:]))
            self._open = None
        return self

    def _add(self, d_g: np.ndarray, w_g: np.ndarray, n_g: np.ndarray) -> None:
        has = n_g > 0  # clusters that hold a counted target
        d_g, w_g = d_g[has], w_g[has]
        if not d_g.shape[0]:
            return
        with np.errstate(all="ignore"):
            self.merge_in(_part(d_g, w_g))
        if self.keep_clusters:
            self.cluster_d.append(d_g)
            self.cluster_w.append(w_g)

    def merge_in(self, other: PairedStats) -> None:
        """Add ``other``'s clusters (the sums only; see :meth:`merged` for the rest)."""
        sum_w = self.sum_w + other.sum_w
        sum_d = self.sum_d + other.sum_d
        centre = sum_d / sum_w if sum_w else 0.0
        m2 = cross = 0.0
        for p in (self, other):
            shift = p.centre - centre
            m2 += p.m2 + 2 * shift * p.cross + shift * shift * p.sum_ww
            cross += p.cross + shift * p.sum_ww
        self.clusters += other.clusters
        self.sum_w, self.sum_d, self.sum_ww = sum_w, sum_d, self.sum_ww + other.sum_ww
        self.centre, self.m2, self.cross = centre, max(m2, 0.0), cross

    def merged(self, other: PairedStats) -> PairedStats:
        self.close()
        other.close()
        out = PairedStats(worst_k=self.worst_k)
        out.merge_in(self)
        out.merge_in(other)
        out.counted = self.counted + other.counted
        out.b_better = self.b_better + other.b_better
        out.a_better = self.a_better + other.a_better
        out.worst = heapq.nlargest(self.worst_k, self.worst + other.worst)
        heapq.heapify(out.worst)
        return out

    def shifted(self, offset: int) -> PairedStats:
        """These sums with the listed positions moved by ``offset`` (a later shard's)."""
        self.close()
        out = PairedStats(**{**self.__dict__, "worst": [
            (gap, -(pos + offset), pos + offset, t, a, b) for gap, _, pos, t, a, b in self.worst]})
        heapq.heapify(out.worst)
        return out

    # -- the answer ---------------------------------------------------------------------------

    @property
    def difference(self) -> float:
        return self.sum_d / self.sum_w if self.sum_w else math.nan

    @property
    def standard_error(self) -> float:
        g = self.clusters
        if g < 2 or not self.sum_w:
            return math.nan
        return math.sqrt(g / (g - 1) * self.m2) / abs(self.sum_w)

    def ci95(self) -> tuple[float, float]:
        d, se = self.difference, self.standard_error
        return d - Z95 * se, d + Z95 * se

    def bootstrap(self, n: int, seed: int) -> tuple[float, float]:
        """The 2.5th and 97.5th percentiles of ``D`` over ``n`` resamplings of the clusters
        (with replacement, ``np.random.default_rng(seed)``)."""
        d = np.concatenate(self.cluster_d) if self.cluster_d else np.zeros(0)
        w = np.concatenate(self.cluster_w) if self.cluster_w else np.zeros(0)
        g = d.shape[0]
        if g < 2 or n < 1:
            return math.nan, math.nan
        rng = np.random.default_rng(seed)
        out = np.empty(n)
        chunk = max(1, (1 << 22) // g)  # resamplings per step: ~4M indices at a time
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            pick = rng.integers(0, g, size=(k, g))
            with np.errstate(all="ignore"):
                out[start:start + k] = d[pick].sum(axis=1) / w[pick].sum(axis=1)
        lo, hi = np.nanpercentile(out, [2.5, 97.5]) if np.isfinite(out).any() else (
            math.nan, math.nan)
        return float(lo), float(hi)

    def to_doc(self) -> dict[str, Any]:
        """The sums of a partial result (never per-position or per-cluster arrays)."""
        self.close()
        return {"clusters": self.clusters, "sum_w": self.sum_w, "sum_d": self.sum_d,
                "sum_ww": self.sum_ww, "centre": self.centre, "m2": self.m2,
                "cross": self.cross, "counted": self.counted, "b_better": self.b_better,
                "a_better": self.a_better, "worst_k": self.worst_k,
                "worst": [list(item) for item in self.worst]}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PairedStats:
        out = cls(worst_k=int(doc["worst_k"]))
        for name in ("clusters", "counted", "b_better", "a_better"):
            value = doc[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} is not a count")
            setattr(out, name, value)
        for name in ("sum_w", "sum_d", "sum_ww", "centre", "m2", "cross"):
            setattr(out, name, float(doc[name]))
        out.worst = [(float(a), int(b), int(c), int(d), float(e), float(f))
                     for a, b, c, d, e, f in doc["worst"]]
        heapq.heapify(out.worst)
        return out


def _part(d_g: np.ndarray, w_g: np.ndarray) -> PairedStats:
    """The sums of some clusters, about their own difference."""
    sum_w = float(w_g.sum())
    sum_d = float(d_g.sum())
    centre = sum_d / sum_w if sum_w and math.isfinite(sum_d / sum_w) else 0.0
    r = d_g - centre * w_g
    return PairedStats(clusters=int(d_g.shape[0]), sum_w=sum_w, sum_d=sum_d,
                       sum_ww=float((w_g * w_g).sum()), centre=centre,
                       m2=float((r * r).sum()), cross=float((r * w_g).sum()))
