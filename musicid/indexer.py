"""Turn a composer-labelled folder of MIDI files into an index directory.

    render (parallel, cached) -> split off held-out works -> train the embedder
    -> embed every clip -> calibrate the novelty threshold on the held-out
    tracks -> index every track -> write the directory atomically.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from .cache import FeatureCache, default_cache_dir, settings_digest, without_later_defaults
from .classifier import LinearHead, fit_head
from .dataset import group_works, holdout_split, scan_labelled, work_key
from .descriptors import standardiser
from .embedder import (
    Embedder,
    EmbedderDims,
    TrainReport,
    TrainSettings,
    dims_for,
    embed_clips,
    load_checkpoint,
    save_checkpoint,
    train_embedder,
)
from .errors import TrainingError
from .features import FeatureSettings, pianoroll_settings
from .index_store import IndexStore, choose_index_kind, make_faiss_index, publish, track_means
from .novelty import SoundNorm, clip_stats
from .prepare import Failure, Prepared, prepare_many
from .query import (
    DEFAULT_K,
    DEFAULT_NOVELTY_K,
    NOVELTY_SCORES,
    blend_novelty,
    blend_scales,
    calibrate_threshold,
    score_vectors,
)
from .render import RenderSettings, check_soundfont, soundfont_digest

ProgressFn = Callable[[str, int, int], None]


@dataclass
class BuildOptions:
    render: RenderSettings = field(default_factory=RenderSettings)
    features: FeatureSettings = field(default_factory=pianoroll_settings)  # the best front end in docs/RESULTS.md
    dims: EmbedderDims = field(default_factory=EmbedderDims)
    train: TrainSettings = field(default_factory=TrainSettings)
    model_path: Path | None = None  # use this checkpoint instead of training
    holdout_fraction: float = 0.2
    novelty_keep: float = 0.95  # share of held-out known tracks under the threshold
    novelty_k: int = DEFAULT_NOVELTY_K
    naming: str = "auto"  # "vote", "head" (classifier.py), or auto: the better one per front end (naming_for)
    novelty_view: str = "blend"  # or "track", "score", "embedding", "sound" (query.py); docs/RESULTS.md compares them
    index_kind: str = "auto"  # FAISS index: auto, flat, ivf, ivfpq, hnsw (index_store.make_faiss_index)
    group_by: str | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    workers: int = 0
    seed: int = 0
    ray: bool = False  # render and embed on a Ray cluster (distributed.py)
    ray_address: str | None = None  # None with ray=True: a local Ray instance


def naming_for(options: BuildOptions) -> str:
    """The naming an index uses: auto is the k-NN vote on audio and the linear head on the piano
    roll, the better of the two on each front end in docs/RESULTS.md (5 folds, same models)."""
    if options.naming != "auto":
        return options.naming
    return "head" if options.features.from_notes else "vote"


@dataclass
class BuildReport:
    out: Path
    composers: list[str]
    tracks_per_composer: dict[str, int]
    clips_per_composer: dict[str, int]
    failures: list[tuple[str, str]]
    warnings: list[str]
    timings: dict[str, float]
    heldout: dict[str, Any]
    threshold: float
    trained: bool
    cached_tracks: int
    model_from_cache: bool = False
    ray: dict[str, dict[str, int]] | None = None  # {"rendered_on": {node ip: tracks}, "embedded_on": ...}


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _calibrate(prepared: list[Prepared], composers_of: list[str], vectors: list[np.ndarray],
               stats: list[np.ndarray], held: np.ndarray, groups: np.ndarray, all_composers: list[str],
               options: BuildOptions) -> tuple[float, dict[str, Any]]:
    """Threshold and accuracy from held-out tracks scored against an index of the others (and in
    the blend view, the scale of each part: info["scales"]).

    Without held-out tracks (tiny data), each work is left out in turn instead.
    """
    train_idx = np.flatnonzero(~held)
    eval_idx = np.flatnonzero(held)
    rule = "held-out works"
    if len(eval_idx) < 2:
        train_idx = np.arange(len(prepared))
        eval_idx = np.arange(len(prepared))
        rule = "leave-one-work-out (too few works to hold any out)"
    store = make_store(prepared, composers_of, vectors, stats, train_idx, groups, held, all_composers,
                        manifest={"composers": all_composers, "naming": naming_for(options),
                                  "novelty": {"k": options.novelty_k, "view": options.novelty_view,
                                              "threshold": float("inf")}},
                        root=Path("/"))
    scores, parts, correct, y_true, y_pred = [], [], [], [], []
    for i in eval_idx:
        exclude = [int(j) for j in train_idx if groups[j] == groups[i]] if rule != "held-out works" else []
        if len(exclude) == len(train_idx):
            continue
        # track ids in the calibration store are positions in train_idx
        excl_ids = [int(np.flatnonzero(train_idx == j)[0]) for j in exclude]
        r = score_vectors(store, vectors[i], prepared[i].path.name, k=DEFAULT_K, exclude_tracks=excl_ids,
                          stats=stats[i], score=prepared[i].score)
        scores.append(r.novelty)
        parts.append(r.novelty_parts)
        y_true.append(composers_of[i])
        y_pred.append(r.composer)
        correct.append(r.composer == composers_of[i])
    if not scores:
        raise TrainingError("no track could be scored to calibrate the novelty threshold")
    scales = None
    if options.novelty_view == "blend":  # the parts' scales first, then the blend's threshold
        scales = blend_scales(parts)
        scores = [blend_novelty(p, scales) for p in parts]
    threshold = calibrate_threshold(scores, options.novelty_keep)
    per = {}
    for c in all_composers:
        mask = np.array(y_true) == c
        if mask.any():
            per[c] = {"tracks": int(mask.sum()), "recall": round(float(np.mean(np.array(correct)[mask])), 3)}
    info: dict[str, Any] = {
        "rule": rule, "tracks": len(scores), "accuracy": round(float(np.mean(correct)), 4),
        "per_composer": per,
        "novelty_scores": {"median": round(float(np.median(scores)), 4),
                           "max": round(float(np.max(scores)), 4)},
    }
    if scales:
        info["scales"] = scales
    return threshold, info


def make_store(prepared: list[Prepared], composers_of: list[str], vectors: list[np.ndarray],
                stats: list[np.ndarray], idx: np.ndarray, groups: np.ndarray, held: np.ndarray,
                all_composers: list[str], manifest: dict[str, Any], root: Path, works: list[str] | None = None,
                index_kind: str = "auto") -> IndexStore:
    """An in-memory store of the tracks at positions idx (track ids 0..len(idx)-1), with the
    sound view standardised on those tracks' clips and the score view on those tracks."""
    track_rows, clip_rows, vecs = [], [], []
    clip_id = 0
    for tid, i in enumerate(idx):
        p = prepared[i]
        n = len(vectors[i])
        track_rows.append({
            "track_id": tid, "path": _rel(p.path, root), "composer": composers_of[i],
            "work": works[i] if works else "", "group": int(groups[i]),
            "split": "heldout" if held[i] else "train", "fingerprint": p.fingerprint,
            "sha256": p.sha256, "duration": round(p.duration, 3), "n_clips": n,
            "score_stats": p.score.astype(np.float32),
        })
        for off in p.offsets:
            clip_rows.append({"clip_id": clip_id, "track_id": tid, "offset": off})
            clip_id += 1
        vecs.append(vectors[i])
    d = vectors[idx[0]].shape[1] if len(idx) else 0
    all_vecs = np.concatenate(vecs) if vecs else np.zeros((0, d), np.float32)
    tracks = pd.DataFrame(track_rows)
    clips = pd.DataFrame(clip_rows, columns=["clip_id", "track_id", "offset"])
    clip_ids = clips["clip_id"].to_numpy()
    index = make_faiss_index(all_vecs, clip_ids, index_kind)
    all_stats = np.concatenate([stats[i] for i in idx]) if len(idx) else np.zeros((0, 1), np.float32)
    norm = SoundNorm.fit(all_stats)
    sound_index = make_faiss_index(norm.vectors(all_stats), clip_ids, index_kind)
    centroids, means, head = derived_parts(all_vecs, clips["track_id"].to_numpy(), np.arange(len(idx)),
                                           [composers_of[i] for i in idx], all_composers)
    mean, std = standardiser(np.stack([prepared[i].score for i in idx]) if len(idx) else np.zeros((0, 1)))
    manifest = {**manifest, "novelty": {**manifest.get("novelty", {}),  # the score view's standardisation
                                        "score_norm": {"mean": np.round(mean, 6).tolist(),
                                                       "std": np.round(std, 6).tolist()}}}
    return IndexStore(index, clips, tracks, centroids, manifest, sound_index, norm, means, head)


def composer_centroids(track_vectors: np.ndarray, track_composers: Sequence[str],
                       composers: Sequence[str]) -> np.ndarray:
    """Unit mean of each composer's unit track means (every track weighs the same).

    track_vectors: (n_tracks, d) unit mean clip vector per track (index_store.track_means)."""
    out = np.zeros((len(composers), track_vectors.shape[1]), dtype=np.float32)
    of = np.asarray(track_composers)
    for ci, c in enumerate(composers):
        mine = track_vectors[of == c]
        if len(mine):
            m = mine.mean(axis=0)
            out[ci] = m / (np.linalg.norm(m) + 1e-12)
    return out


def derived_parts(vectors: np.ndarray, clip_tracks: np.ndarray, track_ids: np.ndarray,
                  track_composers: Sequence[str],
                  composers: Sequence[str]) -> tuple[np.ndarray, np.ndarray, LinearHead]:
    """What a store derives from its clip vectors (n_clips, d), clip_tracks (the track id of each
    row) and its tracks: the composer centroids, the track vectors (the track view) and the
    linear head (classifier.py), in `composers` order."""
    track_ids = np.asarray(track_ids)
    means = track_means(vectors, np.asarray(clip_tracks), track_ids)
    centroids = composer_centroids(means, track_composers, composers)
    track_label = np.array([list(composers).index(c) for c in track_composers], dtype=np.int64)
    order = np.argsort(track_ids)
    labels = track_label[order[np.searchsorted(track_ids[order], clip_tracks)]] if len(track_ids) else \
        np.zeros(0, np.int64)
    return centroids, means, fit_head(vectors, labels, len(composers))


def _model_cache_path(options: BuildOptions, training_set: list[tuple[str, str]]) -> Path | None:
    """Where a model trained on exactly these (file sha256, composer) pairs with these settings is
    kept, so that rebuilding unchanged data does not train again; None when caching is off."""
    if options.cache_dir is None:
        return None
    train = without_later_defaults(asdict(options.train), {"pitch_shift": 2})  # cached models keep their keys
    dims = without_later_defaults(asdict(options.dims), {"in_channels": 1})
    key = settings_digest({"tracks": sorted(training_set), "dims": dims, "train": train,
                           "features": options.features.as_dict(), "render": options.render.identity()})
    return options.cache_dir / "models" / f"{key}.pt"


def train_or_load(prepared: Sequence[Prepared], composers_of: Sequence[str], train_idx: np.ndarray,
                  all_composers: Sequence[str], options: BuildOptions,
                  progress: ProgressFn | None = None) -> tuple[Embedder, TrainReport | None, bool]:
    """Train the embedder on the tracks at train_idx, or load the model the cache holds for
    exactly that training set and those settings. Returns (model, report, from_cache)."""
    cached = _model_cache_path(options, [(prepared[i].sha256, composers_of[i]) for i in train_idx])
    if cached is not None and cached.exists():
        model, _, meta = load_checkpoint(cached)
        report = TrainReport(**meta["train_report"]) if "train_report" in meta else None
        return model, report, True
    clips = torch.from_numpy(np.concatenate([prepared[i].clips for i in train_idx]))
    labels = np.concatenate([
        np.full(len(prepared[i].clips), list(all_composers).index(composers_of[i])) for i in train_idx
    ])
    model, report = train_embedder(clips, labels, options.dims, options.train, progress)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(cached, model, options.features, {"train_report": {**asdict(report), "losses": []}})
    return model, report, False


def build_index(data_dir: str | Path, out: str | Path, options: BuildOptions = BuildOptions(),
                progress: ProgressFn | None = None) -> BuildReport:
    """Build an index directory from <data_dir>/<Composer>/*.mid; replaces `out` only when done."""
    data_dir, out = Path(data_dir), Path(out)
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    check_soundfont(options.render.resolved_soundfont())
    refs, warnings = scan_labelled(data_dir, min_composers=1 if options.model_path else 2)

    model = None
    if options.model_path:  # a given model brings its own feature settings
        model, model_features, _ = load_checkpoint(options.model_path)
        options = replace(options, features=model_features)
    else:
        options = replace(options, dims=dims_for(options.dims, options.features))

    cache = FeatureCache(options.cache_dir, {"render": options.render.identity(),
                                             "features": options.features.as_dict()})
    t = time.monotonic()
    ray_run: dict[str, dict[str, int]] | None = None
    streamed: Any = None  # distributed.Embedded: vectors made where the tracks were rendered
    if options.ray and model is not None:
        from .distributed import embed_tracks_on_ray

        streamed = embed_tracks_on_ray([r.path for r in refs], options.render, options.features, cache.directory,
                                       model, options.ray_address, progress=progress)
        results = streamed.results
        ray_run = {"rendered_on": streamed.run.rendered_on, "embedded_on": streamed.run.embedded_on}
    elif options.ray:
        from .distributed import prepare_on_ray

        results, rendered_on = prepare_on_ray([r.path for r in refs], options.render, options.features,
                                              cache.directory, options.ray_address, progress)
        ray_run = {"rendered_on": rendered_on}
    else:
        results = prepare_many([r.path for r in refs], options.render, options.features, cache,
                               options.workers, progress)
    timings["render"] = time.monotonic() - t
    prepared: list[Prepared] = []
    composers_of: list[str] = []
    failures: list[tuple[str, str]] = []
    for ref, res in zip(refs, results, strict=True):
        if isinstance(res, Failure):
            failures.append((_rel(ref.path, data_dir), res.reason))
        else:
            prepared.append(res)
            composers_of.append(str(ref.composer))
    all_composers = sorted(set(composers_of))
    if len(all_composers) < (1 if model is not None else 2):
        raise TrainingError(f"only {len(all_composers)} composer(s) have usable tracks; "
                            "training needs at least two")

    works = [work_key(p.path, c, options.group_by) for p, c in zip(prepared, composers_of, strict=True)]
    groups = group_works(works, [p.fingerprint for p in prepared])
    held = holdout_split(composers_of, groups, options.holdout_fraction, options.seed)

    trained = model is None
    train_report = None
    model_from_cache = False
    if model is None:
        t = time.monotonic()
        model, train_report, model_from_cache = train_or_load(
            prepared, composers_of, np.flatnonzero(~held), all_composers, options, progress)
        if not model_from_cache:
            timings["train"] = time.monotonic() - t

    t = time.monotonic()
    vectors: list[np.ndarray] = []
    if streamed is not None:
        vectors = [v for v in streamed.vectors if v is not None]
        stats = [st for st in streamed.stats if st is not None]
    elif ray_run is not None:
        from .distributed import embed_on_ray

        vectors, stats, ray_run["embedded_on"] = embed_on_ray(model, prepared, options.ray_address, progress=progress)
    else:
        for n, p in enumerate(prepared):
            vectors.append(embed_clips(model, torch.from_numpy(p.clips)))
            if progress:
                progress("embed", n + 1, len(prepared))
        stats = [clip_stats(p.clips) for p in prepared]
    timings["embed"] = time.monotonic() - t

    t = time.monotonic()
    threshold, heldout = _calibrate(prepared, composers_of, vectors, stats, held, groups, all_composers, options)
    timings["calibrate"] = time.monotonic() - t

    t = time.monotonic()
    manifest: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "musicid_version": __version__,
        "data_dir": str(data_dir.resolve()),
        "composers": all_composers,
        "naming": naming_for(options),
        "render": {"settings": asdict(options.render),
                   "soundfont_sha": soundfont_digest(options.render.resolved_soundfont())},
        "features": options.features.as_dict(),
        "model": {"dims": asdict(model.dims), "trained_here": trained, "from_cache": model_from_cache,
                  "train": asdict(options.train) if trained else None,
                  "train_seconds": round(train_report.seconds, 1) if train_report else None,
                  "final_loss": round(train_report.final_loss, 4) if train_report else None},
        "novelty": {"score": NOVELTY_SCORES[options.novelty_view], "view": options.novelty_view,
                    "k": options.novelty_k,
                    "rule": f"{options.novelty_keep:.0%} of held-out known-composer tracks "
                            "score at or below the threshold",
                    "threshold": round(threshold, 4), "calibration": heldout,
                    **({"scales": heldout["scales"]} if "scales" in heldout else {})},
        "index": {"kind": options.index_kind if options.index_kind != "auto"
                  else choose_index_kind(int(sum(len(v) for v in vectors)))},
        "counts": {"tracks": len(prepared), "clips": int(sum(len(v) for v in vectors)),
                   "failed": len(failures)},
        "failures": [{"path": p, "reason": r} for p, r in failures],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "ray": ray_run,
    }
    store = make_store(prepared, composers_of, vectors, stats, np.arange(len(prepared)), groups, held,
                        all_composers, manifest, data_dir, works, manifest["index"]["kind"])

    def put_model(path: Path) -> None:
        if options.model_path:  # keep the given checkpoint byte for byte: its hash is its identity
            shutil.copyfile(options.model_path, path)
        else:
            save_checkpoint(path, model, options.features, {"composers": all_composers, "musicid": __version__})

    publish(out, store, put_model)
    timings["write"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t_start

    tracks_per = {c: composers_of.count(c) for c in all_composers}
    clips_per = {c: sum(len(v) for v, cc in zip(vectors, composers_of, strict=True) if cc == c)
                 for c in all_composers}
    return BuildReport(out, all_composers, tracks_per, clips_per, failures, warnings,
                       {k: round(v, 1) for k, v in timings.items()}, heldout, threshold, trained,
                       sum(p.cached for p in prepared), model_from_cache, ray_run)
