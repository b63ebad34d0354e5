"""The web page end to end in a real headless Chromium: upload, wait, play, look, download.

Uses Debian's `chromium` and `chromium-driver` (`make test` installs them
with apt-get) through Selenium, with no network and a fresh profile; skipped,
saying why, where they are missing. The server runs in this process on a
free port, with the shipped model, and the downloaded vocals are compared
with what `separate.py` writes for the same song.
"""

import os
import shutil
import threading
import time

import numpy as np
import pytest
import soundfile

from keras_unet.cli import separate
from keras_unet.web.jobs import JobQueue
from keras_unet.web.webapp import create_app
from keras_unet.cli import DEFAULT_MODEL

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (`make test` installs "
           "them with apt-get install chromium chromium-driver; it could not here)")
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium is not installed: pip install -e '.[dev]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--window-size=1100,1500")


@pytest.fixture
def page_url(tmp_path):
    """The page served on 127.0.0.1 from a thread, with the shipped models; its URL."""
    from werkzeug.serving import make_server

    work = tmp_path / "work"
    work.mkdir()
    jobs = JobQueue(str(work))
    app = create_app(jobs, os.path.dirname(DEFAULT_MODEL), DEFAULT_MODEL, 200 << 20)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(10)
    jobs.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile, saving downloads to tmp_path/downloads."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(tmp_path / "downloads")})
    yield driver
    driver.quit()


def _wait_for(driver, script, timeout_seconds=180.0):
    """Waits until a JavaScript expression is truthy; returns its value."""
    return WebDriverWait(driver, timeout_seconds, poll_frequency=0.1).until(
        lambda driver: driver.execute_script(f"return {script};"))


def test_upload_the_bundled_clip_play_look_and_download(page_url, browser, tmp_path):
    import stempeg

    clip = stempeg.example_stem_path()
    assert separate.main([clip, "-o", str(tmp_path / "cli")]) == 0
    cli_vocals = tmp_path / "cli" / "The Easton Ellises - Falcon 69" / "vocals.wav"
    info = soundfile.info(str(cli_vocals))

    browser.get(page_url)
    assert _wait_for(browser, "document.querySelector('#model').value") == DEFAULT_MODEL
    assert browser.find_element(By.ID, "model-path").is_displayed() is False
    assert browser.find_element(By.ID, "limit").text == "200 MB"
    browser.find_element(By.ID, "files").send_keys(clip)
    state = _wait_for(browser, "['done', 'failed'].includes("
                               "document.querySelector('.song')?.dataset.state) && "
                               "document.querySelector('.song').dataset.state")
    song = browser.find_element(By.CSS_SELECTOR, ".song")
    assert state == "done", song.text
    assert song.find_element(By.CSS_SELECTOR, ".name").text == (
        "The Easton Ellises - Falcon 69.stem.mp4")
    assert not song.find_element(By.CSS_SELECTOR, ".error").is_displayed()

    assert _wait_for(browser, "document.querySelector('.song .figure').complete && "
                              "document.querySelector('.song .figure').naturalWidth") == 1000
    durations = _wait_for(browser, """(() => {
        const players = [...document.querySelectorAll('.song audio')];
        return players.every((audio) => audio.readyState >= 1) &&
               players.map((audio) => [audio.src.split('/').pop(), audio.duration]);
    })()""")
    assert [name for name, _ in durations] == ["mix.wav", "vocals.wav", "accompaniment.wav"]
    np.testing.assert_allclose([seconds for _, seconds in durations],
                               info.frames / info.samplerate, atol=1e-3)
    model = song.find_element(By.CSS_SELECTOR, ".model").text
    assert model.startswith(f"Model: {DEFAULT_MODEL}: seed U-Net (4 layers, 32 base channels)")

    links = song.find_elements(By.CSS_SELECTOR, ".downloads a")
    assert [link.get_attribute("href").split("/")[-1] for link in links] == [
        "vocals.wav?download=1", "vocals.flac?download=1",
        "accompaniment.wav?download=1", "accompaniment.flac?download=1"]
    links[0].click()
    downloaded = tmp_path / "downloads" / "The Easton Ellises - Falcon 69 - vocals.wav"
    deadline = time.monotonic() + 60
    while not downloaded.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert downloaded.read_bytes() == cli_vocals.read_bytes()
    samples, _ = soundfile.read(str(downloaded))
    assert np.abs(samples).max() > 0  # the shipped model's vocals are quiet, not silent

    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
