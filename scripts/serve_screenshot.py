"""Screenshot of `musicid serve`'s page with MIDI files dropped on it (the README's picture).

Starts `musicid serve` on a free loopback port, opens the page in headless chromium (Debian's
chromium and chromium-driver), gives it the files through the drop zone's file input, waits for
every verdict and saves the page as a PNG.

    python scripts/serve_screenshot.py --index demo/index OUT.png FILE.mid [FILE.mid ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("out", type=Path)
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--width", type=int, default=1200)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    server = subprocess.Popen([sys.executable, "-m", "musicid", "serve", "--index", str(args.index),
                               "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="chromium-")
    driver = None
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--hide-scrollbars", f"--window-size={args.width},1000", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
        driver.get(base + "/")
        wait = WebDriverWait(driver, 300)
        wait.until(lambda d: d.find_element(By.ID, "index-summary").text.startswith("Index:"))
        driver.find_element(By.ID, "files").send_keys("\n".join(str(f.resolve()) for f in args.files))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.result.done")) == len(args.files))
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(args.width, height + 20)
        time.sleep(0.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out} ({args.width} x {height} px)")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(30)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
