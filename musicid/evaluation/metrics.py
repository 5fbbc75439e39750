"""Classification and novelty metrics, as plain functions of label and score arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Labels = Sequence[str] | np.ndarray
Scores = Sequence[float] | np.ndarray


def confusion_matrix(y_true: Labels, y_pred: Labels, labels: Sequence[str]) -> np.ndarray:
    """Counts, rows = true label, columns = predicted label, in `labels` order."""
    index = {c: i for i, c in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        m[index[t], index[p]] += 1
    return m


def classification_report(y_true: Labels, y_pred: Labels, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 and per-label precision/recall/F1/support.

    Labels with no true examples are left out of the balanced accuracy and macro-F1.
    """
    m = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(m).astype(float)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    return {
        "n": int(m.sum()),
        "accuracy": float(tp.sum() / max(m.sum(), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_label": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(labels)},
        "confusion": m.tolist(),
        "labels": list(labels),
    }


def auroc(novel_scores: Scores, known_scores: Scores) -> float:
    """Probability that a novel item scores above a known one (ties count half)."""
    n = np.asarray(novel_scores, dtype=float)
    k = np.asarray(known_scores, dtype=float)
    if not len(n) or not len(k):
        return float("nan")
    greater = (n[:, None] > k[None, :]).sum()
    ties = (n[:, None] == k[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(n) * len(k)))


def fpr_at_tpr(novel_scores: Sequence[float], known_scores: Sequence[float], tpr: float = 0.95) -> float:
    """Share of known items flagged when the threshold flags `tpr` of the novel ones."""
    n = np.sort(np.asarray(novel_scores, dtype=float))
    k = np.asarray(known_scores, dtype=float)
    if not len(n) or not len(k):
        return float("nan")
    # the highest threshold that still flags at least tpr of the novel items (score >= t)
    t = n[int(np.floor((1 - tpr) * len(n) + 1e-9))]
    return float((k >= t).mean())


def group_bootstrap(groups: Sequence[Any] | np.ndarray, strata: Sequence[Any] | np.ndarray, draws: int,
                    seed: int = 0) -> np.ndarray:
    """(draws, n_rows) multiplicities: each draw resamples whole groups with replacement, as many
    per stratum as the stratum has, and counts how often each row comes back.

    With works as groups and composers as strata, every draw keeps each composer's number of works
    and never splits a work, so the spread of a figure over the draws is what another set of works
    of the same composers might give."""
    groups, strata = np.asarray(groups), np.asarray(strata)
    rng = np.random.default_rng(seed)
    out = np.zeros((draws, len(groups)), dtype=np.int64)
    by_stratum = []
    for s in sorted(set(strata.tolist()), key=str):
        names, rows_of = np.unique(groups[strata == s], return_inverse=True)
        by_stratum.append((np.flatnonzero(strata == s), len(names), rows_of))
    for d in range(draws):
        for rows, n_groups, group_of_row in by_stratum:
            times = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
            out[d, rows] = times[group_of_row]
    return out


def macro_f1_draws(draws: np.ndarray, tested: np.ndarray, y_pred: Sequence[str], y_true: Labels,
                   labels: Sequence[str]) -> np.ndarray:
    """(n_draws,) macro-F1 under each draw's multiplicities (group_bootstrap: (n_draws, n_rows)).

    tested: the rows that were predicted; y_pred: their predictions, in that order; y_true: every
    row's true label."""
    true = np.asarray(y_true)[tested]
    pred = np.asarray(y_pred)
    return np.array([classification_report(np.repeat(true, d[tested]), np.repeat(pred, d[tested]), labels)["macro_f1"]
                     for d in draws])


def auroc_draws(draws: np.ndarray, novel_rows: np.ndarray, novel_scores: Scores, known_rows: np.ndarray,
                known_scores: Scores) -> np.ndarray:
    """(n_draws,) AUROC of novel against known scores under each draw's multiplicities (NaN where a
    draw holds no novel or no known row)."""
    ns, ks = np.asarray(novel_scores), np.asarray(known_scores)
    return np.array([auroc(np.repeat(ns, d[novel_rows]), np.repeat(ks, d[known_rows])) for d in draws])


def percentile_interval(values: Scores, level: float = 0.95) -> list[float]:
    """The central `level` share of the finite values: [low, high]."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    return [float(x) for x in np.percentile(v, [tail, 100 - tail])]


def open_set_figures(novel: Scores, known: Scores, threshold: float, n_calib: int) -> dict[str, Any]:
    """One open-set split's figures: AUROC and FPR at 95% TPR of the novelty scores (novel tracks
    the positives), and the shares the threshold flagged of each."""
    return {"auroc": auroc(novel, known), "fpr_at_95_tpr": fpr_at_tpr(list(novel), list(known), 0.95),
            "threshold": float(threshold), "novel_tracks": len(novel), "known_tracks": len(known),
            "calibration_tracks": n_calib,
            "flagged_novel": float(np.mean(np.asarray(novel) > threshold)),
            "flagged_known": float(np.mean(np.asarray(known) > threshold))}


def loco_summary(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Leave-one-composer-out figures (open_set_figures per left-out composer) and their means."""
    return {"per_composer": per, "mean_auroc": float(np.mean([v["auroc"] for v in per.values()])),
            "mean_fpr_at_95_tpr": float(np.mean([v["fpr_at_95_tpr"] for v in per.values()]))}
