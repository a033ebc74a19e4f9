"""PyTorch ``.pt``/``.pth`` files as ``torch.save`` writes them (its zip format, the default
since torch 1.6), read without torch and without running any pickled code.

A ``torch.save`` file is a zip archive: ``<folder>/data.pkl`` pickles the saved object,
whose tensors refer to storages kept as ``<folder>/data/<key>`` (stored uncompressed), and
``<folder>/byteorder`` gives the storages' byte order (little-endian when it is missing).
The folder's name varies (torch takes it from the file name). The pickle is read by a
restricted unpickler: the only globals it resolves are those that rebuild tensors
(``torch._utils._rebuild_tensor_v2`` and kin, the ``torch.*Storage`` types, ``torch.<dtype>``)
and ``collections.OrderedDict``, each to an inert stand-in; any other is refused, by
name, before anything could run. A tensor is then a NumPy view (``as_strided``) over its
storage's bytes, memory-mapped from the file, so slices, transposes, storage offsets and
storages shared between tensors read as saved, and a large tensor is read as it is used.

``file.pt:NAME`` picks one tensor of a container: a dict key (``eval.pt:logits``), a key of
a nested dict (``eval.pt:outputs/logits``) or a list item (``eval.pt:0``). A file holding
one tensor needs no name. :func:`read_pt_pair` takes both the logits and the targets from
one file by their conventional names (``{"logits": x, "labels": y}``).

Standard input (``data``) is read from memory; being a zip archive, it is sniffed as .npz,
whose reader says to pass ``--logits-format pt``.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import InputFileError
from . import base
from .base import (
    Source,
    array_source,
    bfloat16_to_float32,
    buffered_blocks,
    native,
    own_map,
    widened_blocks,
)
from .conventions import LOGITS_NAMES, TARGET_NAMES, example_member, member_hint, pick, pick_pair
from .npz import ZIP_MAGIC
from .validate import check_numeric

#: the storage types torch.save names (``torch.FloatStorage``), and their dtypes; the
#: complex and quantized ones are read as records and refused if their tensor is picked
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}
#: the dtypes read, as NumPy dtypes without byte order (bfloat16: its raw 16 bits)
NUMPY_DTYPES = {
    "float16": "f2", "float32": "f4", "float64": "f8", "bfloat16": "u2", "int8": "i1",
    "int16": "i2", "int32": "i4", "int64": "i8", "uint8": "u1", "uint16": "u2",
    "uint32": "u4", "uint64": "u8", "bool": "b1",
}
#: the ``torch.<dtype>`` globals torch's newer records name (``_rebuild_tensor_v3`` over an
#: ``UntypedStorage``), read as names; those not in NUMPY_DTYPES are refused when picked
DTYPE_NAMES = frozenset(
    [*NUMPY_DTYPES, *STORAGE_DTYPES.values(), "complex32", "float8_e5m2", "float8_e4m3fn",
     "float8_e5m2fnuz", "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "bits8",
     "bits16", "bits1x8", "bits2x4", "bits4x2", *(f"uint{n}" for n in range(1, 8)),
     *(f"int{n}" for n in range(1, 8))])

#: the largest pickle (data.pkl) read: a model's state_dict pickles to a few megabytes
MAX_PICKLE_BYTES = 256 << 20
#: containers nested deeper than this (or in a loop) are refused
MAX_DEPTH = 100
#: containers and tensors met walking the saved object, at most (one container held many
#: times over, at every level, would otherwise give exponentially many names)
MAX_VISITS = 1_000_000
#: NumPy's limit on dimensions (since NumPy 2; 32 before)
MAX_DIMS = 32
#: tensor names shown in a message, at most
SHOWN = 12

DAMAGED = "copy or save the file again"
#: how a torch.save file of the format before torch 1.6 starts: a pickle (its protocol
#: opcode, and a frame opcode from protocol 4) of torch's magic number
LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
SAVE_HINT = "save tensors with torch.save, e.g. torch.save({'logits': x, 'labels': y}, path)"


# -- what the pickle is allowed to build ---------------------------------------------------------


class _Refused(Exception):
    """A global outside the allowed set, by its dotted name."""


class _Problem(Exception):
    """Something in the pickle that cannot be a tensor record: its message says what."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str
    dtype: str  # "uint8" for UntypedStorage, whose size counts bytes


@dataclass(frozen=True, slots=True)
class _DType:
    name: str


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    dtype: str
    numel: int


@dataclass(frozen=True, slots=True)
class _Tensor:
    storage: _Storage
    dtype: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor(storage: object, dtype: str | None, offset: object, size: object,
            stride: object, metadata: object = None) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise _Problem("a tensor's storage is not a storage record")
    if not (_is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and all(map(_is_int, size)) and all(map(_is_int, stride))
            and len(size) == len(stride)):
        raise _Problem(f"a tensor's offset {offset!r:.40}, shape {size!r:.40} or stride "
                       f"{stride!r:.40} is not whole numbers")
    if isinstance(metadata, dict) and any(metadata.values()):
        raise _Problem("a tensor is saved as a lazily negated or conjugated view (its "
                       f"{', '.join(map(str, metadata))} bit is set); save x.resolve_conj()"
                       ".resolve_neg().clone()")
    return _Tensor(storage, dtype or storage.dtype, offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, None, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _tensor(storage, None, storage_offset, size, stride, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, _DType) or not isinstance(storage, _Storage) \
            or storage.dtype != "uint8":
        raise _Problem("a tensor record names no dtype, or a typed storage")
    return _tensor(storage, dtype.name, storage_offset, size, stride, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """An ``nn.Parameter``: read as the tensor it holds."""
    if not isinstance(data, _Tensor):
        raise _Problem("a parameter record holds no tensor")
    return data


REBUILDERS = {f"torch._utils.{f.__name__}": f for f in
              (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)}


class _Unpickler(pickle.Unpickler):
    """Builds tensor records and plain containers; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in REBUILDERS:
            return REBUILDERS[full]
        if full == "collections.OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        if full in ("torch.UntypedStorage", "torch.storage.UntypedStorage"):
            return _StorageType("UntypedStorage", "uint8")
        if module == "torch" and name in DTYPE_NAMES:
            return _DType(name)
        raise _Refused(full)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5):
            raise _Problem(f"a storage record is {pid!r:.60}, not ('storage', type, key, "
                           "location, size)")
        kind, stype, key, _location, numel = pid
        kind = kind.decode("ascii", "replace") if isinstance(kind, bytes) else kind
        key = key.decode("ascii", "replace") if isinstance(key, bytes) else key
        if kind != "storage" or not isinstance(stype, _StorageType) or \
                not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise _Problem(f"a storage record is {pid!r:.60}, not ('storage', type, key, "
                           "location, size)")
        return _Storage(key, stype.dtype, numel)


# -- the archive --------------------------------------------------------------------------------


class _Archive:
    """The tensors of one ``torch.save`` file, by name, with their storages' bytes."""

    def __init__(self, path: str, data: bytes | None, role: str) -> None:
        self.path, self.data, self.role = path, data, role
        self.shown = "<stdin>" if path == "-" else path
        self.zip = _open_zip(path, data)
        try:
            self._read_records()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def _read_records(self) -> None:
        path, names = self.path, self.zip.namelist()
        found = [n for n in names if n.rsplit("/", 1)[-1] == "data.pkl" and n.count("/") <= 1]
        if not found or any(n.endswith("/constants.pkl") for n in names):
            raise _not_torch(path, names, self.role)
        # torch takes the archive's folder from its first record
        first = names[0].split("/", 1)[0] + "/"
        pkl = next((n for n in found if n.startswith(first)), found[0])
        self.prefix = pkl[:-len("data.pkl")]
        try:
            order = self._small(self.prefix + "byteorder")
            info = self.zip.getinfo(pkl)
            if info.file_size > MAX_PICKLE_BYTES:
                raise InputFileError(path, f"the .pt file's pickle ({pkl}) is "
                                     f"{info.file_size} bytes long, more than a file of "
                                     "tensors holds", hint=DAMAGED)
            raw = self.zip.read(pkl)
        except InputFileError:
            raise
        except OSError as exc:
            raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") \
                from None
        except Exception as exc:  # zipfile raises BadZipFile, EOFError, zlib.error, ...
            raise InputFileError(path, f"the .pt file is damaged ({_first_line(exc)})",
                                 hint=DAMAGED) from None
        if order not in (None, b"little", b"big"):
            raise InputFileError(path, f"the .pt file gives the byte order {order[:20]!r}, "
                                 "not 'little' or 'big'", hint=DAMAGED)
        self.order = ">" if order == b"big" else "<"
        try:
            obj = _Unpickler(io.BytesIO(raw)).load()
        except _Refused as exc:
            numpy = str(exc).startswith("numpy")
            raise InputFileError(path, f"refuses to load {str(exc)!r} from the pickle (only "
                                 "tensors and plain containers are read; nothing was run)",
                                 hint="save NumPy arrays as tensors (torch.from_numpy(a)) or "
                                      "with numpy.save" if numpy else None) from None
        except _Problem as exc:
            raise InputFileError(path, f"the .pt file's pickle is damaged: {exc}",
                                 hint=DAMAGED) from None
        except Exception as exc:  # UnpicklingError, EOFError, TypeError, MemoryError, ...
            raise InputFileError(path, "the .pt file's pickle (data.pkl) is damaged "
                                 f"({type(exc).__name__}: {_first_line(exc)})",
                                 hint=DAMAGED) from None
        self.tensors: dict[str, _Tensor] = {}
        self.groups: set[str] = set()
        self.visits = 0
        self._walk(obj, "", 0, set())

    def _small(self, name: str) -> bytes | None:
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            return None
        if info.file_size > 64:
            raise InputFileError(self.path, f"the .pt file's {name.rsplit('/', 1)[-1]} record "
                                 f"is {info.file_size} bytes long", hint=DAMAGED)
        return self.zip.read(info)

    def _walk(self, obj: object, name: str, depth: int, path: set[int]) -> None:
        if isinstance(obj, (_Tensor, dict, list, tuple)):
            self.visits += 1
            if self.visits > MAX_VISITS:
                raise InputFileError(self.path, f"the .pt file holds more than {MAX_VISITS} "
                                     "tensors and containers", hint=SAVE_HINT)
        if isinstance(obj, _Tensor):
            self.tensors[name] = obj
            return
        if isinstance(obj, dict):
            items = [(str(k), v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(obj)]
        else:
            return  # numbers, text, None: not tensors
        if depth >= MAX_DEPTH or id(obj) in path:
            raise InputFileError(self.path, f"the .pt file nests containers more than "
                                 f"{MAX_DEPTH} deep (or in a loop)", hint=SAVE_HINT)
        if name:
            self.groups.add(name)
        path.add(id(obj))
        for key, value in items:
            self._walk(value, f"{name}/{key}" if name else key, depth + 1, path)
        path.discard(id(obj))

    # -- picking tensors ------------------------------------------------------------------------

    def under(self, member: str | None) -> list[str]:
        """The names of the tensors in the container ``member`` (None: the whole file)."""
        if member is None:
            return list(self.tensors)
        if member in self.groups:
            return [n for n in self.tensors if n.startswith(member + "/")]
        if member in self.tensors:
            return [member]
        hint = f"its tensors are: {_listing(list(self.tensors))}"
        if list(self.tensors) == [""]:
            hint = f"it holds one tensor: pass {self.shown} alone"
        raise InputFileError(self.path, f"the .pt file holds no tensor named {member!r}",
                             hint=hint)

    def pick(self, member: str | None) -> str:
        """The one tensor ``member`` names (a tensor, or a container of one), or the only one."""
        names = self.under(member)
        if len(names) == 1:
            return names[0]
        if not names:
            what = "the .pt file" if member is None else f"{member!r} of the .pt file"
            raise InputFileError(self.path, f"{what} holds no tensors", hint=SAVE_HINT)
        what = "the .pt file" if member is None else f"{member!r} in the .pt file"
        raise InputFileError(self.path, f"{what} holds {len(names)} tensors "
                             f"({_listing(names)})",
                             hint=member_hint(self.path, self.role,
                                              example_member(names, self.role)))

    def where(self, name: str, named: bool) -> str:
        return f"{self.shown}:{name}" if named and name else self.path

    def source(self, name: str, role: str, where: str) -> Source:
        t = self.tensors[name]
        array = self._view(t, where)
        mapped = None if self.data is not None else own_map(self.path, array)
        flatten = base.flattening(where, role, array, what=".pt file",
                                  file=None if self.data is not None else self.path,
                                  widen=t.dtype == "bfloat16")
        if t.dtype == "bfloat16":
            source = _bfloat16_source(where, role, array)
            if mapped is not None:
                raw = buffered_blocks(self.path, mapped, what=".pt file")
                source._blocks = lambda rows: widened_blocks(raw(rows))
        else:
            check_numeric(where, role, array.dtype)
            source = array_source(where, role, array)
            if mapped is not None:
                source._blocks = buffered_blocks(self.path, mapped, what=".pt file")
        source.flatten = flatten
        return source

    def _view(self, t: _Tensor, where: str) -> np.ndarray:
        code = NUMPY_DTYPES.get(t.dtype)
        if code is None:
            raise InputFileError(where, f"the tensor is {t.dtype}, which ce-loss does not "
                                 "read (it reads float, integer and bool tensors)",
                                 hint="save float logits (x.float()) and int64 class indices")
        dtype = np.dtype(code).newbyteorder(self.order)
        storage_bytes = t.storage.numel * np.dtype(NUMPY_DTYPES[t.storage.dtype]).itemsize
        elements = storage_bytes // dtype.itemsize
        size, stride, offset = t.size, t.stride, t.offset
        view = f"(offset {offset}, shape {size}, stride {stride})"
        if offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
            raise InputFileError(where, f"the tensor's view {view} holds a negative number",
                                 hint=DAMAGED)
        if len(size) > MAX_DIMS:
            raise InputFileError(where, f"the tensor has {len(size)} dimensions, more than "
                                 f"the {MAX_DIMS} NumPy takes", hint=SAVE_HINT)
        count, nonzero = 1, 1
        for n in size:
            count, nonzero = count * n, nonzero * max(n, 1)
        if nonzero * dtype.itemsize >= 1 << 62:
            raise InputFileError(where, f"the tensor's view {view} promises an impossible "
                                 "size", hint=DAMAGED)
        if count == 0:
            return np.zeros(size, dtype=dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= elements:
            raise InputFileError(where, f"the tensor's view {view} reaches element {last} "
                                 f"of its storage, which holds {elements}", hint=DAMAGED)
        raw = self._storage(t.storage, storage_bytes, where)
        flat = raw[:elements * dtype.itemsize].view(dtype)
        return np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * dtype.itemsize for s in stride),
            writeable=False)

    def _storage(self, storage: _Storage, nbytes: int, where: str) -> np.ndarray:
        """The bytes of ``storage``: memory-mapped from a stored record of a file, else read."""
        name = f"{self.prefix}data/{storage.key}"
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise InputFileError(where, f"the .pt file has no storage record {name!r} for "
                                 "this tensor", hint=DAMAGED) from None
        if info.file_size < nbytes:
            raise InputFileError(where, f"the storage record {name!r} holds {info.file_size} "
                                 f"bytes, and the tensor's storage {nbytes}", hint=DAMAGED)
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        truncated = InputFileError(where, f"the .pt file is truncated: its storage record "
                                   f"{name!r} ends past the end of the file", hint=DAMAGED)
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                if self.data is not None:
                    start = _data_start(io.BytesIO(self.data), info)
                    if start + nbytes > len(self.data):
                        raise truncated
                    return np.frombuffer(self.data, dtype=np.uint8, count=nbytes, offset=start)
                with open(self.path, "rb") as fh:
                    start = _data_start(fh, info)
                    if start + nbytes > os.fstat(fh.fileno()).st_size:
                        raise truncated
                return np.memmap(self.path, dtype=np.uint8, mode="r", offset=start,
                                 shape=(nbytes,))
            with self.zip.open(info) as fh:  # a re-compressed archive: read (CRC checked)
                got = fh.read(nbytes)
            if len(got) < nbytes:
                raise truncated
            return np.frombuffer(got, dtype=np.uint8)
        except InputFileError:
            raise
        except OSError as exc:
            raise InputFileError(where, f"cannot read the file ({exc.strerror or exc})") \
                from None
        except Exception as exc:  # BadZipFile (a bad CRC), zlib.error, EOFError, ...
            raise InputFileError(where, f"the .pt file's storage record {name!r} is damaged "
                                 f"({_first_line(exc)})", hint=DAMAGED) from None


def _data_start(fh: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where the bytes of the zip record ``info`` start (after its local header)."""
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) < 30 or local[:4] != ZIP_MAGIC:
        raise EOFError("the zip entry's local header is missing")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _open_zip(path: str, data: bytes | None) -> zipfile.ZipFile:
    try:
        if data is not None:
            head = data[:32]
        else:
            with open(path, "rb") as fh:
                head = fh.read(32)
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if head[:1] == b"\x80" and LEGACY_MAGIC in head:
        raise InputFileError(path, "a legacy torch.save file (the format before torch 1.6, "
                             "or _use_new_zipfile_serialization=False), not the zip format "
                             "ce-loss reads", hint="load it with torch and save it again with "
                             "torch.save(obj, path) in torch >= 1.6")
    if head[:1] == b"\x80":
        raise InputFileError(path, "a Python pickle, not a torch.save file (ce-loss runs no "
                             "pickled code)", hint=SAVE_HINT)
    if head[:4] != ZIP_MAGIC:
        raise InputFileError(path, "not a .pt file (torch.save writes a zip archive, and this "
                             "is none)", hint=SAVE_HINT)
    try:
        return zipfile.ZipFile(io.BytesIO(data) if data is not None else path)
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # BadZipFile, ValueError, EOFError, ... on damaged files
        raise InputFileError(path, "the .pt file is truncated or damaged (not a readable zip "
                             f"archive: {_first_line(exc)})", hint=DAMAGED) from None


def _not_torch(path: str, names: list[str], role: str) -> InputFileError:
    """What a zip archive holding no ``data.pkl`` is instead."""
    if any(n.endswith(".npy") for n in names):
        return InputFileError(path, "a NumPy .npz archive, not a torch.save file",
                              hint=_format_hint(role, "npz"))
    if any(n.endswith("/constants.pkl") for n in names):
        return InputFileError(path, "a TorchScript model (torch.jit.save), not saved tensors",
                              hint=SAVE_HINT)
    return InputFileError(path, "a zip archive holding no data.pkl, not a torch.save file",
                          hint=SAVE_HINT)


def _format_hint(role: str, fmt: str) -> str:
    if role in ("logits", "targets"):
        return f"read it with --{role}-format {fmt}, or name it with a .{fmt} suffix"
    return f"name it with a .{fmt} suffix"


def _bfloat16_source(where: str, role: str, raw: np.ndarray) -> Source:
    """bfloat16 values (``raw``: their 16 bits, in the file's byte order) as float32 blocks."""
    def convert(a: np.ndarray) -> np.ndarray:
        return bfloat16_to_float32(native(a))

    if raw.ndim == 0:
        def one(rows: int):
            yield convert(raw.reshape(1))

        source = Source(where, role, np.dtype(np.float32), (), 1, one)
    else:
        def blocks(rows: int):
            for start in range(0, raw.shape[0], rows):
                yield convert(raw[start:start + rows])

        source = Source(where, role, np.dtype(np.float32), tuple(raw.shape[1:]),
                        raw.shape[0], blocks)
    source.stored_dtype = "bfloat16"
    return source


def _listing(names: list[str]) -> str:
    shown = ", ".join(n or "(the file's tensor)" for n in names[:SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > SHOWN else "") or "none"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the readers --------------------------------------------------------------------------------


def read_pt(path: str, *, role: str, data: bytes | None = None, member: str | None = None,
            **_: object) -> Source:
    """A source over one tensor of the ``torch.save`` file ``path`` (``member``: its name)."""
    with _Archive(path, data, role) as pt:
        name = pt.pick(member)
        return pt.source(name, role, pt.where(name, member is not None))


def read_pt_pair(path: str, *, target_column: str | None = None,
                 logits_columns: str | None = None, data: bytes | None = None,
                 member: str | None = None, **_: object) -> tuple[Source, Source]:
    """The logits and the targets of one ``torch.save`` file (or of its container
    ``member``), told by their names (:func:`.conventions.pick_pair`): the targets are the
    tensor ``target_column`` when given, the logits the tensor ``logits_columns`` when given.
    A note on the logits source says which were taken."""
    with _Archive(path, data, "logits") as pt:
        names = pt.under(member)
        if member is not None and names == [member]:
            raise InputFileError(pt.where(member, True), "is one tensor, and the targets are "
                                 "missing", hint=f"give them too, e.g. ce-loss compute "
                                 f"{pt.shown}:{member} {pt.shown}:NAME")
        base = f"{member}/" if member is not None else ""

        def named(name: str | None, what: str) -> str | None:
            if name is None:
                return None
            if base + name not in names:
                raise InputFileError(pt.path, f"the .pt file holds no tensor named "
                                     f"{base + name!r} for the {what}",
                                     hint=f"its tensors are: {_listing(names)}")
            return base + name

        x, t = named(logits_columns, "logits"), named(target_column, "targets")
        if x is None or t is None:
            if x is None and t is None:
                x, t = pick_pair(names) or (None, None)
            else:
                rest = [n for n in names if n not in (x, t)]
                wanted = LOGITS_NAMES if x is None else TARGET_NAMES
                found = pick(rest, wanted) or (rest[0] if len(rest) == 1 else None)
                x, t = (found, t) if x is None else (x, found)
        if x is None or t is None:
            raise _unclear(pt, names)
        xs = pt.source(x, "logits", pt.where(x, True))
        ts = pt.source(t, "targets", pt.where(t, True))
        xs.notes.append(f"{pt.shown}: took the logits from {x!r} and the targets from {t!r}")
        return xs, ts


def _unclear(pt: _Archive, names: list[str]) -> InputFileError:
    """The error when the names do not tell the logits from the targets."""
    if len(names) < 2:
        what = "no tensors" if not names else "one tensor"
        return InputFileError(pt.path, f"missing TARGETS: the .pt file holds {what}",
                              hint="give a targets file, or save both, e.g. torch.save("
                                   "{'logits': x, 'labels': y}, path)")
    x = pick(names, LOGITS_NAMES) or example_member(names, "logits")
    t = pick([n for n in names if n != x], TARGET_NAMES) or next(n for n in names if n != x)
    return InputFileError(pt.path, f"cannot tell which of its {len(names)} tensors are the "
                          f"logits and which the targets ({_listing(names)})",
                          hint=f"name them, e.g. ce-loss compute {pt.shown}:{x} {pt.shown}:{t}")
