"""The error family and the exit-code table.

Every error a user can fix is a :class:`CeLossError` whose ``str()`` is one line.
The subclasses also derive from the built-in exception torch would raise for the
same problem, so API callers can keep catching ``ValueError``/``TypeError``/
``IndexError``.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """One meaning each, so a script can tell a failed check from a crash."""

    OK = 0
    CHECK_FAILED = 1  # --fail-above, --fail-if-worse, warnings under --strict
    BAD_INPUT = 2  # usage errors (Click's own) and unreadable or invalid data
    INTERNAL = 3  # a bug in ce-loss
    INTERRUPTED = 130  # Ctrl-C


class CeLossError(Exception):
    """Something the user can fix. ``str(exc)`` is one line."""


class ShapeError(CeLossError, ValueError):
    """Logits and targets (or weight) do not fit together."""


class TargetError(CeLossError, IndexError):
    """A class-index target outside ``[0, C)`` that is not ``ignore_index``;
    ``n_classes`` is the ``C`` it was checked against (None when not known)."""

    def __init__(self, message: str, n_classes: int | None = None) -> None:
        super().__init__(message)
        self.n_classes = n_classes


class DTypeError(CeLossError, TypeError):
    """An array has a dtype torch would refuse."""


class OptionError(CeLossError, ValueError):
    """An option value torch would refuse (reduction, label_smoothing, ...)."""


class UsageError(CeLossError):
    """The command line asks for something that cannot be done (options that do not go
    together, a missing argument): the command line reports it as Click reports its
    own usage errors, naming ``option`` when one is at fault."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class InputFileError(CeLossError, ValueError):
    """A file that cannot be read as logits or targets, with where and how to fix.

    ``InputFileError("labels.csv", "'cat' is not an integer", line=7, column=2)``
    reads ``labels.csv, line 7, column 2: 'cat' is not an integer``.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        column: int | str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.column = column
        self.hint = hint
        where = "<stdin>" if self.path == "-" else self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        message = f"{where}: {problem}"
        if hint:
            message += f"; {hint}"
        super().__init__(" ".join(message.split("\n")))

    def __reduce__(self) -> tuple:  # picklable, so Dask workers can send it back
        return (_input_file_error, (self.path, self.problem, self.line, self.column, self.hint))


def _input_file_error(path: str, problem: str, line: int | None, column: int | str | None,
                      hint: str | None) -> InputFileError:
    return InputFileError(path, problem, line=line, column=column, hint=hint)


class OutputFileError(CeLossError, OSError):
    """An output path that cannot be written."""
