"""What the commands do, after the command line has parsed them: open, compute, report.

No click here: the options come as dataclasses (:mod:`ce_cli.options`), errors go up as
:class:`~ce_cli.errors.CeLossError`, and every engine ends in :func:`ce_cli.report.finish`.
Imported only when a command runs, so ``ce-loss --help`` does not pay for NumPy.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .. import readers, report, writers
from ..audit.findings import Finding
from ..console import progress_bar
from ..errors import CeLossError, DTypeError, ExitCode, ShapeError, TargetError, UsageError
from ..loss import softmax
from ..options import AuditOptions, LossOptions, OutputOptions, ReadOptions
from ..readers.validate import logits_dtype
from . import partial, pipeline, sources
from .summary import Summary


def compute(read: ReadOptions, loss: LossOptions, audit: AuditOptions, out: OutputOptions,
            *, engine: str = "default", scheduler: str | None = None,
            written: list[str] | None = None) -> ExitCode:
    """Run ``ce-loss compute`` (its help is in :mod:`ce_cli.cli`)."""
    _check_outputs(read, loss, out)
    if out.fail_above is not None and loss.reduction == "none":
        raise UsageError("--fail-above checks a mean or a sum; drop --reduction none",
                         option="--fail-above")
    if out.fmt == "table":
        from ..console import warm_up_table

        warm_up_table()
    if engine == "dask":
        summary = _compute_on_dask(read, loss, audit, out, scheduler)
    else:
        summary = _compute(read, loss, audit, out)
    return report.finish(summary, out, written=written)


def _check_outputs(read: ReadOptions, loss: LossOptions, out: OutputOptions) -> None:
    """Everything that can be refused before any data is read."""
    sources.check_given({"LOGITS": read.logits, "TARGETS": read.targets,
                         "--weight": loss.weight, "-o": out.output, "--softmax": out.softmax,
                         "--per-sequence": out.per_sequence, "--partial": out.partial})
    for path in (out.output, out.softmax, out.per_sequence):
        if path is not None:
            writers.check_output(path)
    if out.partial is not None:
        writers.check_output(out.partial, suffixes=(".json",))
    writers.check_apart({"-o": out.output, "--softmax": out.softmax,
                         "--per-sequence": out.per_sequence, "--partial": out.partial},
                        {**sources.input_files("the logits", read.logits),
                         **sources.input_files("the targets", read.targets),
                         **sources.input_files("the --weight", loss.weight)})
    sources.check_stdin(read.logits, read.targets)


def _compute(read: ReadOptions, loss: LossOptions, audit: AuditOptions, out: OutputOptions
             ) -> Summary:
    """The default engine: one streaming pass."""
    xs, ts = sources.open_sources(read, loss.class_axis)
    # the dtype's finding comes with the summary
    x_dtype, _ = logits_dtype(xs.dtype, xs.path, loss.dtype)
    c = sources.n_classes(xs, loss.class_axis)
    sources.check_class_names(xs, c)
    w, weight_said = sources.parse_weight(loss.weight, c, x_dtype)
    per_sample = out.output is not None or (out.fmt == "csv" and loss.reduction == "none")
    probs_parts: list[np.ndarray] = []
    hooks = []
    if out.softmax:
        hooks.append(lambda xb: probs_parts.append(softmax(xb, loss.input_kind)))
    progress = progress_bar(xs.n_rows, tuple(xs.row_shape), c)
    if progress is not None:
        hooks.append(progress.advance)
    try:
        with progress or contextlib.nullcontext():
            summary = pipeline.run(
                xs, ts, weight=w, ignore_index=loss.ignore_index, reduction=loss.reduction,
                label_smoothing=loss.label_smoothing, class_axis=loss.class_axis,
                input_kind=loss.input_kind, dtype=loss.dtype, before=weight_said,
                keep_losses=loss.reduction == "none" or per_sample, keep_targets=per_sample,
                preview_rows=audit.rows if out.fmt in ("table", "json") else 0,
                audit=audit if out.wants_audit else None,
                sequences=wants_sequences(read, out), shifted=read.shift,
                on_rows=(lambda xb: [hook(xb) for hook in hooks]) if hooks else None,
            )
    except TargetError as exc:
        raise CeLossError(sources.target_error(exc, xs, ts, read, loss.ignore_index)) from None
    except (ShapeError, DTypeError) as exc:
        raise CeLossError(sources.shape_error(exc, xs, ts, loss.class_axis)) from None
    if out.softmax:
        matrix = np.concatenate(probs_parts) if probs_parts else \
            np.zeros((0, summary.result.spec.n_classes))
        summary.softmax = matrix.astype(x_dtype, copy=False)
    summary.class_names = xs.class_names
    return summary


def _compute_on_dask(read: ReadOptions, loss: LossOptions, audit: AuditOptions,
                     out: OutputOptions, scheduler: str | None) -> Summary:
    """``compute --engine dask``: one task per shard or row range, merged as partials."""
    for name, value in (("-o", out.output), ("--softmax", out.softmax)):
        if value is not None:
            raise UsageError(f"{name} needs per-sample output, which --engine dask does not "
                             "gather; run it without --engine dask")
    if loss.reduction == "none" or readers.is_stdin(read.logits) or \
            readers.is_stdin(read.targets):
        raise UsageError("--engine dask computes mean or sum from files; for --reduction none "
                         "or stdin use the default engine")
    from . import dask_engine

    if not dask_engine.available():
        raise CeLossError(f"--engine dask needs Dask: {dask_engine.INSTALL_HINT}")
    tasks = dask_engine.plan(read.logits, read.targets, fmt=read.logits_format)
    weight, weight_said = None, []
    # the weight and the class names: decided once, against the first task's logits
    xs0, _ = sources.open_sources(read.with_paths(tasks[0].logits, tasks[0].targets),
                                  loss.class_axis)
    sources.check_class_names(xs0, sources.n_classes(xs0, loss.class_axis))
    if loss.weight is not None:
        x_dtype, _ = logits_dtype(xs0.dtype, xs0.path, loss.dtype)
        weight, weight_said = sources.parse_weight(
            loss.weight, sources.n_classes(xs0, loss.class_axis), x_dtype)
    job = dask_engine.Job(read, loss, weight, audit if out.wants_audit else None,
                          tuple(weight_said), sequences=wants_sequences(read, out))
    merged = dask_engine.compute(tasks, job, scheduler)
    summary = merged.summary(loss.reduction, sources={"logits": read.logits,
                                                      "targets": read.targets or read.logits})
    summary.class_names = xs0.class_names
    return summary


def compare(read: ReadOptions, b_logits: str, loss: LossOptions, audit: AuditOptions,
            out: OutputOptions, *, worst: int = 10, bootstrap: int = 0, seed: int = 0,
            fail_if_worse: bool = False, margin: float = 0.0, engine: str = "default",
            scheduler: str | None = None, written: list[str] | None = None) -> ExitCode:
    """Run ``ce-loss compare`` (its help is in :mod:`ce_cli.cli`)."""
    from .. import compare_report
    from . import compare as comparing

    sources.check_given({"A": read.logits, "B": b_logits, "TARGETS": read.targets,
                         "--weight": loss.weight, "--partial": out.partial})
    for name, path in (("A", read.logits), ("B", b_logits), ("TARGETS", read.targets)):
        if readers.is_stdin(path):  # each model's pair is opened on its own
            raise UsageError(f"compare reads its inputs as files, and {name} is - (stdin); "
                             "save it to a file first (e.g. > a.npy) and name that")
    if out.partial is not None:
        writers.check_output(out.partial, suffixes=(".json",))
    writers.check_apart({"--partial": out.partial},
                        {**sources.input_files("model A's", read.logits),
                         **sources.input_files("model B's", b_logits),
                         **sources.input_files("the targets", read.targets),
                         **sources.input_files("the --weight", loss.weight)})
    sources.check_stdin(read.logits, b_logits, read.targets)
    xs, _ = sources.open_sources(read, loss.class_axis)
    x_dtype, _ = logits_dtype(xs.dtype, xs.path, loss.dtype)
    c = sources.n_classes(xs, loss.class_axis)
    sources.check_class_names(xs, c)
    weight, weight_said = sources.parse_weight(loss.weight, c, x_dtype)
    job = comparing.CompareJob(read, b_logits, loss, weight,
                               audit if out.wants_audit else None, worst=worst,
                               keep_clusters=bootstrap > 0)
    if engine == "dask":
        if bootstrap:
            raise UsageError("--bootstrap resamples the clusters of one pass; run it without "
                             "--engine dask", option="--bootstrap")
        from . import dask_engine

        if not dask_engine.available():
            raise CeLossError(f"--engine dask needs Dask: {dask_engine.INSTALL_HINT}")
        result = dask_engine.compare(job, scheduler, said=tuple(weight_said))
    else:
        progress = progress_bar(xs.n_rows, tuple(xs.row_shape), c)
        with progress or contextlib.nullcontext():
            result = comparing.run(job, said=weight_said,
                                   on_rows=progress.advance if progress else None)
    if bootstrap:
        result.bootstrap = (bootstrap, seed, result.paired.bootstrap(bootstrap, seed))
    return compare_report.finish(result, out, fail_if_worse=fail_if_worse, margin=margin,
                                 written=written)


def wants_sequences(read: ReadOptions, out: OutputOptions) -> bool | None:
    """Per-sequence sums: for ``--per-sequence``, for the audit of ``--shift`` runs; else
    the pipeline decides (None)."""
    if out.per_sequence is not None or (read.shift and out.wants_audit):
        return True
    return None


def merge(parts: tuple[str, ...], reduction: str | None, out: OutputOptions, *,
          written: list[str] | None = None) -> ExitCode:
    """Run ``ce-loss merge``."""
    sources.check_given({**{f"PARTIAL.json #{i + 1}": p for i, p in enumerate(parts)},
                         "--partial": out.partial})
    if out.partial is not None:
        writers.check_output(out.partial, suffixes=(".json",))
    merged_files = [p for p in parts if os.path.exists(p)]
    writers.check_apart({"--partial": out.partial},
                        {"one of the partial results merged": merged_files})
    for i, a in enumerate(parts):
        for b in parts[:i]:
            if writers.same_file(a, b):
                raise CeLossError(f"{b} and {a} are the same partial result: merging it twice "
                                  "counts its rows twice; give each partial once")
    from . import compare as comparing

    kinds = [comparing.is_comparison(p) for p in parts]
    if any(kinds):
        if not all(kinds):
            first = parts[kinds.index(True)]
            other = parts[kinds.index(False)]
            raise CeLossError(f"{first} is a comparison's partial result but {other} is not; "
                              "merge comparisons with comparisons only")
        from .. import compare_report

        if reduction is not None or out.fail_above is not None:
            raise UsageError("--reduction and --fail-above are for loss partials; a "
                             "comparison is a difference of means")
        runs = [comparing.load(p) for p in parts]
        return compare_report.finish(comparing.merge(runs, list(parts)), out,
                                     written=written)
    loaded = [partial.load(p) for p in parts]
    merged = partial.merge(loaded, reduction=reduction)
    summary = merged.summary(reduction, sources={"partials": ", ".join(parts)})
    return report.finish(summary, out, written=written, before=overlaps(loaded))


def overlaps(parts: list[partial.Partial]) -> list[Finding]:
    """Partials that record the same input (their ``sources``, as given on their command
    lines): a merged partial merged again with one of its own parts, say. A note, since
    equal relative names in two folders are two files."""
    seen: dict[str, str] = {}
    out = []
    for p in parts:
        for source in dict.fromkeys(p.sources):
            if "-" in source.split(" ") or source.startswith("<"):  # stdin: no name to match
                continue
            if source in seen and seen[source] != p.path:
                out.append(Finding("note", (
                    f"{seen[source]} and {p.path} both record the input {source!r}: if it is "
                    "the same file, its rows are counted twice; merge each shard's partial "
                    "once")))
            seen.setdefault(source, p.path)
    return out
