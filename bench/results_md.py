"""Regenerate the figures in docs/RESULTS.md from a real `musicid eval` run.

    python bench/results_md.py eval-results [--baseline-run eval-baseline] [--front-end-run eval-audio ...]
                               [--command "musicid eval ..."]

Replaces what lies between the generated-section markers in docs/RESULTS.md, keeps the rest
(the hand-written log of what was tried), and copies the run's PNGs to docs/img/.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from musicid.cli.display import interval_text

START, END = "<!-- generated:start -->", "<!-- generated:end -->"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _with_ci(r: dict, key: str, bold: bool = False) -> str:
    """A figure and, where the run computed one, its 95% interval: `0.873 (0.83-0.91)`."""
    text = f"**{r[key]:.3f}**" if bold else f"{r[key]:.3f}"
    ci = interval_text(r, key)
    return f"{text} ({ci})" if ci else text


def _closed_rows(s: dict) -> list[tuple[str, dict]]:
    classifier = s["track"]["classifier"]
    rows = [(f"track ({classifier})", s["track"])]
    rows += [(f"track ({n})", r) for n, r in s.get("track_by_classifier", {}).items() if n != classifier]
    return rows + [("clip (knn)", s["clip"])]


def _cached(m: dict) -> str:
    return f", {m['models_from_cache']} of its models from the model cache" if "models_from_cache" in m else ""


def _front(s: dict) -> str:
    return str(s["meta"]["settings"]["features"]["representation"])


def _methods(s: dict) -> str:
    return " / ".join(s.get("loco_by_method", {}))


def _targets(runs: list[tuple[str, dict]]) -> list[str]:
    """The issue's targets against each run: met or not, with the figure."""
    def mark(ok: bool, text: str) -> str:
        return f"{text}, {'met' if ok else 'not met'}"

    rows = []
    for name, x in runs:
        t = x["track"]
        low = min(v["recall"] for v in t["per_label"].values())
        lo = x.get("loco", {}).get("mean_auroc")
        rows.append([name, mark(t["macro_f1"] >= 0.90, _with_ci(t, "macro_f1")), mark(low >= 0.80, f"{low:.2f}"),
                     mark(lo is not None and lo >= 0.90, _with_ci(x["loco"], "mean_auroc") if lo is not None else "-")])
    return ["Against the targets (macro-F1 >= 0.90, every recall >= 0.80, leave-one-composer-out mean AUROC "
            ">= 0.90):", "",
            table(rows, ["input representation", "macro-F1", "lowest recall", "LOCO mean AUROC"]), ""]


def _interval_note(s: dict) -> list[str]:
    iv = s.get("intervals")
    if not iv:
        return []
    return [f"Intervals (here and below) are {iv['level']:.0%} percentile intervals over {iv['draws']} draws of "
            f"{iv['resampled']}, scored with the same models: how much the figure rests on which works happen "
            "to be in the data set.", ""]


def _versus(s: dict) -> list[str]:
    names = {"macro_f1": "track macro-F1", "loco_mean_auroc": "leave-one-composer-out mean AUROC"}
    lines = [f"musicid minus the published attempt, {names[k]}: **{d['difference']:+.3f}** "
             f"(95% interval {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}, both judged on each draw's works)  "
             for k, d in s.get("vs_baseline", {}).items()]
    return [*lines, ""] if lines else []


def render(s: dict, command: str) -> str:
    m = s["meta"]
    classifier = s["track"]["classifier"]
    out = [START, "",
           f"Command: `{command}`  ",
           f"Machine: {m['machine']['platform']}, {m['machine']['cpus']} CPUs  ",
           f"Date: {m['date']}; musicid {m['musicid_version']}; wall time {m['wall_seconds'] / 60:.1f} min "
           f"({m['folds']} folds + {len(s.get('loco', {}).get('per_composer', {}))} leave-one-composer-out "
           f"models{_cached(m)}{' + the published baseline' if 'baseline' in s else ''})  ",
           f"Data: {m['tracks']} tracks by {', '.join(m['composers'])}; {m['failed']} could not be rendered", "",
           f"### Closed set: {m['folds']}-fold cross-validation grouped by work", "",
           table([[name, f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}", _with_ci(r, "macro_f1"), str(r["n"])]
                  for name, r in _closed_rows(s)],
                 ["level (classifier)", "accuracy", "balanced accuracy", "macro-F1 (95% interval)", "n"]), "",
           *_interval_note(s),
           f"Per composer and confusion matrix: track level, {classifier} classifier (the run's).", "",
           table([[c, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"])]
                  for c, v in s["track"]["per_label"].items()],
                 ["composer (track level)", "precision", "recall", "F1", "tracks"]), "",
           "Confusion matrix (rows: true composer), summed over the folds:", "",
           table([[c, *map(str, row)] for c, row in zip(s["track"]["labels"], s["track"]["confusion"], strict=True)],
                 ["true \\ predicted", *s["track"]["labels"]]), "",
           "![confusion matrix](img/confusion.png) ![embedding map](img/embedding_map.png)", ""]
    if "baseline" in s:
        b = s["baseline"]
        out += [f"### Side by side: the published method (`--baseline published`), same {m['folds']} folds", "",
                "First 30 s only, 44.1 kHz stereo, 64 mels, random triplets against one anchor file per "
                f"composer, nearest anchor ({b['skipped_tracks']} tracks could not be rendered).", "",
                table([["musicid", f"{s['track']['accuracy']:.3f}", f"{s['track']['balanced_accuracy']:.3f}",
                        _with_ci(s["track"], "macro_f1")],
                       ["published attempt", f"{b['track']['accuracy']:.3f}", f"{b['track']['balanced_accuracy']:.3f}",
                        _with_ci(b["track"], "macro_f1")]],
                      ["track level", "accuracy", "balanced accuracy", "macro-F1 (95% interval)"]), "",
                *_versus(s),
                table([[c, *map(str, row)] for c, row in zip(b["track"]["labels"], b["track"]["confusion"],
                                                              strict=True)],
                      ["published: true \\ predicted", *b["track"]["labels"]]), ""]
        if "loco" in b:
            out += ["The published attempt, leave one composer out (distance to the nearest anchor as the "
                    "novelty score): mean "
                    f"AUROC {_with_ci(b['loco'], 'mean_auroc', bold=True)}: "
                    + ", ".join(f"{c} {v['auroc']:.2f}" for c, v in b["loco"]["per_composer"].items())
                    + f". musicid ({s['loco']['method']}): {_with_ci(s['loco'], 'mean_auroc')}.", ""]
    others = s.get("front_end_runs", [])
    if others:
        rows = [[f"musicid, {_front(s)} (default)", s]]
        rows += [[f"musicid, {_front(r)} (`--features {_front(r)}`)", r] for r in others]
        out += [f"### Side by side: the input representations, same {m['folds']} folds", "",
                "The other representations were run separately ("
                + "; ".join(f"{_front(r)}: {r['meta']['wall_seconds'] / 60:.1f} min{_cached(r['meta'])}, "
                            f"{r['meta']['date']}" for r in others)
                + "), on the same folds and leave-one-composer-out splits.", "",
                table([[f"{name}, {x['track']['classifier']}", f"{x['track']['accuracy']:.3f}",
                        f"{x['track']['balanced_accuracy']:.3f}", f"{x['track']['macro_f1']:.3f}",
                        " / ".join(f"{v['recall']:.2f}" for v in x["track"]["per_label"].values()),
                        " / ".join(f"{x['loco_by_method'][v]['mean_auroc']:.3f}" if v in x.get("loco_by_method", {})
                                   else "-" for v in s.get("loco_by_method", {}))]
                       for name, x in rows],
                      ["track level (classifier)", "accuracy", "balanced accuracy", "macro-F1",
                       "recall " + " / ".join(s["track"]["labels"]), f"LOCO mean AUROC, {_methods(s)}"]), ""]
        for _, x in rows:
            others_ = "; ".join(f"{n}: macro-F1 {v['macro_f1']:.3f}, balanced {v['balanced_accuracy']:.3f}"
                                for n, v in x.get("track_by_classifier", {}).items()
                                if n != x["track"]["classifier"])
            line = f"- {_front(x)}: other classifier {others_}" if others_ else f"- {_front(x)}"
            if "loco" in x:
                line += (f"; leave one composer out, {x['loco']['method']}: "
                         + ", ".join(f"{c} {v['auroc']:.2f}" for c, v in x["loco"]["per_composer"].items())
                         + f" (mean {x['loco']['mean_auroc']:.3f})")
            out.append(line + ".")
        out += ["", *_targets([(f"{_front(x)}{' (default)' if x is s else ''}", x) for _, x in rows])]
    methods = s.get("loco_by_method") or ({s["loco"]["method"]: s["loco"]} if "loco" in s else {})
    if methods:
        out += ["### Open set: leave one composer out", "",
                "Train and index without one composer; score its tracks for novelty against held-out tracks of "
                "the others; the threshold is calibrated on a third, separate set of known-composer tracks "
                "(95% kept). The same models and splits score every novelty method (the run's `--novelty` "
                f"was {s['loco']['method']}).", ""]
        for method, lo in methods.items():
            out += [f"Novelty score **{method}**:", "",
                    table([[c, _with_ci(v, "auroc"), f"{v['fpr_at_95_tpr']:.2f}", f"{v['flagged_novel']:.2f}",
                            f"{v['flagged_known']:.2f}", f"{v['novel_tracks']} / {v['known_tracks']}"]
                           for c, v in lo["per_composer"].items()]
                          + [["**mean**", _with_ci(lo, "mean_auroc", bold=True), f"{lo['mean_fpr_at_95_tpr']:.2f}",
                              "", "", ""]],
                          ["held-out composer", "AUROC (95% interval)", "FPR at 95% TPR", "flagged (novel)",
                           "flagged (known)", "tracks novel / known"]), ""]
    out.append(END)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--command", default="musicid eval ../shared/data/sfl-challenge/train")
    ap.add_argument("--baseline-run", type=Path, help="take the `--baseline published` figures from this run")
    ap.add_argument("--front-end-run", type=Path, action="append", default=[],
                    help="a run with another --features (input representation), shown side by side (repeatable)")
    args = ap.parse_args()
    summary = json.loads((args.run_dir / "eval.json").read_text())
    if args.baseline_run:  # the baseline from another run on the same folds
        other = json.loads((args.baseline_run / "eval.json").read_text())
        if other["fold_of"] != summary["fold_of"]:
            raise SystemExit("the baseline run used other folds")
        summary["baseline"] = other["baseline"]
    for run in args.front_end_run:  # other input representations on the same folds
        other = json.loads((run / "eval.json").read_text())
        if other["fold_of"] != summary["fold_of"]:
            raise SystemExit(f"the front-end run {run} used other folds")
        summary.setdefault("front_end_runs", []).append(other)
    (DOCS / "img").mkdir(parents=True, exist_ok=True)
    for png in ("confusion.png", "embedding_map.png"):
        if (args.run_dir / png).exists():
            shutil.copyfile(args.run_dir / png, DOCS / "img" / png)
    path = DOCS / "RESULTS.md"
    text = path.read_text() if path.exists() else f"# Results\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + render(summary, args.command) + tail)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
