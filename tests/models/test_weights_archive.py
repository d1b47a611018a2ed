"""haltingvt.models.archive reads torch.save archives without torch.load: the same tensors as torch.load,
views and shared storages kept, and no object the pickle names is imported."""

from __future__ import annotations

import collections
import sys

import torch

from haltingvt.io.archive import Placeholder, find_placeholder, read_torch_zip

from model_helpers import OFFICIAL, refuse_imports


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.stride() == b.stride()
            and a.storage_offset() == b.storage_offset()
            and torch.equal(a, b)
        )
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_same_objects_as_torch_load(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3)).sum().backward()
    opt.step()
    base = torch.arange(12.0)
    obj = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "param": torch.nn.Parameter(torch.ones(2)),
        "view": base[2:10:3],
        "same_storage": base.view(3, 4).t(),
        "bool": torch.ones(3, dtype=torch.bool),
        "bf16": torch.ones(2, dtype=torch.bfloat16),
        "int8": torch.arange(-3, 3, dtype=torch.int8),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(3.5),
        "complex": torch.randn(2, dtype=torch.complex64),
        "plain": (1, "a", None, 2.5, True, b"raw", 2**80, 1 + 2j),
        "set": {1, 2},
        "nested": [[{"k": [1]}]],
    }
    torch.save(obj, tmp_path / "x.pth")
    ours = read_torch_zip(tmp_path / "x.pth")
    assert _same(torch.load(tmp_path / "x.pth", weights_only=True), ours)
    assert type(ours["model"]) is collections.OrderedDict and find_placeholder(ours) is None
    assert ours["view"].untyped_storage().data_ptr() == ours["same_storage"].untyped_storage().data_ptr()


def test_release_fixture_without_mmengine(monkeypatch):
    guard = refuse_imports(monkeypatch, "mmengine", "mmcv")
    obj = read_torch_zip(OFFICIAL / "checkpoint.pth")
    assert guard.tried == [] and "mmengine" not in sys.modules  # its HistoryBuffer became a placeholder
    assert set(obj) >= {"meta", "state_dict", "message_hub"}
    assert all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())
    where, refers_to = find_placeholder(obj)
    assert where.startswith("message_hub") and refers_to.startswith("mmengine.")


def test_placeholder_keeps_nothing():
    cls = type("Placeholder", (Placeholder,), {"__slots__": (), "refers_to": "os.system"})
    p = cls("touch /tmp/x")
    p.__setstate__({"a": 1})
    assert repr(p) == "<placeholder for os.system>" and isinstance(p("again"), Placeholder)
    assert not hasattr(p, "__dict__")
