"""Turn a composer-labelled folder of MIDI files into an index directory, in named steps:

    prepare (read, render or roll, cache; locally or on Ray) -> train or load the embedder
    -> embed every clip -> calibrate the novelty threshold on held-out works -> publish
    (write the directory and swap it in atomically).
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .background import Background, load_background, training_overlap
from .cache import FeatureCache, default_cache_dir
from .dataset import group_works, holdout_split, scan_labelled, work_key
from .embedder import (
    Embedder,
    EmbedderDims,
    TrainSettings,
    dims_for,
    embed_tracks,
    fine_tuning,
    load_checkpoint,
    save_checkpoint,
)
from .errors import TrainingError
from .faiss_index import choose_index_kind
from .features import FeatureSettings, pianoroll_settings
from .index_store import IndexStore, publish, track_row
from .manifest import IndexSettings, Manifest
from .model_cache import train_or_load
from .novelty import (
    COHORT_METHODS,
    DESCRIPTIONS,
    Calibration,
    NoveltySettings,
    TrackQuery,
    calibrate,
    final_score,
    impostor_scores,
    impostors_unavailable,
)
from .prepare import Failure, Prepared, prepare_many
from .progress import ProgressFn
from .query import DEFAULT_K, score_track
from .render import RenderSettings, check_soundfont, soundfont_digest
from .spectral_stats import SpectralNorm, spectral_stats
from .symbolic_features import N_SYMBOLIC, standardiser

FEW_CALIBRATION_TRACKS = 20  # held-out tracks under which a build warns that its threshold is rough


@dataclass(frozen=True)
class BuildOptions:
    render: RenderSettings = field(default_factory=RenderSettings)
    features: FeatureSettings = field(default_factory=pianoroll_settings)  # the best in docs/RESULTS.md
    dims: EmbedderDims = field(default_factory=EmbedderDims)
    train: TrainSettings = field(default_factory=TrainSettings)
    model_path: Path | None = None  # enrol with this checkpoint instead of training one
    fine_tune: bool = False  # with model_path: go on training it on this folder's composers
    holdout_fraction: float = 0.2
    novelty: NoveltySettings = field(default_factory=NoveltySettings)
    classifier: str = "auto"  # "knn", "linear" (classifier.py), or auto: the better one per representation
    index_kind: str = "auto"  # FAISS index: auto, flat, ivf, ivfpq, hnsw (faiss_index.make_faiss_index)
    group_by: str | None = None
    labels: str = "folders"  # composer from the folder, or from the file itself (dataset.LABELS)
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    workers: int = 0
    seed: int = 0
    ray: bool = False  # render and embed on a Ray cluster (distributed.py)
    ray_address: str | None = None  # None with ray=True: a local Ray instance


def classifier_for(options: BuildOptions) -> str:
    """The classifier an index uses: auto is the k-NN vote on audio and the linear probe on piano
    rolls, the better of the two for each representation in docs/RESULTS.md (5 folds, same models)."""
    if options.classifier != "auto":
        return options.classifier
    return "linear" if options.features.from_notes else "knn"


def index_settings(options: BuildOptions, n_vectors: int, background: bool = False) -> IndexSettings:
    """The settings an index built with these options records (the FAISS kind resolved for its size;
    background: the index keeps a background cohort, which the fused novelty then uses)."""
    kind = options.index_kind if options.index_kind != "auto" else choose_index_kind(n_vectors)
    return IndexSettings(options.features, options.render, classifier_for(options),
                         replace(options.novelty, background=background), kind, options.group_by)


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
    model_given: str = ""  # where the model came from when not trained: "shipped", or the checkpoint given


@dataclass
class Corpus:
    """The usable tracks of a labelled folder, prepared, with their works and held-out split."""

    root: Path
    prepared: list[Prepared]
    composers_of: list[str]
    works: list[str]
    groups: np.ndarray  # work group per track: no group straddles a split
    held: np.ndarray  # bool per track: held out to calibrate
    failures: list[tuple[str, str]]  # (path relative to root, reason)
    warnings: list[str]

    @property
    def composers(self) -> list[str]:
        return sorted(set(self.composers_of))


@dataclass
class Embedding:
    """Every prepared track's clip vectors and spectral statistics, in Corpus order."""

    vectors: list[np.ndarray]  # (n_clips, d) each
    spectral: list[np.ndarray]  # (n_clips, 2 * n_bins) each
    ray: dict[str, dict[str, int]] | None = None
    background: Background | None = None  # the embedder's background tracks (a general embedder's), or None


def relative(path: Path, root: Path) -> str:
    """path relative to root where it lies below it, else as given."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def prepare_corpus(data_dir: Path, options: BuildOptions, model: Embedder | None = None,
                   progress: ProgressFn | None = None, min_composers: int = 2,
                   ) -> tuple[Corpus, Embedding | None, dict[str, Any] | None]:
    """Step 1: scan, read and render (or roll) every file, locally or on Ray, and group the works.
    With a model and Ray, tracks are embedded where they are rendered: their Embedding comes back
    too (else None); and on Ray, where each track was rendered. DataDirError with fewer than
    min_composers composer folders."""
    refs, warnings = scan_labelled(data_dir, min_composers=min_composers, labels=options.labels)
    paths = [r.path for r in refs]
    embedded, ray_run = None, None
    cache = FeatureCache.for_tracks(options.cache_dir, options.render, options.features)
    if options.ray and model is not None:
        from .distributed import embed_tracks_on_ray

        streamed = embed_tracks_on_ray(paths, options.render, options.features, cache.directory, model,
                                       options.ray_address, progress=progress)
        results = streamed.results
        ray_run = {"rendered_on": streamed.run.rendered_on, "embedded_on": streamed.run.embedded_on}
        embedded = Embedding([v for v in streamed.vectors if v is not None],
                             [s for s in streamed.stats if s is not None], ray_run)
    elif options.ray:
        from .distributed import prepare_on_ray

        results, rendered_on = prepare_on_ray(paths, options.render, options.features, cache.directory,
                                              options.ray_address, progress)
        ray_run = {"rendered_on": rendered_on}
    else:
        results = prepare_many(paths, options.render, options.features, cache, options.workers, progress)
    prepared, composers_of, bases, failures = [], [], [], []
    for ref, res in zip(refs, results, strict=True):
        if isinstance(res, Failure):
            failures.append((relative(ref.path, data_dir), res.reason))
        else:
            prepared.append(res)
            composers_of.append(str(ref.composer))
            bases.append(ref.base)
    works = [work_key(p.path, c, options.group_by, base)
             for p, c, base in zip(prepared, composers_of, bases, strict=True)]
    groups = group_works(works, [p.notes_hash for p in prepared],
                         np.stack([p.sketch for p in prepared]) if prepared else None)
    held = holdout_split(composers_of, groups, options.holdout_fraction, options.seed)
    return Corpus(data_dir, prepared, composers_of, works, groups, held, failures, warnings), embedded, ray_run


def embed_corpus(model: Embedder, prepared: list[Prepared], options: BuildOptions,
                 progress: ProgressFn | None = None) -> Embedding:
    """Step 3: every track's clip vectors (and spectral statistics), locally or on Ray."""
    if options.ray:
        from .distributed import embed_on_ray

        vectors, spectral, embedded_on = embed_on_ray(model, prepared, options.ray_address, progress=progress)
        return Embedding(vectors, spectral, {"embedded_on": embedded_on})
    return Embedding(embed_tracks(model, [p.clips for p in prepared], progress),
                     [spectral_stats(p.clips) for p in prepared])


def make_store(corpus: Corpus, emb: Embedding, idx: np.ndarray, settings: IndexSettings, composers: list[str],
               calibration: Calibration = Calibration(float("inf")), about: dict[str, Any] | None = None
               ) -> IndexStore:
    """An in-memory store of the corpus tracks at positions idx (track ids 0..len(idx)-1), with the
    spectral statistics standardised on those tracks' clips and the symbolic features on those tracks."""
    track_rows: list[dict[str, Any]] = []
    clip_rows: list[dict[str, Any]] = []
    for tid, i in enumerate(idx):
        p = corpus.prepared[i]
        track_rows.append(track_row(tid, relative(p.path, corpus.root), corpus.composers_of[i], corpus.works[i],
                                    corpus.groups[i], "heldout" if corpus.held[i] else "train", p,
                                    len(emb.vectors[i])))
        clip_rows += [{"clip_id": len(clip_rows) + n, "track_id": tid, "offset": off}
                      for n, off in enumerate(p.offsets)]
    d = emb.vectors[idx[0]].shape[1] if len(idx) else 0
    vectors = np.concatenate([emb.vectors[i] for i in idx]) if len(idx) else np.zeros((0, d), np.float32)
    stats = np.concatenate([emb.spectral[i] for i in idx]) if len(idx) else np.zeros((0, 1), np.float32)
    norm = SpectralNorm.fit(stats)
    symbolic = np.round(np.stack(standardiser(np.stack([corpus.prepared[i].symbolic for i in idx]) if len(idx)
                                              else np.zeros((0, N_SYMBOLIC)))), 6).astype(np.float32)
    manifest = Manifest(tuple(composers), settings, calibration, "", about or {})
    return IndexStore(manifest, pd.DataFrame(clip_rows, columns=["clip_id", "track_id", "offset"]),
                      pd.DataFrame(track_rows), vectors, norm.vectors(stats), norm, symbolic,
                      background=emb.background if settings.novelty.background else None)


def calibrate_index(corpus: Corpus, emb: Embedding, settings: IndexSettings) -> tuple[Calibration, dict[str, Any]]:
    """Step 4: the novelty calibration and naming accuracy from held-out works scored against an
    index of the others. Without held-out works (tiny data), each work is left out in turn instead."""
    train_idx = np.flatnonzero(~corpus.held)
    eval_idx = np.flatnonzero(corpus.held)
    rule = "held-out works"
    if len(eval_idx) < 2:
        train_idx = np.arange(len(corpus.prepared))
        eval_idx = np.arange(len(corpus.prepared))
        rule = "leave-one-work-out (too few works to hold any out)"
    store = make_store(corpus, emb, train_idx, settings, corpus.composers)
    parts, correct, y_true = [], [], []
    for i in eval_idx:
        exclude = [int(j) for j in train_idx if corpus.groups[j] == corpus.groups[i]] if rule != "held-out works" \
            else []
        if len(exclude) == len(train_idx):
            continue
        # track ids in the calibration store are positions in train_idx
        excl_ids = [int(np.flatnonzero(train_idx == j)[0]) for j in exclude]
        r = score_track(store, TrackQuery(emb.vectors[i], emb.spectral[i], corpus.prepared[i].symbolic),
                        corpus.prepared[i].path.name, k=DEFAULT_K, exclude_tracks=excl_ids)
        parts.append(r.novelty_parts or {settings.novelty.method: r.novelty})
        y_true.append(corpus.composers_of[i])
        correct.append(r.composer == corpus.composers_of[i])
    if not parts:
        raise TrainingError("no track could be scored to calibrate the novelty threshold")
    calibration = calibrate(parts, settings.novelty, impostor_scores(store, settings.novelty))
    scores = [final_score(p, settings.novelty.method, calibration) for p in parts]
    per = {}
    for c in corpus.composers:
        mask = np.array(y_true) == c
        if mask.any():
            per[c] = {"tracks": int(mask.sum()), "recall": round(float(np.mean(np.array(correct)[mask])), 3)}
    report = {"rule": rule, "tracks": len(parts), "accuracy": round(float(np.mean(correct)), 4), "per_composer": per,
              "novelty_scores": {"median": round(float(np.median(scores)), 4), "max": round(float(np.max(scores)), 4)}}
    return calibration, report


def publish_index(out: Path, corpus: Corpus, emb: Embedding, settings: IndexSettings, calibration: Calibration,
                  about: dict[str, Any], model: Embedder, model_path: Path | None,
                  inherited: dict[str, Any] | None = None) -> IndexStore:
    """Step 5: index every track and swap the directory in; the given checkpoint is copied byte for
    byte (its hash is its identity), a trained one saved (with `inherited`: what a fine-tuned model
    keeps of its starting checkpoint's record, its training collections and licence)."""
    store = make_store(corpus, emb, np.arange(len(corpus.prepared)), settings, corpus.composers, calibration, about)
    store.manifest = replace(store.manifest, soundfont_sha=soundfont_digest(settings.render.resolved_soundfont()))

    def put_model(path: Path) -> None:
        if model_path:
            shutil.copyfile(model_path, path)
        else:
            save_checkpoint(path, model, settings.features, {**(inherited or {}), "composers": corpus.composers,
                                                             "musicid": __version__})

    publish(out, store, put_model)
    return store


def build_index(data_dir: str | Path, out: str | Path, options: BuildOptions = BuildOptions(),
                progress: ProgressFn | None = None) -> BuildReport:
    """Build an index directory from <data_dir>/<Composer>/*.mid; replaces `out` only when done.
    Raises DataDirError, SoundFontError, TrainingError (and IndexMismatch for a bad --model)."""
    data_dir, out = Path(data_dir), Path(out)
    timings: dict[str, float] = {}
    t_start = t = time.monotonic()
    check_soundfont(options.render.resolved_soundfont())
    if options.fine_tune and not options.model_path:
        raise TrainingError("--fine-tune starts from a model: give it with --model")
    model: Embedder | None = None
    start_meta: dict[str, Any] = {}
    if options.model_path:  # a given model brings its own feature settings
        model, model_features, start_meta = load_checkpoint(options.model_path)
        options = replace(options, features=model_features)
    else:
        options = replace(options, dims=dims_for(options.dims, options.features))

    # fine-tuning changes the model: nothing may be embedded with the given one where it is rendered
    corpus, emb, ray_run = prepare_corpus(data_dir, options, None if options.fine_tune else model, progress,
                                          min_composers=1 if model is not None and not options.fine_tune else 2)
    # a piano roll is read from the notes, nothing is rendered: the stage is named for what it did
    timings["read" if options.features.from_notes else "render"] = time.monotonic() - t
    trained = model is None or options.fine_tune
    if len(corpus.composers) < (2 if trained else 1):
        raise TrainingError(f"only {len(corpus.composers)} composer(s) have usable tracks; "
                            "training needs at least two")

    train_report, model_from_cache = None, False
    if trained:
        t = time.monotonic()
        model, train_report, model_from_cache = train_or_load(
            corpus.prepared, corpus.composers_of, np.flatnonzero(~corpus.held), corpus.composers, options, progress,
            init=model)
        if not model_from_cache:
            timings["train"] = time.monotonic() - t
    assert model is not None

    t = time.monotonic()
    if emb is None:  # not embedded where rendered
        emb = embed_corpus(model, corpus.prepared, options, progress)
        emb.ray = {**ray_run, **(emb.ray or {})} if ray_run else None
    # a general embedder's background composers (not when fine-tuned: its vectors came from the old weights)
    emb.background = load_background(options.model_path) if options.model_path and not trained else None
    overlap = training_overlap(np.stack([p.sketch for p in corpus.prepared]), emb.background)
    if overlap.any():
        works = len({corpus.groups[i] for i in np.flatnonzero(overlap)})
        corpus.warnings.append(f"{int(overlap.sum())} of {len(overlap)} tracks ({works} works) are pieces the embedder "
                               "was trained on: naming and novelty figures on them (held-out accuracy, eval) "
                               "flatter it")
    cohort = emb.background.without(corpus.composers) if emb.background is not None else None
    if options.novelty.method in COHORT_METHODS and not (cohort is not None and len(cohort)):
        raise TrainingError(f"--novelty {options.novelty.method} needs a general embedder whose background holds "
                            "composers this index does not (the shipped one, or one from musicid embedder train; "
                            "not --train, --fine-tune or --features audio)")
    timings["embed"] = time.monotonic() - t

    t = time.monotonic()
    n_clips = int(sum(len(v) for v in emb.vectors))
    settings = index_settings(options, n_clips, background=cohort is not None and len(cohort) > 0)
    calibration, heldout = calibrate_index(corpus, emb, settings)
    timings["calibrate"] = time.monotonic() - t
    if heldout["tracks"] < FEW_CALIBRATION_TRACKS:
        corpus.warnings.append(f"the novelty threshold rests on {heldout['tracks']} held-out tracks: it is rough "
                               "(more works per composer steady it)")
    if options.novelty.threshold_rule != calibration.threshold_rule:
        why = impostors_unavailable(cohort, settings.novelty) or "no background track scored finitely"
        corpus.warnings.append(f"--threshold-rule {options.novelty.threshold_rule}: {why}, "
                               f"so the threshold is {calibration.threshold_rule}'s")

    t = time.monotonic()
    about: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "musicid_version": __version__,
        "data_dir": str(data_dir.resolve()),
        "model": {"dims": asdict(model.dims), "trained_here": trained, "from_cache": model_from_cache,
                  "started_from": str(options.model_path) if options.model_path else None,
                  "train": asdict(fine_tuning(options.train) if options.fine_tune else options.train)
                  if trained else None,
                  "train_seconds": round(train_report.seconds, 1) if train_report else None,
                  "final_loss": round(train_report.final_loss, 4) if train_report else None},
        "novelty": {"score": DESCRIPTIONS[options.novelty.method],
                    "background": cohort.summary() if cohort is not None and settings.novelty.background else None,
                    "rule": f"{options.novelty.keep:.0%} of held-out known-composer tracks "
                            "score at or below the threshold" if calibration.threshold_rule == "known-quantile" else
                            "the same share of held-out known-composer tracks scores above the threshold as of "
                            f"{calibration.impostors} background tracks (pieces by composers the index does not "
                            "hold) at or below it",
                    "heldout": heldout},
        "counts": {"tracks": len(corpus.prepared), "clips": n_clips, "failed": len(corpus.failures)},
        "failures": [{"path": p, "reason": r} for p, r in corpus.failures],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "ray": emb.ray,
    }
    inherited: dict[str, Any] = {k: start_meta[k] for k in ("collections", "licence") if k in start_meta}
    if options.fine_tune:
        inherited["fine_tuned_from"] = str(options.model_path)
    about["model"]["licence"] = start_meta.get("licence")  # what weights trained on licensed data carry
    publish_index(out, corpus, emb, settings, calibration, about, model, None if trained else options.model_path,
                  inherited)
    timings["write"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t_start

    composers = corpus.composers
    tracks_per = {c: corpus.composers_of.count(c) for c in composers}
    clips_per = {c: sum(len(v) for v, cc in zip(emb.vectors, corpus.composers_of, strict=True) if cc == c)
                 for c in composers}
    return BuildReport(out, composers, tracks_per, clips_per, corpus.failures, corpus.warnings,
                       {k: round(v, 1) for k, v in timings.items()}, heldout, calibration.threshold, trained,
                       sum(p.cached for p in corpus.prepared), model_from_cache, emb.ray,
                       "" if trained else model_given_as(options.model_path))


def model_given_as(path: Path | None) -> str:
    """"shipped" for the shipped embedder, else the checkpoint's path, as a build report says it."""
    from .shipped import CHECKPOINT

    if path is None:
        return ""
    return "shipped" if Path(path).resolve() == CHECKPOINT.resolve() else str(path)
