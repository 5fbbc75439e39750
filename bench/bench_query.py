"""Query benchmark: `musicid query` per file as a fresh process, and in-process with the index loaded.

For every MIDI file in TEST_DIR: wall time of a fresh `musicid query --json` process, and of
QueryEngine.query() in one process; p50 and p95 of each, the in-process time split into render
and the rest, and the peak RSS of one fresh query (/usr/bin/time -v).

    python bench/bench_query.py TEST_DIR --index INDEX_DIR
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from musicid.collection.dataset import list_music_files
from musicid.io.midi import load_midi
from musicid.io.render import render
from musicid.recognize.query import QueryEngine


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("test_dir", type=Path)
    ap.add_argument("--index", type=Path, required=True)
    args = ap.parse_args()
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    files = list_music_files(args.test_dir)
    fresh = []
    for f in files:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "musicid", "query", str(f), "--index", str(args.index), "--json"],
                       check=True, capture_output=True)
        fresh.append(time.perf_counter() - t)
    t = time.perf_counter()
    engine = QueryEngine.open(args.index)
    open_s = time.perf_counter() - t
    inproc, render_s, durations = [], [], []
    for f in files:
        midi = load_midi(f)
        t = time.perf_counter()
        render(midi, engine.render_settings)
        render_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.query(f)
        inproc.append(time.perf_counter() - t)
        durations.append(midi.duration)
    rss = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "musicid", "query", str(files[0]),
                          "--index", str(args.index), "--json"], capture_output=True, text=True).stderr
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rss)
    five = [q for q, d in zip(inproc, durations, strict=True) if 240 <= d <= 360]
    print(f"{len(files)} files, {statistics.median(durations):.0f} s median length; index loaded in {open_s:.2f} s\n")
    print(f"{'query':<30} {'p50 s':>7} {'p95 s':>7}")
    print(f"{'fresh process (musicid query)':<30} {pct(fresh, 50):>7.2f} {pct(fresh, 95):>7.2f}")
    print(f"{'in-process, index loaded':<30} {pct(inproc, 50):>7.3f} {pct(inproc, 95):>7.3f}")
    print(f"{'  of which render alone':<30} {pct(render_s, 50):>7.3f} {pct(render_s, 95):>7.3f}")
    if five:
        print(f"{'in-process, 4-6 min tracks':<30} {pct(five, 50):>7.3f} {pct(five, 95):>7.3f}  ({len(five)} files)")
    print(f"\nrender share of an in-process query: {sum(render_s) / sum(inproc):.0%}")
    if peak:
        print(f"peak RSS of one fresh query: {int(peak.group(1)) / 1024:.0f} MB")


if __name__ == "__main__":
    main()
