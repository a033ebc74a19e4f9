"""CSV and TSV text: one row per sample, one column per class (or one label per line).

pyarrow's CSV parser does the work, a few megabytes of whole lines at a time, with every
chosen column typed float64 so that a bad cell fails the read instead of turning the
column into text. When it fails, a plain Python scan of the file finds the line, column
and value to report; the scan runs only then (and for :meth:`CsvTable.line_of`), never
on the fast path.

Numbers are read as float64 (what ``numpy.loadtxt`` and pandas give); a one-column
targets file becomes int64 class indices (``2.0`` accepted, ``2.5`` refused).

The first line is a header when none of its cells is a number (or ``header=True``);
when one of its cells is a name (``1,2,3,label``); when it is pandas' header with an
index (an empty first cell, then numbers: ``,1,2,3``); or when it is ``0,1,...,C-1``
above rows of fractional numbers (pandas' header for unnamed columns; a note says so).
A first line of numbers with a bad cell is data, so the bad cell is an error. The
delimiter is ``,`` (``\t`` for ``.tsv``), or a tab or a single space when the first
line has no comma (``numpy.savetxt``'s default). Lines end in LF, CRLF or a lone CR. Blank lines are
skipped; errors name 1-based file lines.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from typing import IO, Any

from ..errors import InputFileError
from . import registry
from .base import Source
from .table import Field, Table, table_pair, table_source

#: what pyarrow's float parser accepts, after trimming spaces and tabs
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\Z",
                     re.IGNORECASE)

#: text handed to each of pyarrow's parses: whole lines, about this many bytes (8 MB
#: parsed ~10% faster than 4 or 16 MB here, and holds ~50 MB less than 32 MB)
PIECE_BYTES = 8 << 20

#: pyarrow's parse block (at least four of the longest lines seen): its streaming reader
#: holds ~35 blocks at once (read ahead, parsed, converted), and 1 MB keeps that near
#: 40 MB at the speed of larger ones
PARSE_BLOCK_BYTES = 1 << 20

#: the first lines are read in chunks of this size, up to HEAD_LIMIT
HEAD_CHUNK = 1 << 16
HEAD_LIMIT = 1 << 26


def is_number(cell: str) -> bool:
    return _NUMBER.match(cell.strip(" \t")) is not None


def read_csv(path: str, *, role: str, data: bytes | None = None, header: bool | None = None,
             delimiter: str | None = None, logits_columns: str | None = None,
             target_column: str | None = None, **_: object) -> Source:
    """A source over the CSV file ``path`` (``data``: its bytes, for stdin)."""
    table = CsvTable(path, data=data, header=header, delimiter=delimiter)
    return table_source(table, role, logits_columns=logits_columns,
                        target_column=target_column)


def read_tsv(path: str, *, role: str, **options: Any) -> Source:
    options.setdefault("delimiter", "\t")
    return read_csv(path, role=role, **options)


def read_csv_pair(path: str, *, target_column: str, logits_columns: str | None = None,
                  data: bytes | None = None, header: bool | None = None,
                  delimiter: str | None = None, **_: object) -> tuple[Source, Source]:
    """Logits and targets from one CSV file (see :func:`.table.table_pair`)."""
    table = CsvTable(path, data=data, header=header, delimiter=delimiter)
    return table_pair(table, target_column=target_column, logits_columns=logits_columns)


def read_tsv_pair(path: str, **options: Any) -> tuple[Source, Source]:
    options.setdefault("delimiter", "\t")
    return read_csv_pair(path, **options)


class CsvTable(Table):
    text = True

    def __init__(self, path: str, *, data: bytes | None = None, header: bool | None = None,
                 delimiter: str | None = None) -> None:
        self.path = path
        self.data = data
        self.n_rows = None
        self.notes: list[str] = []
        head, complete = self._head()
        kind = registry.sniff_binary(head)
        if kind is not None:
            fmt = f"{registry.get(kind).label} data" if kind != "binary" else "binary data"
            raise InputFileError(path, f"holds {fmt}, not CSV text",
                                 hint=_binary_hint(kind))
        # the line end: LF (or CRLF), or a lone CR (old Mac files, some exporters), which
        # pyarrow's parser takes too; pieces of the file are cut at it
        self.eol = b"\r" if b"\r" in head and b"\n" not in head else b"\n"
        lines = head.split(self.eol)
        if not complete:
            lines = lines[:-1]  # the last piece may be cut mid-line
        nonblank = [i for i, raw in enumerate(lines) if raw.strip(b"\r")]
        if not nonblank:
            raise InputFileError(path, "holds no data (only blank lines)")
        first = nonblank[0]
        line0 = _decode(lines[first], first == 0)
        self.delimiter = delimiter or _sniff_delimiter(line0)
        cells0 = _split(line0, self.delimiter)
        self.n_columns = len(cells0)
        numeric0 = all(is_number(c) for c in cells0)
        self.header = _is_header(cells0) if header is None else bool(header)
        if header is None and numeric0 and len(nonblank) > 1:
            cells1 = _split(_decode(lines[nonblank[1]], False), self.delimiter)
            if _column_numbers(cells0, cells1):
                self.header = True
                self.notes.append(
                    f"{'<stdin>' if path == '-' else path}: took line {first + 1} "
                    f"({','.join(c.strip() for c in cells0[:3])},...) for a header of column "
                    "numbers, as pandas writes; pass --no-header if it is data")
        if self.header:
            if len(nonblank) < 2:
                raise InputFileError(path, "has a header but no data rows",
                                     hint="write one row per sample below the header")
            self.skip = first + 1  # physical lines before the data, header included
            names = [c.strip() or f"Unnamed: {j}" for j, c in enumerate(cells0)]
            data_cells = _split(_decode(lines[nonblank[1]], False), self.delimiter)
        else:
            self.skip = 0
            names = [str(j + 1) for j in range(len(cells0))]
            data_cells = cells0
        self.data_start = 0  # the byte offset of the data: after the first `skip` lines
        for _ in range(self.skip):
            end = head.find(self.eol, self.data_start)
            self.data_start = len(head) if end < 0 else end + 1
        unique = len(set(names)) == len(names)
        self._labels: list[int | str] = [
            repr(n) if self.header and unique else j + 1 for j, n in enumerate(names)]
        self.fields = []
        import pyarrow as pa

        for j, name in enumerate(names):
            # a header names the columns, and the first row says which hold text (ids, paths);
            # without a header every column is data, and a bad cell is a located error
            cell = data_cells[j] if j < len(data_cells) else ""
            numeric = not self.header or is_number(cell) or not cell.strip()
            # every number is read as float64; a header naming an id column of whole
            # numbers ('id', 'sample_id') marks it as one, left out of the logits as
            # Parquet's integer columns are
            ident = self.header and numeric and bool(_ID_NAME.match(name.strip())) and \
                all(_INTEGER.match(c.strip()) for c in self._head_column(lines, nonblank, j))
            f = Field(name, pa.float64() if numeric else pa.string(), j,
                      kind="int" if ident else "float" if numeric else "other")
            f.display = repr(name) if self.header else f"column {j + 1}"
            self.fields.append(f)
        longest = max(len(raw) for raw in lines) if lines else 0
        self.block_size = max(PARSE_BLOCK_BYTES, 4 * longest)

    def _head_column(self, lines: list[bytes], nonblank: list[int], j: int) -> list[str]:
        """Column ``j``'s cells in the first data lines (up to :data:`ID_CHECK_LINES`)."""
        cells = []
        for i in nonblank[1:1 + ID_CHECK_LINES]:
            row = _split(_decode(lines[i], False), self.delimiter)
            cells.append(row[j] if j < len(row) else "")
        return cells

    # -- reading ----------------------------------------------------------------------------

    def _head(self) -> tuple[bytes, bool]:
        """The file's first bytes, enough for two non-blank lines; and whether that is all."""
        if self.data is not None:
            return self.data[:HEAD_LIMIT], len(self.data) <= HEAD_LIMIT
        try:
            with open(self.path, "rb") as fh:
                head = b""
                found = 0  # non-blank complete lines so far
                start = 0  # where the line being read starts
                while len(head) < HEAD_LIMIT:
                    chunk = fh.read(HEAD_CHUNK)
                    if not chunk:
                        return head, True
                    head += chunk
                    end = _line_end(head, start)
                    while end >= 0:  # a CR ends a line too (of a CRLF pair, a blank one)
                        found += bool(head[start:end].strip(b"\r"))
                        start = end + 1
                        end = _line_end(head, start)
                    if found >= 2:
                        return head, False
                return head, False
        except OSError as exc:
            raise InputFileError(self.path, f"cannot read the file ({exc.strerror or exc})") \
                from None

    def batches(self, fields: list[Field], rows: int) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        internal = [f"c{f.position}" for f in fields]
        names = [f"c{j}" for j in range(self.n_columns)]
        parse = pcsv.ParseOptions(delimiter=self.delimiter)
        convert = pcsv.ConvertOptions(
            # text columns are read as text: class names (readers/classes.py)
            column_types={n: pa.string() if f.kind == "other" else pa.float64()
                          for n, f in zip(internal, fields)}, include_columns=internal,
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False)
        # pyarrow's streaming reader parses one block at a time; read_csv parses the blocks
        # of a buffer on all cores, twice as fast, so the data goes to it in pieces of
        # whole lines. A quote may hide a line break, so from the first piece holding one
        # the streaming reader takes over, told to look for line breaks inside quotes.
        read = pcsv.ReadOptions(column_names=names, block_size=self.block_size)
        quoted_from = None
        try:
            with contextlib.closing(self._pieces(self.data_start)) as pieces:
                for offset, piece in pieces:
                    if b'"' in piece:
                        quoted_from = offset
                        break
                    table = pcsv.read_csv(pa.py_buffer(piece), read_options=read,
                                          parse_options=parse, convert_options=convert)
                    # one batch per piece: each costs a NumPy view per column downstream
                    yield from table.combine_chunks().to_batches()
            if quoted_from is not None:
                # newlines_in_values: else pyarrow cuts its blocks at any line break,
                # quoted or not, and a row broken across two blocks fails the read
                quoted = pcsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)
                with self._arrow_stream(quoted_from) as stream:
                    yield from pcsv.open_csv(stream, read_options=read, parse_options=quoted,
                                             convert_options=convert)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise self.locate(fields, exc) from None

    def _pieces(self, start: int) -> Iterator[tuple[int, bytes]]:
        """``(offset, text)``: the data from ``start`` on in pieces of whole lines, about
        :data:`PIECE_BYTES` each (more where a line is longer)."""
        if self.data is not None:
            size = len(self.data)
            while start < size:
                cut = self.data.find(self.eol, min(start + PIECE_BYTES, size) - 1)
                end = size if cut < 0 else cut + 1
                yield start, self.data[start:end]
                start = end
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(start)
                parts: list[bytes] = []  # read but not yet handed on: no line end yet
                while True:
                    more = fh.read(PIECE_BYTES)
                    if not more:
                        if parts:
                            yield start, b"".join(parts)
                        return
                    cut = more.rfind(self.eol) + 1
                    if not cut:
                        parts.append(more)  # a line longer than a piece: read on
                        continue
                    text = b"".join([*parts, more[:cut]]) if parts else more[:cut]
                    parts = [more[cut:]] if cut < len(more) else []
                    yield start, text
                    start += len(text)
        except OSError as exc:
            raise InputFileError(self.path, f"cannot read the file ({exc.strerror or exc})") \
                from None

    def _arrow_stream(self, offset: int) -> Any:
        import pyarrow as pa

        if self.data is not None:
            return pa.BufferReader(pa.py_buffer(self.data)[offset:])
        stream = pa.OSFile(self.path)
        stream.seek(offset)
        return stream

    # -- the slow path: find what pyarrow stumbled on ----------------------------------------

    @contextlib.contextmanager
    def _text(self) -> Iterator[IO[str]]:
        raw = io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")
        with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as fh:
            yield fh

    def data_rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, cells)`` of each data row: after the header, blank lines skipped."""
        with self._text() as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            try:
                for cells in reader:
                    if reader.line_num <= self.skip or not cells:
                        continue
                    yield reader.line_num, cells
            except csv.Error as exc:
                raise InputFileError(self.path, f"is not valid CSV ({exc})",
                                     line=reader.line_num) from None

    def locate(self, fields: list[Field], exc: BaseException) -> InputFileError:
        """The located error for what made pyarrow fail (a bad cell or a ragged row)."""
        for line, cells in self.data_rows():
            if len(cells) != self.n_columns:
                return InputFileError(
                    self.path, f"expected {self.n_columns} values, got {len(cells)}",
                    line=line, hint="every row needs one value per column")
            for f in fields:
                cell = cells[f.position]
                if not is_number(cell):
                    return self._bad_cell(line, f, cell)
        text = " ".join(str(exc).split())
        return InputFileError(self.path, f"cannot be read as CSV ({text})")

    def _bad_cell(self, line: int, f: Field, cell: str) -> InputFileError:
        column = self._labels[f.position]
        if not cell.strip():
            return InputFileError(self.path, "the value is missing (an empty cell)", line=line,
                                  column=column, hint="fill in every cell")
        if "\ufffd" in cell:  # what _text's errors="replace" made of bytes that are not UTF-8
            return InputFileError(self.path, f"{cell!r} is not a number (it holds bytes that "
                                  "are not UTF-8 text)", line=line, column=column,
                                  hint="save the file as UTF-8 text")
        hint = None
        if line == 1 and not self.header:
            hint = "if line 1 is a header, pass --header"
        elif self.header and f.kind == "other":
            hint = "pick the number columns with --logits-columns"
        return InputFileError(self.path, f"{cell!r} is not a number", line=line,
                              column=column, hint=hint)

    def line_of(self, row: int) -> int | None:
        for i, (line, _) in enumerate(self.data_rows()):
            if i == row:
                return line
        return None

    def cell_text(self, row: int, f: Field) -> str | None:
        for i, (_, cells) in enumerate(self.data_rows()):
            if i == row:
                return cells[f.position].strip(" \t") if f.position < len(cells) else None
        return None

    def column_label(self, f: Field) -> int | str:
        return self._labels[f.position]

    def index_names(self) -> set[str]:
        if not self.header:
            return set()
        return {f.name for f in self.fields if f.name == "Unnamed: 0"}


_INTEGER = re.compile(r"[+-]?\d+\Z")
_EOL = re.compile(rb"[\r\n]")

#: cells that are values, not column names, though not numbers: pandas' missing-value
#: markers and booleans (a first line holding them is data with a bad cell)
_VALUE_WORDS = {"", "-", "?", ".", "na", "n/a", "#n/a", "#na", "<na>", "null", "none",
                "nil", "true", "false"}


#: data lines whose cells must all be whole numbers for a column named like an id to be one
ID_CHECK_LINES = 1000

#: header names of id columns
_ID_NAME = re.compile(r"(?i)^(id|idx|index|uid|.*[_ .-](id|idx))$")

#: a header cell: holds a letter or an underscore
_NAME = re.compile(r"[^\W\d]|_")


def _line_end(buf: bytes, start: int) -> int:
    m = _EOL.search(buf, start)
    return m.start() if m else -1


def _is_header(cells: list[str]) -> bool:
    """Is a first line a header (when not told)? When none of its cells is a number; when
    a cell is a name (it holds a letter or '_' and is not a value word such as 'NA' or
    'TRUE'): ``1,2,3,label``, pandas' ``,a,b`` or a frame's numeric column names beside
    'label'; or when its first cell is empty and the rest are numbers (pandas' header
    with an index, ``,1,2,3``). A line of numbers with a bad cell (empty, 'NA', 'TRUE',
    '-', bytes that are not UTF-8) is data, so the bad cell is reported, not taken for a
    name."""
    cells = [c.strip(" \t") for c in cells]
    numbers = [c for c in cells if is_number(c)]
    if not numbers:  # names; but a line of empty cells is data with missing values
        return any(cells)
    if any(_NAME.search(c) and c.lower() not in _VALUE_WORDS and "\ufffd" not in c
           for c in cells if not is_number(c)):
        return True
    return len(cells) > 1 and cells[0] == "" and len(numbers) == len(cells) - 1


def _column_numbers(cells: list[str], following: list[str]) -> bool:
    """Is the first row ``0,1,...,C-1`` the header pandas writes for a frame of unnamed
    columns (``pd.DataFrame(x).to_csv(index=False)``), rather than data? Only when the
    next row holds numbers that are not all whole: integer rows such as ``0,1`` or
    ``0,1,2`` (one-hot targets, toy logits) stay data. Integer class names (``1,2,3``,
    as pandas writes a frame whose columns are a model's integer classes) are a header too
    when they are distinct whole numbers over a row of fractions in [0, 1]
    (probabilities)."""
    got = [c.strip() for c in cells]
    if len(got) < 2 or len(following) != len(got) or \
            not all(is_number(c) for c in following) or \
            all(_INTEGER.match(c.strip()) for c in following):
        return False
    if got == [str(j) for j in range(len(got))]:
        return True
    if not all(_INTEGER.match(c) for c in got) or len(set(int(c) for c in got)) < len(got):
        return False
    return all(0.0 <= float(c) <= 1.0 for c in following)


def _decode(raw: bytes, first: bool) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    return text[1:] if first and text.startswith("\ufeff") else text


def _split(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return line.split(delimiter)


def _sniff_delimiter(line: str) -> str:
    """',' unless the first line has no comma but tabs (TSV) or single spaces (savetxt)."""
    if "," in line:
        return ","
    if "\t" in line:
        return "\t"
    if " " in line.strip():
        return " "
    return ","


def _binary_hint(kind: str) -> str:
    """What to do about a text file holding ``kind`` data (a format's name, or "binary")."""
    if kind != "binary":
        suffix = registry.get(kind).suffix
        return f"name it with {suffix}, or pass the format (e.g. --logits-format {kind})"
    return f"save logits and labels as {registry.save_advice()}"
