"""Can timm's ImageNet weights be had now? A check of a few seconds before timm's download retries.

``init.pretrained: deit_small_patch16_224`` makes timm download the weights from the Hugging Face Hub
(or the model's URL). Offline, timm retries for about a minute and then fails without saying what to
do instead. :func:`timm_download_problem` answers first: weights already in the local cache are fine;
otherwise ``HF_HUB_OFFLINE`` set, or no HTTP answer from the Hub (``HF_ENDPOINT``; through the proxy
when one is configured) within ``timeout`` seconds, is a problem, described in one phrase.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import cast

import torch.hub

#: Files timm reads from a Hub repository, in its order of preference.
HUB_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_TRUE = ("1", "on", "yes", "true")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _pretrained_source(name: str) -> tuple[str | None, str | None] | None:
    """(hub repo id, url) of timm model ``name``'s default weights; None when timm does not know the name."""
    import timm  # deferred (slow, optional): timm's model registry, only needed for timm names
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name.split(".")[0]):
        return None
    try:
        cfg = get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        return None
    if cfg is None:
        return None
    return getattr(cfg, "hf_hub_id", None) or None, getattr(cfg, "url", None) or None


def _cached(repo_id: str | None, url: str | None) -> bool:
    if repo_id:
        from huggingface_hub import try_to_load_from_cache  # deferred (optional): huggingface_hub, Hub cache only

        cache_dir = os.environ.get("HF_HUB_CACHE") or None
        repo_id = repo_id.split("@")[0]
        for filename in HUB_FILES:
            if isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir), str):
                return True
    if url:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(url).path))
        if os.path.isfile(path):
            return True
    return False


def can_reach(url: str, timeout: float) -> str | None:
    """None when ``url`` answers an HTTP HEAD request (any status) within ``timeout`` seconds, else why not.

    Goes through the configured proxy like every urllib request; a thread bounds the name lookup too,
    which socket timeouts do not cover.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered: it is reachable
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            outcome.append(f"{type(reason).__name__}: {reason}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def timm_download_problem(name: str, timeout: float = 3.0) -> str | None:
    """Why timm cannot fetch the weights of ``name`` now, or None (cached, reachable, or not a timm name).

    Takes at most about ``timeout`` seconds plus timm's import.
    """
    source = _pretrained_source(name)
    if source is None:
        return None
    repo_id, url = source
    if _cached(repo_id, url):
        return None
    if repo_id:
        from huggingface_hub import constants  # deferred (optional): huggingface_hub, Hub settings only

        if _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set and they are not in the Hugging Face cache"
        endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    else:  # url is None only for a timm config with neither a Hub id nor a URL
        endpoint = cast(str, url)
    why = can_reach(endpoint, timeout)
    if why is None:
        return None
    return f"they are not cached and {endpoint} cannot be reached ({why})"


def pretrained_hint(name: str, problem: str) -> str:
    """The one-line error for ``init.pretrained: NAME`` when :func:`timm_download_problem` found ``problem``."""
    return (
        f"init.pretrained: '{name}' names timm's ImageNet weights, but {problem}. Pass a local file instead: "
        f"--set init.pretrained=/path/to/{name}.pth (or .safetensors; saved once where you are online, e.g. "
        f"torch.save(timm.create_model('{name}', pretrained=True).state_dict(), '{name}.pth')), "
        "or init.pretrained=null to start from random weights"
    )


__all__ = ["timm_download_problem", "pretrained_hint", "can_reach"]
