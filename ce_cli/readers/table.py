"""Column tables (Parquet, Arrow IPC, CSV with a header): which columns hold what.

A format module describes its file as a :class:`Table` (the columns, their Arrow
types, the row count if known, and record batches of chosen columns); this module
picks the logit and target columns and turns batches into NumPy blocks, so every
table format follows the same rules:

- logits: the columns ``logits_columns`` names (a glob such as ``logit_*``, a prefix,
  or a comma-separated list), else the only list column, else every numeric column
  (integer columns beside float ones are ids, not logits, and are left out);
- targets: ``target_column``, else the only column, else a column named ``target`` or
  ``label``, else the numeric columns (or the only list column) as probabilities
  (strings in a target column are class names: ``classes.py``);
- a pandas index column (``__index_level_0__``, ``Unnamed: 0``) is never data.

pyarrow is imported inside the functions that use it.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputFileError
from .base import Source, prefetched, rechunk
from .classes import Labels, column_names, is_label_type, label_block
from .shared import SharedBatches
from .validate import INDEX_HINT, index_problem

TARGET_NAMES = ("target", "label", "targets", "labels")

#: values per record batch asked of a table format (~16 MB of float64): bounds what one
#: pyarrow read decodes at once. (``pipeline.READ_ELEMENTS`` bounds the blocks a command
#: asks for; a batch holds a whole number of them, cut out as views.)
BATCH_ELEMENTS = 1 << 21


@dataclass
class Field:
    """One column: its name, Arrow type and what it can hold."""

    name: str
    type: Any  # pyarrow.DataType
    position: int  # 0-based, in the file
    kind: str = ""  # "float", "int", "bool", "list" (of numbers) or "other"
    list_size: int | None = None  # for fixed-size lists
    display: str = ""  # how messages name it; repr(name) if empty

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind, self.list_size = classify(self.type)

    @property
    def numeric(self) -> bool:
        return self.kind in ("float", "int", "bool")

    def describe(self) -> str:
        return f"{self.display or repr(self.name)} ({self.type})"


def classify(t: Any) -> tuple[str, int | None]:
    import pyarrow as pa

    if pa.types.is_dictionary(t):  # pandas categoricals: numbers if their categories are
        t = t.value_type
    if pa.types.is_floating(t):
        return "float", None
    if pa.types.is_integer(t):
        return "int", None
    if pa.types.is_boolean(t):
        return "bool", None
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        value = t.value_type
        if pa.types.is_floating(value) or pa.types.is_integer(value):
            return "list", (t.list_size if pa.types.is_fixed_size_list(t) else None)
    return "other", None


class Table:
    """What a format module provides. Subclasses set the attributes and ``batches``."""

    path: str
    fields: list[Field]
    n_rows: int | None
    text: bool = False  # a text file: errors name lines, not row indices
    notes: list[str] = []  # what the reader decided about the whole file (never mutated here)

    def batches(self, fields: list[Field], rows: int) -> Iterator[Any]:
        """Record batches of about ``rows`` rows holding ``fields`` (in that order)."""
        raise NotImplementedError

    def line_of(self, row: int) -> int | None:  # 1-based, for text files
        return None

    def cell_text(self, row: int, f: Field) -> str | None:  # as written, for text files
        return None

    def column_label(self, f: Field) -> int | str:
        return repr(f.name)

    def index_names(self) -> set[str]:  # the columns pandas wrote for its index
        return {f.name for f in self.fields
                if f.name.startswith("__index_level_") or f.name == "Unnamed: 0"}

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def cell_error(self, row: int, f: Field, problem: str, *, value: Any = None,
                   hint: str | None = None) -> InputFileError:
        """``problem`` is about the value; it is located by line (text) or row index."""
        if self.text:
            text = self.cell_text(row, f)
            shown = repr(text) if text is not None else repr(value)
            return InputFileError(self.path, f"{shown} {problem}", line=self.line_of(row),
                                  column=self.column_label(f), hint=hint)
        shown = "" if value is None else f" ({_show(value)})"
        return InputFileError(self.path, f"row index {row}{shown} {problem}",
                              column=self.column_label(f), hint=hint)

    def listing(self) -> str:
        names = [f.name for f in self.fields]
        shown = ", ".join(repr(n) for n in names[:20])
        return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _show(value: Any) -> str:
    value = float(value) if isinstance(value, (float, np.floating)) else value
    return repr(value.item() if isinstance(value, np.generic) else value)


def table_source(table: Table, role: str, *, logits_columns: str | None = None,
                 target_column: str | None = None) -> Source:
    """The ``role`` source of a table, by the rules in this module's docstring."""
    if role == "targets":
        sel = select_targets(table, target_column)
    else:
        sel = select_logits(table, role, logits_columns)
    return make_source(table, role, sel)


def table_pair(table: Table, *, target_column: str | None,
               logits_columns: str | None = None) -> tuple[Source, Source]:
    """Logits and targets from one table: the target column and the other numbers.
    Without ``target_column``, the column named label, labels, target or targets (with a
    note saying so)."""
    taken = None
    if target_column is None:
        taken = next((f.name for name in TARGET_NAMES for f in table.fields
                      if f.name.lower() == name), None)
        if taken is None:
            raise InputFileError(
                table.path, "missing TARGETS: no column is named label, labels, target or "
                "targets",
                hint="give a targets file, or --target-column NAME (the columns are "
                     f"{table.listing()})")
        target_column = taken
    if table.field(target_column) is None:
        raise InputFileError(table.path, f"has no column {target_column!r} for the targets",
                             hint=f"the columns are {table.listing()}")
    t_sel = select_targets(table, target_column)
    if taken is not None:
        t_sel.notes.append(f"{_where(table)}: took the targets from the column {taken!r} "
                           "(--target-column NAME picks another)")
    x_sel = select_logits(table, "logits", logits_columns, exclude=(target_column,),
                          pair=True)
    # a text table is parsed once for both sides (parsing is nearly all of its cost);
    # binary formats read each side's columns on their own, which costs nothing extra
    shared = SharedBatches(table, [x_sel.fields, t_sel.fields]) if table.text else None
    return (make_source(table, "logits", x_sel, shared, 0),
            make_source(table, "targets", t_sel, shared, 1))


# -- choosing columns -------------------------------------------------------------------------


@dataclass
class Selection:
    fields: list[Field]
    layout: str  # "matrix" (one column per class), "list" (one list column), "index"
    notes: list[str] = field(default_factory=list)


def match_columns(table: Table, spec: str, candidates: list[Field]) -> list[Field]:
    """Fields named by ``spec``: comma-separated names, globs (``logit_*``) or prefixes."""
    chosen: list[Field] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(ch in part for ch in "*?["):
            hits = [f for f in candidates if fnmatch.fnmatchcase(f.name, part)]
        else:
            exact = [f for f in candidates if f.name == part]
            hits = exact or [f for f in candidates if f.name.startswith(part)]
        if not hits:
            raise InputFileError(table.path, f"no column matches {part!r} (from "
                                 f"--logits-columns {spec!r})",
                                 hint=f"the columns are {table.listing()}")
        chosen += [f for f in hits if f not in chosen]
    if not chosen:
        raise InputFileError(table.path, f"--logits-columns {spec!r} names no columns",
                             hint="pass names, a glob such as 'logit_*' or a prefix")
    return chosen


def select_logits(table: Table, role: str, logits_columns: str | None = None,
                  exclude: tuple[str, ...] = (), pair: bool = False) -> Selection:
    index = table.index_names()
    candidates = [f for f in table.fields if f.name not in index and f.name not in exclude]
    what = "weights" if role == "weight" else "logits"
    if logits_columns:
        chosen = match_columns(table, logits_columns, candidates)
        lists = [f for f in chosen if f.kind == "list"]
        bad = [f for f in chosen if not f.numeric and f.kind != "list"]
        if bad:
            raise InputFileError(table.path, f"--logits-columns picks columns that are not "
                                 f"numbers: {', '.join(f.describe() for f in bad)}",
                                 hint="narrow the selection")
        if lists:
            if len(chosen) > 1:
                raise InputFileError(table.path, "--logits-columns picks a list column with "
                                     "other columns", hint="pick one list column, or "
                                     "one number column per class")
            return Selection(chosen, "list")
        return Selection(chosen, "matrix")
    if not candidates:
        raise InputFileError(table.path, f"holds no columns for the {what}")
    notes: list[str] = []
    left = [f for f in table.fields if f.name in index and f.name not in exclude]
    if left:
        notes.append(f"{_where(table)}: ignored pandas' index {_names(left)} (not logits)")
    lists = [f for f in candidates if f.kind == "list"]
    if lists:
        if len(lists) > 1:
            raise InputFileError(table.path, "holds several list columns: "
                                 f"{', '.join(f.describe() for f in lists)}",
                                 hint="pick the logits with --logits-columns NAME")
        others = [f for f in candidates if f is not lists[0]]
        if others:
            notes.append(f"{_where(table)}: took the {what} from the list column "
                         f"{lists[0].name!r}; ignored {_names(others)}")
        return Selection(lists, "list", notes)
    other = [f for f in candidates if not f.numeric]
    if other and not pair:
        raise InputFileError(
            table.path, "has columns that are not numbers: "
            f"{', '.join(f.describe() for f in other[:8])}",
            hint="pick the logit columns with --logits-columns (e.g. 'logit_*')")
    numeric = [f for f in candidates if f.numeric]
    if other:
        notes.append(f"{_where(table)}: ignored the columns that are not numbers: "
                     f"{_names(other)}")
    floats = [f for f in numeric if f.kind == "float"]
    if floats and len(floats) < len(numeric):
        ints = [f for f in numeric if f.kind != "float"]
        named = [f for f in ints if f.name.lower() in TARGET_NAMES]
        if named and not pair:
            n = named[0].name
            notes.append(f"{_where(table)}: ignored the column {n!r} (class indices, not "
                         f"logits); --target-column {n} reads the targets from it")
        ids = [f for f in ints if f not in named or pair]
        if ids:
            notes.append(f"{_where(table)}: ignored the integer columns {_names(ids)} (ids, "
                         "not logits); --logits-columns picks columns explicitly")
        numeric = floats
    if not numeric:
        raise InputFileError(table.path, f"holds no numeric columns for the {what}",
                             hint=f"the columns are {table.listing()}")
    if not pair and role == "logits":
        named = [f for f in numeric if f.name.lower() in TARGET_NAMES]
        if named:
            n = named[0].name
            raise InputFileError(
                table.path, f"has a column named {n!r} among the logits",
                hint=f"pass --target-column {n} to read logits and targets from this file, "
                     "or --logits-columns to pick the logit columns")
    return Selection(numeric, "matrix", notes)


def select_targets(table: Table, target_column: str | None = None) -> Selection:
    index = table.index_names()
    if target_column is not None:
        f = table.field(target_column)
        if f is None:
            raise InputFileError(table.path, f"has no column {target_column!r}",
                                 hint=f"the columns are {table.listing()}")
        return _target_selection(table, [f])
    candidates = [f for f in table.fields if f.name not in index]
    if not candidates:
        raise InputFileError(table.path, "holds no columns for the targets")
    if len(candidates) == 1:
        return _target_selection(table, candidates)
    for name in TARGET_NAMES:
        named = [f for f in candidates if f.name.lower() == name]
        if named:
            return _target_selection(table, named[:1])
    lists = [f for f in candidates if f.kind == "list"]
    if len(lists) == 1:
        return _target_selection(table, lists)
    other = [f for f in candidates if not f.numeric]
    if other:
        raise InputFileError(
            table.path, "has columns that are not numbers: "
            f"{', '.join(f.describe() for f in other[:8])}",
            hint="pick the class-index column with --target-column NAME")
    return Selection(candidates, "matrix")  # several numeric columns: probabilities


def _target_selection(table: Table, fields: list[Field]) -> Selection:
    f = fields[0]
    if f.kind == "list":
        return Selection(fields, "list")
    if is_label_type(f.type):  # class names: matched to the classes (readers/classes.py)
        return Selection(fields, "names")
    if not f.numeric:
        raise InputFileError(table.path, f"the target column {f.describe()} does not hold "
                             "numbers", hint="class indices must be integers")
    return Selection(fields, "index")


def _where(table: Table) -> str:  # a table's path as messages name it
    return "<stdin>" if table.path == "-" else table.path


def _names(fields: list[Field]) -> str:
    shown = ", ".join(repr(f.name) for f in fields[:8])
    return shown + (f" and {len(fields) - 8} more" if len(fields) > 8 else "")


# -- batches to blocks ------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _numpy_dtype(t: Any) -> np.dtype:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return np.dtype(np.bool_)
    if pa.types.is_integer(t):
        return np.dtype(f"{'i' if pa.types.is_signed_integer(t) else 'u'}{t.bit_width // 8}")
    if pa.types.is_floating(t):
        return np.dtype(f"f{t.bit_width // 8}")
    return np.dtype(t.to_pandas_dtype())


def to_numpy(arr: Any) -> np.ndarray:
    """A pyarrow Array as NumPy: a zero-copy view for numbers and a bit unpack for
    booleans without nulls. (pyarrow's own ``to_numpy`` imports pandas when it is
    installed, which alone costs a third of a second.)"""
    import pyarrow as pa

    t = arr.type
    n = len(arr)
    if arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        dtype = _numpy_dtype(t)
        if n == 0:
            return np.empty(0, dtype)
        return np.frombuffer(arr.buffers()[1], dtype=dtype, count=n,
                             offset=arr.offset * dtype.itemsize)
    if arr.null_count == 0 and pa.types.is_boolean(t):
        if n == 0:
            return np.empty(0, np.bool_)
        bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, count=arr.offset + n, bitorder="little")[arr.offset:] \
            .astype(np.bool_)
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def make_source(table: Table, role: str, sel: Selection, shared: SharedBatches | None = None,
                side: int = 0) -> Source:
    """The :class:`Source` reading ``sel`` from ``table`` (from ``shared``'s read, as its
    source number ``side``, when one is given)."""
    labels = Labels() if sel.layout == "names" else None
    if sel.layout in ("index", "names"):
        f = sel.fields[0]
        dtype = np.dtype(np.int64)
        row_shape: tuple[int, ...] = ()

        def convert(batch: Any, start: int) -> np.ndarray:
            col = batch.column(0)
            return index_block(table, f, col, start) if labels is None else \
                label_block(table, f, col, start, labels)
    elif sel.layout == "list":
        f = sel.fields[0]
        dtype = _numpy_dtype(f.type.value_type)
        size = f.list_size if f.list_size is not None else _first_list_size(table, f)
        row_shape = (size,)

        def convert(batch: Any, start: int) -> np.ndarray:
            return list_block(table, f, batch.column(0), start, size, dtype)
    else:
        fields = sel.fields
        dtype = np.result_type(*[_numpy_dtype(f.type) for f in fields])
        if role == "weight" and len(fields) == 1:
            row_shape = ()
        else:
            row_shape = (len(fields),)

        def convert(batch: Any, start: int) -> np.ndarray:
            block = matrix_block(table, fields, batch, start, dtype)
            return block.reshape(-1) if row_shape == () else block

    width = max(1, len(sel.fields) if sel.layout == "matrix" else
                row_shape[0] if row_shape else 1)

    def arrays(rows: int) -> Iterator[np.ndarray]:
        start = 0
        # batches of ~BATCH_ELEMENTS values (small ones cost per-column overhead in
        # Parquet), a whole number of blocks, so cutting them into blocks takes views
        step = rows * max(1, BATCH_ELEMENTS // width // rows)
        read = table.batches(sel.fields, step) if shared is None else shared.batches(side, step)
        for batch in read:
            # an IPC file may hold one huge batch: convert it a zero-copy slice at a time
            for offset in range(0, batch.num_rows, step):
                part = batch.slice(offset, step) if batch.num_rows > step else batch
                yield convert(part, start)
                start += part.num_rows

    def blocks(rows: int) -> Iterator[np.ndarray]:
        # decode the next batch in a thread while the caller computes on this one
        return rechunk(arrays(rows) if shared else prefetched(arrays(rows)), rows)

    logits = sel.layout == "matrix" and role == "logits"
    names = column_names(table, sel.fields) if logits else None
    return Source(table.path, role, dtype, row_shape, table.n_rows, blocks, labels=labels,
                  line_of=table.line_of, notes=table.notes + sel.notes, column_names=names)


def _first_list_size(table: Table, f: Field) -> int:
    for batch in table.batches([f], 1):
        if batch.num_rows:
            col = batch.column(0)
            if to_numpy(col.is_null())[0]:
                raise table.cell_error(0, f, "is null (a missing list)",
                                       hint="fill or drop the missing rows")
            return len(col[0].values)
    raise InputFileError(table.path, f"has no rows, so the length of the list column "
                         f"{f.name!r} (the number of classes) is unknown")


def _decoded(arr: Any) -> Any:
    """A dictionary-encoded column (a pandas categorical) as its plain values."""
    import pyarrow as pa

    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _first_null(table: Table, f: Field, arr: Any, start: int) -> InputFileError:
    mask = to_numpy(arr.is_null())
    row = start + int(np.flatnonzero(mask)[0])
    return table.cell_error(row, f, "is missing (null)",
                            hint="fill or drop the missing values")


def matrix_block(table: Table, fields: list[Field], batch: Any, start: int,
                 dtype: np.dtype) -> np.ndarray:
    """A ``(m, k)`` array of the batch's ``k`` number columns."""
    cols = [_decoded(batch.column(j)) for j in range(batch.num_columns)]
    for f, col in zip(fields, cols):
        if col.null_count:
            raise _first_null(table, f, col, start)
    # class-major: one contiguous copy per column, handed on as the transposed view
    # (the kernel reads class-first planes in place; a row-major copy would cost a
    # strided transpose of the whole batch)
    out = np.empty((len(cols), batch.num_rows), dtype=dtype)
    for j, col in enumerate(cols):
        out[j] = to_numpy(col)
    return out.T


def list_block(table: Table, f: Field, arr: Any, start: int, size: int,
               dtype: np.dtype) -> np.ndarray:
    """A ``(m, size)`` array of a list column whose every row holds ``size`` numbers."""
    import pyarrow as pa

    if arr.null_count:
        raise _first_null(table, f, arr, start)
    m = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        offsets = np.arange(m + 1, dtype=np.int64) * arr.type.list_size
    else:
        offsets = to_numpy(arr.offsets).astype(np.int64)
        lengths = np.diff(offsets)
        bad = np.flatnonzero(lengths != size)
        if bad.size:
            i = int(bad[0])
            raise table.cell_error(start + i, f, f"holds {int(lengths[i])} values but the "
                                   f"first row holds {size}",
                                   hint="every row needs one value per class")
        offsets = offsets - offsets[0]
    values = arr.flatten()
    if values.null_count:
        k = int(np.flatnonzero(to_numpy(values.is_null()))[0])
        row = start + int(np.searchsorted(offsets, k, side="right") - 1)
        raise table.cell_error(row, f, "holds a missing (null) value",
                               hint="fill or drop the missing values")
    flat = to_numpy(values)
    if flat.size != m * size:
        raise InputFileError(table.path, f"the list column {f.name!r} holds {flat.size} "
                             f"values for {m} rows of {size}")
    return flat.reshape(m, size).astype(dtype, copy=False)


def index_block(table: Table, f: Field, arr: Any, start: int) -> np.ndarray:
    """Class indices as int64; floats must be whole (``2.0``), ints must fit int64."""
    arr = _decoded(arr)
    if arr.null_count:
        raise _first_null(table, f, arr, start)
    a = to_numpy(arr)
    found = index_problem(a)
    if found is not None:
        i, why = found
        raise table.cell_error(start + i, f, why, value=a[i], hint=INDEX_HINT)
    return a.astype(np.int64, copy=False)
