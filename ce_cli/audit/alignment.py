"""Are a language model's labels aligned with its logits? (``--shift`` or not)

A causal LM's logits at position ``j`` predict the token at ``j + 1``. Saved labels that
are the input ids (unshifted) then agree with the model's top prediction one position
later far more often than at the same position; labels that were shifted already and
are shifted again by ``--shift`` agree one position earlier. :class:`Alignment` counts
these agreements on a sample of the first sequences, for the warning that names the fix.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

#: logits values sampled (about 64 MB of float32: a few hundred tokens of a large vocabulary)
SAMPLE_VALUES = 1 << 24
#: sampled positions wanted at most
SAMPLE_POSITIONS = 8192
#: counted pairs needed before anything is said
MIN_PAIRS = 50


@dataclass
class Alignment:
    """Top-1 agreements of the prediction at ``j`` with the label at ``j`` (``same``),
    ``j + 1`` (``next``) and ``j - 1`` (``prev``), over ``pairs`` positions whose three
    labels all count."""

    pairs: int = 0
    same: int = 0
    next: int = 0
    prev: int = 0
    #: logits values looked at so far (the sample stops at :data:`SAMPLE_VALUES`)
    values: int = 0

    @property
    def full(self) -> bool:
        return self.values >= SAMPLE_VALUES or self.pairs >= SAMPLE_POSITIONS

    def update(self, x: np.ndarray, t: np.ndarray, ignore_index: int) -> None:
        """Sample a block of sequences: ``x`` is ``(b, L, V)`` (classes last), ``t`` is
        ``(b, L)`` class indices. Takes what fits in the sample and ignores the rest."""
        if self.full or x.ndim != 3 or t.shape != x.shape[:2] or x.shape[1] < 3 \
                or x.shape[2] < 2:
            return
        b, length, v = x.shape
        left = SAMPLE_VALUES - self.values
        rows = min(b, max(1, left // (length * v)))
        span = min(length, max(3, left // v))  # one long sequence: its first tokens
        xs, ts = x[:rows, :span], t[:rows, :span]
        self.values += xs.size
        pred = top_class(xs)
        mid = pred[:, 1:-1]
        here, after, before = ts[:, 1:-1], ts[:, 2:], ts[:, :-2]
        counted = (here != ignore_index) & (after != ignore_index) & (before != ignore_index)
        self.pairs += int(counted.sum())
        self.same += int((counted & (mid == here)).sum())
        self.next += int((counted & (mid == after)).sum())
        self.prev += int((counted & (mid == before)).sum())

    def merged(self, other: Alignment) -> Alignment:
        return Alignment(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def finding(self, shifted: bool) -> str | None:
        """The warning, or None: labels that agree with the prediction of the position
        before (unshifted, and no ``--shift``) or after (``--shift`` on shifted labels)."""
        n = self.pairs
        if n < MIN_PAIRS:
            return None
        same, off = self.same / n, (self.prev if shifted else self.next) / n
        if off < 0.1 or off < 2 * same + 0.05:
            return None
        pct = f"{100 * off:.0f}% of {n} sampled tokens"
        if shifted:
            return (f"the labels look shifted already: with --shift, the model's top "
                    f"prediction matches the label one position earlier at {pct} but its own "
                    f"label at {100 * same:.0f}%; drop --shift if the labels were saved "
                    "aligned with the logits (labels[j] the token logits[j] predicts)")
        return (f"the labels look like unshifted input ids: the model's top prediction at "
                f"position j matches the label at j+1 at {pct} but the label at j at "
                f"{100 * same:.0f}%, as for a causal language model whose labels are its "
                "inputs; pass --shift for Hugging Face's causal-LM loss (logits[..., :-1, :] "
                "against labels[..., 1:])")

    def to_doc(self) -> list[int]:
        return list(astuple(self))

    @classmethod
    def from_doc(cls, doc: list[int]) -> Alignment:
        if not isinstance(doc, list) or len(doc) != 5 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in doc):
            raise ValueError("five counts >= 0")
        return cls(*doc)


def top_class(x: np.ndarray) -> np.ndarray:
    """``argmax`` over the last axis; float16 is ranked by its bits (NumPy's float16
    argmax goes value by value, ten times slower): as int16, with the magnitude bits of
    negative values flipped, the bits order as the values do (a NaN ranks above +inf,
    as NumPy's argmax picks a NaN; -0 just below +0)."""
    if x.dtype == np.float16:
        v = x.view(np.int16)
        key = np.right_shift(v, 15)  # -1 where negative, else 0
        key &= 0x7FFF
        key ^= v
        return np.argmax(key, axis=-1)
    with np.errstate(all="ignore"):
        return np.argmax(x, axis=-1)
