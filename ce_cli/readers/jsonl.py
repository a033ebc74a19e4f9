"""JSON Lines (``.jsonl``, ``.ndjson``, and JSON text on standard input): one object
per line, such as ``{"logits": [0.1, 2.3, -1.0], "label": 2}`` or one number per class
(``{"cat": 0.1, "dog": 0.7, "label": 1}``).

pyarrow's streaming JSON reader does the work, one block of :data:`BLOCK_BYTES` at a
time, so a big file is read in bounded memory. The fields are those of the objects in
the first block, typed as pyarrow infers them there; the chosen fields are then read
with an explicit schema (every number as float64, lists as lists of float64), so a
field that holds ``1`` on one line and ``0.5`` on another reads as it should, and other
fields are skipped. A line longer than a block makes the block grow (the rows already
handed on are not handed on again).

When pyarrow fails (a line that is not JSON, not an object, a field of the wrong type),
a plain Python scan of the file finds the 1-based line and says what is wrong with it;
the scan runs only then (and for :meth:`JsonlTable.line_of`), never on the fast path.
Blank lines are skipped; rows are the non-blank lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from typing import IO, Any

from ..errors import InputFileError
from . import registry
from .arrowio import arrow_errors, read_head
from .base import Source
from .table import Field, Table, classify, table_pair, table_source

#: bytes of JSON text pyarrow parses at once (its rows are one record batch)
BLOCK_BYTES = 1 << 20

#: the largest block tried for a file whose lines are longer than a block
MAX_BLOCK_BYTES = 1 << 30

#: the longest text of a value shown in a message
SHOWN_CHARS = 60


def read_jsonl(path: str, *, role: str, data: bytes | None = None,
               logits_columns: str | None = None, target_column: str | None = None,
               **_: object) -> Source:
    """A source over the JSON Lines file ``path`` (``data``: its bytes, for stdin)."""
    table = JsonlTable(path, data=data)
    return table_source(table, role, logits_columns=logits_columns,
                        target_column=target_column)


def read_jsonl_pair(path: str, *, target_column: str, logits_columns: str | None = None,
                    data: bytes | None = None, **_: object) -> tuple[Source, Source]:
    """Logits and targets from one JSON Lines file (see :func:`.table.table_pair`)."""
    return table_pair(JsonlTable(path, data=data), target_column=target_column,
                      logits_columns=logits_columns)


class JsonlTable(Table):
    text = True

    def __init__(self, path: str, *, data: bytes | None = None) -> None:
        import pyarrow as pa

        self.path = path
        self.data = data
        self.n_rows = None
        self.notes: list[str] = []
        self.block_size = BLOCK_BYTES
        head = data[:4096] if data is not None else read_head(path, 4096)
        kind = registry.sniff_binary(head)
        if kind is not None:
            fmt = f"{registry.get(kind).label} data" if kind != "binary" else "binary data"
            hint = (f"name it with {registry.get(kind).suffix}, or pass the format"
                    if kind != "binary" else "write one JSON object per line")
            raise InputFileError(path, f"holds {fmt}, not JSON Lines text", hint=hint)
        while True:
            try:
                with self._reader(None) as reader:
                    schema = reader.schema
                break
            except arrow_errors() as exc:
                if self._grow(exc):
                    continue
                raise self.locate([], exc) from None
        self.fields = []
        for j, f in enumerate(schema):
            kind, size = classify(f.type)
            if kind in ("int", "float"):
                read = pa.float64()  # 1 on one line and 0.5 on another: both numbers
            elif kind == "list":
                read = pa.list_(pa.float64())
            else:
                read = f.type
            field = Field(f.name, read, j, kind=kind, list_size=size)
            field.display = repr(f.name)
            self.fields.append(field)

    # -- reading ----------------------------------------------------------------------------

    def _source(self) -> Any:
        import pyarrow as pa

        return pa.BufferReader(self.data) if self.data is not None else pa.OSFile(self.path)

    @contextlib.contextmanager
    def _reader(self, schema: Any) -> Iterator[Any]:
        """pyarrow's streaming reader: of ``schema``'s fields (None: every field, typed as
        the first block says); it and the file are closed after."""
        import pyarrow.json as pj

        read = pj.ReadOptions(use_threads=False, block_size=self.block_size)
        parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore") \
            if schema is not None else pj.ParseOptions()
        with contextlib.closing(self._source()) as source, \
                contextlib.closing(pj.open_json(source, read_options=read,
                                                parse_options=parse)) as reader:
            yield reader

    def _grow(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a line longer than a block, now given a bigger block."""
        if "straddl" not in str(exc) or self.block_size >= MAX_BLOCK_BYTES:
            return False
        self.block_size *= 4
        return True

    def batches(self, fields: list[Field], rows: int) -> Iterator[Any]:
        """Record batches of ``fields``: one per block of :data:`BLOCK_BYTES` (``rows``
        does not apply: a block of text holds whatever lines fit)."""
        import pyarrow as pa

        schema = pa.schema([pa.field(f.name, f.type) for f in fields])
        done = 0  # rows handed on: a read started again with a bigger block skips them
        while True:
            skip = done
            try:
                with self._reader(schema) as reader:
                    for batch in reader:
                        if skip:
                            if batch.num_rows <= skip:
                                skip -= batch.num_rows
                                continue
                            batch, skip = batch.slice(skip), 0
                        if batch.num_rows:
                            done += batch.num_rows
                            yield batch
                return
            except arrow_errors() as exc:
                if self._grow(exc):
                    continue
                raise self.locate(fields, exc, done) from None

    # -- the slow path: find what pyarrow stumbled on ----------------------------------------

    @contextlib.contextmanager
    def _lines(self) -> Iterator[IO[bytes]]:
        if self.data is not None:
            yield io.BytesIO(self.data)
            return
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise InputFileError(self.path, f"cannot read the file ({exc.strerror or exc})") \
                from None
        with fh:
            yield fh

    def rows(self) -> Iterator[tuple[int, bytes]]:
        """``(line, text)`` of each non-blank line (lines are 1-based)."""
        with self._lines() as fh:
            for line, raw in enumerate(fh, 1):
                if line == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if raw.strip():
                    yield line, raw

    def locate(self, fields: list[Field], exc: BaseException, good: int = 0,
               ) -> InputFileError:
        """The located error for what made pyarrow fail (the first ``good`` rows were
        read: their fields are not checked again)."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if "Empty JSON stream" in text:
            return InputFileError(self.path, "holds no data (only blank lines)",
                                  hint="write one JSON object per line")
        any_line = False
        seen: dict[str, tuple[str, int]] = {}  # field -> (its JSON type, the line)
        for i, (line, raw) in enumerate(self.rows()):
            any_line = True
            if i < good:
                continue
            found = self._problem(raw, fields) or (self._mixed(raw, line, seen)
                                                   if not fields else None)
            if found is not None:
                problem, column, hint = found
                return InputFileError(self.path, problem, line=line, column=column,
                                      hint=hint)
        if not any_line:
            return InputFileError(self.path, "holds no data (only blank lines)",
                                  hint="write one JSON object per line")
        if "straddl" in text:
            return InputFileError(self.path, f"has a line longer than {MAX_BLOCK_BYTES} "
                                  "bytes", hint="write one JSON object per line")
        return InputFileError(self.path, f"cannot be read as JSON Lines ({text[:200]})")

    def _problem(self, raw: bytes, fields: list[Field],
                 ) -> tuple[str, str | None, str | None] | None:
        """What is wrong with one line, for the fields read: (problem, column, hint)."""
        try:
            value = json.loads(raw, parse_float=_finite)
        except (ValueError, RecursionError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            if isinstance(exc, UnicodeDecodeError):
                why = "it holds bytes that are not UTF-8 text"
            return (f"is not valid JSON ({why})", None,
                    "write one JSON object per line")
        if not isinstance(value, dict):
            what = _a(_json_type(value))
            hint = ("a JSON array of objects is not JSON Lines: write one object per line"
                    if isinstance(value, list) else "write one JSON object per line")
            return f"holds {what}, not a JSON object", None, hint
        for f in fields:
            cell = value.get(f.name)
            shown = _shown(cell)
            if f.kind in ("int", "float"):
                if not _is_number(cell) and cell is not None:
                    return (f"{shown} is not a number", repr(f.name), None)
            elif f.kind == "bool":
                if not isinstance(cell, bool) and cell is not None:
                    return (f"{shown} is not true or false", repr(f.name), None)
            elif f.kind == "list":
                if cell is None:
                    continue
                if not isinstance(cell, list):
                    return (f"{shown} is not a list of numbers", repr(f.name),
                            "every row needs one value per class")
                bad = next((v for v in cell if not _is_number(v) and v is not None), None)
                if bad is not None:
                    return (f"{shown} holds {_shown(bad)}, not a number", repr(f.name), None)
        return None

    @staticmethod
    def _mixed(raw: bytes, line: int, seen: dict[str, tuple[str, int]],
               ) -> tuple[str, str | None, str | None] | None:
        """A value whose JSON type differs from the one at the same place (field, list
        item, nested field) on an earlier line: the types pyarrow infers from the first
        block must agree. Null goes with any type."""
        obj = json.loads(raw)
        for name, cell in obj.items():
            for key, v in _places(name, cell):
                kind = _json_type(v)
                if kind == "null":
                    continue
                first = seen.setdefault(key, (kind, line))
                if first[0] != kind:
                    inside = "" if key == name else f" in {_shown(cell)}"
                    where = "this line" if first[1] == line else f"line {first[1]}"
                    return (f"{_shown(v)}{inside} is {_a(kind)}, but {where} holds "
                            f"{_a(first[0])} there", repr(name),
                            "give each field the same type on every line")
        return None

    def cell_error(self, row: int, f: Field, problem: str, *, value: Any = None,
                   hint: str | None = None) -> InputFileError:
        """As :meth:`.Table.cell_error`, but a field missing from its line or null there
        is said to be so."""
        found = self._row(row)
        if found is not None and isinstance(found[1], dict) and found[1].get(f.name) is None:
            line, obj = found
            what = "is null" if f.name in obj else "is missing (the line has no such field)"
            return InputFileError(self.path, f"the field {f.name!r} {what}", line=line,
                                  hint="give every line a value for each field read")
        return super().cell_error(row, f, problem, value=value, hint=hint)

    def _row(self, row: int) -> tuple[int, Any] | None:
        """``(line, parsed JSON)`` of data row ``row`` (None: no such row, or not JSON)."""
        for i, (line, raw) in enumerate(self.rows()):
            if i == row:
                try:
                    return line, json.loads(raw)
                except ValueError:
                    return None
        return None

    def line_of(self, row: int) -> int | None:
        for i, (line, _) in enumerate(self.rows()):
            if i == row:
                return line
        return None

    def cell_text(self, row: int, f: Field) -> str | None:
        found = self._row(row)
        if found is None or not isinstance(found[1], dict):
            return None
        return _shown(found[1].get(f.name), quote=False)


def _finite(text: str) -> float:
    """A JSON number as a float; refused when it overflows float64 (pyarrow refuses it)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large for float64")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _places(key: str, value: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """``(place, value)`` for ``value`` and what it holds: a list's items are at
    ``key[]``, an object's fields at ``key/name``."""
    yield key, value
    if depth > 32:
        return
    if isinstance(value, list):
        for item in value:
            yield from _places(key + "[]", item, depth + 1)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _places(f"{key}/{name}", item, depth + 1)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    return "number"


def _shown(value: Any, quote: bool = True) -> str:
    """``value`` as JSON text, cut to :data:`SHOWN_CHARS` (repr'd when ``quote``)."""
    text = json.dumps(value)
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS - 3] + "..."
    return repr(text) if quote else text
