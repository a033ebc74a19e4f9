"""Class names: string (categorical) labels matched to the classes 0..C-1, block by block.

A table's target column of strings (or a dictionary-encoded one: a pandas categorical)
holds class *names*. Which name is class 0, 1, ... is decided once, before any block is
read (:func:`bind`):

- ``--classes cat,dog,bird`` (scikit-learn's ``classes_`` order) when given; it wins over
- the logits' column names (a CSV header ``cat,dog,bird``, Parquet columns ``cat``,
  ``dog``, ``bird``): the selected logits columns, in their order, are the classes.

With neither (logits in a list column or an array file) string labels are an error that
says to pass ``--classes``. Integer labels are class indices as before; the names then
only label the output (when ``--classes`` is given).

Labels are mapped with ``pyarrow.compute.index_in`` per block (a dictionary-encoded
column maps its dictionary once per block and looks the codes up in NumPy), so no Python
loop runs over the rows. This module imports no other reader module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputFileError, UsageError

CLASSES_HINT = "pass --classes in your model's order"


class Labels:
    """The names a source of string labels maps, set by :func:`bind` before reading (on
    every shard's labels too, for sharded tables: ``parts``)."""

    def __init__(self, parts: list[Labels] | None = None) -> None:
        self._names: list[str] | None = None
        self._value_set: Any = None
        self.parts = parts or []

    @property
    def names(self) -> list[str] | None:
        return self._names

    @names.setter
    def names(self, names: list[str] | None) -> None:
        self._names, self._value_set = names, None
        for part in self.parts:
            part.names = names

    def value_set(self) -> Any:
        import pyarrow as pa

        if self._value_set is None:
            self._value_set = pa.array(self.names or [], pa.string())
        return self._value_set


def parse_classes(text: str | None) -> list[str] | None:
    """``"cat,dog,bird"`` -> ``["cat", "dog", "bird"]`` (None when not given)."""
    if text is None:
        return None
    names = [v.strip() for v in text.split(",")]
    if not names or any(not n for n in names):
        raise UsageError(f"{text!r} is not a comma-separated list of class names "
                         "(e.g. cat,dog,bird)", option="--classes")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"--classes names {', '.join(map(repr, dup))} more than once; "
                         "give each class once, in your model's order", option="--classes")
    return names


def is_label_type(t: Any) -> bool:
    """Does a column of Arrow type ``t`` hold class names (strings, or categories of them)?"""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def column_names(table: Any, fields: list[Any]) -> list[str] | None:
    """The logits columns' names as class names (None for a CSV without a header)."""
    if not getattr(table, "header", True):
        return None
    return [str(f.name) for f in fields]


def bind(classes: str | None, xs: Any, ts: Any) -> list[str] | None:
    """Decide the class names of a run once: ``--classes``, else the logits' column names;
    give them to a source of string labels. Returns the names the report shows (None
    when the labels are indices and no ``--classes`` was given: the output stays as it
    was)."""
    given = parse_classes(classes)
    names = given or getattr(xs, "column_names", None)
    labels = getattr(ts, "labels", None)
    if labels is not None:
        if names is None:
            raise InputFileError(ts.path, "the targets are class names (strings), but the "
                                 "logits' classes have no names (a list column or an "
                                 "array)", hint="pass --classes NAME,NAME,... in your "
                                 "model's order (scikit-learn's classes_)")
        labels.names = names
        return names
    return given


def _ints(arr: Any) -> np.ndarray:
    """An integer pyarrow Array without nulls as NumPy (a view)."""
    import pyarrow as pa

    t = arr.type
    kind = "i" if pa.types.is_signed_integer(t) else "u"
    dtype = np.dtype(f"{kind}{t.bit_width // 8}")
    if len(arr) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr),
                         offset=arr.offset * dtype.itemsize)


def label_block(table: Any, f: Any, arr: Any, start: int, labels: Labels) -> np.ndarray:
    """The class indices of a block of string labels (``table`` locates a bad one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = labels.names
    if names is None:
        raise InputFileError(table.path, f"the target column {f.describe()} holds class "
                             "names, not indices", hint=CLASSES_HINT)
    if arr.null_count:
        mask = np.asarray(arr.is_null().to_pylist(), dtype=bool)
        raise table.cell_error(start + int(np.flatnonzero(mask)[0]), f,
                               "is missing (null)", hint="fill or drop the missing values")
    if pa.types.is_dictionary(arr.type):
        found = pc.index_in(arr.dictionary.cast(pa.string()), value_set=labels.value_set())
        lookup = _ints(found.fill_null(-1)).astype(np.int64)
        out = lookup[_ints(arr.indices)]
    else:
        arr = arr.cast(pa.string())
        if getattr(table, "text", False):  # a CSV cell ' cat' names 'cat'
            arr = pc.utf8_trim(arr, " \t")
        found = pc.index_in(arr, value_set=labels.value_set())
        out = _ints(found.fill_null(-1)).astype(np.int64)
    bad = np.flatnonzero(out < 0)
    if bad.size:
        i = int(bad[0])
        raise table.cell_error(start + i, f, "is not one of the classes "
                               f"{', '.join(names)}", value=arr[i].as_py(), hint=CLASSES_HINT)
    return out

