"""Honest evaluation: k-fold cross-validation grouped by work, and leave-one-composer-out novelty.

No work (all movements of one catalog number, every file with identical notes)
ever has tracks on both sides of a split. Each fold trains its own embedder on
the other folds, indexes them, and queries the held-out fold exactly as
`musicid query` would.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .cache import FeatureCache
from .classifier import NAMINGS
from .dataset import group_works, holdout_split, kfold_groups, scan_labelled, work_key
from .embedder import Embedder, dims_for, embed_clips
from .errors import TrainingError
from .indexer import BuildOptions, make_store, naming_for, train_or_load
from .metrics import auroc, classification_report, fpr_at_tpr, group_bootstrap, percentile_interval
from .novelty import VIEWS, clip_stats
from .prepare import Prepared, prepare_many
from .query import (
    BLEND_PARTS,
    DEFAULT_K,
    blend_novelty,
    blend_scales,
    calibrate_threshold,
    neighbour_composers,
    shares,
    track_novelty,
)

ProgressFn = Callable[[str, int, int], None]


@dataclass
class EvalOptions:
    folds: int = 5
    k: int = DEFAULT_K
    loco: bool = True  # leave-one-composer-out novelty
    baseline: str | None = None  # "seed": also run the published method on the same splits
    seed_epochs: int = 10  # the published method's; fewer only to test the wiring
    bootstrap: int = 1000  # resamplings of whole works for the 95% intervals; 0: none
    build: BuildOptions = field(default_factory=BuildOptions)


def _store_for(prepared: list[Prepared], composers_of: list[str], vectors: list[np.ndarray],
               stats: list[np.ndarray], idx: np.ndarray, groups: np.ndarray, composers: list[str],
               build: BuildOptions) -> Any:
    return make_store(prepared, composers_of, vectors, stats, idx, groups, np.zeros(len(prepared), bool), composers,
                      {"composers": composers, "naming": naming_for(build),
                       "novelty": {"k": build.novelty_k, "view": build.novelty_view, "threshold": float("inf")}},
                      root=Path("/"))


def _name_both_ways(store: Any, vecs: np.ndarray, k: int) -> tuple[dict[str, str], list[str]]:
    """One held-out track's composer by each naming (vote, head), and each clip's own k-NN vote
    winner, from one search."""
    _, ids = store.search(vecs, k)
    voters = neighbour_composers(store, store.track_of(ids)[:, :k])  # each neighbour's composer, looked up once
    composers = store.composers
    named = {"vote": composers[int(np.argmax(shares(voters, len(composers))))],
             "head": composers[int(np.argmax(store.head.track_proba(vecs)))]}
    clips = [composers[int(np.argmax(shares(row, len(composers))))] for row in voters]
    return named, clips


Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train, calibration, known-test, novel
# per left-out composer: novel track indices, their scores, known-test track indices, their scores
LocoScores = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def loco_splits(composers_of: Sequence[str], groups: np.ndarray, seed: int) -> dict[str, Split]:
    """For each composer: (train, calibration, known-test, novel) track indices, works kept whole.

    The other composers' tracks are split three ways: 20% known-test, then 20% of the rest to
    calibrate the threshold on, and the rest to train and index.
    """
    labels = np.asarray(composers_of)
    out = {}
    for c in sorted(set(composers_of)):
        known_idx = np.flatnonzero(labels != c)
        test_mask = holdout_split(list(labels[known_idx]), groups[known_idx], 0.2, seed)
        rest = known_idx[~test_mask]
        calib_mask = holdout_split(list(labels[rest]), groups[rest], 0.2, seed + 1)
        novel = np.flatnonzero(labels == c)
        out[c] = (rest[~calib_mask], rest[calib_mask], known_idx[test_mask], novel)
    return out


def _open_set(novel: Sequence[float], known: Sequence[float], threshold: float, n_calib: int) -> dict[str, Any]:
    return {"auroc": auroc(novel, known), "fpr_at_95_tpr": fpr_at_tpr(novel, known, 0.95),
            "threshold": float(threshold), "novel_tracks": len(novel), "known_tracks": len(known),
            "calibration_tracks": n_calib,
            "flagged_novel": float(np.mean(np.asarray(novel) > threshold)),
            "flagged_known": float(np.mean(np.asarray(known) > threshold))}


def _loco_summary(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"per_composer": per, "mean_auroc": float(np.mean([v["auroc"] for v in per.values()])),
            "mean_fpr_at_95_tpr": float(np.mean([v["fpr_at_95_tpr"] for v in per.values()]))}


def _seed_baseline(prepared: list[Prepared], composers_of: list[str], composers: list[str], fold: np.ndarray,
                   folds: int, splits: dict[str, Split], epochs: int = 10,
                   ) -> tuple[dict[str, Any], tuple[np.ndarray, list[str], LocoScores]]:
    """The published method on the same folds and leave-one-composer-out splits: its figures, and
    per track what they were computed from (tested tracks, their names, the novelty scores)."""
    from .baseline import (
        SEED_THRESHOLD,
        SeedSettings,
        anchor_files,
        nearest_anchor,
        prepare_seed_inputs,
        seed_embed,
        train_seed,
    )

    paths = [p.path for p in prepared]
    inputs, ok = prepare_seed_inputs(paths)
    row = {i: r for r, i in enumerate(ok)}  # track index -> row of inputs
    usable = np.array([i in row for i in range(len(prepared))])

    def fit(train_idx: np.ndarray) -> tuple[Any, dict[str, int]]:
        train_idx = train_idx[usable[train_idx]]
        rows = [row[i] for i in train_idx]
        anchors = anchor_files(paths, composers_of, list(train_idx))
        model = train_seed(inputs[rows], [composers_of[i] for i in train_idx],
                           {c: list(train_idx).index(i) for c, i in anchors.items()},  # positions in the subset
                           SeedSettings(epochs=epochs))
        return model, anchors

    def scores(model: Any, anchors: dict[str, int], idx: np.ndarray) -> tuple[list[str], np.ndarray]:
        idx = idx[usable[idx]]
        names = sorted(anchors)
        emb = seed_embed(model, inputs[[row[i] for i in idx]])
        anchor_emb = seed_embed(model, inputs[[row[anchors[c]] for c in names]])
        return nearest_anchor(emb, anchor_emb, names)

    tested: list[int] = []
    y_pred: list[str] = []
    for f in range(folds):
        model, anchors = fit(np.flatnonzero(fold != f))
        test = np.flatnonzero((fold == f) & usable)
        pred, _ = scores(model, anchors, test)
        tested += test.tolist()
        y_pred += pred
    y_true = [composers_of[i] for i in tested]
    result: dict[str, Any] = {"method": "seed (published attempt)", "skipped_tracks": int((~usable).sum()),
                              "track": classification_report(y_true, y_pred, composers)}
    loco_scores: LocoScores = {}
    if splits:
        per = {}
        for c, (train_idx, _calib, known_test, novel_idx) in splits.items():
            model, anchors = fit(train_idx)
            _, nov = scores(model, anchors, novel_idx)
            _, kn = scores(model, anchors, known_test)
            per[c] = _open_set(nov.tolist(), kn.tolist(), SEED_THRESHOLD, 0)
            loco_scores[c] = (novel_idx[usable[novel_idx]], nov, known_test[usable[known_test]], kn)
        result["loco"] = _loco_summary(per)
    return result, (np.asarray(tested, dtype=np.int64), y_pred, loco_scores)


def _macro_f1_draws(draws: np.ndarray, tested: np.ndarray, y_pred: Sequence[str], composers_of: Sequence[str],
                    labels: Sequence[str]) -> np.ndarray:
    """Track-level macro-F1 under each draw's multiplicities (rows: tracks)."""
    true = np.asarray(composers_of)[tested]
    pred = np.asarray(y_pred)
    return np.array([classification_report(np.repeat(true, d[tested]), np.repeat(pred, d[tested]), labels)["macro_f1"]
                     for d in draws])


def _auroc_draws(draws: np.ndarray, scores: LocoScores) -> dict[str, np.ndarray]:
    """Each left-out composer's AUROC under each draw's multiplicities."""
    return {c: np.array([auroc(np.repeat(ns, d[ni]), np.repeat(ks, d[ki])) for d in draws])
            for c, (ni, ns, ki, ks) in scores.items()}


def _mean_over(per: dict[str, np.ndarray]) -> np.ndarray:
    """Each draw's mean over the left-out composers, leaving out a composer whose draw held no novel
    or no known track (AUROC undefined); NaN where every composer's was."""
    stacked = np.stack(list(per.values()))
    finite = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        return np.where(finite, stacked, 0.0).sum(axis=0) / finite.sum(axis=0)


def _add_intervals(out: dict[str, Any], draws: np.ndarray, composers_of: Sequence[str], labels: Sequence[str],
                   tested: np.ndarray, y_pred: dict[str, list[str]], naming: str, view: str,
                   loco: dict[str, LocoScores], seed: tuple[np.ndarray, list[str], LocoScores] | None) -> None:
    """95% intervals beside each headline figure, from the same draws of whole works; and the
    differences to the seed baseline, paired (both methods judged on each draw's works)."""
    f1 = {n: _macro_f1_draws(draws, tested, p, composers_of, labels) for n, p in y_pred.items()}
    for n, values in f1.items():
        out["track_by_naming"][n]["macro_f1_ci"] = percentile_interval(values)
    out["track"]["macro_f1_ci"] = out["track_by_naming"][naming]["macro_f1_ci"]
    means = {}
    for v, scores in loco.items():
        per = _auroc_draws(draws, scores)
        means[v] = _mean_over(per)
        out["loco_by_view"][v]["mean_auroc_ci"] = percentile_interval(means[v])
        for c, values in per.items():
            out["loco_by_view"][v]["per_composer"][c]["auroc_ci"] = percentile_interval(values)
    if view in loco:
        out["loco"]["mean_auroc_ci"] = out["loco_by_view"][view]["mean_auroc_ci"]
    out["intervals"] = {"level": 0.95, "draws": len(draws),
                        "resampled": "whole works with replacement, each composer keeping its number of works"}
    if seed is None:
        return
    seed_tested, seed_pred, seed_loco = seed
    base = out["baseline"]
    seed_f1 = _macro_f1_draws(draws, seed_tested, seed_pred, composers_of, labels)
    base["track"]["macro_f1_ci"] = percentile_interval(seed_f1)
    vs: dict[str, Any] = {"macro_f1": {"difference": out["track"]["macro_f1"] - base["track"]["macro_f1"],
                                       "ci": percentile_interval(f1[naming] - seed_f1)}}
    if seed_loco:
        seed_mean = _mean_over(_auroc_draws(draws, seed_loco))
        base["loco"]["mean_auroc_ci"] = percentile_interval(seed_mean)
        if view in means:
            vs["loco_mean_auroc"] = {"difference": out["loco"]["mean_auroc"] - base["loco"]["mean_auroc"],
                                     "ci": percentile_interval(means[view] - seed_mean)}
    out["vs_baseline"] = vs


def _embed_all(model: Embedder, prepared: list[Prepared]) -> list[np.ndarray]:
    """Every track's clip vectors under one model, in track order."""
    return [embed_clips(model, torch.from_numpy(p.clips)) for p in prepared]


@dataclass
class EvalResult:
    summary: dict[str, Any]  # what eval.json holds
    map_vectors: dict[int, np.ndarray]  # fold 0 model's clip vectors per track, for the map
    map_composers: list[str]
    map_held_out: list[bool]  # track was in fold 0's test fold


def evaluate(data_dir: str | Path, options: EvalOptions = EvalOptions(),
             progress: ProgressFn | None = None) -> EvalResult:
    """Run every fold and every leave-one-composer-out split; return a JSON-ready result."""
    t_start = time.monotonic()
    b = options.build
    b = replace(b, dims=dims_for(b.dims, b.features))  # the embedder takes the front end's rows
    refs, _ = scan_labelled(data_dir, min_composers=2)
    cache = FeatureCache(b.cache_dir, {"render": b.render.identity(), "features": b.features.as_dict()})
    results = prepare_many([r.path for r in refs], b.render, b.features, cache, b.workers, progress)
    prepared = [p for p in results if isinstance(p, Prepared)]
    composers_of = [str(r.composer) for r, p in zip(refs, results, strict=True) if isinstance(p, Prepared)]
    composers = sorted(set(composers_of))
    groups = group_works([work_key(p.path, c, b.group_by) for p, c in zip(prepared, composers_of, strict=True)],
                         [p.fingerprint for p in prepared])
    fold = kfold_groups(composers_of, groups, options.folds, b.seed)
    stats = [clip_stats(p.clips) for p in prepared]
    steps = options.folds + (len(composers) if options.loco else 0) + (options.baseline == "seed")
    done = 0

    naming = naming_for(b)
    models_cached = 0  # of the fold and leave-one-composer-out models, how many the model cache held
    tested: list[int] = []  # held-out track indices, fold after fold
    y_pred: dict[str, list[str]] = {n: [] for n in NAMINGS}
    clip_true: list[str] = []
    clip_pred: list[str] = []
    per_fold = []
    map_vectors: dict[int, np.ndarray] = {}
    for f in range(options.folds):
        train_idx, test_idx = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if len({composers_of[i] for i in train_idx}) < 2 or not len(test_idx):
            raise TrainingError(f"fold {f} has too few composers or tracks; use fewer --folds")
        model, _, cached = train_or_load(prepared, composers_of, train_idx, composers, b)
        models_cached += cached
        vectors = _embed_all(model, prepared)
        store = _store_for(prepared, composers_of, vectors, stats, train_idx, groups, composers, b)
        fold_true, fold_pred = [], []
        for i in test_idx:
            named, votes = _name_both_ways(store, vectors[i], options.k)
            fold_true.append(composers_of[i])
            fold_pred.append(named[naming])
            for n in NAMINGS:
                y_pred[n].append(named[n])
            clip_true += [composers_of[i]] * len(votes)
            clip_pred += votes
        tested += test_idx.tolist()
        per_fold.append({"fold": f, "tracks": len(test_idx),
                         "accuracy": float(np.mean(np.array(fold_true) == np.array(fold_pred)))})
        if f == 0:
            map_vectors = dict(enumerate(vectors))
        done += 1
        if progress:
            progress("evaluate", done, steps)

    y_true = [composers_of[i] for i in tested]
    out: dict[str, Any] = {
        "track": {**classification_report(y_true, y_pred[naming], composers), "naming": naming},
        "track_by_naming": {n: classification_report(y_true, y_pred[n], composers) for n in NAMINGS},
        "clip": classification_report(clip_true, clip_pred, composers),
        "folds": per_fold,
        "fold_of": {str(p.path.relative_to(data_dir)): int(fold[i]) for i, p in enumerate(prepared)},
    }

    splits = loco_splits(composers_of, groups, b.seed) if options.loco else {}
    loco_scores: dict[str, LocoScores] = {}  # view -> what its figures were computed from
    if options.loco:
        loco: dict[str, dict[str, Any]] = {view: {} for view in VIEWS}
        for c, (train_idx, calib_idx, known_test, novel_idx) in splits.items():
            known_composers = sorted({composers_of[i] for i in train_idx})
            model, _, cached = train_or_load(prepared, composers_of, train_idx, known_composers, b)
            models_cached += cached
            vectors = _embed_all(model, prepared)
            store = _store_for(prepared, composers_of, vectors, stats, train_idx, groups, known_composers, b)
            raw: dict[str, dict[str, list[float]]] = {}  # view -> split part -> scores
            for view in (v for v in VIEWS if v != "blend"):  # the blend is made from its parts' scores
                raw[view] = {part: [track_novelty(store, vectors[i], stats[i], view, score=prepared[i].score)
                                    for i in idx]
                             for part, idx in (("calib", calib_idx), ("known", known_test), ("novel", novel_idx))}
            # the parts' scales from the calibration tracks, as index build does
            parts = {part: [dict(zip(BLEND_PARTS, p, strict=True))
                            for p in zip(*(raw[v][part] for v in BLEND_PARTS), strict=True)]
                     for part in ("calib", "known", "novel")}
            scales = blend_scales(parts["calib"])
            raw["blend"] = {part: [blend_novelty(p, scales) for p in ps] for part, ps in parts.items()}
            for view, r in raw.items():
                threshold = calibrate_threshold(r["calib"], b.novelty_keep)
                loco[view][c] = _open_set(r["novel"], r["known"], threshold, len(calib_idx))
                loco_scores.setdefault(view, {})[c] = (novel_idx, np.asarray(r["novel"]),
                                                       known_test, np.asarray(r["known"]))
            done += 1
            if progress:
                progress("evaluate", done, steps)
        out["loco"] = {**_loco_summary(loco[b.novelty_view]), "view": b.novelty_view}
        out["loco_by_view"] = {view: _loco_summary(per) for view, per in loco.items()}

    seed_rows = None
    if options.baseline == "seed":
        out["baseline"], seed_rows = _seed_baseline(prepared, composers_of, composers, fold, options.folds, splits,
                                                    options.seed_epochs)
        done += 1
        if progress:
            progress("evaluate", done, steps)
    if options.bootstrap:
        draws = group_bootstrap(groups, composers_of, options.bootstrap, b.seed)
        _add_intervals(out, draws, composers_of, composers, np.asarray(tested, dtype=np.int64), y_pred, naming,
                       b.novelty_view, loco_scores, seed_rows)

    out["meta"] = {
        "data_dir": str(Path(data_dir).resolve()), "tracks": len(prepared), "composers": composers,
        "failed": len(results) - len(prepared), "folds": options.folds, "k": options.k,
        "wall_seconds": round(time.monotonic() - t_start, 1), "models_from_cache": models_cached,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "musicid_version": __version__,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {"features": b.features.as_dict(), "dims": asdict(b.dims), "train": asdict(b.train),
                     "naming": naming,
                     "novelty": {"view": b.novelty_view, "k": b.novelty_k, "keep": b.novelty_keep}},
    }
    return EvalResult(out, map_vectors, composers_of, [bool(fold[i] == 0) for i in range(len(prepared))])


def save_results(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write eval.json, confusion.png and embedding_map.png; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary
    map_vectors, composers_of, held = result.map_vectors, result.map_composers, result.map_held_out
    paths = []

    rep = summary["track"]
    m = np.array(rep["confusion"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(m / np.maximum(m.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    labels = rep["labels"]
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m[i].sum() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{summary['meta']['folds']}-fold by work, track level: macro-F1 {rep['macro_f1']:.2f}")
    fig.tight_layout()
    paths.append(out_dir / "confusion.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    if map_vectors:
        order = sorted(map_vectors)
        x = np.concatenate([map_vectors[i] for i in order])
        who = np.concatenate([[composers_of[i]] * len(map_vectors[i]) for i in order])
        out_fold = np.concatenate([[held[i]] * len(map_vectors[i]) for i in order])
        xc = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        xy = xc @ vt[:2].T
        fig, ax = plt.subplots(figsize=(6.5, 5))
        for n, c in enumerate(sorted(set(who))):
            sel = who == c
            a, b = sel & ~out_fold, sel & out_fold
            ax.scatter(xy[a, 0], xy[a, 1], s=4, alpha=0.3, color=f"C{n}", label=f"{c} (trained on)")
            ax.scatter(xy[b, 0], xy[b, 1], s=16, marker="x", color=f"C{n}", label=f"{c} (held out, x)")
        ax.set_title("clip embeddings, fold 0 model (PCA)")
        ax.legend(fontsize=7, markerscale=2)
        fig.tight_layout()
        paths.append(out_dir / "embedding_map.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)

    paths.append(out_dir / "eval.json")
    tmp = paths[-1].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, paths[-1])
    return paths
