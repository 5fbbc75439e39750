"""Regenerate docs/RESULTS.md's section on general embedders from real `musicid eval` runs.

    python bench/results_general_md.py --general RUN_DIR --general-command "musicid eval ..." \
        --cross "LABEL=RUN_DIR" [--cross ...] [--side "TITLE|LABEL=RUN_DIR" ...] \
        [--side-cross "TITLE|LABEL=RUN_DIR" ...] [--heldout "LABEL=RUN_DIR" ...]

--general: a run of the general-embedder protocol (`musicid eval DIR --train-on ...`): naming by
work-grouped folds and leave-composers-out novelty, the left-out composers absent from the
embedder's training. --cross: runs of the cross-collection protocol (`musicid eval QUERY --enrol DIR
--model M`), one row each. --side: general-protocol runs side by side, one table per TITLE, a row
per run (and one for its per-index embedder when the run had --also-per-index). --side-cross: the
same for cross-collection runs (a table per TITLE; these tables come first). --heldout: the
cross-collection protocol on the project's held-out check (bench/run_heldout.sh). --general and
--cross replace what lies between the general-section markers of docs/RESULTS.md, --side,
--side-cross and --heldout what lies between the side-by-side markers (each appended when absent);
the rest is kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from results_md import DOCS, _with_ci, table

START, END = "<!-- generated:general:start -->", "<!-- generated:general:end -->"
SIDE_START, SIDE_END = "<!-- generated:side:start -->", "<!-- generated:side:end -->"


def _mark(ok: bool) -> str:
    return "met" if ok else "not met"


def _unseen_auroc(novelty: dict[str, Any]) -> str:
    """The AUROC on novel composers the embedder never saw, or why there is none."""
    if not novelty:
        return "(every novel one)"  # an embedder that saw none of the query collection's composers
    auroc = novelty["auroc"]
    return f"{auroc:.3f}" if auroc == auroc else "(none: it saw them all)"


def cross_rows(runs: list[tuple[str, dict[str, Any]]], title: str = "") -> list[str]:
    rows = []
    for label, r in runs:
        a = r["all"]
        unseen = (r.get("novel_unseen_by_embedder") or {}).get("novelty", {})
        rows.append([label, f"{a['classification']['accuracy']:.3f}", _with_ci(a["classification"], "macro_f1"),
                     _with_ci(a["novelty"], "auroc"), f"{a['novelty']['fpr_at_95_tpr']:.2f}",
                     f"{a['novelty']['flagged_novel']:.2f} / {a['novelty']['flagged_known']:.2f}",
                     _with_ci(a["open_set"], "macro_f1"),
                     _unseen_auroc(unseen), f"{r['wall_seconds'] / 60:.1f} min"])
    first = runs[0][1]
    known, novel = first["all"]["known_tracks"], first["all"]["novel_tracks"]
    best = max(runs, key=lambda x: x[1]["all"]["novelty"]["auroc"])
    query = Path(first["query_dir"]).name
    return [
        title or "### Cross-collection: enrol `sfl-challenge/train`, query all of ASAP", "",
        f"The index holds {', '.join(first['enrolled'])} from the challenge set. "
        f"{query}'s {known} tracks by those composers are known, its {novel} tracks by "
        f"{len(first['novel_composers'])} others novel ("
        + ", ".join(f"{c} {n}" for c, n in first["novel_composers"].items()) + ").", "",
        table(rows, ["embedder", "known named right", "naming macro-F1", "novelty AUROC", "FPR at 95% TPR",
                     "flagged novel / known", "open-set macro-F1", "AUROC, novel composers the embedder never saw",
                     "wall time"]), "",
        f"Targets: novelty AUROC >= 0.90 ({_mark(best[1]['all']['novelty']['auroc'] >= 0.90)}: best "
        f"{best[1]['all']['novelty']['auroc']:.3f}, {best[0]}); known named right >= 0.80 ("
        + _mark(max(r["all"]["classification"]["accuracy"] for _, r in runs) >= 0.80) + ").", ""]


def side_rows(title: str, runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One table: each general-protocol run (and its per-index embedder, where it ran one) on the same
    folds and leave-one-composer-out splits."""
    rows, composers = [], list(runs[0][1]["meta"]["composers"])
    for label, s in runs:
        n_models = len(s.get("models", [])) + len(s.get("per_index", {}).get("models", []))
        for name, r in [(label, s), *([("per-index, trained on each split's own tracks", s["per_index"])]
                                      if "per_index" in s else [])]:
            lo = r.get("loco", {})
            fused = r.get("track_by_classifier", {}).get("fused")
            rows.append([name, f"{_with_ci(r['track'], 'macro_f1')}, {r['track'].get('classifier', '?')}",
                         f"{fused['macro_f1']:.3f}" if fused else "-", f"{r['track']['balanced_accuracy']:.3f}",
                         _with_ci(lo, "mean_auroc") if lo else "-",
                         *(f"{lo['per_composer'][c]['auroc']:.2f}" if lo and c in lo["per_composer"] else "-"
                           for c in composers),
                         f"{s['meta']['wall_seconds'] / 60:.1f} min for the run ({n_models} models, "
                         f"{s['meta'].get('models_from_cache', 0)} cached)"])
    method = runs[0][1].get("loco", {}).get("method", "fused")
    return [title, "", table(rows, ["run", "track macro-F1 (95% interval), classifier",
                                    "macro-F1, fused classifier", "balanced accuracy",
                                    f"LOCO mean AUROC, {method} (95% interval)", *composers, "wall time"]), ""]


def general_rows(s: dict[str, Any], command: str) -> list[str]:
    m = s["meta"]
    out = [f"### ASAP, {len(m['composers'])} composers, with a general embedder trained on other collections", "",
           f"Command: `{command}`  ",
           f"Date: {m['date']}; musicid {m['musicid_version']}; wall time {m['wall_seconds'] / 60:.1f} min "
           f"({len(s.get('models', []))} models, {m.get('models_from_cache', 0)} from the model cache)  ",
           f"Data: {m['tracks']} tracks by {', '.join(m['composers'])}", ""]
    removed = s.get("duplicates_removed", {})
    if removed:
        out += ["Removed from the embedder's training as the same piece as an evaluated track: "
                + "; ".join(f"{Path(k).name} {v['tracks']} ({v['same_notes']} same notes, {v['same_piece']} same "
                            "piece)" for k, v in removed.items()) + ".", ""]
    groups = s.get("composer_groups")
    if groups:
        out += ["Composer groups (each group's embedder was trained without any track by its composers): "
                + "; ".join(", ".join(g) for g in groups) + ".", ""]
    rows = [["all tracks", s["track"]]] + [[k, v] for k, v in s.get("track_by_timing", {}).items()]
    out += [f"Naming, {m['folds']} folds grouped by work (every fold enrols its training works with one "
            "embedder trained on the other collections):", "",
            table([[name, f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}", _with_ci(r, "macro_f1"),
                    str(r["n"])] for name, r in rows],
                  ["tracks", "accuracy", "balanced accuracy", "macro-F1 (95% interval)", "n"]), ""]
    timing = s.get("track_by_timing", {})
    if timing:
        targets = {"score": 0.85, "performance": 0.80}
        out += ["Targets: " + "; ".join(f"{k} macro-F1 >= {t:.2f} ({_mark(timing[k]['macro_f1'] >= t)}, "
                                        f"{timing[k]['macro_f1']:.3f})" for k, t in targets.items() if k in timing)
                + ".", ""]
    methods = s.get("loco_by_method", {})
    if methods:
        composers = list(next(iter(methods.values()))["per_composer"])
        out += ["Novelty, leave one composer out (the left-out composer in neither the index nor its embedder's "
                "training; threshold calibrated on separate known works, 95% kept): AUROC per left-out composer.",
                "",
                table([[f"**{meth}**" if meth == s["loco"]["method"] else meth, _with_ci(lo, "mean_auroc"),
                        f"{lo['mean_fpr_at_95_tpr']:.2f}",
                        *(f"{lo['per_composer'][c]['auroc']:.2f}" if c in lo["per_composer"] else "-"
                          for c in composers)]
                       for meth, lo in methods.items()],
                      ["novelty score", "mean AUROC (95% interval)", "mean FPR at 95% TPR", *composers]), "",
                f"Target: mean AUROC >= 0.90 ({_mark(s['loco']['mean_auroc'] >= 0.90)}, "
                f"{s['loco']['mean_auroc']:.3f} with {s['loco']['method']}).", ""]
    return out


def replace_block(text: str, start: str, end: str, body: list[str], heading: str) -> str:
    """text with what lies between start and end replaced by body (appended under heading if absent)."""
    block = "\n".join([start, "", *body, end])
    if start in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return text + f"\n{heading}\n\n" + block + "\n"


def _load(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "eval.json").read_text())


def _runs(specs: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, eval.json) for each LABEL=RUN_DIR."""
    return [(label, _load(d)) for label, d in (c.split("=", 1) for c in specs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--general", type=Path)
    ap.add_argument("--general-command", default="musicid eval ASAP --train-on ...")
    ap.add_argument("--cross", action="append", default=[], help="LABEL=RUN_DIR (repeatable)")
    ap.add_argument("--side", action="append", default=[], help="TITLE|LABEL=RUN_DIR (repeatable)")
    ap.add_argument("--side-cross", action="append", default=[], help="TITLE|LABEL=RUN_DIR (repeatable)")
    ap.add_argument("--heldout", action="append", default=[], help="LABEL=RUN_DIR (repeatable)")
    args = ap.parse_args()
    path = DOCS / "RESULTS.md"
    text = path.read_text()
    if args.general or args.cross:  # bench/run_general.sh's block
        body: list[str] = []
        if args.general:
            body += general_rows(_load(args.general), args.general_command)
        if args.cross:
            body += cross_rows(_runs(args.cross))
        text = replace_block(text, START, END, body, "# Across collections: general embedders")
    if args.side or args.side_cross or args.heldout:  # bench/run_side_by_side.sh's block
        body = []
        def cross_table(title: str, runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
            return cross_rows(runs, title)

        for specs, make in ((args.side_cross, cross_table), (args.side, side_rows)):
            tables: dict[str, list[str]] = {}
            for spec in specs:
                title, run = spec.split("|", 1)
                tables.setdefault(title, []).append(run)
            for title, runs in tables.items():
                body += make(f"### {title}", _runs(runs))
        if args.heldout:
            body += cross_rows(_runs(args.heldout), "### The project's held-out check: music21's chorales, quartets "
                                                    "and madrigals (bench/run_heldout.sh)")
        text = replace_block(text, SIDE_START, SIDE_END, body, "# Side by side: routes and embedders")
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
