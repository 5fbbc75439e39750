"""Is this the same piece? A sketch of a track's notes that expressive timing does not change.

A score and a performance of one piece share their notes but not their times (rubato,
spread chords, pedal), so neither the notes hash (midi.Midi.notes_hash, exact times) nor the
embedding (near for any two pieces in one style) can tell "the same piece" from "a piece like
it". The sketch keeps only the order of what is played:

1. onset chords: the pitched notes' onsets, in time order, cut into chords: a note starting
   within CHORD_SECONDS of the chord's first onset joins it (a performer's spread chord is one
   chord; a fast run is not). Each chord is its set of pitch classes and its bass note (the
   lowest pitch): a 12-bit mask plus 7 bits. Pitch classes alone gave music with few distinct
   chords (a toy style of augmented triads) too few distinct shingles, and two unrelated pieces
   matched; the bass keeps an inversion or a register apart;
2. shingles: every NGRAM consecutive chords, hashed into one integer (splitmix64, chained);
3. MinHash (A. Z. Broder, "On the resemblance and containment of documents", Compression and
   Complexity of Sequences 1997): N_SLOTS hash functions, each slot the least hash of any of the
   track's shingles. Two tracks' slots agree with probability equal to the Jaccard similarity of
   their shingle sets, so the fraction of equal slots estimates it (standard error
   sqrt(J (1 - J) / N_SLOTS), 0.04 at J = 0.3).

Tempo, rubato, dynamics, pedalling and resolution do not enter; a wrong or missed note spoils
the NGRAM shingles that cover its chord. Repeats do not count (shingles are a set), so a
"no repeat" edition is the same piece. SAME_PIECE, NGRAM and CHORD_SECONDS were chosen on ASAP
(performances against their own and other scores of the same composer): README, "Data layouts".

All functions are pure: numpy arrays or midi.Midi.events in, numpy out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.smf import DRUM_CHANNEL, NOTE_ON

CHORD_SECONDS = 0.05  # onsets within 50 ms of a chord's first onset belong to that chord
NGRAM = 4  # consecutive chords per shingle
N_SLOTS = 128  # MinHash slots per sketch
MIN_SHINGLES = 8  # fewer distinct shingles than this: too little music to call anything the same piece
SAME_PIECE = 0.10  # estimated Jaccard similarity from which two tracks are one piece
EMPTY = np.uint32(0xFFFFFFFF)  # every slot of a track with too few shingles: it matches nothing
SKETCH_VERSION = 2  # 2: chords carry their bass. Bumped when a sketch can change (prepare.py caches it)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele, Lea & Flood 2014): a fixed, well-mixed uint64 -> uint64 hash."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return z ^ (z >> np.uint64(31))


_SEEDS = _mix64(np.arange(1, N_SLOTS + 1, dtype=np.uint64) * np.uint64(0x632BE59BD9B4E019))


def onsets_of(events: Any) -> tuple[np.ndarray, np.ndarray]:
    """(onset seconds float64, pitch int) of every pitched note (drums left out), in time order.
    events: midi.Midi.events."""
    on = [(t, a) for t, kind, ch, a, b in events if kind == NOTE_ON and ch != DRUM_CHANNEL and b > 0]
    if not on:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    arr = np.asarray(on, dtype=np.float64)
    order = np.argsort(arr[:, 0], kind="stable")
    return arr[order, 0], arr[order, 1].astype(np.int64)


def onset_chords(onsets: np.ndarray, pitches: np.ndarray, window: float = CHORD_SECONDS) -> np.ndarray:
    """(n_chords,) int64 codes of the onset chords: bits 0-11 the pitch-class mask (bit p for pitch
    class p), bits 12-18 the chord's lowest MIDI pitch.

    onsets: (n,) seconds, ascending; pitches: (n,) MIDI pitches. A chord starts at the first onset
    more than `window` seconds after the current chord's first onset."""
    masks: list[int] = []
    basses: list[int] = []
    start = -np.inf
    for t, p in zip(onsets.tolist(), pitches.tolist(), strict=True):
        if t - start > window:
            masks.append(0)
            basses.append(127)
            start = t
        masks[-1] |= 1 << (int(p) % 12)
        basses[-1] = min(basses[-1], int(p))
    return np.asarray(masks, dtype=np.int64) | (np.asarray(basses, dtype=np.int64) << 12)


def shingles(chords: np.ndarray, n: int = NGRAM) -> np.ndarray:
    """Sorted distinct shingles: every n consecutive chord codes hashed, in order, into one uint64
    (h = mix64(h ^ chord) chord after chord: order matters, collisions about 2^-64)."""
    if len(chords) < n:
        return np.zeros(0, dtype=np.uint64)
    c = chords.astype(np.uint64)
    h = np.zeros(len(c) - n + 1, dtype=np.uint64)
    for i in range(n):
        h = _mix64(h ^ c[i:len(c) - n + 1 + i])
    return np.unique(h)


def minhash(shingle_set: np.ndarray, n_slots: int = N_SLOTS) -> np.ndarray:
    """(n_slots,) uint32 MinHash signature: slot k is the top 32 bits of min over shingles of
    mix64(shingle ^ seed_k); all EMPTY when there are fewer than MIN_SHINGLES shingles."""
    if len(shingle_set) < MIN_SHINGLES:
        return np.full(n_slots, EMPTY, dtype=np.uint32)
    out = np.empty(n_slots, dtype=np.uint32)
    x = shingle_set.astype(np.uint64)
    for k in range(n_slots):  # one slot at a time: (n_shingles,) memory, not (n_shingles, n_slots)
        out[k] = np.uint32(int(_mix64(x ^ _SEEDS[k]).min()) >> 32)
    return out


def piece_sketch(events: Any) -> np.ndarray:
    """(N_SLOTS,) uint32 sketch of a track's notes (midi.Midi.events): onset chords -> shingles -> MinHash."""
    onsets, pitches = onsets_of(events)
    return minhash(shingles(onset_chords(onsets, pitches)))


def is_empty(sketch: np.ndarray) -> np.ndarray:
    """True for a sketch (or each row of a (n, N_SLOTS) table) with too few shingles to match."""
    return np.all(np.asarray(sketch) == EMPTY, axis=-1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity |a & b| / |a | b| of two shingle sets (0 for two empty sets)."""
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b)) / union if union else 0.0


def similarities(sketch: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(n,) estimated Jaccard similarity of one sketch (N_SLOTS,) to each row of table (n, N_SLOTS):
    the fraction of equal slots; 0 where either is empty."""
    table = np.asarray(table, dtype=np.uint32).reshape(-1, len(sketch))
    sims = (table == sketch[None, :]).mean(axis=1)
    sims[is_empty(table)] = 0.0
    return np.zeros(len(table)) if is_empty(sketch) else sims


def same_piece_pairs(table: np.ndarray, threshold: float = SAME_PIECE, block: int = 64) -> np.ndarray:
    """(n_pairs, 2) index pairs i < j of rows of table (n, N_SLOTS) whose similarity is >= threshold.

    Every pair is compared, `block` rows at a time against all later rows, in numpy: O(n^2 N_SLOTS)
    byte comparisons, about 1 s for 2,000 tracks. (LSH banding would skip most pairs, but at
    thresholds this low it misses pairs: with 2-slot bands, a pair at J = 0.12 becomes a candidate
    only 60% of the time.)"""
    table = np.asarray(table, dtype=np.uint32)
    live = np.flatnonzero(~is_empty(table))
    sub = table[live]
    found: list[np.ndarray] = []
    for b0 in range(0, len(sub), block):
        rows = sub[b0:b0 + block]
        sims = (rows[:, None, :] == sub[None, :, :]).mean(axis=2)  # (block, n_live)
        i, j = np.nonzero(sims >= threshold)
        keep = j > i + b0
        found.append(np.stack([live[i[keep] + b0], live[j[keep]]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def best_matches(queries: np.ndarray, table: np.ndarray, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """For each row of queries (m, N_SLOTS): the row of table (n, N_SLOTS) it is most alike and that
    similarity, ((m,) int64, (m,) float64); (-1, 0.0) where table is empty or either side is an empty
    sketch. A query is the same piece as some table row where its similarity is >= SAME_PIECE.
    O(m n N_SLOTS) byte comparisons, `block` queries at a time."""
    slots = np.asarray(table).shape[-1] if np.asarray(table).ndim == 2 else N_SLOTS  # fewer: a sketch's first slots
    queries = np.asarray(queries, dtype=np.uint32).reshape(-1, slots)
    table = np.asarray(table, dtype=np.uint32).reshape(-1, slots)
    best = np.full(len(queries), -1, dtype=np.int64)
    sim = np.zeros(len(queries))
    live = np.flatnonzero(~is_empty(table))
    if not len(live):
        return best, sim
    sub = table[live]
    for b0 in range(0, len(queries), block):
        rows = queries[b0:b0 + block]
        sims = (rows[:, None, :] == sub[None, :, :]).mean(axis=2)  # (block, n_live)
        sims[is_empty(rows)] = 0.0
        j = sims.argmax(axis=1)
        s = sims[np.arange(len(rows)), j]
        best[b0:b0 + len(rows)] = np.where(s > 0, live[j], -1)
        sim[b0:b0 + len(rows)] = s
    return best, sim
