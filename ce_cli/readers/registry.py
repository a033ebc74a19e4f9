"""The formats ce-loss reads and writes: one :class:`Format` row each, in :data:`FORMATS`.

Everything that depends on the format asks this table: which format a suffix or a
``--logits-format`` name means, which format standard input holds (told by magic
bytes), the "this looks like a binary X file" hints, which suffixes ``-o`` and
``--softmax`` write, which files of a folder are shards, and which formats take
``file:NAME``.

Readers and writers are named as ``"module:function"`` and imported on first use
(:func:`load`), so importing this module imports neither NumPy nor pyarrow.

Adding a format is one row here plus one module holding its reader (a function
``(path, *, role, data=None, member=None, **options) -> Source``) and, if one file can
hold both the logits and the targets, its ``pair`` function (``(path, *, target_column,
logits_columns=None, data=None, header=None, member=None) -> (Source, Source)``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Magic:
    """Bytes every file of a format holds at ``offset``. Where two formats share one (a
    zip file, say), the first row in :data:`FORMATS` is the one sniffed; the other is told
    by its suffix or by name."""

    data: bytes
    offset: int = 0

    def found_in(self, head: bytes) -> bool:
        return head[self.offset:self.offset + len(self.data)] == self.data


@dataclass(frozen=True)
class Format:
    """One format: how it is recognised, read and written."""

    #: what ``--logits-format`` takes (a suffix without its dot works too)
    name: str
    #: how messages name its data: "holds NPY data"
    label: str
    #: lower case, with the dot; the first is the one messages suggest
    suffixes: tuple[str, ...]
    #: "module:function" returning a Source
    reader: str
    #: any one of these starts a file of the format (none: text, told by suffix alone)
    magics: tuple[Magic, ...] = ()
    #: named columns: ``--logits-columns`` applies, and output is one column per value
    table: bool = False
    #: "module:function" reading logits and targets from one file (``--target-column``)
    pair: str | None = None
    #: ``file:NAME`` picks one array of a file
    members: bool = False
    #: what one file is called where ``file:NAME`` is explained ("a .npz archive")
    noun: str = "file"
    #: can be piped in on standard input
    stdin: bool = True
    #: "module:function" ``(path, columns, main)`` writing ``-o``/``--softmax`` output
    writer: str | None = None

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    def starts(self, head: bytes) -> bool:
        return any(m.found_in(head) for m in self.magics)


_R = "ce_cli.readers."
_W = "ce_cli.writers:"

FORMATS: tuple[Format, ...] = (
    Format("npy", "NPY", (".npy",), _R + "npy:read_npy",
           magics=(Magic(b"\x93NUMPY"),), writer=_W + "save_npy"),
    Format("npz", "NPZ", (".npz",), _R + "npz:read_npz",
           magics=(Magic(b"PK\x03\x04"),), members=True, noun="archive",
           pair=_R + "npz:read_npz_pair"),
    # torch.save's zip format (torch >= 1.6): a zip like .npz, whose row comes first, so a
    # .pt piped to stdin is sniffed as .npz, and that reader says to pass --logits-format pt;
    # read from stdin from memory; the logits and targets of one file are told by name
    Format("pt", "PyTorch", (".pt", ".pth"), _R + "pt:read_pt",
           magics=(Magic(b"PK\x03\x04"),), pair=_R + "pt:read_pt_pair", members=True,
           noun="file", stdin=True),
    Format("csv", "CSV", (".csv",), _R + "text:read_csv",
           table=True, pair=_R + "text:read_csv_pair", writer=_W + "save_csv"),
    Format("tsv", "TSV", (".tsv",), _R + "text:read_tsv",
           table=True, pair=_R + "text:read_tsv_pair", writer=_W + "save_tsv"),
    Format("parquet", "PARQUET", (".parquet",), _R + "parquet:read_parquet",
           magics=(Magic(b"PAR1"),), table=True,
           pair=_R + "parquet:read_parquet_pair", writer=_W + "save_parquet"),
    Format("arrow", "ARROW", (".arrow", ".feather", ".ipc"), _R + "arrow:read_arrow",
           # the IPC file format (Feather v2), Feather v1, and an IPC stream's first
           # continuation marker
           magics=(Magic(b"ARROW1"), Magic(b"FEA1"), Magic(b"\xff\xff\xff\xff")),
           table=True, pair=_R + "arrow:read_arrow_pair", writer=_W + "save_arrow"),
    Format("safetensors", "SAFETENSORS", (".safetensors",), _R + "safetensors:read_safetensors",
           # an 8-byte little-endian header length (under 2**32: four zero bytes), then
           # the JSON header's "{"; text holds no NUL byte, so CSV or JSON is never taken
           magics=(Magic(b"\x00\x00\x00\x00{", offset=4),), members=True,
           noun="file", pair=_R + "safetensors:read_safetensors_pair"),
    # through h5py (an optional extra), which needs a file: never read from stdin
    Format("hdf5", "HDF5", (".h5", ".hdf5", ".hdf"), _R + "hdf5:read_hdf5",
           magics=(Magic(b"\x89HDF\r\n\x1a\n"),), members=True, noun="file",
           stdin=False, pair=_R + "hdf5:read_hdf5_pair"),
    Format("jsonl", "JSONL", (".jsonl", ".ndjson"), _R + "jsonl:read_jsonl",
           table=True, pair=_R + "jsonl:read_jsonl_pair"),
)

#: what standard input holding no known magic and no NUL byte is read as
STDIN_TEXT = "csv"

#: what such text is read as when its first non-blank byte is "{" (JSON objects)
STDIN_JSON = "jsonl"


def sniff_text(head: bytes) -> str:
    """The format of text ``head``: :data:`STDIN_JSON` when it starts with ``{`` (after a
    UTF-8 BOM and white space), else :data:`STDIN_TEXT`."""
    return STDIN_JSON if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{" \
        else STDIN_TEXT

# lookups read FORMATS each time (six rows): a test may patch the table alone


def get(name: str) -> Format:
    """The format called ``name`` (one of :func:`names`)."""
    found = next((f for f in FORMATS if f.name == name), None)
    if found is None:
        raise KeyError(name)
    return found


def names() -> list[str]:
    return sorted(f.name for f in FORMATS)


def suffixes() -> dict[str, str]:
    """Every suffix read, and the name of its format."""
    return {s: f.name for f in FORMATS for s in f.suffixes}


def by_suffix(suffix: str) -> Format | None:
    suffix = suffix.lower()
    return next((f for f in FORMATS if suffix in f.suffixes), None)


def named(fmt: str) -> Format | None:
    """The format ``--logits-format fmt`` means: a name or a suffix (``feather``, ``.npy``),
    in any case; None for neither."""
    name = fmt.lower().lstrip(".")
    return by_suffix("." + name) or next((f for f in FORMATS if f.name == name), None)


def sniff_binary(head: bytes) -> str | None:
    """The format whose magic ``head`` starts with, "binary" for other data holding a NUL
    byte, else None (text)."""
    for f in FORMATS:
        if f.starts(head):
            return f.name
    if b"\x00" in head[:4096]:
        return "binary"
    return None


def _either(items: list[str]) -> str:
    *others, last = items
    return f"{', '.join(others)} or {last}" if others else last


def _text() -> str:
    return f"{get(STDIN_TEXT).label} text"


def stdin_advice() -> str:
    """What standard input can hold, for hints: ".npy, .npz, ... or CSV text"."""
    return _either([f.suffix for f in FORMATS if f.stdin and f.magics] + [_text()])


def save_advice() -> str:
    """What to save data as, for hints: "CSV text" and every binary format written."""
    return _either([_text()] + [f.suffix for f in FORMATS if f.magics and f.writer])


def table_advice() -> str:
    """What to save a table as, for hints: the binary table formats written, then text."""
    return _either([f.suffix for f in FORMATS if f.table and f.writer and f.magics]
                   + [get(STDIN_TEXT).suffix])


def member_suffixes() -> tuple[str, ...]:
    """Suffixes of the files that take ``file:NAME``."""
    return tuple(s for f in FORMATS if f.members for s in f.suffixes)


def member_files() -> str:
    """What takes ``file:NAME``, for messages: "a .npz archive"."""
    return " or ".join(f"a {f.suffix} {f.noun}" for f in FORMATS if f.members)


def member_hint() -> str:
    kinds = [f"{f.suffix} {f.noun}s" for f in FORMATS if f.members]
    listed = ", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]
    return f"only {listed} take ':NAME' to pick an array"


def writer_suffixes() -> dict[str, Format]:
    """Every suffix written (``-o``, ``--softmax``), and its format."""
    return {s: f for f in FORMATS if f.writer is not None for s in f.suffixes}


def load(ref: str) -> Any:
    """The function ``"package.module:name"`` names, its module imported if not yet."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
