"""Add tracks to an index, or remove them, with the index's own model.

Vectors, clip and track tables, composers and centroids stay consistent: the
result is the index a fresh build of the same tracks with the same model would
hold. The novelty threshold keeps its calibration (recorded in the manifest as
such). The directory is replaced whole, as a build replaces it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .cache import FeatureCache, default_cache_dir
from .dataset import group_works, scan_labelled, work_key
from .embedder import embed_clips
from .errors import DataDirError
from .index_store import IndexStore, load_store, make_faiss_index, publish, store_vectors
from .indexer import derived_parts
from .novelty import clip_stats
from .prepare import Failure, Prepared, prepare_many
from .query import QueryEngine

ProgressFn = Callable[[str, int, int], None]


@dataclass
class EditReport:
    added: dict[str, int]  # composer -> tracks added
    removed: dict[str, int]
    failures: list[tuple[str, str]]
    composers: list[str]
    tracks: int


def _rebuild(store: IndexStore, tracks: pd.DataFrame, clips: pd.DataFrame, ids: np.ndarray,
             vectors: np.ndarray, sound: np.ndarray, note: str) -> IndexStore:
    """A store holding exactly these rows and vectors (embeddings and sound vectors, row for row),
    with composers, centroids, track vectors and the linear head recomputed. The sound and score
    views keep their standardisation, as the threshold keeps its calibration."""
    composers = sorted(tracks["composer"].unique())
    order = np.argsort(ids)
    ids, vectors, sound = ids[order], vectors[order], sound[order]
    clips = clips.sort_values("clip_id").reset_index(drop=True)
    assert np.array_equal(ids, clips["clip_id"].to_numpy()), "vectors and clip rows disagree"
    tracks = tracks.reset_index(drop=True)
    centroids, means, head = derived_parts(vectors, clips["track_id"].to_numpy(), tracks["track_id"].to_numpy(),
                                           list(tracks["composer"]), composers)
    manifest = dict(store.manifest)
    manifest["composers"] = composers
    manifest["counts"] = {**manifest["counts"], "tracks": len(tracks), "clips": len(clips)}
    manifest["edits"] = [*manifest.get("edits", []),
                         {"at": datetime.now(UTC).isoformat(timespec="seconds"), "what": note}]
    kind = manifest.get("index", {}).get("kind", "auto")
    return IndexStore(make_faiss_index(vectors, ids, kind), clips, tracks, centroids, manifest,
                      make_faiss_index(sound, ids, kind), store.sound_norm, means, head)


def _all_vectors(store: IndexStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip ids, embeddings, sound vectors), row for row."""
    ids, vectors = store_vectors(store)
    sound_ids, sound = store_vectors(store, "sound")
    order = np.argsort(sound_ids)
    sound = sound[order][np.searchsorted(sound_ids[order], ids)]
    return ids, vectors, sound


def _publish(index_dir: Path, store: IndexStore) -> None:
    publish(index_dir, store, lambda path: shutil.copyfile(index_dir / "model.pt", path))


def add_tracks(index_dir: str | Path, data_dir: str | Path, cache_dir: Path | None = None,
               workers: int = 0, progress: ProgressFn | None = None) -> EditReport:
    """Render, embed (with the index's model) and add <data_dir>/<Composer>/*.mid to an index.

    A track whose path is already in the index is replaced.
    """
    index_dir, data_dir = Path(index_dir), Path(data_dir)
    engine = QueryEngine.open(index_dir)
    store = engine.store
    refs, _ = scan_labelled(data_dir)
    cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir(),
                         {"render": engine.render_settings.identity(), "features": engine.features.as_dict()})
    results = prepare_many([r.path for r in refs], engine.render_settings, engine.features, cache,
                           workers, progress)
    failures = [(str(r.path.relative_to(data_dir)), res.reason)
                for r, res in zip(refs, results, strict=True) if isinstance(res, Failure)]
    good = [(r, res) for r, res in zip(refs, results, strict=True) if isinstance(res, Prepared)]
    if not good:
        raise DataDirError(f"{data_dir}: no track could be rendered, nothing added")

    ids, vectors, sound = _all_vectors(store)
    paths = [str(r.path.relative_to(data_dir)) for r, _ in good]
    replaced = store.tracks[store.tracks["path"].isin(paths)]
    keep = ~store.clips["track_id"].isin(replaced["track_id"]).to_numpy()
    tracks = store.tracks[~store.tracks["track_id"].isin(replaced["track_id"])]
    clips = store.clips[keep]
    id_keep = np.isin(ids, clips["clip_id"].to_numpy())
    ids, vectors, sound = ids[id_keep], vectors[id_keep], sound[id_keep]

    next_track = int(store.tracks["track_id"].max()) + 1 if len(store.tracks) else 0
    next_clip = int(store.clips["clip_id"].max()) + 1 if len(store.clips) else 0
    works = [work_key(r.path, r.composer) for r, _ in good]
    groups = group_works(works, [p.fingerprint for _, p in good]) + (int(tracks["group"].max()) + 1
                                                                       if len(tracks) else 0)
    new_tracks: list[dict[str, Any]] = []
    new_clips: list[dict[str, Any]] = []
    new_vecs: list[np.ndarray] = []
    new_sound: list[np.ndarray] = []
    for n, ((ref, p), path, work, group) in enumerate(zip(good, paths, works, groups, strict=True)):
        v = embed_clips(engine.model, torch.from_numpy(p.clips))
        tid = next_track + n
        new_tracks.append({"track_id": tid, "path": path, "composer": ref.composer, "work": work,
                           "group": int(group), "split": "added", "fingerprint": p.fingerprint,
                           "sha256": p.sha256, "duration": round(p.duration, 3), "n_clips": len(v),
                           "score_stats": p.score.astype(np.float32)})
        for off in p.offsets:
            new_clips.append({"clip_id": next_clip, "track_id": tid, "offset": off})
            next_clip += 1
        new_vecs.append(v)
        new_sound.append(store.sound_norm.vectors(clip_stats(p.clips)))
        if progress:
            progress("embed", n + 1, len(good))
    tracks = pd.concat([tracks, pd.DataFrame(new_tracks)], ignore_index=True)
    clips = pd.concat([clips, pd.DataFrame(new_clips)], ignore_index=True)
    ids = np.concatenate([ids, [c["clip_id"] for c in new_clips]]).astype(np.int64)
    vectors = np.concatenate([vectors, *new_vecs])
    sound = np.concatenate([sound, *new_sound])
    added = {c: sum(1 for r, _ in good if r.composer == c) for c in sorted({str(r.composer) for r, _ in good})}
    new = _rebuild(store, tracks, clips, ids, vectors, sound,
                   f"added {len(good)} tracks from {data_dir.resolve()} "
                   f"({len(replaced)} replaced); novelty threshold not recalibrated")
    new.manifest["failures"] = [*store.manifest.get("failures", []),
                                *({"path": p, "reason": r} for p, r in failures)]
    _publish(index_dir, new)
    return EditReport(added, {}, failures, new.composers, len(new.tracks))


def remove_tracks(index_dir: str | Path, composer: str | None = None, track: str | None = None) -> EditReport:
    """Remove every track of a composer, or one track by its indexed path."""
    index_dir = Path(index_dir)
    store = load_store(index_dir)
    if composer is not None:
        gone = store.tracks[store.tracks["composer"] == composer]
        if gone.empty:
            raise DataDirError(f"no composer '{composer}' in the index ({', '.join(store.composers)})")
    elif track is not None:
        gone = store.tracks[store.tracks["path"] == track]
        if gone.empty:
            raise DataDirError(f"no track '{track}' in the index (paths as `musicid index info --json` lists)")
    else:
        raise DataDirError("say what to remove: --composer NAME or --track PATH")
    tracks = store.tracks[~store.tracks["track_id"].isin(gone["track_id"])]
    if tracks.empty:
        raise DataDirError("that would remove every track; build a new index instead")
    clips = store.clips[store.clips["track_id"].isin(tracks["track_id"])]
    ids, vectors, sound = _all_vectors(store)
    keep = np.isin(ids, clips["clip_id"].to_numpy())
    removed = gone.groupby("composer").size().to_dict()
    new = _rebuild(store, tracks, clips, ids[keep], vectors[keep], sound[keep],
                   f"removed {len(gone)} tracks ({composer or track}); novelty threshold not recalibrated")
    _publish(index_dir, new)
    return EditReport({}, {str(k): int(v) for k, v in removed.items()}, [], new.composers, len(new.tracks))
