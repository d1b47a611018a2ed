"""Hub-format weights: save_pretrained / from_pretrained / push_to_hub, Predictor and `haltingvt predict` on
such a folder, `haltingvt convert` of the release fixture, and the checks on config.json. All offline."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

import haltingvt
from haltingvt.cli import main
from haltingvt.config import load_config
from haltingvt.io.tensorfile import tensor_digest
from haltingvt.io.textsafe import warning_lines
from haltingvt.models.weights import (
    CheckpointError,
    CheckpointWriteError,
    load_checkpoint,
    model_payload,
    read_checkpoint,
    save_checkpoint,
)

from model_helpers import OFFICIAL
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
    model = haltingvt.HaltingVT(
        dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, num_heads=2, depth=3, num_classes=3)
    )
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


@pytest.mark.slow
def test_convert_release_fixture(tmp_path, official_arch, official_expected, official_clips, capsys):
    cfg = {
        "_base_": "minik_g03_b10",
        "model": {**official_arch, "num_classes": 7},
        "data": {"clip_len": 4, "crop_size": 64, "test_scale": 73},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    names = [f"action {i}" for i in range(7)]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "converted"
    assert (
        main(
            [
                "convert",
                str(OFFICIAL / "checkpoint.pth"),
                str(out),
                "--config",
                str(tmp_path / "tiny.yaml"),
                "--classes",
                str(tmp_path / "classes.txt"),
            ]
        )
        == 0
    )
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


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("broken_json", lambda d: '{"format": "haltingvt",\n "model": ', r"config\.json:2: invalid JSON"),
        ("huge_arch", lambda d: d["model"].update(embed_dim=200_000, depth=100), r"billion parameters|embed_dim"),
        ("negative_depth", lambda d: d["model"].update(depth=-3), r"depth -3"),
        ("other_arch", lambda d: d["model"].update(num_heads=4), r"differs"),
        ("classes_path", lambda d: d.update(classes="/etc/passwd"), r"classes"),
        ("not_ours", lambda d: d.update(format="pt"), r"not a haltingvt config"),
        ("bad_pipeline", lambda d: d["data"].update(test_num_crops=7), r"test_num_crops"),
        ("extra_key", lambda d: d.update(clases=["a", "b", "c"]), r'unknown key "clases"'),
        ("missing_test", lambda d: d.pop("test"), r'"test" must be a mapping'),
        ("missing_model", lambda d: d.pop("model"), r'"model" must be a mapping'),
        ("future_version", lambda d: d.update(format_version=2), r"format_version 2 is not one this haltingvt reads"),
        ("name_esc", lambda d: d.update(name="tiny\x1b[2J\x1b[H"), r'"name" .*control character U\+001B'),
        (
            "classes_esc",
            lambda d: d.update(classes=["waving", "clap\x1b[31mping", "standing still"]),
            r'"classes"\[1\] .*control character U\+001B',
        ),
        ("classes_nul", lambda d: d.update(classes=["waving", "clap\x00", "standing still"]), r"U\+0000 NUL"),
        ("classes_rlo", lambda d: d.update(classes=["waving", "\u202egnippalc", "standing still"]), r"U\+202E"),
        (
            "classes_renamed",
            lambda d: d.update(classes=["waving", "clapping", "sitting"]),
            r"class names in config\.json differ .*class 2: 'sitting' vs 'standing still'",
        ),
    ],
)
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
        assert not any(c in str(info.value) for c in "\x1b\x00\u202e")  # shown escaped
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


@pytest.mark.slow
def test_trained_checkpoint_carries_class_names(saved, tmp_path):
    """haltingvt train writes the dataset's class names into its checkpoints; predict shows them."""
    work = tmp_path / "run"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(saved["cfg"]))
    argv = [
        "train",
        str(tmp_path / "cfg.yaml"),
        "--set",
        "data.format=synthetic",
        "data.synthetic_num_train=4",
        "data.synthetic_num_val=2",
        "data.synthetic_classes=[grow,shrink,spin]",
        "data.num_workers=0",
        "data.test_scale=32",
        "data.train_scale=[32,32]",
        "data.randaugment=null",
        "train.epochs=1",
        "train.batch_size=2",
        "train.warmup_epochs=0",
        "init.pretrained=null",
        f"train.work_dir={work}",
    ]
    assert main(argv) == 0
    ckpt = next(p for p in (work / "best.pth", work / "latest.pth") if p.exists())
    assert haltingvt.Predictor(ckpt, device="cpu").class_names == ["grow", "shrink", "spin"]


# ----------------------------------------------------------------------------------------- integrity (issue 22.1)
def _read(path):
    """('ok', obj, warning lines) or ('refused', message, [])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = read_checkpoint(path)
        except CheckpointError as err:
            return "refused", str(err), []
    return "ok", obj, warning_lines(caught)


def _same_content(a, b) -> bool:
    return (
        a["classes"] == b["classes"]
        and a.get("arch") == b.get("arch")
        and a.get("config") == b.get("config")
        and sorted(a["model"]) == sorted(b["model"])
        and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    )


@pytest.mark.slow
def test_one_flipped_bit_anywhere_in_model_safetensors(saved, tmp_path):
    """A bit flipped in the length field, in every metadata byte, across the tensor header and in the tensor
    data: refused with one line naming the file, or (a flip in the name of the digest entry itself) loaded
    with the very same contents and a warning. Never loaded silently with a changed value."""
    raw = (saved["folder"] / "model.safetensors").read_bytes()
    original = read_checkpoint(saved["folder"] / "model.safetensors")
    n = struct.unpack("<Q", raw[:8])[0]
    meta_at = raw.index(b'"__metadata__"')
    meta_end = raw.index(b"}", raw.index(b'"format":"haltingvt"')) + 1
    rng = random.Random(0)
    positions = sorted(
        {
            *range(8),
            *range(meta_at, meta_end),
            *range(8, 8 + n, 5),
            *rng.sample(range(8 + n, len(raw)), 128),
            len(raw) - 1,
        }
    )
    path = tmp_path / "flipped.safetensors"
    outcomes = {"refused": 0, "same, warned": 0}
    for at in positions:
        flipped = bytearray(raw)
        flipped[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        how, got, warned = _read(path)
        if how == "refused":
            assert "\n" not in got and str(path) in got, (at, got)
            outcomes["refused"] += 1
        else:
            assert _same_content(got, original) and len(warned) == 1, (at, raw[at : at + 20], warned)
            outcomes["same, warned"] += 1
    assert outcomes["refused"] >= len(positions) - 8, outcomes  # only a flip in the name "digest" loads


@pytest.mark.slow
def test_one_flipped_bit_anywhere_in_config_json(saved, tmp_path):
    """config.json's bytes are bound to model.safetensors: any flipped bit (whitespace too) is refused, naming
    config.json."""
    raw = (saved["folder"] / "config.json").read_bytes()
    folder = tmp_path / "flipped"
    shutil.copytree(saved["folder"], folder)
    rng = random.Random(1)
    for at in range(0, len(raw), 2):
        flipped = bytearray(raw)
        flipped[at] ^= 1 << rng.randrange(8)
        (folder / "config.json").write_bytes(bytes(flipped))
        how, got, _ = _read(folder)
        assert how == "refused" and "\n" not in got and str(folder / "config.json") in got, (at, got)
        assert re.search(r"does not match the sha256 recorded", got), got


@pytest.mark.parametrize("which", ["model.safetensors", "config.json"])
def test_truncated_files_refused(saved, tmp_path, which):
    raw = (saved["folder"] / which).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0] if which == "model.safetensors" else len(raw) // 2
    folder = tmp_path / "cut"
    shutil.copytree(saved["folder"], folder)
    for size in sorted({0, 1, 7, 8, 9, n, n + 7, n + 8, n + 9, len(raw) // 2, len(raw) - 4, len(raw) - 1}):
        (folder / which).write_bytes(raw[:size])
        for source in (folder, folder / "model.safetensors"):
            if source.name == "model.safetensors" and which == "config.json":
                continue
            how, got, _ = _read(source)
            assert how == "refused" and "\n" not in got and str(folder) in got, (size, got)


def test_mixed_saves_refused(saved, tmp_path):
    """model.safetensors of one save with config.json of another (the mix an interrupted write used to leave):
    refused, naming config.json."""
    other = saved["model"].save_pretrained(tmp_path / "other", classes=["a", "b", "c"], config=saved["cfg"])
    mixed = tmp_path / "mixed"
    shutil.copytree(saved["folder"], mixed)
    shutil.copy(other / "config.json", mixed / "config.json")
    with pytest.raises(CheckpointError, match=r"config\.json: does not match the sha256 recorded"):
        haltingvt.HaltingVT.from_pretrained(mixed)
    shutil.copytree(other, tmp_path / "mixed2")
    shutil.copy(saved["folder"] / "model.safetensors", tmp_path / "mixed2" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"does not match"):
        haltingvt.Predictor(tmp_path / "mixed2", device="cpu")


def _cli_warnings(folder, clip, capsys):
    assert main(["predict", str(folder), str(clip), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if "warning:" in line]


def test_handmade_files_load_with_one_warning(saved, tmp_path, capsys):
    """Without our digest a file or folder still loads, and says so in one line; what it loads is checked
    as before (class names, architecture)."""
    st = saved["folder"] / "model.safetensors"
    cases = {
        "no digest at all": (resave_safetensors(st, tmp_path / "bare.safetensors", digest=False), "without a digest"),
        "older haltingvt (tensor sha256 only)": (
            resave_safetensors(
                st,
                tmp_path / "old.safetensors",
                digest=False,
                update={"sha256": tensor_digest(read_checkpoint(st)["model"])},
            ),
            "older haltingvt",
        ),
    }
    for what, (path, message) in cases.items():
        how, obj, warned = _read(path)
        assert how == "ok" and obj["classes"] == CLASSES and len(warned) == 1 and message in warned[0], (what, warned)
        assert str(path) in warned[0]
    # an older file's tensors are still checked
    raw = bytearray(cases["older haltingvt (tensor sha256 only)"][0].read_bytes())
    raw[-10] ^= 0x04
    (tmp_path / "old_flipped.safetensors").write_bytes(bytes(raw))
    assert _read(tmp_path / "old_flipped.safetensors")[0] == "refused"
    # folders: weights without any digest; ours without config.json's digest. One warning line each.
    for name, digest, message in (("bare", False, "without a digest"), ("unbound", True, "not covered by a digest")):
        folder = tmp_path / name
        shutil.copytree(saved["folder"], folder)
        resave_safetensors(st, folder / "model.safetensors", digest=digest)
        how, obj, warned = _read(folder)
        assert how == "ok" and obj["classes"] == CLASSES and len(warned) == 1 and message in warned[0], warned
        lines = _cli_warnings(folder, saved["clip"], capsys)
        assert len(lines) == 1 and message in lines[0], lines
    assert _cli_warnings(saved["folder"], saved["clip"], capsys) == []  # ours: no warning


# ----------------------------------------------------------------------------------------- whole folders (issue 22.2)
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_kill_during_save_pretrained_leaves_old_or_new(tmp_path, mode):
    """kill -9 of save_pretrained(B) over the folder of A before each of its file operations (and halfway
    through each write), then at random instants of a loop of saves: the folder loads as A or B, never a
    mix; what an interrupted write leaves beside it loads as A or B or not at all; the next save cleans up.
    'fallback': without the atomic exchange the target is missing between two renames: the folder renamed
    away is then A, the loader names it, and the next save puts it back first."""
    script = (
        "import json, sys; from security_helpers import folder_kill_trials; "
        f"print(json.dumps(folder_kill_trials({str(tmp_path)!r}, {mode!r}, random_kills=8, seed=2)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    ops, trials = report["ops"], report["trials"]
    # the op number that makes B visible (fallback: the exchange is unavailable, then mkdir, rename away, rename in)
    swap = ops.index("weights._exchange") + 1 + (3 if mode == "fallback" else 0)
    assert len(trials) >= len(ops) + 8
    missing = []
    for t in trials:
        assert t["after_next_save"] == "B" and t["left_after_next_save"] == [], t
        assert all(s.split(":")[1] in ("A", "B", "refused") for s in t["leftovers"]), t
        if t["state"] == "missing":
            missing.append(t)
            assert t["interrupted"] == "A", t
            continue
        assert t["state"] in ("A", "B"), t
        if t["kill"].startswith(("before", "halfway")):
            k = int(t["kill"].split("#")[1].split()[0])
            assert t["state"] == ("A" if k <= swap else "B"), (t, swap)
    if mode == "exchange":
        assert not missing
    else:
        assert [t["kill"] for t in missing if not t["kill"].startswith("random")] == [f"before #{swap} os.rename"]


def test_save_pretrained_keeps_other_files_and_links(saved, tmp_path):
    """A folder replaced whole keeps what else it held (a Hub clone's .git, notes), as hard links; a target
    that is a symbolic link is written where it points."""
    folder = saved["model"].save_pretrained(tmp_path / "repo", classes=CLASSES, config=saved["cfg"])
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "objects" / "ab").write_bytes(b"blob")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / "latest").symlink_to("model.safetensors")
    before = (folder / "config.json").read_bytes()
    saved["model"].save_pretrained(folder, classes=["x", "y", "z"], config=saved["cfg"])
    assert (folder / ".git" / "objects" / "ab").read_bytes() == b"blob"
    assert (folder / ".gitattributes").read_text() == "*.safetensors filter=lfs\n"
    assert os.readlink(folder / "latest") == "model.safetensors"
    assert (folder / "config.json").read_bytes() != before
    assert haltingvt.HaltingVT.from_pretrained(folder).classes == ["x", "y", "z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # nothing left beside it
    link = tmp_path / "link"
    link.symlink_to(folder)
    saved["model"].save_pretrained(link, classes=CLASSES, config=saved["cfg"])
    assert link.is_symlink() and haltingvt.HaltingVT.from_pretrained(folder).classes == CLASSES


def test_save_pretrained_failure_keeps_previous_folder(saved, tmp_path, monkeypatch):
    folder = saved["model"].save_pretrained(tmp_path / "m", classes=CLASSES, config=saved["cfg"])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointWriteError, match="No space left") as info:
        saved["model"].save_pretrained(folder, classes=["x", "y", "z"], config=saved["cfg"])
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointWriteError, match="not a folder"):
        saved["model"].save_pretrained(tmp_path / "file")
