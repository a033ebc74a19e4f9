"""Partial results: everything a run reports, as a small JSON document that merges.

``ce-loss compute ... --partial part.json`` writes one per shard; ``ce-loss merge
part-*.json`` adds them up and finishes as if one run had seen all the data. The
loss sums stay apart (torch's smoothed mean divides two sums separately), sums merge
with exact (``math.fsum``) addition so the order of the shards does not matter, and
the statistics are sums, maxima and a bounded heap, so merging is associative and
commutative.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from . import checks, core, metrics
from .errors import InputFileError

KIND = "ce-loss/partial"
VERSION = 1

#: spec fields that must agree between partials for them to merge
_SPEC_KEYS = ("n_classes", "target_kind", "input_dtype", "dtype", "weight", "ignore_index",
              "label_smoothing", "input_kind")


def to_document(spec: core.LossSpec, totals: core.LossTotals, scan: checks.InputScan,
                labels: np.ndarray | None, stats: metrics.AuditStats | None,
                reduction: str, sources: list[str]) -> dict[str, Any]:
    """The JSON-ready partial of one run."""
    return {
        "kind": KIND,
        "version": VERSION,
        "reduction": reduction,
        "sources": sources,
        "spec": {
            "n_classes": spec.n_classes,
            "target_kind": spec.target_kind,
            "input_dtype": spec.input_dtype.name,
            "dtype": spec.dtype.name,
            "weight": None if spec.weight is None else [float(v) for v in spec.weight],
            "ignore_index": spec.ignore_index,
            "label_smoothing": spec.label_smoothing,
            "input_kind": spec.input_kind,
        },
        "totals": _encode(asdict(totals)),
        "scan": _encode({f.name: getattr(scan, f.name) for f in fields(scan)}),
        "labels": None if labels is None else [int(v) for v in labels],
        "stats": None if stats is None else _encode(_stats_doc(stats)),
    }


def _encode(v: Any) -> Any:
    """Non-finite floats as the strings "nan", "inf", "-inf": the document stays RFC 8259."""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else repr(f)
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


def _decode(v: Any) -> Any:
    if v in ("nan", "inf", "-inf"):
        return float(v)
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _stats_doc(stats: metrics.AuditStats) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for f in fields(stats):
        v = getattr(stats, f.name)
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif f.name == "topk_hits":
            v = {str(k): n for k, n in v.items()}
        elif f.name == "worst":
            v = [list(item) for item in v]
        elif f.name == "top_k":
            v = list(v)
        doc[f.name] = v
    return doc


def _stats_from(doc: dict[str, Any]) -> metrics.AuditStats:
    kw = dict(doc)
    for name in ("bin_count", "bin_correct", "class_support", "class_correct", "loss_hist"):
        kw[name] = np.asarray(kw[name], dtype=np.int64)
    for name in ("bin_conf", "class_loss", "class_conf"):
        kw[name] = np.asarray(kw[name], dtype=np.float64)
    kw["top_k"] = tuple(kw["top_k"])
    kw["topk_hits"] = {int(k): int(n) for k, n in kw["topk_hits"].items()}
    kw["worst"] = [tuple(item) for item in kw["worst"]]
    return metrics.AuditStats(**kw)


class Partial:
    """A loaded partial document, ready to merge or to finish."""

    def __init__(self, doc: dict[str, Any], path: str) -> None:
        self.doc = doc
        self.path = path
        self.spec_doc = doc["spec"]
        self.totals = core.LossTotals(**_decode(doc["totals"]))
        self.scan = checks.InputScan(**_decode(doc["scan"]))
        self.labels = None if doc["labels"] is None else np.asarray(doc["labels"], np.int64)
        self.stats = None if doc["stats"] is None else _stats_from(_decode(doc["stats"]))
        self.reduction = doc["reduction"]
        self.sources = list(doc["sources"])

    def spec(self) -> core.LossSpec:
        s = self.spec_doc
        dtype = np.dtype(s["dtype"])
        return core.LossSpec(
            n_classes=int(s["n_classes"]), target_kind=s["target_kind"],
            input_dtype=np.dtype(s["input_dtype"]), dtype=dtype,
            weight=None if s["weight"] is None else np.asarray(s["weight"], dtype=dtype),
            ignore_index=int(s["ignore_index"]), label_smoothing=float(s["label_smoothing"]),
            input_kind=s["input_kind"],
        )

    def finish(self, reduction: str) -> core.LossResult:
        acc = core.LossAccumulator(self.spec())
        acc.totals = self.totals
        return acc.finalize(reduction)


def load(path: str) -> Partial:
    """Read and check one partial document; errors name the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a directory, not a partial result") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not JSON ({exc.msg})", line=exc.lineno,
                             column=exc.colno, hint="pass files written by --partial") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise InputFileError(path, "not a ce-loss partial result",
                             hint="pass files written by 'ce-loss compute --partial'")
    if doc.get("version") != VERSION:
        raise InputFileError(path, f"partial format version {doc.get('version')!r}, this "
                             f"ce-loss reads version {VERSION}",
                             hint="recompute it with this version")
    try:
        return Partial(doc, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"a damaged partial result ({type(exc).__name__}: {exc})",
                             hint="recompute it with --partial") from None


def merge(parts: list[Partial]) -> Partial:
    """One partial for all of ``parts``: exact sums, so any order gives the same result."""
    first = parts[0]
    for p in parts[1:]:
        for key in _SPEC_KEYS:
            if p.spec_doc[key] != first.spec_doc[key]:
                raise InputFileError(
                    p.path, f"{key} is {p.spec_doc[key]!r} but {first.path} has "
                    f"{first.spec_doc[key]!r}",
                    hint="merge only partials computed with the same options and classes")
    totals = core.LossTotals(**{
        f.name: (math.fsum(getattr(p.totals, f.name) for p in parts)
                 if isinstance(getattr(first.totals, f.name), float)
                 else sum(getattr(p.totals, f.name) for p in parts))
        for f in fields(core.LossTotals)})
    scan = _merge_scans([p.scan for p in parts])
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.sum([p.labels for p in parts], axis=0)
    stats = None
    if all(p.stats is not None for p in parts):
        stats = parts[0].stats
        for p in parts[1:]:
            stats = stats.merge(p.stats)  # type: ignore[union-attr,arg-type]
    reductions = {p.reduction for p in parts}
    doc = to_document(first.spec(), totals, scan, labels, stats,
                      first.reduction if len(reductions) == 1 else "mean",
                      [s for p in parts for s in p.sources])
    return Partial(json.loads(json.dumps(doc)), "<merged>")


def _merge_scans(scans: list[checks.InputScan]) -> checks.InputScan:
    out = checks.InputScan(scans[0].input_kind)
    for s in scans:
        out.rows += s.rows
        out.low = min(out.low, s.low)
        out.high = max(out.high, s.high)
        out.worst_sum_error = max(out.worst_sum_error, s.worst_sum_error)
        out.worst_lse = max(out.worst_lse, s.worst_lse)
        out.nonfinite_rows += s.nonfinite_rows
        out.neg_inf_rows += s.neg_inf_rows
        out.target_rows += s.target_rows
        out.one_hot_rows += s.one_hot_rows
        out.inf_losses += s.inf_losses
        out.nan_losses += s.nan_losses
    return out


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n"
