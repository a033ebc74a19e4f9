"""safetensors files (Hugging Face): the only tensor, or the one named by
``file.safetensors:NAME``; and the logits and targets of one file by their names.

The format: 8 bytes holding ``N`` (a little-endian u64), ``N`` bytes of UTF-8 JSON
(``{"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
"__metadata__": {...}}``, offsets counted from the byte after the header), then the
tensors' bytes, little-endian, in C order. A tensor is memory-mapped and read a row
block at a time; BF16 is read as its raw 16 bits and widened to float32 block by block
(exactly: a bfloat16 is the top half of a float32).

Every problem, from a header length past the end of the file to tensors that overlap,
is one :class:`InputFileError` line. Nothing here imports the ``safetensors`` package.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import IO

import numpy as np

from ..errors import InputFileError
from . import base
from .base import Source, array_source, buffered_blocks, widened_blocks
from .conventions import choose_pair, example_member, member_hint, pair_hint, taken_note
from .validate import check_numeric

WHAT = ".safetensors file"
#: the longest header read: the safetensors reference implementation's own limit
MAX_HEADER_BYTES = 100_000_000
#: safetensors dtype -> the NumPy dtype its bytes are read as (BF16: raw bits, widened)
DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "U16": "<u2",
          "F16": "<f2", "BF16": "<u2", "I32": "<i4", "U32": "<u4", "F32": "<f4",
          "I64": "<i8", "U64": "<u8", "F64": "<f8"}
#: dtypes of the format that NumPy cannot hold: their bits each, and what they are
UNREAD = {"F4": (4, "4-bit floats"), "F6_E2M3": (6, "6-bit floats"),
          "F6_E3M2": (6, "6-bit floats"), "F8_E5M2": (8, "8-bit floats"),
          "F8_E4M3": (8, "8-bit floats"), "F8_E8M0": (8, "8-bit floats"),
          "C64": (64, "complex numbers")}


@dataclass(frozen=True)
class Entry:
    """One tensor of the header: its dtype (the format's name), shape and byte range
    (absolute: from the start of the file)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def count(self) -> int:
        n = 1
        for d in self.shape:  # Python ints: no overflow for absurd shapes
            n *= d
        return n


def bits_of(dtype: str) -> int | None:
    """Bits per value of a safetensors dtype; None for a name the format does not have."""
    if dtype in DTYPES:
        return 8 * np.dtype(DTYPES[dtype]).itemsize
    return UNREAD[dtype][0] if dtype in UNREAD else None


def read_header(fh: IO[bytes], path: str, size: int) -> dict[str, Entry]:
    """The tensors of the file at ``fh`` (``size`` bytes), by name, in header order, each
    checked: a well-formed entry, a byte range inside the file that fits its shape and
    dtype, and no two ranges overlapping."""
    lead = fh.read(8)
    if len(lead) < 8:
        raise InputFileError(path, f"the {WHAT} is truncated: it ends inside its header "
                             f"length (8 bytes, and the file holds {len(lead)})",
                             hint="copy or save the file again")
    n = int.from_bytes(lead, "little")
    if n > MAX_HEADER_BYTES:
        raise _damaged(path, f"it says it is {n} bytes long, and safetensors reads headers "
                       f"of at most {MAX_HEADER_BYTES}")
    if 8 + n > size:
        raise InputFileError(path, f"the {WHAT} is truncated: it ends inside its header "
                             f"({n} bytes long, and {size - 8} bytes follow the length)",
                             hint="copy or save the file again")
    raw = fh.read(n)
    if len(raw) < n:
        raise InputFileError(path, f"the {WHAT} is truncated: it ends inside its header",
                             hint="copy or save the file again")
    header = _parse(raw, path)
    start = 8 + n
    entries = {name: _entry(name, value, path, start)
               for name, value in header.items() if name != "__metadata__"}
    for e in entries.values():
        if e.end > size:
            raise InputFileError(path, f"the {WHAT} is truncated or its header damaged: the "
                                 f"tensor {e.name!r} ends at byte {e.end} and the file holds "
                                 f"{size} bytes", hint="copy or save the file again")
    ranges = sorted((e for e in entries.values() if e.end > e.begin),
                    key=lambda e: (e.begin, e.end))
    for a, b in zip(ranges, ranges[1:]):
        if b.begin < a.end:
            raise _damaged(path, f"the tensors {a.name!r} and {b.name!r} overlap (bytes "
                           f"{a.begin - start}..{a.end - start} and "
                           f"{b.begin - start}..{b.end - start} of the data)")
    return entries


def _parse(raw: bytes, path: str) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "it is not UTF-8 text") from None
    shown = " ".join(text.split())
    shown = repr(shown if len(shown) <= 60 else shown[:57] + "...")

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise _damaged(path, f"it names {key!r} twice")
            seen[key] = value
        return seen

    try:
        header = json.loads(text, object_pairs_hook=no_duplicates)
    except InputFileError:  # a name given twice
        raise
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"it is not JSON ({exc.msg} at character {exc.pos}): {shown}") \
            from None
    except (ValueError, RecursionError, MemoryError):  # absurd numbers, deep nesting
        raise _damaged(path, f"it is not JSON the format allows: {shown}") from None
    if not isinstance(header, dict):
        raise _damaged(path, f"it is not a JSON object: {shown}")
    return header


def _entry(name: str, value: object, path: str, start: int) -> Entry:
    """The checked entry ``name: value`` of the header; ``start``: where the data begins."""
    def bad(why: str) -> InputFileError:
        return _damaged(path, f"the tensor {name!r} {why}")

    if not isinstance(value, dict):
        raise bad("is not described by a JSON object")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in value]
    if missing:
        raise bad(f"has no {' or '.join(repr(k) for k in missing)}")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str):
        raise bad(f"has the dtype {dtype!r}, not a name such as \"F32\"")
    if not isinstance(shape, list) or not all(_whole(d) for d in shape):
        raise bad(f"has the shape {shape!r}, not a list of whole numbers")
    if any(d < 0 for d in shape):
        raise bad(f"has the shape {shape!r}, with a negative size")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_whole, offsets)):
        raise bad(f"has the data_offsets {offsets!r}, not two whole numbers [begin, end]")
    begin, end = offsets
    if begin < 0 or end < 0:
        raise bad(f"has the negative data_offsets {offsets!r}")
    if begin > end:
        raise bad(f"has the data_offsets {offsets!r}, which end before they begin")
    e = Entry(name, dtype, tuple(shape), start + begin, start + end)
    bits = bits_of(dtype)
    if bits is not None and e.count * bits != 8 * (end - begin):
        raise bad(f"has the shape {shape} of {dtype} ({_bytes(e.count * bits)}) but its "
                  f"data_offsets {offsets} hold {end - begin} bytes")
    return e


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bytes(bits: int) -> str:
    return f"{bits // 8} bytes" if bits % 8 == 0 else f"{bits / 8} bytes"


def _damaged(path: str, why: str) -> InputFileError:
    return InputFileError(path, f"the {WHAT} has a damaged header: {why}",
                          hint="copy or save the file again")


# -- reading one tensor -------------------------------------------------------------------------


def _open(path: str, data: bytes | None) -> dict[str, Entry]:
    """The checked header of ``path`` (or of its bytes ``data``, for stdin)."""
    if data is not None:
        return read_header(io.BytesIO(data), path, len(data))
    try:
        with open(path, "rb") as fh:
            return read_header(fh, path, os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None


def _where(path: str, name: str) -> str:
    return f"{'<stdin>' if path == '-' else path}:{name}"


def _tensor_source(path: str, where: str, role: str, e: Entry,
                   data: bytes | None) -> Source:
    """A source over the tensor ``e`` of ``path`` (named ``where`` in messages)."""
    if e.dtype not in DTYPES:
        hint = "save int64 (I64) class indices" if role == "targets" else \
            "save the logits as F32, F64, F16 or BF16"
        if e.dtype in UNREAD:
            raise InputFileError(where, f"the {role} have the safetensors dtype {e.dtype} "
                                 f"({UNREAD[e.dtype][1]}), which ce-loss cannot read",
                                 hint=hint)
        known = ", ".join(DTYPES)
        raise InputFileError(where, f"the {role} have the dtype {e.dtype!r}, which is no "
                             f"safetensors dtype ce-loss knows ({known})", hint=hint)
    dtype = np.dtype(DTYPES[e.dtype])
    check_numeric(where, role, dtype)
    if e.count == 0:
        array = np.zeros(e.shape, dtype=dtype)  # mmap cannot map 0 bytes
    elif data is not None:
        array = np.frombuffer(data, dtype=dtype, count=e.count,
                              offset=e.begin).reshape(e.shape)
    else:
        try:
            array = np.memmap(path, dtype=dtype, mode="r", offset=e.begin, shape=e.shape)
        except (OSError, ValueError) as exc:
            raise InputFileError(where, f"cannot map the tensor ({exc})") from None
    source = array_source(where, role, array)
    mapped = isinstance(array, np.memmap)
    if mapped and array.ndim >= 1 and array.nbytes > base.BUFFERED_BYTES:
        # read through reused buffers, not the map: see base.buffered_blocks
        source._blocks = buffered_blocks(path, array, what=".safetensors file")
    source.flatten = base.flattening(where, role, array, file=path if mapped else None,
                                     what=".safetensors file", widen=e.dtype == "BF16")
    if e.dtype != "BF16":
        return source
    raw = source._blocks

    def widened(rows: int):
        return widened_blocks(raw(rows))

    return Source(where, role, np.dtype(np.float32), source.row_shape, source.n_rows,
                  widened, stored_dtype="bfloat16", flatten=source.flatten)


def read_safetensors(path: str, *, role: str, data: bytes | None = None,
                     member: str | None = None, **_: object) -> Source:
    """A source over one tensor of the ``.safetensors`` file ``path`` (``member``: its
    name; it may be left out when the file holds one tensor)."""
    entries = _open(path, data)
    named = member is not None
    if member is None:
        if len(entries) != 1:
            if not entries:
                raise InputFileError(path, f"the {WHAT} holds no tensors",
                                     hint="save the tensors with safetensors' save_file")
            names = list(entries)
            raise InputFileError(path, f"the {WHAT} holds {len(names)} tensors "
                                 f"({_listing(names)})",
                                 hint=member_hint(path, role, example_member(names, role)))
        member = next(iter(entries))
    if member not in entries:
        raise InputFileError(path, f"the {WHAT} holds no tensor named {member!r}",
                             hint=f"its tensors are: {_listing(list(entries))}")
    where = _where(path, member) if named else path
    return _tensor_source(path, where, role, entries[member], data)


def _listing(names: list[str]) -> str:
    shown = sorted(names)
    if len(shown) > 20:
        return ", ".join(shown[:20]) + f", ... ({len(shown) - 20} more)"
    return ", ".join(shown) or "none"


# -- the logits and the targets of one file -----------------------------------------------------


def read_safetensors_pair(path: str, *, target_column: str | None = None,
                          logits_columns: str | None = None, data: bytes | None = None,
                          member: str | None = None, **_: object) -> tuple[Source, Source]:
    """``(logits, targets)`` from one ``.safetensors`` file holding both.

    The targets are the tensor ``target_column`` if given, else the one with a
    conventional name (``labels``, ``targets``, ...); the logits are ``member`` (from
    ``file.safetensors:NAME``) or ``logits_columns`` if given, else the one with a
    conventional name (``logits``, ``scores``, ...) or the only other tensor. What was
    taken by its name is said in the logits' ``notes``; what cannot be told is an error
    listing the tensors and showing ``FILE:NAME``.
    """
    entries = _open(path, data)
    names = list(entries)
    shown = "<stdin>" if path == "-" else path
    for given, option in ((target_column, "--target-column"), (logits_columns,
                                                                "--logits-columns"),
                          (member, None)):
        if given is not None and given not in entries:
            what = f"{option} {given!r}" if option else f"{shown}:{given}"
            raise InputFileError(path, f"the {WHAT} holds no tensor named {given!r} ({what})",
                                 hint=f"its tensors are: {_listing(names)}")
    given = (member or logits_columns, target_column)
    pair = choose_pair(names, logits=given[0], targets=given[1])
    if pair is None:
        raise _cannot_tell(path, names)
    logits, targets = pair
    xs = _tensor_source(path, _where(path, logits), "logits", entries[logits], data)
    ts = _tensor_source(path, _where(path, targets), "targets", entries[targets], data)
    note = taken_note(shown, pair, given)
    if note:
        xs.notes.append(note)
    return xs, ts


def _cannot_tell(path: str, names: list[str]) -> InputFileError:
    if len(names) < 2:
        held = f"one tensor ({names[0]!r})" if names else "no tensors"
        return InputFileError(path, f"the {WHAT} holds {held}, not both logits and targets",
                              hint="pass the targets as a second file")
    return InputFileError(path, f"cannot tell which tensors of the {WHAT} are the logits and "
                          f"which the targets: it holds {_listing(names)}",
                          hint=pair_hint(path, names))
