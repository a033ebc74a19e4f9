"""What a run is asked to do, as small frozen dataclasses: what to compute, how to read,
what to audit, where to write. The command line builds them; the work layer reads them.

No click and no NumPy here, so the command line can build them at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import OptionError


@dataclass(frozen=True)
class LossOptions:
    """What to compute: torch's arguments, and where the classes are."""

    reduction: str = "mean"
    #: as given: comma-separated numbers or a file; parsed against the logits once opened
    weight: str | None = None
    ignore_index: int = -100
    label_smoothing: float = 0.0
    input_kind: str = "logits"
    #: the logits axis holding the classes (None: torch's axis 1)
    class_axis: int | None = None
    #: cast the logits first, as ``F.cross_entropy(logits.to(dtype), ...)`` (None: as saved)
    dtype: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How to read the inputs: LOGITS and TARGETS as given, and how to take them apart."""

    logits: str
    targets: str | None = None
    target_column: str | None = None
    logits_columns: str | None = None
    header: bool | None = None
    logits_format: str | None = None
    targets_format: str | None = None
    #: ``--classes cat,dog,bird``: the class names in the model's order (class 0 first, as
    #: scikit-learn's ``classes_``), as given. Read here because string labels are matched
    #: to them while reading; without it a table's logits column names are the classes.
    classes: str | None = None
    #: ``--shift``: a causal LM's logits against its unshifted labels (run.shift)
    shift: bool = False

    def with_paths(self, logits: str, targets: str | None) -> ReadOptions:
        """The same reading options for other files (one shard or task of a run)."""
        from dataclasses import replace

        return replace(self, logits=logits, targets=targets)


@dataclass(frozen=True)
class AuditOptions:
    """What to audit beside the loss (the table, JSON and partial results show it)."""

    top_k: tuple[int, ...] = (1, 5)
    bins: int = 15
    worst: int = 10
    #: rows of the preview table (table and JSON output)
    rows: int = 10


@dataclass(frozen=True)
class OutputOptions:
    """Where the results go and how the report looks."""

    fmt: str = "plain"
    #: per-sample losses (-o), softmax probabilities (--softmax), a partial result
    output: str | None = None
    #: one row per sequence (--per-sequence)
    per_sequence: str | None = None
    softmax: str | None = None
    partial: str | None = None
    explain: bool = False
    plots: bool = True
    strict: bool = False
    quiet: bool = False
    #: ``--fail-above X``: exit 1 when the loss is above X, or NaN
    fail_above: float | None = None

    @property
    def wants_audit(self) -> bool:
        """Whether the audit statistics are shown or kept (plain output shows none)."""
        return self.explain or self.fmt != "plain" or self.partial is not None


def parse_top_k(text: str) -> tuple[int, ...]:
    """``"1,5"`` -> ``(1, 5)``; anything else is an :class:`OptionError`."""
    try:
        ks = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise OptionError(f"{text!r} is not a list of whole numbers >= 1, e.g. 1,5")
    return ks
