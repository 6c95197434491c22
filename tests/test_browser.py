"""The browser page in a real headless Chromium with a fake microphone fed from the example wav: the demo
model's transcript appears on the page (a screenshot is saved). Skipped only where chromium is not installed."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conftest import EXAMPLE_TEXT, EXAMPLE_WAV
from modelscope_paraformer import DEMO_MODEL_DIR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM or not CHROMEDRIVER,
                       reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(not (DEMO_MODEL_DIR / "model.pt").is_file(), reason="demo model not built"),
]
SCREENSHOT_COPY = Path("/tmp/serving_screenshot.png")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("websockets", reason="the server needs websockets")
    from modelscope_paraformer.serving.launch import ServerProcess

    with ServerProcess(["--num-threads", "1"], tmp_path_factory.mktemp("browser") / "server.log") as process:
        yield process


@pytest.fixture()
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={EXAMPLE_WAV}%noloop", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1000,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_microphone_page_shows_the_transcript(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{server.port}/")
    assert "Paraformer" in browser.title
    browser.find_element(By.ID, "start").click()  # a real click: the AudioContext may start
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        text = browser.find_element(By.ID, "sentences").text.replace(" ", "")
        if EXAMPLE_TEXT in text:
            break
        time.sleep(0.25)
    status = browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "stop").click()
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    shutil.copy(shot, SCREENSHOT_COPY)
    assert EXAMPLE_TEXT in text, (text, status, server.log_text()[-2000:])
    assert "Hz" in status  # the page reports the rate it sends as audio_fs


def test_file_upload_in_offline_mode(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{server.port}/")
    browser.find_element(By.ID, "file").send_keys(str(EXAMPLE_WAV))
    browser.find_element(By.ID, "upload").click()
    deadline, text = time.monotonic() + 30, ""
    while time.monotonic() < deadline and EXAMPLE_TEXT not in text:
        text = browser.find_element(By.ID, "sentences").text.replace(" ", "")
        time.sleep(0.2)
    assert EXAMPLE_TEXT in text
    assert browser.find_element(By.ID, "status").text == "Done."
