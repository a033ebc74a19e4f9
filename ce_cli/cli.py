"""The ``ce-loss`` command: parse, read, compute, render. The only place errors become exits."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import __version__, checks, core, metrics, partial, pipeline, readers, render, writers
from .errors import CeLossError, DTypeError, ExitCode, ShapeError, TargetError

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  internal error (a bug in ce-loss; CE_LOSS_TRACEBACK=1 shows the
     traceback), or warnings under --strict
  2  bad input or usage: unreadable file, shapes that do not fit, bad option
  130  interrupted (Ctrl-C)"""


def _say(kind: str, message: str) -> None:
    """One line on stderr: ``ce-loss: error: ...`` / ``ce-loss: warning: ...``."""
    line = " ".join(str(message).split())
    click.echo(f"ce-loss: {kind}: {line}", err=True)


class _Interrupted(Exception):
    """Ctrl-C, carried past Click's own handling."""


class CeLossGroup(click.Group):
    """A group whose every failure is one line on stderr and a documented exit code.

    Handled here (not in ``main``) so that CliRunner tests see what users see.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        code = self._run(args, "ce-loss", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # before Click turns it into Abort and prints a blank line
            raise _Interrupted() from None

    def _run(self, args: Any, prog_name: str, complete_var: Any, **extra: Any) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return rv if isinstance(rv, int) else ExitCode.OK
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _say("error", exc.format_message() + where)
            return ExitCode.BAD_INPUT
        except click.ClickException as exc:
            _say("error", exc.format_message())
            return exc.exit_code
        except CeLossError as exc:
            _say("error", str(exc))
            return ExitCode.BAD_INPUT
        except (click.Abort, KeyboardInterrupt, _Interrupted):
            _say("error", "interrupted; no output file was written")
            return ExitCode.INTERRUPTED
        except BrokenPipeError:
            _silence_stdout()
            return ExitCode.OK
        except Exception as exc:
            if os.environ.get("CE_LOSS_TRACEBACK") == "1":
                raise
            _say("internal error", f"{type(exc).__name__}: {exc} (a bug in ce-loss; "
                 "CE_LOSS_TRACEBACK=1 shows the traceback)")
            return ExitCode.INTERNAL


def _silence_stdout() -> None:
    """After the reader of our stdout has gone (``| head -1``), drop what is left quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


@click.group(cls=CeLossGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "-V", "--version", prog_name="ce-loss",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """Cross-entropy on saved model outputs, exact to PyTorch.

    \b
      ce-loss compute logits.npy labels.npy
      loss=$(ce-loss compute logits.npy labels.npy --reduction sum)
    """


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
    return "table" if sys.stdout.isatty() else "plain"


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("logits", metavar="LOGITS")
@click.argument("targets", metavar="[TARGETS]", required=False)
@click.option("--reduction", type=click.Choice(core.REDUCTIONS), default="mean",
              show_default=True, help="How per-sample losses are combined, as in torch.")
@click.option("--weight", metavar="W1,W2,..|FILE",
              help="A weight per class: comma-separated numbers or a file holding them.")
@click.option("--ignore-index", type=int, default=-100, show_default=True,
              help="Targets equal to this are ignored and not counted in the mean.")
@click.option("--label-smoothing", type=click.FloatRange(0.0, 1.0), default=0.0,
              show_default=True, help="Mix the target with the uniform distribution.")
@click.option("--input-kind", type=click.Choice(core.INPUT_KINDS), default="logits",
              show_default=True,
              help="What LOGITS hold: logits (torch's default), probabilities (the loss "
                   "takes their log, no softmax) or log-probabilities.")
@click.option("--target-column", metavar="NAME",
              help="The targets' column in a table; without TARGETS, LOGITS is one table "
                   "holding both and the logits are its other numeric columns.")
@click.option("--logits-columns", metavar="GLOB",
              help="Which columns of a table hold the logits, e.g. 'logit_*' (default: "
                   "every numeric column, or the one list column).")
@click.option("--header/--no-header", default=None,
              help="Whether CSV/TSV files start with a header row (default: detected).")
@click.option("--logits-format", metavar="FORMAT",
              help="Read LOGITS as this format instead of guessing from the suffix.")
@click.option("--targets-format", metavar="FORMAT",
              help="Read TARGETS as this format instead of guessing from the suffix.")
@click.option("--format", "fmt", type=click.Choice(render.FORMATS), default=None,
              help="Output format. Default: table on a terminal, plain when piped "
                   "(or $CE_LOSS_FORMAT).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the per-sample losses (with index and target in table formats) "
                   "to .npy, .csv, .parquet or .arrow, atomically.")
@click.option("--softmax", "softmax_path", type=click.Path(dir_okay=False), default=None,
              help="Write the softmax probabilities, one column per class, atomically.")
@click.option("--rows", type=click.IntRange(0), default=10, show_default=True,
              help="Rows of the softmax table shown by --format table/json.")
@click.option("--class-axis", type=int, default=None,
              help="The logits axis holding the classes (default 1, as torch); -1 for "
                   "(B, L, V) sequence outputs or (N, H, W, C) images.")
@click.option("--explain", is_flag=True,
              help="Show the aggregate's numerator and denominator, the counts behind them, "
                   "and what Keras and sklearn conventions give on the same data.")
@click.option("--top-k", "top_k", default="1,5", show_default=True, metavar="K1,K2,..",
              help="Top-k accuracies to report (table/json/csv).")
@click.option("--bins", type=click.IntRange(1, 1000), default=15, show_default=True,
              help="Confidence bins of the expected calibration error.")
@click.option("--worst", type=click.IntRange(0), default=10, show_default=True,
              help="How many of the worst samples to list.")
@click.option("--no-plots", is_flag=True,
              help="No loss histogram or reliability diagram in the table.")
@click.option("--strict", is_flag=True,
              help="Exit 1 after printing the result if any warning was given.")
@click.option("-q", "--quiet", is_flag=True, help="No warnings or notes on stderr.")
@click.option("--partial", "partial_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a partial result (JSON) that 'ce-loss merge' combines with "
                   "others, e.g. one per shard.")
@click.option("--engine", type=click.Choice(("default", "dask")), default="default",
              show_default=True,
              help="dask: one task per shard or chunk, on Dask's threads or a cluster "
                   "(pip install 'ce-loss[dask]').")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="With --engine dask: a distributed scheduler, e.g. tcp://host:8786 "
                   "(default $DASK_SCHEDULER_ADDRESS, else local threads).")
def compute(logits: str, targets: str | None, reduction: str, weight: str | None,
            ignore_index: int, label_smoothing: float, input_kind: str,
            target_column: str | None, logits_columns: str | None, header: bool | None,
            logits_format: str | None, targets_format: str | None, fmt: str | None,
            output: str | None, softmax_path: str | None, rows: int, class_axis: int | None,
            explain: bool, top_k: str, bins: int, worst: int, no_plots: bool, strict: bool,
            quiet: bool, partial_path: str | None, engine: str, scheduler: str | None
            ) -> None:
    """Compute the cross-entropy of LOGITS against TARGETS, as torch does.

    LOGITS is an (N, C) array (or (C,), or (N, C, d1, ..., dk)) of scores;
    TARGETS holds class indices of shape (N,) (or (N, d1, ..., dk)), or class
    probabilities of the logits' shape. Files: .npy, .npz[:name], .csv, .tsv,
    .parquet, .arrow/.feather/.ipc, or - for stdin.

    \b
      ce-loss compute logits.npy labels.npy
      ce-loss compute preds.parquet --target-column label
      ce-loss compute logits.csv labels.csv --reduction none -o losses.parquet
      loss=$(ce-loss compute logits.npy labels.npy --format plain)
    """
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
        for name, value in (("-o", output), ("--softmax", softmax_path)):
            if value is not None:
                raise click.UsageError(f"{name} needs per-sample output, which --engine dask "
                                       "does not gather; run it without --engine dask")
        if reduction == "none" or "-" in (logits, targets):
            raise click.UsageError("--engine dask computes mean or sum from files; for "
                                   "--reduction none or stdin use the default engine")
        from . import dask_engine

        if not dask_engine.available():
            raise CeLossError(f"--engine dask needs Dask: {dask_engine.INSTALL_HINT}")
        run_options = dict(weight=None, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing, input_kind=input_kind,
                           class_axis=class_axis,
                           audit=dict(top_k=_parse_top_k(top_k), bins=bins, worst_k=worst))
        tasks = dask_engine.plan(logits, targets, fmt=logits_format)
        if weight is not None:  # parsed once, against the first task's logits
            xs0, _ = _open_sources(tasks[0].logits, tasks[0].targets, **opened)
            x_dtype = xs0.dtype if xs0.dtype.kind == "f" else np.dtype(np.float64)
            run_options["weight"] = _parse_weight(weight, xs0.row_shape[0] if xs0.row_shape
                                                  else (xs0.n_rows or 0), x_dtype)
        merged = dask_engine.compute(tasks, opened, run_options, scheduler)
        _finish(merged, reduction, fmt=fmt, explain=explain, no_plots=no_plots, strict=strict,
                quiet=quiet, partial_path=partial_path,
                sources={"logits": logits, "targets": targets or logits})
        return
    xs, ts = _open_sources(logits, targets, **opened)
    if not quiet:
        for note in dict.fromkeys([*xs.notes, *ts.notes]):  # a shared table notes once
            _say("note", note)
    if xs.dtype.kind in "iub":
        _say("warning", f"{xs.path}: the logits are {xs.dtype.name}; computing in float64 "
             "(torch refuses integer logits)")
    elif xs.dtype.kind != "f":
        raise CeLossError(f"{xs.path}: the logits have dtype {xs.dtype}, not real numbers; "
                          "save float32 or float64 logits")
    x_dtype = xs.dtype if xs.dtype.kind == "f" else np.dtype(np.float64)
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
    if input_kind == "logits" and run.scan.looks_like_probabilities(x_dtype, spec.n_classes):
        if "-" in (logits, targets):  # stdin cannot be read twice
            alt_loss = "a different loss"
        else:
            alt = pipeline.run(*_open_sources(logits, targets, **opened), **options,
                               input_kind="probs", keep_losses=reduction == "none")
            alt_loss = _brief(alt.result.loss)
        said.append(checks.Finding("warning", checks.probabilities_as_logits_warning(
            run.scan, _brief(result.loss), alt_loss)))
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


def _emit(report: render.Report, fmt: str, targets: np.ndarray | None = None) -> None:
    """Write the report to stdout in ``fmt``."""
    out = sys.stdout
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


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("parts", nargs=-1, required=True, metavar="PARTIAL.json...")
@click.option("--reduction", type=click.Choice(("mean", "sum")), default=None,
              help="Default: the reduction the partials were computed with.")
@click.option("--format", "fmt", type=click.Choice(render.FORMATS), default=None,
              help="Output format. Default: table on a terminal, plain when piped.")
@click.option("--explain", is_flag=True, help="Show the numerator, denominator and counts.")
@click.option("--no-plots", is_flag=True, help="No histogram or reliability diagram.")
@click.option("--strict", is_flag=True, help="Exit 1 after the result if a warning was given.")
@click.option("-q", "--quiet", is_flag=True, help="No warnings or notes on stderr.")
@click.option("--partial", "partial_path", type=click.Path(dir_okay=False), default=None,
              help="Write the merged partial result too (merging is associative).")
def merge(parts: tuple[str, ...], reduction: str | None, fmt: str | None, explain: bool,
          no_plots: bool, strict: bool, quiet: bool, partial_path: str | None) -> None:
    """Combine partial results written by 'compute --partial' into the final loss.

    The result equals one run over all the data the partials came from.

    \b
      for f in shards/*.parquet; do
        ce-loss compute "$f" --target-column label --partial "parts/$(basename "$f").json"
      done
      ce-loss merge parts/*.json
    """
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


def _progress_bar(xs: Any) -> _Progress | None:
    """A progress bar when stderr is a terminal and the input is large and of known size."""
    if xs.n_rows is None or not sys.stderr.isatty():
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


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="ce-loss")
