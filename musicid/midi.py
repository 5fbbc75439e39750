"""Read a MIDI file into a flat, time-ordered list of synthesizer events.

Only note, controller, program and pitch-bend events are kept: text metadata
(titles, composer names) never leaves this module, so it can never reach the
model.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from .errors import MidiError

# Event kinds, as small ints so a track's events are cheap to send to a worker.
NOTE_ON, NOTE_OFF, CONTROL, PROGRAM, PITCH = 0, 1, 2, 3, 4
DRUM_CHANNEL = 9
MAX_FILE_BYTES = 16 * 1024 * 1024  # real scores are KBs; bigger is garbage
MAX_TRACK_SECONDS = 3600.0  # a single movement lasting more than an hour is broken


@dataclass(frozen=True)
class Midi:
    """The playable content of one MIDI file."""

    events: tuple[tuple[float, int, int, int, int], ...]  # (seconds, kind, channel, a, b)
    duration: float  # seconds, to the end of the last sounding note
    n_notes: int  # pitched notes with a positive length
    n_drum_notes: int
    fingerprint: str  # hash of the notes alone: same notes, same fingerprint

    def transposed(self, semitones: int) -> Midi:
        """The same piece with every pitched note moved; drums are left alone."""
        events = tuple(
            (t, k, c, min(127, max(0, a + semitones)), b)
            if k in (NOTE_ON, NOTE_OFF) and c != DRUM_CHANNEL
            else (t, k, c, a, b)
            for t, k, c, a, b in self.events
        )
        return Midi(events, self.duration, self.n_notes, self.n_drum_notes, self.fingerprint)


def read_midi_bytes(path: Path) -> bytes:
    """The file's bytes, or a MidiError saying why they cannot be had."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MidiError(f"{path.name}: {size / 1e6:.0f} MB is too large for a MIDI file")
        return path.read_bytes()
    except MidiError:
        raise
    except OSError as e:
        raise MidiError(f"{path.name}: cannot read ({e.strerror or e})") from e


def parse_midi(data: bytes, name: str = "<bytes>") -> Midi:
    """Parse MIDI bytes; raise MidiError for anything that is not a playable piece."""
    import mido

    if not data:
        raise MidiError(f"{name}: empty file")
    if not data.startswith(b"MThd"):
        raise MidiError(f"{name}: not a MIDI file (no MThd header)")
    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
        messages = list(mid)  # merges tracks, converts ticks to seconds
    except Exception as e:  # mido raises many types on malformed input
        raise MidiError(f"{name}: unreadable MIDI ({type(e).__name__}: {e})") from e

    events: list[tuple[float, int, int, int, int]] = []
    open_notes: dict[tuple[int, int], list[float]] = {}
    notes: list[tuple[int, int, int]] = []  # (start cs, pitch, length cs) for the fingerprint
    n_notes = n_drum = 0
    end = 0.0
    t = 0.0
    for msg in messages:
        t += msg.time
        kind = msg.type
        if kind == "note_on" and msg.velocity > 0:
            events.append((t, NOTE_ON, msg.channel, msg.note, msg.velocity))
            open_notes.setdefault((msg.channel, msg.note), []).append(t)
        elif kind == "note_off" or kind == "note_on":
            events.append((t, NOTE_OFF, msg.channel, msg.note, 0))
            starts = open_notes.get((msg.channel, msg.note))
            if starts:
                start = starts.pop(0)
                if t > start:
                    end = max(end, t)
                    if msg.channel == DRUM_CHANNEL:
                        n_drum += 1
                    else:
                        n_notes += 1
                        notes.append((round(start * 100), msg.note, round((t - start) * 100)))
        elif kind == "control_change":
            events.append((t, CONTROL, msg.channel, msg.control, msg.value))
        elif kind == "program_change":
            events.append((t, PROGRAM, msg.channel, msg.program, 0))
        elif kind == "pitchwheel":
            events.append((t, PITCH, msg.channel, msg.pitch, 0))
    # notes never switched off sound until the file ends
    for (channel, pitch), starts in open_notes.items():
        for start in starts:
            if t > start:
                end = max(end, t)
                if channel == DRUM_CHANNEL:
                    n_drum += 1
                else:
                    n_notes += 1
                    notes.append((round(start * 100), pitch, round((t - start) * 100)))

    if n_notes == 0:
        if n_drum:
            raise MidiError(f"{name}: only percussion, no pitched notes")
        raise MidiError(f"{name}: no notes with a positive length")
    if end > MAX_TRACK_SECONDS:
        raise MidiError(
            f"{name}: lasts {end / 3600:.1f} h, over the {MAX_TRACK_SECONDS / 3600:.0f} h limit"
        )
    notes.sort()
    digest = hashlib.sha1(repr(notes).encode()).hexdigest()[:16]
    return Midi(tuple(events), end, n_notes, n_drum, digest)


def load_midi(path: str | Path) -> Midi:
    """Read and parse one MIDI file; every failure is a MidiError naming the file."""
    path = Path(path)
    return parse_midi(read_midi_bytes(path), path.name)
