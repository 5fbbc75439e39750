"""Work-resampling 95% intervals beside `musicid eval`'s headline figures.

Every interval comes from the same draws of whole works (metrics.group_bootstrap: works drawn
with replacement, each composer keeping its number of works; Efron & Tibshirani 1993, the
cluster bootstrap), so that tracks of one work, and performances of one piece, are never
counted as independent evidence. Differences to the published baseline are paired: both
methods are judged on each draw's works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .baseline import LocoScores
from .metrics import auroc_draws, macro_f1_draws, percentile_interval


def _auroc_draws(draws: np.ndarray, scores: LocoScores) -> dict[str, np.ndarray]:
    """Each left-out composer's AUROC under each draw's multiplicities."""
    return {c: auroc_draws(draws, ni, ns, ki, ks) for c, (ni, ns, ki, ks) in scores.items()}


def _mean_over(per: dict[str, np.ndarray]) -> np.ndarray:
    """Each draw's mean over the left-out composers, leaving out a composer whose draw held no novel
    or no known track (AUROC undefined); NaN where every composer's was."""
    stacked = np.stack(list(per.values()))
    finite = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        return np.where(finite, stacked, 0.0).sum(axis=0) / finite.sum(axis=0)


def add_intervals(out: dict[str, Any], draws: np.ndarray, composers_of: Sequence[str], labels: Sequence[str],
                  tested: np.ndarray, y_pred: dict[str, list[str]], classifier: str, method: str,
                  loco: dict[str, LocoScores], published: tuple[np.ndarray, list[str], LocoScores] | None,
                  kinds: Sequence[str] = ()) -> None:
    """Write 95% intervals into eval's summary `out` beside each headline figure, from the same draws
    (n_draws, n_tracks) of whole works (also per timing kind, kinds: one per corpus track); and the
    differences to the published baseline, paired (both methods judged on each draw's works).
    tested: the corpus indices of the named tracks, y_pred: their names by each classifier; loco:
    each novelty method's per-left-out-composer scores; published: the baseline's (tested, names,
    loco scores) or None."""
    f1 = {n: macro_f1_draws(draws, tested, p, composers_of, labels) for n, p in y_pred.items()}
    for n, values in f1.items():
        out["track_by_classifier"][n]["macro_f1_ci"] = percentile_interval(values)
    out["track"]["macro_f1_ci"] = out["track_by_classifier"][classifier]["macro_f1_ci"]
    for kind, rep in out.get("track_by_timing", {}).items():
        mine = np.asarray([kinds[i] == kind for i in tested], dtype=bool)
        rep["macro_f1_ci"] = percentile_interval(macro_f1_draws(
            draws, tested[mine], list(np.asarray(y_pred[classifier])[mine]), composers_of, labels))
    means = {}
    for v, scores in loco.items():
        per = _auroc_draws(draws, scores)
        means[v] = _mean_over(per)
        out["loco_by_method"][v]["mean_auroc_ci"] = percentile_interval(means[v])
        for c, values in per.items():
            out["loco_by_method"][v]["per_composer"][c]["auroc_ci"] = percentile_interval(values)
    if method in loco:
        out["loco"]["mean_auroc_ci"] = out["loco_by_method"][method]["mean_auroc_ci"]
    out["intervals"] = {"level": 0.95, "draws": len(draws),
                        "resampled": "whole works with replacement, each composer keeping its number of works"}
    if published is None:
        return
    base_tested, base_pred, base_loco = published
    base = out["baseline"]
    base_f1 = macro_f1_draws(draws, base_tested, base_pred, composers_of, labels)
    base["track"]["macro_f1_ci"] = percentile_interval(base_f1)
    vs: dict[str, Any] = {"macro_f1": {"difference": out["track"]["macro_f1"] - base["track"]["macro_f1"],
                                       "ci": percentile_interval(f1[classifier] - base_f1)}}
    if base_loco:
        base_mean = _mean_over(_auroc_draws(draws, base_loco))
        base["loco"]["mean_auroc_ci"] = percentile_interval(base_mean)
        if method in means:
            vs["loco_mean_auroc"] = {"difference": out["loco"]["mean_auroc"] - base["loco"]["mean_auroc"],
                                     "ci": percentile_interval(means[method] - base_mean)}
    out["vs_baseline"] = vs
