"""End to end: the real server (`musicid serve`, uvicorn on a loopback port) and a real browser
(Debian's chromium and chromedriver, through selenium) dropping a MIDI file on the page."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import write_piece

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (./dev test installs them)")
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MUSICID_CACHE": str(tmp_path_factory.mktemp("cache"))}
    proc = subprocess.Popen([sys.executable, "-m", "musicid", "serve", "--index", str(built_index),
                             "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                if json.load(r)["ok"]:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"musicid serve did not come up: {out[-2000:]}")
            time.sleep(0.3)
    yield base
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp(f"chromium-{uuid.uuid4().hex[:6]}")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--mute-audio", "--window-size=1280,1800", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def api_query(base: str, path: Path) -> dict[str, object]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: audio/midi\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/query", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        result: dict[str, object] = json.load(r)
    return result


def test_drop_a_file_see_the_verdict_and_hear_the_neighbour(server: str, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    piece = write_piece(tmp_path / "dropped piece.mid", "Highflute", seed=4242, seconds=9)
    expected = api_query(server, piece)
    driver.get(server + "/")
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: "Highflute" in d.find_element(By.ID, "index-summary").text)
    driver.find_element(By.ID, "files").send_keys(str(piece))  # the input the drop zone uses
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "section.result.done"))
    assert "failed" not in (card.get_attribute("class") or ""), card.text
    verdict = card.find_element(By.CSS_SELECTOR, ".verdict")
    assert verdict.get_attribute("data-composer") == expected["composer"] == "Highflute"
    bars = card.find_elements(By.CSS_SELECTOR, ".bar")
    assert {b.get_attribute("data-composer") for b in bars} == set(expected["probabilities"])  # type: ignore[arg-type]
    assert f"novelty {expected['novelty']:.4f}" in card.find_element(By.CSS_SELECTOR, ".novelty").text
    assert len(card.find_elements(By.CSS_SELECTOR, "tr.neighbour")) == len(expected["neighbours"])  # type: ignore
    assert card.find_elements(By.CSS_SELECTOR, "svg .query-point")

    player = card.find_element(By.CSS_SELECTOR, "audio.neighbour-audio")
    driver.execute_script("arguments[0].preload = 'auto'; arguments[0].load();", player)
    wait.until(lambda d: d.execute_script("return arguments[0].readyState >= 1 || arguments[0].error !== null;",
                                          player))
    assert driver.execute_script("return arguments[0].error;", player) is None
    duration = driver.execute_script("return arguments[0].duration;", player)
    assert duration == pytest.approx(4.0, abs=0.05)  # one clip of the tiny index: 4 s
    src = str(player.get_attribute("src"))
    assert "/tracks/" in src and "/audio?offset=" in src
    with urllib.request.urlopen(src, timeout=30) as r:
        head = r.read(12)
        assert r.headers["Content-Type"] == "audio/wav" and head[:4] == b"RIFF" and head[8:] == b"WAVE"


def test_drop_a_compressed_musicxml_score_on_the_page(server: str, browser: object, tmp_path: Path) -> None:
    """A score (.mxl) dropped on the page gets the same verdict, novelty and neighbours as the API gives."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    from .test_score_reader import musicxml, mxl, n

    driver: WebDriver = browser  # type: ignore[assignment]
    bars = "<next/>".join("".join(n(step, 5, 1) for step in "CEGE") for _ in range(5))  # 10 s at 120
    score = tmp_path / "dropped score.mxl"
    score.write_bytes(mxl(musicxml(("Flute", bars))))
    expected = api_query(server, score)
    driver.get(server + "/")
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: "Highflute" in d.find_element(By.ID, "index-summary").text)
    driver.find_element(By.ID, "files").send_keys(str(score))
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "section.result.done"))
    assert "failed" not in (card.get_attribute("class") or ""), card.text
    assert card.find_element(By.CSS_SELECTOR, ".verdict").get_attribute("data-composer") == expected["composer"]
    assert f"novelty {expected['novelty']:.4f}" in card.find_element(By.CSS_SELECTOR, ".novelty").text
    assert len(card.find_elements(By.CSS_SELECTOR, "tr.neighbour")) == len(expected["neighbours"])  # type: ignore
