"""The service behind `musicid serve`: the index loaded once, and what each endpoint does.

Everything here runs on the worker threads, never on the event loop (app.py puts it there),
and is thread-safe: a query works on the engine it started with; an edit swaps in a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import wave
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import DataDirError, IndexMismatch, ReadError, RenderError
from .embedding_map import EmbeddingMap

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one MIDI file; real scores are KBs
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # one request body, all files together
MAX_AUDIO_SECONDS = 60.0  # longest stretch one audio request renders
UPLOAD_CACHE_BYTES = 64 * 1024 * 1024  # uploaded queries kept for their audio
MAP_POINTS = 5000  # at most this many tracks drawn on the embedding map
QUEUE_PER_WORKER = 8  # requests waiting per worker thread before 503
T = TypeVar("T")


@dataclass(frozen=True)
class ServeConfig:
    """How the service runs. Times in seconds; sizes in bytes."""

    index_dir: Path
    token: str | None = None  # editing is allowed only with this bearer token
    workers: int = 0  # threads serving CPU-bound work; 0: one per core
    query_timeout: float = 60.0  # one query (read, featurise, embed, score)
    render_timeout: float = 20.0  # one audio stretch
    edit_timeout: float = 600.0  # one index add/remove
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    sources_dir: Path | None = None  # MIDI files of tracks added here; default <cache>/serve-midi
    cache_dir: Path | None = None  # feature cache for index add; default cache.default_cache_dir()


class HttpError(Exception):
    """A request that fails with this status and one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def safe_name(name: str | None) -> str:
    """A display and file name from an upload's client-given name: its last part only, odd characters
    replaced, at most 120 bytes of UTF-8 (a file name may have 255); never a path."""
    base = re.sub(r"[^\w.\- ]", "_", Path((name or "").replace("\\", "/")).name).lstrip(". ")
    return base.encode()[:120].decode(errors="ignore") or "upload.mid"


def check_upload(data: bytes, name: str, limit: int) -> None:
    """413 over the size limit, 422 when empty, 415 when neither a MIDI file nor a score: a MIDI
    name (or none) must hold MIDI bytes; a score's name (.musicxml, .xml, .mxl, .krn) is read by the
    score reader, which names its own faults (422)."""
    from ..io.reader import is_score_name

    if len(data) > limit:
        raise HttpError(413, f"{name}: over the {limit / 1048576:.0f} MB upload limit")
    if not data:
        raise HttpError(422, f"{name}: empty file")
    if is_score_name(name):
        return
    if not (data.startswith(b"MThd") or data.startswith(b"RIFF") and data[8:12] == b"RMID"):
        raise HttpError(415, f"{name}: not a MIDI file (no MThd header)")


def stored_name(name: str) -> str:
    """The name an upload is read under: its own where its suffix says MIDI or score, else name.mid."""
    from ..io.reader import is_music_file

    return name if is_music_file(Path(name)) else f"{name}.mid"


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio (samples,) in -1..1 as a 16-bit PCM WAV file's bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def clip_window(midi: Any, offset: float, seconds: float) -> Any:
    """The stretch [offset, offset + seconds) of a midi.Midi as a Midi starting at 0 s: controllers,
    programs and bends set before it are replayed at 0 s, notes still sounding at `offset` restart
    at 0 s. Raises HttpError 416 when offset is past the end of the piece."""
    if offset >= midi.duration:
        raise HttpError(416, f"offset {offset:g} s is past the end of the piece ({midi.duration:.1f} s)")
    from ..io.smf import NOTE_OFF, NOTE_ON

    setup: list[tuple[float, int, int, int, int]] = []
    sounding: dict[tuple[int, int], int] = {}
    window: list[tuple[float, int, int, int, int]] = []
    for t, kind, ch, a, b in midi.events:
        if t < offset:
            if kind == NOTE_ON:
                sounding[(ch, a)] = b
            elif kind == NOTE_OFF:
                sounding.pop((ch, a), None)
            else:
                setup.append((0.0, kind, ch, a, b))
        elif t < offset + seconds:
            window.append((t - offset, kind, ch, a, b))
        else:
            break
    held = [(0.0, NOTE_ON, ch, pitch, vel) for (ch, pitch), vel in sounding.items()]
    return replace(midi, events=tuple(setup + held + window), duration=min(seconds, midi.duration - offset))


class RecordingModel(torch.nn.Module):
    """The embedder, passed through, keeping on each thread what it returned: the page gets a query's
    clip vectors from the one embedding QueryEngine.score makes, instead of embedding twice."""

    def __init__(self, inner: Any):
        super().__init__()
        self.inner = inner
        self.dims = inner.dims
        self.local = threading.local()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, rows, frames) clips -> (n, embed_dim) unit vectors, as the inner model; kept for `take`."""
        out: torch.Tensor = self.inner(x)
        self.local.outputs = [*getattr(self.local, "outputs", []), out]
        return out

    def take(self) -> np.ndarray:
        """(n_clips, embed_dim) float32: everything embedded on this thread since the last take."""
        outputs, self.local.outputs = getattr(self.local, "outputs", []), []
        if not outputs:
            return np.zeros((0, self.dims.embed_dim), np.float32)
        return torch.cat(outputs).numpy().astype(np.float32)


@dataclass
class Loaded:
    """One version of the index, with what the service derives from it."""

    engine: Any  # query.QueryEngine
    map: EmbeddingMap
    track_of_path: dict[str, int]


class Service:
    """The loaded index and what each endpoint does, off the event loop (thread-safe)."""

    def __init__(self, config: ServeConfig):
        from ..features.cache import default_cache_dir
        from ..features.prepare import default_workers

        self.config = config
        self.workers = config.workers or default_workers()
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="musicid-serve")
        self.pending = 0
        self.sources = config.sources_dir or (config.cache_dir or default_cache_dir()) / "serve-midi"
        self._uploads: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._uploads_lock = threading.Lock()
        self._edit_lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="musicid-serve-"))  # 0700, this process's own
        self.state = self._load()

    def _load(self) -> Loaded:
        from ..recognize.query import QueryEngine

        opened = QueryEngine.open(self.config.index_dir)
        engine = replace(opened, model=RecordingModel(opened.model))
        tracks = engine.store.tracks
        assert engine.store.track_vectors is not None  # derived on load
        return Loaded(engine, EmbeddingMap(engine.store.track_vectors),
                      {str(p): int(t) for p, t in zip(tracks["path"], tracks["track_id"], strict=True)})

    def close(self) -> None:
        """Stop taking work and remove this process's temporary folder."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        """fn() on the worker pool, 503 when too many wait, 504 past `timeout` seconds (the thread
        then finishes on its own bound: every render and query has one)."""
        if self.pending >= self.workers * QUEUE_PER_WORKER:
            raise HttpError(503, f"busy: {self.pending} requests in progress or waiting; retry shortly")
        self.pending += 1
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.pool.submit(fn)), timeout)
        except TimeoutError:
            raise HttpError(504, f"gave up after {timeout:g} s") from None
        finally:
            self.pending -= 1

    # queries

    def query(self, data: bytes, name: str, k: int, explain: bool) -> dict[str, Any]:
        """One uploaded file's result (TrackResult.as_dict()), with `explain` for the page."""
        state = self.state
        result, prepared, vectors = self._score(state, data, name, k)
        out = result.as_dict()
        if explain:
            out["explain"] = self._explain(state, data, name, prepared, vectors, result, k)
        return out

    def _score(self, state: Loaded, data: bytes, name: str, k: int) -> tuple[Any, Any, np.ndarray]:
        """One upload scored by state's engine: its TrackResult, its prepared track and its clips'
        vectors (n_clips, d)."""
        from ..features.prepare import prepare_track

        engine = state.engine
        check_upload(data, name, self.config.max_upload_bytes)
        settings = replace(engine.render_settings, timeout_seconds=self.config.query_timeout)
        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            path = folder / stored_name(name)  # a folder of our own; the upload's last part, sanitised
            path.write_bytes(data)
            prepared = prepare_track(path, settings, engine.features)
        finally:
            path.unlink(missing_ok=True)
            folder.rmdir()
        engine.model.take()  # nothing left over from an earlier call that failed on this thread
        result = engine.score(prepared, name, k)
        return result, prepared, engine.model.take()

    def _explain(self, state: Loaded, data: bytes, name: str, prepared: Any, vectors: np.ndarray, result: Any,
                 k: int) -> dict[str, Any]:
        """What the page needs beyond the result: where the upload's audio is, which of its clips
        (vectors: (n_clips, d), as embedded for the result) lies nearest each neighbour, and the
        track's place on the embedding map."""
        from ..vectors import mean_vector

        store = state.engine.store
        dist, _, tids = store.search_clips(vectors, k)
        qid = hashlib.sha256(data).hexdigest()[:16]
        self._remember(qid, name, data)
        neighbours = []
        for nb in result.neighbours:
            tid = state.track_of_path[nb.path]
            mine = np.where(tids == tid, dist, np.inf)
            row = int(np.unravel_index(np.argmin(mine), mine.shape)[0])
            neighbours.append({"track_id": tid, "offset": nb.offset, "query_offset": prepared.offsets[row]})
        return {"upload": qid, "clip_seconds": state.engine.features.clip_seconds,
                "offsets": prepared.offsets, "neighbours": neighbours,
                "map": state.map.place(mean_vector(vectors))}

    def _remember(self, qid: str, name: str, data: bytes) -> None:
        with self._uploads_lock:
            self._uploads[qid] = (name, data)
            self._uploads.move_to_end(qid)
            while sum(len(d) for _, d in self._uploads.values()) > UPLOAD_CACHE_BYTES and len(self._uploads) > 1:
                self._uploads.popitem(last=False)

    def _score_many(self, state: Loaded, files: Sequence[tuple[str, bytes]]) -> tuple[list[Any], list[dict[str, str]]]:
        """Uploads (name, bytes) scored by state's engine: their TrackResults, and {path, reason} for
        each that could not be read."""
        results, failures = [], []
        for name, data in files:
            try:
                results.append(self._score(state, data, name, 10)[0])
            except (HttpError, ReadError, RenderError) as e:
                failures.append({"path": name, "reason": str(e).removeprefix(f"{name}: ")})
        return results, failures

    def report(self, files: list[tuple[str, bytes]], novel: bool, judge: str = "fused",
               reference: Sequence[tuple[str, str, bytes]] = ()) -> dict[str, Any]:
        """Several files: rows as `musicid report --json` (ranked by novelty when `novel`); judge
        "batch" judges them as one batch, as `report --judge batch` (recognize/batch_judge.py), and
        adds "judgement". reference: (composer, name, bytes) of attributed files from the uploads'
        own source; those by indexed composers place the threshold, as `report --reference`.
        HttpError 409 where the index cannot judge a batch (built before 0.5.0); 422 where the
        reference holds too few readable files by indexed composers."""
        from ..recognize.batch_judge import judge_report
        from ..recognize.query import order_results

        state = self.state  # one engine for the whole batch, even if an edit swaps it meanwhile
        results, failures = self._score_many(state, files)
        indexed = set(state.engine.store.composers)
        # unreadable reference files are left out, as report --reference leaves them
        known, _ = self._score_many(state, [(name, data) for composer, name, data in reference if composer in indexed])
        if reference and not known:
            raise HttpError(422, "no readable reference file by an indexed composer "
                                 f"({', '.join(sorted(indexed))})")
        judgement = None
        if (judge == "batch" or known) and results:
            try:
                results, judgement = judge_report(results, state.engine.store.manifest, judge == "batch", known)
            except IndexMismatch as e:
                raise HttpError(409, str(e)) from None
            except DataDirError as e:
                raise HttpError(422, str(e)) from None
        return {"results": [r.as_dict() for r in order_results(results, novel)], "failures": failures,
                **({"judgement": judgement.as_dict()} if judgement else {})}

    # audio

    def track_audio(self, track_id: int, offset: float, seconds: float) -> bytes:
        store = self.state.engine.store
        rows = store.tracks[store.tracks["track_id"] == track_id]
        if rows.empty:
            raise HttpError(404, f"no track {track_id} in the index")
        path, sha = str(rows.iloc[0]["path"]), str(rows.iloc[0]["sha256"])
        data_dir = Path(str(store.manifest.about.get("data_dir", "")))
        for candidate in (self.sources / f"{sha}{Path(stored_name(path)).suffix.lower()}", data_dir / path):
            try:
                data = candidate.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == sha:
                return self._render(data, Path(path).name, offset, seconds)
        raise HttpError(404, f"track {track_id}: its file is no longer at {data_dir / path}")

    def upload_audio(self, qid: str, offset: float, seconds: float) -> bytes:
        with self._uploads_lock:
            hit = self._uploads.get(qid)
        if hit is None:
            raise HttpError(404, f"no upload {qid} here (uploads are kept in memory; query it again)")
        return self._render(hit[1], hit[0], offset, seconds)

    def _render(self, data: bytes, name: str, offset: float, seconds: float) -> bytes:
        from ..io.reader import parse_music
        from ..io.render import render

        if not (offset >= 0 and 0 < seconds <= MAX_AUDIO_SECONDS):
            raise HttpError(422, f"offset must be >= 0 and seconds in (0, {MAX_AUDIO_SECONDS:g}]")
        settings = replace(self.state.engine.render_settings, timeout_seconds=self.config.render_timeout)
        audio = render(clip_window(parse_music(data, name), offset, seconds), settings, name, max_seconds=seconds)
        return wav_bytes(audio, settings.sample_rate)

    # editing

    def add(self, composer: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        """Add uploaded files as tracks by `composer` (index add); the next query sees them."""
        from ..build.edit import add_tracks
        from ..io.reader import parse_music

        if not re.fullmatch(r"[^\W_][\w .'-]{0,79}", composer):
            raise HttpError(422, f"composer name '{composer[:80]}' must be letters, digits, spaces, . ' or -")
        files = [(stored_name(name), data) for name, data in files]
        for name, data in files:
            check_upload(data, name, self.config.max_upload_bytes)
            parse_music(data, name)  # a bad file is the request's error, before the index is touched
        with self._edit_lock, tempfile.TemporaryDirectory(dir=self._tmp) as tmp:
            folder = Path(tmp) / composer
            folder.mkdir()
            for name, data in files:
                (folder / name).write_bytes(data)
            try:
                rep = add_tracks(self.config.index_dir, tmp, self.config.cache_dir, workers=1)
            except DataDirError as e:
                raise HttpError(422, str(e).replace(tmp, "upload")) from e
            self.sources.mkdir(parents=True, exist_ok=True)
            for name, data in files:  # by content, so a track's audio is found whatever it is called
                target = self.sources / f"{hashlib.sha256(data).hexdigest()}{Path(name).suffix.lower()}"
                part = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                part.write_bytes(data)
                os.replace(part, target)
            self.state = self._load()
        return asdict(rep)

    def remove(self, track_id: int) -> dict[str, Any]:
        """Remove one track by id (index remove --track); the next query no longer finds it."""
        from ..build.edit import remove_tracks

        with self._edit_lock:
            paths = {t: p for p, t in self.state.track_of_path.items()}
            if track_id not in paths:
                raise HttpError(404, f"no track {track_id} in the index")
            try:
                rep = remove_tracks(self.config.index_dir, track=paths[track_id])
            except DataDirError as e:
                raise HttpError(409, str(e)) from e
            self.state = self._load()
        return asdict(rep)
