"""init.pretrained as a timm name while offline: a problem found in seconds, and a hint to pass a file."""

from __future__ import annotations

import time

import pytest

from haltingvt.io.offline import pretrained_hint, timm_download_problem

NAME = "deit_small_patch16_224"


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


def test_hf_hub_offline_is_a_problem_with_a_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem = timm_download_problem(NAME)
    assert "HF_HUB_OFFLINE is set" in problem
    hint = pretrained_hint(NAME, problem)
    assert hint.startswith(f"init.pretrained: '{NAME}' names timm's ImageNet weights, but HF_HUB_OFFLINE")
    assert "--set init.pretrained=/path/to/deit_small_patch16_224.pth" in hint and "init.pretrained=null" in hint


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://hub.invalid"])
def test_unreachable_endpoint_is_found_within_seconds(monkeypatch, endpoint):
    import timm  # noqa: F401  (imported before the clock starts: the check is what is timed)

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    start = time.perf_counter()
    problem = timm_download_problem(NAME, timeout=2.0)
    assert time.perf_counter() - start < 3.0
    assert f"{endpoint} cannot be reached" in problem


def test_cached_weights_and_other_names_are_no_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert timm_download_problem("not_a_timm_model_name") is None
    repo = tmp_path / "hub" / "models--timm--deit_small_patch16_224.fb_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"")
    assert timm_download_problem(NAME) is None
