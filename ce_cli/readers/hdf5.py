"""HDF5 files (``.h5``, ``.hdf5``, ``.hdf``) through h5py, an optional extra
(``pip install 'ce-loss[hdf5]'``): the only dataset, or the one named by
``file.h5:NAME`` (``file.h5:group/logits`` for a nested one); and the logits and targets
of one file by their names.

A dataset is read a row block at a time (``dataset[start:stop]``; h5py decompresses
only the chunks a block touches), and the file is open only while a source's blocks are
read. Every problem, from a file that is no HDF5 to a dataset of strings, is one
:class:`InputFileError` line. h5py is imported when a file is read, not before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import InputFileError
from .base import Source, native
from .conventions import choose_pair, example_member, member_hint, pair_hint, taken_note

WHAT = "HDF5 file"
INSTALL = "reading HDF5 needs h5py: pip install 'ce-loss[hdf5]'"
SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: the bytes of chunk cache each open file gets (h5py's default is 1 MiB): a row block
#: that ends inside a chunk finds it cached when the next block starts there
CHUNK_CACHE = 16 << 20


def _h5py(path: str) -> Any:
    try:
        import h5py
    except ImportError:
        raise InputFileError(path, INSTALL) from None
    return h5py


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _damaged(path: str, exc: BaseException) -> InputFileError:
    """The error for a file h5py cannot open or read: not HDF5, or truncated/damaged."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SIGNATURE))
    except OSError as err:
        return InputFileError(path, f"cannot read the file ({err.strerror or err})")
    if head != SIGNATURE:
        return InputFileError(path, f"not an {WHAT} (it does not start with HDF5's signature)",
                              hint="pass the format its contents are in (--logits-format)")
    return InputFileError(path, f"the {WHAT} is truncated or damaged ({_first_line(exc)})",
                          hint="copy or save the file again")


def _open(path: str) -> Any:
    """``path`` opened read-only by h5py (the caller closes it)."""
    h5py = _h5py(path)
    try:
        return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _damaged(path, exc) from None


def _datasets(f: Any, path: str) -> list[str]:
    """The paths of every dataset in the open file ``f`` (``group/logits``), in order."""
    import h5py

    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(name)

    try:
        f.visititems(visit)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise _damaged(path, exc) from None
    return found


def _listing(names: list[str]) -> str:
    shown = sorted(names)
    if len(shown) > 20:
        return ", ".join(shown[:20]) + f", ... ({len(shown) - 20} more)"
    return ", ".join(shown) or "none"


def _kind_of(dtype: np.dtype) -> str | None:
    """Why a dataset of ``dtype`` cannot be read (None when it can)."""
    import h5py

    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU":
        return "strings"
    if h5py.check_vlen_dtype(dtype) is not None or dtype.kind == "O":
        return "variable-length sequences"
    if dtype.fields is not None:
        return "compound records"
    if dtype.kind == "V":
        return "opaque bytes"
    if dtype.kind == "c":
        return "complex numbers"
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        return dtype.name
    return None


def _get(f: Any, path: str, name: str) -> Any:
    """The object ``name`` of the open file ``f``; None for none (a dangling link too)."""
    try:
        return f.get(name)
    except (KeyError, ValueError):
        return None
    except (OSError, RuntimeError) as exc:
        raise _damaged(path, exc) from None


def _name(member: str) -> str:
    return member.strip("/")


# -- one dataset --------------------------------------------------------------------------------


class _Dataset:
    """What is known of one dataset before its rows are read."""

    def __init__(self, f: Any, path: str, name: str, where: str, role: str) -> None:
        import h5py

        obj = _get(f, path, name) if name else None
        if obj is None:
            raise InputFileError(path, f"the {WHAT} holds no dataset named {name!r}",
                                 hint=f"its datasets are: {_listing(_datasets(f, path))}")
        if isinstance(obj, h5py.Group):
            inner = [f"{name}/{n}" for n in _datasets(obj, path)]
            raise InputFileError(path, f"{name!r} is a group of the {WHAT}, not a dataset",
                                 hint=f"name one of its datasets: {_listing(inner)}"
                                 if inner else f"its datasets are: "
                                 f"{_listing(_datasets(f, path))}")
        if not isinstance(obj, h5py.Dataset):
            raise InputFileError(path, f"{name!r} of the {WHAT} is not a dataset",
                                 hint=f"its datasets are: {_listing(_datasets(f, path))}")
        dtype = obj.dtype
        why = _kind_of(dtype)
        if why is not None:
            hint = "save int64 class indices" if role == "targets" else \
                "save the logits as float32, float64 or float16"
            raise InputFileError(where, f"the {role} are a dataset of {why} ({dtype}), "
                                 "which ce-loss cannot read", hint=hint)
        if obj.shape is None:
            raise InputFileError(where, f"the {role} are an empty dataset (no shape)",
                                 hint="save the array with h5py's create_dataset(name, data=x)")
        self.name = name
        self.dtype = dtype if dtype.isnative else dtype.newbyteorder("=")
        self.shape: tuple[int, ...] = tuple(obj.shape)


def _source(path: str, d: _Dataset, where: str, role: str) -> Source:
    """A source over the dataset ``d`` of ``path``: each call of ``blocks`` opens the file,
    reads row slices and closes it."""
    if not d.shape:  # a scalar dataset: one value

        def one(rows: int) -> Iterator[np.ndarray]:
            with _reopen(path, d, where) as ds:
                value = _read(ds, (), path, where)
            yield native(np.asarray(value).reshape(1))

        return Source(where, role, d.dtype, (), 1, one)
    n = d.shape[0]

    def blocks(rows: int) -> Iterator[np.ndarray]:
        with _reopen(path, d, where) as ds:
            for start in range(0, n, rows):
                yield native(_read(ds, slice(start, min(n, start + rows)), path, where))

    return Source(where, role, d.dtype, d.shape[1:], n, blocks,
                  flatten=_flattening(path, d, where, role))


def _flattening(path: str, d: _Dataset, where: str, role: str
                ) -> Callable[[int], Source] | None:
    """``Source.flatten`` for a dataset of two or more axes: every axis but the last
    ``keep`` spread into rows (``(B, L, V)`` logits as ``B * L`` token rows). A block is
    a slab of the first axis where one holds a whole sample, else a run along the last
    spread axis, each read as its own slice of the file."""
    if len(d.shape) < 2:
        return None

    def flatten(keep: int) -> Source:
        lead, inner = d.shape[:len(d.shape) - keep], d.shape[len(d.shape) - keep:]
        per_sample = math.prod(lead[1:])

        def blocks(rows: int) -> Iterator[np.ndarray]:
            with _reopen(path, d, where) as ds:
                if per_sample and rows >= per_sample:  # whole samples a block
                    step = rows // per_sample
                    for b in range(0, lead[0], step):
                        part = _read(ds, slice(b, min(lead[0], b + step)), path, where)
                        yield native(part.reshape(-1, *inner))
                    return
                last = lead[-1]
                for prefix in np.ndindex(*lead[:-1]):
                    for start in range(0, last, rows):
                        index = (*prefix, slice(start, min(last, start + rows)))
                        yield native(_read(ds, index, path, where))

        return Source(where, role, d.dtype, inner, math.prod(lead), blocks)

    return flatten


class _reopen:
    """``with _reopen(path, d, where) as ds``: the dataset ``d`` in ``path`` opened again,
    checked unchanged, closed on leaving."""

    def __init__(self, path: str, d: _Dataset, where: str) -> None:
        self.path, self.d, self.where = path, d, where
        self.f: Any = None

    def __enter__(self) -> Any:
        self.f = _open(self.path)
        ds = _get(self.f, self.path, self.d.name)
        if ds is None or getattr(ds, "shape", None) != self.d.shape:
            self.f.close()
            raise InputFileError(self.where, f"the {WHAT} changed while it was read",
                                 hint="read it again once it is written")
        return ds

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def _read(ds: Any, index: Any, path: str, where: str) -> np.ndarray:
    try:
        return ds[index]
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(where, f"the {WHAT} is truncated or damaged: cannot read its "
                             f"data ({_first_line(exc)})",
                             hint="copy or save the file again") from None


def _where(path: str, name: str) -> str:
    return f"{path}:{name}"


def _no_stdin(data: bytes | None) -> None:
    if data is not None:
        raise InputFileError("-", "cannot read HDF5 data from standard input",
                             hint="save it to a .h5 file and pass its path")


def read_hdf5(path: str, *, role: str, data: bytes | None = None,
              member: str | None = None, **_: object) -> Source:
    """A source over one dataset of the HDF5 file ``path`` (``member``: its path in the
    file; it may be left out when the file holds one dataset)."""
    _no_stdin(data)
    f = _open(path)
    try:
        named = member is not None
        if member is None:
            names = _datasets(f, path)
            if len(names) != 1:
                if not names:
                    raise InputFileError(path, f"the {WHAT} holds no datasets",
                                         hint="save the array with h5py's "
                                              "create_dataset(name, data=x)")
                raise InputFileError(path, f"the {WHAT} holds {len(names)} datasets "
                                     f"({_listing(names)})",
                                     hint=member_hint(path, role, example_member(names, role)))
            member = names[0]
        member = _name(member)
        where = _where(path, member) if named else path
        d = _Dataset(f, path, member, where, role)
    finally:
        f.close()
    return _source(path, d, where, role)


# -- the logits and the targets of one file -----------------------------------------------------


def read_hdf5_pair(path: str, *, target_column: str | None = None,
                   logits_columns: str | None = None, data: bytes | None = None,
                   member: str | None = None, **_: object) -> tuple[Source, Source]:
    """``(logits, targets)`` from one HDF5 file holding both.

    The targets are the dataset ``target_column`` if given, else the one with a
    conventional name (``labels``, ``targets``, ...); the logits are ``member`` (from
    ``file.h5:NAME``) or ``logits_columns`` if given, else the one with a conventional
    name (``logits``, ``scores``, ...) or the only other dataset. What was taken by its
    name is said in the logits' ``notes``; what cannot be told is an error listing the
    datasets and showing ``FILE:NAME``.
    """
    _no_stdin(data)
    member = None if member is None else _name(member)
    logits_columns = None if logits_columns is None else _name(logits_columns)
    target_column = None if target_column is None else _name(target_column)
    f = _open(path)
    try:
        names = _datasets(f, path)
        for given, option in ((target_column, "--target-column"),
                              (logits_columns, "--logits-columns"), (member, None)):
            if given is None or given in names:
                continue
            if _get(f, path, given) is not None:  # a group (said so), or a linked dataset
                _Dataset(f, path, given, path, "targets" if option == "--target-column"
                         else "logits")
            else:
                what = f"{option} {given!r}" if option else f"{path}:{given}"
                raise InputFileError(path, f"the {WHAT} holds no dataset named {given!r} "
                                     f"({what})", hint=f"its datasets are: {_listing(names)}")
        given = (member or logits_columns, target_column)
        pair = choose_pair(names, logits=given[0], targets=given[1])
        if pair is None:
            raise _cannot_tell(path, names)
        logits, targets = pair
        dx = _Dataset(f, path, logits, _where(path, logits), "logits")
        dt = _Dataset(f, path, targets, _where(path, targets), "targets")
    finally:
        f.close()
    xs = _source(path, dx, _where(path, logits), "logits")
    ts = _source(path, dt, _where(path, targets), "targets")
    note = taken_note(path, pair, given)
    if note:
        xs.notes.append(note)
    return xs, ts


def _cannot_tell(path: str, names: list[str]) -> InputFileError:
    if len(names) < 2:
        held = f"one dataset ({names[0]!r})" if names else "no datasets"
        return InputFileError(path, f"the {WHAT} holds {held}, not both logits and targets",
                              hint="pass the targets as a second file")
    return InputFileError(path, f"cannot tell which datasets of the {WHAT} are the logits "
                          f"and which the targets: it holds {_listing(names)}",
                          hint=pair_hint(path, names))
