"""Reading ``torch.save`` zip archives without ``torch.load``, so that nothing in a file can run code.

``torch.load`` hands an archive holding ``constants.pkl`` to ``torch.jit.load`` (TorchScript code runs),
unpickles PyTorch's legacy format with whatever globals it names, and does not check the zip's CRC-32s.
:func:`read_torch_zip` instead

* opens the file with :mod:`zipfile` (one parser for the whole file) and refuses TorchScript archives,
  legacy and plain pickles, compressed, overlapping or oversized records before anything is unpickled;
* unpickles ``data.pkl`` with an unpickler that imports nothing: tensors are rebuilt by checked functions
  of this module (offset, size and stride must lie inside their storage record), ``OrderedDict`` and a
  few plain types are allowed, every other global becomes an inert :class:`Placeholder` that remembers
  only the name it stands for;
* reads each storage record through zipfile, which verifies its CRC-32 (one flipped bit is refused);
* returns plain containers (dict, OrderedDict, list, tuple, set), tensors, numbers, strings, bytes and
  placeholders, after a walk that refuses cycles and nesting deeper than :data:`MAX_DEPTH`.

    obj = read_torch_zip("checkpoint.pth")      # ArchiveError(reason) when refused

What a placeholder stands for is the caller's business: ``haltingvt.models.weights`` refuses a
checkpoint whose weights or settings hold one ("refers to code (os.system): refused").
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, cast

import torch

ZIP_MAGIC = b"PK\x03\x04"
#: Containers nested deeper than this are refused (torch checkpoints nest about 6 levels).
MAX_DEPTH = 64
# Records that only TorchScript (torch.jit.save) or torch.package archives hold.
_CODE_RECORDS = ("constants.pkl", "code/", "bytecode.pkl", "constants/", "extra/", ".data/extern_modules")
_PLAIN_RECORDS = (
    "data.pkl",
    "byteorder",
    "version",
    ".format_version",
    ".storage_alignment",
    ".data/version",
    ".data/serialization_id",
)


class ArchiveError(ValueError):
    """The file is refused: it is not a plain archive of tensors and containers, or it is damaged.
    The message gives the reason only; callers add the file name."""


# ----------------------------------------------------------------------------- placeholders
class Placeholder:
    """Stands in for a global the unpickler will not import (mmengine's HistoryBuffer, os.system ...).

    Constructing it, calling it or setting its state does nothing and keeps nothing: it holds no
    reference to real code or to the arguments a pickle passed. ``refers_to`` names what it replaced.
    """

    __slots__ = ()
    refers_to = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        return type(self)()

    def __repr__(self) -> str:
        return f"<placeholder for {self.refers_to}>"


def _placeholder_class(module: str, name: str) -> type[Placeholder]:
    return cast(
        "type[Placeholder]", type("Placeholder", (Placeholder,), {"__slots__": (), "refers_to": f"{module}.{name}"})
    )


def _inert_getattr(*args: Any) -> Placeholder:
    """``getattr`` as pickles use it (numpy's ``getattr(dtype, 'min')`` in MMEngine checkpoints) must never
    reach a real object."""
    return _placeholder_class("builtins", "getattr")()


# ----------------------------------------------------------------------------- checked rebuilders
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


class _Inert:
    """Base of the unpickler's own intermediate objects: a pickle's BUILD (``__setstate__``) on them is
    refused, and they have no ``__dict__``, ``append`` or ``__setitem__`` a pickle could reach."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise ArchiveError(f"the pickle sets state on a {type(self).__name__.strip('_').lower()}")


class _StorageType(_Inert):
    """What ``torch.FloatStorage`` & co unpickle to: just a dtype."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _Storage(_Inert):
    """A storage record read from the archive: a flat 1-D tensor of its dtype."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


class _Tensor(_Inert):
    """A rebuilt tensor, wrapped until the unpickling is over. A bare tensor would let the pickle's BUILD
    call ``Tensor.__setstate__``, whose legacy path ``set_`` grows the storage to any size."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _OrderedDict(collections.OrderedDict[Any, Any]):
    """``collections.OrderedDict`` as unpickled: torch pickles a state dict's ``_metadata`` (module
    versions) as its state; it is dropped, and any other state is refused."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, dict) and set(state) <= {"_metadata"}):
            raise ArchiveError("the pickle sets state on an OrderedDict")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _Tensor:
    """Checked ``torch._utils._rebuild_tensor(_v2)``: every argument is checked, then the storage viewed."""
    if not isinstance(storage, _Storage):
        raise ArchiveError("a tensor refers to something that is not a storage record")
    if not (_is_int(offset) and offset >= 0):
        raise ArchiveError(f"a tensor has an invalid storage offset {offset!r:.40}")
    size = tuple(size) if isinstance(size, (tuple, list)) else None
    stride = tuple(stride) if isinstance(stride, (tuple, list)) else None
    if (
        size is None
        or stride is None
        or len(size) != len(stride)
        or len(size) > 16
        or not all(_is_int(v) and v >= 0 for v in size + stride)
    ):
        raise ArchiveError("a tensor has an invalid size or stride")
    if rest:
        requires_grad, *extra = rest
        if not isinstance(requires_grad, bool):
            raise ArchiveError("a tensor has an invalid requires_grad flag")
        # torch.save never writes backward hooks or tensor metadata: anything here is crafted.
        if extra and not (extra[0] is None or isinstance(extra[0], collections.OrderedDict) and not extra[0]):
            raise ArchiveError("a tensor carries backward hooks")
        if len(extra) > 1 and extra[1]:
            raise ArchiveError("a tensor carries extra metadata")
        if len(extra) > 2:
            raise ArchiveError("a tensor has too many rebuild arguments")
    n = storage.flat.numel()
    if all(size):
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= n:
            raise ArchiveError(f"a tensor of size {list(size)} reaches past its storage ({n} elements)")
    elif offset > n:
        raise ArchiveError("a tensor's offset lies past its storage")
    return _Tensor(storage.flat.as_strided(size, stride, offset))


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *rest: Any) -> _Tensor:
    if not isinstance(data, _Tensor):
        raise ArchiveError("a parameter holds no tensor")
    if rest or not (hooks is None or isinstance(hooks, collections.OrderedDict) and not hooks):
        raise ArchiveError("a parameter carries backward hooks or extra state")
    return data


def _size(*args: Any) -> tuple[int, ...]:
    if len(args) != 1 or not isinstance(args[0], (tuple, list)) or not all(_is_int(v) for v in args[0]):
        raise ArchiveError("invalid torch.Size")
    return tuple(args[0])


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes`` objects: a string in latin-1, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ArchiveError("unexpected use of _codecs.encode")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): _size,
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "getattr"): _inert_getattr,
    ("__builtin__", "getattr"): _inert_getattr,
}
for _module in ("builtins", "__builtin__"):  # protocol 2 pickles these plain types by name
    _ALLOWED.update({(_module, "set"): set, (_module, "frozenset"): frozenset, (_module, "complex"): complex})


class _ArchiveUnpickler(pickle.Unpickler):
    """Imports nothing: tensors and OrderedDicts are rebuilt by this module's checked functions, every
    other global becomes an inert placeholder class."""

    def __init__(self, data: bytes, load_storage: Callable[[str, torch.dtype, int], _Storage]) -> None:
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        allowed = _ALLOWED.get((module, name))
        return allowed if allowed is not None else _placeholder_class(module, name)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ArchiveError("unknown persistent record")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise ArchiveError("malformed storage record")
        return self._load_storage(key, storage_type.dtype, numel)


# ----------------------------------------------------------------------------- the archive
def read_torch_zip(path: str | os.PathLike[str]) -> Any:
    """Unpickle a ``torch.save`` zip archive without running code; ArchiveError(reason) when refused."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0, os.SEEK_END)
        length = f.tell()
    if head != ZIP_MAGIC:
        kind = "an empty file" if not head else "not a zip archive"
        raise ArchiveError(
            f"{kind}: not a PyTorch checkpoint of the zip format (plain pickles and PyTorch's "
            "legacy format are refused: they can run code; re-save with torch.save)"
        )
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ArchiveError(f"damaged or truncated archive ({err})") from None
    with zf:
        infos = zf.infolist()
        prefix = _check_records(infos, length)
        records = {i.filename[len(prefix) :]: i for i in infos}
        if "byteorder" in records and zf.read(records["byteorder"]).strip() not in (b"little", b""):
            raise ArchiveError("big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}

        def load_storage(key: str, dtype: torch.dtype, numel: int) -> _Storage:
            if key in storages:
                if storages[key].flat.dtype != dtype:
                    raise ArchiveError(f"storage record {key} is used with two dtypes")
                return storages[key]
            info = records.get(f"data/{key}")
            if info is None:
                raise ArchiveError(f"storage record {key} is missing")
            itemsize = torch.empty((), dtype=dtype).element_size()
            if info.file_size != numel * itemsize:
                raise ArchiveError(f"storage record {key} has {info.file_size} bytes, {numel * itemsize} declared")
            buf = torch.empty(info.file_size, dtype=torch.uint8)
            # zipfile checks the CRC-32 once the record is read to its end; typeshed types ZipFile.open as
            # IO[bytes], but for reading it returns a ZipExtFile (which has readinto)
            with cast(zipfile.ZipExtFile, zf.open(info)) as fh:
                # numpy's stubs declare ndarray.__buffer__ (the Buffer protocol) only for Python >= 3.12
                got = fh.readinto(memoryview(buf.numpy())) if info.file_size else 0  # type: ignore[arg-type, unused-ignore]
                if got != info.file_size or fh.read(1):
                    raise ArchiveError(f"storage record {key} is truncated")
            storages[key] = _Storage(buf.view(dtype))
            return storages[key]

        try:
            raw = _ArchiveUnpickler(zf.read(records["data.pkl"]), load_storage).load()
            return _plain(raw)
        except ArchiveError:
            raise
        except zipfile.BadZipFile as err:
            raise ArchiveError(f"damaged archive: {err}") from None
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
            RecursionError,
            MemoryError,
            OverflowError,
            RuntimeError,
            OSError,
            zlib.error,
        ) as err:
            raise ArchiveError(f"damaged or malformed archive ({type(err).__name__}: {str(err)[:200]})") from None


def _check_records(infos: list[zipfile.ZipInfo], length: int) -> str:
    """Refuse what torch.save never writes; returns the archive's top folder ("name/")."""
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise ArchiveError("the archive holds the same record twice")
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or any("/" not in n for n in names):
        raise ArchiveError("not a PyTorch checkpoint archive (records outside one top folder)")
    prefix = tops.pop() + "/"
    records = [n[len(prefix) :] for n in names]
    if any(r.startswith(_CODE_RECORDS) or r.endswith(".pkl") and r != "data.pkl" for r in records):
        raise ArchiveError(
            "TorchScript archive (it carries code): refused; save the weights with torch.save(model.state_dict())"
        )
    if "data.pkl" not in records:
        raise ArchiveError("not a PyTorch checkpoint archive (no data.pkl)")
    unknown = [r for r in records if r not in _PLAIN_RECORDS and not r.startswith("data/")]
    if unknown:
        raise ArchiveError(f"unexpected record(s) in the archive: {', '.join(unknown[:5])}")
    if min(i.header_offset for i in infos) != 0:  # e.g. a second archive appended to a first one
        raise ArchiveError("the file holds data before the archive (two archives in one file?): refused")
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        # torch.save stores records uncompressed; refusing anything else rules out zip bombs, and the size
        # checks below bound what is allocated by the size of the file itself.
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ArchiveError(f"record {info.filename} is compressed (torch.save writes none): refused")
        if info.header_offset < end or info.header_offset + 30 + info.file_size > length:
            raise ArchiveError(f"record {info.filename} overlaps another or claims more bytes than the file has")
        end = info.header_offset + 30 + info.file_size
    return prefix


def _plain(obj: Any) -> Any:
    """Unwrap rebuilt tensors and OrderedDicts into plain objects. Shared objects stay shared (so a
    pickle that refers to one list a billion times costs one visit); cycles and nesting deeper than
    MAX_DEPTH are refused."""
    done: dict[int, Any] = {}
    active: set[int] = set()

    def walk(o: Any, depth: int) -> Any:
        if isinstance(o, _Tensor):
            return o.tensor
        if isinstance(o, (str, bytes, int, float, complex, type(None), Placeholder, torch.Tensor)):
            return o
        if isinstance(o, _Inert):
            raise ArchiveError(f"a {type(o).__name__.strip('_').lower()} is used as a value")
        key = id(o)
        if key in done:
            return done[key]
        if key in active:
            raise ArchiveError("the data refers to itself (a cycle)")
        if depth >= MAX_DEPTH:
            raise ArchiveError(f"containers nested deeper than {MAX_DEPTH} levels")
        active.add(key)
        if isinstance(o, dict):
            out: Any = (collections.OrderedDict if isinstance(o, collections.OrderedDict) else dict)(
                (walk(k, depth + 1), walk(v, depth + 1)) for k, v in o.items()
            )
        elif isinstance(o, list):
            out = [walk(v, depth + 1) for v in o]
        elif isinstance(o, tuple):
            out = tuple(walk(v, depth + 1) for v in o)
        elif isinstance(o, (set, frozenset)):
            out = type(o)(walk(v, depth + 1) for v in o)
        elif isinstance(o, bytearray):
            out = bytes(o)
        else:
            raise ArchiveError(f"unexpected object of type {type(o).__name__}")
        active.discard(key)
        done[key] = out
        return out

    return walk(obj, 0)


def find_placeholder(obj: Any, where: str = "") -> tuple[str, str] | None:
    """(dotted position, what it refers to) of the first placeholder inside ``obj``, or None."""
    stack: list[tuple[Any, str, int]] = [(obj, where, 0)]
    seen: set[int] = set()
    while stack:
        o, at, depth = stack.pop()
        if isinstance(o, Placeholder):
            return at or "the top level", o.refers_to
        if id(o) in seen or depth > MAX_DEPTH:
            continue
        seen.add(id(o))
        if isinstance(o, dict):
            for k, v in o.items():
                if isinstance(k, Placeholder):
                    return (at or "the top level"), k.refers_to
                stack.append((v, f"{at}.{k}" if at else str(k), depth + 1))
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend((v, f"{at}[{i}]", depth + 1) for i, v in enumerate(o))
    return None
