"""Atomic output files: a temp file beside the target, ``os.replace`` on success.

A failed or interrupted run never leaves a partial file and never clobbers an
existing one. Per-sample losses go out as ``.npy`` (the main column alone) or as a
table of every column (``.csv``, ``.tsv``, ``.parquet``, ``.arrow``/``.feather``/
``.ipc``); a matrix such as the softmax probabilities is the raw 2-D array in
``.npy`` and one column per class (``p0``, ``p1``, ...) in the table formats.

CSV numbers are the shortest text that reads back as the same value of the column's
dtype (pyarrow's writer: ``0.1`` for float32 0.1, not ``0.10000000149011612``).
pyarrow is imported inside the writers that use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import OutputFileError
from .readers import registry


class Batch:
    """Outputs written in full to temp files first, moved onto their targets together.

    ``with Batch() as batch:`` then ``write_columns(..., batch=batch)`` and the like: each
    write goes to a temp file beside its target; leaving the block without an error moves
    them all (:meth:`commit`), leaving it with one (Ctrl-C included) deletes them all, so
    a run that fails on its second output replaces neither the first's target nor any.
    ``written`` records each target as it lands (pass a list to read it after an error:
    an interrupted run names the files written in full).
    """

    def __init__(self, written: list[str] | None = None) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self.written: list[str] = [] if written is None else written

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def add(self, tmp: Path, target: Path) -> None:
        self._staged.append((tmp, target))

    def commit(self) -> None:
        """Move every temp file onto its target (renames in one folder: they do not fail
        for want of space)."""
        while self._staged:
            tmp, target = self._staged[0]
            try:
                os.replace(tmp, target)
            except OSError as exc:
                self.discard()
                raise OutputFileError(f"{target}: cannot write ({exc.strerror or exc})"
                                      ) from None
            self._staged.pop(0)
            self.written.append(str(target))

    def discard(self) -> None:
        """Delete the temp files not yet moved; their targets stay as they were."""
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()


@contextlib.contextmanager
def atomic_path(target: str | Path, batch: Batch | None = None) -> Iterator[Path]:
    """Yield a temp path in ``target``'s folder; move it onto ``target`` only on success
    (with ``batch``: when the batch commits)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                               dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _set_mode(tmp_path, target)
        if batch is not None:
            batch.add(tmp_path, target)
            return
        os.replace(tmp_path, target)
    except BaseException:  # Ctrl-C included: never leave the temp file behind
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _set_mode(tmp: Path, target: Path) -> None:
    """Give the new file the mode a plain ``open(target, 'w')`` would (mkstemp uses 0600)."""
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


# -- formats ----------------------------------------------------------------------------------


def save_npy(path: Path, columns: dict[str, np.ndarray], main: str) -> None:
    with open(path, "wb") as fh:  # a file object, so np.save adds no .npy suffix
        np.save(fh, columns[main])


def _arrow_table(columns: dict[str, np.ndarray], for_csv: bool = False) -> Any:
    import pyarrow as pa

    arrays = []
    for values in columns.values():
        a = np.ascontiguousarray(values).reshape(-1)
        if for_csv and a.dtype == np.float16:
            # pyarrow prints half floats exactly (0.0999755859375); numpy's repr is shortest
            arrays.append(pa.array(a.astype(str)))
        else:
            arrays.append(pa.array(a))
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        shown = ", ".join(f"{n}: {len(a)}" for n, a in zip(columns, arrays))
        raise OutputFileError(f"the output columns differ in length ({shown})")
    return pa.Table.from_arrays(arrays, names=list(columns))


def save_csv(path: Path, columns: dict[str, np.ndarray], main: str,
             delimiter: str = ",") -> None:
    import csv
    import io

    import pyarrow.csv as pcsv

    table = _arrow_table(columns, for_csv=True)
    header = io.StringIO()  # minimal quoting: pyarrow would quote every name
    csv.writer(header, delimiter=delimiter, lineterminator="\n").writerow(list(columns))
    # quoting "none": the only text cells are half floats printed by numpy
    options = pcsv.WriteOptions(include_header=False, delimiter=delimiter,
                                batch_size=1 << 14, quoting_style="none")
    with open(path, "wb") as fh:
        fh.write(header.getvalue().encode())
        pcsv.write_csv(table, fh, write_options=options)


def save_tsv(path: Path, columns: dict[str, np.ndarray], main: str) -> None:
    save_csv(path, columns, main, delimiter="\t")


def save_parquet(path: Path, columns: dict[str, np.ndarray], main: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_arrow_table(columns), str(path))


def save_arrow(path: Path, columns: dict[str, np.ndarray], main: str) -> None:
    """The Arrow IPC file format (what Feather v2 is), uncompressed so it can be mapped."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    table = _arrow_table(columns)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


Writer = Callable[[Path, "dict[str, np.ndarray]", str], None]

#: suffix -> writer, as the format registry names them (the save_* functions above)
WRITERS: dict[str, Writer] = {suffix: registry.load(f.writer)
                              for suffix, f in registry.writer_suffixes().items()
                              if f.writer is not None}


def check_output(path: str, suffixes: Iterable[str] | None = None) -> None:
    """Refuse an output path we could not write, before any work is done.

    ``suffixes``: the accepted suffixes (default: those of :data:`WRITERS`).
    """
    p = Path(path)
    accepted = sorted(WRITERS if suffixes is None else suffixes)
    if p.suffix.lower() not in accepted:
        raise OutputFileError(
            f"{path}: cannot write {p.suffix or 'files without a suffix'!r}; "
            f"name the output with {'one of ' if len(accepted) > 1 else ''}"
            f"{', '.join(accepted)}"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputFileError(f"{path}: the folder {str(parent)!r} does not exist")
    if p.is_dir():
        raise OutputFileError(f"{path}: is a directory; name a file")
    if not os.access(parent, os.W_OK):
        raise OutputFileError(f"{path}: the folder {str(parent)!r} is not writable")


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same path once links and ``..``
    are resolved, or one file under two names (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet)
        return False


def check_apart(outputs: dict[str, str | None], inputs: dict[str, Iterable[str]]) -> None:
    """Refuse an output that is one of the inputs or another output, before any work.

    ``outputs``: option -> path (None: not given); ``inputs``: what the files are (``'the
    logits'``) -> their paths.
    """
    given = [(opt, path) for opt, path in outputs.items() if path]
    for i, (opt, path) in enumerate(given):
        for what, files in inputs.items():
            for file in files:
                if file and file != "-" and same_file(path, file):
                    shown = "" if file == path else f" {file} (the same file)"
                    raise OutputFileError(
                        f"{opt} {path} is {what}{shown}: writing it would replace the "
                        "input; name another output file")
        for other, other_path in given[:i]:
            if same_file(path, other_path):
                raise OutputFileError(f"{other} and {opt} both name {path}; give each "
                                      "output its own file")


def _writer(path: str) -> Writer:
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        check_output(path)  # raises the message naming the suffixes
    return WRITERS[suffix]


def _run(path: str, write: Callable[[Path], None], batch: Batch | None = None) -> None:
    """Run ``write(tmp)`` and move the result onto ``path`` (with ``batch``: when it
    commits); errors become one line."""
    import pyarrow as pa

    try:
        with atomic_path(path, batch) as tmp:
            write(tmp)
    except OutputFileError as exc:
        raise OutputFileError(f"{path}: {exc}") from None
    except (OSError, pa.ArrowException) as exc:
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())
        raise OutputFileError(f"{path}: cannot write ({reason})") from None


def write_columns(path: str, columns: dict[str, np.ndarray], main: str,
                  batch: Batch | None = None) -> None:
    """Write ``columns`` (``main`` alone for ``.npy``) to ``path`` atomically.

    Table formats get every column, in order, each flattened to 1-D; they must have
    the same length.
    """
    writer = _writer(path)
    if main not in columns:
        raise ValueError(f"main column {main!r} is not among {list(columns)}")
    _run(path, lambda tmp: writer(tmp, columns, main), batch)


def write_matrix(path: str, matrix: np.ndarray, prefix: str = "p",
                 batch: Batch | None = None, names: list[str] | None = None) -> None:
    """Write a ``(N, C)`` matrix atomically: raw in ``.npy``, else columns ``p0..p{C-1}``
    (or the class ``names``, one per column, when given).

    A 1-D ``(C,)`` matrix is one row. Only ``.npy`` holds more than two dimensions.
    """
    writer = _writer(path)
    # C order: a class-major block from a table reader would otherwise be saved with
    # fortran_order, which readers other than numpy's may not handle
    matrix = np.ascontiguousarray(matrix)
    if not registry.writer_suffixes()[Path(path).suffix.lower()].table:
        _run(path, lambda tmp: writer(tmp, {"m": matrix}, "m"), batch)  # the array as it is
        return
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise OutputFileError(f"{path}: a table holds 2-D (N, C) values, but these have shape "
                              f"{tuple(matrix.shape)}; write them to a .npy file")
    if names is None or len(names) != matrix.shape[1]:
        names = [f"{prefix}{j}" for j in range(matrix.shape[1])]
    columns = {name: matrix[:, j] for j, name in enumerate(names)}
    main = next(iter(columns), "")
    _run(path, lambda tmp: writer(tmp, columns, main), batch)


def write_text(path: str, text: str, batch: Batch | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, whatever its suffix."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    _run(path, write, batch)
