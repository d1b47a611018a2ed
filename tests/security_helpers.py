"""Crafted (hostile or broken) checkpoint files for the security tests.

``build_catalogue(out_dir, marker, base_pth, base_safetensors)`` derives one file per case from a valid
checkpoint of ours (``base_pth``, a ``.pth``; ``base_safetensors``, the same weights as our
``.safetensors``) and returns the cases. The base files load; every case must be refused with one line
naming the file and matching ``Case.reason``, and no case may create ``marker``. A case with ``live=True``
is a real code payload: ``torch.load(weights_only=False)`` of it creates ``marker`` (checked by
``tests/test_security.py`` in a subprocess, so the catalogue cannot go stale).
"""

from __future__ import annotations

import builtins
import copy
import functools
import importlib
import json
import os
import pickle
import runpy
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import safetensors.torch
import torch
import torch.jit.unsupported_tensor_ops as jit_ops

from haltingvt.io.tensorfile import content_digest

#: A tiny architecture and test pipeline (--set overrides of minik_g03_b10) and its class names, for the
#: security and Hub tests.
TINY = [
    "model.img_size=32",
    "model.patch_size=16",
    "model.num_frames=2",
    "model.embed_dim=32",
    "model.num_heads=2",
    "model.depth=3",
    "model.keep_rate=[1.0,0.5]",
    "model.num_classes=3",
    "data.clip_len=2",
    "data.frame_interval=2",
    "data.test_scale=36",
    "data.crop_size=32",
    "init.pretrained=null",
]
CLASSES = ["waving", "clapping", "standing still"]
#: Characters that cannot be meant in a class name (refused wherever names are read), by case name.
CONTROL_NAMES = {
    "esc": "\x1b[2J",
    "nul": "\x00",
    "cr": "\r",
    "lf": "\n",
    "tab": "\t",
    "del": "\x7f",
    "c1_csi": "\x9b",
    "bidi_rlo": "\u202e",
    "bidi_isolate": "\u2066",
    "line_separator": "\u2028",
    "bell": "\x07",
}


@dataclass
class Case:
    name: str
    path: Path
    what: str  # what the file is, for the report
    reason: str  # regular expression the refusal message must match (case-insensitive)
    live: bool = False  # unrestricted torch.load of the file creates the marker


class _Call:
    """Pickles as ``fn(*args)`` through torch.save's own pickler (fn must be importable)."""

    def __init__(self, fn: Callable, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


def _s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _archive(
    path: Path,
    data_pkl: bytes,
    extra: dict[str, bytes] | None = None,
    prefix: str = "archive",
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """A torch.save-like zip: prefix/data.pkl, byteorder, version, and extra records."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        zf.writestr(f"{prefix}/byteorder", b"little")
        zf.writestr(f"{prefix}/version", b"3\n")
        for name, raw in (extra or {}).items():
            zf.writestr(f"{prefix}/{name}", raw)
    return path


def _payloads(marker: str) -> dict[str, tuple[Any, bool]]:
    """name -> (object, live): unpickling ``object`` with a plain unpickler runs code; live ones create
    ``marker`` when they do."""
    cmd = f"touch {marker}"
    py = f"open({marker!r}, 'w').write('pwned')"
    nested = pickle.dumps(_Call(os.system, cmd), protocol=2)
    return {
        "os_system": (_Call(os.system, cmd), True),
        "subprocess_popen": (_Call(subprocess.Popen, ["touch", marker]), True),
        "subprocess_check_call": (_Call(subprocess.check_call, ["touch", marker]), True),
        "builtins_eval": (_Call(builtins.eval, py), True),
        "builtins_exec": (_Call(builtins.exec, py), True),
        "builtins_open": (_Call(builtins.open, marker, "w"), True),
        "importlib_import_module": (_Call(importlib.import_module, "os"), False),
        "runpy_run_code": (_Call(runpy._run_code, py, {}), True),
        "nested_pickle_loads": (_Call(pickle.loads, nested), True),
        "nested_torch_load": (_Call(torch.load, marker), False),
        "torch_serialization_load": (_Call(torch.serialization.load, marker), False),
        "torch_jit_exec_wrapper": (_Call(jit_ops.execWrapper, py, {}, {}), True),
        "torch_hub_load": (_Call(torch.hub.load, "haltingvt/none", "none"), False),
        "functools_partial": (_Call(functools.partial, os.system, cmd), False),
        "numpy_array": (np.zeros(3, dtype=np.float32), False),
        "numpy_load": (_Call(np.load, marker), False),
    }


def _hand_global_calls(module: str, name: str, arg: str) -> dict[str, bytes]:
    """data.pkl bodies {'format': 'haltingvt', 'model': CALL} with CALL = module.name(arg), written with
    each opcode that can call a global: GLOBAL+REDUCE, STACK_GLOBAL+REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX,
    and BUILD with a ``__setstate__`` key; plus EXT1 (the copyreg extension registry)."""
    glob = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    calls = {
        "global_reduce": glob + b"(" + _s(arg) + b"tR",
        "stack_global_reduce": _s(module) + _s(name) + b"\x93(" + _s(arg) + b"tR",
        "inst": b"(" + _s(arg) + b"i" + module.encode() + b"\n" + name.encode() + b"\n",
        "obj": b"(" + glob + _s(arg) + b"o",
        "newobj": glob + b"(" + _s(arg) + b"t\x81",
        "newobj_ex": glob + b"(" + _s(arg) + b"t}\x92",
        "build_setstate": b"ccollections\nOrderedDict\n)R}" + _s("__setstate__") + glob + b"sb",
        "ext1": b"\x82\x01(" + _s(arg) + b"tR",
    }
    head = b"\x80\x04}" + _s("format") + _s("haltingvt") + b"s" + _s("model")
    return {k: head + v + b"s." for k, v in calls.items()}


def _rebuild_pickle(offset: object, size: tuple, stride: tuple, numel: int = 4, state: bytes = b"") -> bytes:
    """data.pkl of {'format': 'haltingvt', 'model': {'w': tensor}} with the given rebuild arguments (and,
    if ``state``, a BUILD on the tensor), written by hand: protocol 2, BINPERSID for the storage."""

    def val(v: object) -> bytes:
        if isinstance(v, str):
            return _s(v)
        if isinstance(v, tuple):
            return b"(" + b"".join(val(x) for x in v) + b"t"
        return b"\x8a\x08" + struct.pack("<q", int(v))

    out = b"\x80\x02}" + _s("format") + _s("haltingvt") + b"s" + _s("model") + b"}" + _s("w")
    out += b"ctorch._utils\n_rebuild_tensor_v2\n("
    out += b"(" + _s("storage") + b"ctorch\nFloatStorage\n" + _s("0") + _s("cpu") + val(numel) + b"tQ"
    out += val(offset) + val(size) + val(stride) + b"\x89ccollections\nOrderedDict\n)RtR"
    if state:
        out += state + b"b"
    return out + b"ss."


def _with(base: dict, where: str, value: Any) -> dict:
    """A copy of ``base`` with ``value`` at 'model.KEY', 'arch', 'config', 'classes', 'epoch' or 'top'."""
    if where == "top":
        return value
    obj = dict(base)
    if where.startswith("model."):
        obj["model"] = dict(obj["model"])
        obj["model"][where[len("model.") :]] = value
    else:
        obj[where] = value
    return obj


def build_catalogue(
    out_dir: str | os.PathLike,
    marker: str | os.PathLike,
    base_pth: str | os.PathLike,
    base_safetensors: str | os.PathLike,
) -> list[Case]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = str(marker)
    base = torch.load(base_pth, map_location="cpu", weights_only=True)  # our own file: trusted
    weight = next(k for k, v in base["model"].items() if v.dim() == 1 and v.numel() > 4)
    cases: list[Case] = []

    def save(name: str, obj: Any, what: str, reason: str, live: bool = False) -> None:
        path = out / f"{name}.pth"
        torch.save(obj, path)
        cases.append(Case(name, path, what, reason, live))

    # 1. code payloads in a weight, through torch.save's own pickler (GLOBAL + REDUCE)
    for name, (payload, live) in _payloads(marker).items():
        save(f"payload_{name}", _with(base, f"model.{weight}", payload), f"{name} as a weight", r"refers to code", live)
    # ... and os.system in every other place a loader looks
    call = _Call(os.system, f"touch {marker}")
    for where in ("model", "arch", "config", "classes", "epoch", "top"):
        save(
            f"os_system_in_{where}",
            _with(base, where, call),
            f"os.system as {where}",
            r"refers to code \((os|posix)\.system\)",
            True,
        )
    save(
        "os_system_as_key",
        _with(base, "model", {**base["model"], call: base["model"][weight]}),
        "os.system as a weight's name",
        r"refers to code|must map",
        True,
    )
    save(
        "os_system_in_config_deep",
        _with(base, "config", {"data": {"classes": [call]}}),
        "os.system deep inside the config",
        r"refers to code",
        True,
    )
    save(
        "rebuild_parameter_with_state",
        _with(
            base,
            f"model.{weight}",
            _Call(torch._utils._rebuild_parameter_with_state, torch.zeros(1), False, collections_od(), {"x": call}),
        ),
        "parameter rebuilt with state",
        r"refers to code",
    )

    # 2. the same os.system through every opcode that can call a global, hand-written
    for name, raw in _hand_global_calls("os", "system", f"touch {marker}").items():
        path = _archive(out / f"opcode_{name}.pth", raw)
        cases.append(
            Case(f"opcode_{name}", path, f"os.system via {name}", r"refers to code|malformed|damaged|sets state")
        )
    # plain (not zip) pickle and PyTorch's legacy format
    path = out / "plain_pickle_os_system.pth"
    path.write_bytes(pickle.dumps({"format": "haltingvt", "model": call}, protocol=2))
    cases.append(Case("plain_pickle_os_system", path, "plain pickle with os.system", r"zip format", True))
    path = out / "legacy_format.pth"
    torch.save(base, path, _use_new_zipfile_serialization=False)
    cases.append(Case("legacy_format", path, "PyTorch legacy (non-zip) format", r"zip format"))
    path = out / "legacy_format_os_system.pth"
    torch.save(_with(base, "config", call), path, _use_new_zipfile_serialization=False)
    cases.append(Case("legacy_format_os_system", path, "legacy format with os.system", r"zip format", True))

    # 3. TorchScript archives (torch.load would hand them to torch.jit.load)
    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    path = out / "torchscript.pth"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    cases.append(Case("torchscript", path, "TorchScript archive", r"TorchScript"))
    with zipfile.ZipFile(base_pth) as zf:
        prefix = zf.namelist()[0].split("/")[0]
        records = {n: zf.read(n) for n in zf.namelist()}
    path = out / "torchscript_records_added.pth"
    with zipfile.ZipFile(path, "w") as zf:
        for n, raw in records.items():
            zf.writestr(n, raw)
        zf.writestr(f"{prefix}/constants.pkl", b"\x80\x02).")
        zf.writestr(f"{prefix}/code/__torch__.py", b"def f(): pass\n")
    cases.append(Case("torchscript_records_added", path, "our checkpoint with TorchScript records", r"TorchScript"))

    # 4. hostile tensor-rebuild arguments on a real storage record
    storage = struct.pack("<4f", 0.0, 1.0, 2.0, 3.0)
    for name, args, reason in (
        ("rebuild_out_of_bounds", (0, (1000,), (1,)), r"reaches past"),
        ("rebuild_overlapping_stride", (0, (2, 10**6), (1, 10**6)), r"reaches past"),
        ("rebuild_negative_stride", (0, (4,), (-1,)), r"size or stride"),
        ("rebuild_huge_offset", (10**12, (1,), (1,)), r"reaches past"),
        ("rebuild_bad_types", ("0", ("4",), (1,)), r"offset"),
    ):
        path = _archive(out / f"{name}.pth", _rebuild_pickle(*args), {"data/0": storage})
        cases.append(Case(name, path, f"hostile tensor arguments ({name})", reason))
    # Tensor.__setstate__ (reachable by BUILD on a tensor) calls set_(), which grows a storage to any size
    grow = (
        b"("
        + b"ctorch._utils\n_rebuild_tensor_v2\n(("
        + _s("storage")
        + b"ctorch\nFloatStorage\n"
        + _s("0")
        + _s("cpu")
        + b"K\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRK\x00\x8a\x04\x00\xe1\xf5\x05"
        + b"\x85K\x01\x85t"
    )
    path = _archive(out / "build_on_tensor.pth", _rebuild_pickle(0, (4,), (1,), state=grow), {"data/0": storage})
    cases.append(Case("build_on_tensor", path, "BUILD on a tensor growing its storage to 400 MB", r"sets state"))
    path = _archive(out / "storage_short.pth", _rebuild_pickle(0, (4,), (1,), numel=4000), {"data/0": storage})
    cases.append(Case("storage_short", path, "storage record shorter than declared", r"bytes"))

    # 5. damaged archives
    whole = Path(base_pth).read_bytes()
    for name, raw, what, reason in (
        ("truncated_half", whole[: len(whole) // 2], "truncated to half", r"damaged|truncated"),
        ("truncated_tail", whole[:-10], "last 10 bytes cut", r"damaged|truncated"),
        ("empty", b"", "empty file", r"empty"),
        ("text", b"not a checkpoint\n", "text file", r"zip format"),
    ):
        (out / f"{name}.pth").write_bytes(raw)
        cases.append(Case(name, out / f"{name}.pth", what, reason))
    tensor = base["model"][weight].contiguous().numpy().tobytes()
    at = whole.find(tensor)
    flipped = bytearray(whole)
    flipped[at + len(tensor) // 2] ^= 0x10
    (out / "bitflip_weight.pth").write_bytes(bytes(flipped))
    cases.append(Case("bitflip_weight", out / "bitflip_weight.pth", "one flipped bit in a weight", r"CRC"))
    at = whole.find(b"data.pkl")
    at = whole.find(b"format", at)
    flipped = bytearray(whole)
    flipped[at] ^= 0x01
    (out / "bitflip_pickle.pth").write_bytes(bytes(flipped))
    cases.append(Case("bitflip_pickle", out / "bitflip_pickle.pth", "one flipped bit in data.pkl", r"CRC"))
    # zip-level tricks
    path = out / "duplicate_record.pth"
    with zipfile.ZipFile(path, "w") as zf:
        for n, raw in records.items():
            zf.writestr(n, raw)
        zf.writestr(f"{prefix}/data.pkl", pickle.dumps({"format": "haltingvt", "model": {}}, protocol=2))
    cases.append(Case("duplicate_record", path, "a second data.pkl with the same name", r"twice"))
    path = out / "two_archives.pth"
    path.write_bytes((out / "torchscript.pth").read_bytes() + whole)
    cases.append(
        Case(
            "two_archives",
            path,
            "two archives (two central directories) in one file",
            r"before the archive|TorchScript|overlap",
        )
    )
    path = _archive(
        out / "compressed_bomb.pth",
        pickle.dumps({"format": "haltingvt", "model": {}}, protocol=2),
        {"data/0": bytes(64 << 20)},
        compression=zipfile.ZIP_DEFLATED,
    )
    cases.append(Case("compressed_bomb", path, "deflated records (64 MB of zeros in 64 kB)", r"compressed"))
    path = out / "record_claims_huge_size.pth"
    path.write_bytes(_claim_size(whole, f"{prefix}/data/0", 0xFFFFFFF0))
    cases.append(Case("record_claims_huge_size", path, "a record claiming 4 GB", r"claims more bytes|damaged"))

    # 6. pickle-level resource attacks
    deep = b"\x80\x02}" + _s("format") + _s("haltingvt") + b"s" + _s("model") + b"]" * 10_000 + b"a" * 9_999 + b"s."
    cases.append(
        Case(
            "deep_nesting",
            _archive(out / "deep_nesting.pth", deep),
            "lists nested 10000 deep",
            r"nested deeper|recursion",
        )
    )
    laughs = b"\x80\x02}" + _s("format") + _s("haltingvt") + b"s" + _s("model") + b"}s" + _s("config") + b"]q\x000"
    for level in range(1, 40):  # a list of 10 references to the previous level: 10**39 logical nodes
        laughs += b"(" + (b"h" + bytes([level - 1])) * 10 + b"lq" + bytes([level]) + (b"0" if level < 39 else b"")
    laughs += b"s."
    cases.append(
        Case("memo_bomb", _archive(out / "memo_bomb.pth", laughs), "billion-laughs config", r"too large|nested|must be")
    )
    huge = (
        b"\x80\x04}"
        + _s("format")
        + _s("haltingvt")
        + b"s"
        + _s("model")
        + b"\x8e"
        + struct.pack("<Q", 1 << 40)
        + b"s."
    )
    cases.append(
        Case(
            "pickle_claims_huge_bytes",
            _archive(out / "pickle_claims_huge_bytes.pth", huge),
            "BINBYTES8 claiming 1 TB",
            r"damaged|truncated|malformed",
        )
    )
    cycle = b"\x80\x02}" + _s("format") + _s("haltingvt") + b"s" + _s("model") + b"}q\x00" + _s("w") + b"h\x00ss."
    cases.append(Case("cycle", _archive(out / "cycle.pth", cycle), "a dict containing itself", r"cycle"))

    # 7. wrong types in our format
    for name, obj, reason in (
        ("top_is_list", [1, 2, 3], r"not a HaltingVT|must be"),
        ("model_is_list", _with(base, "model", [1, 2, 3]), r"must map"),
        ("weight_is_string", _with(base, f"model.{weight}", "x"), r"must map|tensor"),
        ("weight_key_is_int", _with(base, "model", {**base["model"], 7: base["model"][weight]}), r"must map"),
        ("arch_is_string", _with(base, "arch", "huge"), r"arch"),
        ("arch_huge", _with(base, "arch", {**base["arch"], "embed_dim": 10**7, "depth": 10**4}), r"embed_dim|depth"),
        ("arch_wrong_type", _with(base, "arch", {**base["arch"], "num_heads": "six"}), r"num_heads"),
        ("classes_is_path", _with(base, "classes", "/etc/passwd"), r"classes"),
        ("classes_wrong_count", _with(base, "classes", ["a"]), r"classes"),
        ("format_version_future", _with(base, "format_version", 99), r"version"),
        (
            "weight_dtype_int",
            _with(base, f"model.{weight}", torch.ones(base["model"][weight].shape, dtype=torch.int64)),
            r"floating|dtype",
        ),
    ):
        save(name, obj, f"wrong types ({name})", reason)
    for name, bad in CONTROL_NAMES.items():  # class names that cannot be meant
        save(
            f"classes_{name}",
            _with(base, "classes", ["waving", f"clap{bad}ping", "standing"]),
            f"a class name with {name}",
            r"classes.*control character",
        )

    # 8. safetensors variants (base_safetensors is ours: format haltingvt, sha256 of the tensors)
    raw = Path(base_safetensors).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]

    def st(name: str, data: bytes, what: str, reason: str) -> None:
        path = out / f"{name}.safetensors"
        path.write_bytes(data)
        cases.append(Case(name, path, what, reason))

    def with_header(h: dict) -> bytes:
        text = json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + body

    st("st_truncated", raw[:-3], "truncated safetensors", r"safetensors")
    st("st_empty", b"", "empty safetensors", r"safetensors|empty")
    st("st_header_garbage", struct.pack("<Q", 20) + b"{not json at all!!!}" + body, "broken header", r"safetensors")
    st("st_header_huge", struct.pack("<Q", 2**62) + raw[8:], "header length 2**62", r"safetensors")
    flipped = bytearray(raw)
    flipped[8 + n + len(body) // 2] ^= 0x10
    st("st_bitflip", bytes(flipped), "one flipped bit in our safetensors", r"sha256|checksum|damaged")
    meta = header["__metadata__"]
    tensors = safetensors.torch.load(raw)

    def signed(m: dict) -> dict:
        """``m`` with its digest recomputed: what someone editing the file with our digest function makes."""
        return {**header, "__metadata__": {**m, "digest": content_digest(tensors, m)}}

    def flip_in_header(text: str, bit: int = 0x01, after: bool = False) -> bytes:
        """``raw`` with one bit flipped in the first byte of ``text`` inside the header (or in the byte after it)."""
        at = raw.index(text.encode(), 8, 8 + n) + (len(text.encode()) if after else 0)
        assert at < 8 + n
        out = bytearray(raw)
        out[at] ^= bit
        return bytes(out)

    # one flipped bit in each metadata entry a load reads: refused by the digest over tensors + metadata
    st(
        "st_meta_bitflip_keep_rate",
        flip_in_header('keep_rate\\": [1.0, 0.', after=True),
        "one flipped bit in the keep_rate of the metadata (0.5 -> 0.4)",
        r"digest",
    )
    st(
        "st_meta_bitflip_halt_center",
        flip_in_header('halt_center\\": 1', after=True),
        "one flipped bit in the halt_center of the metadata (10.0 -> 11.0)",
        r"digest",
    )
    st(
        "st_meta_bitflip_class_name",
        flip_in_header(CLASSES[0], 0x02),
        "one flipped bit in a class name of the metadata",
        r"digest",
    )
    st("st_meta_bitflip_format", flip_in_header("haltingvt", 0x04), "one flipped bit in the format entry", r"digest")
    st("st_meta_bitflip_digest", flip_in_header(meta["digest"][:12], 0x01), "one flipped bit in the digest", r"digest")
    st(
        "st_meta_bitflip_key",
        flip_in_header('format_version":"1"', 0x02),
        "one flipped bit in a metadata key",
        r"digest",
    )
    st(
        "st_digest_edited_meta",
        with_header({**header, "__metadata__": {**meta, "classes": json.dumps(["waving", "clapping", "sitting"])}}),
        "class names edited, digest kept",
        r"digest",
    )
    # an edit whose digest was recomputed reaches the checks behind the digest
    st(
        "st_arch_huge",
        with_header(signed({**meta, "arch": json.dumps({**json.loads(meta["arch"]), "embed_dim": 10**7})})),
        "huge architecture in metadata",
        r"embed_dim",
    )
    st("st_arch_not_json", with_header(signed({**meta, "arch": "{not json"})), "metadata arch not JSON", r"arch")
    for name, bad in CONTROL_NAMES.items():
        st(
            f"st_classes_{name}",
            with_header(signed({**meta, "classes": json.dumps(["waving", f"clap{bad}ping", "x"])})),
            f"a class name with {name} (digest recomputed)",
            r"classes.*control character",
        )
    unsigned = {k: v for k, v in meta.items() if k not in ("digest", "sha256")}
    st(
        "st_handmade_classes_esc",
        with_header(
            {
                **header,
                "__metadata__": {**unsigned, "classes": json.dumps(["waving", "\x1b]52;c;cm0gLXJmIH4=\x07", "x"])},
            }
        ),
        "a class name with an OSC 52 clipboard write, no digest",
        r"classes.*control character",
    )
    first = next(k for k in header if k != "__metadata__")
    bad = copy.deepcopy(header)
    bad[first]["data_offsets"] = [0, len(body) * 4]
    st("st_offsets_out_of_range", with_header(bad), "tensor offsets past the file", r"safetensors")
    bad = copy.deepcopy(header)
    bad[first]["dtype"] = "Q99"
    st("st_unknown_dtype", with_header(bad), "unknown dtype", r"safetensors")
    return cases


def collections_od() -> Any:
    return __import__("collections").OrderedDict()


def _claim_size(whole: bytes, name: str, size: int) -> bytes:
    """``whole`` with the central-directory entry of ``name`` claiming ``size`` bytes (packed and unpacked)."""
    out = bytearray(whole)
    entry = whole.rfind(b"PK\x01\x02", 0, whole.rfind(name.encode()) + 1)
    while not whole[entry + 46 : entry + 46 + len(name)] == name.encode():
        entry = whole.rfind(b"PK\x01\x02", 0, entry)
    out[entry + 20 : entry + 28] = struct.pack("<II", size, size)
    return bytes(out)


def resave_safetensors(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    drop: tuple[str, ...] = ("config_sha256",),
    update: dict[str, str] | None = None,
    digest: bool = True,
) -> Path:
    """``src`` (our .safetensors) written again as ``dst`` with the metadata entries ``drop`` removed and
    ``update`` set: with a digest recomputed over the result (``digest=True``: what an older or a
    hand-driven save of ours writes), or with no digest at all (made by hand)."""
    from safetensors import safe_open

    from haltingvt.models.weights import safetensors_bytes

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = {k: v for k, v in meta.items() if k not in drop and k not in ("digest", "sha256")}
    meta.update(update or {})
    dst = Path(dst)
    if digest:
        dst.write_bytes(safetensors_bytes(tensors, raw_metadata=meta))
    else:
        dst.write_bytes(safetensors.torch.save(tensors, metadata=meta))
    return dst


# ----------------------------------------------------------------------------- kill -9 while a folder is written
#: File operations of ``atomic_write_folder`` a trial may kill the writer before (os.write also halfway).
FOLDER_OPS = (
    ("os", "open"),
    ("os", "write"),
    ("os", "fsync"),
    ("os", "close"),
    ("os", "mkdir"),
    ("os", "rename"),
    ("os", "replace"),
    ("os", "link"),
    ("os", "symlink"),
    ("os", "chmod"),
    ("shutil", "rmtree"),
    ("weights", "_exchange"),
)


def folder_kill_trials(root: str, mode: str, random_kills: int = 0, seed: int = 0) -> dict[str, Any]:
    """Kill -9 a process writing ``save_pretrained`` of model B over the folder of model A, before each file
    operation of the write in turn (and halfway through each os.write), then ``random_kills`` times at a
    random instant of a loop of saves; after each kill, what the folder and any leftover beside it load as.

    Runs in a process of its own (the tests start it with ``python -c``): each trial is a fork. ``mode``:
    'exchange' (the atomic swap) or 'fallback' (no swap: the target renamed away, then the new one in).
    Returns {"ops": [op names of one write], "trials": [{"kill": ..., "state": ..., "leftovers": [...],
    "interrupted": ..., "after_next_save": ..., "left_after_next_save": [...]}]}.
    """
    import random
    import shutil
    import signal
    import time
    import warnings

    import haltingvt
    from haltingvt.io import atomic as weights  # atomic_write_folder's module: _exchange, interrupted_save
    from haltingvt.models.weights import CheckpointError, read_checkpoint

    torch.set_num_threads(1)
    root_dir = Path(root)
    arch = dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, num_heads=2, depth=3, num_classes=3)
    models, names = {}, {"A": ["a0", "a1", "a2"], "B": ["b0", "b1", "b2"]}
    for seed_, key in enumerate("AB"):
        torch.manual_seed(seed_)
        models[key] = haltingvt.HaltingVT(arch)
    target = root_dir / "model"
    if mode == "fallback":
        weights._exchange = lambda a, b: False

    def save(key: str) -> None:
        models[key].save_pretrained(target, classes=names[key])

    def state(folder: Path) -> str:
        """'A', 'B', 'refused', 'warned' (loaded with a warning) or 'mix'."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                obj = read_checkpoint(folder)
            except CheckpointError:
                return "refused"
        if caught:
            return "warned"
        for key, model in models.items():
            if obj["classes"] == names[key]:
                same = all(torch.equal(v, obj["model"][k]) for k, v in model.state_dict().items())
                return key if same else "mix"
        return "mix"

    def reset() -> None:
        for entry in root_dir.iterdir():
            shutil.rmtree(entry)
        save("A")

    def hooked(kill_at: int | None, halfway: bool, log: list[str]) -> None:
        """In the forked writer: count the file operations, kill -9 before the kill_at-th."""
        modules = {"os": os, "shutil": shutil, "weights": weights}
        for mod_name, fn_name in FOLDER_OPS:
            module = modules[mod_name]
            real = getattr(module, fn_name)

            def wrapper(*args, _real=real, _name=f"{mod_name}.{fn_name}", **kwargs):
                log.append(_name)
                if kill_at is not None and len(log) == kill_at:
                    if halfway and _name == "os.write" and len(args[1]) > 1:
                        _real(args[0], bytes(args[1][: len(args[1]) // 2]))
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real(*args, **kwargs)

            setattr(module, fn_name, wrapper)

    def leftovers() -> list[Path]:
        return [p for p in root_dir.iterdir() if p.name != "model"]

    def trial(kill: str, child) -> dict[str, Any]:
        reset()
        pid = os.fork()
        if pid == 0:  # the writer
            try:
                child()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        result = {
            "kill": kill,
            "state": state(target) if target.exists() else "missing",
            "leftovers": sorted(f"{p.name[-4:]}:{state(p)}" for p in leftovers()),
        }
        left = weights.interrupted_save(target)
        result["interrupted"] = state(left) if left is not None else None
        save("B")  # the next write cleans up (and in fallback mode first puts a folder renamed away back)
        result["after_next_save"] = state(target)
        result["left_after_next_save"] = [p.name for p in leftovers()]
        return result

    # one write, counted
    reset()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        log: list[str] = []
        hooked(None, False, log)
        save("B")
        os.write(write_fd, json.dumps(log).encode())
        os._exit(0)
    os.close(write_fd)
    ops = json.loads(os.fdopen(read_fd).read())
    os.waitpid(pid, 0)
    trials = []
    for k, op in enumerate(ops, start=1):
        for halfway in (False, True) if op == "os.write" else (False,):

            def child(k=k, halfway=halfway) -> None:
                hooked(k, halfway, [])
                save("B")

            trials.append(trial(f"{'halfway through' if halfway else 'before'} #{k} {op}", child))
    rng = random.Random(seed)
    for i in range(random_kills):
        reset()
        pid = os.fork()
        if pid == 0:
            while True:
                save("B")
                save("A")
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        result = {
            "kill": f"random {i}",
            "state": state(target) if target.exists() else "missing",
            "leftovers": sorted(f"{p.name[-4:]}:{state(p)}" for p in leftovers()),
        }
        left = weights.interrupted_save(target)
        result["interrupted"] = state(left) if left is not None else None
        save("B")
        result["after_next_save"] = state(target)
        result["left_after_next_save"] = [p.name for p in leftovers()]
        trials.append(result)
    return {"ops": ops, "trials": trials}
