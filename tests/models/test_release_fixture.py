"""The release's checkpoint must give the release's outputs (docs/design.md, section 5)."""

import os
import pickle

import pytest
import torch

import haltingvt

from model_helpers import OFFICIAL, refuse_imports

TOL = 1e-4


@pytest.mark.parametrize("execution", ["masked", "compact"])
def test_release_outputs(official_model, official_clips, official_expected, execution):
    with torch.no_grad():
        out = official_model(official_clips, execution=execution)
    e = official_expected
    assert out.features.shape == (3, 96)
    torch.testing.assert_close(out.features, e["features"], atol=TOL, rtol=0)
    torch.testing.assert_close(out.logits, e["cls_scores"], atol=TOL, rtol=0)
    torch.testing.assert_close(out.motion_logits, e["motion_scores"], atol=TOL, rtol=0)
    assert torch.equal(out.token_counts, e["token_nums"])
    assert torch.equal(out.halting_masks, e["halting_masks"].bool())
    assert torch.equal(out.counter, e["counter_token"])
    torch.testing.assert_close(out.rho, e["rho_token"], atol=TOL, rtol=0)
    assert out.left_tokens == e["left_tokens"].tolist()
    assert out.halting_masks.dtype == torch.bool and out.halting_masks.shape == (3, 10, 21)


def test_release_checkpoint_loads_without_mmengine(monkeypatch):
    guard = refuse_imports(monkeypatch, "mmengine", "mmcv")
    obj = haltingvt.models.weights.read_checkpoint(OFFICIAL / "checkpoint.pth")
    assert set(obj) >= {"meta", "state_dict", "message_hub"}
    assert guard.tried == []  # mmengine's HistoryBuffer became an inert placeholder, nothing was imported
    with pytest.raises(Exception):  # noqa: B017 (torch raises its own unpickling error type)
        torch.load(OFFICIAL / "checkpoint.pth", weights_only=True)


def test_restricted_unpickler_runs_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"backbone.model.x": torch.zeros(1)}, "evil": Evil()}, path, pickle_module=pickle)
    obj = haltingvt.models.weights.read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    assert isinstance(obj["evil"], haltingvt.models.weights.Placeholder)


def test_mismatch_lists_keys_and_shapes(official_arch):
    model = haltingvt.create_model(official_arch, num_classes=10)
    with pytest.raises(haltingvt.CheckpointError) as err:
        haltingvt.load_checkpoint(model, OFFICIAL / "checkpoint.pth")
    msg = str(err.value)
    assert "checkpoint.pth" in msg and "head.fc_cls.weight" in msg and "(7, 96)" in msg and "(10, 96)" in msg
    deeper = haltingvt.create_model({**official_arch, "depth": 13}, num_classes=7)
    with pytest.raises(haltingvt.CheckpointError, match=r"missing keys \(12\).*blocks\.12\."):
        haltingvt.load_checkpoint(deeper, OFFICIAL / "checkpoint.pth")


def test_missing_file_is_named(tmp_path, official_arch):
    model = haltingvt.create_model(official_arch, num_classes=7)
    with pytest.raises(haltingvt.CheckpointError, match="nope.pth"):
        haltingvt.load_checkpoint(model, tmp_path / "nope.pth")
