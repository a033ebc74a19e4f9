"""The terminal, for both sides of the program: one-line messages on stderr, stdout that
the reader closed, and the progress bar.

No click here: the command-line layer and the work layer both use these. rich is
imported by the progress bar alone, when there is one.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

#: ``--color``: "auto" (colour on a terminal, unless NO_COLOR or TERM=dumb), "always"
#: (also through a pipe, for ``less -R``), "never"
COLOR = "auto"

#: the colour of each kind of message's prefix
_STYLES = {"error": "1;31", "internal error": "1;31", "check failed": "1;31",
           "warning": "1;33", "note": "1;36"}


#: what the table imports to draw itself (rich.console alone takes about 50 ms)
_TABLE_MODULES = ("rich.console", "rich.table", "rich.text", "rich.box", "rich.rule",
                  "rich.cells")


def warm_up_table() -> None:
    """Import what the table needs on a daemon thread while the pass runs (whose NumPy
    calls let go of the GIL): the import costs no wall time of its own. The later
    ``import`` of the same modules waits for this one to finish, as imports do."""
    import threading

    if all(name in sys.modules for name in _TABLE_MODULES):
        return

    def load() -> None:
        import importlib

        for name in _TABLE_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  (the table's own import says what failed)
                return

    threading.Thread(target=load, name="ce-loss-warm-up", daemon=True).start()


def use_color(stream: Any) -> bool:
    """Whether to colour what goes to ``stream``: ``--color``, then ``NO_COLOR`` (any
    value), ``FORCE_COLOR``, and whether it is a terminal that is not ``TERM=dumb``."""
    if COLOR != "auto":
        return COLOR == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return is_terminal(stream) and os.environ.get("TERM") != "dumb"


def terminal_width(stream: Any) -> int | None:
    """The width of the terminal ``stream`` is (``COLUMNS`` first); None when not one."""
    if not is_terminal(stream):
        return None
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 80
    return max(columns, 20)


def say(kind: str, message: str) -> None:
    """One message on stderr: ``ce-loss: error: ...`` / ``ce-loss: warning: ...``.

    Piped, it is one line (for grep and logs); on a terminal it is wrapped at word
    boundaries to the terminal's width, its later lines indented, and its prefix
    coloured (red errors, yellow warnings, cyan notes) unless colour is off.
    """
    line = " ".join(str(message).split())
    err = sys.stderr
    if err is None:  # the shell closed it (2>&-)
        return
    prefix = f"{kind}:"
    if use_color(err) and kind in _STYLES:
        prefix = f"\033[{_STYLES[kind]}m{prefix}\033[0m"
    width = terminal_width(err)
    text = f"ce-loss: {prefix} {line}"
    if width is not None:
        text = _wrapped(f"ce-loss: {kind}: {line}", width).replace(f"{kind}:", prefix, 1)
    try:
        err.write(text + "\n")
        err.flush()
    except (OSError, ValueError):  # a closed or full stderr: nowhere left to say it
        pass


def _wrapped(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` columns, broken only between words (a word
    longer than a line, a path say, stands alone on its line), later lines indented."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, subsequent_indent="  ",
                                   break_long_words=False, break_on_hyphens=False))


def rich_console(file: Any = None, *, stderr: bool = False) -> Any:
    """A rich Console on ``file`` (or stderr) that follows ``--color``."""
    from rich.console import Console

    stream = sys.stderr if stderr else file
    color = use_color(stream)
    return Console(file=file, stderr=stderr, highlight=False,
                   force_terminal=True if COLOR == "always" else None,
                   no_color=not color, color_system="auto" if color else None)


def silence_stdout() -> None:
    """After the reader of our stdout has gone (``| head -1``), drop what is left quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (``None`` when the shell closed it: ``2>&-``)."""
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


#: inputs with more elements than this get a progress bar (when stderr is a terminal)
PROGRESS_ELEMENTS = 50_000_000


class Progress:
    """A rich progress bar on stderr counting loss positions, with positions per second;
    with ``TERM=dumb`` (no cursor movement) a plain line every few seconds instead."""

    #: seconds between the plain lines of a dumb terminal
    EVERY = 5.0

    def __init__(self, total: int) -> None:
        self._total = total
        self._done = 0
        self._start = self._said = 0.0
        self._bar: Any = None
        if os.environ.get("TERM") == "dumb":
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("computing"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("[progress.data.speed]{task.fields[rate]}"),
                             TimeRemainingColumn(), console=rich_console(stderr=True),
                             transient=True)
        self._task = self._bar.add_task("loss", total=total, rate="")

    def __enter__(self) -> Progress:
        import time

        self._start = self._said = time.perf_counter()
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:  # transient: the bar is cleared, Ctrl-C included
            self._bar.__exit__(*exc)

    def advance(self, block: Any) -> None:
        import time

        self._done += block.shape[0]
        now = time.perf_counter()
        rate = self._done / max(now - self._start, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, advance=block.shape[0], rate=f"{rate:,.0f} rows/s")
        elif now - self._said >= self.EVERY:
            self._said = now
            share = self._done / self._total if self._total else 1.0
            say("progress", f"{self._done:,} of {self._total:,} positions ({share:.0%}), "
                            f"{rate:,.0f} a second")


def progress_bar(n_rows: int | None, row_shape: tuple[int, ...], n_classes: int
                 ) -> Progress | None:
    """A progress bar when stderr is a terminal and the input (``n_rows`` rows of
    ``row_shape``, which holds ``n_classes`` classes on some axis) is large and of known
    size; else None. It counts loss positions."""
    if n_rows is None or not is_terminal(sys.stderr):
        return None
    elements = n_rows * math.prod(row_shape)
    if elements < PROGRESS_ELEMENTS:
        return None
    return Progress(elements // max(n_classes, 1) if row_shape else n_rows)
