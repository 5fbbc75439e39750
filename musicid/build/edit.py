"""Add tracks to an index, or remove them, with the index's own model.

Edits work on the raw vectors the index keeps (vectors.npy), never on vectors
read back out of FAISS, and FAISS, centroids, track vectors and the linear probe
are derived anew: the result is the index a fresh build of the same tracks with
the same model would hold. Works are grouped as the build grouped them (its
recorded --group-by). The novelty calibration is kept (and the manifest says
so); the spectral and symbolic standardisations too. The directory is replaced
whole, as a build replaces it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..collection.dataset import group_works, scan_labelled, work_key
from ..errors import DataDirError
from ..features.cache import FeatureCache, default_cache_dir
from ..features.prepare import Failure, Prepared, prepare_many
from ..features.spectral import spectral_stats
from ..index.store import IndexStore, load_store, publish, track_row
from ..model.embedder import embed_clips
from ..progress import ProgressFn
from ..recognize.query import QueryEngine


@dataclass
class EditReport:
    added: dict[str, int]  # composer -> tracks added
    removed: dict[str, int]
    failures: list[tuple[str, str]]
    composers: list[str]
    tracks: int

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "composers": self.composers, "tracks": self.tracks,
                "failures": [{"path": p, "reason": r} for p, r in self.failures]}


def _edited(store: IndexStore, tracks: pd.DataFrame, keep_clips: np.ndarray, note: str,
            new_clips: pd.DataFrame | None = None, new_vectors: np.ndarray | None = None,
            new_spectral: np.ndarray | None = None) -> IndexStore:
    """A store of the given tracks: the kept rows of the old clips (and their raw vectors), then the
    new ones; everything derived is derived anew."""
    clips = store.clips[keep_clips]
    vectors, spectral = store.vectors[keep_clips], store.spectral_vectors[keep_clips]
    if new_clips is not None and new_vectors is not None and new_spectral is not None:
        clips = pd.concat([clips, new_clips], ignore_index=True)
        vectors = np.concatenate([vectors, new_vectors])
        spectral = np.concatenate([spectral, new_spectral])
    composers = tuple(sorted(tracks["composer"].unique()))
    edits = [*store.manifest.about.get("edits", []), {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                                      "what": note}]
    counts = {**store.manifest.about.get("counts", {}), "tracks": len(tracks), "clips": len(clips)}
    manifest = replace(store.manifest.with_about(edits=edits, counts=counts), composers=composers)
    return IndexStore(manifest, clips.reset_index(drop=True), tracks.reset_index(drop=True), vectors, spectral,
                      store.spectral_norm, store.symbolic_norm, background=store.background)


def _publish(index_dir: Path, store: IndexStore) -> None:
    publish(index_dir, store, lambda path: shutil.copyfile(index_dir / "model.pt", path))


def add_tracks(index_dir: str | Path, data_dir: str | Path, cache_dir: Path | None = None,
               workers: int = 0, progress: ProgressFn | None = None, labels: str = "folders") -> EditReport:
    """Render, embed (with the index's model) and add <data_dir>/<Composer>/*.mid (and scores) to an
    index; labels "metadata" takes each file's composer from the file (dataset.scan_labelled).
    A track whose path is already in the index is replaced. DataDirError when nothing could be added."""
    index_dir, data_dir = Path(index_dir), Path(data_dir)
    engine = QueryEngine.open(index_dir)
    store = engine.store
    refs, _ = scan_labelled(data_dir, labels=labels)
    cache = FeatureCache.for_tracks(cache_dir if cache_dir is not None else default_cache_dir(),
                                    engine.render_settings, engine.features)
    results = prepare_many([r.path for r in refs], engine.render_settings, engine.features, cache,
                           workers, progress)
    failures = [(str(r.path.relative_to(data_dir)), res.reason)
                for r, res in zip(refs, results, strict=True) if isinstance(res, Failure)]
    good = [(r, res) for r, res in zip(refs, results, strict=True) if isinstance(res, Prepared)]
    if not good:
        raise DataDirError(f"{data_dir}: no track could be rendered, nothing added")
    paths = [str(r.path.relative_to(data_dir)) for r, _ in good]
    replaced = store.tracks[store.tracks["path"].isin(paths)]
    tracks = store.tracks[~store.tracks["track_id"].isin(replaced["track_id"])]
    keep_clips = ~store.clips["track_id"].isin(replaced["track_id"]).to_numpy()
    next_track = int(store.tracks["track_id"].max()) + 1 if len(store.tracks) else 0
    next_clip = int(store.clips["clip_id"].max()) + 1 if len(store.clips) else 0
    works = [work_key(r.path, r.composer, store.manifest.settings.group_by, r.base)
             for r, _ in good]
    first_group = int(tracks["group"].max()) + 1 if len(tracks) else 0
    groups = group_works(works, [p.notes_hash for _, p in good], np.stack([p.sketch for _, p in good])) + first_group
    new_tracks: list[dict[str, Any]] = []
    new_clips: list[dict[str, Any]] = []
    new_vecs: list[np.ndarray] = []
    new_spectral: list[np.ndarray] = []
    for n, ((ref, p), path, work, group) in enumerate(zip(good, paths, works, groups, strict=True)):
        v = embed_clips(engine.model, torch.from_numpy(p.clips))
        tid = next_track + n
        new_tracks.append(track_row(tid, path, str(ref.composer), work, group, "added", p, len(v)))
        for off in p.offsets:
            new_clips.append({"clip_id": next_clip, "track_id": tid, "offset": off})
            next_clip += 1
        new_vecs.append(v)
        new_spectral.append(store.spectral_norm.vectors(spectral_stats(p.clips)))
        if progress:
            progress("embed", n + 1, len(good))
    tracks = pd.concat([tracks, pd.DataFrame(new_tracks)], ignore_index=True)
    added = {c: sum(1 for r, _ in good if r.composer == c) for c in sorted({str(r.composer) for r, _ in good})}
    new = _edited(store, tracks, keep_clips,
                  f"added {len(good)} tracks from {data_dir.resolve()} ({len(replaced)} replaced); "
                  "novelty threshold not recalibrated",
                  pd.DataFrame(new_clips), np.concatenate(new_vecs), np.concatenate(new_spectral))
    new.manifest = new.manifest.with_about(failures=[*store.manifest.about.get("failures", []),
                                                     *({"path": p, "reason": r} for p, r in failures)])
    _publish(index_dir, new)
    return EditReport(added, {}, failures, new.composers, len(new.tracks))


def remove_tracks(index_dir: str | Path, composer: str | None = None, track: str | None = None) -> EditReport:
    """Remove every track of a composer, or one track by its indexed path. DataDirError when there is
    no such composer or track, or nothing would be left."""
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
    keep_clips = store.clips["track_id"].isin(tracks["track_id"]).to_numpy()
    removed = gone.groupby("composer").size().to_dict()
    new = _edited(store, tracks, keep_clips,
                  f"removed {len(gone)} tracks ({composer or track}); novelty threshold not recalibrated")
    _publish(index_dir, new)
    return EditReport({}, {str(k): int(v) for k, v in removed.items()}, [], new.composers, len(new.tracks))
