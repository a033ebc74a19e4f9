"""The one report path: a :class:`~ce_cli.run.summary.Summary` becomes findings on stderr,
output files, the report on stdout and an exit status, whichever engine made it.

The default engine, shards, ``--engine dask`` and ``merge`` all end in :func:`finish`.
"""

from __future__ import annotations

import errno
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import render, writers
from .audit import findings, metrics
from .audit.findings import Finding
from .console import say, silence_stdout
from .errors import ExitCode, OutputFileError
from .loss import round_bfloat16
from .options import OutputOptions
from .run import partial
from .run.summary import Summary


def findings_of(summary: Summary) -> list[Finding]:
    """Everything said about ``summary``, in order: what reading found, the probabilities
    warning, then the diagnostics of the input and the result."""
    result = summary.result
    spec = result.spec
    said = list(dict.fromkeys(summary.findings))
    if spec.input_kind == "logits" and summary.scan.looks_like_probabilities(
            spec.input_dtype, spec.n_classes):
        probs = None if summary.probs_loss is None else _brief(summary.probs_loss)
        said.append(Finding("warning", findings.probabilities_as_logits_warning(
            summary.scan, _brief(result.loss), probs)))
    layout = summary.layout
    said += findings.findings(
        summary.scan, spec, result.totals, labels=summary.labels, loss=result.loss,
        reduction=result.reduction,
        x_row=layout.logits_row if layout else (), t_row=layout.targets_row if layout else (),
        class_axis_given=layout.class_axis_given if layout else True,
        target_dtype=np.dtype(layout.target_dtype) if layout and layout.target_dtype else None)
    if summary.alignment is not None:
        message = summary.alignment.finding(shifted=bool(layout and layout.shifted))
        if message:
            said.append(Finding("warning", message))
    return said


def finish(summary: Summary, out: OutputOptions, *, written: list[str] | None = None,
           before: list[Finding] | None = None) -> ExitCode:
    """Say the findings, write every output file in full (or none), print the report;
    return the exit status (a failed ``--strict`` check is 1). ``written`` collects the
    output files as they land (for the message of an interrupted run); ``before``: findings
    about this run alone (said first, not kept in a partial result)."""
    said = [*(before or []), *findings_of(summary)]
    if not out.quiet:
        for finding in said:
            say(finding.kind, finding.message)
    summary = as_reported(summary)
    result = summary.result
    with writers.Batch(written) as batch:  # every output in full, or none replaced
        if out.output is not None and result.losses is not None:
            _write_losses(out.output, summary, batch)
        if out.per_sequence is not None:
            _write_sequences(out.per_sequence, summary, batch)
        if out.softmax is not None:
            matrix = summary.softmax if summary.softmax is not None else \
                np.zeros((0, result.spec.n_classes))
            writers.write_matrix(out.softmax, matrix, prefix="p", batch=batch,
                                 names=summary.class_names)
        if out.partial is not None:
            writers.write_text(out.partial, partial.dumps(partial.to_document(summary)),
                               batch=batch)
        report = render.Report(
            result=result, input_kind=result.spec.input_kind, preview=summary.preview,
            sources=summary.sources, stats=summary.stats_summary(),
            explain=metrics.explain(result, summary.stats, summary.result_dtype)
            if out.explain else None,
            plots=out.plots, dtype=summary.result_dtype, class_names=summary.class_names,
            sequences=None if summary.sequences is None else summary.sequences.summary())
        emit(report, out.fmt, targets=summary.targets, batch=batch)
    return exit_status(gate(result, out.fail_above, summary.result_dtype), said, out.strict)


def exit_status(failed: str | None, said: list[Finding], strict: bool) -> ExitCode:
    """1 when a gate failed (``failed``: why, said here) or, under ``--strict``, when a
    warning was given; else 0. The result has been printed by now."""
    if failed:
        say("check failed", failed)
        return ExitCode.CHECK_FAILED
    if strict and any(f.kind == "warning" for f in said):
        return ExitCode.CHECK_FAILED
    return ExitCode.OK


def as_reported(summary: Summary) -> Summary:
    """``summary`` with torch's result in its dtype: a bfloat16 result rounded, once."""
    result = summary.result
    if summary.result_dtype != "bfloat16":
        return summary
    losses = None if result.losses is None else round_bfloat16(result.losses)
    return replace(summary, result=replace(result, loss=round_bfloat16(result.loss),
                                           losses=losses))


def gate(result: Any, limit: float | None, dtype: str | None = None) -> str | None:
    """Why ``--fail-above limit`` fails for ``result`` (above it, or NaN); None: it passes."""
    if limit is None:
        return None
    loss = float(np.asarray(result.loss))
    shown = render.exact_text(loss) if (dtype or result.spec.dtype.name) in (
        "float16", "bfloat16") else render.scalar_text(np.asarray(result.loss))
    if math.isnan(loss):
        return (f"the {result.reduction} loss is nan, which no --fail-above {limit:g} passes "
                "(every target ignored, or a NaN in the inputs: see the warnings)")
    if loss > limit:
        return f"the {result.reduction} loss {shown} is above --fail-above {limit:g}"
    return None


def _write_losses(path: str, summary: Summary, batch: writers.Batch) -> None:
    """``-o``: the per-sample losses, with index and target in table formats."""
    losses = np.asarray(summary.result.losses)
    if Path(path).suffix.lower() == ".npy":  # an array: torch's 'none' shape
        writers.write_columns(path, {"loss": losses}, main="loss", batch=batch)
        return
    flat = losses.reshape(-1)
    columns = {"index": np.arange(flat.shape[0], dtype=np.int64)}
    if summary.targets is not None:
        columns["target"] = summary.targets
    columns["loss"] = flat
    writers.write_columns(path, columns, main="loss", batch=batch)


def _write_sequences(path: str, summary: Summary, batch: writers.Batch) -> None:
    """``--per-sequence``: one row per sequence; in ``.npy`` a structured array."""
    from .audit.sequences import SequenceStats

    seqs = summary.sequences if summary.sequences is not None else SequenceStats(0)
    columns = seqs.columns()
    if Path(path).suffix.lower() == ".npy":
        rows = np.zeros(seqs.n, [(name, a.dtype) for name, a in columns.items()])
        for name, a in columns.items():
            rows[name] = a
        writers.write_columns(path, {"rows": rows}, main="rows", batch=batch)
        return
    writers.write_columns(path, columns, main="nll_mean", batch=batch)


def emit(report: render.Report, fmt: str, targets: np.ndarray | None = None,
         batch: writers.Batch | None = None) -> None:
    """Write the report to stdout in ``fmt``, then commit ``batch``'s output files (see
    :func:`emit_text`)."""
    emit_text(lambda out: _write_report(report, fmt, out, targets), batch)


def emit_text(write: Callable[[Any], None], batch: writers.Batch | None = None) -> None:
    """Run ``write(stdout)`` (nowhere when the shell closed stdout: ``>&-``, taken like a
    reader that has gone), then commit ``batch``'s output files.

    stdout goes first: when it cannot be written (a full disk) the run fails and no output
    file is replaced; a reader that has gone (``| head -1``) is a success, files included.
    """
    out = sys.stdout
    try:
        if out is not None:
            write(out)
    except BrokenPipeError:
        if batch is not None:
            batch.commit()
        raise
    except OSError as exc:  # a full disk (> /dev/full), EIO, ...
        silence_stdout()  # what is still buffered would fail again at exit
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
        write_table(lambda console: render.write_table(report, console), out)
    out.flush()


def write_table(draw: Callable[[Any], None], out: Any) -> None:
    """``draw(console)`` onto a rich console as wide as the terminal (80 when it says 0),
    rendered to text first and then written: rich would turn a closed pipe into exit 1 and
    say nothing about a full disk."""
    from .console import rich_console

    console = rich_console(out)
    if console.width < render.MIN_WIDTH:  # COLUMNS=0 or a tiny terminal
        console.width = 80 if console.width <= 0 else render.MIN_WIDTH
    with console.capture() as captured:
        draw(console)
    out.write(captured.get())


def _brief(loss: np.ndarray) -> str:
    a = np.asarray(loss)
    if a.ndim == 0:
        return render.scalar_text(a)
    with np.errstate(all="ignore"):
        return f"per-sample losses averaging {np.mean(a.astype(np.float64)):.6g}"
