"""Read a MIDI file into a flat, time-ordered list of synthesizer events.

Only note, controller, program and pitch-bend events are kept: text metadata
(titles, composer names) never leaves this module, so it can never reach the
model.

This is musicid's one MIDI reader: the piano roll, the render, the symbolic
features, the notes hash, the published baseline and the Ray workers all get
their notes from `parse_midi`. It reads files as they are really written
(Standard MIDI File 1.0 spec, RIFF RMID wrapper from the RIFF MIDI spec):

- the bytes are walked chunk by chunk: a RIFF `RMID` wrapper is unwrapped,
  chunks other than MThd/MTrk are skipped (the SMF spec says readers must),
  a track whose length field overstates the bytes that follow is read up to
  what is there (End-of-Track ends it), and the header's track count is not
  trusted: the MTrk chunks present are the tracks;
- meta events are skipped by length whatever their content, except Set Tempo
  (FF 51 03), so malformed metadata (an impossible key signature, a key
  signature with no data bytes) never costs the notes;
- time stays in integer ticks until each event is converted to seconds once,
  exactly, through the tempo map (or the SMPTE rate): seconds = N / D with
  integer N and D, so the same note gives the same float and the same
  notes hash whatever metadata, redundant tempo events or resolution
  (ticks per beat) surrounds it;
- SMPTE time division (negative frames per second x ticks per frame) is
  decoded; -29 is 30-drop-frame, 29.97 frames a second;
- format 2 (independent patterns) is played pattern after pattern, each from the previous
  one's End-of-Track tick;
- a note never switched off sounds until the file ends: the reader writes its note-off there.

The byte-level walk is smf.py; this module turns its ticks into seconds and notes. Why our own
~150-line walker and not a library: measured in docs/PERFORMANCE.md
("MIDI reader"). mido reads 3 of the 10 reader cases and leaks its own
exceptions on the rest; symusic (C++) reads 6 but has no notion of MIDI
channels, keeps one program per track (mid-track program changes are lost) and
drops notes never switched off, all of which the renderer relies on; both
would still need this byte-level walk in front of them.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MidiError, MusicIdError
from .smf import (
    CONTROL,
    DEFAULT_TEMPO,
    DRUM_CHANNEL,
    MAX_TRACK_SECONDS,
    NOTE_OFF,
    NOTE_ON,
    PROGRAM,
    SUSTAIN,
    TickEvent,
    TrackError,
    read_midi_bytes,
    read_track,
    split_chunks,
)

# Bumped whenever the reader can give a file different events, times or notes hash; recorded in the
# feature-cache key (cache.py) and the index manifest (index/store.py), which refuse older ones.
# 2: integer-tick reader, tolerant chunks/meta, SMPTE; the roll and duration hear the sustain pedal.
# 3: a note never switched off gets its note-off at the file's end in Midi.events.
READER_VERSION = 3

Event = tuple[float, int, int, int, int]  # (seconds, kind, channel, a, b)


@dataclass(frozen=True)
class Midi:
    """The playable content of one MIDI file."""

    events: tuple[Event, ...]  # (seconds, kind, channel, a, b)
    duration: float  # seconds, to the end of the last sounding note (sustain pedal included)
    n_notes: int  # pitched notes with a positive length
    n_drum_notes: int
    notes_hash: str  # hash of the notes alone: same notes, same hash (an exact notes hash, not an audio fingerprint)

    def transposed(self, semitones: int) -> Midi:
        """The same piece with every pitched note moved; drums are left alone."""
        events = tuple(
            (t, k, c, min(127, max(0, a + semitones)), b)
            if k in (NOTE_ON, NOTE_OFF) and c != DRUM_CHANNEL
            else (t, k, c, a, b)
            for t, k, c, a, b in self.events
        )
        return Midi(events, self.duration, self.n_notes, self.n_drum_notes, self.notes_hash)


# ---------------------------------------------------------------- ticks -> seconds


class TimeMap:
    """Ticks -> seconds, exactly: seconds = numerator(tick) / denominator with integers.

    Ticks per beat: the numerator is microsecond-ticks summed over the tempo map (each segment
    ticks x microseconds a beat) and the denominator ticks_per_beat x 10^6. SMPTE: ticks over
    frames a second x ticks a frame (tempo events do not apply; SMF spec, "Header Chunks")."""

    def __init__(self, division: int, tempos: list[tuple[int, int]]):
        self.starts: list[int] = [0]
        self.offsets: list[int] = [0]
        self.rates: list[int] = []
        if division & 0x8000:  # SMPTE: high byte is -fps (two's complement), low byte ticks a frame
            fps = 256 - (division >> 8)
            per_frame = (division & 0xFF) or 1
            self.rates = [100]
            self.denominator = (2997 if fps == 29 else fps * 100) * per_frame
            return
        self.denominator = division * 1_000_000
        tempo = DEFAULT_TEMPO
        for tick, new in sorted(tempos, key=lambda tt: tt[0]):
            if tick == self.starts[-1]:
                tempo = new
                continue
            if new == tempo:
                continue  # a redundant tempo event changes nothing
            self.rates.append(tempo)
            self.offsets.append(self.offsets[-1] + (tick - self.starts[-1]) * tempo)
            self.starts.append(tick)
            tempo = new
        self.rates.append(tempo)

    def numerator(self, tick: int) -> int:
        i = bisect_right(self.starts, tick) - 1
        return self.offsets[i] + (tick - self.starts[i]) * self.rates[i]

    def seconds(self, tick: int) -> float:
        return self.numerator(tick) / self.denominator  # int / int: correctly rounded

    def centiseconds(self, tick: int) -> int:
        """Rounded half up, exactly (no float in between)."""
        return (200 * self.numerator(tick) + self.denominator) // (2 * self.denominator)


# ---------------------------------------------------------------- notes as they sound


def note_spans(events: Any, end: float, pedal: bool = True) -> list[tuple[float, float, int, int, int, int]]:
    """The notes as they sound: (start s, end s, channel, pitch, velocity, program at start),
    in the order they start. With pedal, a note released while its channel's sustain pedal
    (CC64 >= 64) is down sounds on until the pedal lifts or the same key is struck again (as
    FluidSynth plays it); notes never switched off, or still held when the file ends, end at
    `end`. Overlapping notes of one key are paired first-on, first-off. events: Midi.events."""
    spans: list[tuple[float, float, int, int, int, int]] = []
    program = [0] * 16
    down = [False] * 16
    open_notes: dict[tuple[int, int], deque[int]] = {}  # (channel, pitch) -> indices into spans
    held: dict[tuple[int, int], list[int]] = {}  # released under the pedal, still sounding

    def close(i: int, t: float) -> None:
        s = spans[i]
        spans[i] = (s[0], t, s[2], s[3], s[4], s[5])

    for t, kind, ch, a, b in events:
        if kind == NOTE_ON:
            for i in held.pop((ch, a), ()):
                close(i, t)
            open_notes.setdefault((ch, a), deque()).append(len(spans))
            spans.append((t, end, ch, a, b, program[ch]))
        elif kind == NOTE_OFF:
            starts = open_notes.get((ch, a))
            if starts:
                i = starts.popleft()
                if pedal and down[ch]:
                    held.setdefault((ch, a), []).append(i)
                else:
                    close(i, t)
        elif kind == PROGRAM:
            program[ch] = a
        elif kind == CONTROL and a == SUSTAIN and pedal:
            down[ch], was = b >= 64, down[ch]
            if was and not down[ch]:
                for key in [k for k in held if k[0] == ch]:
                    for i in held.pop(key):
                        close(i, t)
    return spans


# ---------------------------------------------------------------- the reader


def parse_midi(data: bytes, name: str = "<bytes>") -> Midi:
    """Parse MIDI bytes; raise MidiError (one line naming the file and the fault) for anything
    that is not a playable piece."""
    smf = split_chunks(data, name)
    if smf.format > 2:
        raise MidiError(f"{name}: unknown MIDI file format {smf.format}")
    tick_events: list[TickEvent] = []
    tempos: list[tuple[int, int]] = []
    last_tick = offset = 0
    for i, body in enumerate(smf.tracks):
        try:
            track_events, track_tempos, track_end = read_track(body)
        except TrackError as e:
            raise MidiError(f"{name}: unreadable MIDI (track {i + 1} of {len(smf.tracks)}: {e})") from e
        if smf.format == 2:  # independent patterns: each starts at the previous one's End-of-Track tick
            track_events = [(tick + offset, k, c, a, b) for tick, k, c, a, b in track_events]
            track_tempos = [(tick + offset, tempo) for tick, tempo in track_tempos]
            track_end += offset
            offset = track_end
        tick_events.extend(track_events)
        tempos.extend(track_tempos)
        last_tick = max(last_tick, track_end)
    tick_events.sort(key=lambda e: e[0])  # stable: at one tick, track order then file order
    return midi_from_ticks(tick_events, TimeMap(smf.division, tempos), last_tick, name, MidiError)


def midi_from_ticks(tick_events: list[TickEvent], time: TimeMap, last_tick: int, name: str,
                    error: type[MusicIdError] = MidiError) -> Midi:
    """Tick-ordered channel events -> Midi: seconds once per event through the time map, the notes
    hash, the duration. Shared by the MIDI and the score reader (score.py), so a score and its MIDI
    export give the same notes hash.

    A note never switched off sounds until the file ends (last_tick), as a synthesizer plays it: the
    reader writes its note-off there, so every note in Midi.events is closed and every consumer (the
    roll, the render, the symbolic features, the sketch) sees the same notes. Raises `error` (one
    line naming the file) when no pitched note has a positive length or the piece lasts over
    MAX_TRACK_SECONDS."""
    events: list[Event] = []
    open_notes: dict[tuple[int, int], deque[int]] = {}
    notes: list[tuple[int, int, int]] = []  # (start cs, pitch, length cs) for the notes hash
    n_notes = n_drum = 0
    seconds: dict[int, float] = {}

    def count(ch: int, pitch: int, start: int, stop: int) -> None:
        nonlocal n_notes, n_drum
        if stop <= start:
            return
        if ch == DRUM_CHANNEL:
            n_drum += 1
        else:
            n_notes += 1
            cs = time.centiseconds(start)
            notes.append((cs, pitch, time.centiseconds(stop) - cs))

    for tick, kind, ch, a, b in tick_events:
        t = seconds.get(tick)
        if t is None:
            t = seconds[tick] = time.seconds(tick)
        events.append((t, kind, ch, a, b))
        if kind == NOTE_ON:
            open_notes.setdefault((ch, a), deque()).append(tick)
        elif kind == NOTE_OFF:
            starts = open_notes.get((ch, a))
            if starts:
                count(ch, a, starts.popleft(), tick)
    file_end = time.seconds(last_tick)
    for (ch, pitch), starts in sorted(open_notes.items()):  # never switched off: released at the end
        for start in starts:
            count(ch, pitch, start, last_tick)
            events.append((file_end, NOTE_OFF, ch, pitch, 0))

    if n_notes == 0:
        if n_drum:
            raise error(f"{name}: only percussion, no pitched notes")
        raise error(f"{name}: no notes with a positive length")
    end = max((e for s, e, *_ in note_spans(events, file_end) if e > s), default=0.0)
    if end > MAX_TRACK_SECONDS:
        raise error(f"{name}: lasts {end / 3600:.1f} h, over the {MAX_TRACK_SECONDS / 3600:.0f} h limit")
    notes.sort()
    digest = hashlib.sha1(repr(notes).encode()).hexdigest()[:16]
    return Midi(tuple(events), end, n_notes, n_drum, digest)


def load_midi(path: str | Path) -> Midi:
    """Read and parse one MIDI file; every failure is a MidiError naming the file."""
    path = Path(path)
    return parse_midi(read_midi_bytes(path), path.name)
