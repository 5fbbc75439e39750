"""Stage 9, `musicid serve`: the index as an HTTP service (FastAPI), and a page at / to hear why.
Imports every stage below it, never the command line.

The index and its embedder are loaded once; every request runs the library's own
query path (prepare.prepare_track + QueryEngine.score), so `POST /query` answers
exactly what `musicid query --json` prints. CPU-bound work runs on a bounded
thread pool (`workers` threads, torch and FAISS release the GIL), never on the
event loop, each call under a wall-clock bound (504 past it; 503 when too many
wait). Uploads are read into memory (at most MAX_UPLOAD_BYTES a file) and only
ever written under names the server chooses: a fresh private temporary folder
for the query, `<sources>/<sha256>.<suffix>` for tracks added to the index.

Audio: `GET /tracks/{id}/audio?offset=S&seconds=N` renders that stretch of an
indexed track with the index's SoundFont (render.render) and returns a 16-bit
mono WAV; the track's MIDI file is found by content (its sha256 in the tracks
table) in the sources folder or at the index's data_dir/path. Uploaded queries
are kept in memory (LRU, UPLOAD_CACHE_BYTES) so that their clips can be heard
the same way: `GET /queries/{id}/audio`.

Editing (`POST /tracks`, `DELETE /tracks/{id}`) calls build.edit, which
replaces the index directory whole; the engine is then reloaded and swapped in,
so the next query sees the edit. Edits need `Authorization: Bearer TOKEN` and
are off unless the server was started with a token.
"""

from .app import check_bind, check_port, create_app, error_status, serve
from .service import (
    MAX_UPLOAD_BYTES,
    HttpError,
    ServeConfig,
    Service,
    check_upload,
    clip_window,
    safe_name,
    wav_bytes,
)

__all__ = ["MAX_UPLOAD_BYTES", "HttpError", "ServeConfig", "Service", "check_bind", "check_upload", "check_port",
           "clip_window", "create_app", "error_status", "safe_name", "serve", "wav_bytes"]
