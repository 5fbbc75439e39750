"""Rich tables for what the commands print, and CSV export. No computation lives here."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .index_store import IndexStore
from .indexer import BuildReport
from .query import TrackResult


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def print_build_report(console: Console, r: BuildReport) -> None:
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    n_files = sum(r.tracks_per_composer.values()) + len(r.failures)
    if r.failures:
        console.print(f"[yellow]{len(r.failures)} of {n_files} file(s) could not be used, skipped:[/yellow]")
        for path, reason in r.failures:
            console.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)
    else:
        console.print(f"all {n_files} files used")
    t = Table(title=f"Index written to {r.out}")
    t.add_column("composer")
    t.add_column("tracks", justify="right")
    t.add_column("clips", justify="right")
    t.add_column("held-out recall", justify="right")
    per = r.heldout.get("per_composer", {})
    for c in r.composers:
        rec = per.get(c)
        t.add_row(c, str(r.tracks_per_composer[c]), str(r.clips_per_composer[c]),
                  f"{rec['recall']:.2f} ({rec['tracks']})" if rec else "-")
    t.add_row("[b]total[/b]", str(sum(r.tracks_per_composer.values())),
              str(sum(r.clips_per_composer.values())), "")
    console.print(t)
    stages = ", ".join(f"{k} {_secs(v)}" for k, v in r.timings.items() if k != "total")
    console.print(f"time: {_secs(r.timings['total'])} ({stages}); "
                  f"{r.cached_tracks} of {sum(r.tracks_per_composer.values())} tracks from the render cache")
    console.print(f"held-out accuracy: {r.heldout['accuracy']:.1%} on {r.heldout['tracks']} tracks "
                  f"({r.heldout['rule']}); novelty threshold {r.threshold:.4f}"
                  + ("" if r.trained else " (model given, not trained)")
                  + (" (model trained earlier on the same tracks, from the cache)" if r.model_from_cache else ""))


def _index_kind(index: Any) -> str:
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    return type(inner).__name__


def print_index_info(console: Console, store: IndexStore) -> None:
    m = store.manifest
    t = Table(title=f"musicid index {store.path}")
    t.add_column("composer")
    t.add_column("tracks", justify="right")
    t.add_column("clips", justify="right")
    clips_per = store.tracks.groupby("composer")["n_clips"].sum()
    tracks_per = store.tracks.groupby("composer").size()
    for c in store.composers:
        t.add_row(c, str(int(tracks_per.get(c, 0))), str(int(clips_per.get(c, 0))))
    console.print(t)
    nov = m["novelty"]
    model = m["model"]
    rows = [
        ("created", m["created"]),
        ("musicid", m["musicid_version"]),
        ("vectors", f"{store.index.ntotal} x {store.index.d} ({_index_kind(store.index)})"),
        ("model", f"{model['dims']} sha256 {model['sha256'][:12]}"),
        ("features", ", ".join(f"{k}={v}" for k, v in m["features"].items())),
        ("render", f"{m['render']['settings']['sample_rate']} Hz, SoundFont "
                   f"{m['render']['settings']['soundfont'] or 'TimGM6mb.sf2 (pretty_midi)'}"),
        ("naming", "linear head (classifier.py)" if m.get("naming") == "head" else "k-NN vote over clips"),
        ("novelty", f"threshold {nov['threshold']} in the {nov.get('view', 'embedding')} view "
                    f"({nov['rule']}" + (f"; k={nov['k']})" if nov.get("view") in ("embedding", "sound") else ")")),
        *([("blend parts", "; ".join(f"{PART_NAMES.get(v, v)}: median {a:.4g}, interquartile range {b:.4g}"
                                     for v, (a, b) in nov["scales"].items()))] if nov.get("scales") else []),
        ("held-out accuracy", f"{nov['calibration']['accuracy']:.1%} on {nov['calibration']['tracks']} tracks"),
        ("skipped files", str(m["counts"]["failed"])),
    ]
    for k, v in rows:
        console.print(f"[b]{k:>18}[/b]  {v}", highlight=False)


PART_NAMES = {"track": "embedding distance", "score": "score-statistics distance"}  # the blend view's parts


def print_query(console: Console, r: TrackResult) -> None:
    verdict = (f"[red]NOVEL[/red] (nearest composer {r.composer})" if r.novel
               else f"[green]{r.composer}[/green]")
    console.print(f"[b]{r.path}[/b]: {verdict}", highlight=False, soft_wrap=True)
    how = "linear head" if r.naming == "head" else "k-NN vote"
    console.print(f"  composer {r.composer}, confidence {r.confidence:.2f} "
                  f"({how} over {r.n_clips} clip{'s' if r.n_clips != 1 else ''})", highlight=False)
    console.print(f"  novelty {r.novelty:.4f} (threshold {r.threshold:.4f}) -> "
                  f"{'flagged novel' if r.novel else 'known composer'}", highlight=False)
    if r.novelty_parts:
        parts = ", ".join(f"{PART_NAMES.get(v, v)} {x:.4f}" for v, x in r.novelty_parts.items())
        console.print(f"  from {parts}: the larger of the two, each counted in interquartile ranges above "
                      "held-out known tracks' median", highlight=False, soft_wrap=True)
    if r.known_piece:
        console.print(f"  [yellow]known piece:[/yellow] same notes as indexed track {r.known_piece}", highlight=False)
    t = Table(title="composers")
    t.add_column("composer")
    t.add_column("probability" if r.naming == "head" else "vote", justify="right")
    t.add_column("centroid distance", justify="right")
    for c in sorted(r.votes, key=lambda c: -r.votes[c]):
        t.add_row(c, f"{r.votes[c]:.2f}", f"{r.centroid_distances[c]:.4f}")
    console.print(t)
    n = Table(title="nearest indexed tracks")
    n.add_column("track")
    n.add_column("composer")
    n.add_column("distance", justify="right")
    n.add_column("at", justify="right")
    for nb in r.neighbours:
        n.add_row(nb.path, nb.composer, f"{nb.distance:.4f}", f"{nb.offset:.0f} s")
    console.print(n)


def print_report(console: Console, results: Sequence[TrackResult], failures: Sequence[Any],
                 by_novelty: bool) -> None:
    t = Table(title="Tracks ranked by novelty (most novel first)" if by_novelty else "Tracks")
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("file", overflow="fold", ratio=1)
    t.add_column("composer", no_wrap=True)
    for col in ("confidence", "novelty"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("flagged", justify="center", no_wrap=True)
    for i, r in enumerate(results, 1):
        t.add_row(str(i), r.path, r.composer, f"{r.confidence:.2f}", f"{r.novelty:.4f}",
                  "[red]NOVEL[/red]" if r.novel else "", style="bold" if r.novel else None)
    console.print(t)
    flagged = sum(r.novel for r in results)
    thr = results[0].threshold if results else float("nan")
    console.print(f"{len(results)} tracks scored, {flagged} flagged novel (threshold {thr:.4f})"
                  + (f", {len(failures)} skipped:" if failures else ""))
    for f in failures:
        console.print(f"  {f.path}: {f.reason}", highlight=False, soft_wrap=True)


def write_csv(path: Path, results: Sequence[TrackResult], failures: Sequence[Any]) -> None:
    """One row per file, ranked as printed; skipped files last with their reason. Atomic."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["rank", "file", "composer", "confidence", "novelty", "threshold", "flagged",
                        "known_piece", "error"])
            for i, r in enumerate(results, 1):
                w.writerow([i, r.path, r.composer, f"{r.confidence:.4f}", f"{r.novelty:.4f}",
                            f"{r.threshold:.4f}", int(r.novel), r.known_piece or "", ""])
            for f in failures:
                w.writerow(["", str(f.path), "", "", "", "", "", "", f.reason])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def interval_text(r: dict[str, Any], key: str) -> str:
    """A figure's 95% interval from eval's resampling of works, or '' where none was computed."""
    lo_hi = r.get(f"{key}_ci")
    return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}" if lo_hi else ""


def print_eval(console: Console, summary: dict[str, Any], paths: Sequence[Path]) -> None:
    meta = summary["meta"]
    t = Table(title=f"{meta['folds']}-fold cross-validation grouped by work ({meta['tracks']} tracks)")
    t.add_column("method, level")
    for col in ("accuracy", "balanced acc.", "macro-F1", "95% interval"):
        t.add_column(col, justify="right")
    naming = summary["track"].get("naming", "vote")
    rows = [(f"musicid, track ({naming})", summary["track"])]
    rows += [(f"musicid, track ({n})", r) for n, r in summary.get("track_by_naming", {}).items() if n != naming]
    rows.append(("musicid, clip (vote)", summary["clip"]))
    if "baseline" in summary:
        rows.append(("seed (published), track", summary["baseline"]["track"]))
    for name, r in rows:
        t.add_row(name, f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}", f"{r['macro_f1']:.3f}",
                  interval_text(r, "macro_f1"))
    console.print(t)
    p = Table(title=f"per composer (track level, {naming})")
    for col in ("composer", "precision", "recall", "F1", "tracks"):
        p.add_column(col, justify="left" if col == "composer" else "right")
    for c, v in summary["track"]["per_label"].items():
        p.add_row(c, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"]))
    console.print(p)
    if "loco" in summary:
        lo = Table(title=f"leave-one-composer-out novelty ({summary['loco'].get('view', 'embedding')} view)")
        for col in ("held-out composer", "AUROC", "95% interval", "FPR@95%TPR", "flagged novel", "flagged known"):
            lo.add_column(col, justify="left" if col.startswith("held") else "right")
        for c, v in summary["loco"]["per_composer"].items():
            lo.add_row(c, f"{v['auroc']:.3f}", interval_text(v, "auroc"), f"{v['fpr_at_95_tpr']:.2f}",
                       f"{v['flagged_novel']:.2f}", f"{v['flagged_known']:.2f}")
        lo.add_row("[b]mean[/b]", f"{summary['loco']['mean_auroc']:.3f}", interval_text(summary["loco"], "mean_auroc"),
                   f"{summary['loco']['mean_fpr_at_95_tpr']:.2f}", "", "")
        for view, other in summary.get("loco_by_view", {}).items():
            if view != summary["loco"].get("view"):
                lo.add_row(f"{view} view, mean", f"{other['mean_auroc']:.3f}", interval_text(other, "mean_auroc"),
                           f"{other['mean_fpr_at_95_tpr']:.2f}", "", "")
        if "loco" in summary.get("baseline", {}):
            bl = summary["baseline"]["loco"]
            lo.add_row("seed (published), mean", f"{bl['mean_auroc']:.3f}", interval_text(bl, "mean_auroc"),
                       f"{bl['mean_fpr_at_95_tpr']:.2f}", "", "")
        console.print(lo)
    for key, what in (("macro_f1", "track macro-F1"), ("loco_mean_auroc", "novelty mean AUROC")):
        d = summary.get("vs_baseline", {}).get(key)
        if d:
            console.print(f"musicid - seed, {what}: {d['difference']:+.3f} (95% interval {d['ci'][0]:+.3f} to "
                          f"{d['ci'][1]:+.3f}, same resampled works)", highlight=False)
    if "intervals" in summary:
        console.print(f"intervals: {summary['intervals']['draws']} draws of {summary['intervals']['resampled']}",
                      highlight=False, soft_wrap=True)
    console.print(f"wall time {meta['wall_seconds'] / 60:.1f} min; wrote " + ", ".join(str(p) for p in paths),
                  highlight=False, soft_wrap=True)
