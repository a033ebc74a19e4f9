"""The ``ce-loss`` command: parse, read, compute, render. The only place errors become exits."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import __version__, checks, core, readers, render, writers
from .errors import CeLossError, ExitCode

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  internal error (a bug in ce-loss; CE_LOSS_TRACEBACK=1 shows the traceback)
  2  bad input or usage: unreadable file, shapes that do not fit, bad option
  130  interrupted (Ctrl-C)"""


def _say(kind: str, message: str) -> None:
    """One line on stderr: ``ce-loss: error: ...`` / ``ce-loss: warning: ...``."""
    line = " ".join(str(message).split())
    click.echo(f"ce-loss: {kind}: {line}", err=True)


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
        except (click.Abort, KeyboardInterrupt):
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


def _position_label(pos: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return str(pos)
    return "(" + ", ".join(str(int(i)) for i in np.unravel_index(pos, shape)) + ")"


def _preview(x: np.ndarray, t: np.ndarray, spec: core.LossSpec, rows: int,
             loss_shape: tuple[int, ...]) -> render.Preview:
    """Losses and softmax probabilities of the first ``rows`` positions."""
    total = int(np.prod(loss_shape)) if loss_shape else 1
    want = min(rows, total)
    xs, ts, got = [], [], 0
    for xb, tb in core.iter_blocks(x, t, spec.target_kind):
        if got >= want:
            break
        take = min(want - got, xb.shape[0])
        xs.append(np.asarray(xb[:take]))
        ts.append(np.asarray(tb[:take]))
        got += take
    empty_t = (0,) if spec.target_kind == "index" else (0, spec.n_classes)
    xb = np.concatenate(xs) if xs else np.zeros((0, spec.n_classes), spec.input_dtype)
    tb = np.concatenate(ts) if ts else np.zeros(empty_t, np.int64)
    losses = core.LossAccumulator(spec).update(xb, tb)
    probs = core.softmax(xb, spec.input_kind)
    if spec.target_kind == "index":
        targets: list[Any] = [int(v) for v in tb]
    else:
        targets = [f"~{int(np.argmax(r))}" if r.size else "-" for r in tb]
    labels = [_position_label(i, loss_shape) for i in range(got)]
    return render.Preview(index=labels, targets=targets, losses=losses, probs=probs,
                          total=total)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("logits", metavar="LOGITS")
@click.argument("targets", metavar="TARGETS")
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
@click.option("--format", "fmt", type=click.Choice(render.FORMATS), default=None,
              help="Output format. Default: table on a terminal, plain when piped "
                   "(or $CE_LOSS_FORMAT).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the per-sample losses to this file (.npy), atomically.")
@click.option("--rows", type=click.IntRange(0), default=10, show_default=True,
              help="Rows of the softmax table shown by --format table/json.")
def compute(logits: str, targets: str, reduction: str, weight: str | None, ignore_index: int,
            label_smoothing: float, input_kind: str, fmt: str | None, output: str | None,
            rows: int) -> None:
    """Compute the cross-entropy of LOGITS against TARGETS, as torch does.

    LOGITS is an (N, C) array (or (C,), or (N, C, d1, ..., dk)) of scores;
    TARGETS holds class indices of shape (N,) (or (N, d1, ..., dk)), or class
    probabilities of the logits' shape. Files: .npy.

    \b
      ce-loss compute logits.npy labels.npy
      ce-loss compute logits.npy labels.npy --reduction none -o losses.npy
      loss=$(ce-loss compute logits.npy labels.npy --format plain)
    """
    fmt = fmt or _default_format()
    if output is not None:
        writers.check_output(output)
    x, note = checks.coerce_logits(readers.read_array(logits, role="logits"), logits)
    if note:
        _say("warning", note)
    t = checks.coerce_targets(readers.read_array(targets, role="targets"), x.shape, targets)
    n_classes = x.shape[0] if x.ndim == 1 else (x.shape[1] if x.ndim >= 2 else 0)
    w = _parse_weight(weight, n_classes, x.dtype)

    scan = checks.ProbabilityScan()
    result = core.evaluate(
        x, t, w, ignore_index, reduction, label_smoothing, input_kind=input_kind,
        keep_losses=reduction == "none" or output is not None,
        observe=scan.update if input_kind == "logits" else None,
    )
    spec = result.spec
    if input_kind == "logits" and scan.looks_like_probabilities(x.dtype, spec.n_classes):
        alt = core.evaluate(x, t, w, ignore_index, reduction, label_smoothing,
                            input_kind="probs")
        _say("warning", checks.probabilities_as_logits_warning(
            scan, _brief(result.loss), _brief(alt.loss)))

    if output is not None and result.losses is not None:
        columns = {"loss": result.losses}
        writers.write_columns(output, columns, main="loss")

    report = render.Report(result=result, input_kind=input_kind,
                           sources={"logits": logits, "targets": targets})
    if fmt in ("table", "json") and rows:
        report.preview = _preview(x, t, spec, rows, core.loss_shape(x.shape, t.shape, spec))
    out = sys.stdout
    if fmt == "plain":
        render.write_plain(report, out)
    elif fmt == "json":
        render.write_json(report, out)
    elif fmt == "csv":
        render.write_csv(report, out, targets=t)
    else:
        from rich.console import Console

        render.write_table(report, Console(file=out, highlight=False))
    out.flush()


def _brief(loss: np.ndarray) -> str:
    a = np.asarray(loss)
    if a.ndim == 0:
        return render.scalar_text(a)
    with np.errstate(all="ignore"):
        return f"per-sample losses averaging {np.mean(a.astype(np.float64)):.6g}"


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="ce-loss")
