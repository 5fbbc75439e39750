"""The index: raw clip vectors and their metadata in memory and on disk, with what is derived from them.

    INDEX_DIR/
      manifest.json          settings, calibration, composers, provenance, sha256 of every file (manifest.py)
      vectors.npy            the clip embeddings, float16, clips.parquet row order: the store of record
      spectral_vectors.npy   each clip's standardised spectral statistics (features/spectral.py), float16, same rows
      clips.parquet          clip_id, track_id, offset (s)
      tracks.parquet         track_id, path, composer, work, group, split, notes_hash, sha256, duration,
                             n_clips, symbolic (the notes' symbolic features, features/symbolic.py),
                             sketch (which piece the notes are, whatever their timing: piece_match.py)
      spectral_norm.npy      the spectral statistics' standardisation: mean and std per dimension
      symbolic_norm.npy      the symbolic features' standardisation over the indexed tracks: mean and std
      index.faiss            FAISS over vectors.npy (ids = clip_id), derived; kept to load fast
      spectral.faiss         FAISS over spectral_vectors.npy, derived
      centroids.npy          one unit vector per composer, in manifest composers order, derived
      track_vectors.npy      each track's mean clip vector, unit length, tracks.parquet row order, derived
      linear_probe.npy       the linear probe (classifier.py): weights and bias per composer, derived
      symbolic_probe.npy     the fused classifier's model of the symbolic features (classifier.py),
                             derived (an index written before it had one fits it on load)
      model.pt               the embedder checkpoint (weights only)
      background.npz         (an index enrolled with a general embedder) its background: the unit
                             vectors and composers of the embedder's training tracks (background.py);
                             those by composers the index does not hold are the background-margin
                             novelty's cohort, derived on load, so that edits need not touch it

FAISS is derived from the raw vectors, never the other way: an edit (index
add/remove) rebuilds it from vectors.npy, so an IVF-PQ index never quantises a
vector twice. A directory is written whole into a staging folder and swapped in
atomically (atomic.py): a crash leaves the old index as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import replace_directory, write_json
from ..errors import IndexCorrupt
from ..features.piece_match import N_SLOTS
from ..features.spectral import SpectralNorm
from ..features.symbolic import N_SYMBOLIC
from ..io.reader import READERS
from ..keys import file_sha256
from ..model.background import FILE as BACKGROUND_FILE
from ..model.background import Background
from ..model.classifier import SYMBOLIC_C, LinearProbe, fit_linear_probe, fit_tempered_probe
from ..vectors import ip_to_distance
from .faiss_index import make_faiss_index, search
from .manifest import FORMAT, FORMAT_VERSION, Manifest, read_manifest_file

RAW_FILES = ("vectors.npy", "spectral_vectors.npy", "clips.parquet", "tracks.parquet", "spectral_norm.npy",
             "symbolic_norm.npy")
DERIVED_FILES = ("index.faiss", "spectral.faiss", "centroids.npy", "track_vectors.npy", "linear_probe.npy")
DATA_FILES = (*RAW_FILES, *DERIVED_FILES, "model.pt")
SYMBOLIC_PROBE_FILE = "symbolic_probe.npy"  # derived; checked where the manifest lists it (new in 0.3)
TRACK_COLUMNS = ("track_id", "path", "composer", "work", "group", "split", "notes_hash", "sha256", "duration",
                 "n_clips", "symbolic", "sketch")


def default_index_dir() -> Path:
    return Path(os.environ.get("MUSICID_INDEX", "musicid-index"))


def track_row(track_id: int, path: str, composer: str, work: str, group: int, split: str, prepared: Any,
              n_clips: int) -> dict[str, Any]:
    """One row of tracks.parquet (TRACK_COLUMNS) for a prepared track (prepare.Prepared)."""
    return {"track_id": track_id, "path": path, "composer": composer, "work": work, "group": int(group),
            "split": split, "notes_hash": prepared.notes_hash, "sha256": prepared.sha256,
            "duration": round(prepared.duration, 3), "n_clips": n_clips,
            "symbolic": prepared.symbolic.astype(np.float32), "sketch": prepared.sketch.astype(np.uint32)}


def track_means(vectors: np.ndarray, clip_tracks: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """Each track's mean clip vector, made unit length, one row per entry of track_ids.

    vectors: (n_clips, d); clip_tracks: the track id of each row of vectors."""
    if not len(track_ids):
        return np.zeros((0, vectors.shape[1]), np.float32)
    order = np.argsort(clip_tracks, kind="stable")
    present, first = np.unique(clip_tracks[order], return_index=True)
    sums = np.add.reduceat(vectors[order].astype(np.float64), first, axis=0)
    counts = np.diff(np.append(first, len(order)))
    pos = np.minimum(np.searchsorted(present, track_ids), len(present) - 1)
    if not np.array_equal(present[pos], track_ids):
        raise ValueError("a track without clips")
    means = sums[pos] / counts[pos, None]
    return (means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def composer_centroids(track_vectors: np.ndarray, track_composers: Any, composers: Any) -> np.ndarray:
    """(n_composers, d): unit mean of each composer's unit track means (every track weighs the same).

    track_vectors: (n_tracks, d) unit mean clip vector per track (track_means)."""
    out = np.zeros((len(composers), track_vectors.shape[1]), dtype=np.float32)
    of = np.asarray(track_composers)
    for ci, c in enumerate(composers):
        mine = track_vectors[of == c]
        if len(mine):
            m = mine.mean(axis=0)
            out[ci] = m / (np.linalg.norm(m) + 1e-12)
    return out


@dataclass
class IndexStore:
    """An index in memory: the raw vectors and tables, and what is derived from them once."""

    manifest: Manifest
    clips: pd.DataFrame  # clip_id, track_id, offset
    tracks: pd.DataFrame  # TRACK_COLUMNS
    vectors: np.ndarray  # (n_clips, d) clip embeddings, clips row order (float16, memory-mapped, once loaded)
    spectral_vectors: np.ndarray  # (n_clips, 2 * n_bins) standardised spectral statistics, clips row order
    spectral_norm: SpectralNorm
    symbolic_norm: np.ndarray  # (2, N_SYMBOLIC) mean and std
    index: Any = None  # faiss.Index over vectors (ids = clip_id); derived when None
    spectral_index: Any = None  # faiss.Index over spectral_vectors; derived when None
    centroids: np.ndarray | None = None  # (n_composers, d); derived when None
    track_vectors: np.ndarray | None = None  # (n_tracks, d) unit mean clip vector per track; derived when None
    probe: LinearProbe | None = None  # fitted on the indexed clip vectors; derived when None
    fitted_symbolic_probe: LinearProbe | None = None  # on the tracks' symbolic features; derived on first use
    path: Path | None = None
    background: Background | None = None  # the model's background tracks (background.py), all of them, or None
    cohort: Background | None = field(init=False, repr=False)  # derived: the background less the indexed composers
    _clip_track: np.ndarray = field(init=False, repr=False)
    _clip_offset: np.ndarray = field(init=False, repr=False)
    _track_row: dict[int, int] = field(init=False, repr=False)
    _symbolic_z: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = self.clips["clip_id"].to_numpy().astype(np.int64)
        clip_tracks = self.clips["track_id"].to_numpy().astype(np.int64)
        kind = self.manifest.settings.index_kind
        if self.index is None:
            self.index = make_faiss_index(self.vectors.astype(np.float32), ids, kind)
        if self.spectral_index is None:
            self.spectral_index = make_faiss_index(self.spectral_vectors.astype(np.float32), ids, kind)
        track_ids = self.tracks["track_id"].to_numpy().astype(np.int64) if len(self.tracks) else np.zeros(0, int)
        if self.track_vectors is None:
            self.track_vectors = track_means(self.vectors, clip_tracks, track_ids)
        if self.centroids is None:
            self.centroids = composer_centroids(self.track_vectors, list(self.tracks.get("composer", [])),
                                                self.composers)
        if self.probe is None:
            label = {c: i for i, c in enumerate(self.composers)}
            of_track = dict(zip(track_ids.tolist(), (label[c] for c in self.tracks.get("composer", [])),
                                strict=True))
            labels = np.array([of_track[t] for t in clip_tracks.tolist()], dtype=np.int64)
            self.probe = fit_linear_probe(self.vectors.astype(np.float32), labels, len(self.composers))
        self.cohort = self.background.without(self.composers) if self.background is not None else None
        # dense lookups built once per load, so that queries never re-index the tables
        n = int(ids.max()) + 1 if len(ids) else 0
        self._clip_track = np.full(n, -1, dtype=np.int64)
        self._clip_track[ids] = clip_tracks
        self._clip_offset = np.zeros(n, dtype=np.float64)
        self._clip_offset[ids] = self.clips["offset"].to_numpy()
        self._track_row = {int(t): i for i, t in enumerate(track_ids)}
        self._symbolic_z = ((self.symbolic - self.symbolic_norm[0]) / self.symbolic_norm[1]).astype(np.float32)

    @property
    def symbolic(self) -> np.ndarray:
        """(n_tracks, N_SYMBOLIC) each indexed track's symbolic features, tracks-table row order."""
        if not len(self.tracks):
            return np.zeros((0, N_SYMBOLIC), np.float32)
        return np.stack(self.tracks["symbolic"].to_numpy()).astype(np.float32)

    @property
    def composers(self) -> list[str]:
        return list(self.manifest.composers)

    @property
    def threshold(self) -> float:
        return self.manifest.calibration.threshold

    def track_of(self, clip_ids: np.ndarray) -> np.ndarray:
        """The track id of each clip id (-1 for -1 or an unknown id)."""
        out = np.full(clip_ids.shape, -1, dtype=np.int64)
        ok = (clip_ids >= 0) & (clip_ids < len(self._clip_track))
        out[ok] = self._clip_track[clip_ids[ok]]
        return out

    def clip_offset(self, clip_id: int) -> float:
        return float(self._clip_offset[clip_id])

    def track_field(self, track_id: int, column: str) -> Any:
        """One value of the tracks table, by track id."""
        return self.tracks[column].iat[self._track_row[int(track_id)]]

    def search_clips(self, queries: np.ndarray, k: int, exclude_tracks: np.ndarray | None = None,
                     space: str = "embedding") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k nearest indexed clips to each query row: (distances, clip ids, track ids), each
        (n_queries, <= k), skipping the excluded tracks' clips.

        space: "embedding" (queries are clip vectors) or "spectral" (queries are spectral_stats rows)."""
        index = self.index if space == "embedding" else self.spectral_index
        if space == "spectral":
            queries = self.spectral_norm.vectors(queries)
        excluded = exclude_tracks if exclude_tracks is not None else np.zeros(0, np.int64)
        n_excl = int(self.tracks.loc[self.tracks.track_id.isin(excluded), "n_clips"].sum()) if len(excluded) else 0
        dist, ids = search(index, queries, k + n_excl)
        tids = self.track_of(ids)
        if n_excl:
            keep = ~np.isin(tids, excluded) & (ids >= 0)
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            dist, ids, tids = (np.take_along_axis(a, order, axis=1) for a in (dist, ids, tids))
        return dist, ids, tids

    def search_tracks(self, track_vector: np.ndarray, k: int,
                      exclude_tracks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and track ids of the k indexed tracks whose mean vectors are nearest to one
        track's (unit) mean vector; exact (one vector per track, not per clip)."""
        assert self.track_vectors is not None
        ip = self.track_vectors @ track_vector.astype(np.float32)
        rows = self._nearest_rows(-ip, k, exclude_tracks)
        return ip_to_distance(ip[rows]), self.tracks["track_id"].to_numpy()[rows]

    @property
    def symbolic_probe(self) -> LinearProbe:
        """The fused classifier's second model (classifier.py): a class-balanced logistic regression on
        the indexed tracks' standardised symbolic features, temperature-scaled on out-of-fold works
        (fit_tempered_probe); fitted on first use where the index did not keep one (written before 0.3,
        or just edited)."""
        if self.fitted_symbolic_probe is None:
            label = {c: i for i, c in enumerate(self.composers)}
            labels = np.array([label[c] for c in self.tracks.get("composer", [])], dtype=np.int64)
            groups = self.tracks["group"].to_numpy() if len(self.tracks) else np.zeros(0, np.int64)
            self.fitted_symbolic_probe, _ = fit_tempered_probe(self._symbolic_z, labels, groups,
                                                               len(self.composers), c=SYMBOLIC_C)
        return self.fitted_symbolic_probe

    def composer_proba(self, vectors: np.ndarray, symbolic: np.ndarray | None = None) -> np.ndarray:
        """(n_composers,) one track's composer probabilities by the linear probe over its (n_clips, d)
        clip vectors; with its (N_SYMBOLIC,) symbolic features, fused with the symbolic model's."""
        assert self.probe is not None
        if symbolic is None:
            return self.probe.track_proba(vectors)
        prior = self.symbolic_probe.log_proba(self._standardise(symbolic)[None])[0]
        return self.probe.track_proba(vectors, prior=prior)

    def _standardise(self, symbolic: np.ndarray) -> np.ndarray:
        """(N_SYMBOLIC,) symbolic features in the indexed tracks' standard deviations (symbolic_norm)."""
        return (np.asarray(symbolic, np.float32) - self.symbolic_norm[0]) / self.symbolic_norm[1]

    def search_symbolic(self, symbolic: np.ndarray, k: int,
                        exclude_tracks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and track ids of the k indexed tracks nearest to one track's symbolic features
        (N_SYMBOLIC,), each feature standardised over the indexed tracks; exact."""
        dist = np.sqrt(((self._symbolic_z - self._standardise(symbolic)) ** 2).sum(axis=1))
        rows = self._nearest_rows(dist, k, exclude_tracks)
        return dist[rows], self.tracks["track_id"].to_numpy()[rows]

    def _nearest_rows(self, farness: np.ndarray, k: int, exclude_tracks: np.ndarray | None) -> np.ndarray:
        """Tracks-table rows of the k tracks with the smallest `farness` (one value per row),
        the excluded track ids skipped; ties keep table order."""
        rows = np.arange(len(self.tracks))
        if exclude_tracks is not None and len(exclude_tracks):
            rows = rows[~np.isin(self.tracks["track_id"].to_numpy(), exclude_tracks)]
        return rows[np.argsort(farness[rows], kind="stable")[:k]]


def write_store(directory: Path, store: IndexStore) -> dict[str, Any]:
    """Write every data file of a store except model.pt (already there), then the manifest with
    every file's checksum; return the manifest written."""
    import faiss

    assert store.centroids is not None and store.track_vectors is not None and store.probe is not None
    np.save(directory / "vectors.npy", store.vectors.astype(np.float16), allow_pickle=False)
    np.save(directory / "spectral_vectors.npy", store.spectral_vectors.astype(np.float16), allow_pickle=False)
    store.clips.to_parquet(directory / "clips.parquet", index=False)
    store.tracks.to_parquet(directory / "tracks.parquet", index=False)
    np.save(directory / "spectral_norm.npy", store.spectral_norm.as_array(), allow_pickle=False)
    np.save(directory / "symbolic_norm.npy", store.symbolic_norm.astype(np.float32), allow_pickle=False)
    faiss.write_index(store.index, str(directory / "index.faiss"))
    faiss.write_index(store.spectral_index, str(directory / "spectral.faiss"))
    np.save(directory / "centroids.npy", store.centroids.astype(np.float32), allow_pickle=False)
    np.save(directory / "track_vectors.npy", store.track_vectors.astype(np.float32), allow_pickle=False)
    np.save(directory / "linear_probe.npy", store.probe.as_array(), allow_pickle=False)
    np.save(directory / SYMBOLIC_PROBE_FILE, store.symbolic_probe.as_array(), allow_pickle=False)
    if store.background is not None:
        store.background.save(directory / BACKGROUND_FILE)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **READERS,
                **store.manifest.as_dict()}
    names = (*DATA_FILES, SYMBOLIC_PROBE_FILE, *([BACKGROUND_FILE] if store.background is not None else []))
    manifest["files"] = {name: file_sha256(directory / name) for name in names}
    if isinstance(manifest.get("model"), dict):
        manifest["model"] = {**manifest["model"], "sha256": manifest["files"]["model.pt"]}
    write_json(directory / "manifest.json", manifest)
    return manifest


def publish(target: Path, store: IndexStore, put_model: Callable[[Path], object]) -> None:
    """Write a store and its model (put_model writes the checkpoint to the path it is given) as the
    index directory `target`, swapped in whole; on any failure, or a kill, target is left as it was."""
    def fill(staging: Path) -> None:
        put_model(staging / "model.pt")
        write_store(staging, store)

    replace_directory(target, fill)


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """IndexCorrupt unless every data file is there with the checksum the manifest records."""
    files = manifest.get("files", {})
    for name in (*DATA_FILES, *(f for f in (SYMBOLIC_PROBE_FILE, BACKGROUND_FILE) if f in files)):
        f = path / name
        if not f.exists():
            raise IndexCorrupt(f"{path}: {name} is missing")
        if files.get(name) != file_sha256(f):
            raise IndexCorrupt(f"{path}: {name} does not match its checksum in manifest.json "
                               "(damaged or edited); rebuild the index")


def load_store(path: str | Path, verify: bool = True) -> IndexStore:
    """Load and check an index directory; never writes to it. IndexNotFound, IndexMismatch (another
    format version: rebuild) or IndexCorrupt."""
    import faiss

    path = Path(path)
    raw = read_manifest_file(path)
    manifest = Manifest.from_dict(raw, str(path / "manifest.json"))
    if verify:
        verify_files(path, raw)
    try:
        def npy(name: str) -> np.ndarray:
            return np.load(path / name, allow_pickle=False)

        clips = pd.read_parquet(path / "clips.parquet")
        tracks = pd.read_parquet(path / "tracks.parquet")
        # the raw vectors are memory-mapped: a query never reads them (FAISS and the derived arrays
        # answer it), an edit reads them once
        vectors = np.load(path / "vectors.npy", mmap_mode="r", allow_pickle=False)
        spectral = np.load(path / "spectral_vectors.npy", mmap_mode="r", allow_pickle=False)
        spectral_norm = SpectralNorm.from_array(npy("spectral_norm.npy"))
        symbolic_norm, centroids, track_vectors = npy("symbolic_norm.npy"), npy("centroids.npy"), npy(
            "track_vectors.npy")
        probe = LinearProbe.from_array(npy("linear_probe.npy"))
        symbolic_probe = (LinearProbe.from_array(npy(SYMBOLIC_PROBE_FILE))
                          if SYMBOLIC_PROBE_FILE in raw.get("files", {}) else None)
        index = faiss.read_index(str(path / "index.faiss"))
        spectral_index = faiss.read_index(str(path / "spectral.faiss"))
        background = Background.load(path / BACKGROUND_FILE) if manifest.settings.novelty.background else None
    except Exception as e:
        raise IndexCorrupt(f"{path}: cannot read index files ({type(e).__name__}: {e})") from e
    d = index.d
    checks = [
        (index.ntotal == spectral_index.ntotal == len(clips) == len(vectors) == len(spectral),
         f"{index.ntotal} vectors, {len(vectors)} raw vectors, {spectral_index.ntotal} spectral vectors "
         f"but {len(clips)} clip rows"),
        (vectors.shape[1:] == (d,), "vectors.npy does not match index.faiss"),
        (spectral_norm.mean.shape == (spectral_index.d,), "spectral_norm.npy does not match spectral.faiss"),
        (centroids.shape == (len(manifest.composers), d), "centroids do not match composers and vector size"),
        (track_vectors.shape == (len(tracks), d), "track_vectors.npy does not match the tracks and vector size"),
        (symbolic_norm.shape == (2, N_SYMBOLIC), f"symbolic_norm.npy is not 2 x {N_SYMBOLIC}"),
        (not len(tracks) or ("symbolic" in tracks and all(len(v) == N_SYMBOLIC for v in tracks["symbolic"]))
         and all(len(v) == N_SLOTS for v in tracks["sketch"])
         and list(tracks.columns) == list(TRACK_COLUMNS), "tracks.parquet does not have the columns of this version"),
        (probe.weights.shape == centroids.shape, "linear_probe.npy does not match composers and vector size"),
        (symbolic_probe is None or symbolic_probe.weights.shape == (len(manifest.composers), N_SYMBOLIC),
         f"{SYMBOLIC_PROBE_FILE} does not match composers and symbolic features"),
        (background is None or background.vectors.shape[1:] == (d,), "background.npz does not match the vector size"),
    ]
    for ok, what in checks:
        if not ok:
            raise IndexCorrupt(f"{path}: {what}")
    return IndexStore(manifest, clips, tracks, vectors, spectral, spectral_norm, symbolic_norm, index,
                      spectral_index, centroids, track_vectors, probe, symbolic_probe, path, background)
