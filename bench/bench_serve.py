"""Service benchmark: what `musicid serve` saves over a CLI-style cold query, and a loopback load test.

1. In process, one TRACK (a 5-minute piece): a CLI-style cold query (QueryEngine.open + query, as
   every `musicid query` does after its imports) against the service's warm query of the uploaded
   bytes (serve.Service.query), p50 and p95 of each, and their ratio.
2. A real `musicid serve` (uvicorn, loopback) answering REQUESTS POST /query of TRACK at CONCURRENCY:
   p50/p95 latency, throughput, errors, and the server's RSS before and after.

    python bench/bench_serve.py TRACK --index INDEX_DIR [--requests 100] [--concurrency 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from musicid.io.midi import load_midi
from musicid.recognize.query import QueryEngine
from musicid.serve import ServeConfig, Service

REPO = Path(__file__).resolve().parents[1]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process(track: Path, index: Path, repeats: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(1)  # as bench_query.py, and as `musicid serve --workers 2` gives each worker on 2 cores
    faiss.omp_set_num_threads(1)
    data = track.read_bytes()
    QueryEngine.open(index).query(track)  # imports and first-call costs out of the way for both
    cold = []
    for _ in range(max(3, repeats // 4)):
        t = time.perf_counter()
        QueryEngine.open(index).query(track)
        cold.append(time.perf_counter() - t)
    fresh = []
    for _ in range(3):  # what every `musicid query` costs: a new process, its imports, the index loaded
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "musicid", "query", str(track), "--index", str(index), "--json"],
                       check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        fresh.append(time.perf_counter() - t)
    service = Service(ServeConfig(index, workers=1))
    warm, explained = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        service.query(data, track.name, 10, explain=False)
        warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        service.query(data, track.name, 10, explain=True)
        explained.append(time.perf_counter() - t)
    service.close()
    print(f"track {track.name}: {load_midi(track).duration:.0f} s of music")
    print(f"{'in-process query':38s} {'p50 s':>7s} {'p95 s':>7s}")
    for name, xs in (("fresh process (musicid query --json)", fresh), ("CLI-style cold (open index + query)", cold),
                     ("service, warm (POST /query's work)", warm),
                     ("service, warm, explain=true (page)", explained)):
        print(f"{name:38s} {pct(xs, 50):7.3f} {pct(xs, 95):7.3f}")
    print(f"ratio to warm (p50): fresh process {pct(fresh, 50) / pct(warm, 50):.1f}x, "
          f"in-process cold {pct(cold, 50) / pct(warm, 50):.1f}x")


def load_test(track: Path, index: Path, requests: int, concurrency: int, workers: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as cache:
        env["MUSICID_CACHE"] = cache
        proc = subprocess.Popen([sys.executable, "-m", "musicid", "serve", "--index", str(index), "--port",
                                 str(port), "--workers", str(workers)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                for _ in range(600):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.2)
                data = track.read_bytes()

                def one(_: int) -> tuple[float, int]:
                    t = time.perf_counter()
                    r = client.post("/query", files={"file": (track.name, data, "audio/midi")})
                    return time.perf_counter() - t, r.status_code

                results: list[tuple[float, int]] = []
                rss = []
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(one, range(2 * concurrency)))  # warm-up: first calls, allocator growth
                    before = rss_mb(proc.pid)
                    t = time.perf_counter()
                    for quarter in range(4):  # RSS after each quarter: flat, or growing?
                        results += pool.map(one, range(quarter * requests // 4, (quarter + 1) * requests // 4))
                        rss.append(rss_mb(proc.pid))
                    wall = time.perf_counter() - t
                after = rss[-1]
                health = client.get("/healthz").json()
        finally:
            proc.terminate()
            proc.wait(30)
    lat = [r[0] for r in results]
    errors = sum(1 for r in results if r[1] != 200)
    print(f"\nloopback load test: {requests} POST /query at concurrency {concurrency}, --workers {workers} "
          f"({health['tracks']} indexed tracks)")
    print(f"latency p50 {pct(lat, 50):.3f} s, p95 {pct(lat, 95):.3f} s; throughput {requests / wall:.2f} requests/s; "
          f"errors {errors}")
    print(f"server RSS {before:.0f} MB after warm-up; after each quarter of the test "
          f"{', '.join(f'{r:.0f}' for r in rss)} MB ({after - before:+.0f} MB in all)")
    print(json.dumps({"p50": pct(lat, 50), "p95": pct(lat, 95), "rps": requests / wall, "errors": errors,
                      "rss_before_mb": before, "rss_after_mb": after}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("track", type=Path)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    in_process(args.track, args.index, args.repeats)
    load_test(args.track, args.index, args.requests, args.concurrency, args.workers)


if __name__ == "__main__":
    main()
