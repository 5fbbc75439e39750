"""Cross-collection evaluation: an embedder trained on some collections enrols another collection's
composers, and a third collection's tracks are queried against that index.

Nothing here trains: the embedder is given (`musicid embedder train` on collections that do not
include the query collection), the index is built from the enrol folder with it, and the query
collection's tracks by enrolled composers are *known* (they should be named right and not flagged)
while its tracks by every other composer are *novel* (they should be flagged). Because the query
collection was in neither the embedder's training nor the index, no test work can leak; a novel
composer that the embedder did see in training is reported apart ("seen by the embedder"), since a
general embedder's background composers are allowed to help (the general-embedder protocol).

Figures: naming accuracy, balanced accuracy and macro-F1 on the known tracks; novelty AUROC and FPR
at 95% TPR (novel tracks the positives); open-set macro-F1 with "unknown" as a class (what a user
gets from the flag); each with 95% intervals from resampling whole works (metrics.group_bootstrap).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..build.corpus import BuildOptions
from ..build.indexer import build_index
from ..collection.dataset import group_works, scan_labelled, work_key
from ..errors import DataDirError
from ..features.cache import FeatureCache
from ..features.prepare import Failure, prepare_many
from ..model.embedder import load_checkpoint
from ..progress import ProgressFn
from ..recognize.query import QueryEngine
from .metrics import (
    auroc,
    auroc_draws,
    classification_report,
    fpr_at_tpr,
    group_bootstrap,
    macro_f1_draws,
    percentile_interval,
)

UNKNOWN = "(unknown)"


def open_set_labels(composers: list[str], named: list[str], novel_flags: list[bool], known: set[str]
                    ) -> tuple[list[str], list[str]]:
    """(truth, prediction) with every composer outside `known` as UNKNOWN and every flagged track
    predicted UNKNOWN: the labels of the open-set macro-F1."""
    truth = [c if c in known else UNKNOWN for c in composers]
    pred = [UNKNOWN if flag else n for n, flag in zip(named, novel_flags, strict=True)]
    return truth, pred


def enrol_figures(rows: list[dict[str, Any]], known: set[str], enrolled: list[str],
             draws: np.ndarray | None) -> dict[str, Any]:
    """The protocol's figures over rows (one per query track), with intervals over draws."""
    is_known = np.array([r["composer"] in known for r in rows])
    scores = np.array([r["novelty"] for r in rows])
    k_idx, n_idx = np.flatnonzero(is_known), np.flatnonzero(~is_known)
    naming = classification_report([rows[i]["composer"] for i in k_idx], [rows[i]["named"] for i in k_idx],
                                   enrolled)
    truth, pred = open_set_labels([r["composer"] for r in rows], [r["named"] for r in rows],
                                  [r["novel"] for r in rows], known)
    labels = [*enrolled, UNKNOWN]
    out: dict[str, Any] = {
        "known_tracks": len(k_idx), "novel_tracks": len(n_idx),
        "classification": naming,
        "novelty": {"auroc": auroc(scores[n_idx], scores[k_idx]),
                    "fpr_at_95_tpr": fpr_at_tpr(list(scores[n_idx]), list(scores[k_idx]), 0.95),
                    "flagged_novel": float(np.mean([rows[i]["novel"] for i in n_idx])) if len(n_idx) else None,
                    "flagged_known": float(np.mean([rows[i]["novel"] for i in k_idx])) if len(k_idx) else None},
        "open_set": classification_report(truth, pred, labels),
    }
    if draws is not None and len(k_idx) and len(n_idx):
        composers = [r["composer"] for r in rows]
        out["classification"]["macro_f1_ci"] = percentile_interval(macro_f1_draws(
            draws, k_idx, [rows[i]["named"] for i in k_idx], composers, enrolled))
        out["novelty"]["auroc_ci"] = percentile_interval(auroc_draws(draws, n_idx, scores[n_idx], k_idx, scores[k_idx]))
        out["open_set"]["macro_f1_ci"] = percentile_interval(macro_f1_draws(
            draws, np.arange(len(rows)), pred, truth, labels))
    return out


def evaluate_cross_collection(model: Path, enrol_dir: Path, query_dir: Path,
                              options: BuildOptions = BuildOptions(), bootstrap: int = 1000,
                              progress: ProgressFn | None = None) -> dict[str, Any]:
    """Enrol `enrol_dir` with the given embedder (no training; fine-tuned on it first with
    options.fine_tune, as index build --fine-tune does), query every track of `query_dir`
    (`<root>/<Composer>/...`) and judge naming and novelty; JSON-ready. Raises DataDirError when the
    query collection has no track by an enrolled composer or none by another."""
    t0 = time.monotonic()
    _, _, meta = load_checkpoint(model)
    seen_by_embedder = set(meta.get("composers", []))
    with tempfile.TemporaryDirectory(prefix="musicid-enrol-") as tmp:
        report = build_index(enrol_dir, Path(tmp) / "index", replace(options, model_path=model), progress)
        engine = QueryEngine.open(Path(tmp) / "index")
        refs, _ = scan_labelled(query_dir)
        cache = FeatureCache.for_tracks(options.cache_dir, engine.render_settings, engine.features)
        prepared = prepare_many([r.path for r in refs], engine.render_settings, engine.features, cache,
                                options.workers, progress)
        rows: list[dict[str, Any]] = []
        for n, (ref, p) in enumerate(zip(refs, prepared, strict=True)):
            if isinstance(p, Failure):
                continue
            r = engine.score(p, str(ref.path.relative_to(query_dir)))
            rows.append({"path": r.path, "composer": str(ref.composer), "named": r.composer,
                         "novelty": r.novelty, "novel": r.novel, "known_piece": r.known_piece,
                         "work": work_key(ref.path, str(ref.composer), options.group_by, ref.base),
                         "notes_hash": p.notes_hash, "sketch": p.sketch})
            if progress:
                progress("embed", n + 1, len(refs))
    known = set(report.composers)
    if not any(r["composer"] in known for r in rows) or all(r["composer"] in known for r in rows):
        raise DataDirError(f"{query_dir}: the query collection needs tracks by enrolled composers "
                           f"({', '.join(sorted(known))}) and by others")
    groups = group_works([str(r["work"]) for r in rows], [str(r["notes_hash"]) for r in rows],
                         np.stack([r.pop("sketch") for r in rows]))
    draws = group_bootstrap(groups, [r["composer"] for r in rows], bootstrap) if bootstrap else None
    unseen = [r for r in rows if r["composer"] in known or r["composer"] not in seen_by_embedder]
    return {
        "protocol": "cross-collection",
        "model": {"path": str(model), "composers": sorted(seen_by_embedder),
                  "collections": [c.get("path") for c in meta.get("collections", [])]},
        "novelty_method": options.novelty.method, "threshold_rule": options.novelty.threshold_rule,
        "classifier": options.classifier, "fine_tuned": options.fine_tune,
        "enrolled": report.composers, "enrol_dir": str(enrol_dir.resolve()), "query_dir": str(query_dir.resolve()),
        "all": enrol_figures(rows, known, report.composers, draws),
        "novel_unseen_by_embedder": (enrol_figures(unseen, known, report.composers, None)
                                     if len(unseen) < len(rows) else None),
        "novel_composers": {c: sum(r["composer"] == c for r in rows)
                            for c in sorted({str(r["composer"]) for r in rows} - known)},
        "tracks": rows,
        "wall_seconds": round(time.monotonic() - t0, 1),
    }
