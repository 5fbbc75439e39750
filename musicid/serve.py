"""`musicid serve`: the index as an HTTP service (FastAPI), and a page at / to hear why.

The index and its embedder are loaded once; every request runs the library's own
query path (prepare.prepare_track + QueryEngine.score), so `POST /query` answers
exactly what `musicid query --json` prints. CPU-bound work runs on a bounded
thread pool (`workers` threads, torch and FAISS release the GIL), never on the
event loop, each call under a wall-clock bound (504 past it; 503 when too many
wait). Uploads are read into memory (at most MAX_UPLOAD_BYTES a file) and only
ever written under names the server chooses: a fresh private temporary folder
for the query, `<sources>/<sha256>.mid` for tracks added to the index.

Audio: `GET /tracks/{id}/audio?offset=S&seconds=N` renders that stretch of an
indexed track with the index's SoundFont (render.render) and returns a 16-bit
mono WAV; the track's MIDI file is found by content (its sha256 in the tracks
table) in the sources folder or at the index's data_dir/path. Uploaded queries
are kept in memory (LRU, UPLOAD_CACHE_BYTES) so that their clips can be heard
the same way: `GET /queries/{id}/audio`.

Editing (`POST /tracks`, `DELETE /tracks/{id}`) calls index_edit, which
replaces the index directory whole; the engine is then reloaded and swapped in,
so the next query sees the edit. Edits need `Authorization: Bearer TOKEN` and
are off unless the server was started with a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import ipaddress
import json
import os
import re
import tempfile
import threading
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from fastapi import FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .errors import DataDirError, IndexNotFound, MidiError, MusicIdError, RenderError, ServeError, SoundFontError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one MIDI file; real scores are KBs
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # one request body, all files together
MAX_AUDIO_SECONDS = 60.0  # longest stretch one audio request renders
UPLOAD_CACHE_BYTES = 64 * 1024 * 1024  # uploaded queries kept for their audio
MAP_POINTS = 5000  # at most this many tracks drawn on the embedding map
QUEUE_PER_WORKER = 8  # requests waiting per worker thread before 503
STATIC_DIR = Path(__file__).parent / "static"
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


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (raise ServeError)."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise ServeError(f"refusing to listen on {host} without --token: anyone who can reach it could use it "
                         "(bind 127.0.0.1, or pass --token)")


def check_port(host: str, port: int) -> None:
    """Raise ServeError, in one line, when host:port cannot be listened on (in use, no such address)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def safe_name(name: str | None) -> str:
    """A display and file name from an upload's client-given name: its last part only, odd characters
    replaced; never a path."""
    return re.sub(r"[^\w.\- ]", "_", Path((name or "").replace("\\", "/")).name).lstrip(". ")[:120] or "upload.mid"


def check_midi_bytes(data: bytes, name: str, limit: int) -> None:
    """413 over the size limit, 422 when empty, 415 when not a MIDI file at all."""
    if len(data) > limit:
        raise HttpError(413, f"{name}: over the {limit / 1048576:.0f} MB upload limit")
    if not data:
        raise HttpError(422, f"{name}: empty file")
    if not data.startswith(b"MThd"):
        raise HttpError(415, f"{name}: not a MIDI file (no MThd header)")


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
    from .midi import NOTE_OFF, NOTE_ON

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


class EmbeddingMap:
    """A 2-D PCA of the indexed tracks' mean vectors, computed once per loaded index (numpy only).

    vectors: (n_tracks, d) unit mean clip vectors; `place` projects another (d,) vector with it."""

    def __init__(self, vectors: np.ndarray):
        x = np.asarray(vectors, dtype=np.float64)
        self.mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        comps = np.zeros((2, x.shape[1]))
        if len(x) >= 2:
            _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
            comps[:len(vt[:2])] = vt[:2]
            comps *= np.where(comps.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # one sign, run to run
        self.components = comps
        self.points = (x - self.mean) @ comps.T  # (n_tracks, 2)

    def place(self, vector: np.ndarray) -> list[float]:
        return [round(float(v), 5) for v in (np.asarray(vector, np.float64) - self.mean) @ self.components.T]


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
        from .cache import default_cache_dir
        from .prepare import default_workers

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
        from .query import QueryEngine

        opened = QueryEngine.open(self.config.index_dir)
        engine = replace(opened, model=RecordingModel(opened.model))
        tracks = engine.store.tracks
        return Loaded(engine, EmbeddingMap(engine.store.track_vectors),
                      {str(p): int(t) for p, t in zip(tracks["path"], tracks["track_id"], strict=True)})

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

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
        from .prepare import prepare_track

        state = self.state
        engine = state.engine
        check_midi_bytes(data, name, self.config.max_upload_bytes)
        settings = replace(engine.render_settings, timeout_seconds=self.config.query_timeout)
        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            path = folder / name  # a folder of our own; the name is the upload's last part, sanitised
            path.write_bytes(data)
            prepared = prepare_track(path, settings, engine.features)
        finally:
            path.unlink(missing_ok=True)
            folder.rmdir()
        engine.model.take()  # nothing left over from an earlier call that failed on this thread
        result = engine.score(prepared, name, k)
        vectors = engine.model.take()
        out = result.as_dict()
        if explain:
            out["explain"] = self._explain(state, data, name, prepared, vectors, result, k)
        return out

    def _explain(self, state: Loaded, data: bytes, name: str, prepared: Any, vectors: np.ndarray, result: Any,
                 k: int) -> dict[str, Any]:
        """What the page needs beyond the result: where the upload's audio is, which of its clips
        (vectors: (n_clips, d), as embedded for the result) lies nearest each neighbour, and the
        track's place on the embedding map."""
        from .query import mean_vector

        store = state.engine.store
        dist, ids = store.search(vectors, k)
        tids = store.track_of(ids)
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

    def report(self, files: list[tuple[str, bytes]], novel: bool) -> dict[str, Any]:
        """Several files: rows as `musicid report --json` (ranked by novelty when `novel`)."""
        results: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        for name, data in files:
            try:
                results.append(self.query(data, name, 10, explain=False))
            except (HttpError, MidiError, RenderError) as e:
                failures.append({"path": name, "reason": str(e).removeprefix(f"{name}: ")})
        # as query.rank_by_novelty and report_folder order TrackResults
        results.sort(key=(lambda r: -r["novelty"]) if novel else (lambda r: r["path"]))
        return {"results": results, "failures": failures}

    # audio

    def track_audio(self, track_id: int, offset: float, seconds: float) -> bytes:
        store = self.state.engine.store
        rows = store.tracks[store.tracks["track_id"] == track_id]
        if rows.empty:
            raise HttpError(404, f"no track {track_id} in the index")
        path, sha = str(rows.iloc[0]["path"]), str(rows.iloc[0]["sha256"])
        data_dir = Path(str(store.manifest.get("data_dir", "")))
        for candidate in (self.sources / f"{sha}.mid", data_dir / path):
            try:
                data = candidate.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == sha:
                return self._render(data, Path(path).name, offset, seconds)
        raise HttpError(404, f"track {track_id}: its MIDI file is no longer at {data_dir / path}")

    def upload_audio(self, qid: str, offset: float, seconds: float) -> bytes:
        with self._uploads_lock:
            hit = self._uploads.get(qid)
        if hit is None:
            raise HttpError(404, f"no upload {qid} here (uploads are kept in memory; query it again)")
        return self._render(hit[1], hit[0], offset, seconds)

    def _render(self, data: bytes, name: str, offset: float, seconds: float) -> bytes:
        from .midi import parse_midi
        from .render import render

        if not (offset >= 0 and 0 < seconds <= MAX_AUDIO_SECONDS):
            raise HttpError(422, f"offset must be >= 0 and seconds in (0, {MAX_AUDIO_SECONDS:g}]")
        settings = replace(self.state.engine.render_settings, timeout_seconds=self.config.render_timeout)
        audio = render(clip_window(parse_midi(data, name), offset, seconds), settings, name, max_seconds=seconds)
        return wav_bytes(audio, settings.sample_rate)

    # editing

    def add(self, composer: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        """Add uploaded files as tracks by `composer` (index add); the next query sees them."""
        from .index_edit import add_tracks
        from .midi import parse_midi

        if not re.fullmatch(r"[^\W_][\w .'-]{0,79}", composer):
            raise HttpError(422, f"composer name '{composer[:80]}' must be letters, digits, spaces, . ' or -")
        for name, data in files:
            check_midi_bytes(data, name, self.config.max_upload_bytes)
            parse_midi(data, name)  # a bad file is the request's error, before the index is touched
        with self._edit_lock, tempfile.TemporaryDirectory(dir=self._tmp) as tmp:
            folder = Path(tmp) / composer
            folder.mkdir()
            for name, data in files:  # index add reads .mid and .midi files only
                (folder / (name if name.lower().endswith((".mid", ".midi")) else f"{name}.mid")).write_bytes(data)
            try:
                rep = add_tracks(self.config.index_dir, tmp, self.config.cache_dir, workers=1)
            except DataDirError as e:
                raise HttpError(422, str(e).replace(tmp, "upload")) from e
            self.sources.mkdir(parents=True, exist_ok=True)
            for _, data in files:  # by content, so a track's audio is found whatever it is called
                target = self.sources / f"{hashlib.sha256(data).hexdigest()}.mid"
                part = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                part.write_bytes(data)
                os.replace(part, target)
            self.state = self._load()
        return asdict(rep)

    def remove(self, track_id: int) -> dict[str, Any]:
        """Remove one track by id (index remove --track); the next query no longer finds it."""
        from .index_edit import remove_tracks

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


def error_status(e: Exception) -> int:
    """The HTTP status of a domain error."""
    if isinstance(e, HttpError):
        return e.status
    if isinstance(e, RenderError) and "took over" in str(e):
        return 504
    if isinstance(e, MidiError | RenderError | DataDirError):
        return 422
    if isinstance(e, SoundFontError | IndexNotFound):
        return 503
    return 500


class BodyLimit:
    """ASGI wrapper: a request body over `limit` bytes gets 413, whether or not it says its length."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"error": f"request body over {self.limit / 1048576:.0f} MB"}, 413)
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            await too_large(scope, receive, send)
            return
        seen, over, started = 0, False, False

        async def counted() -> Any:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                over = True
                raise HttpError(413, "request body too large")
            return message

        async def guarded(message: Any) -> None:
            nonlocal started
            if not over:
                started = True
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except HttpError:
            if not over:
                raise
        if over and not started:
            await too_large(scope, receive, send)


def create_app(config: ServeConfig) -> BodyLimit:
    """The ASGI app: FastAPI (at `.app`, its Service at `.app.state.service`) inside a body limit."""
    service = Service(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    api = FastAPI(title="musicid", version=_version(), lifespan=lifespan,
                  description="Who composed this MIDI file, or is it by nobody the index knows? "
                              "The same answers as the musicid command line, from an index loaded once.")
    api.state.service = service

    @api.exception_handler(MusicIdError)
    @api.exception_handler(HttpError)
    async def domain_error(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"error": str(e)}, error_status(e))

    @api.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    async def read(upload: UploadFile) -> tuple[str, bytes]:
        name = safe_name(upload.filename)
        data = await upload.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HttpError(413, f"{name}: over the {config.max_upload_bytes / 1048576:.0f} MB upload limit")
        return name, data

    def require_token(authorization: str | None) -> None:
        if not config.token:
            raise HttpError(403, "editing is off: start musicid serve with --token")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.token.encode()):
            raise HttpError(401, "editing needs the header 'Authorization: Bearer TOKEN' with the server's token")

    def wav(data: bytes) -> Response:
        return Response(data, media_type="audio/wav", headers={"Cache-Control": "max-age=3600"})

    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @api.get("/healthz", summary="Liveness, and what is loaded")
    async def healthz() -> dict[str, Any]:
        store = service.state.engine.store
        return {"ok": True, "tracks": len(store.tracks), "composers": store.composers, "workers": service.workers}

    @api.post("/query", summary="One MIDI file: the same JSON as `musicid query --json`")
    async def query(file: UploadFile = File(...), k: int = Query(10, ge=1, le=100),
                    explain: bool = Query(False, description="add what the page needs: clip offsets, "
                                                             "audio ids, the place on the embedding map")
                    ) -> JSONResponse:
        name, data = await read(file)
        work = lambda: service.query(data, name, k, explain)  # noqa: E731
        return JSONResponse(await service.run(work, service.config.query_timeout))

    @api.post("/report", summary="Several MIDI files: rows as `musicid report --json` (most novel first)")
    async def report(files: list[UploadFile] = File(...), novel: bool = True) -> JSONResponse:
        uploads = [await read(f) for f in files]
        timeout = service.config.query_timeout * max(1, len(uploads))
        return JSONResponse(await service.run(lambda: service.report(uploads, novel), timeout))

    @api.get("/index", summary="What `musicid index info --json` gives: the index's manifest")
    async def index() -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(service.state.engine.store.manifest, default=str)))

    @api.get("/index/map", summary="The indexed tracks on a 2-D PCA of their mean vectors")
    async def index_map() -> dict[str, Any]:
        state = service.state
        tracks = state.engine.store.tracks
        keep = np.linspace(0, len(tracks) - 1, min(len(tracks), MAP_POINTS)).round().astype(int)
        return {"points": [{"track_id": int(tracks["track_id"].iat[i]), "path": str(tracks["path"].iat[i]),
                            "composer": str(tracks["composer"].iat[i]),
                            "x": round(float(state.map.points[i, 0]), 5), "y": round(float(state.map.points[i, 1]), 5)}
                           for i in (keep if len(tracks) else [])]}

    @api.get("/tracks", summary="Every indexed track: id, path, composer, clips")
    async def tracks() -> list[dict[str, Any]]:
        t = service.state.engine.store.tracks
        return [{"track_id": int(i), "path": str(p), "composer": str(c), "n_clips": int(n)}
                for i, p, c, n in zip(t["track_id"], t["path"], t["composer"], t["n_clips"], strict=True)]

    @api.get("/tracks/{track_id}/audio", summary="A WAV of an indexed track from `offset` s, rendered now",
             response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
    async def track_audio(track_id: int, offset: float = Query(0.0, ge=0),
                          seconds: float = Query(10.0, gt=0, le=MAX_AUDIO_SECONDS)) -> Response:
        work = lambda: service.track_audio(track_id, offset, seconds)  # noqa: E731
        return wav(await service.run(work, service.config.render_timeout))

    @api.get("/queries/{upload}/audio", summary="A WAV of an uploaded query from `offset` s",
             response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
    async def upload_audio(upload: str, offset: float = Query(0.0, ge=0),
                           seconds: float = Query(10.0, gt=0, le=MAX_AUDIO_SECONDS)) -> Response:
        work = lambda: service.upload_audio(upload, offset, seconds)  # noqa: E731
        return wav(await service.run(work, service.config.render_timeout))

    @api.post("/tracks", summary="Add files as one composer's tracks (`index add`); needs the token")
    async def add_tracks(composer: str = Form(...), files: list[UploadFile] = File(...),
                         authorization: str | None = Header(None)) -> JSONResponse:
        require_token(authorization)
        uploads = [await read(f) for f in files]
        return JSONResponse(await service.run(lambda: service.add(composer, uploads), service.config.edit_timeout))

    @api.delete("/tracks/{track_id}", summary="Remove one track (`index remove --track`); needs the token")
    async def remove_track(track_id: int, authorization: str | None = Header(None)) -> JSONResponse:
        require_token(authorization)
        return JSONResponse(await service.run(lambda: service.remove(track_id), service.config.edit_timeout))

    return BodyLimit(api, config.max_request_bytes)


def _version() -> str:
    from . import __version__

    return str(__version__)


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the index and serve it until interrupted (raises ServeError on a non-loopback bind
    without a token, and the index's own errors when it cannot be loaded)."""
    import faiss
    import torch
    import uvicorn

    from .prepare import default_workers

    check_bind(host, config.token)
    check_port(host, port)
    # each of the `workers` threads gets its share of the cores, not all of them (no oversubscription)
    threads = max(1, default_workers() // (config.workers or default_workers()))
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
