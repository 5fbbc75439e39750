"""Judging a general embedder on the many-composer protocols (protocols.py): enrol, calibrate, query.

Each split is run as a user meets it: the split's enrolled tracks are indexed with the embedder as
`musicid index build DIR --model M` indexes a folder (works held out to calibrate the novelty
threshold, the background less the enrolled composers as the cohort), and every query track is
scored as `musicid query` scores it. Nothing is trained. Figures per split: naming (macro-F1 over
the enrolled composers, on their queried works), novelty AUROC (novel composers' tracks the
positives) and the flag rates on known and on novel tracks, overall and per genre of the query
(catalogue.py), each with a 95% interval from resampling whole works (metrics.group_bootstrap).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..build.corpus import BuildOptions, Corpus, Embedding, index_settings
from ..build.indexer import calibrate_index, make_store
from ..collection.catalogue import TrackInfo
from ..collection.dataset import group_works, holdout_split
from ..errors import DataDirError
from ..features.clips import FeatureSettings
from ..features.prepare import Prepared
from ..features.spectral import spectral_stats
from ..model.background import Background
from ..model.embedder import Embedder, embed_tracks
from ..progress import ProgressFn
from ..recognize.novelty import TrackQuery
from ..recognize.query import DEFAULT_K, score_track
from .cross_collection import enrol_figures
from .metrics import auroc, group_bootstrap, percentile_interval
from .protocols import EnrolSplit, Reserve


def check_unseen(reserve: Reserve, trained_on: Sequence[str]) -> None:
    """Raise DataDirError when the embedder was trained on a reserve composer: the protocols would
    call composers it has seen unseen."""
    seen = sorted(set(reserve.composers) & set(trained_on))
    if seen:
        raise DataDirError(f"the embedder was trained on {len(seen)} reserve composer(s) ({', '.join(seen[:5])}"
                           f"{', ...' if len(seen) > 5 else ''}): judge one trained with --hold-out on the "
                           "reserve (--model; the shipped embedder's measured twin: TWIN=1 bash "
                           "bench/train_shipped.sh DATA)")


def _enrolled_corpus(root: Path, prepared: Sequence[Prepared], infos: Sequence[TrackInfo], idx: np.ndarray,
                     options: BuildOptions) -> Corpus:
    """The split's enrolled tracks as index build reads a folder: works grouped, some held out to calibrate."""
    composers = [infos[i].composer for i in idx]
    works = [infos[i].work for i in idx]
    chosen = [prepared[i] for i in idx]
    groups = group_works(works, [p.notes_hash for p in chosen], np.stack([p.sketch for p in chosen]))
    held = holdout_split(composers, groups, options.holdout_fraction, options.seed)
    return Corpus(root, chosen, composers, works, groups, held, [], [])


def run_split(model: Embedder, background: Background | None, root: Path, prepared: Sequence[Prepared],
              infos: Sequence[TrackInfo], vectors: dict[int, tuple[np.ndarray, np.ndarray]], split: EnrolSplit,
              options: BuildOptions, bootstrap: int = 1000) -> dict[str, Any]:
    """One split's figures (JSON-ready). vectors: (clip vectors, spectral statistics) by track
    position, filled as needed (a track embedded once serves every split)."""
    t0 = time.monotonic()
    for i in [*split.enrol, *split.query]:
        if int(i) not in vectors:
            vectors[int(i)] = (embed_tracks(model, [prepared[i].clips])[0], spectral_stats(prepared[i].clips))
    corpus = _enrolled_corpus(root, prepared, infos, split.enrol, options)
    emb = Embedding([vectors[int(i)][0] for i in split.enrol], [vectors[int(i)][1] for i in split.enrol])
    cohort = background.without(corpus.composers) if background is not None else None
    emb.background = background
    has_cohort = bool(cohort is not None and len(cohort))
    settings = index_settings(options, sum(len(v) for v in emb.vectors), background=has_cohort)
    calibration, heldout = calibrate_index(corpus, emb, settings)
    store = make_store(corpus, emb, np.arange(len(corpus.prepared)), settings, corpus.composers, calibration)
    rows = []
    for i in split.query:
        p = prepared[i]
        r = score_track(store, TrackQuery(*vectors[int(i)], p.symbolic), p.path.name, k=DEFAULT_K)
        rows.append({"path": str(p.path), "composer": infos[i].composer, "genre": infos[i].genre,
                     "work": infos[i].work, "named": r.composer, "novelty": r.novelty, "novel": r.novel})
    known = set(split.known)
    groups = group_works([r["work"] for r in rows], [prepared[i].notes_hash for i in split.query],
                         np.stack([prepared[i].sketch for i in split.query]))
    draws = group_bootstrap(groups, [r["composer"] for r in rows], bootstrap) if bootstrap else None
    figures = enrol_figures(rows, known, corpus.composers, draws)
    return {"split": split.name, "enrolled": len(corpus.composers), "enrolled_tracks": len(split.enrol),
            "enrol_works": split.enrol_works,
            "novel_composers": len({r["composer"] for r in rows} - known),
            "threshold": calibration.threshold, "calibration": heldout["accuracy"],
            **figures, "flag_rates_by_genre": flag_rates_by_genre(rows, known, draws),
            "seconds": round(time.monotonic() - t0, 1), "tracks": rows}


def flag_rates_by_genre(rows: list[dict[str, Any]], known: set[str], draws: np.ndarray | None
                        ) -> dict[str, dict[str, Any]]:
    """genre -> {"known": share of known composers' tracks flagged novel (should be near the nominal
    5%), "novel": share of novel composers' tracks flagged (the higher the better), counts and
    intervals; "named_right": share of the known tracks named right; "auroc": novelty AUROC of the
    genre's novel tracks against its known ones (where it has both)}."""
    out: dict[str, dict[str, Any]] = {}
    flags = np.array([r["novel"] for r in rows], dtype=float)
    for genre in sorted({r["genre"] for r in rows}):
        entry: dict[str, Any] = {}
        sides = {}
        for side, want in (("known", True), ("novel", False)):
            idx = np.array([n for n, r in enumerate(rows) if r["genre"] == genre and (r["composer"] in known) == want])
            if not len(idx):
                continue
            sides[side] = idx
            entry[side] = round(float(flags[idx].mean()), 4)
            entry[f"{side}_tracks"] = len(idx)
            if draws is not None:
                w = draws[:, idx]
                with np.errstate(invalid="ignore"):
                    entry[f"{side}_ci"] = percentile_interval((w * flags[idx]).sum(1) / w.sum(1))
        if "known" in sides:
            entry["named_right"] = round(float(np.mean([rows[n]["named"] == rows[n]["composer"]
                                                         for n in sides["known"]])), 4)
        if len(sides) == 2:
            entry["auroc"] = round(auroc([rows[n]["novelty"] for n in sides["novel"]],
                                         [rows[n]["novelty"] for n in sides["known"]]), 4)
        out[genre] = entry
    return out


def mean_over_splits(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures users meet on average over a protocol's draws: mean (and range) of the novelty
    AUROC, naming macro-F1 and flag rates; the worst genre's flag rate on known works."""
    def pick(key: str, sub: str) -> list[float]:
        return [float(r[key][sub]) for r in results if r[key].get(sub) is not None]

    auroc = pick("novelty", "auroc")
    f1 = pick("classification", "macro_f1")
    known_flags = pick("novelty", "flagged_known")
    novel_flags = pick("novelty", "flagged_novel")
    by_genre: dict[str, list[float]] = {}
    for r in results:
        for g, e in r["flag_rates_by_genre"].items():
            if "known" in e:
                by_genre.setdefault(g, []).append(e["known"])
    return {"draws": len(results), "auroc": _mean(auroc), "auroc_range": _range(auroc),
            "macro_f1": _mean(f1), "macro_f1_range": _range(f1),
            "flagged_known": _mean(known_flags), "flagged_novel": _mean(novel_flags),
            "flagged_known_by_genre": {g: _mean(v) for g, v in sorted(by_genre.items())}}


def by_enrolment_size(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Works enrolled per composer (as a string, ascending) -> mean_over_splits of the splits that
    enrolled that many; splits that fix no number are left out."""
    sizes = sorted({r["enrol_works"] for r in results if r.get("enrol_works") is not None})
    return {str(n): mean_over_splits([r for r in results if r.get("enrol_works") == n]) for n in sizes}


def _mean(v: list[float]) -> float | None:
    return round(float(np.mean(v)), 4) if v else None


def _range(v: list[float]) -> list[float] | None:
    return [round(min(v), 4), round(max(v), 4)] if v else None


def run_protocol(name: str, model: Embedder, background: Background | None, root: Path,
                 prepared: Sequence[Prepared], infos: Sequence[TrackInfo], splits: list[EnrolSplit],
                 options: BuildOptions, bootstrap: int = 1000, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Every split of one protocol, and their mean. Raises DataDirError for a split with nothing to
    enrol or query."""
    vectors: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    results = []
    for n, split in enumerate(splits):
        if not len(split.enrol) or not len(split.query):
            raise DataDirError(f"{name}, {split.name}: nothing to enrol or nothing to query")
        results.append(run_split(model, background, root, prepared, infos, vectors, split, options, bootstrap))
        if progress:
            progress(name, n + 1, len(splits))
    return {"protocol": name, "mean": mean_over_splits(results), "splits": results}


PROTOCOLS = ("many-unseen", "leave-genres-out", "enrolment-size")
MANY_COMPOSERS = PROTOCOLS[:2]  # `--protocol many-composers`: the enrolment-size curve is asked for alone


def prepare_reserve(data_dir: Path, features: FeatureSettings, options: BuildOptions, reserve_seed: int = 0,
                    trained_on: Sequence[str] = (), progress: ProgressFn | None = None
                    ) -> tuple[Reserve, list[Prepared], list[TrackInfo], int]:
    """The reserve (protocols.draw_reserve) of a labelled folder whose collections carry catalogues,
    and its tracks prepared with `features`: (reserve, prepared tracks, their TrackInfo, how many
    failed to prepare). Raises DataDirError (a catalogue too small for the reserve; a composer in
    trained_on, the embedder's training composers, is in the reserve) before preparing anything."""
    from ..collection.catalogue import catalogue
    from ..collection.dataset import scan_labelled
    from ..features.cache import FeatureCache
    from ..features.prepare import Failure, prepare_many
    from .protocols import draw_reserve

    refs, _ = scan_labelled(data_dir, min_composers=1)
    infos = catalogue([r.path for r in refs], [str(r.composer) for r in refs])
    try:
        reserve = draw_reserve(infos, reserve_seed)
    except ValueError as e:
        raise DataDirError(f"{data_dir}: {e}") from None
    check_unseen(reserve, trained_on)
    keep = [n for n, i in enumerate(infos) if i.composer in reserve.composers]
    cache = FeatureCache.for_tracks(options.cache_dir, options.render, features)
    results = prepare_many([refs[n].path for n in keep], options.render, features, cache, options.workers, progress)
    usable = [(n, r) for n, r in zip(keep, results, strict=True) if not isinstance(r, Failure)]
    return reserve, [r for _, r in usable], [infos[n] for n, _ in usable], len(keep) - len(usable)


def evaluate_many_composers(data_dir: Path, model_path: Path, protocols: Sequence[str] = MANY_COMPOSERS,
                            options: BuildOptions = BuildOptions(), reserve_seed: int = 0, draws: int = 5,
                            bootstrap: int = 1000, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The many-composer protocols on a labelled folder whose collections carry catalogues (one
    composer folder each, as bench/link_collections.sh links the handed ones), with the embedder at
    model_path (its background too). Only the reserve's tracks are read. Raises DataDirError (the
    embedder saw a reserve composer; a catalogue too small for the reserve) and IndexMismatch."""
    from ..model.background import load_background
    from ..model.embedder import load_checkpoint
    from .protocols import enrolment_size_splits, leave_genres_out_split, many_unseen_splits

    t0 = time.monotonic()
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise ValueError(f"unknown protocol(s) {', '.join(unknown)} ({', '.join(PROTOCOLS)})")
    model, features, meta = load_checkpoint(model_path)
    background = load_background(model_path)
    reserve, prepared, kept_infos, failed = prepare_reserve(data_dir, features, options, reserve_seed,
                                                            meta.get("composers", []), progress)
    out: dict[str, Any] = {
        "protocols": list(protocols), "model": {"path": str(model_path), "composers": len(meta.get("composers", [])),
                                                "musicid": meta.get("musicid")},
        "reserve": {"seed": reserve_seed, "enrolable": list(reserve.enrolable), "novel_only": list(reserve.novel_only),
                    "tracks": len(prepared), "failed": failed},
    }
    if "many-unseen" in protocols:
        splits = many_unseen_splits(kept_infos, reserve, draws=draws, seed=reserve_seed)
        out["many_unseen"] = run_protocol("many-unseen", model, background, data_dir, prepared, kept_infos, splits,
                                          options, bootstrap, progress)
    if "leave-genres-out" in protocols:
        split = leave_genres_out_split(kept_infos, reserve)
        out["leave_genres_out"] = run_protocol("leave-genres-out", model, background, data_dir, prepared, kept_infos,
                                               [split], options, bootstrap, progress)
    if "enrolment-size" in protocols:
        try:
            splits = enrolment_size_splits(kept_infos, reserve, draws=min(draws, 3), seed=reserve_seed)
        except ValueError as e:
            raise DataDirError(f"{data_dir}: {e}") from None
        result = run_protocol("enrolment-size", model, background, data_dir, prepared, kept_infos, splits,
                              options, bootstrap, progress)
        result["by_size"] = by_enrolment_size(result["splits"])
        out["enrolment_size"] = result
    out["wall_seconds"] = round(time.monotonic() - t0, 1)
    return out
