"""What the commands do, after Click has parsed them: read, compute, report.

Imported only when a command runs, so ``ce-loss --help`` does not pay for NumPy.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import checks, core, metrics, partial, pipeline, readers, render, writers
from .cli import say as _say
from .errors import CeLossError, DTypeError, ExitCode, ShapeError, TargetError


def _parse_weight(value: str | None, n_classes: int, dtype: np.dtype) -> np.ndarray | None:
    if value is None:
        return None
    if Path(value).suffix and (Path(value).exists() or not _looks_numeric(value)):
        w = np.asarray(readers.read_array(value, role="weight"))
        if w.dtype.kind not in "iuf":
            raise CeLossError(f"{value}: the weight file holds {w.dtype}, not numbers")
        w = w.reshape(-1) if w.ndim > 1 and max(w.shape) == w.size else w
    else:
        try:
            w = np.array([float(v) for v in value.split(",")])
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither a file nor a comma-separated list of numbers "
                "(e.g. 0.2,0.5,0.3)", param_hint="'--weight'") from None
    if w.ndim != 1 or w.shape[0] != n_classes:
        raise CeLossError(
            f"--weight has {w.size} values but the logits have {n_classes} classes; "
            "give one weight per class"
        )
    return w.astype(dtype)


def _looks_numeric(value: str) -> bool:
    try:
        [float(v) for v in value.split(",")]
        return True
    except ValueError:
        return False


def _default_format() -> str:
    env = os.environ.get("CE_LOSS_FORMAT", "").strip().lower()
    if env:
        if env not in render.FORMATS:
            raise click.BadParameter(
                f"CE_LOSS_FORMAT={env!r} is not one of {', '.join(render.FORMATS)}",
                param_hint="'--format'")
        return env
    return "table" if _is_terminal(sys.stdout) else "plain"


def compute(*, logits: str, targets: str | None, reduction: str, weight: str | None,
            ignore_index: int, label_smoothing: float, input_kind: str,
            target_column: str | None, logits_columns: str | None, header: bool | None,
            logits_format: str | None, targets_format: str | None, fmt: str | None,
            output: str | None, softmax_path: str | None, rows: int, class_axis: int | None,
            explain: bool, top_k: str, bins: int, worst: int, no_plots: bool, strict: bool,
            quiet: bool, partial_path: str | None, engine: str, scheduler: str | None
            ) -> None:
    """Run ``ce-loss compute`` (its help is in :mod:`ce_cli.cli`)."""
    fmt = fmt or _default_format()
    for path in (output, softmax_path):
        if path is not None:
            writers.check_output(path)
    if partial_path is not None:
        writers.check_output(partial_path, suffixes=(".json",))
    if output is not None and softmax_path is not None and \
            os.path.abspath(output) == os.path.abspath(softmax_path):
        raise click.BadParameter("--softmax and -o name the same file", param_hint="'-o'")
    opened = dict(target_column=target_column, logits_columns=logits_columns, header=header,
                  logits_format=logits_format, targets_format=targets_format)
    if engine == "dask":
        _compute_on_dask(logits, targets, opened, fmt=fmt, reduction=reduction,
                         weight=weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, input_kind=input_kind,
                         class_axis=class_axis, top_k=top_k, bins=bins, worst=worst,
                         explain=explain, no_plots=no_plots, strict=strict, quiet=quiet,
                         partial_path=partial_path, scheduler=scheduler,
                         per_sample={"-o": output, "--softmax": softmax_path})
        return
    xs, ts = _open_sources(logits, targets, **opened)
    if not quiet:
        for note in dict.fromkeys([*xs.notes, *ts.notes]):  # a shared table notes once
            _say("note", note)
    x_dtype, note = checks.logits_dtype(xs.dtype, xs.path)
    if note:
        _say("warning", note)
    n_classes = xs.row_shape[0] if xs.row_shape else (xs.n_rows or 0)
    w = _parse_weight(weight, n_classes, x_dtype)

    per_sample = output is not None or (fmt == "csv" and reduction == "none")
    probs_parts: list[np.ndarray] = []
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
                   label_smoothing=label_smoothing, class_axis=class_axis)
    audit = None
    if explain or fmt != "plain" or partial_path is not None:
        audit = dict(top_k=_parse_top_k(top_k), bins=bins, worst_k=worst)
    hooks = []
    if softmax_path:
        hooks.append(lambda xb: probs_parts.append(core.softmax(xb, input_kind)))
    progress = _progress_bar(xs)
    if progress is not None:
        hooks.append(progress.advance)
    try:
        with progress or contextlib.nullcontext():
            run = pipeline.run(
                xs, ts, **options, input_kind=input_kind,
                keep_losses=reduction == "none" or per_sample, keep_targets=per_sample,
                preview_rows=rows if fmt in ("table", "json") else 0, audit=audit,
                on_rows=(lambda xb: [hook(xb) for hook in hooks]) if hooks else None,
            )
    except TargetError as exc:
        raise CeLossError(_target_error(exc, xs, ts, logits, targets, opened,
                                        ignore_index)) from None
    except (ShapeError, DTypeError) as exc:
        raise CeLossError(_shape_error(exc, xs, ts, class_axis)) from None
    result = run.result
    spec = result.spec
    said: list[checks.Finding] = []
    if run.probs_loss is not None:
        said.append(checks.Finding("warning", checks.probabilities_as_logits_warning(
            run.scan, _brief(result.loss), _brief(run.probs_loss))))
    said += checks.findings(run.scan, spec, result.totals, labels=run.labels,
                            loss=result.loss, reduction=reduction, x_row=run.x_row,
                            t_row=run.t_row, class_axis_given=class_axis is not None)
    if not quiet:
        for finding in said:
            _say(finding.kind, finding.message)

    if output is not None and result.losses is not None:  # kept for -o
        losses = result.losses.reshape(-1)
        columns = {"index": np.arange(losses.shape[0], dtype=np.int64)}
        if run.targets is not None:
            columns["target"] = run.targets
        columns["loss"] = losses
        writers.write_columns(output, columns, main="loss")
    if softmax_path is not None:
        matrix = np.concatenate(probs_parts) if probs_parts else \
            np.zeros((0, spec.n_classes))
        writers.write_matrix(softmax_path, matrix.astype(x_dtype, copy=False), prefix="p")

    if partial_path is not None:
        doc = partial.to_document(spec, result.totals, run.scan, run.labels, run.stats,
                                  reduction, [f"{xs.path} {ts.path}"])
        writers.write_text(partial_path, partial.dumps(doc))

    report = render.Report(result=result, input_kind=input_kind, preview=run.preview,
                           sources={"logits": xs.path, "targets": ts.path},
                           stats=run.summary(),
                           explain=metrics.explain(result, run.stats) if explain else None,
                           plots=not no_plots)
    _emit(report, fmt, targets=run.targets)
    if strict and any(f.kind == "warning" for f in said):
        raise click.exceptions.Exit(ExitCode.INTERNAL)


def _compute_on_dask(logits: str, targets: str | None, opened: dict[str, Any], *, fmt: str,
                     reduction: str, weight: str | None, ignore_index: int,
                     label_smoothing: float, input_kind: str, class_axis: int | None,
                     top_k: str, bins: int, worst: int, explain: bool, no_plots: bool,
                     strict: bool, quiet: bool, partial_path: str | None,
                     scheduler: str | None, per_sample: dict[str, str | None]) -> None:
    """``compute --engine dask``: one task per shard or row range, merged as partials."""
    for name, value in per_sample.items():
        if value is not None:
            raise click.UsageError(f"{name} needs per-sample output, which --engine dask "
                                   "does not gather; run it without --engine dask")
    if reduction == "none" or "-" in (logits, targets):
        raise click.UsageError("--engine dask computes mean or sum from files; for "
                               "--reduction none or stdin use the default engine")
    from . import dask_engine

    if not dask_engine.available():
        raise CeLossError(f"--engine dask needs Dask: {dask_engine.INSTALL_HINT}")
    wants_stats = explain or fmt != "plain" or partial_path is not None
    run_options = dict(weight=None, ignore_index=ignore_index, reduction=reduction,
                       label_smoothing=label_smoothing, input_kind=input_kind,
                       class_axis=class_axis,
                       audit=dict(top_k=_parse_top_k(top_k), bins=bins, worst_k=worst)
                       if wants_stats else None)
    tasks = dask_engine.plan(logits, targets, fmt=opened["logits_format"])
    if weight is not None:  # parsed once, against the first task's logits
        xs0, _ = _open_sources(tasks[0].logits, tasks[0].targets, **opened)
        x_dtype, _ = checks.logits_dtype(xs0.dtype, xs0.path)
        run_options["weight"] = _parse_weight(weight, xs0.row_shape[0] if xs0.row_shape
                                              else (xs0.n_rows or 0), x_dtype)
    merged = dask_engine.compute(tasks, opened, run_options, scheduler)
    _finish(merged, reduction, fmt=fmt, explain=explain, no_plots=no_plots, strict=strict,
            quiet=quiet, partial_path=partial_path,
            sources={"logits": logits, "targets": targets or logits})


def _emit(report: render.Report, fmt: str, targets: np.ndarray | None = None) -> None:
    """Write the report to stdout in ``fmt`` (nowhere when the shell closed it: ``>&-``,
    taken like a reader that has gone)."""
    out = sys.stdout
    if out is None:
        return
    if fmt == "plain":
        render.write_plain(report, out)
    elif fmt == "json":
        render.write_json(report, out)
    elif fmt == "csv":
        render.write_csv(report, out, targets=targets)
    else:
        from rich.console import Console

        render.write_table(report, Console(file=out, highlight=False))
    out.flush()


def merge(*, parts: tuple[str, ...], reduction: str | None, fmt: str | None, explain: bool,
          no_plots: bool, strict: bool, quiet: bool, partial_path: str | None) -> None:
    """Run ``ce-loss merge``."""
    fmt = fmt or _default_format()
    if partial_path is not None:
        writers.check_output(partial_path, suffixes=(".json",))
    merged = partial.merge([partial.load(p) for p in parts])
    _finish(merged, reduction, fmt=fmt, explain=explain, no_plots=no_plots, strict=strict,
            quiet=quiet, partial_path=partial_path, sources={"partials": ", ".join(parts)})


def _finish(merged: partial.Partial, reduction: str | None, *, fmt: str, explain: bool,
            no_plots: bool, strict: bool, quiet: bool, partial_path: str | None,
            sources: dict[str, str]) -> None:
    """Report a merged partial result: findings on stderr, the loss on stdout."""
    reduction = reduction or (merged.reduction if merged.reduction != "none" else "mean")
    result = merged.finish(reduction)
    spec = result.spec
    said = checks.findings(merged.scan, spec, result.totals, labels=merged.labels,
                           loss=result.loss, reduction=reduction, x_row=(), t_row=(),
                           class_axis_given=True)
    if spec.input_kind == "logits" and merged.scan.looks_like_probabilities(
            spec.input_dtype, spec.n_classes):
        said.insert(0, checks.Finding("warning", (
            f"the logits look like probabilities: {merged.scan.evidence()}; torch applies "
            "log-softmax to them again; if they are softmax outputs, pass --input-kind probs")))
    if not quiet:
        for finding in said:
            _say(finding.kind, finding.message)
    if partial_path is not None:
        writers.write_text(partial_path, partial.dumps(merged.doc))
    stats = merged.stats
    report = render.Report(result=result, input_kind=spec.input_kind, sources=sources,
                           stats=stats.summary() if stats is not None else None,
                           explain=metrics.explain(result, stats) if explain else None,
                           plots=not no_plots)
    _emit(report, fmt)
    if strict and any(f.kind == "warning" for f in said):
        raise click.exceptions.Exit(ExitCode.INTERNAL)


def _open_sources(logits: str, targets: str | None, *, target_column: str | None,
                  logits_columns: str | None, header: bool | None, logits_format: str | None,
                  targets_format: str | None) -> tuple[Any, Any]:
    """Open the logits and targets sources, or both from one table."""
    if logits == "-" and targets == "-":
        raise click.BadParameter("only one of LOGITS and TARGETS can be - (stdin)",
                                 param_hint="'TARGETS'")
    if targets is None:
        if target_column is None:
            raise click.UsageError("missing TARGETS: give a targets file, or --target-column "
                                   "NAME when LOGITS is a table holding both")
        return readers.open_table_pair(logits, target_column=target_column,
                                       logits_columns=logits_columns, fmt=logits_format,
                                       header=header)
    opts: dict[str, Any] = {}
    if header is not None:
        opts["header"] = header
    x_opts = dict(opts, **({"logits_columns": logits_columns} if logits_columns else {}))
    t_opts = dict(opts, **({"target_column": target_column} if target_column else {}))
    xs = readers.open_source(logits, role="logits", fmt=logits_format, **x_opts)
    ts = readers.open_source(targets, role="targets", fmt=targets_format, **t_opts)
    readers.shards.check_pairs(xs, ts)
    return xs, ts


#: inputs with more elements than this get a progress bar (when stderr is a terminal)
PROGRESS_ELEMENTS = 50_000_000


class _Progress:
    """A rich progress bar on stderr counting loss positions, with positions per second."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("computing"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("[progress.data.speed]{task.fields[rate]}"),
                             TimeRemainingColumn(), console=Console(stderr=True),
                             transient=True)
        self._task = self._bar.add_task("loss", total=total, rate="")
        self._done = 0
        self._start = 0.0

    def __enter__(self) -> _Progress:
        import time

        self._start = time.perf_counter()
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)

    def advance(self, block: np.ndarray) -> None:
        import time

        self._done += block.shape[0]
        rate = self._done / max(time.perf_counter() - self._start, 1e-9)
        self._bar.update(self._task, advance=block.shape[0], rate=f"{rate:,.0f} rows/s")


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (``None`` when the shell closed it: ``2>&-``)."""
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def _progress_bar(xs: Any) -> _Progress | None:
    """A progress bar when stderr is a terminal and the input is large and of known size."""
    if xs.n_rows is None or not _is_terminal(sys.stderr):
        return None
    per_row = int(np.prod(xs.row_shape)) if xs.row_shape else 1
    if xs.n_rows * per_row < PROGRESS_ELEMENTS:
        return None
    spatial = int(np.prod(xs.row_shape[1:])) if len(xs.row_shape) > 1 else 1
    return _Progress(xs.n_rows * spatial)


def _parse_top_k(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise click.BadParameter(f"{text!r} is not a list of whole numbers >= 1, e.g. 1,5",
                                 param_hint="'--top-k'")
    return ks


def _target_error(exc: TargetError, xs: Any, ts: Any, logits: str, targets: str | None,
                  opened: dict[str, Any], ignore: int) -> str:
    """torch's out-of-bounds message, located, with the labels' range and the likely fix."""
    c = xs.row_shape[0] if xs.row_shape else (xs.n_rows or 0)
    base = str(exc).split(" Class indices")[0].rstrip(".")
    message = f"{ts.path}: {base}"
    if "-" in (logits, targets):
        return message + f"; class indices must lie in 0..{c - 1} or equal --ignore-index"
    try:
        _, ts2 = _open_sources(logits, targets, **opened)
        t = np.asarray(ts2.read()).reshape(-1)
    except CeLossError:
        return message
    t = t[t != ignore]
    bad = np.flatnonzero((t < 0) | (t >= c))
    if bad.size:
        row = int(bad[0])
        line = ts2.line_of(row)
        message += f" (first at target #{row}" + (f", line {line})" if line else ")")
    lo, hi = int(t.min()), int(t.max())
    offenders = np.unique(t[bad]) if bad.size else np.array([], np.int64)
    message += f"; the logits have {c} classes (0..{c - 1}) and the labels run {lo}..{hi}"
    if offenders.size == 1 and offenders[0] < 0:
        v = int(offenders[0])
        message += f"; {v} is the only value out of range: if it marks padding, pass " \
                   f"--ignore-index {v}"
    elif lo == 1 and hi == c:
        message += "; they look 1-based: subtract 1 so they run 0..C-1"
    elif offenders.size == 1:
        v = int(offenders[0])
        message += f"; {v} is the only value out of range: if it marks samples to skip, " \
                   f"pass --ignore-index {v}"
    else:
        message += "; pass the targets saved with these logits"
    return message


def _shape_error(exc: CeLossError, xs: Any, ts: Any, class_axis: int | None) -> str:
    """torch's shape message, naming the files and their shapes, with the likely fix."""
    message = str(exc).split("; the targets match the logits without")[0]
    x_row, t_row = tuple(xs.row_shape), tuple(ts.row_shape)
    if xs.path not in message:
        def shape(src: Any) -> str:
            dims = ([] if src.n_rows is None else [src.n_rows]) + list(src.row_shape)
            return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"

        if "Expected 1 or more dimensions" in message:
            message = f"{xs.path}: {message}"
        else:
            message = f"{xs.path} {shape(xs)} and {ts.path} {shape(ts)}: {message}"
    if class_axis is None and len(x_row) >= 2 and t_row == x_row[:-1]:
        message += ("; the targets fit the logits with the classes on the last axis (B, L, V "
                    "sequence outputs, N, H, W, C images): pass --class-axis -1")
    return message


def _brief(loss: np.ndarray) -> str:
    a = np.asarray(loss)
    if a.ndim == 0:
        return render.scalar_text(a)
    with np.errstate(all="ignore"):
        return f"per-sample losses averaging {np.mean(a.astype(np.float64)):.6g}"
