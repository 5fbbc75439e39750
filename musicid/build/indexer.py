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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import TrainingError
from ..features.spectral import SpectralNorm
from ..features.symbolic import N_SYMBOLIC, standardiser
from ..index.calibration import COHORT_METHODS, DESCRIPTIONS, Calibration
from ..index.manifest import IndexSettings, Manifest
from ..index.store import IndexStore, publish, track_row
from ..io.render import check_soundfont, soundfont_digest
from ..model.background import load_background, training_overlap
from ..model.embedder import Embedder, dims_for, load_checkpoint, save_checkpoint
from ..model.training import fine_tuning
from ..progress import ProgressFn
from ..recognize.novelty import TrackQuery, calibrate, final_score, impostor_scores, impostors_unavailable
from ..recognize.query import DEFAULT_K, score_track
from .corpus import BuildOptions, Corpus, Embedding, embed_corpus, index_settings, prepare_corpus, relative
from .model_cache import train_or_load

FEW_CALIBRATION_TRACKS = 20  # held-out tracks under which a build warns that its threshold is rough


def single_work_composers(composers: list[str], groups: np.ndarray) -> list[str]:
    """The composers (sorted) whose tracks all belong to one work group (collection/dataset.group_works).
    On composers the embedder never saw, one enrolled work per composer named them at macro-F1 0.36 and
    ranked strangers at AUROC 0.58, against 0.52 and 0.71 with three (docs/RESULTS.md, enrolment size,
    musicid 0.5.3)."""
    works: dict[str, set[int]] = {}
    for c, g in zip(composers, np.asarray(groups).tolist(), strict=True):
        works.setdefault(c, set()).add(int(g))
    return sorted(c for c, w in works.items() if len(w) == 1)


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
    single = single_work_composers(corpus.composers_of, corpus.groups)
    if single:
        corpus.warnings.append(f"{len(single)} composer(s) enrolled from a single work ({', '.join(single[:5])}"
                               f"{', ...' if len(single) > 5 else ''}): none of it is held out to calibrate on, and "
                               "one work names a composer and tells it from strangers far less reliably than three "
                               "(README, How many works)")
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
    from ..model.shipped import CHECKPOINT

    if path is None:
        return ""
    return "shipped" if Path(path).resolve() == CHECKPOINT.resolve() else str(path)
