"""Name a track's composer and score its novelty against an index (open-set recognition).

For a track cut into clips and embedded:
- the composer, by the index's classifier (classifier.py): "knn" (each clip's k
  nearest indexed clips vote for their composer; the probabilities are the
  shares over all its clips), "linear" (the linear probe's track
  probabilities) or "fused" (those and a model of the symbolic features');
  the confidence is the winner's;
- centroid distances: the track's mean vector against each composer centroid;
- novelty, by the index's novelty method (novelty.py), flagged above the
  threshold the index calibrated on held-out known tracks;
- known piece: an indexed track with exactly the same notes ("same notes", by
  the notes hash) or, failing that, the same piece played or edited otherwise
  ("same piece": a performance, an edition without repeats; by the piece
  sketch, piece_match.py); either names the composer with confidence 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..features.piece_match import SAME_PIECE, similarities
from ..features.spectral import spectral_stats
from ..index.store import IndexStore
from ..progress import ProgressFn
from ..vectors import ip_to_distance, mean_vector
from .novelty import TrackQuery, final_score, raw_scores

DEFAULT_K = 10  # neighbours per clip in the k-NN vote


@dataclass
class Neighbour:
    path: str
    composer: str
    distance: float  # nearest clip of that track to any clip of the query
    offset: float  # start (s) of that nearest indexed clip


@dataclass
class TrackResult:
    path: str
    composer: str  # the classifier's winner (or a known piece's composer)
    confidence: float  # the winner's probability, 0..1
    probabilities: dict[str, float]  # every composer's (vote shares under knn)
    centroid_distances: dict[str, float]
    novelty: float
    threshold: float
    novel: bool
    n_clips: int
    known_piece: str | None = None  # indexed track with the same notes, or else of the same piece
    known_piece_match: str | None = None  # "same notes" (notes hash) or "same piece" (piece sketch)
    known_piece_similarity: float | None = None  # the sketches' estimated Jaccard similarity, 0..1
    neighbours: list[Neighbour] = field(default_factory=list)
    classifier: str = "linear"  # how the composer was chosen: "knn", "linear" or "fused"
    novelty_method: str = "fused"
    novelty_parts: dict[str, float] = field(default_factory=dict)  # the raw scores the novelty is made from
    novelty_rule: str = ""  # how the fused score combines its parts' z-scores: "max" or "mean" ("" otherwise)
    # each fused part as the robust z-score the novelty combines: (raw - median) / IQR on held-out known tracks
    novelty_z: dict[str, float] = field(default_factory=dict)
    background_composer: str | None = None  # nearest background composer (known to the embedder, not indexed)
    background_distance: float | None = None  # to that composer's nearest background track (0-2)
    # where the classifier and the nearest indexed tracks name different composers, one line saying so
    disagreement: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: a score that could not be measured (the background margin of an index that
        has enrolled every background composer: -inf) is None, since JSON has no infinity."""
        d = asdict(self)
        d["novelty_parts"] = {m: x if math.isfinite(x) else None for m, x in self.novelty_parts.items()}
        d["novelty_z"] = {m: x if math.isfinite(x) else None for m, x in self.novelty_z.items()}
        return d


def neighbours_disagree(composer: str, nearest: Sequence[str]) -> str | None:
    """A line saying so where another composer holds more of the nearest indexed tracks than the
    classifier's composer does (nearest: their composers, nearest first); None where they agree."""
    if not nearest:
        return None
    counts = Counter(nearest)
    top, n = counts.most_common(1)[0]
    if top == composer or n <= counts.get(composer, 0):
        return None
    return (f"the {len(nearest)} nearest indexed tracks are mostly by {top} ({n} of {len(nearest)}; "
            f"{counts.get(composer, 0)} by {composer}): the classifier and the neighbours disagree")


def neighbour_composers(store: IndexStore, neighbour_tracks: np.ndarray) -> np.ndarray:
    """The composer (index in store.composers) of each neighbour track id, -1 where there is none."""
    comp_idx = {c: i for i, c in enumerate(store.composers)}
    out = np.full(neighbour_tracks.shape, -1, dtype=np.int64)
    found = neighbour_tracks >= 0
    out[found] = [comp_idx[store.track_field(t, "composer")] for t in neighbour_tracks[found]]
    return out


def shares(voters: np.ndarray, n_composers: int) -> np.ndarray:
    """Each composer's share of the votes (composer indices, -1 = no vote)."""
    counts = np.bincount(voters[voters >= 0], minlength=n_composers).astype(float)
    return counts / max(counts.sum(), 1.0)


def classify(store: IndexStore, vectors: np.ndarray, neighbour_tracks: np.ndarray, k: int,
             classifier: str | None = None, symbolic: np.ndarray | None = None) -> np.ndarray:
    """(n_composers,) composer probabilities of one track, in store.composers order.

    vectors: (n_clips, d) its clip vectors; neighbour_tracks: (n_clips, >= k) the track ids of each
    clip's nearest indexed clips (-1 where none), for the knn classifier; symbolic: (N_SYMBOLIC,) its
    symbolic features, for the fused classifier (which is the linear probe without them)."""
    chosen = classifier or store.manifest.settings.classifier
    if chosen in ("linear", "fused"):
        return store.composer_proba(vectors, symbolic if chosen == "fused" else None)
    return shares(neighbour_composers(store, neighbour_tracks[:, :k]), len(store.composers))


def known_piece(store: IndexStore, notes_hash: str | None, sketch: np.ndarray | None,
                exclude_tracks: Sequence[int] = ()) -> tuple[int, str, float] | None:
    """(tracks-table row, "same notes" | "same piece", sketch similarity) of the indexed track a query
    is a copy of, or None: first an equal notes hash, else the most similar piece sketch at or above
    piece_match.SAME_PIECE. sketch: (N_SLOTS,) uint32."""
    allowed = ~store.tracks["track_id"].isin(list(exclude_tracks)).to_numpy()
    table = np.stack(store.tracks["sketch"].to_numpy()) if len(store.tracks) else None
    sims = similarities(sketch, table) if sketch is not None and table is not None else None
    if notes_hash is not None:
        same = np.flatnonzero((store.tracks["notes_hash"] == notes_hash).to_numpy() & allowed)
        if len(same):
            row = int(same[0])
            return row, "same notes", float(sims[row]) if sims is not None else 1.0
    if sims is not None:
        sims = np.where(allowed, sims, 0.0)
        row = int(np.argmax(sims))
        if sims[row] >= SAME_PIECE:
            return row, "same piece", float(sims[row])
    return None


def score_track(store: IndexStore, q: TrackQuery, path: str, notes_hash: str | None = None, k: int = DEFAULT_K,
                exclude_tracks: Sequence[int] = (), n_neighbours: int = 5,
                sketch: np.ndarray | None = None) -> TrackResult:
    """Name and score one track (its clip vectors, spectral statistics and symbolic features) against
    the index.

    exclude_tracks: indexed track ids to act as if absent (leave-one-work-out calibration on tiny
    data); the linear probe is not refitted without them. An index not yet calibrated gives the fused
    score NaN and its parts alone."""
    settings = store.manifest.settings
    novelty_settings = settings.novelty
    composers = store.composers
    excluded = np.asarray(list(exclude_tracks), dtype=np.int64)
    dist, ids, tids = store.search_clips(q.vectors, k, excluded)
    probs = classify(store, q.vectors, tids, k, symbolic=q.symbolic)
    best = int(np.argmax(probs))
    track_vector = mean_vector(q.vectors)
    cdist = ip_to_distance(store.centroids @ track_vector)
    calibration = store.manifest.calibration
    parts = raw_scores(store, q, calibration.parts or novelty_settings.parts, novelty_settings.k, exclude_tracks)
    novelty = final_score(parts, novelty_settings.method, calibration)

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
    composer, confidence = composers[best], float(probs[best])
    background = store.cohort.nearest(track_vector) if store.cohort else None  # (distance, composer)
    found = known_piece(store, notes_hash, sketch, exclude_tracks)
    disagreement = neighbours_disagree(composer, [nb.composer for nb in neighbours])
    if found is not None:  # the same notes or piece as an indexed track: the index knows who wrote it
        row, match, similarity = found
        composer, confidence, disagreement = str(store.tracks.iloc[row]["composer"]), 1.0, None
    return TrackResult(
        path=path, composer=composer, confidence=confidence,
        probabilities={c: round(float(v), 4) for c, v in zip(composers, probs, strict=True)},
        centroid_distances={c: round(float(d), 4) for c, d in zip(composers, cdist, strict=True)},
        novelty=round(novelty, 4), threshold=store.threshold, novel=novelty > store.threshold,
        n_clips=len(q.vectors), known_piece=str(store.tracks.iloc[found[0]]["path"]) if found else None,
        known_piece_match=found[1] if found else None,
        known_piece_similarity=round(found[2], 4) if found else None,
        neighbours=neighbours, classifier=settings.classifier,
        novelty_method=novelty_settings.method,
        novelty_parts={m: round(x, 4) for m, x in parts.items()} if novelty_settings.method == "fused" else {},
        novelty_rule=calibration.rule if novelty_settings.method == "fused" else "",
        novelty_z={m: round((parts[m] - med) / iqr, 4) for m, (med, iqr) in calibration.scales.items()}
        if novelty_settings.method == "fused" and calibration.scales else {},
        background_composer=background[1] if background else None,
        background_distance=round(background[0], 4) if background else None,
        disagreement=disagreement,
    )


def rank_by_novelty(results: Sequence[TrackResult]) -> list[TrackResult]:
    """Most novel first."""
    return sorted(results, key=lambda r: -r.novelty)


def order_results(results: Sequence[TrackResult], by_novelty: bool) -> list[TrackResult]:
    """How a folder's results are listed: most novel first, or by path."""
    return rank_by_novelty(results) if by_novelty else sorted(results, key=lambda r: r.path)


@dataclass
class QueryEngine:
    """An index loaded with its model, ready to answer queries."""

    store: IndexStore
    model: Any  # embedder.Embedder
    features: Any  # clips.FeatureSettings
    render_settings: Any  # render.RenderSettings

    @classmethod
    def open(cls, index_dir: str | Path) -> QueryEngine:
        from ..errors import IndexMismatch
        from ..index.store import load_store
        from ..io.render import soundfont_digest
        from ..model.embedder import check_features_match, load_checkpoint

        store = load_store(index_dir)
        model, model_features, _ = load_checkpoint(Path(index_dir) / "model.pt")
        features, render_settings = store.manifest.settings.features, store.manifest.settings.render
        check_features_match(model_features, features, str(index_dir))
        if model.dims.embed_dim != store.index.d:
            raise IndexMismatch(f"{index_dir}: model makes {model.dims.embed_dim}-d vectors, "
                                f"index holds {store.index.d}-d")
        if not features.from_notes and (  # a piano roll is never rendered: its SoundFont does not matter
                soundfont_digest(render_settings.resolved_soundfont()) != store.manifest.soundfont_sha):
            raise IndexMismatch(f"{index_dir}: the SoundFont at {render_settings.resolved_soundfont()} "
                                "is not the one this index was built with")
        return cls(store, model, features, render_settings)

    def score(self, prepared: Any, name: str, k: int = DEFAULT_K) -> TrackResult:
        """Embed and score one prepared track (prepare.Prepared)."""
        import torch

        from ..model.embedder import embed_clips

        vectors = embed_clips(self.model, torch.from_numpy(prepared.clips))
        spectral = spectral_stats(prepared.clips) if "spectral-knn" in self.store.manifest.settings.novelty.parts \
            else None
        return score_track(self.store, TrackQuery(vectors, spectral, prepared.symbolic), name, prepared.notes_hash, k,
                           sketch=prepared.sketch)

    def query(self, path: str | Path, k: int = DEFAULT_K) -> TrackResult:
        """Read, render, embed and score one MIDI file or score; raises ReadError/RenderError on a bad file."""
        from ..features.prepare import prepare_track

        path = Path(path)
        return self.score(prepare_track(path, self.render_settings, self.features), str(path), k)


def report_folder(engine: QueryEngine, folder: str | Path, by_novelty: bool = True, workers: int = 0,
                  progress: ProgressFn | None = None) -> tuple[list[TrackResult], list[Any]]:
    """Score every MIDI file and score below a folder; bad files come back as Failures, not exceptions."""
    from ..collection.dataset import scan_unlabelled
    from ..features.prepare import Failure, prepare_many

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
    return order_results(results, by_novelty), failures
