"""The index directory: FAISS vectors, Parquet metadata, model, and a manifest that checks them.

    INDEX_DIR/
      manifest.json   what is inside: settings, composers, threshold, sha256 of every file
      index.faiss     clip vectors (unit length, inner product), ids = clips.clip_id
      clips.parquet   clip_id, track_id, offset (s)
      tracks.parquet  track_id, path, composer, work, split, fingerprint, sha256, ..., score_stats
                      (the notes' statistics, descriptors.py: the score view of novelty)
      centroids.npy   one unit vector per composer, in manifest["composers"] order
      sound.faiss     each clip in the sound view (novelty.py), same ids as index.faiss
      sound_norm.npy  the sound view's standardisation: mean and std per dimension
      track_vectors.npy  each track's mean clip vector, unit length, in tracks.parquet row order
      head.npy        the linear composer head (classifier.py): weights and bias per composer
      model.pt        the embedder checkpoint (weights only)

A directory is written whole into a staging folder beside the target and then
swapped in with one atomic rename, so a crash leaves the old index as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .classifier import LinearHead
from .descriptors import N_SCORE_STATS, standardiser
from .errors import IndexCorrupt, IndexMismatch, IndexNotFound
from .midi import READER_VERSION
from .novelty import SoundNorm

FORMAT = "musicid-index"
FORMAT_VERSION = 4  # 4: tracks carry score_stats
DATA_FILES = ("index.faiss", "clips.parquet", "tracks.parquet", "centroids.npy", "sound.faiss", "sound_norm.npy",
              "track_vectors.npy", "head.npy", "model.pt")


def default_index_dir() -> Path:
    return Path(os.environ.get("MUSICID_INDEX", "musicid-index"))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


EXACT_BELOW = 100_000  # vectors: exact search takes <= 2 ms a clip below this (docs/PERFORMANCE.md)
PQ_ABOVE = 20_000_000  # vectors: above this, IVF-Flat's ~540 B a vector (10.8 GB) no longer fits a node
HNSW_M = 32
HNSW_EF_SEARCH = 64
IVF_NPROBE = 32
INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")


def choose_index_kind(n: int) -> str:
    """Exact search while it is cheap; then IVF, which at 1M vectors kept recall@10 0.995 at 0.46 ms
    (HNSW: 0.966 at 0.24 ms, 3x the build time, 1.5x the memory, and no removal); then IVF-PQ,
    which compresses each vector to d/2 bytes where memory demands it (docs/SCALE.md)."""
    return "flat" if n < EXACT_BELOW else "ivf" if n <= PQ_ABOVE else "ivfpq"


def _nlist(n: int) -> int:
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


def empty_index(d: int, kind: str, training: np.ndarray | None = None) -> Any:
    """An empty IndexIDMap2 of one kind, its coarse quantizer (and codebooks) trained on a sample
    of `training` where the kind needs it. Shards made from one trained index merge with
    `merge_shards`."""
    import faiss

    inner: Any
    if kind == "flat":
        inner = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind in ("ivf", "ivfpq"):
        if training is None or not len(training):
            raise ValueError(f"an {kind} index needs vectors to train on")
        nlist = _nlist(len(training))
        if kind == "ivf":
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = max(1, d // 2)  # 2 dimensions a byte: 64 B for 128-d, recall@10 ~0.9 (docs/SCALE.md)
            while d % m:
                m -= 1
            inner = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = training[np.random.default_rng(0).choice(len(training), min(len(training), 256 * nlist),
                                                          replace=False)]
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        inner.nprobe = min(IVF_NPROBE, nlist)
        inner.make_direct_map()
    else:
        raise ValueError(f"unknown index kind {kind!r} ({', '.join(INDEX_KINDS)}, auto)")
    return faiss.IndexIDMap2(inner)


def make_faiss_index(vectors: np.ndarray, ids: np.ndarray, kind: str = "auto") -> Any:
    """Inner-product search over unit vectors with explicit int64 ids.

    kind: "flat" (exact), "hnsw" (graph, no training), "ivf" (inverted lists trained on a
    sample), "ivfpq" (the same with vectors compressed to d/2 bytes), or "auto": exact below
    EXACT_BELOW vectors, IVF up to PQ_ABOVE, IVF-PQ above.
    """
    kind = choose_index_kind(len(vectors)) if kind == "auto" else kind
    index = empty_index(vectors.shape[1], kind, vectors if kind in ("ivf", "ivfpq") else None)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def merge_shards(shards: list[Any]) -> Any:
    """One IVF index from shards that each started as a copy of the same trained empty index
    (`faiss.clone_index(empty_index(...))`) and had their own vectors added, on other workers
    or machines: the inverted lists are moved into the first shard, with their ids."""
    import faiss

    if not shards:
        raise ValueError("no shards to merge")
    first = shards[0]
    inner = faiss.extract_index_ivf(first.index)
    for shard in shards:  # IVF cannot merge lists that keep a direct map; it is rebuilt after
        faiss.extract_index_ivf(shard.index).set_direct_map_type(faiss.DirectMap.NoMap)  # type: ignore[attr-defined]
    id_map = [faiss.vector_to_array(first.id_map)]
    for other in shards[1:]:
        # the other's positions continue after ours; its external ids follow ours in the id map
        inner.merge_from(faiss.extract_index_ivf(other.index), inner.ntotal)
        id_map.append(faiss.vector_to_array(other.id_map))
    faiss.copy_array_to_vector(np.concatenate(id_map).astype(np.int64), first.id_map)
    first.ntotal = inner.ntotal
    inner.make_direct_map()
    first.construct_rev_map()
    return first


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


def ip_to_distance(ip: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their inner product (0 .. 2)."""
    return np.sqrt(np.clip(2.0 - 2.0 * ip, 0.0, 4.0))


@dataclass
class IndexStore:
    """An index in memory: what query needs, nothing loaded twice."""

    index: Any  # faiss.Index
    clips: pd.DataFrame
    tracks: pd.DataFrame
    centroids: np.ndarray
    manifest: dict[str, Any]
    sound_index: Any  # faiss.Index of the clips' sound vectors, same ids as `index`
    sound_norm: SoundNorm
    track_vectors: np.ndarray  # (n_tracks, d) unit mean clip vector per track, tracks-table row order
    head: LinearHead  # fitted on the indexed clip vectors, rows in manifest["composers"] order
    path: Path | None = None
    _clip_track: np.ndarray = field(init=False, repr=False)
    _clip_offset: np.ndarray = field(init=False, repr=False)
    _track_row: dict[int, int] = field(init=False, repr=False)
    _score_z: np.ndarray = field(init=False, repr=False)  # indexed tracks' standardised score statistics
    _score_norm: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # dense lookups built once per load, so that queries never re-index the tables
        n = int(self.clips["clip_id"].max()) + 1 if len(self.clips) else 0
        ids = self.clips["clip_id"].to_numpy()
        self._clip_track = np.full(n, -1, dtype=np.int64)
        self._clip_track[ids] = self.clips["track_id"].to_numpy()
        self._clip_offset = np.zeros(n, dtype=np.float64)
        self._clip_offset[ids] = self.clips["offset"].to_numpy()
        self._track_row = {int(t): i for i, t in enumerate(self.tracks["track_id"])} if len(self.tracks) else {}
        scores = self.score_stats
        norm = self.manifest.get("novelty", {}).get("score_norm")
        self._score_norm = ((np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)) if norm
                            else standardiser(scores))
        self._score_z = ((scores - self._score_norm[0]) / self._score_norm[1]).astype(np.float32)

    @property
    def score_stats(self) -> np.ndarray:
        """(n_tracks, N_SCORE_STATS) each indexed track's score statistics, tracks-table row order."""
        if not len(self.tracks):
            return np.zeros((0, N_SCORE_STATS), np.float32)
        return np.stack(self.tracks["score_stats"].to_numpy()).astype(np.float32)

    @property
    def composers(self) -> list[str]:
        return list(self.manifest["composers"])

    @property
    def novelty_view(self) -> str:
        """Which view the novelty score is measured in: "track", "embedding" or "sound"."""
        return str(self.manifest["novelty"].get("view", "embedding"))

    @property
    def naming(self) -> str:
        """How a track's composer is chosen: "vote" (k-NN over clips) or "head" (classifier.py)."""
        return str(self.manifest.get("naming", "vote"))

    @property
    def threshold(self) -> float:
        return float(self.manifest["novelty"]["threshold"])

    def track_of(self, clip_ids: np.ndarray) -> np.ndarray:
        out = np.full(clip_ids.shape, -1, dtype=np.int64)
        ok = (clip_ids >= 0) & (clip_ids < len(self._clip_track))
        out[ok] = self._clip_track[clip_ids[ok]]
        return out

    def clip_offset(self, clip_id: int) -> float:
        return float(self._clip_offset[clip_id])

    def track_field(self, track_id: int, column: str) -> Any:
        """One value of the tracks table, by track id."""
        return self.tracks[column].iat[self._track_row[int(track_id)]]

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and clip ids of the k nearest indexed clips to each vector."""
        return _search(self.index, vectors, k)

    def search_sound(self, stats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The same, in the sound view, for clips given by their statistics (novelty.clip_stats)."""
        return _search(self.sound_index, self.sound_norm.vectors(stats), k)

    def search_tracks(self, track_vector: np.ndarray, k: int,
                      exclude_tracks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and track ids of the k indexed tracks whose mean vectors are nearest to one
        track's (unit) mean vector; exact (one vector per track, not per clip)."""
        ip = self.track_vectors @ track_vector.astype(np.float32)
        rows = self._nearest_rows(-ip, k, exclude_tracks)
        return ip_to_distance(ip[rows]), self.tracks["track_id"].to_numpy()[rows]

    def search_scores(self, score: np.ndarray, k: int,
                      exclude_tracks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and track ids of the k indexed tracks nearest to one track's score statistics
        (descriptors.py), each statistic standardised over the indexed tracks; exact."""
        z = (np.asarray(score, np.float32) - self._score_norm[0]) / self._score_norm[1]
        dist = np.sqrt(((self._score_z - z) ** 2).sum(axis=1))
        rows = self._nearest_rows(dist, k, exclude_tracks)
        return dist[rows], self.tracks["track_id"].to_numpy()[rows]

    def _nearest_rows(self, farness: np.ndarray, k: int, exclude_tracks: np.ndarray | None) -> np.ndarray:
        """Tracks-table rows of the k tracks with the smallest `farness` (one value per row),
        the excluded track ids skipped; ties keep table order."""
        rows = np.arange(len(self.tracks))
        if exclude_tracks is not None and len(exclude_tracks):
            rows = rows[~np.isin(self.tracks["track_id"].to_numpy(), exclude_tracks)]
        return rows[np.argsort(farness[rows], kind="stable")[:k]]


def _search(index: Any, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ip, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, index.ntotal))
    return ip_to_distance(ip), ids


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def commit_directory(staging: Path, target: Path) -> None:
    """Put a fully written staging directory at target, replacing any old one atomically."""
    for f in staging.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(staging)
    if not target.exists():
        os.replace(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old index
    else:  # no renameat2: a brief window in which target is absent but target.old exists
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_dir(target: Path) -> Path:
    """A fresh folder beside target to write a new index into; sweeps ones left by killed builds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.staging-"
    for old in target.parent.glob(prefix + "*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=target.parent))


def write_store(staging: Path, store: IndexStore) -> dict[str, Any]:
    """Write every data file except model.pt (already there) and the manifest with checksums."""
    import faiss

    faiss.write_index(store.index, str(staging / "index.faiss"))
    faiss.write_index(store.sound_index, str(staging / "sound.faiss"))
    store.clips.to_parquet(staging / "clips.parquet", index=False)
    store.tracks.to_parquet(staging / "tracks.parquet", index=False)
    np.save(staging / "centroids.npy", store.centroids.astype(np.float32), allow_pickle=False)
    np.save(staging / "sound_norm.npy", store.sound_norm.as_array(), allow_pickle=False)
    np.save(staging / "track_vectors.npy", store.track_vectors.astype(np.float32), allow_pickle=False)
    np.save(staging / "head.npy", store.head.as_array(), allow_pickle=False)
    manifest = dict(store.manifest)
    manifest["format"] = FORMAT
    manifest["format_version"] = FORMAT_VERSION
    manifest["midi_reader"] = READER_VERSION
    manifest["files"] = {name: file_sha256(staging / name) for name in DATA_FILES}
    if isinstance(manifest.get("model"), dict):
        manifest["model"] = {**manifest["model"], "sha256": manifest["files"]["model.pt"]}
    _write_json(staging / "manifest.json", manifest)
    return manifest


def publish(target: Path, store: IndexStore, put_model: Callable[[Path], object]) -> dict[str, Any]:
    """Write a store and its model (put_model writes the checkpoint to the path it is given)
    into a staging folder beside target, then swap it in whole. On any failure, or a kill,
    target is left as it was."""
    staging = staging_dir(target)
    try:
        put_model(staging / "model.pt")
        manifest = write_store(staging, store)
        commit_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def store_vectors(store: IndexStore, view: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) held by one of the store's IndexIDMap2s (flat, HNSW or IVF), in insertion
    order: the embeddings, or with view="sound" the sound vectors."""
    import faiss

    index = store.sound_index if view == "sound" else store.index
    inner = faiss.downcast_index(index.index)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    return ids, inner.reconstruct_n(0, index.ntotal)


def read_manifest(path: Path) -> dict[str, Any]:
    mf = path / "manifest.json"
    if not path.exists():
        raise IndexNotFound(f"no index at {path} (build one with: musicid index build DATA_DIR --out {path})")
    if not mf.exists():
        raise IndexNotFound(f"{path} is not a musicid index (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{mf}: unreadable manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{mf}: not a musicid index manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatch(f"{path}: index format {manifest.get('format_version')}, "
                            f"this musicid reads {FORMAT_VERSION}; rebuild the index")
    reader = manifest.get("midi_reader", 1)  # its fingerprints and features would not match ours
    if reader != READER_VERSION:
        raise IndexMismatch(f"{path}: built with an {'older' if reader < READER_VERSION else 'newer'} MIDI reader; "
                            "rebuild with musicid index build")
    return manifest


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files", {})
    for name in DATA_FILES:
        f = path / name
        if not f.exists():
            raise IndexCorrupt(f"{path}: {name} is missing")
        if files.get(name) != file_sha256(f):
            raise IndexCorrupt(f"{path}: {name} does not match its checksum in manifest.json "
                               "(damaged or edited); rebuild the index")


def load_store(path: str | Path, verify: bool = True) -> IndexStore:
    """Load and check an index directory; never writes to it."""
    import faiss

    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    try:
        index = faiss.read_index(str(path / "index.faiss"))
        sound_index = faiss.read_index(str(path / "sound.faiss"))
        sound_norm = SoundNorm.from_array(np.load(path / "sound_norm.npy", allow_pickle=False))
        clips = pd.read_parquet(path / "clips.parquet")
        tracks = pd.read_parquet(path / "tracks.parquet")
        centroids = np.load(path / "centroids.npy", allow_pickle=False)
        track_vectors = np.load(path / "track_vectors.npy", allow_pickle=False)
        head = LinearHead.from_array(np.load(path / "head.npy", allow_pickle=False))
    except Exception as e:
        raise IndexCorrupt(f"{path}: cannot read index files ({type(e).__name__}: {e})") from e
    if not index.ntotal == sound_index.ntotal == len(clips):
        raise IndexCorrupt(f"{path}: {index.ntotal} vectors, {sound_index.ntotal} sound vectors "
                           f"but {len(clips)} clip rows")
    if sound_norm.mean.shape != (sound_index.d,):
        raise IndexCorrupt(f"{path}: sound_norm.npy does not match sound.faiss")
    if centroids.shape != (len(manifest["composers"]), index.d):
        raise IndexCorrupt(f"{path}: centroids do not match composers and vector size")
    if track_vectors.shape != (len(tracks), index.d):
        raise IndexCorrupt(f"{path}: track_vectors.npy does not match the tracks and vector size")
    if len(tracks) and ("score_stats" not in tracks or any(len(v) != N_SCORE_STATS for v in tracks["score_stats"])):
        raise IndexCorrupt(f"{path}: tracks.parquet lacks the score statistics of {N_SCORE_STATS} values")
    if head.weights.shape != centroids.shape:
        raise IndexCorrupt(f"{path}: head.npy does not match composers and vector size")
    return IndexStore(index, clips, tracks, centroids, manifest, sound_index, sound_norm, track_vectors, head, path)
