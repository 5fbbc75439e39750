"""musicid: tell who composed a MIDI file or score, or that it is by nobody the index knows.

The library under the `musicid` command, importable without it. The names a program needs:

    import musicid

    report = musicid.build_index("data/", "index/")          # BuildReport; options: musicid.BuildOptions
    result = musicid.query("unknown.mid", "index/")          # TrackResult: composer, confidence, novel, ...
    results, failures = musicid.report_folder("pile/", "index/")   # every track, most novel first
    musicid.add_tracks("index/", "more/")                    # enrol more tracks into a built index
    musicid.remove_tracks("index/", track="Bach/bwv846.mid")  # or composer="Bach": take tracks out
    engine = musicid.QueryEngine.open("index/")              # load once, query many (engine.query(path))
    midi = musicid.load_music("song.musicxml")               # any MIDI file or score, read as notes

Errors are musicid.MusicIdError subclasses (musicid.errors), each with a one-line message. Names are
loaded on first use, so `import musicid` stays instant.

The package is laid out by the stages of the pipeline; each stage imports only the stages before it
(tests/test_package_layout.py checks it from the code's own imports):

    errors, atomic, keys, progress, choices, vectors   the foundation every stage may import
    io/           reading MIDI files and scores, rendering audio, exporting the starter corpus
    features/     clips (piano roll, log-mel), symbolic and spectral statistics, piece sketches, the cache
    collection/   labelled folders: tracks, works, splits; the collections' catalogues
    model/        the embedder, its training and batch sampling, the background, the shipped model, the probe
    index/        the index's settings, manifest, store and FAISS search
    recognize/    novelty scores and their calibration; the query
    build/        prepare, train or load, embed, calibrate, publish; edits; Ray; the general embedder
    evaluation/   cross-validation, the many-composer and cross-collection protocols, metrics, intervals,
                  the published baseline, plots
    serve/        the HTTP service and its page
    cli/          the `musicid` command
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.5.4"

_PUBLIC = {  # name -> the module that defines it
    "BuildOptions": "musicid.build.corpus",
    "BuildReport": "musicid.build.indexer",
    "build_index": "musicid.build.indexer",
    "add_tracks": "musicid.build.edit",
    "remove_tracks": "musicid.build.edit",
    "train_general_embedder": "musicid.build.pretrain",
    "QueryEngine": "musicid.recognize.query",
    "TrackResult": "musicid.recognize.query",
    "load_store": "musicid.index.store",
    "load_music": "musicid.io.reader",
    "MusicIdError": "musicid.errors",
}

__all__ = ["BuildOptions", "BuildReport", "MusicIdError", "QueryEngine", "TrackResult", "__version__", "add_tracks",
           "build_index", "load_music", "load_store", "query", "remove_tracks", "report_folder",
           "train_general_embedder"]

if TYPE_CHECKING:
    from .build.corpus import BuildOptions
    from .build.edit import add_tracks, remove_tracks
    from .build.indexer import BuildReport, build_index
    from .build.pretrain import train_general_embedder
    from .errors import MusicIdError
    from .index.store import load_store
    from .io.reader import load_music
    from .recognize.query import QueryEngine, TrackResult


def query(track: str | Path, index: str | Path) -> TrackResult:
    """Name the composer of one MIDI file or score against the index at `index` (a directory made by
    build_index), with its confidence and novelty: what `musicid query TRACK --json` prints. Loads the
    index for this one call: keep a QueryEngine to query many tracks. Raises IndexNotFound, IndexCorrupt
    or IndexMismatch for the index, ReadError or RenderError for the track (all MusicIdError)."""
    from .recognize.query import QueryEngine

    return QueryEngine.open(index).query(track)


def report_folder(folder: str | Path, index: str | Path, workers: int = 0) -> tuple[list[TrackResult], list[Any]]:
    """Every MIDI file and score under `folder` scored against the index at `index`, most novel first,
    and the files that could not be read (`musicid report --novel`). Raises as query does."""
    from .recognize.query import QueryEngine
    from .recognize.query import report_folder as _report

    return _report(QueryEngine.open(index), folder, workers=workers)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'musicid' has no attribute {name!r}")
