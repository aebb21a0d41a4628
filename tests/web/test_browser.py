"""``litesam app`` in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven with
Selenium) opens the page, runs everything mode, takes a screenshot and checks that it shows a non-empty overlay;
then a click on the photo in the Prompt tab adds a point and Segment answers with SamPredictor's outputs.

Skipped, with the reason, where Gradio, Selenium, Chromium or its driver is missing (``apt-get install -y chromium
chromium-driver``). Nothing leaves the machine: the browser runs with background networking, component updates,
sync and QUIC off, a fresh profile in a temp folder, and the page uses no web fonts.

The screenshot in docs/images/app_everything.png comes from this test (a trained model and a full-size photo):
    LITESAM_APP_CKPT=runs/real-smoke/litesam/last.ckpt LITESAM_APP_SHOT=docs/images/app_everything.png \\
        .venv/bin/python -m pytest tests/web/test_browser.py
"""
from __future__ import annotations

import io
import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.web.page_server import running_page  # first: Gradio's files in a temp folder (skips without it)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from litesam_pl.web import handlers as H  # noqa: E402

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and os.path.exists(p)), None)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser installed (apt-get install -y chromium "
                       "chromium-driver)"),
    pytest.mark.skipif(DRIVER is None, reason="no chromedriver installed (apt-get install -y chromium-driver)"),
]
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1500", "--hide-scrollbars")


def _browser(home: Path):
    """Headless Chromium whose profile and every other file it writes (its config, dconf cache) are under
    ``home``; the driver is the given one (Selenium Manager never looks anything up)."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={home / 'profile'}"):
        options.add_argument(flag)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"),
               SE_OFFLINE="true")
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER, env=env))


def test_everything_mode_screenshot_shows_an_overlay(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ckpt = os.environ.get("LITESAM_APP_CKPT")  # the docs screenshot: a trained model, looser filters, full size
    slot = H.load_slot(ckpt, img_size=64)
    page_options = dict(max_side=1024, pred_iou_thresh=0.3, stability_score_thresh=0.3) if ckpt else {}
    with running_page(tmp_path / "app", slot, **page_options) as (url, cfg):
        driver = _browser(tmp_path / "browser")
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 120)
            wait.until(ec.element_to_be_clickable((By.ID, "run-everything"))).click()
            img = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#everything-output img")))
            wait.until(lambda d: " mask" in d.find_element(By.ID, "everything-summary").text)
            wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img))
            driver.execute_script("arguments[0].scrollIntoView({block: 'end'})",
                                  driver.find_element(By.ID, "everything-summary"))
            shot = Path(os.environ.get("LITESAM_APP_SHOT") or tmp_path / "page.png")
            assert driver.save_screenshot(str(shot))
            summary = driver.find_element(By.ID, "everything-summary").text
            shown = np.asarray(Image.open(io.BytesIO(img.screenshot_as_png)).convert("RGB"))
            src = img.get_attribute("src")
            served = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src, timeout=30).read())).convert("RGB"))
            # prompt mode: a click on the photo adds a positive point, Segment runs SamPredictor
            driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Prompt')]").click()
            canvas = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#prompt-canvas img")))
            ActionChains(driver).move_to_element(canvas).click().perform()  # the centre of the photo
            points = lambda d: d.find_element(By.CSS_SELECTOR, "#prompt-points textarea").get_attribute("value")
            wait.until(lambda d: points(d).startswith("[["))
            clicked = json.loads(points(driver))
            driver.find_element(By.ID, "run-prompt").click()
            wait.until(lambda d: "predicted IoU" in d.find_element(By.ID, "prompt-summary").text)
            prompt_text = driver.find_element(By.ID, "prompt-summary").text
        finally:
            driver.quit()
    count = summary.split("—")[-1].split(" mask")[0].split()[-1].strip("*")
    assert src.startswith(url) and int(count) >= 1, summary
    photo = H.read_photo(None, next(iter(H.example_photos())), max_side=cfg.max_side).image
    h, w = photo.shape[:2]
    # the click landed where it was made: one positive point near the centre of the photo, prompted
    assert len(clicked) == 1 and clicked[0][2] == 1, clicked
    assert abs(clicked[0][0] - w / 2) <= 0.1 * w + 2 and abs(clicked[0][1] - h / 2) <= 0.1 * h + 2, clicked
    assert "SamPredictor" in prompt_text and prompt_text.count("output") >= 3
    # the picture the page shows: the photo with coloured fills and outlines over a good part of it
    assert served.shape == photo.shape and (served != photo).any(axis=-1).mean() > 0.05
    page = np.asarray(Image.open(shot).convert("RGB"))
    assert page.shape[0] >= 600 and page.shape[1] >= 800 and page.std() > 10  # a rendered page, not blank
    # and on screen: the element's pixels are the overlay (scaled by the browser), not the bare photo
    assert shown.shape[0] > 32 and shown.shape[1] > 32 and shown.std() > 10
    size = shown.shape[1::-1]
    on_screen = shown.astype(int)
    overlay = np.asarray(Image.fromarray(served).resize(size, Image.BILINEAR)).astype(int)
    bare = np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR)).astype(int)
    assert np.abs(on_screen - overlay).mean() < np.abs(on_screen - bare).mean()
