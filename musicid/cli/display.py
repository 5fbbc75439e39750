"""Rich tables for what the commands print, and CSV export. No computation lives here."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..atomic import atomic_path
from ..build.indexer import BuildReport
from ..index.store import IndexStore
from ..recognize.batch_judge import BatchJudgement
from ..recognize.query import TrackResult

CLASSIFIER_NAMES = {"linear": "linear probe", "knn": "k-NN vote", "fused": "linear probe and symbolic model"}


def plural(n: int, noun: str) -> str:
    """ "1 track", "2 tracks" (nouns that take an s)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


NAMES_LISTED = 12  # names listed one by one in a line; past this, the first ones and a count


def name_list(names: Sequence[str]) -> str:
    """ "A, B, C" -- or, past NAMES_LISTED names, the first ones and how many more (all of them in --json)."""
    if len(names) <= NAMES_LISTED:
        return ", ".join(names)
    return f"{', '.join(names[:NAMES_LISTED])} and {len(names) - NAMES_LISTED} more"


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


SKIPPED_LISTED = 12  # skipped files listed one by one; past this, a count by reason (all of them in --json)


def reason_kind(reason: str) -> str:
    """What a skip reason says, less its particulars: the text before its first parenthesis, numbers
    as N ("a note at MIDI pitch 156 (...)" -> "a note at MIDI pitch N")."""
    return re.sub(r"\d+(\.\d+)?", "N", reason.split(" (")[0]).strip()


def print_skipped(console: Console, failures: Sequence[tuple[str, str]], n_files: int) -> None:
    """Skipped files: each one while they are few, else a count by reason and the first few."""
    console.print(f"[yellow]{len(failures)} of {plural(n_files, 'file')} could not be used, skipped:[/yellow]")
    if len(failures) > SKIPPED_LISTED:
        kinds = Counter(reason_kind(reason) for _, reason in failures)
        for kind, count in kinds.most_common():
            console.print(f"  {count:>5}  {kind}", highlight=False, soft_wrap=True)
        console.print(f"  the first {SKIPPED_LISTED} (every one with --json):", highlight=False)
    for path, reason in failures[:SKIPPED_LISTED]:
        console.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)


def print_build_report(console: Console, r: BuildReport) -> None:
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    n_files = sum(r.tracks_per_composer.values()) + len(r.failures)
    if r.failures:
        print_skipped(console, r.failures, n_files)
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
                  + ("" if r.trained else " (the shipped embedder, enrolled without training)"
                     if r.model_given == "shipped" else f" (enrolled with {r.model_given}, not trained)")
                  + (" (model trained earlier on the same tracks, from the cache)" if r.model_from_cache else ""))


def _index_kind(index: Any) -> str:
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    return type(inner).__name__


def print_index_info(console: Console, store: IndexStore) -> None:
    m = store.manifest
    settings, about = m.settings, m.about
    t = Table(title=f"musicid index {store.path}")
    t.add_column("composer")
    t.add_column("tracks", justify="right")
    t.add_column("clips", justify="right")
    clips_per = store.tracks.groupby("composer")["n_clips"].sum()
    tracks_per = store.tracks.groupby("composer").size()
    for c in store.composers:
        t.add_row(c, str(int(tracks_per.get(c, 0))), str(int(clips_per.get(c, 0))))
    console.print(t)
    nov = settings.novelty
    model = about.get("model", {})
    heldout = about.get("novelty", {}).get("heldout", {})
    rows = [
        ("created", about.get("created", "")),
        ("musicid", about.get("musicid_version", "")),
        ("vectors", f"{store.index.ntotal} x {store.index.d} ({_index_kind(store.index)})"),
        ("model", f"{model.get('dims')} sha256 {str(model.get('sha256', ''))[:12]}"),
        ("embedder", _embedder_origin(model)),
        *([("licence", str(model["licence"]))] if model.get("licence") else []),
        *([("background", _background_line(store.cohort.composers))] if store.cohort is not None else []),
        ("features", ", ".join(f"{k}={v}" for k, v in settings.features.as_dict().items())),
        ("render", f"{settings.render.sample_rate} Hz, SoundFont "
                   f"{settings.render.soundfont or 'TimGM6mb.sf2 (pretty_midi)'}"),
        ("classifier", CLASSIFIER_NAMES.get(settings.classifier, settings.classifier)
                       + (" over clips" if settings.classifier == "knn" else "") + " (classifier.py)"),
        ("novelty", f"{nov.method}, threshold {m.calibration.threshold:.4f} "
                    f"({about.get('novelty', {}).get('rule', '')}"
                    + (f"; k={nov.k})" if nov.method in ("clip-knn", "spectral-knn") else ")")),
        *([("fused parts", f"{FUSION_NAMES[m.calibration.rule]} of "
                           + "; ".join(f"{PART_NAMES.get(v, v)}: median {a:.4g}, interquartile range {b:.4g}"
                                       for v, (a, b) in m.calibration.scales.items()))]
          if m.calibration.scales else []),
        *([("held-out accuracy", f"{heldout['accuracy']:.1%} on {heldout['tracks']} tracks")] if heldout else []),
        ("works grouped by", settings.group_by or "catalog number or file name (dataset.work_key)"),
        ("skipped files", str(about.get("counts", {}).get("failed", 0))),
        *([("edits", str(len(about["edits"])))] if about.get("edits") else []),
    ]
    for k, v in rows:
        console.print(f"[b]{k:>18}[/b]  {v}", highlight=False)


def _embedder_origin(model: dict) -> str:
    """Where an index's embedder came from, from its manifest's model record."""
    start = model.get("started_from")
    if model.get("trained_here"):
        return f"fine-tuned here from {start}" if start else "trained here, on this index's tracks"
    return f"{start}, enrolled without training" if start else "given, not trained here"


def _background_line(composers: tuple[str, ...]) -> str:
    n = len(composers)
    return f"{plural(n, 'composer')} the embedder knows and the index does not ({name_list(composers)})"


PART_NAMES = {"track-knn": "embedding distance", "symbolic-knn": "symbolic-feature distance",
              "background-margin": "background margin",
              "background-snorm": "background-normalised distance"}  # the fused parts
FUSION_NAMES = {"max": "the larger z-score", "mean": "the mean z-score"}


def print_query(console: Console, r: TrackResult) -> None:
    verdict = (f"[red]NOVEL[/red] (nearest composer {r.composer})" if r.novel
               else f"[green]{r.composer}[/green]")
    console.print(f"[b]{r.path}[/b]: {verdict}", highlight=False, soft_wrap=True)
    how = CLASSIFIER_NAMES.get(r.classifier, r.classifier)
    console.print(f"  composer {r.composer}, confidence {r.confidence:.2f} "
                  f"({how} over {plural(r.n_clips, 'clip')})", highlight=False)
    console.print(f"  novelty {r.novelty:.4f} (threshold {r.threshold:.4f}) -> "
                  f"{'flagged novel' if r.novel else 'known composer'}", highlight=False)
    if r.novelty_z:
        parts = " and ".join(f"{PART_NAMES.get(v, v)} {r.novelty_parts.get(v, float('nan')):.4f} (z {x:.2f})"
                             for v, x in r.novelty_z.items())
        how = ("the one measured" if not all(map(math.isfinite, r.novelty_z.values()))
               else "the mean of the two z" if r.novelty_rule == "mean" else "the larger of the two z")
        console.print(f"  from {parts}: {how}, each z in interquartile ranges above held-out known "
                      "tracks' median", highlight=False, soft_wrap=True)
    if r.disagreement:
        console.print(f"  [yellow]note:[/yellow] {r.disagreement}", highlight=False, soft_wrap=True)
    if r.background_composer and r.novel:
        console.print(f"  of the composers the embedder learnt and this index does not hold, the nearest is "
                      f"{r.background_composer}", highlight=False, soft_wrap=True)
    if r.known_piece and r.known_piece_match == "same piece":
        console.print(f"  [yellow]known piece:[/yellow] a performance or edition of indexed track {r.known_piece} "
                      f"(similarity {r.known_piece_similarity:.2f})", highlight=False, soft_wrap=True)
    elif r.known_piece:
        console.print(f"  [yellow]known piece:[/yellow] same notes as indexed track {r.known_piece}", highlight=False)
    t = Table(title="composers")
    t.add_column("composer")
    t.add_column("vote share" if r.classifier == "knn" else "probability", justify="right")
    t.add_column("centroid distance", justify="right")
    for c in sorted(r.probabilities, key=lambda c: -r.probabilities[c]):
        t.add_row(c, f"{r.probabilities[c]:.2f}", f"{r.centroid_distances[c]:.4f}")
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
    console.print(f"{plural(len(results), 'track')} scored, {flagged} flagged novel (threshold {thr:.4f})"
                  + (f", {len(failures)} skipped:" if failures else ""))
    for f in failures:
        console.print(f"  {f.path}: {f.reason}", highlight=False, soft_wrap=True)


def print_judgement(console: Console, j: BatchJudgement) -> None:
    """Which part judged a batch (report --judge batch), and why; where a reference folder placed the
    threshold (report --reference), on how many of its works."""
    known = f"{j.reference_tracks} known works of the reference folder" if j.reference_tracks else \
        "held-out known works"
    if not j.shifts:
        console.print(f"threshold {j.threshold:.4f}, placed on {known}", highlight=False, soft_wrap=True)
        return
    shifts = " and ".join(f"{PART_NAMES.get(p, p)} {s:.2f}" for p, s in j.shifts.items())
    how = (f"judged by {PART_NAMES.get(j.part, j.part)} alone (its z-score against threshold {j.threshold:.4f})"
           if j.part else f"judged by the fused score (threshold {j.threshold:.4f}): the parts set it apart alike")
    console.print(f"batch: {how}; how far the batch lies from {known} in each part (AUROC, "
                  f"0.5 = alike): {shifts}", highlight=False, soft_wrap=True)


def write_csv(path: Path, results: Sequence[TrackResult], failures: Sequence[Any]) -> None:
    """One row per file, ranked as printed; skipped files last with their reason. Atomic."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "file", "composer", "confidence", "novelty", "threshold", "flagged",
                    "known_piece", "known_piece_match", "background_composer", "error"])
        for i, r in enumerate(results, 1):
            w.writerow([i, r.path, r.composer, f"{r.confidence:.4f}", f"{r.novelty:.4f}",
                        f"{r.threshold:.4f}", int(r.novel), r.known_piece or "", r.known_piece_match or "",
                        r.background_composer or "", ""])
        for f in failures:
            w.writerow(["", str(f.path), "", "", "", "", "", "", "", "", f.reason])


def interval_text(r: dict[str, Any], key: str) -> str:
    """A figure's 95% interval from eval's resampling of works, or '' where none was computed."""
    lo_hi = r.get(f"{key}_ci")
    return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}" if lo_hi else ""


def print_protocol(console: Console, summary: dict[str, Any]) -> None:
    """What eval's general-embedder protocol trained on and left out, and which composers it kept."""
    sel = summary["meta"].get("selection")
    if sel:
        console.print(f"evaluated {', '.join(sel['kept'])} ({sel['rule']}); left out: "
                      f"{', '.join(sel['left_out']) or 'none'}", highlight=False, soft_wrap=True)
    if summary.get("protocol") != "general-embedder":
        return
    cols = ", ".join(f"{Path(c['path']).name} {c['kept']} of {c['tracks']}" for c in summary["collections"])
    console.print(f"general embedder trained on {cols} tracks (the rest are the same piece as an evaluated "
                  "track: removed)", highlight=False, soft_wrap=True)
    groups = summary["composer_groups"]
    console.print(f"novelty: {len(groups)} composer group(s), each model trained without its group: "
                  + "; ".join(", ".join(g) for g in groups), highlight=False, soft_wrap=True)
    models = summary["models"]
    tuned = [m for m in models if m.get("fine_tuned")]
    console.print(f"{len(models) - len(tuned)} general model(s)"
                  + (f", fine-tuned on each split's training tracks ({len(tuned)} fine-tuned)" if tuned else "")
                  + f"; {sum(m['from_cache'] for m in models)} from the model cache", highlight=False)


def print_eval(console: Console, summary: dict[str, Any], paths: Sequence[Path]) -> None:
    meta = summary["meta"]
    print_protocol(console, summary)
    general = summary.get("protocol") == "general-embedder"
    t = Table(title=f"{meta['folds']}-fold cross-validation grouped by work ({meta['tracks']} tracks"
                    + (", general embedder)" if general else ")"))
    t.add_column("method, level")
    for col in ("accuracy", "balanced acc.", "macro-F1", "95% interval"):
        t.add_column(col, justify="right")
    classifier = summary["track"]["classifier"]
    rows = [(f"musicid, track ({classifier})", summary["track"])]
    rows += [(f"musicid, track ({n})", r) for n, r in summary.get("track_by_classifier", {}).items()
             if n != classifier]
    rows.append(("musicid, clip (knn)", summary["clip"]))
    rows += [(f"musicid, {kind} MIDI tracks ({classifier})", r)
             for kind, r in summary.get("track_by_timing", {}).items()]
    per_index = summary.get("per_index")
    if per_index:
        rows.append((f"per-index embedder, track ({classifier})", per_index["track"]))
        rows += [(f"per-index embedder, {kind} MIDI tracks", r) for kind, r in per_index["track_by_timing"].items()]
    if "baseline" in summary:
        rows.append(("published attempt, track", summary["baseline"]["track"]))
    for name, r in rows:
        t.add_row(name, f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}", f"{r['macro_f1']:.3f}",
                  interval_text(r, "macro_f1"))
    console.print(t)
    p = Table(title=f"per composer (track level, {classifier})")
    for col in ("composer", "precision", "recall", "F1", "tracks"):
        p.add_column(col, justify="left" if col == "composer" else "right")
    for c, v in summary["track"]["per_label"].items():
        p.add_row(c, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"]))
    console.print(p)
    if "loco" in summary:
        lo = Table(title=f"leave-one-composer-out novelty ({summary['loco']['method']})")
        for col in ("held-out composer", "AUROC", "95% interval", "FPR@95%TPR", "flagged novel", "flagged known"):
            lo.add_column(col, justify="left" if col.startswith("held") else "right")
        for c, v in summary["loco"]["per_composer"].items():
            lo.add_row(c, f"{v['auroc']:.3f}", interval_text(v, "auroc"), f"{v['fpr_at_95_tpr']:.2f}",
                       f"{v['flagged_novel']:.2f}", f"{v['flagged_known']:.2f}")
        lo.add_row("[b]mean[/b]", f"{summary['loco']['mean_auroc']:.3f}", interval_text(summary["loco"], "mean_auroc"),
                   f"{summary['loco']['mean_fpr_at_95_tpr']:.2f}", "", "")
        for method, other in summary.get("loco_by_method", {}).items():
            if method != summary["loco"]["method"]:
                lo.add_row(f"{method}, mean", f"{other['mean_auroc']:.3f}", interval_text(other, "mean_auroc"),
                           f"{other['mean_fpr_at_95_tpr']:.2f}", "", "")
        if per_index and "loco" in per_index:
            pl = per_index["loco"]
            lo.add_row("per-index embedder, mean", f"{pl['mean_auroc']:.3f}", interval_text(pl, "mean_auroc"),
                       f"{pl['mean_fpr_at_95_tpr']:.2f}", "", "")
        if "loco" in summary.get("baseline", {}):
            bl = summary["baseline"]["loco"]
            lo.add_row("published attempt, mean", f"{bl['mean_auroc']:.3f}", interval_text(bl, "mean_auroc"),
                       f"{bl['mean_fpr_at_95_tpr']:.2f}", "", "")
        console.print(lo)
    for key, what in (("macro_f1", "track macro-F1"), ("loco_mean_auroc", "novelty mean AUROC")):
        d = summary.get("vs_baseline", {}).get(key)
        if d:
            console.print(f"musicid - published, {what}: {d['difference']:+.3f} (95% interval {d['ci'][0]:+.3f} to "
                          f"{d['ci'][1]:+.3f}, same resampled works)", highlight=False)
    if "intervals" in summary:
        console.print(f"intervals: {summary['intervals']['draws']} draws of {summary['intervals']['resampled']}",
                      highlight=False, soft_wrap=True)
    console.print(f"wall time {meta['wall_seconds'] / 60:.1f} min; wrote " + ", ".join(str(p) for p in paths),
                  highlight=False, soft_wrap=True)


def print_cross_collection(console: Console, r: dict[str, Any], path: Path) -> None:
    """The cross-collection protocol's figures (cross_collection.evaluate_cross_collection)."""
    a = r["all"]
    known = r["model"]["composers"]
    trained = f"{plural(len(known), 'composer')}: {name_list(known)}" if known else "composers it does not list"
    console.print(f"enrolled {', '.join(r['enrolled'])} from {r['enrol_dir']} with {r['model']['path']} "
                  f"(trained on {trained})", highlight=False, soft_wrap=True)
    console.print(f"queried {r['query_dir']}: {a['known_tracks']} tracks by enrolled composers (known), "
                  f"{a['novel_tracks']} by others (novel: "
                  + ", ".join(f"{c} {n}" for c, n in r["novel_composers"].items()) + ")",
                  highlight=False, soft_wrap=True)
    t = Table(title="cross-collection")
    for col in ("figure", "value", "95% interval"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    n, nov, op = a["classification"], a["novelty"], a["open_set"]
    t.add_row("known named right (accuracy)", f"{n['accuracy']:.3f}", "")
    t.add_row("naming macro-F1", f"{n['macro_f1']:.3f}", interval_text(n, "macro_f1"))
    t.add_row("novelty AUROC", f"{nov['auroc']:.3f}", interval_text(nov, "auroc"))
    t.add_row("FPR at 95% TPR", f"{nov['fpr_at_95_tpr']:.3f}", "")
    t.add_row("flagged: novel / known", f"{nov['flagged_novel']:.2f} / {nov['flagged_known']:.2f}", "")
    t.add_row("open-set macro-F1 (unknown a class)", f"{op['macro_f1']:.3f}", interval_text(op, "macro_f1"))
    unseen = r.get("novel_unseen_by_embedder")
    if unseen and unseen["novel_tracks"]:
        t.add_row("novelty AUROC, novel composers the embedder never saw",
                  f"{unseen['novelty']['auroc']:.3f}", "")
    console.print(t)
    console.print(f"wall time {r['wall_seconds'] / 60:.1f} min; wrote {path}", highlight=False, soft_wrap=True)


