"""The ``ce-loss`` command line: Click parses, :mod:`ce_cli.run.commands` does the work.

This module imports only Click, so ``ce-loss --help`` starts fast; it is also the only
place where errors become exit codes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from . import __version__
from .console import say, silence_stdout
from .errors import CeLossError, ExitCode, OptionError, UsageError
from .names import FORMATS, INPUT_KINDS, INT64_MAX, INT64_MIN, REDUCTIONS

#: Click 8.2+ raises this for a bare ``ce-loss`` (8.1 prints the help and exits 0); an
#: ``except`` naming a missing attribute would fail for every error, so look it up once
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  a check failed: --fail-above, --fail-if-worse, or warnings under
     --strict (the result is printed first)
  2  bad input or usage: unreadable file, shapes that do not fit, bad option,
     an output that would replace an input, an output or stdout that cannot
     be written (a full disk)
  3  internal error: a bug in ce-loss (CE_LOSS_TRACEBACK=1 shows the
     traceback)
  130  interrupted (Ctrl-C)"""


class _Interrupted(Exception):
    """Ctrl-C, carried past Click's own handling."""


class _PipeClosed(Exception):
    """The reader of stdout has gone (``| head -1``), carried past Click's own handling."""


@contextlib.contextmanager
def _whole_words() -> Iterator[None]:
    """Click's wrapping without breaking a word: a value, a number or a package name
    (``'ce-loss[dask]'``) stays whole on one line, so it can be copied."""
    from click import _textwrap

    original = _textwrap.TextWrapper

    class Whole(original):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("break_on_hyphens", False)
            kwargs.setdefault("break_long_words", False)
            super().__init__(*args, **kwargs)

    _textwrap.TextWrapper = Whole  # type: ignore[misc]
    try:
        yield
    finally:
        _textwrap.TextWrapper = original  # type: ignore[misc]


class _HelpFormatter(click.HelpFormatter):
    """Help text as wide as the terminal (up to the context's maximum), words whole."""

    def write_dl(self, rows: Any, col_max: int = 30, col_spacing: int = 2) -> None:
        with _whole_words():
            super().write_dl(rows, col_max, col_spacing)

    def write_text(self, text: str) -> None:
        with _whole_words():
            super().write_text(text)


class _Context(click.Context):
    formatter_class = _HelpFormatter


class _Command(click.Command):
    context_class = _Context


class CeLossGroup(click.Group):
    """A group whose every failure is one line on stderr and a documented exit code.

    Handled here (not in ``main``) so that CliRunner tests see what users see.
    """

    context_class = _Context
    command_class = _Command

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
        except BrokenPipeError:  # before Click turns it into exit code 1
            raise _PipeClosed() from None

    def _run(self, args: Any, prog_name: str, complete_var: Any, **extra: Any) -> int:
        # the output files this run writes, as they land (an interrupted run names them)
        written: list[str] = []
        from . import console

        console.COLOR = "auto"  # until --color says otherwise, for this run only
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                              obj=written, **extra)
            return rv if isinstance(rv, int) else ExitCode.OK
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except _NO_ARGS_IS_HELP as exc:  # bare `ce-loss`: the help, as is
            click.echo(exc.ctx.get_help(), err=True)
            return ExitCode.BAD_INPUT
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            say("error", exc.format_message() + where)
            return ExitCode.BAD_INPUT
        except click.ClickException as exc:  # Click's own (a file it cannot open): bad input
            say("error", exc.format_message())
            return ExitCode.BAD_INPUT if exc.exit_code == 1 else exc.exit_code
        except CeLossError as exc:
            say("error", str(exc))
            return ExitCode.BAD_INPUT
        except (click.Abort, KeyboardInterrupt, _Interrupted):
            say("error", f"interrupted; {_outputs_note(written)}")
            return ExitCode.INTERRUPTED
        except (BrokenPipeError, _PipeClosed):
            silence_stdout()
            return ExitCode.OK
        except Exception as exc:
            if os.environ.get("CE_LOSS_TRACEBACK") == "1":
                raise
            say("internal error", f"{type(exc).__name__}: {exc} (a bug in ce-loss; "
                 "CE_LOSS_TRACEBACK=1 shows the traceback)")
            return ExitCode.INTERNAL


def _outputs_note(names: list[str]) -> str:
    if not names:
        return "no output file was written"
    return f"{', '.join(names)} {'was' if len(names) == 1 else 'were'} written in full"


class _Fraction(click.FloatRange):
    """A number in [0, 1]; NaN, which FloatRange lets through, is refused."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number in the range 0<=x<=1.", param, ctx)
        return number


class _Int64(click.ParamType):
    """An int64, as torch's ignore_index is; help shows INTEGER, not the 20-digit range."""

    name = "integer"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = click.INT.convert(value, param, ctx)
        if not INT64_MIN <= number <= INT64_MAX:
            self.fail(f"{value} does not fit an int64 (torch's ignore_index), "
                      f"{INT64_MIN}..{INT64_MAX}", param, ctx)
        return number


#: torch's ignore_index is an int64
INT64 = _Int64()

#: a file argument: completed as a file by the shells; ``-`` (stdin), ``file.npz:name`` and
#: folders of shards are the readers' to judge
FILE = click.Path(allow_dash=True)


def _top_k(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """``1,5``: checked here, whatever the output format, so every run refuses a bad one."""
    from .options import parse_top_k

    try:
        return parse_top_k(value)
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from None


def _default_format() -> str:
    """table on a terminal, plain when piped; ``CE_LOSS_FORMAT`` overrides both."""
    from .console import is_terminal

    env = os.environ.get("CE_LOSS_FORMAT", "").strip().lower()
    if env:
        if env not in FORMATS:
            raise click.BadParameter(f"CE_LOSS_FORMAT={env!r} is not one of "
                                     f"{', '.join(FORMATS)}", param_hint="'--format'")
        return env
    return "table" if is_terminal(sys.stdout) else "plain"


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """The work layer's usage errors, reported as Click reports its own."""
    try:
        yield
    except UsageError as exc:
        if exc.option:
            raise click.BadParameter(str(exc), param_hint=f"'{exc.option}'") from None
        raise click.UsageError(str(exc), ctx=click.get_current_context()) from None


def _report_options(*, partial_help: str) -> Callable[[Any], Any]:
    """The options of every command that reports a loss, declared once."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                     help="Output format. Default: table on a terminal, plain when piped "
                          "(or $CE_LOSS_FORMAT)."),
        click.option("--explain", is_flag=True,
                     help="Show the aggregate's numerator and denominator, the counts behind "
                          "them, and what Keras and sklearn conventions give on the same "
                          "data."),
        click.option("--no-plots", is_flag=True,
                     help="No loss histogram or reliability diagram in the table."),
        click.option("--strict", is_flag=True,
                     help="Exit 1 after printing the result if any warning was given."),
        click.option("-q", "--quiet", is_flag=True, help="No warnings or notes on stderr."),
        click.option("--partial", "partial_path", type=click.Path(dir_okay=False),
                     default=None, help=partial_help),
    ]

    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _decorators(options: list[Any]) -> Callable[[Any], Any]:
    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _loss_options() -> Callable[[Any], Any]:
    """What defines the loss and how the inputs are read: compute's and compare's."""
    return _decorators([
        click.option("--weight", metavar="W1,W2,..|FILE", type=FILE,
                     help="A weight per class: comma-separated numbers or a file holding them."),
        click.option("--ignore-index", type=INT64, default=-100, show_default=True,
                     help="Targets equal to this are ignored and not counted in the mean."),
        click.option("--label-smoothing", type=_Fraction(0.0, 1.0), default=0.0,
                     show_default=True, help="Mix the target with the uniform distribution."),
        click.option("--input-kind", type=click.Choice(INPUT_KINDS), default="logits",
                     show_default=True,
                     help="What LOGITS hold: logits (torch's default), probabilities (the loss "
                          "takes their log, no softmax) or log-probabilities."),
        click.option("--dtype", type=click.Choice(("float32", "float64")), default=None,
                     help="Cast the logits to this dtype first, as "
                          "F.cross_entropy(logits.to(dtype), ...) (Hugging Face upcasts to "
                          "float32). Default: as saved; bfloat16 and float16 logits then give "
                          "torch's half-precision result."),
        click.option("--target-column", metavar="NAME",
                     help="The targets' column in a table; without TARGETS, LOGITS is one table "
                          "holding both and the logits are its other numeric columns."),
        click.option("--logits-columns", metavar="GLOB",
                     help="Which columns of a table hold the logits, e.g. 'logit_*' (default: "
                          "every numeric column, or the one list column)."),
        click.option("--classes", metavar="NAME,NAME,..",
                     help="The class names in the model's order (class 0 first, as scikit-learn's "
                          "classes_): string labels are matched to them, and the output names "
                          "them. Default: the logits' column names in a table."),
        click.option("--header/--no-header", default=None,
                     help="Whether CSV/TSV files start with a header row (default: detected)."),
        click.option("--logits-format", metavar="FORMAT",
                     help="Read LOGITS as this format instead of guessing from the suffix."),
        click.option("--targets-format", metavar="FORMAT",
                     help="Read TARGETS as this format instead of guessing from the suffix."),
        click.option("--class-axis", type=int, default=None,
                     help="The logits axis holding the classes (default 1, as torch); -1 for "
                          "(B, L, V) sequence outputs or (N, H, W, C) images."),
        click.option("--shift", is_flag=True,
                     help="Causal language-model labels: the loss of logits[..., :-1, :] "
                          "against labels[..., 1:], as Hugging Face's causal-LM loss (with "
                          "--dtype float32, its number). Reads the classes on the last axis."),
    ])


def _engine_options() -> Callable[[Any], Any]:
    return _decorators([
        click.option("--engine", type=click.Choice(("default", "dask")), default="default",
                     show_default=True,
                     help="dask: one task per shard or chunk, on Dask's threads or a cluster "
                          "(pip install 'ce-loss[dask]')."),
        click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="With --engine dask: a distributed scheduler, e.g. tcp://host:8786 "
                          "(default $DASK_SCHEDULER_ADDRESS, else local threads)."),
    ])


def _read_and_loss(o: dict[str, Any], *, logits: str, reduction: str) -> tuple[Any, Any]:
    """The reading and loss options of ``_loss_options``, as the work layer takes them."""
    from .options import LossOptions, ReadOptions

    read = ReadOptions(logits, o["targets"], target_column=o["target_column"],
                       logits_columns=o["logits_columns"], header=o["header"],
                       logits_format=o["logits_format"], targets_format=o["targets_format"],
                       classes=o["classes"], shift=o["shift"])
    class_axis = o["class_axis"]
    if o["shift"] and class_axis is None:  # a causal LM's classes are its last axis
        class_axis = -1
    loss = LossOptions(reduction=reduction, weight=o["weight"],
                       ignore_index=o["ignore_index"], label_smoothing=o["label_smoothing"],
                       input_kind=o["input_kind"], class_axis=class_axis, dtype=o["dtype"])
    return read, loss


def _output_options(o: dict[str, Any], **paths: Any) -> Any:
    from .options import OutputOptions

    return OutputOptions(fmt=o["fmt"] or _default_format(), explain=o["explain"],
                         plots=not o["no_plots"], strict=o["strict"], quiet=o["quiet"],
                         partial=o["partial_path"], **paths)


def _set_color(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from . import console

    if value is not None:
        console.COLOR = value
    return value


#: ``--color``, on the group and on every command (``ce-loss compute ... --color always``)
_COLOR = click.option(
    "--color", type=click.Choice(("auto", "always", "never")), default=None, is_eager=True,
    expose_value=False, callback=_set_color,
    help="Colour the table and the message prefixes: auto (on a terminal, unless "
         "NO_COLOR is set), always (e.g. for less -R), never.")


@click.group(cls=CeLossGroup, epilog=EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 120})
@_COLOR
@click.version_option(__version__, "-V", "--version", prog_name="ce-loss",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """Cross-entropy on saved model outputs, exact to PyTorch.

    \b
      ce-loss compute logits.npy labels.npy
      loss=$(ce-loss compute logits.npy labels.npy --reduction sum)
    """


@cli.command(epilog=EXIT_CODES_HELP,
             short_help="The cross-entropy of LOGITS against TARGETS, as torch gives it.")
@_COLOR
@click.argument("logits", metavar="LOGITS", type=FILE)
@click.argument("targets", metavar="[TARGETS]", required=False, type=FILE)
@click.option("--reduction", type=click.Choice(REDUCTIONS), default="mean",
              show_default=True, help="How per-sample losses are combined, as in torch.")
@_loss_options()
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the per-sample losses (with index and target in table formats) "
                   "to .npy, .csv, .parquet or .arrow, atomically.")
@click.option("--softmax", "softmax_path", type=click.Path(dir_okay=False), default=None,
              help="Write the softmax probabilities, one column per class, atomically.")
@click.option("--rows", type=click.IntRange(0), default=10, show_default=True,
              help="Rows of the softmax table shown by --format table/json.")
@click.option("--per-sequence", "per_sequence", type=click.Path(dir_okay=False), default=None,
              help="Write one row per sequence (tokens, nll_sum, nll_mean, perplexity) to "
                   ".csv, .parquet, .arrow or .npy, atomically.")
@click.option("--top-k", "top_k", default="1,5", show_default=True, metavar="K1,K2,..",
              callback=_top_k,
              help="Top-k accuracies to report (table/json/csv).")
@click.option("--bins", type=click.IntRange(1, 1000), default=15, show_default=True,
              help="Confidence bins of the expected calibration error.")
@click.option("--worst", type=click.IntRange(0), default=10, show_default=True,
              help="How many of the worst samples to list.")
@_report_options(partial_help="Also write a partial result (JSON) that 'ce-loss merge' "
                               "combines with others, e.g. one per shard.")
@click.option("--fail-above", "fail_above", type=float, default=None, metavar="X",
              help="A gate for scripts and CI: after printing the result, exit 1 when the "
                   "loss is above X or NaN, with the reason on stderr.")
@_engine_options()
def compute(**options: Any) -> int:
    """Compute the cross-entropy of LOGITS against TARGETS, as torch does.

    LOGITS is an (N, C) array (or (C,), or (N, C, d1, ..., dk)) of scores;
    TARGETS holds class indices of shape (N,) (or (N, d1, ..., dk)), or class
    probabilities of the logits' shape. Files: .npy, .npz[:name], .pt[:name],
    .safetensors[:name], .h5[:name] (pip install 'ce-loss[hdf5]'), .csv, .tsv,
    .parquet, .arrow/.feather/.ipc, .jsonl, or - for stdin. Without TARGETS,
    LOGITS is one file holding both: arrays named logits and labels (or the
    like), or a table with a label column.

    \b
      ce-loss compute logits.npy labels.npy
      ce-loss compute eval.pt
      ce-loss compute preds.parquet --target-column label
      ce-loss compute logits.csv labels.csv --reduction none -o losses.parquet
      loss=$(ce-loss compute logits.npy labels.npy --format plain)
    """
    from .options import AuditOptions
    from .run import commands

    o = options
    read, loss = _read_and_loss(o, logits=o["logits"], reduction=o["reduction"])
    audit = AuditOptions(top_k=o["top_k"], bins=o["bins"], worst=o["worst"], rows=o["rows"])
    out = _output_options(o, output=o["output"], softmax=o["softmax_path"],
                          per_sequence=o["per_sequence"], fail_above=o["fail_above"])
    with _usage_errors():
        return commands.compute(read, loss, audit, out, engine=o["engine"],
                                scheduler=o["scheduler"], written=click.get_current_context().obj)


@cli.command(epilog=EXIT_CODES_HELP,
             short_help="Is B's loss lower than A's? The difference, with its error.")
@_COLOR
@click.argument("a", metavar="A", type=FILE)
@click.argument("b", metavar="B", type=FILE)
@click.argument("targets", metavar="TARGETS", type=FILE)
@_loss_options()
@click.option("--worst", type=click.IntRange(0), default=10, show_default=True,
              help="How many of the positions where the two models differ most to list.")
@click.option("--bootstrap", type=click.IntRange(0), default=0, metavar="N",
              help="Also a percentile interval from N resamplings of the clusters "
                   "(e.g. 2000); --fail-if-worse then uses it.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The bootstrap's random seed.")
@click.option("--fail-if-worse", is_flag=True,
              help="A gate for scripts and CI: exit 1 when B is worse than A by more than "
                   "--margin with 95% confidence (the interval's lower bound above it), or "
                   "when the difference is NaN.")
@click.option("--margin", type=float, default=0.0, show_default=True, metavar="M",
              help="How much worse B may be before --fail-if-worse fails.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format. Default: table on a terminal, plain (the difference "
                   "B - A alone) when piped (or $CE_LOSS_FORMAT).")
@click.option("--strict", is_flag=True,
              help="Exit 1 after printing the result if any warning was given.")
@click.option("-q", "--quiet", is_flag=True, help="No warnings or notes on stderr.")
@click.option("--partial", "partial_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a partial comparison (JSON) that 'ce-loss merge' combines "
                   "with others, e.g. one per shard.")
@_engine_options()
def compare(**options: Any) -> int:
    """Compare two models' outputs A and B on the same TARGETS: is B better?

    Prints each model's loss (torch's mean, as 'compute' gives it), the
    difference B - A with its standard error and 95% interval (clustered by the
    first axis: the tokens of one sequence are not independent), the share of
    targets where B's loss is lower, each model's accuracy, the per-class
    changes and the positions where the two differ most. Every option that
    defines the loss is compute's.

    \b
      ce-loss compare old.npy new.npy labels.npy
      ce-loss compare old.pt:logits new.pt:logits labels.npy --fail-if-worse
      ce-loss compare a.npy b.npy ids.npy --shift --dtype float32 --bootstrap 2000
    """
    from .options import AuditOptions, OutputOptions
    from .run import commands

    o = options
    read, loss = _read_and_loss(o, logits=o["a"], reduction="mean")
    audit = AuditOptions(top_k=(1,), worst=0, rows=0)
    out = OutputOptions(fmt=o["fmt"] or _default_format(), strict=o["strict"],
                        quiet=o["quiet"], partial=o["partial_path"])
    with _usage_errors():
        return commands.compare(read, o["b"], loss, audit, out, worst=o["worst"],
                                bootstrap=o["bootstrap"], seed=o["seed"],
                                fail_if_worse=o["fail_if_worse"], margin=o["margin"],
                                engine=o["engine"], scheduler=o["scheduler"],
                                written=click.get_current_context().obj)


@cli.command(epilog=EXIT_CODES_HELP,
             short_help="Combine partial results into one loss (or one comparison).")
@_COLOR
@click.argument("parts", nargs=-1, required=True, metavar="PARTIAL.json...",
                type=click.Path(dir_okay=False))
@click.option("--reduction", type=click.Choice(("mean", "sum")), default=None,
              help="Default: the reduction the partials were computed with.")
@_report_options(partial_help="Write the merged partial result too (merging is associative).")
@click.option("--fail-above", "fail_above", type=float, default=None, metavar="X",
              help="Exit 1 after printing the result when the loss is above X or NaN.")
def merge(**options: Any) -> int:
    """Combine partial results written by 'compute --partial' into the final loss
    (or those of 'compare --partial' into one comparison).

    The result equals one run over all the data the partials came from.

    \b
      for f in shards/*.parquet; do
        ce-loss compute "$f" --target-column label -q \\
          --partial "parts/$(basename "$f" .parquet).json" > /dev/null
      done
      ce-loss merge parts/*.json
    """
    from .run import commands

    out = _output_options(options, fail_above=options["fail_above"])
    with _usage_errors():
        return commands.merge(options["parts"], options["reduction"], out,
                              written=click.get_current_context().obj)


@cli.command("help", short_help="Show the help of a command: ce-loss help compute.")
@click.argument("command", required=False, metavar="[COMMAND]")
@click.pass_context
def help_(ctx: click.Context, command: str | None) -> None:
    """Show the help of COMMAND (of ce-loss itself without one), as COMMAND --help does."""
    group = ctx.parent.command if ctx.parent is not None else cli
    parent = ctx.parent or ctx
    if command is None:
        click.echo(group.get_help(parent))
        return
    cmd = group.get_command(parent, command)  # type: ignore[attr-defined]
    if cmd is None:
        import difflib

        names = group.list_commands(parent)  # type: ignore[attr-defined]
        close = difflib.get_close_matches(command, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise click.UsageError(f"No such command {command!r}.{hint} Commands: "
                               f"{', '.join(names)}.", ctx=ctx)
    with _Context(cmd, info_name=command, parent=parent) as sub:
        click.echo(cmd.get_help(sub))


def main(argv: list[str] | None = None) -> None:
    """Run ``ce-loss`` with ``argv``; ends with ``SystemExit(code)`` like any Click program."""
    cli.main(args=argv, prog_name="ce-loss")


def program() -> None:
    """The ``ce-loss`` program (the console script, ``python -m ce_cli``): run, then leave
    without the interpreter's teardown (see :func:`_leave`)."""
    try:
        code: Any = cli.main(prog_name="ce-loss", standalone_mode=False)
    except SystemExit as exc:  # Click's own exits
        code = exc.code
    _leave(code if isinstance(code, int) else ExitCode.OK if code is None
           else ExitCode.INTERNAL)


def _leave(code: int) -> None:
    """Exit with ``code`` once stdout and stderr are flushed, skipping the interpreter's
    teardown. Every output file is written and closed by now; what teardown would add
    is pyarrow destroying its thread pools, which now and then aborts the process after
    the work is done ("terminate called without an active exception", exit 134;
    apache/arrow#34314)."""
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:  # a closed stream, or the reader of the pipe has gone
                pass
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    os._exit(int(code))
