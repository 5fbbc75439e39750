"""Build benchmark: render scaling over cores, and cold / warm `musicid index build` with peak RSS.

  scaling: prepare (render + log-mel) of --files files with 1 worker and with one per core, no cache
  cold:    `musicid index build` with an empty cache (renders and trains)      [--cold]
  warm:    `musicid index build --model M` with the cache filled (no training)

    python bench/bench_build.py DATA_DIR [--files 40] [--cold]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from musicid.collection.dataset import list_music_files
from musicid.features.clips import FeatureSettings
from musicid.features.prepare import default_workers, prepare_many
from musicid.io.render import RenderSettings


def timed_build(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `musicid index build` process."""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "musicid", "index", "build", *args],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    return wall, int(peak.group(1)) / 1024 if peak else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--cold", action="store_true", help="also time a build from an empty cache (minutes)")
    ap.add_argument("--no-builds", action="store_true", help="only the render scaling")
    args = ap.parse_args()
    paths = list_music_files(args.data_dir)
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.files).round().astype(int)]
    cores = default_workers()
    t = time.perf_counter()
    prepare_many(paths, RenderSettings(), FeatureSettings(), None, 1)
    one = time.perf_counter() - t
    t = time.perf_counter()
    prepare_many(paths, RenderSettings(), FeatureSettings(), None, cores)
    many = time.perf_counter() - t
    print(f"render + features of {len(paths)} files: 1 worker {one:.1f} s, {cores} workers {many:.1f} s "
          f"-> {one / many:.2f}x\n")
    if args.no_builds:
        return
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "index"
        rows = []
        if args.cold:
            wall, rss = timed_build([str(args.data_dir), "--out", str(out), "--cache-dir", str(cache)])
            rows.append(("cold (empty cache, trains)", wall, rss))
        else:  # fill the cache and make a model without timing it
            timed_build([str(args.data_dir), "--out", str(out), "--cache-dir", str(cache)])
        model = Path(tmp) / "model.pt"
        shutil.copyfile(out / "model.pt", model)
        wall, rss = timed_build([str(args.data_dir), "--out", str(out), "--cache-dir", str(cache),
                                 "--model", str(model)])
        rows.append(("warm (cache filled, --model)", wall, rss))
    print(f"{'index build':<32} {'wall s':>8} {'peak RSS MB':>12}")
    for name, wall, rss in rows:
        print(f"{name:<32} {wall:>8.1f} {rss:>12.0f}")


if __name__ == "__main__":
    main()
