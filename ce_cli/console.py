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


def say(kind: str, message: str) -> None:
    """One line on stderr: ``ce-loss: error: ...`` / ``ce-loss: warning: ...``."""
    line = " ".join(str(message).split())
    err = sys.stderr
    if err is None:  # the shell closed it (2>&-)
        return
    try:
        err.write(f"ce-loss: {kind}: {line}\n")
        err.flush()
    except (OSError, ValueError):  # a closed or full stderr: nowhere left to say it
        pass


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

    def __enter__(self) -> Progress:
        import time

        self._start = time.perf_counter()
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)

    def advance(self, block: Any) -> None:
        import time

        self._done += block.shape[0]
        rate = self._done / max(time.perf_counter() - self._start, 1e-9)
        self._bar.update(self._task, advance=block.shape[0], rate=f"{rate:,.0f} rows/s")


def progress_bar(n_rows: int | None, row_shape: tuple[int, ...]) -> Progress | None:
    """A progress bar when stderr is a terminal and the input (``n_rows`` rows of
    ``row_shape``, classes first) is large and of known size; else None."""
    if n_rows is None or not is_terminal(sys.stderr):
        return None
    if n_rows * math.prod(row_shape) < PROGRESS_ELEMENTS:
        return None
    return Progress(n_rows * math.prod(row_shape[1:]))
