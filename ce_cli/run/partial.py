"""Partial results: everything a run reports, as a small JSON document that merges.

``ce-loss compute ... --partial part.json`` writes one per shard; ``ce-loss merge
part-*.json`` adds them up and finishes as if one run had seen all the data. The
loss sums stay apart (torch's smoothed mean divides two sums separately), sums merge
with exact (``math.fsum``) addition so the order of the shards does not matter, and
the statistics are sums, maxima and a bounded heap, so merging is associative and
commutative.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np

from .. import loss
from ..audit import metrics
from ..audit.alignment import Alignment
from ..audit.findings import Finding
from ..audit.scan import InputScan
from ..audit.sequences import SequenceStats
from ..errors import InputFileError
from ..names import INPUT_KINDS, REDUCTIONS
from .summary import Layout, Summary

KIND = "ce-loss/partial"
VERSION = 3
#: versions this one reads: 1 lacks the scan fields of version 2, which default to unknown;
#: 1 and 2 lack the layout, the probabilities reading and the findings of version 3
READS = (1, 2, 3)

#: spec fields that must agree between partials for them to merge
_SPEC_KEYS = ("n_classes", "target_kind", "input_dtype", "dtype", "weight", "ignore_index",
              "label_smoothing", "input_kind")


def to_document(summary: Summary, inputs: list[str] | None = None) -> dict[str, Any]:
    """The JSON-ready partial of one run (``inputs``: what it read; default: the
    summary's own)."""
    spec = summary.result.spec
    stats, layout, as_probs = summary.stats, summary.layout, summary.as_probs
    named = {"classes": list(summary.class_names)} if summary.class_names else {}
    return {
        "kind": KIND,
        "version": VERSION,
        "reduction": summary.partial_reduction or summary.reduction,
        "sources": list(summary.inputs if inputs is None else inputs),
        "spec": {
            "n_classes": spec.n_classes,
            "target_kind": spec.target_kind,
            "input_dtype": spec.input_dtype.name,
            "dtype": spec.dtype.name,
            "weight": None if spec.weight is None
            else _encode([float(v) for v in spec.weight]),
            "ignore_index": spec.ignore_index,
            "label_smoothing": spec.label_smoothing,
            "input_kind": spec.input_kind,
        },
        "totals": _encode(asdict(summary.result.totals)),
        "scan": _encode({f.name: getattr(summary.scan, f.name) for f in fields(summary.scan)}),
        "labels": None if summary.labels is None else [int(v) for v in summary.labels],
        "stats": None if stats is None else _encode(_stats_doc(stats)),
        "layout": None if layout is None else layout.to_doc(),
        "as_probs": None if as_probs is None else _encode(asdict(as_probs)),
        "findings": [[f.kind, f.message] for f in summary.findings],
        "result_dtype": summary.result_dtype,
        "sequences": None if summary.sequences is None
        else _encode(summary.sequences.to_doc()),
        "alignment": None if summary.alignment is None else summary.alignment.to_doc(),
        **named,  # the class names, when known (string labels or --classes)
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
        self.totals = loss.LossTotals(**_decode(doc["totals"]))
        self.scan = InputScan(**_decode(doc["scan"]))
        self.labels = None if doc["labels"] is None else np.asarray(doc["labels"], np.int64)
        self.stats = None if doc["stats"] is None else _stats_from(_decode(doc["stats"]))
        self.reduction = doc["reduction"]
        self.sources = list(doc["sources"])
        layout = doc.get("layout")
        self.layout = None if layout is None else Layout.from_doc(layout)
        as_probs = doc.get("as_probs")
        self.as_probs = None if as_probs is None else loss.LossTotals(**_decode(as_probs))
        self.findings = [Finding(kind, message) for kind, message in doc.get("findings", [])]
        self.result_dtype = doc.get("result_dtype")
        seqs = doc.get("sequences")
        self.sequences = None if seqs is None else SequenceStats.from_doc(_decode(seqs))
        align = doc.get("alignment")
        self.alignment = None if align is None else Alignment.from_doc(align)
        classes = doc.get("classes")
        self.classes = [str(c) for c in classes] if isinstance(classes, list) else None

    def spec(self) -> loss.LossSpec:
        s = self.spec_doc
        dtype = np.dtype(s["dtype"])
        return loss.LossSpec(
            n_classes=int(s["n_classes"]), target_kind=s["target_kind"],
            input_dtype=np.dtype(s["input_dtype"]), dtype=dtype,
            weight=None if s["weight"] is None
            else np.asarray(_decode(s["weight"]), dtype=dtype),
            ignore_index=int(s["ignore_index"]), label_smoothing=float(s["label_smoothing"]),
            input_kind=s["input_kind"],
        )

    def finish(self, reduction: str) -> loss.LossResult:
        return loss.LossAccumulator.from_totals(self.spec(), self.totals).finalize(reduction)

    def summary(self, reduction: str | None = None, *, sources: dict[str, str] | None = None
                ) -> Summary:
        """The :class:`Summary` the report takes, for ``reduction`` (default: the one the
        partials were computed with; mean for 'none')."""
        reduction = reduction or (self.reduction if self.reduction != "none" else "mean")
        result = self.finish(reduction)
        spec = result.spec
        probs_loss = None
        if self.as_probs is not None:
            probs_spec = replace(spec, input_kind="probs")
            probs_loss = loss.LossAccumulator.from_totals(probs_spec, self.as_probs
                                                          ).finalize(reduction).loss
        loss_shape: tuple[int, ...] = ()
        if self.layout is not None and len(self.layout.logits_row) > 1:
            spatial = math.prod(self.layout.logits_row[1:])
            if spatial:
                loss_shape = (self.totals.positions // spatial, *self.layout.logits_row[1:])
        return Summary(result, self.scan, self.labels, self.stats, self.layout,
                       findings=list(self.findings), as_probs=self.as_probs,
                       probs_loss=probs_loss, sources=dict(sources or {}),
                       inputs=list(self.sources), loss_shape=loss_shape,
                       result_dtype=self.result_dtype, partial_reduction=self.reduction,
                       class_names=self.classes, sequences=self.sequences,
                       alignment=self.alignment)


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
    if doc.get("version") not in READS:
        raise InputFileError(path, f"partial format version {doc.get('version')!r}, this "
                             f"ce-loss reads versions {', '.join(map(str, READS))}",
                             hint="recompute it with this version")
    validate(doc, path)
    try:
        return Partial(doc, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"a damaged partial result ({type(exc).__name__}: {exc})",
                             hint="recompute it with --partial") from None


# -- checking a loaded document ---------------------------------------------------------------

DTYPES = ("float16", "float32", "float64")
_SPECIALS = ("nan", "inf", "-inf")  # how _encode writes non-finite floats


class _Damaged(Exception):
    """One field of a partial document is wrong: ``(field, value, what it should be)``."""

    def __init__(self, field: str, value: Any, want: str) -> None:
        super().__init__(f"field {field} is {_show(value)}, not {want}")


class _Missing(_Damaged):
    def __init__(self, field: str) -> None:
        Exception.__init__(self, f"field {field} is missing")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in _SPECIALS


def _get(doc: dict[str, Any], name: str, key: str) -> Any:
    if key not in doc:
        raise _Missing(f"{name}.{key}".lstrip("."))
    return doc[key]


def _count(doc: dict[str, Any], name: str, key: str) -> int:
    v = _get(doc, name, key)
    if not _is_int(v) or v < 0:
        raise _Damaged(f"{name}.{key}", v, "a count (a whole number >= 0)")
    return int(v)


def _section(doc: dict[str, Any], key: str, optional: bool = False) -> dict[str, Any] | None:
    v = _get(doc, "", key)
    if v is None and optional:
        return None
    if not isinstance(v, dict):
        raise _Damaged(key, v, "an object")
    return v


def validate(doc: dict[str, Any], path: str) -> None:
    """Check every field :func:`to_document` writes, so a damaged or hand-edited partial
    is one error naming the file and the field, never a wrong sum or a traceback."""
    try:
        _validate(doc)
    except _Damaged as exc:
        raise InputFileError(path, f"a damaged partial result: {exc}",
                             hint="recompute it with 'ce-loss compute --partial'") from None


def _show(v: Any) -> str:
    text = v if isinstance(v, str) and v.startswith(("KeyError", "TypeError", "ValueError",
                                                    "AttributeError")) else json.dumps(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_totals(totals: dict[str, Any], name: str, *, index: bool, weighted: bool) -> None:
    """The fields of :class:`~ce_cli.loss.LossTotals` (``totals`` and ``as_probs``)."""
    extra = set(totals) - {f.name for f in fields(loss.LossTotals)}
    if extra:
        raise _Damaged(f"{name}.{sorted(extra)[0]}", totals[sorted(extra)[0]],
                       "a field of a partial result (unknown)")
    n = {k: _count(totals, name, k) for k in ("positions", "counted", "ignored", "nonfinite")}
    for key in ("nll", "smooth", "denominator"):
        if not _is_number(_get(totals, name, key)):
            raise _Damaged(f"{name}.{key}", totals[key], "a number")
    if n["counted"] + n["ignored"] != n["positions"]:
        raise _Damaged(f"{name}.positions", n["positions"],
                       f"counted + ignored ({n['counted']} + {n['ignored']})")
    if n["nonfinite"] > n["counted"]:
        raise _Damaged(f"{name}.nonfinite", n["nonfinite"],
                       f"at most {name}.counted ({n['counted']})")
    if index and not weighted and totals["denominator"] != n["counted"]:
        raise _Damaged(f"{name}.denominator", totals["denominator"],
                       f"{name}.counted ({n['counted']}): without a weight they are equal")


def _validate(doc: dict[str, Any]) -> None:
    reduction = _get(doc, "", "reduction")
    if reduction not in REDUCTIONS:
        raise _Damaged("reduction", reduction, f"one of {', '.join(REDUCTIONS)}")
    sources = _get(doc, "", "sources")
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        raise _Damaged("sources", sources, "a list of file names")
    spec = _section(doc, "spec")
    assert spec is not None
    c = _get(spec, "spec", "n_classes")
    if not _is_int(c) or not 0 <= c < 1 << 31:
        raise _Damaged("spec.n_classes", c, "a class count (a whole number >= 0)")
    choices = {"target_kind": ("index", "probs"), "input_dtype": DTYPES, "dtype": DTYPES,
               "input_kind": INPUT_KINDS}
    for key, allowed in choices.items():
        v = _get(spec, "spec", key)
        if v not in allowed:
            raise _Damaged(f"spec.{key}", v, f"one of {', '.join(allowed)}")
    weight = _get(spec, "spec", "weight")
    if weight is not None and (not isinstance(weight, list) or len(weight) != c
                               or not all(_is_number(w) for w in weight)):
        raise _Damaged("spec.weight", weight, f"null or a list of {c} numbers (one per class)")
    if not _is_int(_get(spec, "spec", "ignore_index")):
        raise _Damaged("spec.ignore_index", spec["ignore_index"], "a whole number")
    eps = _get(spec, "spec", "label_smoothing")
    if not _is_number(eps) or eps in _SPECIALS or not 0.0 <= eps <= 1.0:
        raise _Damaged("spec.label_smoothing", eps, "a number in [0, 1]")

    totals = _section(doc, "totals")
    assert totals is not None
    _check_totals(totals, "totals", index=spec["target_kind"] == "index",
                  weighted=weight is not None)

    scan = _section(doc, "scan")
    assert scan is not None
    kinds = {f.name: f.default for f in fields(InputScan)}
    for key, v in scan.items():
        if key not in kinds:
            raise _Damaged(f"scan.{key}", v, "a field of a partial result (unknown)")
        default = kinds[key]
        if isinstance(default, str):
            ok = v in INPUT_KINDS if key == "input_kind" else isinstance(v, str)
        elif isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            ok = _is_int(v) and (v >= 0 or default < 0)
        else:
            ok = _is_number(v)
        if not ok:
            if isinstance(default, str):
                want = "text"
            elif isinstance(default, bool):
                want = "true or false"
            elif isinstance(default, int):
                want = "a whole number" if default < 0 else "a count (a whole number >= 0)"
            else:
                want = "a number"
            raise _Damaged(f"scan.{key}", v, want)

    _validate_v3(doc, c)
    labels = _get(doc, "", "labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != c
                               or not all(_is_int(v) and v >= 0 for v in labels)):
        raise _Damaged("labels", labels, f"null or {c} counts, one per class")
    stats = _section(doc, "stats", optional=True)
    if stats is not None:
        if stats.get("n_classes") != c:
            raise _Damaged("stats.n_classes", stats.get("n_classes"),
                           f"spec.n_classes ({c})")
        try:
            got = _stats_from(_decode(stats))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Damaged("stats", f"{type(exc).__name__}: {exc}",
                           "the statistics 'compute --partial' writes") from None
        sizes = {"bin_count": got.bins, "bin_conf": got.bins, "bin_correct": got.bins,
                 "class_support": c, "class_loss": c, "class_correct": c, "class_conf": c,
                 "loss_hist": len(metrics.LOSS_EDGES) - 1}
        for key, size in sizes.items():
            if getattr(got, key).shape != (size,):
                raise _Damaged(f"stats.{key}", stats[key], f"a list of {size} numbers")


def _validate_v3(doc: dict[str, Any], c: int) -> None:
    """The fields version 3 added (absent from older partials: then unknown)."""
    if doc.get("version") == VERSION:  # written by this version: every field is there
        for key in ("layout", "as_probs", "findings", "result_dtype"):
            _get(doc, "", key)
    spec, totals = doc["spec"], doc["totals"]
    layout = doc.get("layout")
    if layout is not None:
        if not isinstance(layout, dict):
            raise _Damaged("layout", layout, "null or an object")
        for key in ("logits_row", "targets_row"):
            v = _get(layout, "layout", key)
            if not isinstance(v, list) or not all(_is_int(d) and d >= 0 for d in v):
                raise _Damaged(f"layout.{key}", v, "a list of sizes")
        row = layout["logits_row"]
        if not row or row[0] != c:
            raise _Damaged("layout.logits_row", row,
                           f"the logits' row, classes ({c}) first")
        spatial = math.prod(row[1:])
        if spatial and totals["positions"] % spatial:
            raise _Damaged("layout.logits_row", row, f"a row whose positions ({spatial}) "
                           f"divide totals.positions ({totals['positions']})")
        if not isinstance(_get(layout, "layout", "class_axis_given"), bool):
            raise _Damaged("layout.class_axis_given", layout["class_axis_given"],
                           "true or false")
        if not isinstance(layout.get("shifted", False), bool):
            raise _Damaged("layout.shifted", layout["shifted"], "true or false")
        dtype = _get(layout, "layout", "target_dtype")
        if dtype is not None and not _is_dtype_name(dtype):
            raise _Damaged("layout.target_dtype", dtype, "null or a NumPy dtype name")
    as_probs = doc.get("as_probs")
    if as_probs is not None:
        if not isinstance(as_probs, dict):
            raise _Damaged("as_probs", as_probs, "null or the totals of a partial result")
        _check_totals(as_probs, "as_probs", index=spec["target_kind"] == "index",
                      weighted=spec["weight"] is not None)
    if doc.get("result_dtype") not in (None, "bfloat16"):
        raise _Damaged("result_dtype", doc["result_dtype"], "null or \"bfloat16\"")
    said = doc.get("findings", [])
    if not isinstance(said, list) or not all(
            isinstance(f, list) and len(f) == 2 and f[0] in ("warning", "note")
            and isinstance(f[1], str) for f in said):
        raise _Damaged("findings", said, "a list of [kind, message] pairs")
    align = doc.get("alignment")
    if align is not None:
        try:
            Alignment.from_doc(align)
        except ValueError:
            raise _Damaged("alignment", align, "null or a list of five counts") from None
    seqs = doc.get("sequences")
    if seqs is not None:
        try:
            got = SequenceStats.from_doc(_decode(seqs))
        except (KeyError, TypeError, ValueError) as exc:
            raise _Damaged("sequences", f"{type(exc).__name__}: {exc}",
                           "lengths, token counts and sums per sequence") from None
        if got.length < 0 or (got.tokens < 0).any():
            raise _Damaged("sequences.tokens", seqs.get("tokens"), "counts >= 0")


def _is_dtype_name(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


def merge(parts: list[Partial], reduction: str | None = None) -> Partial:
    """One partial for all of ``parts``: exact sums, so any order gives the same result.

    The partials must agree on the options (:data:`_SPEC_KEYS`), the audit settings and
    the reduction they were computed with; ``reduction`` (merge's ``--reduction``) lets
    partials of different reductions merge, reported as that one (the sums behind mean
    and sum are the same)."""
    first = parts[0]
    for p in parts[1:]:
        for key in _SPEC_KEYS:
            if p.spec_doc[key] != first.spec_doc[key]:
                raise InputFileError(
                    p.path, f"{key} is {p.spec_doc[key]!r} but {first.path} has "
                    f"{first.spec_doc[key]!r}",
                    hint="merge only partials computed with the same options and classes")
        if p.result_dtype != first.result_dtype:
            raise InputFileError(
                p.path, f"its result is {p.result_dtype or p.spec_doc['dtype']} but "
                f"{first.path}'s is {first.result_dtype or first.spec_doc['dtype']}",
                hint="merge only partials computed from logits of one dtype (or with one "
                     "--dtype)")
        if p.classes != first.classes and p.classes and first.classes:
            raise InputFileError(
                p.path, f"its classes are {', '.join(p.classes)} but {first.path}'s are "
                f"{', '.join(first.classes)}",
                hint="merge only partials whose classes are in the same order (--classes)")
        if p.layout is not None and first.layout is not None and \
                p.layout.shifted != first.layout.shifted:
            said = {True: "with --shift", False: "without --shift"}
            raise InputFileError(
                p.path, f"computed {said[p.layout.shifted]} but {first.path} "
                f"{said[first.layout.shifted]}, which are different losses",
                hint="recompute the partials with the same --shift")
        if reduction is None and p.reduction != first.reduction:
            raise InputFileError(
                p.path, f"computed with --reduction {p.reduction} but {first.path} with "
                f"--reduction {first.reduction}, so the merged result has no one reduction",
                hint="recompute the partials with the same --reduction, or pass merge's "
                     "--reduction to report them as one")
        if p.stats is not None and first.stats is not None:
            for key, flag in (("top_k", "--top-k"), ("bins", "--bins"),
                              ("worst_k", "--worst")):
                mine, theirs = getattr(p.stats, key), getattr(first.stats, key)
                if mine != theirs:
                    raise InputFileError(
                        p.path, f"computed with {flag} {_flag(mine)} but {first.path} with "
                        f"{flag} {_flag(theirs)}",
                        hint=f"recompute the partials with the same {flag}")
    totals = loss.LossTotals.sum([p.totals for p in parts])
    scan = _merge_scans([p.scan for p in parts])
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.sum([p.labels for p in parts], axis=0)
    stats = None
    if all(p.stats is not None for p in parts):
        stats = parts[0].stats
        for p in parts[1:]:
            stats = stats.merge(p.stats)  # type: ignore[union-attr,arg-type]
    # a part with no rows says nothing about the probabilities reading
    seen = [p for p in parts if p.totals.positions] or parts[:1]
    as_probs = None
    if all(p.as_probs is not None for p in seen):
        as_probs = loss.LossTotals.sum([p.as_probs for p in seen])  # type: ignore[misc]
    sequences = None  # in the order given: shard after shard
    if all(p.sequences is not None for p in parts) and \
            len({p.sequences.length for p in parts}) == 1:  # type: ignore[union-attr]
        sequences = parts[0].sequences
        for p in parts[1:]:
            sequences = sequences.then(p.sequences)  # type: ignore[union-attr,arg-type]
    aligns = [p.alignment for p in parts if p.alignment is not None]
    alignment = None
    for a in aligns:
        alignment = a if alignment is None else alignment.merged(a)
    summary = Summary(
        loss.LossResult(np.zeros((), first.spec().dtype), reduction or first.reduction,
                        first.spec(), totals),
        scan, labels, stats, layout=_merge_layouts([p.layout for p in parts]),
        findings=list(dict.fromkeys(f for p in parts for f in p.findings)),
        as_probs=as_probs, inputs=[s for p in parts for s in p.sources],
        result_dtype=first.result_dtype,
        class_names=next((p.classes for p in parts if p.classes), None),
        sequences=sequences, alignment=alignment)
    return Partial(json.loads(json.dumps(to_document(summary))), "<merged>")


def _merge_layouts(layouts: list[Layout | None]) -> Layout | None:
    """The layout of all the parts: None when one is unknown or the rows differ; a target
    dtype that differs between parts becomes unknown alone."""
    if not layouts or any(lay is None for lay in layouts):
        return None
    first = layouts[0]
    assert first is not None
    if any((lay.logits_row, lay.targets_row, lay.class_axis_given)  # type: ignore[union-attr]
           != (first.logits_row, first.targets_row, first.class_axis_given) for lay in layouts):
        return None
    dtypes = {lay.target_dtype for lay in layouts}  # type: ignore[union-attr]
    return replace(first, target_dtype=dtypes.pop() if len(dtypes) == 1 else None)


def _flag(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _merge_scans(scans: list[InputScan]) -> InputScan:
    return functools.reduce(InputScan.merge, scans)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n"
