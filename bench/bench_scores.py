"""Score reading benchmark: the score libraries side by side, and a cold prepare of the handed scores.

  readers: seconds per file (median, p95, mean) and failures of each reader over every file of
           --lieder and a seeded --sample of --polish, in one run, each reader in its own worker
           process (a reader that aborts its process, as verovio does on some kern, costs that file,
           not the run). musicid's reader (partitura 1.9 behind score.py's layer, music21 where
           partitura fails) against partitura alone, music21, verovio and muspy where installed
           (`pip install verovio muspy`); music21 reads every --music21-every'th file (its cost); a file
           past --timeout seconds counts as failed.
  prepare: `prepare_many` of every file under the folders given (read + piano roll + symbolic
           features + piece sketch into an empty feature cache) with one worker per core: the wall
           time of turning the handed scores into cached piano rolls.

    python bench/bench_scores.py readers --lieder DIR --polish DIR [--sample 1000] [--jobs 2] [--out F.json]
    python bench/bench_scores.py prepare DIR [DIR ...] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

FILE_TIMEOUT = 60.0  # seconds a reader may spend on one file before it counts as a failure (--timeout)


def read_musicid(path: Path) -> int:
    from musicid.io.reader import load_music

    return load_music(path).n_notes


def read_partitura(path: Path) -> int:
    from musicid.io.score import _partitura  # partitura, imported off the network (score.py)

    return len(_partitura().load_score(str(path), quiet=True).note_array())


def read_music21(path: Path) -> int:
    import music21

    return len(music21.converter.parse(str(path)).flatten().notes)


def read_verovio(path: Path) -> int:
    import base64

    import verovio

    tk = verovio.toolkit()
    tk.setOptions({"breaks": "none"})
    data = path.read_bytes()
    ok = tk.loadZipDataBase64(base64.b64encode(data).decode()) if path.suffix == ".mxl" else tk.loadData(
        data.decode("utf-8", "replace"))
    if not ok:
        raise ValueError("verovio could not load it")
    return len(base64.b64decode(tk.renderToMIDI()))


def read_muspy(path: Path) -> int:
    import muspy

    if path.suffix == ".krn":
        raise ValueError("muspy has no kern reader")
    return sum(len(t.notes) for t in muspy.read_musicxml(str(path)).tracks)


READERS = {"musicid": read_musicid, "partitura": read_partitura, "music21": read_music21,
           "verovio": read_verovio, "muspy": read_muspy}


def _timed(reader: str, path: Path) -> tuple[float, str]:
    import warnings

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    try:
        READERS[reader](path)
        error = ""
    except Exception as e:  # noqa: BLE001 - a benchmark counts every failure, whatever it is
        error = f"{type(e).__name__}: {str(e)[:80]}"
    return time.perf_counter() - t, error


def run_reader(reader: str, paths: list[Path], timeout: float = FILE_TIMEOUT) -> list[dict[str, Any]]:
    """Each file through `reader` in a worker process of its own; a crash or a hang costs the file."""
    rows: list[dict[str, Any]] = []
    pool = ProcessPoolExecutor(1)
    for path in paths:
        try:
            seconds, error = pool.submit(_timed, reader, path).result(timeout=timeout)
        except (BrokenProcessPool, FutureTimeout) as e:
            seconds, error = float("nan"), "process aborted" if isinstance(e, BrokenProcessPool) else "timed out"
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            pool = ProcessPoolExecutor(1)
        rows.append({"path": str(path), "seconds": seconds, "error": error})
    pool.shutdown()
    return rows


def available(reader: str) -> bool:
    module = {"verovio": "verovio", "muspy": "muspy", "music21": "music21"}.get(reader)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted(r["seconds"] for r in rows if not r["error"])
    return {"files": len(rows), "failed": sum(1 for r in rows if r["error"]),
            "median_s": statistics.median(ok) if ok else None,
            "p95_s": ok[min(len(ok) - 1, int(0.95 * len(ok)))] if ok else None,
            "mean_s": statistics.fmean(ok) if ok else None,
            "errors": sorted({r["error"].split(":")[0] for r in rows if r["error"]})}


def readers_main(args: argparse.Namespace) -> None:
    lieder = sorted(args.lieder.rglob("*.mxl"))
    polish = sorted(args.polish.rglob("*.krn"))
    polish = sorted(random.Random(args.seed).sample(polish, min(args.sample, len(polish))))
    sets = {"openscore-lieder": lieder, f"polish-scores ({len(polish)} sampled)": polish}
    readers = [r for r in args.readers.split(",") if available(r)]
    skipped = [r for r in args.readers.split(",") if r not in readers]
    jobs = []
    with ProcessPoolExecutor(args.jobs) as outer:
        for reader in readers:
            for name, paths in sets.items():
                chosen = paths[::args.music21_every] if reader == "music21" else paths
                jobs.append((reader, name, outer.submit(run_reader, reader, chosen, args.timeout)))
        t0 = time.perf_counter()
        results = {(reader, name): fut.result() for reader, name, fut in jobs}
    wall = time.perf_counter() - t0
    table = {f"{reader} | {name}": summary(rows) for (reader, name), rows in results.items()}
    print(f"{'reader':<10} {'collection':<32} {'files':>6} {'failed':>7} {'median s':>9} {'p95 s':>7} "
          f"{'mean s':>7} {'x musicid (median)':>19}")
    for reader, name in results:
        s, base = table[f"{reader} | {name}"], table[f"musicid | {name}"]
        ratio = (s["median_s"] / base["median_s"]) if s["median_s"] and base.get("median_s") else float("nan")
        print(f"{reader:<10} {name:<32} {s['files']:>6} {s['failed']:>7} {s['median_s'] or float('nan'):>9.3f} "
              f"{s['p95_s'] or float('nan'):>7.3f} {s['mean_s'] or float('nan'):>7.3f} {ratio:>19.2f}")
    print(f"\n{wall / 60:.1f} min in all, {args.jobs} readers at a time" + (
        f"; not installed, so not measured: {', '.join(skipped)}" if skipped else ""))
    if args.out:
        args.out.write_text(json.dumps({"wall_s": wall, "summary": table,
                                        "rows": {f"{r} | {n}": v for (r, n), v in results.items()}}, indent=1))


def prepare_main(args: argparse.Namespace) -> None:
    from musicid.collection.dataset import list_music_files
    from musicid.features.cache import FeatureCache
    from musicid.features.clips import pianoroll_settings
    from musicid.features.prepare import Failure, prepare_many
    from musicid.io.render import RenderSettings

    paths = [p for d in args.dirs for p in list_music_files(d)]
    with tempfile.TemporaryDirectory(prefix="musicid-bench-cache-") as tmp:
        cache = FeatureCache.for_tracks(Path(tmp), RenderSettings(), pianoroll_settings())
        done = {"n": 0}

        def progress(stage: str, n: int, total: int) -> None:
            if n - done["n"] >= 500 or n == total:
                done["n"] = n
                print(f"  {n}/{total} after {(time.perf_counter() - t) / 60:.1f} min", flush=True)

        t = time.perf_counter()
        results = prepare_many(paths, RenderSettings(), pianoroll_settings(), cache, args.workers, progress)
        wall = time.perf_counter() - t
    failures = [r for r in results if isinstance(r, Failure)]
    by_kind: dict[str, int] = {}
    for f in failures:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
    print(f"prepared {len(results) - len(failures)} of {len(paths)} files cold into piano rolls in "
          f"{wall / 60:.1f} min with {args.workers} workers ({wall / len(paths):.3f} s a file); "
          f"failed: {len(failures)} {by_kind}")
    for f in failures[:20]:
        print(f"  {f.path.name}: {f.reason[:160]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("readers")
    r.add_argument("--lieder", type=Path, required=True)
    r.add_argument("--polish", type=Path, required=True)
    r.add_argument("--sample", type=int, default=1000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--readers", default="musicid,partitura,music21,verovio,muspy")
    r.add_argument("--music21-every", type=int, default=10)
    r.add_argument("--timeout", type=float, default=FILE_TIMEOUT, help="seconds a file may take [60]")
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--out", type=Path)
    p = sub.add_parser("prepare")
    p.add_argument("dirs", type=Path, nargs="+")
    p.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    (readers_main if args.what == "readers" else prepare_main)(args)


if __name__ == "__main__":
    sys.exit(main())
