"""Hub-format weights: save_pretrained / from_pretrained / push_to_hub, Predictor and `haltingvt predict` on
such a folder, `haltingvt convert` of the release fixture, and the checks on config.json. All offline."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

import haltingvt
from conftest import OFFICIAL
from haltingvt.cli import main
from haltingvt.config import load_config
from haltingvt.models.weights import CheckpointError, load_checkpoint, model_payload, save_checkpoint
from security_helpers import CLASSES, TINY, resave_safetensors


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    cfg = load_config("minik_g03_b10", [*TINY, "data.classes=/nonexistent/classes.txt"])
    torch.manual_seed(0)
    model = haltingvt.create_model(cfg).eval()
    folder = model.save_pretrained(root / "tiny-model", classes=CLASSES, config=cfg)
    clip = root / "clip"
    clip.mkdir()
    for i in range(1, 7):
        Image.new("RGB", (44, 36), (30 * i, 60, 200 - 20 * i)).save(clip / f"img_{i:05d}.jpg")
    return dict(root=root, cfg=cfg, model=model, folder=folder, clip=clip)


def test_folder_layout(saved):
    folder = saved["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    doc = json.loads((folder / "config.json").read_text())
    assert doc["format"] == "haltingvt" and doc["library_name"] == "haltingvt"
    assert doc["classes"] == CLASSES and doc["model"] == saved["model"].arch
    assert doc["data"] == {k: saved["cfg"]["data"][k] for k in haltingvt.hub.TEST_PIPELINE_KEYS}
    assert "classes" not in doc["data"] and doc["test"]["execution"] == "compact"
    assert "library_name: haltingvt" in (folder / "README.md").read_text()


def test_model_built_directly_saves(tmp_path):
    model = haltingvt.HaltingVT(dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, num_heads=2, depth=3,
                                     num_classes=3))
    loaded = haltingvt.HaltingVT.from_pretrained(model.save_pretrained(tmp_path / "direct"))
    assert loaded.arch == model.cfg.to_dict() and loaded.classes is None
    doc = json.loads((tmp_path / "direct" / "config.json").read_text())
    assert doc["data"]["clip_len"] == 2 and doc["data"]["crop_size"] == 32 and doc["data"]["test_scale"] == 37


def test_round_trip_same_logits(saved):
    loaded = haltingvt.HaltingVT.from_pretrained(saved["folder"])
    assert not loaded.training and loaded.classes == CLASSES and loaded.arch == saved["model"].arch
    x = torch.randn(2, 3, 2, 32, 32)
    for execution in ("masked", "compact"):
        a, b = saved["model"](x, execution=execution), loaded(x, execution=execution)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.token_counts, b.token_counts)
    # the folder, its model.safetensors and a .pth of ours are all full-model weights for load_checkpoint
    other = haltingvt.create_model(saved["cfg"])
    assert load_checkpoint(other, saved["folder"])["classes"] == CLASSES
    assert load_checkpoint(other, saved["folder"] / "model.safetensors")["classes"] == CLASSES
    assert torch.equal(other(x, execution="masked").logits, saved["model"](x, execution="masked").logits)


def test_predictor_and_cli_on_folder(saved, capsys):
    predictor = haltingvt.Predictor.from_pretrained(saved["folder"], device="cpu")
    assert predictor.class_names == CLASSES and predictor.views == (1, 1)
    res = predictor.predict(saved["clip"])
    assert res["top"][0]["label"] in CLASSES
    assert main(["predict", str(saved["folder"]), str(saved["clip"]), "--json", "--workers", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["results"][0]["top"][0]["label"] == res["top"][0]["label"]
    assert [t["label"] for t in doc["results"][0]["top"]] == [t["label"] for t in res["top"]]


def test_our_weights_never_taken_for_imagenet_init(saved, tmp_path):
    """Full-model weights (ours, or a bare HaltingVT state dict in .safetensors) used as init.pretrained are
    loaded as a whole model, and the result says so; only a classifier of another size stays new."""
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in saved["model"].state_dict().items()}, str(plain))
    x = torch.randn(1, 3, 2, 32, 32)
    for source in (saved["folder"] / "model.safetensors", plain):
        model = haltingvt.create_model(saved["cfg"])
        meta = load_checkpoint(model, source, init=True)
        assert meta["format"] == "haltingvt" and meta["init"]["kind"] == "haltingvt" and meta["init"]["new"] == []
        assert torch.equal(model(x, execution="masked").logits, saved["model"](x, execution="masked").logits)
    five = haltingvt.create_model(saved["cfg"], num_classes=5)
    meta = load_checkpoint(five, plain, init=True)
    assert meta["init"]["new"] == ["head.fc_cls.weight", "head.fc_cls.bias"]
    assert torch.equal(five.blocks[0].temporal_attn.qkv.weight, saved["model"].blocks[0].temporal_attn.qkv.weight)
    with pytest.raises(CheckpointError, match="head.fc_cls.weight"):  # outside init: a different head does not fit
        load_checkpoint(haltingvt.create_model(saved["cfg"], num_classes=5), plain)


def test_convert_release_fixture(tmp_path, official_arch, official_expected, official_clips, capsys):
    cfg = {"_base_": "minik_g03_b10", "model": {**official_arch, "num_classes": 7},
           "data": {"clip_len": 4, "crop_size": 64, "test_scale": 73}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    names = [f"action {i}" for i in range(7)]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "converted"
    assert main(["convert", str(OFFICIAL / "checkpoint.pth"), str(out), "--config", str(tmp_path / "tiny.yaml"),
                 "--classes", str(tmp_path / "classes.txt")]) == 0
    assert str(out) in capsys.readouterr().out
    model = haltingvt.HaltingVT.from_pretrained(out)
    assert model.classes == names
    for execution in ("masked", "compact"):
        with torch.no_grad():
            res = model(official_clips, execution=execution)
        torch.testing.assert_close(res.logits, official_expected["cls_scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(res.features, official_expected["features"], atol=1e-4, rtol=0)
        assert torch.equal(res.token_counts, official_expected["token_nums"])
    # a release checkpoint without --config: one line saying what is missing
    assert main(["convert", str(OFFICIAL / "checkpoint.pth"), str(tmp_path / "x")]) == 2
    assert "--config" in capsys.readouterr().err


def _edit_config(folder: Path, dest: Path, change, bound: bool = False) -> Path:
    """A copy of ``folder`` with config.json changed; its weights record no digest of config.json (a folder
    put together by hand) unless ``bound``."""
    dest.mkdir()
    if bound:
        (dest / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    else:
        resave_safetensors(folder / "model.safetensors", dest / "model.safetensors")
    doc = json.loads((folder / "config.json").read_text())
    text = change(doc)
    (dest / "config.json").write_text(text if isinstance(text, str) else json.dumps(doc))
    return dest


@pytest.mark.parametrize("name,change,message", [
    ("broken_json", lambda d: '{"format": "haltingvt",\n "model": ', r"config\.json:2: invalid JSON"),
    ("huge_arch", lambda d: d["model"].update(embed_dim=200_000, depth=100), r"billion parameters|embed_dim"),
    ("negative_depth", lambda d: d["model"].update(depth=-3), r"depth -3"),
    ("other_arch", lambda d: d["model"].update(num_heads=4), r"differs"),
    ("classes_path", lambda d: d.update(classes="/etc/passwd"), r"classes"),
    ("not_ours", lambda d: d.update(format="pt"), r"not a haltingvt config"),
    ("bad_pipeline", lambda d: d["data"].update(test_num_crops=7), r"test_num_crops"),
])
@pytest.mark.filterwarnings("ignore::haltingvt.models.weights.IntegrityWarning")  # a hand-made folder: warned
def test_config_json_checked_before_allocation(saved, tmp_path, monkeypatch, name, change, message):
    """A config.json put together by hand (no digest of it in model.safetensors): its contents are checked."""
    folder = _edit_config(saved["folder"], tmp_path / name, change)
    bound = _edit_config(saved["folder"], tmp_path / f"{name}_bound", change, bound=True)
    built = []
    real = haltingvt.models.create_model
    monkeypatch.setattr(haltingvt.models, "create_model", lambda *a, **k: built.append(1) or real(*a, **k))
    for load in (haltingvt.HaltingVT.from_pretrained, lambda p: haltingvt.Predictor(p, device="cpu")):
        with pytest.raises((CheckpointError, haltingvt.config.ConfigError), match=message) as info:
            load(folder)
        assert "\n" not in str(info.value) and str(folder) in str(info.value)
        # the same edit in a folder whose weights record config.json's digest: refused by the digest
        with pytest.raises(CheckpointError, match=r"config\.json: does not match the sha256 recorded") as info:
            load(bound)
        assert "\n" not in str(info.value) and str(bound / "config.json") in str(info.value)
    assert not built


def test_missing_folder_and_uncached_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="not a haltingvt model folder"):
        haltingvt.HaltingVT.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no such file or folder"):
        haltingvt.HaltingVT.from_pretrained(tmp_path / "nope.pth")
    start = time.time()
    with pytest.raises(CheckpointError, match=r"nobody/no-such-model: not a local folder, and the Hub download failed"):
        haltingvt.Predictor.from_pretrained("nobody/no-such-model", local_files_only=True, cache_dir=tmp_path)
    assert time.time() - start < 10


def test_push_to_hub_uploads_the_folder(saved, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            return "commit"

    monkeypatch.setitem(sys.modules, "huggingface_hub", type(sys)("huggingface_hub"))
    sys.modules["huggingface_hub"].HfApi = FakeApi
    model = haltingvt.HaltingVT.from_pretrained(saved["folder"])
    assert model.push_to_hub("me/tiny", token="t") == "commit"
    assert calls["repo"] == ("me/tiny", None, True) and calls["token"] == "t"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["config"]["classes"] == CLASSES and calls["config"]["data"]["test_scale"] == 36


def test_training_checkpoint_names_reach_predict(saved, tmp_path):
    ckpt = save_checkpoint(tmp_path / "best.pth", model_payload(saved["model"], saved["cfg"], classes=CLASSES))
    assert haltingvt.Predictor(ckpt, device="cpu").class_names == CLASSES


def test_trained_checkpoint_carries_class_names(saved, tmp_path):
    """haltingvt train writes the dataset's class names into its checkpoints; predict shows them."""
    work = tmp_path / "run"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(saved["cfg"]))
    argv = ["train", str(tmp_path / "cfg.yaml"), "--set", "data.format=synthetic", "data.synthetic_num_train=4",
            "data.synthetic_num_val=2", "data.synthetic_classes=[grow,shrink,spin]", "data.num_workers=0",
            "data.test_scale=32", "data.train_scale=[32,32]", "data.randaugment=null",
            "train.epochs=1", "train.batch_size=2", "train.warmup_epochs=0", "init.pretrained=null",
            f"train.work_dir={work}"]
    assert main(argv) == 0
    ckpt = next(p for p in (work / "best.pth", work / "latest.pth") if p.exists())
    assert haltingvt.Predictor(ckpt, device="cpu").class_names == ["grow", "shrink", "spin"]
