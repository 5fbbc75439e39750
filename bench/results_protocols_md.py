"""Regenerate docs/RESULTS.md's section on the many-composer protocols from real `musicid eval` runs.

    python bench/results_protocols_md.py "LABEL=RUN_DIR" ["LABEL=RUN_DIR" ...] --command "musicid eval ..." \
        [--cross "LABEL=RUN_DIR" ...] [--enrolment "LABEL=RUN_DIR" ...]

Each RUN_DIR holds the eval.json of `musicid eval DATA --protocol many-composers --model M -o RUN_DIR`
(evaluation/enrolment.py); one row per run in each table, in the order given (the shipped embedder and the one
before it side by side). Replaces what lies between the protocols markers of docs/RESULTS.md
(appended when absent); the rest is kept. --cross: runs of the cross-collection protocol with the same
embedders (`musicid eval asap --enrol sfl-challenge/train --model M`), one row each, after them.
--enrolment: runs of `musicid eval DATA --protocol enrolment-size --model M`, one row per run and size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from results_general_md import cross_rows
from results_md import DOCS, table

START, END = "<!-- generated:protocols:start -->", "<!-- generated:protocols:end -->"


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(x: float | None, ci: list[float] | None) -> str:
    return _f(x) + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci and all(v == v for v in ci) else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _auroc_range(m: dict[str, Any]) -> str:
    rng = m.get("auroc_range") or [None, None]
    return f"**{_f(m['auroc'])}**" + (f" ({_f(rng[0], 2)}-{_f(rng[1], 2)})" if rng[0] else "")


def mean_rows(runs: list[tuple[str, dict[str, Any]]], key: str) -> list[list[str]]:
    rows = []
    for label, r in runs:
        m = r[key]["mean"]
        rows.append([label, _auroc_range(m), _f(m["macro_f1"]), _pct(m["flagged_known"]), _pct(m["flagged_novel"]),
                     _pct(max(m["flagged_known_by_genre"].values(), default=None))])
    return rows


def split_rows(runs: list[tuple[str, dict[str, Any]]], key: str) -> list[list[str]]:
    rows = []
    for label, r in runs:
        for s in r[key]["splits"]:
            rows.append([label, s["split"], str(s["enrolled"]), str(s["novel_composers"]),
                         f"{s['known_tracks']} / {s['novel_tracks']}",
                         _ci(s["classification"]["macro_f1"], s["classification"].get("macro_f1_ci")),
                         _ci(s["novelty"]["auroc"], s["novelty"].get("auroc_ci")),
                         _pct(s["novelty"]["flagged_known"]), _pct(s["novelty"]["flagged_novel"]),
                         f"{s['seconds']:.0f}"])
    return rows


def genre_rows(runs: list[tuple[str, dict[str, Any]]], key: str) -> list[list[str]]:
    rows = []
    for label, r in runs:
        genres: dict[str, list[dict[str, Any]]] = {}
        for s in r[key]["splits"]:
            for g, e in s["flag_rates_by_genre"].items():
                genres.setdefault(g, []).append(e)
        for g, entries in sorted(genres.items()):
            known = [e for e in entries if "known" in e]
            novel = [e for e in entries if "novel" in e]
            k = sum(e["known"] * e["known_tracks"] for e in known) / max(1, sum(e["known_tracks"] for e in known))
            n = sum(e["novel"] * e["novel_tracks"] for e in novel) / max(1, sum(e["novel_tracks"] for e in novel))
            named = [(e["named_right"], e["known_tracks"]) for e in known if "named_right" in e]
            right = sum(a * b for a, b in named) / max(1, sum(b for _, b in named)) if named else None
            aurocs = [e["auroc"] for e in entries if "auroc" in e]
            rows.append([label, g, f"{_pct(k) if known else '-'} of {sum(e['known_tracks'] for e in known)}",
                         f"{_pct(n) if novel else '-'} of {sum(e['novel_tracks'] for e in novel)}",
                         _pct(right), _f(sum(aurocs) / len(aurocs)) if aurocs else "-"])
    return rows


def size_rows(runs: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    rows = []
    for label, r in runs:
        for size, m in r["enrolment_size"]["by_size"].items():
            rows.append([label, size, _auroc_range(m), _f(m["macro_f1"]), _pct(m["flagged_known"]),
                         _pct(m["flagged_novel"])])
    return rows


def size_section(runs: list[tuple[str, dict[str, Any]]], shared_cores: bool = False) -> list[str]:
    first = runs[0][1]["enrolment_size"]["splits"][0]
    walls = ", ".join(f"{label} {r['wall_seconds'] / 60:.1f} min" for label, r in runs)
    return [f"**Enrolment size** (`--protocol enrolment-size`: the {first['enrolled']} enrolable reserve composers "
            "with more than 7 works, enrolled from 1, 3, 5 and 7 of them in turn and queried with the same "
            f"remaining works, {first['known_tracks']} known and {first['novel_tracks']} novel tracks in the first "
            "draw), mean over draws:", "",
            table(size_rows(runs), ["embedder", "works enrolled per composer", "novelty AUROC (range over draws)",
                                    "naming macro-F1", "known flagged", "novel flagged"]), "",
            f"Wall time: {walls}" + (" (beside a training)." if shared_cores else "."), ""]


def section(runs: list[tuple[str, dict[str, Any]]], command: str,
            cross: list[tuple[str, dict[str, Any]]] | None = None, shared_cores: bool = False,
            sizes: list[tuple[str, dict[str, Any]]] | None = None) -> str:
    first = runs[0][1]
    reserve = first["reserve"]
    out = [START, "", "### Many composers: unseen composers and other genres (generated)", "",
           f"Generated by `bench/results_protocols_md.py` from `{command}`. The reserve (seed "
           f"{reserve['seed']}): {len(reserve['enrolable'])} enrolable composers and "
           f"{len(reserve['novel_only'])} queried only as novel, {reserve['tracks']} tracks, none in any "
           "embedder's training below. Intervals: 95%, from resampling whole works; the flag rate's nominal "
           "level on known works is 5%.", ""]
    for key, title in (("many_unseen", "Many unseen composers (30 enrolled from up to 3 works each, 30 novel, "
                                       "per draw)"),
                       ("leave_genres_out", "Leave genres out (enrolled from their main genre, queried in the "
                                            "others; the novel-only composers beside them)")):
        if not all(key in r for _, r in runs):
            continue
        out += [f"**{title}**, mean over draws:", "",
                table(mean_rows(runs, key), ["embedder", "novelty AUROC (range over draws)", "naming macro-F1",
                                             "known flagged", "novel flagged", "worst genre, known flagged"]), "",
                "Per draw:", "",
                table(split_rows(runs, key), ["embedder", "draw", "enrolled", "novel composers",
                                              "known / novel tracks", "naming macro-F1", "novelty AUROC",
                                              "known flagged", "novel flagged", "s"]), "",
                "By the query's genre, over every draw (flag rates and known works named right pooled over "
                "the draws; the novelty AUROC within the genre, its novel works against its known ones, the "
                "mean over the draws that have both):", "",
                table(genre_rows(runs, key), ["embedder", "genre", "known flagged", "novel flagged",
                                              "known named right", "novelty AUROC"]), ""]
    walls = ", ".join(f"{label} {r['wall_seconds'] / 60:.1f} min" for label, r in runs)
    out += [f"Wall time on 2 cores (features cached): {walls}" + (" (the runs shared the cores with a training: "
            "not speed figures)." if shared_cores else "."), ""]
    if sizes:
        out += size_section(sizes, shared_cores)
    if cross:
        out += cross_rows(cross, "### Cross-collection with the same embedders: enrol `sfl-challenge/train`, "
                                 "query all of ASAP (generated)")
        out += ["An embedder trained on ASAP has seen the novel composers here: 0.3.0's 20 training composers "
                "include all 16 of ASAP's, and 0.4.0's trained on every ASAP piece. For them the targets "
                "\"met\" and the AUROC over all novel composers measure memory, not generalisation; the column of "
                "novel composers the embedder never saw does not.", ""]
    out += [END]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--command", required=True)
    ap.add_argument("--cross", action="append", default=[], help="LABEL=RUN_DIR of a cross-collection run")
    ap.add_argument("--enrolment", action="append", default=[],
                    help="LABEL=RUN_DIR of an enrolment-size run (--protocol enrolment-size)")
    ap.add_argument("--shared-cores", action="store_true", help="say the runs' wall times are not speed figures")
    args = ap.parse_args()

    def load(specs: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [(s.split("=", 1)[0], json.loads((Path(s.split("=", 1)[1]) / "eval.json").read_text())) for s in specs]

    runs = load(args.runs)
    doc = DOCS / "RESULTS.md"
    text = doc.read_text()
    new = section(runs, args.command, load(args.cross), args.shared_cores, load(args.enrolment))
    if START in text and END in text:
        text = text[:text.index(START)] + new + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    doc.write_text(text)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
