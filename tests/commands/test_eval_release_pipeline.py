"""From frames on disk to the release's logits: ``haltingvt eval`` with the release checkpoint on real footage
gives what the release model gives on MMAction2's own pipeline tensors (the oracle extra)."""

import json

import pytest
import torch

from haltingvt.cli import main
from haltingvt.data import build_dataset, collate_eval, normalize

from engine_helpers import one_thread
from footage import real_frame_folders
from model_helpers import OFFICIAL
from oracle_helpers import mm_pipeline, mmaction2_transforms, pipeline_overrides

mmaction2_transforms()  # skip without the oracle extra

#: (clip_len, frame_interval, test_num_clips, test_scale, crop, three crops)
SETTINGS = {"1x1": (4, 16, 1, 72, 64, False), "2x3": (4, 8, 2, 64, 64, True)}


@pytest.mark.slow
@pytest.mark.parametrize("name", SETTINGS)
def test_eval_from_frames_equals_mmaction2_pipeline(tmp_path, capsys, official_arch, official_model, name):
    clip_len, interval, clips, scale, crop, three = SETTINGS[name]
    folders = real_frame_folders(tmp_path / "frames")
    labels = {"bikes": 3, "portrait": 5}
    val = tmp_path / "val.txt"
    val.write_text("".join(f"{n} {total} {labels[n]}\n" for n, (_, total) in folders.items()))
    overrides = [f"model.{k}={json.dumps(v)}" for k, v in official_arch.items()] + [
        "model.num_classes=7",
        "model.depth=12",
        "data.format=rawframes",
        f"data.data_root={tmp_path / 'frames'}",
        f"data.val_list={val}",
        f"data.test_list={val}",
        *pipeline_overrides(clip_len, interval, clips, scale, crop, three),
        "data.num_workers=0",
        "init.pretrained=null",
    ]
    dump = tmp_path / "pred.json"
    with one_thread():
        assert (
            main(
                [
                    "eval",
                    "minik_g03_b10",
                    str(OFFICIAL / "checkpoint.pth"),
                    "--device",
                    "cpu",
                    "--split",
                    "val",
                    "--dump",
                    str(dump),
                    "--set",
                    *overrides,
                ]
            )
            == 0
        )
    assert "2 videos" in capsys.readouterr().out
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(dump.read_text())["predictions"]}

    from haltingvt.config import load_config

    dataset = build_dataset(load_config("minik_g03_b10", overrides), "val")
    batch = collate_eval([dataset[i] for i in range(len(dataset))])
    for i, (n, (folder, total)) in enumerate(folders.items()):
        theirs = torch.from_numpy(mm_pipeline(folder, total, clip_len, interval, clips, scale, crop, three))
        assert torch.equal(batch["clips"][i], theirs)  # the uint8 views, bit for bit
        with torch.no_grad():
            probs = official_model(normalize(theirs)).logits.softmax(-1).mean(0)  # the release's "prob" averaging
        top, classes = probs.topk(5)
        assert rows[n]["topk"] == classes.tolist()
        assert rows[n]["topk_prob"] == pytest.approx(top.tolist(), abs=1e-5)
        assert rows[n]["label"] == labels[n]
