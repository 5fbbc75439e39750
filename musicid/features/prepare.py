"""MIDI file or score -> cached spectrogram -> clips, for one track or many in parallel.

Worker processes each own a FluidSynth instance and one torch thread; a bad
file becomes a Failure with a one-line reason, never an exception that stops
the batch.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MusicIdError, ReadError, RenderError
from ..io.midi import Midi
from ..io.reader import parse_music, read_music_bytes
from ..io.render import RenderSettings, render
from ..progress import ProgressFn
from .cache import FeatureCache
from .clips import FeatureSettings, cut_clips, log_mel, piano_roll
from .piece_match import SKETCH_VERSION, piece_sketch
from .symbolic import SYMBOLIC_VERSION, symbolic_features_of


@dataclass
class Prepared:
    """One track ready to embed."""

    path: Path
    sha256: str
    notes_hash: str  # midi.Midi.notes_hash: the same notes give the same hash
    duration: float  # of the piece
    rendered_seconds: float
    # (n_clips, n_bins, clip_frames) float16; no rows when the track was embedded on a Ray cluster
    # and only its vectors came back (distributed.embed_tracks_on_ray)
    clips: np.ndarray
    offsets: list[float]  # clip start times in seconds
    symbolic: np.ndarray  # (N_SYMBOLIC,) the notes' symbolic features (features/symbolic.py)
    sketch: np.ndarray  # (piece_match.N_SLOTS,) uint32: which piece the notes are, whatever their timing
    cached: bool = False


@dataclass
class Failure:
    path: Path
    reason: str
    kind: str = "error"  # the error's class name (MidiError, ScoreError, RenderError), for `report --json`


def _note_meta(midi: Midi) -> dict[str, Any]:
    """What the notes give besides the spectrogram, cached with it: symbolic features and piece sketch."""
    return {"symbolic": symbolic_features_of(midi.events).tolist(), "symbolic_version": SYMBOLIC_VERSION,
            "sketch": piece_sketch(midi.events).tolist(), "sketch_version": SKETCH_VERSION}


def _note_meta_current(meta: dict[str, Any]) -> bool:
    return meta.get("symbolic_version") == SYMBOLIC_VERSION and meta.get("sketch_version") == SKETCH_VERSION


def _from_spec(path: Path, sha: str, spec_np: np.ndarray, meta: dict[str, Any], features: FeatureSettings,
               cached: bool, data: bytes, cache: FeatureCache | None = None) -> Prepared:
    if not _note_meta_current(meta):  # cached before these features or the sketch, or by another version
        meta = {**meta, **_note_meta(parse_music(data, path.name))}
        if cache:
            cache.put(sha, spec_np, meta)
    clips, starts = cut_clips(torch.from_numpy(spec_np), features)
    fps = features.frames_per_second
    return Prepared(path, sha, meta["notes_hash"], float(meta["duration"]),
                    float(meta["rendered_seconds"]), clips.numpy(),
                    [round(s / fps, 3) for s in starts], np.asarray(meta["symbolic"], dtype=np.float32),
                    np.asarray(meta["sketch"], dtype=np.uint32), cached)


def cached_track(path: Path, features: FeatureSettings, cache: FeatureCache) -> Prepared | None:
    """The track from the cache, or None when it is not there (or cannot be read: the render
    path will say why)."""
    try:
        data = read_music_bytes(path)
    except MusicIdError:
        return None
    sha = hashlib.sha256(data).hexdigest()
    hit = cache.get(sha)
    return None if hit is None else _from_spec(path, sha, hit[0], hit[1], features, True, data, cache)


def prepare_track(path: Path, render_settings: RenderSettings, features: FeatureSettings,
                  cache: FeatureCache | None = None) -> Prepared:
    """Read, render and featurise one file (through the cache); raise MusicIdError on failure."""
    data = read_music_bytes(path)
    sha = hashlib.sha256(data).hexdigest()
    hit = cache.get(sha) if cache else None
    if hit is not None:
        return _from_spec(path, sha, hit[0], hit[1], features, True, data, cache)
    midi = parse_music(data, path.name)
    if features.from_notes:  # the notes themselves: nothing to render
        seconds = min(midi.duration, render_settings.max_seconds)
        spec = piano_roll(midi.events, seconds, features)
    else:
        audio = render(midi, render_settings, path.name)
        seconds = len(audio) / render_settings.sample_rate
        spec = log_mel(torch.from_numpy(audio), features)
    spec_np = spec.numpy().astype(np.float16)
    meta = {"notes_hash": midi.notes_hash, "duration": midi.duration, "rendered_seconds": seconds,
            **_note_meta(midi)}
    if cache:
        cache.put(sha, spec_np, meta)
    return _from_spec(path, sha, spec_np, meta, features, False, data)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _prepare_or_fail(path: Path, render_settings: RenderSettings, features: FeatureSettings,
                     cache: FeatureCache | None) -> Prepared | Failure:
    try:
        return prepare_track(path, render_settings, features, cache)
    except (ReadError, RenderError) as e:
        return Failure(path, str(e).removeprefix(f"{path.name}: "), type(e).__name__)
    except MusicIdError:
        raise  # a bad SoundFont is the user's to fix, not a per-file skip
    except Exception as e:  # noqa: BLE001 - one file must never stop the batch
        return Failure(path, f"unexpected {type(e).__name__}: {e}", type(e).__name__)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def prepare_many(paths: Sequence[Path], render_settings: RenderSettings, features: FeatureSettings,
                 cache: FeatureCache | None = None, workers: int = 0,
                 progress: ProgressFn | None = None) -> list[Prepared | Failure]:
    """Prepare tracks in parallel; results in the order of `paths`."""
    workers = workers or default_workers()
    results: list[Prepared | Failure | None] = [None] * len(paths)
    if progress:
        progress("render", 0, len(paths))
    done = 0
    if cache is not None and cache.directory is not None:  # hits served here: no worker starts for them
        for i, path in enumerate(paths):
            results[i] = cached_track(path, features, cache)
            if results[i] is not None:
                done += 1
                if progress:
                    progress("render", done, len(paths))
    todo = [i for i, r in enumerate(results) if r is None]
    if workers == 1 or len(todo) <= 1:
        for i in todo:
            results[i] = _prepare_or_fail(paths[i], render_settings, features, cache)
            done += 1
            if progress:
                progress("render", done, len(paths))
    else:
        ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        # largest files first, so that no long render starts last and runs on alone
        order = sorted(todo, key=lambda i: -_size(paths[i]))
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(_prepare_or_fail, paths[i], render_settings, features, cache): i
                       for i in order}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                done += 1
                if progress:
                    progress("render", done, len(paths))
    return [r for r in results if r is not None]
