"""Classify a track and score its novelty against an index.

For a track cut into clips and embedded:
- the composer, by the index's naming: "vote" (k-NN vote: each clip's k nearest
  indexed clips vote for their composer; the track's votes are the shares over
  all its clips, and the confidence is the winner's share) or "head" (the linear
  head of classifier.py: the track's composer probabilities, confidence the
  winner's).
- centroid distances: the track's mean vector against each composer centroid.
- novelty, in the index's novelty view (docs/RESULTS.md compares them):
  "track": the distance from the track's mean vector to the
  nearest indexed track's mean vector -- a whole piece against whole pieces;
  "embedding": the mean, over the track's clips, of the mean distance to the
  `novelty_k` nearest indexed clips; "sound": the same in the sound view
  (novelty.py); "score": the distance from the track's score statistics
  (descriptors.py) to the nearest indexed track's; "blend" (the default): the
  larger of the track and score views, each put on one scale by its median and interquartile
  range over held-out known tracks (so 0 is a typical known track, 1 one
  interquartile range above). Flagged novel above the threshold the index
  calibrated on held-out tracks.
- known piece: an indexed track with exactly the same notes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .index_store import IndexStore, ip_to_distance
from .novelty import clip_stats

ProgressFn = Callable[[str, int, int], None]
DEFAULT_K = 10
DEFAULT_NOVELTY_K = 5
TRACK_NOVELTY_K = 1  # the track view: distance to the single nearest indexed track
NOVELTY_SCORES = {  # what the novelty score is, per view (written into the manifest)
    "track": "distance from the track's mean embedding to the nearest indexed track's mean embedding "
             "(k is for the clip views)",
    "embedding": "mean distance of each clip to its k nearest indexed clips, averaged over the track's clips",
    "sound": "mean distance of each clip to its k nearest indexed clips in the sound view (mel-band statistics), "
             "averaged over the track's clips",
    "score": "distance from the track's score statistics (descriptors.py) to the nearest indexed track's, "
             "each statistic standardised over the indexed tracks",
    "blend": "the larger of the track and score views, each as (score - median) / interquartile range "
             "of held-out known tracks (manifest novelty.scales)",
}
BLEND_PARTS = ("track", "score")  # the views the blend view combines


@dataclass
class Neighbour:
    path: str
    composer: str
    distance: float  # nearest clip of that track to any clip of the query
    offset: float  # start (s) of that nearest indexed clip


@dataclass
class TrackResult:
    path: str
    composer: str  # the winner of the index's naming (k-NN vote or linear head)
    confidence: float  # the winner's share of the votes (or its probability), 0..1
    votes: dict[str, float]  # every composer's share (or probability)
    centroid_distances: dict[str, float]
    novelty: float
    threshold: float
    novel: bool
    n_clips: int
    known_piece: str | None = None  # indexed track with the same notes
    neighbours: list[Neighbour] = field(default_factory=list)
    naming: str = "vote"  # how the composer was chosen: "vote" or "head"
    novelty_parts: dict[str, float] = field(default_factory=dict)  # blend view: each part's own score

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def novelty_scores(distances: np.ndarray, k: int) -> float:
    """Mean over clips of the mean distance to each clip's k nearest neighbours."""
    return float(distances[:, :k].mean())


def _search_excluding(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], store: IndexStore,
                      queries: np.ndarray, want: int,
                      exclude_tracks: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `want` nearest clips (distances, clip ids, track ids), skipping the excluded tracks' clips."""
    excluded = np.asarray(list(exclude_tracks), dtype=np.int64)
    n_excl = int(store.tracks.loc[store.tracks.track_id.isin(excluded), "n_clips"].sum()) if len(excluded) else 0
    dist, ids = search(queries, want + n_excl)
    tids = store.track_of(ids)
    if n_excl:
        keep = ~np.isin(tids, excluded) & (ids >= 0)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :want]
        dist = np.take_along_axis(dist, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        tids = np.take_along_axis(tids, order, axis=1)
    return dist, ids, tids


def neighbour_composers(store: IndexStore, neighbour_tracks: np.ndarray) -> np.ndarray:
    """The composer (index in store.composers) of each neighbour track id, -1 where there is none."""
    comp_idx = {c: i for i, c in enumerate(store.composers)}
    out = np.full(neighbour_tracks.shape, -1, dtype=np.int64)
    found = neighbour_tracks >= 0
    out[found] = [comp_idx[store.track_field(t, "composer")] for t in neighbour_tracks[found]]
    return out


def vote_shares(store: IndexStore, neighbour_tracks: np.ndarray, k: int) -> np.ndarray:
    """Each composer's share of the votes cast by the tracks of every clip's k nearest indexed clips
    (neighbour_tracks: (n_clips, >= k) track ids, -1 where none), in store.composers order."""
    return shares(neighbour_composers(store, neighbour_tracks[:, :k]), len(store.composers))


def shares(voters: np.ndarray, n_composers: int) -> np.ndarray:
    """Each composer's share of the votes (composer indices, -1 = no vote)."""
    counts = np.bincount(voters[voters >= 0], minlength=n_composers).astype(float)
    return counts / max(counts.sum(), 1.0)


def _novelty_k(store: IndexStore) -> int:
    return int(store.manifest["novelty"].get("k", DEFAULT_NOVELTY_K))


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """A track's mean clip vector, unit length (what the track view and the centroids compare)."""
    mean = vectors.mean(axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


def track_novelty(store: IndexStore, vectors: np.ndarray, stats: np.ndarray | None, view: str | None = None,
                  exclude_tracks: Sequence[int] = (), score: np.ndarray | None = None) -> float:
    """A track's novelty score in one view (default: the index's own).

    stats: the clips' sound statistics (the sound view); score: the track's score statistics
    (the score and blend views)."""
    view = view or store.novelty_view
    excluded = np.asarray(list(exclude_tracks), dtype=np.int64)
    if view == "blend":
        scales = _scales(store)
        if scales is None:
            raise ValueError("the blend view needs its scales (calibrated at build time)")
        return blend_novelty(novelty_parts(store, vectors, stats, exclude_tracks, score), scales)
    if view == "track":
        dist, _ = store.search_tracks(mean_vector(vectors), TRACK_NOVELTY_K, excluded)
        return float(dist.mean()) if len(dist) else float("inf")
    if view == "score":
        if score is None:
            raise ValueError("the score view needs the track's score statistics (descriptors.py)")
        dist, _ = store.search_scores(score, TRACK_NOVELTY_K, excluded)
        return float(dist.mean()) if len(dist) else float("inf")
    novelty_k = _novelty_k(store)
    if view == "sound":
        if stats is None:
            raise ValueError("the sound view needs the clips' statistics (novelty.clip_stats)")
        dist, _, _ = _search_excluding(store.search_sound, store, stats, novelty_k, exclude_tracks)
    else:
        dist, _, _ = _search_excluding(store.search, store, vectors, novelty_k, exclude_tracks)
    return novelty_scores(dist, novelty_k)


def novelty_parts(store: IndexStore, vectors: np.ndarray, stats: np.ndarray | None,
                  exclude_tracks: Sequence[int] = (), score: np.ndarray | None = None) -> dict[str, float]:
    """The blend view's parts: the track's own score in each of BLEND_PARTS."""
    return {v: track_novelty(store, vectors, stats, v, exclude_tracks, score) for v in BLEND_PARTS}


def blend_scales(parts: Sequence[dict[str, float]]) -> dict[str, list[float]]:
    """Each part's median and interquartile range over held-out known tracks' novelty_parts.

    The range is floored at a tenth of the median, so that a handful of near-identical
    calibration tracks cannot make every later track look infinitely far."""
    if not len(parts):
        raise ValueError("no held-out scores to scale the blend on")
    out = {}
    for v in BLEND_PARTS:
        x = np.asarray([p[v] for p in parts], dtype=float)
        x = x[np.isfinite(x)]
        med = float(np.median(x)) if len(x) else 0.0
        iqr = float(np.subtract(*np.percentile(x, [75, 25]))) if len(x) else 1.0
        out[v] = [med, max(iqr, 0.1 * abs(med), 1e-6)]
    return out


def blend_novelty(parts: dict[str, float], scales: dict[str, list[float]]) -> float:
    """The blend view's score: the largest part, each on its held-out known tracks' scale."""
    return float(max((parts[v] - med) / iqr for v, (med, iqr) in scales.items()))


def _scales(store: IndexStore) -> dict[str, list[float]] | None:
    """The blend parts' scales from the manifest; None before index build has calibrated them."""
    scales = store.manifest["novelty"].get("scales")
    return {str(v): [float(a), float(b)] for v, (a, b) in scales.items()} if scales else None


def score_vectors(store: IndexStore, vectors: np.ndarray, path: str, fingerprint: str | None = None,
                  k: int = DEFAULT_K, exclude_tracks: Sequence[int] = (),
                  n_neighbours: int = 5, stats: np.ndarray | None = None,
                  score: np.ndarray | None = None) -> TrackResult:
    """Score one track's clip vectors (n_clips, d) against the index.

    stats: the clips' sound statistics (novelty.clip_stats), needed when the index scores
    novelty in the sound view; score: the track's score statistics (descriptors.py), needed
    in the score and blend views. exclude_tracks: indexed track ids to ignore (leave-one-out
    calibration on tiny data); the linear head is not refitted without them. In the blend
    view an index not yet calibrated (no scales) gives novelty NaN and the parts alone.
    """
    composers = store.composers
    # in the embedding view one search serves the vote and the novelty score
    in_embedding = store.novelty_view == "embedding"
    novelty_k = _novelty_k(store)
    dist, ids, tids = _search_excluding(store.search, store, vectors, max(k, novelty_k) if in_embedding else k,
                                        exclude_tracks)
    votes = store.head.track_proba(vectors) if store.naming == "head" else vote_shares(store, tids, k)
    best = int(np.argmax(votes))

    cdist = ip_to_distance(store.centroids @ mean_vector(vectors))
    parts: dict[str, float] = {}
    if in_embedding:
        novelty = novelty_scores(dist, novelty_k)
    elif store.novelty_view == "blend":
        parts = novelty_parts(store, vectors, stats, exclude_tracks, score)
        scales = _scales(store)
        novelty = blend_novelty(parts, scales) if scales else float("nan")
    else:
        novelty = track_novelty(store, vectors, stats, store.novelty_view, exclude_tracks, score)

    # nearest tracks: best clip distance per track
    nearest: dict[int, tuple[float, int]] = {}
    for d, cid, t in zip(dist[:, :k].ravel(), ids[:, :k].ravel(), tids[:, :k].ravel(), strict=True):
        if t >= 0 and (t not in nearest or d < nearest[t][0]):
            nearest[int(t)] = (float(d), int(cid))
    neighbours = [
        Neighbour(str(store.track_field(t, "path")), str(store.track_field(t, "composer")), d,
                  store.clip_offset(cid))
        for t, (d, cid) in sorted(nearest.items(), key=lambda kv: kv[1][0])[:n_neighbours]
    ]
    known = None
    composer, confidence = composers[best], float(votes[best])
    if fingerprint is not None:
        same = store.tracks[store.tracks.fingerprint == fingerprint]
        same = same[~same["track_id"].isin(list(exclude_tracks))]  # track ids, not table rows
        if len(same):  # the same notes as an indexed track: the index knows who wrote it
            known = str(same.iloc[0]["path"])
            composer, confidence = str(same.iloc[0]["composer"]), 1.0
    return TrackResult(
        path=path, composer=composer, confidence=confidence,
        votes={c: round(float(v), 4) for c, v in zip(composers, votes, strict=True)},
        centroid_distances={c: round(float(d), 4) for c, d in zip(composers, cdist, strict=True)},
        novelty=round(novelty, 4), threshold=store.threshold, novel=novelty > store.threshold,
        n_clips=len(vectors), known_piece=known, neighbours=neighbours, naming=store.naming,
        novelty_parts={v: round(x, 4) for v, x in parts.items()},
    )


def rank_by_novelty(results: Sequence[TrackResult]) -> list[TrackResult]:
    """Most novel first."""
    return sorted(results, key=lambda r: -r.novelty)


def calibrate_threshold(scores: Sequence[float], keep: float = 0.95) -> float:
    """The novelty score under which `keep` of known-composer held-out tracks fall."""
    if not len(scores):
        raise ValueError("no held-out scores to calibrate on")
    return float(np.quantile(np.asarray(scores, dtype=float), keep))


@dataclass
class QueryEngine:
    """An index loaded with its model, ready to answer queries."""

    store: IndexStore
    model: Any  # embedder.Embedder
    features: Any  # features.FeatureSettings
    render_settings: Any  # render.RenderSettings

    @classmethod
    def open(cls, index_dir: str | Path) -> QueryEngine:
        from .embedder import check_features_match, load_checkpoint
        from .errors import IndexMismatch
        from .features import FeatureSettings
        from .index_store import load_store
        from .render import RenderSettings, soundfont_digest

        store = load_store(index_dir)
        model, model_features, _ = load_checkpoint(Path(index_dir) / "model.pt")
        features = FeatureSettings(**store.manifest["features"])
        check_features_match(model_features, features, str(index_dir))
        if model.dims.embed_dim != store.index.d:
            raise IndexMismatch(f"{index_dir}: model makes {model.dims.embed_dim}-d vectors, "
                                f"index holds {store.index.d}-d")
        render_settings = RenderSettings(**store.manifest["render"]["settings"])
        if not features.from_notes and (  # a piano roll is never rendered: its SoundFont does not matter
                soundfont_digest(render_settings.resolved_soundfont()) != store.manifest["render"]["soundfont_sha"]):
            raise IndexMismatch(f"{index_dir}: the SoundFont at {render_settings.resolved_soundfont()} "
                                "is not the one this index was built with")
        return cls(store, model, features, render_settings)

    def score(self, prepared: Any, name: str, k: int = DEFAULT_K) -> TrackResult:
        """Embed and score one prepared track (prepare.Prepared)."""
        import torch

        from .embedder import embed_clips

        vectors = embed_clips(self.model, torch.from_numpy(prepared.clips))
        stats = clip_stats(prepared.clips) if self.store.novelty_view == "sound" else None
        return score_vectors(self.store, vectors, name, prepared.fingerprint, k, stats=stats, score=prepared.score)

    def query(self, path: str | Path, k: int = DEFAULT_K) -> TrackResult:
        """Render, embed and score one MIDI file; raises MidiError/RenderError on a bad file."""
        from .prepare import prepare_track

        path = Path(path)
        return self.score(prepare_track(path, self.render_settings, self.features), str(path), k)


def report_folder(engine: QueryEngine, folder: str | Path, by_novelty: bool = True, workers: int = 0,
                  progress: ProgressFn | None = None) -> tuple[list[TrackResult], list[Any]]:
    """Score every MIDI file below a folder; bad files come back as Failures, not exceptions."""
    from .dataset import scan_unlabelled
    from .prepare import Failure, prepare_many

    root = Path(folder)
    refs = scan_unlabelled(root)
    prepared = prepare_many([r.path for r in refs], engine.render_settings, engine.features,
                            None, workers, progress)
    results: list[TrackResult] = []
    failures: list[Failure] = []
    for n, p in enumerate(prepared):
        name = str(p.path.relative_to(root)) if root.is_dir() else p.path.name
        if isinstance(p, Failure):
            failures.append(Failure(Path(name), p.reason, p.kind))
        else:
            results.append(engine.score(p, name))
        if progress:
            progress("embed", n + 1, len(prepared))
    results = rank_by_novelty(results) if by_novelty else sorted(results, key=lambda r: r.path)
    return results, failures
