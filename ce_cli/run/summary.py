"""What a run found, whichever engine ran it: the one input of the report.

The default engine builds a :class:`Summary` from one pass (:func:`ce_cli.run.pipeline.run`);
shards, ``--engine dask`` and ``merge`` build it from merged partial results
(:meth:`ce_cli.run.partial.Partial.summary`). Everything the findings and the report read
is here, so every engine reports the same input the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audit.alignment import Alignment
from ..audit.findings import Finding
from ..audit.metrics import AuditStats
from ..audit.scan import InputScan
from ..audit.sequences import SequenceStats
from ..loss import LossResult, LossTotals
from ..render import Preview


@dataclass(frozen=True)
class Layout:
    """The shape of one sample, as the findings judge it: the logits' row with the classes
    first (after ``--class-axis``), the targets' row, whether ``--class-axis`` was given,
    and the dtype the targets were saved with (None when not known)."""

    logits_row: tuple[int, ...]
    targets_row: tuple[int, ...]
    class_axis_given: bool
    target_dtype: str | None = None
    #: read shifted (``--shift``): the rows are those after the shift
    shifted: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {"logits_row": list(self.logits_row), "targets_row": list(self.targets_row),
                "class_axis_given": self.class_axis_given, "target_dtype": self.target_dtype,
                "shifted": self.shifted}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Layout:
        return cls(tuple(int(v) for v in doc["logits_row"]),
                   tuple(int(v) for v in doc["targets_row"]),
                   bool(doc["class_axis_given"]), doc["target_dtype"],
                   doc.get("shifted") is True)


@dataclass
class Summary:
    """One run's result and everything said about it."""

    result: LossResult
    scan: InputScan
    #: per-class counts of the counted index targets
    labels: np.ndarray | None = None
    stats: AuditStats | None = None
    #: None when not known (partials of an older ce-loss, or partials of unlike layouts)
    layout: Layout | None = None
    #: found while reading, before the loss: a dtype cast, partials that overlap
    findings: list[Finding] = field(default_factory=list)
    #: while the logits look like probabilities: the totals (and the loss) of reading them
    #: as such, which the probabilities warning offers
    as_probs: LossTotals | None = None
    probs_loss: np.ndarray | None = None
    #: what the inputs were, for the report (``{"logits": ..., "targets": ...}``) and for a
    #: partial result (one entry per input pair)
    sources: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    #: torch's reduction='none' shape of the losses
    loss_shape: tuple[int, ...] = ()
    #: the reduction a partial result of this summary records (a merge keeps its partials'
    #: own, 'none' included, so merged partials merge again); None: the result's
    partial_reduction: str | None = None
    #: the dtype torch's result has where NumPy has none: "bfloat16" (the loss was
    #: computed in float32 and is rounded to bfloat16 when reported)
    result_dtype: str | None = None
    # per-sample parts, from a single pass only
    preview: Preview | None = None
    targets: np.ndarray | None = None  # flat class-index targets, for per-sample output
    softmax: np.ndarray | None = None  # (N, C) probabilities for --softmax
    #: the classes' names (string labels, or --classes), decided once when the inputs are
    #: opened (``readers.classes.bind``); None: the classes are shown as indices
    class_names: list[str] | None = None
    #: per-sequence sums (``--per-sequence``, and language-model audits)
    sequences: SequenceStats | None = None
    #: label alignment counts of (B, L, V) inputs (the unshifted-labels check)
    alignment: Alignment | None = None

    @property
    def reduction(self) -> str:
        return self.result.reduction

    def stats_summary(self) -> dict[str, Any] | None:
        """The audit statistics, worst samples located by position for K-dim inputs."""
        if self.stats is None:
            return None
        doc = self.stats.summary()
        if len(self.loss_shape) > 1:
            for w in doc["worst"]:
                w["position"] = position_label(w["index"], self.loss_shape)
        return doc


def position_label(pos: int, shape: tuple[int, ...]) -> str:
    """``"7"``, or ``"(0, 3, 5)"`` for a position of K-dim losses of ``shape``."""
    if len(shape) <= 1:
        return str(pos)
    return "(" + ", ".join(str(int(i)) for i in np.unravel_index(pos, shape)) + ")"
