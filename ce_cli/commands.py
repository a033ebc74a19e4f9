"""What the commands do, after Click has parsed them: read, compute, report.

Imported only when a command runs, so ``ce-loss --help`` does not pay for NumPy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import checks, loss, metrics, partial, pipeline, readers, render, writers
from .cli import _silence_stdout
from .cli import say as _say
from .errors import (
    CeLossError,
    DTypeError,
    ExitCode,
    InputFileError,
    OutputFileError,
    ShapeError,
    TargetError,
)


def _n_classes(xs: Any, class_axis: int | None) -> int:
    """How many classes the logits of source ``xs`` hold, on ``--class-axis``."""
    if not xs.row_shape:  # (C,): one sample
        return xs.n_rows or 0
    axis = pipeline._class_axis(class_axis, 1 + len(xs.row_shape))
    return xs.row_shape[axis - 1]


def _parse_weight(value: str | None, n_classes: int, dtype: np.dtype,
                  quiet: bool = False) -> np.ndarray | None:
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
    with np.errstate(over="ignore", invalid="ignore"):  # said below, not as a raw warning
        cast = w.astype(dtype)
        grown = np.isfinite(w) & ~np.isfinite(cast)
    if grown.any() and not quiet:
        shown = ", ".join(f"{v:g}" for v in w[grown][:3])
        _say("warning", f"--weight {shown} does not fit {np.dtype(dtype).name}, the logits' "
             "dtype, and becomes inf, as in torch (weight.to(logits.dtype)); give weights "
             "that fit it" + (", or save the logits as float64" if np.dtype(dtype).itemsize < 8
                              else ""))
    return cast


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
    _check_given({"LOGITS": logits, "TARGETS": targets, "--weight": weight, "-o": output,
                  "--softmax": softmax_path, "--partial": partial_path})
    for path in (output, softmax_path):
        if path is not None:
            writers.check_output(path)
    if partial_path is not None:
        writers.check_output(partial_path, suffixes=(".json",))
    writers.check_apart({"-o": output, "--softmax": softmax_path, "--partial": partial_path},
                        {**_input_files("the logits", logits),
                         **_input_files("the targets", targets),
                         **_input_files("the --weight", weight)})
    _check_stdin(logits, targets)
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
    x_dtype, dtype_note = checks.logits_dtype(xs.dtype, xs.path)  # a finding, said below
    w = _parse_weight(weight, _n_classes(xs, class_axis), x_dtype, quiet=quiet)

    per_sample = output is not None or (fmt == "csv" and reduction == "none")
    probs_parts: list[np.ndarray] = []
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
                   label_smoothing=label_smoothing, class_axis=class_axis)
    audit = None
    if explain or fmt != "plain" or partial_path is not None:
        audit = dict(top_k=_parse_top_k(top_k), bins=bins, worst_k=worst)
    hooks = []
    if softmax_path:
        hooks.append(lambda xb: probs_parts.append(loss.softmax(xb, input_kind)))
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
    said = [checks.Finding("warning", dtype_note)] if dtype_note else []
    if run.probs_loss is not None:
        said.append(checks.Finding("warning", checks.probabilities_as_logits_warning(
            run.scan, _brief(result.loss), _brief(run.probs_loss))))
    said += checks.findings(run.scan, spec, result.totals, labels=run.labels,
                            loss=result.loss, reduction=reduction, x_row=run.x_row,
                            t_row=run.t_row, class_axis_given=class_axis is not None,
                            target_dtype=ts.dtype)
    if not quiet:
        for finding in said:
            _say(finding.kind, finding.message)

    with writers.Batch() as batch:  # every output in full, or none replaced
        if output is not None and result.losses is not None:  # kept for -o
            losses = result.losses.reshape(-1)
            columns = {"index": np.arange(losses.shape[0], dtype=np.int64)}
            if run.targets is not None:
                columns["target"] = run.targets
            columns["loss"] = losses
            if Path(output).suffix.lower() == ".npy":  # an array: torch's 'none' shape
                columns = {"loss": np.asarray(result.losses)}
            writers.write_columns(output, columns, main="loss", batch=batch)
        if softmax_path is not None:
            matrix = np.concatenate(probs_parts) if probs_parts else \
                np.zeros((0, spec.n_classes))
            writers.write_matrix(softmax_path, matrix.astype(x_dtype, copy=False),
                                 prefix="p", batch=batch)

        if partial_path is not None:
            doc = partial.to_document(spec, result.totals, run.scan, run.labels, run.stats,
                                      reduction, [f"{xs.path} {ts.path}"])
            writers.write_text(partial_path, partial.dumps(doc), batch=batch)

        report = render.Report(result=result, input_kind=input_kind, preview=run.preview,
                               sources={"logits": xs.path, "targets": ts.path},
                               stats=run.summary(),
                               explain=metrics.explain(result, run.stats) if explain else None,
                               plots=not no_plots)
        _emit(report, fmt, targets=run.targets, batch=batch)
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
    if reduction == "none" or readers.is_stdin(logits) or readers.is_stdin(targets):
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
        run_options["weight"] = _parse_weight(weight, _n_classes(xs0, class_axis), x_dtype,
                                              quiet=quiet)
    merged = dask_engine.compute(tasks, opened, run_options, scheduler)
    _finish(merged, reduction, fmt=fmt, explain=explain, no_plots=no_plots, strict=strict,
            quiet=quiet, partial_path=partial_path,
            sources={"logits": logits, "targets": targets or logits})


def _emit(report: render.Report, fmt: str, targets: np.ndarray | None = None,
          batch: writers.Batch | None = None) -> None:
    """Write the report to stdout in ``fmt`` (nowhere when the shell closed it: ``>&-``,
    taken like a reader that has gone), then commit ``batch``'s output files.

    stdout goes first: when it cannot be written (a full disk) the run fails and no output
    file is replaced; a reader that has gone (``| head -1``) is a success, files included.
    """
    out = sys.stdout
    try:
        if out is not None:
            _write_report(report, fmt, out, targets)
    except BrokenPipeError:
        if batch is not None:
            batch.commit()
        raise
    except OSError as exc:  # a full disk (> /dev/full), EIO, ...
        _silence_stdout()  # what is still buffered would fail again at exit
        hint = "free some space or " if exc.errno == errno.ENOSPC else ""
        raise OutputFileError(f"cannot write to standard output ({exc.strerror or exc}); "
                              f"{hint}send the output elsewhere") from None
    if batch is not None:
        batch.commit()


def _write_report(report: render.Report, fmt: str, out: Any,
                  targets: np.ndarray | None) -> None:
    if fmt == "plain":
        render.write_plain(report, out)
    elif fmt == "json":
        render.write_json(report, out)
    elif fmt == "csv":
        render.write_csv(report, out, targets=targets)
    else:
        from rich.console import Console

        console = Console(file=out, highlight=False)
        if console.width < render.MIN_WIDTH:  # COLUMNS=0 or a tiny terminal
            console.width = 80 if console.width <= 0 else render.MIN_WIDTH
        # rendered to text first, then written here: rich would turn a closed pipe into
        # exit 1 and say nothing about a full disk
        with console.capture() as captured:
            render.write_table(report, console)
        out.write(captured.get())
    out.flush()


def merge(*, parts: tuple[str, ...], reduction: str | None, fmt: str | None, explain: bool,
          no_plots: bool, strict: bool, quiet: bool, partial_path: str | None) -> None:
    """Run ``ce-loss merge``."""
    fmt = fmt or _default_format()
    _check_given({**{f"PARTIAL.json #{i + 1}": p for i, p in enumerate(parts)},
                  "--partial": partial_path})
    if partial_path is not None:
        writers.check_output(partial_path, suffixes=(".json",))
    merged_files = [p for p in parts if os.path.exists(p)]
    writers.check_apart({"--partial": partial_path},
                        {"one of the partial results merged": merged_files})
    for i, a in enumerate(parts):
        for b in parts[:i]:
            if writers.same_file(a, b):
                raise CeLossError(f"{b} and {a} are the same partial result: merging it twice "
                                  "counts its rows twice; give each partial once")
    loaded = [partial.load(p) for p in parts]
    merged = partial.merge(loaded, reduction=reduction)
    _finish(merged, reduction, fmt=fmt, explain=explain, no_plots=no_plots, strict=strict,
            quiet=quiet, partial_path=partial_path, sources={"partials": ", ".join(parts)},
            extra=_overlaps(loaded))


def _overlaps(parts: list[partial.Partial]) -> list[checks.Finding]:
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
                out.append(checks.Finding("note", (
                    f"{seen[source]} and {p.path} both record the input {source!r}: if it is "
                    "the same file, its rows are counted twice; merge each shard's partial "
                    "once")))
            seen.setdefault(source, p.path)
    return out


def _finish(merged: partial.Partial, reduction: str | None, *, fmt: str, explain: bool,
            no_plots: bool, strict: bool, quiet: bool, partial_path: str | None,
            sources: dict[str, str], extra: list[checks.Finding] | None = None) -> None:
    """Report a merged partial result: findings on stderr, the loss on stdout."""
    reduction = reduction or (merged.reduction if merged.reduction != "none" else "mean")
    result = merged.finish(reduction)
    spec = result.spec
    said = list(extra or [])
    said += checks.findings(merged.scan, spec, result.totals, labels=merged.labels,
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
    with writers.Batch() as batch:
        if partial_path is not None:
            writers.write_text(partial_path, partial.dumps(merged.doc), batch=batch)
        stats = merged.stats
        report = render.Report(result=result, input_kind=spec.input_kind, sources=sources,
                               stats=stats.summary() if stats is not None else None,
                               explain=metrics.explain(result, stats) if explain else None,
                               plots=not no_plots)
        _emit(report, fmt, batch=batch)
    if strict and any(f.kind == "warning" for f in said):
        raise click.exceptions.Exit(ExitCode.INTERNAL)


def _open_sources(logits: str, targets: str | None, *, target_column: str | None,
                  logits_columns: str | None, header: bool | None, logits_format: str | None,
                  targets_format: str | None) -> tuple[Any, Any]:
    """Open the logits and targets sources, or both from one table."""
    if readers.is_stdin(logits) and readers.is_stdin(targets):
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


def _check_given(paths: dict[str, str | None]) -> None:
    """Refuse an empty path (an unset shell variable) before it is taken for the folder."""
    for name, path in paths.items():
        if path == "":
            raise CeLossError(f"{name} is an empty path; name a file (is a shell variable "
                              "unset?)")


def _check_stdin(*paths: str | None) -> None:
    """Refuse ``-`` when the shell closed standard input (``<&-``)."""
    if any(readers.is_stdin(p) for p in paths) and sys.stdin is None:
        raise InputFileError("-", "standard input is closed",
                             hint="pipe the data in, or name a file instead of -")


def _input_files(what: str, path: str | None) -> dict[str, list[str]]:
    """``{'the logits file': [path]}``: the existing files ``path`` reads (itself, the
    archive of ``a.npz:name``, or the shards of a folder or glob), for refusing an output
    that would replace one."""
    if not path:
        return {}
    if readers.is_stdin(path):  # a file redirected to stdin (< in.npy) is an input too
        try:
            stdin_file = os.path.realpath(f"/proc/self/fd/{sys.stdin.fileno()}")
        except (AttributeError, OSError, ValueError):  # closed, or not a real descriptor
            return {}
        return {f"{what} file (standard input)": [stdin_file]
                if os.path.isfile(stdin_file) else []}
    if readers.shards.is_sharded(path):
        try:
            return {f"one of {what} shards": readers.shards.expand(path, readers.SUFFIXES)}
        except CeLossError:  # said when the input is opened
            return {}
    file, _ = readers.split_member(path)
    return {f"{what} file": [file] if os.path.exists(file) else []}


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
    # the class count the kernel checked against (the class axis may not be axis 1)
    c = exc.n_classes if exc.n_classes is not None else _n_classes(xs, None)
    single = ("; a single logit column is one class, and log-softmax of one value is 0: "
              "for a binary classifier's logit z with 0/1 labels, pass two columns [0, z] "
              "(softmax then equals sigmoid) or use a binary cross-entropy")
    base = str(exc).split(" Class indices")[0].rstrip(".")
    message = f"{ts.path}: {base}"
    if readers.is_stdin(logits) or readers.is_stdin(targets):
        if c == 1:
            return message + single
        return message + f"; class indices must lie in 0..{c - 1} or equal --ignore-index"
    try:
        _, ts2 = _open_sources(logits, targets, **opened)
        t = np.asarray(ts2.read())
    except CeLossError:
        return message
    flat = t.reshape(-1)
    counted = flat != ignore
    bad = np.flatnonzero(counted & ((flat < 0) | (flat >= c)))
    if bad.size:  # located in the file as read, ignored targets included
        i = int(bad[0])
        per_row = int(np.prod(t.shape[1:])) if t.ndim > 1 else 1
        where = f"#{i // per_row}" if per_row == 1 else \
            str(tuple(int(k) for k in np.unravel_index(i, t.shape)))
        line = ts2.line_of(i // per_row)
        message += f" (first at target {where}" + (f", line {line})" if line else ")")
    values = flat[counted]
    if not values.size:
        return message
    lo, hi = int(values.min()), int(values.max())
    offenders = np.unique(flat[bad]) if bad.size else np.array([], np.int64)
    negative = offenders[offenders < 0]
    if c == 0:
        return message + ("; the logits have no classes (an empty class axis), so no label "
                          "fits: check that the logits file holds the scores")
    classes = "class" if c == 1 else "classes"
    message += f"; the logits have {c} {classes} (0..{c - 1}) and the labels run {lo}..{hi}"
    if c == 1:
        return message + single
    # 1-based: no 0 among the labels, and the largest is C (whatever the smallest)
    one_based = offenders[offenders >= 0].tolist() == [c] and not (values == 0).any()
    if one_based and negative.size == 1:
        v = int(negative[0])
        message += (f"; apart from {v} they look 1-based (no 0, largest {c}): subtract 1 "
                    f"from the others so they run 0..{c - 1}, and pass --ignore-index {v} "
                    "if it marks padding")
    elif one_based:
        message += f"; they look 1-based (no 0, largest {c}): subtract 1 so they run 0..C-1"
    elif offenders.size == 1 and negative.size:
        v = int(offenders[0])
        message += f"; {v} is the only value out of range: if it marks padding, pass " \
                   f"--ignore-index {v}"
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
    if xs.path == "-" or xs.path not in message:
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
