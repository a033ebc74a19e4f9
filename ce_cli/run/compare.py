"""``ce-loss compare A B TARGETS``: two models' outputs against the same targets.

One streaming pass reads the three inputs in step: each model's loss is a
:class:`~ce_cli.run.pipeline.Pass` (exactly what ``compute`` gives), and their per-position
losses pair up in :class:`~ce_cli.audit.paired.PairedStats`. A comparison's partial result
holds both models' partials and the paired sums, so ``merge`` combines sharded
comparisons exactly, and ``--engine dask`` runs one comparison per task.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..audit.paired import PairedStats
from ..errors import CeLossError, DTypeError, InputFileError, ShapeError, TargetError
from ..options import AuditOptions, LossOptions, ReadOptions
from . import partial, pipeline, sources
from .summary import Summary

#: what a comparison's partial result says it is
KIND = "ce-loss/compare-partial"
VERSION = 1


@dataclass
class Comparison:
    """Both models' summaries and their paired difference; ``names`` are A's and B's."""

    a: Summary
    b: Summary
    paired: PairedStats
    names: tuple[str, str]
    #: the resamplings and seed of --bootstrap, and its interval (None: not asked)
    bootstrap: tuple[int, int, tuple[float, float]] | None = None


@dataclass(frozen=True)
class CompareJob:
    """What every comparison computes: A's reading options (B's are the same with its
    path), the loss, its weight (parsed once), the audit and how many disagreements."""

    read: ReadOptions
    b_logits: str
    loss: LossOptions
    weight: np.ndarray | None = None
    audit: AuditOptions | None = None
    worst: int = 10
    keep_clusters: bool = False


def run(job: CompareJob, *, on_rows: Any = None, said: list[Any] | None = None,
        inputs: tuple[str, str] | None = None, opener: Any = None) -> Comparison:
    """Compare over ``job``'s files in one pass (``inputs``: what the partial calls them;
    ``opener(read)``: the pair of sources of ``read``, default ``sources.open_sources``)."""
    read, loss = job.read, job.loss
    read_b = read.with_paths(job.b_logits, read.targets)
    if opener is None:
        def opener(r: ReadOptions) -> tuple[Any, Any]:
            return sources.open_sources(r, loss.class_axis, tokens=False)
    xa, ta = opener(read)
    xb, tb = opener(read_b)
    options: dict[str, Any] = dict(
        weight=job.weight, ignore_index=loss.ignore_index, reduction="mean",
        label_smoothing=loss.label_smoothing, input_kind=loss.input_kind, keep_losses=False,
        class_axis=loss.class_axis, audit=job.audit, dtype=loss.dtype, shifted=read.shift,
        before=list(said or []))
    names = inputs or (f"{xa.path} {ta.path}", f"{xb.path} {tb.path}")
    _check_shapes(xa, xb, loss.class_axis)
    if not read.shift:  # long sequences as runs of tokens, where both files can
        (xa2, ta2), (xb2, tb2) = (sources.as_tokens(x, t, loss.class_axis)
                                  for x, t in ((xa, ta), (xb, tb)))
        if xa2.tokens is not None and xb2.tokens is not None:
            xa, ta, xb, tb = xa2, ta2, xb2, tb2
    passes = []
    for x, t, r, name in ((xa, ta, read, names[0]), (xb, tb, read_b, names[1])):
        try:
            passes.append(pipeline.Pass(x, t, inputs=[name], **options))
        except TargetError as exc:
            raise CeLossError(sources.target_error(exc, x, t, r, loss.ignore_index)) from None
        except (ShapeError, DTypeError) as exc:
            raise CeLossError(sources.shape_error(exc, x, t, loss.class_axis)) from None
    pa, pb = passes
    paired = PairedStats(worst_k=job.worst, keep_clusters=job.keep_clusters)
    # a cluster is a row of the file: of token rows (--shift), a sequence of them
    per_cluster = math.prod(xa.tokens[1:]) if xa.tokens is not None else 0
    spec = pa.spec
    n_a = n_b = position = 0
    try:
        for xab, xbb, tbb in pipeline.aligned([pa.xs, pb.xs, pa.ts], min(pa.rows, pb.rows)):
            n_a += xab.shape[0]
            n_b += xbb.shape[0]
            la = pa.feed(xab, tbb)
            if xbb.shape[0] != xab.shape[0]:
                continue  # counted, and said below
            lb = pb.feed(xbb, tbb)
            if la.shape != lb.shape or not xab.shape[0]:
                continue
            t = pa.targets
            if t is None:  # probabilities: every position counts, and weighs 1
                counted = np.ones(la.shape[0], bool)
                w = np.ones(la.shape[0])
            else:
                counted = t != spec.ignore_index
                w = np.ones(la.shape[0]) if spec.weight is None else \
                    spec.weight.astype(np.float64)[np.where(counted, t, 0)]
            paired.update(la, lb, w, counted, per_cluster or la.shape[0] // xab.shape[0],
                          position, t)
            position += la.shape[0]
            if on_rows is not None:
                on_rows(la)  # its positions
        if n_a != n_b:
            raise CeLossError(
                f"{xa.path} has {n_a} rows but {xb.path} has {n_b}: compare needs both "
                "models' outputs for the same samples, in the same order")
        a, b = pa.finish(), pb.finish()
        paired.close()
    except TargetError as exc:
        raise CeLossError(sources.target_error(exc, xa, ta, read, loss.ignore_index)) from None
    except (ShapeError, DTypeError) as exc:
        raise CeLossError(sources.shape_error(exc, xa, ta, loss.class_axis)) from None
    a.class_names = b.class_names = xa.class_names
    return Comparison(a, b, paired, (xa.path, xb.path))


def _check_shapes(xa: Any, xb: Any, class_axis: int | None) -> None:
    """Both models' outputs must have one shape: the same classes and positions."""
    ca, cb = sources.n_classes(xa, class_axis), sources.n_classes(xb, class_axis)
    if ca != cb:
        raise CeLossError(f"{xa.path} has {ca} classes but {xb.path} has {cb}: compare needs "
                          "two models of the same classes")
    if tuple(xa.row_shape) != tuple(xb.row_shape) or (
            xa.n_rows is not None and xb.n_rows is not None and xa.n_rows != xb.n_rows):
        def shape(src: Any) -> str:
            dims = ["?" if src.n_rows is None else str(src.n_rows)] + \
                [str(d) for d in src.row_shape]
            return "(" + ", ".join(dims) + ")"

        raise CeLossError(f"{xa.path} {shape(xa)} and {xb.path} {shape(xb)} differ in "
                          "shape: compare needs both models' outputs for the same samples")


# -- partial results ------------------------------------------------------------------------

def to_document(c: Comparison) -> dict[str, Any]:
    return {"kind": KIND, "version": VERSION, "names": list(c.names),
            "a": partial.to_document(c.a), "b": partial.to_document(c.b),
            "paired": partial._encode(c.paired.to_doc())}


def is_comparison(path: str) -> bool:
    """Whether the JSON file at ``path`` is a comparison's partial (read errors: no)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def load(path: str) -> Comparison:
    """A comparison's partial result, checked; errors name the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"cannot read a comparison's partial result ({exc})") \
            from None
    return load_document(doc, path)


def load_document(doc: Any, path: str) -> Comparison:
    """:func:`load` of a document already parsed (``path`` names it in errors)."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("version") != VERSION:
        raise InputFileError(path, "not a comparison's partial result",
                             hint="pass files written by 'ce-loss compare --partial'")
    try:
        a = _part(doc["a"], path)
        b = _part(doc["b"], path)
        paired = PairedStats.from_doc(partial._decode(doc["paired"]))
        names = tuple(str(n) for n in doc["names"])
        if len(names) != 2:
            raise ValueError("names is not two names")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"a damaged comparison ({type(exc).__name__}: {exc})",
                             hint="recompute it with --partial") from None
    return Comparison(a.summary(), b.summary(), paired, names)  # type: ignore[arg-type]


def _part(doc: Any, path: str) -> partial.Partial:
    if not isinstance(doc, dict) or doc.get("kind") != partial.KIND:
        raise ValueError("a model's part is not a partial result")
    partial.validate(doc, path)
    return partial.Partial(doc, path)


def merge(parts: list[Comparison], paths: list[str]) -> Comparison:
    """One comparison for all of ``parts`` (shards of one evaluation set, in order)."""
    a = [partial.Partial(partial.to_document(c.a), p) for c, p in zip(parts, paths)]
    b = [partial.Partial(partial.to_document(c.b), p) for c, p in zip(parts, paths)]
    paired = parts[0].paired
    offset = parts[0].a.result.totals.positions
    for c in parts[1:]:  # positions run on from shard to shard
        paired = paired.merged(c.paired.shifted(offset))
        offset += c.a.result.totals.positions
    ma, mb = partial.merge(a), partial.merge(b)
    return Comparison(ma.summary(), mb.summary(), paired, parts[0].names)


def with_paths(job: CompareJob, a: str, b: str, t: str | None) -> CompareJob:
    return replace(job, read=job.read.with_paths(a, t), b_logits=b)
