"""The HTTP side of `musicid serve`: FastAPI routes over service.Service, errors as one-line JSON,
the body limit, the bind rules, and the uvicorn entry point."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..choices import Judge
from ..errors import DataDirError, IndexNotFound, MusicIdError, ReadError, RenderError, ServeError, SoundFontError
from .service import MAP_POINTS, MAX_AUDIO_SECONDS, HttpError, ServeConfig, Service, safe_name

STATIC_DIR = Path(__file__).resolve().parent / "static"  # the page: plain HTML, JS and CSS
ACCESS_LOG = logging.getLogger("musicid.serve.access")  # one line a request: method path status milliseconds


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


def error_status(e: Exception) -> int:
    """The HTTP status of a domain error."""
    if isinstance(e, HttpError):
        return e.status
    if isinstance(e, RenderError) and "took over" in str(e):
        return 504
    if isinstance(e, ReadError | RenderError | DataDirError):
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

    async def access_log(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
            status = response.status_code
            return response
        finally:
            ACCESS_LOG.info("%s %s %d %.0f ms", request.method, request.url.path, status,
                            (time.perf_counter() - start) * 1000)

    api = FastAPI(title="musicid", version=_version(), lifespan=lifespan,
                  description="Who composed this MIDI file or score, or is it by nobody the index knows? "
                              "The same answers as the musicid command line, from an index loaded once.")
    api.state.service = service
    api.middleware("http")(access_log)

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

    @api.post("/query", summary="One MIDI file or score: the same JSON as `musicid query --json`")
    async def query(file: UploadFile = File(...), k: int | None = Query(None, ge=1, le=100),
                    explain: bool | None = Query(None, description="add what the page needs: clip offsets, "
                                                                   "audio ids, the place on the embedding map"),
                    k_field: int | None = Form(None, alias="k", ge=1, le=100),
                    explain_field: bool | None = Form(None, alias="explain")) -> JSONResponse:
        """`k` and `explain` may come in the URL or as form fields beside the file (the URL wins)."""
        name, data = await read(file)
        neighbours = k if k is not None else k_field if k_field is not None else 10
        why = explain if explain is not None else bool(explain_field)
        work = lambda: service.query(data, name, neighbours, why)  # noqa: E731
        return JSONResponse(await service.run(work, service.config.query_timeout))

    @api.post("/report", summary="Several MIDI files or scores: rows as `musicid report --json` (most novel first)")
    async def report(files: list[UploadFile] = File(...), novel: bool = True,
                     judge: Judge = Query(Judge.fused, description="batch: judge the files as one batch, by the "
                                                                   "part of the fused score that sets them apart "
                                                                   "(as `musicid report --judge batch`)"),
                     reference: list[UploadFile] = File([], description="attributed files from the same source "
                                                                        "as `files`: those by indexed composers "
                                                                        "(at least 19) place the novelty "
                                                                        "threshold (as `musicid report "
                                                                        "--reference`)"),
                     reference_composer: list[str] = Form([], description="each reference file's composer, "
                                                                          "in the same order")
                     ) -> JSONResponse:
        """A file's result does not depend on the others unless `judge=batch` or a `reference` is given."""
        if len(reference) != len(reference_composer):
            raise HttpError(422, f"{len(reference)} reference file(s) but {len(reference_composer)} "
                                 "reference_composer field(s): give one composer per reference file")
        uploads = [await read(f) for f in files]
        ref = [(composer, *await read(f)) for composer, f in zip(reference_composer, reference, strict=True)]
        timeout = service.config.query_timeout * max(1, len(uploads) + len(ref))
        return JSONResponse(await service.run(lambda: service.report(uploads, novel, judge.value, ref), timeout))

    @api.get("/index", summary="What `musicid index info --json` gives: the index's manifest")
    async def index() -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(service.state.engine.store.manifest.as_dict(), default=str)))

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
    from .. import __version__

    return str(__version__)


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the index and serve it until interrupted (raises ServeError on a non-loopback bind
    without a token, and the index's own errors when it cannot be loaded)."""
    import faiss
    import torch
    import uvicorn

    from ..features.prepare import default_workers

    check_bind(host, config.token)
    check_port(host, port)
    # each of the `workers` threads gets its share of the cores, not all of them (no oversubscription)
    threads = max(1, default_workers() // (config.workers or default_workers()))
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    app = create_app(config)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    ACCESS_LOG.addHandler(handler)
    ACCESS_LOG.setLevel(logging.INFO)
    store = app.app.state.service.state.engine.store
    print(f"musicid {_version()} serving {config.index_dir} ({len(store.tracks)} tracks by {len(store.composers)} "
          f"composers) at http://{host}:{port}/ (API docs at /docs); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
