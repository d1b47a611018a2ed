"""``haltingvt app`` in a real browser: headless Chromium driven by selenium, and the screenshot of docs/guide.md.

    python -m tests.harness.app_screenshot                                   # docs/images/app.png, a tiny random model
    python -m tests.harness.app_screenshot --checkpoint demo_out/work/best.pth --out docs/images/app.png

The page is served in this process on a free port of 127.0.0.1; the browser picks the example clip ``--example``
(a synthetic clip written at start-up) or uploads ``--video``, presses "Classify" and waits for the top class.

Needs the ``app`` extra (gradio, selenium) and Chromium with its driver from the system's packages
(Debian: ``apt-get install chromium chromium-driver``); nothing is downloaded (Selenium Manager stays offline).
tests/test_app.py uses :func:`chrome`, :func:`classify_in_browser` and :func:`serve` from here.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

import haltingvt
from haltingvt.app import launch
from haltingvt.config import load_config
from haltingvt.models.weights import model_payload
from haltingvt.predict import Predictor

from tests.model_helpers import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "images" / "app.png"
#: The page's width and height in the browser (CSS pixels).
WINDOW = (1280, 1180)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


class NoBrowser(RuntimeError):
    """No Chromium, no chromedriver or no selenium here: the reason, for a skip."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chrome(window: tuple[int, int] = WINDOW):
    """A headless Chromium under selenium, from the system's packages. Raises NoBrowser saying what is missing."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise NoBrowser("selenium is not installed (pip install 'haltingvt[app]')") from None
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    driver = next((path for path in map(shutil.which, DRIVERS) if path), None)
    if browser is None or driver is None:
        raise NoBrowser(
            f"no {'Chromium' if browser is None else 'chromedriver'} on PATH "
            "(Debian/Ubuntu: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
    ):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except Exception as err:  # noqa: BLE001 - a browser that does not start: a reason to skip, one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise NoBrowser(f"Chromium did not start: {type(err).__name__}: {first}") from None


def classify_in_browser(driver, url: str, *, example: str | None = None, video: str | None = None, timeout=60.0):
    """Load the page, pick the example clip named ``example`` (its file name) or upload ``video``, press
    "Classify" and wait for the result. Returns (top class as the page shows it, the status line)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    driver.get(url)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#classify")))
    if example is not None:
        items = driver.find_elements(By.CSS_SELECTOR, ".gallery-item")
        matching = [item for item in items if item.text.strip() == example]
        if not matching:
            raise AssertionError(f"no example clip {example!r} on the page; found {[i.text for i in items]}")
        matching[0].click()
    else:
        upload = driver.find_element(By.CSS_SELECTOR, "#video input[type=file]")
        upload.send_keys(str(Path(video).resolve()))
    # the clip is in the player before the button is pressed
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video video"))
    driver.find_element(By.CSS_SELECTOR, "#classify").click()
    wait.until(lambda d: "Upload a video" not in d.find_element(By.CSS_SELECTOR, "#status").text)
    status = driver.find_element(By.CSS_SELECTOR, "#status").text.strip()
    if status.startswith("Error"):
        return None, status
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#top [data-testid=label-output-value]"))
    top = driver.find_element(By.CSS_SELECTOR, "#top [data-testid=label-output-value]").text.strip()
    # the pictures arrive with the same update; wait until the browser has them
    wait.until(lambda d: d.execute_script("return [...document.querySelectorAll('#picture img, #gif img')]" + _LOADED))
    return top, status


_LOADED = ".filter(i => i.complete && i.naturalWidth > 0).length === 2"


def save_screenshot(driver, out: str | os.PathLike, colours: int = 128) -> Path:
    """The whole page as a PNG at ``out``, reduced to ``colours`` colours (a small file for the docs)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    width = int(driver.execute_script("return document.documentElement.clientWidth"))
    driver.set_window_size(WINDOW[0], max(WINDOW[1], height + 120))
    time.sleep(0.5)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image = image.crop((0, 0, min(width, image.width), min(height, image.height)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def tiny_checkpoint(folder: str | os.PathLike) -> Path:
    """A small random model (tests/model_helpers.py's TINY_OVERRIDES) with five of the synthetic class names,
    so that the page offers the synthetic example clips."""
    cfg = load_config("minik_g03_b10", TINY_OVERRIDES)
    cfg["data"]["classes"] = None
    torch.manual_seed(0)
    model = haltingvt.create_model(cfg)
    names = ["move_right", "move_left", "move_up", "move_down", "grow"]
    return haltingvt.save_checkpoint(Path(folder) / "tiny.pth", model_payload(model, cfg, classes=names))


def serve(checkpoint: str | os.PathLike, examples_dir: str | os.PathLike | None = None):
    """The page of ``checkpoint`` served on a free port: (Blocks, URL, temporary folder of its clips)."""
    predictor = Predictor(checkpoint, device="cpu")
    return launch(
        predictor, examples_dir=examples_dir, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model to serve (default: a tiny random model with synthetic classes)")
    parser.add_argument("--example", default="move_right.mp4", help="example clip to pick (default move_right.mp4)")
    parser.add_argument("--video", help="upload this video file instead of picking an example")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"screenshot (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or tiny_checkpoint(tmp)
        demo, url, work = serve(checkpoint)
        try:
            driver = chrome()
        except NoBrowser as err:
            print(f"app_screenshot: {err}", file=sys.stderr)
            demo.close()
            work.cleanup()
            return 1
        try:
            top, status = classify_in_browser(
                driver, url, example=None if args.video else args.example, video=args.video
            )
            out = save_screenshot(driver, args.out)
        finally:
            driver.quit()
            demo.close()
            work.cleanup()
    print(f"top class {top!r} ({status}); screenshot {out} ({out.stat().st_size // 1024} KB)")
    return 0 if top else 1


if __name__ == "__main__":
    raise SystemExit(main())
