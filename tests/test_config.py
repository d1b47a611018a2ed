"""Configs: the released files, overrides, the schema (defaults, unknown keys, types, ranges)."""
import pytest

import haltingvt
from haltingvt.config import ConfigError, apply_overrides, load_config


RELEASED = ["minik_g03_b5", "minik_g03_b10", "minik_g05_b20", "minik_g07_b20",
            "anet_g03_b10", "anet_g05_b10", "anet_g05_b20", "anet_g07_b20"]


def test_released_configs():
    assert set(RELEASED) <= set(haltingvt.available_configs())
    cfg = load_config("minik_g05_b20")
    assert cfg["model"]["keep_rate"] == [1.0, 0.5] and cfg["model"]["halt_center"] == 20
    assert cfg["data"]["clip_len"] == 8 and cfg["data"]["frame_interval"] == 32 and cfg["train"]["epochs"] == 20
    anet = load_config("anet_g07_b20")
    assert anet["model"]["num_frames"] == 10 and anet["loss"]["multi_label"] and anet["train"]["epochs"] == 50
    assert anet["data"]["frame_interval"] == 64



def test_overrides_and_errors():
    cfg = load_config("minik_g03_b10", ["train.lr=2e-5", "model.keep_rate=[1.0, 0.5]"])
    assert cfg["train"]["lr"] == 2e-5 and cfg["model"]["keep_rate"] == [1.0, 0.5]
    with pytest.raises(ConfigError, match="train.lrr"):
        apply_overrides(cfg, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="nosuch"):
        load_config("nosuch")
    with pytest.raises(ConfigError, match="bogus"):
        haltingvt.create_model({"bogus": 1})


@pytest.mark.parametrize("override, message", [
    ("model.depth=abc", "'model.depth': 'abc' is not allowed (allowed: an integer"),
    ("train.epochs=two", "'train.epochs': 'two' is not allowed"),
    ("train.epochs=0", "'train.epochs': 0 is not allowed (allowed: an integer in [1, inf))"),
    ("model.keep_rate=1.0,0.5", "'model.keep_rate': '1.0,0.5' is not allowed (allowed: a list of numbers in (0, 1])"),
    ("model.keep_rate=[1.0]", "needs one value per Glimpser layer"),
    ("train.amp=fp32", "allowed: one of none, bf16, fp16"),
    ("loss.bogus=1", "unknown config key 'loss.bogus'"),
    ("model.tubelet_size=3", "'model.tubelet_size': 3 must divide model.num_frames (8)"),
])
def test_schema_errors_name_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("minik_g03_b10", [override])
    assert message in str(err.value)


def test_every_key_filled_from_code_defaults():
    cfg = load_config({"model": {"depth": 4, "divid_depth": 3}, "loss": {"motion_loss": False}})
    assert cfg["model"]["keep_rate"] == [1.0, 1.0, 1.0]  # default keep rates follow divid_depth
    assert cfg["model"]["embed_dim"] == haltingvt.HaltingVTConfig().embed_dim
    assert cfg["loss"]["ponder_token_scale"] == haltingvt.LossConfig().ponder_token_scale
    assert cfg["train"]["amp"] == "none" and cfg["test"]["execution"] == "compact"
    with pytest.raises(ConfigError, match="unknown config section 'trian'"):
        load_config({"trian": {}})
    with pytest.raises(ConfigError, match="unknown config key 'data.bogus'"):
        load_config({"data": {"bogus": 1}})


def test_dict_inherits_with_base_as_a_file_does(tmp_path):
    """A dict with ``_base_`` resolves like a YAML file with it: the base's keys, deep-merged under the dict's."""
    as_dict = load_config({"_base_": "scratch_motion", "model": {"num_classes": 2}, "train": {"epochs": 3}})
    (tmp_path / "run.yaml").write_text("_base_: scratch_motion\nmodel:\n  num_classes: 2\ntrain:\n  epochs: 3\n")
    as_file = load_config(tmp_path / "run.yaml")
    as_file.pop("name", None), as_dict.pop("name", None)  # a file is named after itself
    assert as_dict == as_file
    assert as_dict["model"]["patch_size"] == 4 and as_dict["train"]["lr"] == 5.0e-4  # from scratch_motion
    with pytest.raises(ConfigError, match="nosuch"):
        load_config({"_base_": "nosuch"})
