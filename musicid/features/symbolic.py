"""Symbolic features: statistics of the notes themselves (MIR's "global features" of a score).

Which pitch classes, which melodic and vertical intervals, how many voices sound
at once, how fast and how long the notes are: a fixed-length vector per piece,
for the `symbolic-knn` novelty score and its part in the `fused` score
(novelty.py). An embedder trained on a few composers learns only what separates
them; these plain statistics describe any piece the same way, and the measured
comparison of the two is in docs/RESULTS.md (novelty scores by left-out composer).

Every feature is a share or a normalised summary, so a track's length does not
enter; key does not either (pitch classes are rotated to the most used one).
Close to the global features of jSymbolic (McKay and Fujinaga, 2006), much reduced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from ..io.smf import DRUM_CHANNEL, NOTE_OFF, NOTE_ON

SYMBOLIC_VERSION = 1  # bump when the features change: cached ones are then recomputed
CHORD_SECONDS = 0.03  # onsets closer than this sound as one
POLYPHONY_STEP = 0.05  # seconds between samples of how many notes sound
MAX_INTERVAL = 13  # melodic steps beyond an octave share the outermost bins
_LOG_BINS = np.linspace(np.log2(0.03), 3.0, 11)  # 30 ms .. 8 s, 10 log-spaced bins


def note_table(events: Sequence[tuple[float, int, int, int, int]]) -> np.ndarray:
    """(n, 3) float64 rows of (start s, end s, pitch) for every pitched note with a positive
    length, sorted by start; drums are left out. events: midi.Midi.events."""
    open_notes: dict[tuple[int, int], deque[float]] = {}
    rows: list[tuple[float, float, int]] = []
    last = 0.0
    for t, kind, channel, a, _ in events:
        last = max(last, t)
        if channel == DRUM_CHANNEL:
            continue
        if kind == NOTE_ON:
            open_notes.setdefault((channel, a), deque()).append(t)
        elif kind == NOTE_OFF:
            starts = open_notes.get((channel, a))
            if starts:
                start = starts.popleft()
                if t > start:
                    rows.append((start, t, a))
    for (_, pitch), starts in open_notes.items():  # never switched off: sounds to the end
        rows += [(s, last, pitch) for s in starts if last > s]
    return np.array(sorted(rows), dtype=np.float64).reshape(-1, 3)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts, dtype=np.float64)


def symbolic_features(notes: np.ndarray) -> np.ndarray:
    """(n, 3) note table (note_table) -> N_SYMBOLIC float32 features of the piece.

    pitch classes rotated to the most used (12); top-voice and bass melodic steps (27 each);
    intervals within chords, mod 12 (12); voices sounding at once (8); notes per onset (6);
    time between onsets (10) and note lengths (10), on log scales; pitch mean, spread, range,
    top and bass mean (5); onsets and notes per second, log (2).
    """
    if not len(notes):
        raise ValueError("no notes to describe")
    start, end, pitch = notes[:, 0], notes[:, 1], notes[:, 2].astype(np.int64)
    length = end - start
    span = max(end.max() - start.min(), 1e-3)

    pcs = _shares(np.bincount(pitch % 12, weights=length, minlength=12))
    pcs = np.roll(pcs, -int(np.argmax(pcs)))

    onset = np.round(start / CHORD_SECONDS).astype(np.int64)
    onsets, which = np.unique(onset, return_inverse=True)
    top = np.full(len(onsets), -1, dtype=np.int64)
    bass = np.full(len(onsets), 128, dtype=np.int64)
    np.maximum.at(top, which, pitch)
    np.minimum.at(bass, which, pitch)
    per_onset = np.bincount(which, minlength=len(onsets))

    def steps(line: np.ndarray) -> np.ndarray:
        d = np.clip(np.diff(line), -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL
        return _shares(np.bincount(d, minlength=2 * MAX_INTERVAL + 1).astype(np.float64))

    vertical = np.zeros(12)
    order = np.argsort(which, kind="stable")
    for chord in np.split(pitch[order], np.cumsum(per_onset)[:-1]):
        if len(chord) > 1:
            gaps = np.abs(chord[:, None] - chord[None, :])[np.triu_indices(len(chord), 1)] % 12
            vertical += np.bincount(gaps, minlength=12)

    grid = np.arange(start.min(), end.max(), POLYPHONY_STEP)
    sounding = np.searchsorted(np.sort(start), grid, "right") - np.searchsorted(np.sort(end), grid, "right")
    voices = _shares(np.bincount(np.clip(sounding, 0, 7), minlength=8).astype(np.float64))
    chord_sizes = _shares(np.bincount(np.clip(per_onset, 1, 6) - 1, minlength=6).astype(np.float64))

    def log_hist(seconds: np.ndarray) -> np.ndarray:
        return _shares(np.histogram(np.log2(np.clip(seconds, 0.03, 8.0)), bins=_LOG_BINS)[0].astype(np.float64))

    spread = np.percentile(pitch, 95) - np.percentile(pitch, 5)
    register = np.array([pitch.mean() / 127, pitch.std() / 24, spread / 48, top.mean() / 127, bass.mean() / 127])
    rates = np.array([np.log(len(onsets) / span), np.log(len(pitch) / span)])
    return np.concatenate([
        pcs, steps(top), steps(bass), _shares(vertical), voices, chord_sizes,
        log_hist(np.diff(onsets) * CHORD_SECONDS), log_hist(length), register, rates,
    ]).astype(np.float32)


N_SYMBOLIC = 12 + 27 + 27 + 12 + 8 + 6 + 10 + 10 + 5 + 2


def symbolic_features_of(events: Sequence[tuple[float, int, int, int, int]]) -> np.ndarray:
    """A MIDI file's events (midi.Midi.events) -> its symbolic features (N_SYMBOLIC,) float32."""
    return symbolic_features(note_table(events))


STD_FLOOR = 0.01  # a feature (nearly) constant over the indexed tracks must not dominate the distance


def standardiser(indexed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and floored spread of each feature over the indexed tracks' (n, N_SYMBOLIC) rows."""
    if not len(indexed):
        return np.zeros(N_SYMBOLIC, np.float32), np.ones(N_SYMBOLIC, np.float32)
    return indexed.mean(axis=0), np.maximum(indexed.std(axis=0), STD_FLOOR)
