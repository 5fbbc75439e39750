"""Standard MIDI File bytes, walked chunk by chunk into tick-stamped events (SMF 1.0 spec; the RIFF
RMID wrapper of the RIFF MIDI spec): bounded file reads, the RMID unwrap, the MThd/MTrk chunks (others
skipped, an overstated track length read up to what is there), and each track's note, controller,
program, pitch-bend and tempo events with their ticks. midi.py turns these into seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import MidiError, MusicIdError

# Event kinds, as small ints so a track's events are cheap to send to a worker.
NOTE_ON, NOTE_OFF, CONTROL, PROGRAM, PITCH = 0, 1, 2, 3, 4
DRUM_CHANNEL = 9
SUSTAIN = 64  # CC64, the damper pedal: down at values >= 64 (as FluidSynth reads it)
MAX_FILE_BYTES = 16 * 1024 * 1024  # real scores are KBs; bigger is garbage
MAX_TRACK_SECONDS = 3600.0  # a single movement lasting more than an hour is broken
DEFAULT_TEMPO = 500_000  # microseconds a beat until a Set Tempo says otherwise (120 bpm; SMF spec)


def read_file_bytes(path: Path, limit: int, what: str, error: type[MusicIdError] = MidiError) -> bytes:
    """A music file's bytes, or `error` saying why they cannot be had (missing, unreadable, over
    `limit` bytes: more than any real `what` holds)."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"{path.name}: {size / 1e6:.0f} MB is too large for a {what}")
        return path.read_bytes()
    except MusicIdError:
        raise
    except OSError as e:
        raise error(f"{path.name}: cannot read ({e.strerror or e})") from e


def read_midi_bytes(path: Path) -> bytes:
    """The file's bytes, or a MidiError saying why they cannot be had."""
    return read_file_bytes(path, MAX_FILE_BYTES, "MIDI file")


# ---------------------------------------------------------------- bytes -> chunks


def unwrap_riff(data: bytes, name: str) -> bytes:
    """The Standard MIDI File inside a RIFF `RMID` file (.rmi): the payload of its `data` chunk
    (RIFF chunks: 4-byte id, 4-byte little-endian size, payload padded to even length)."""
    if data[8:12] != b"RMID":
        raise MidiError(f"{name}: not a MIDI file (no MThd header)")  # RIFF, but WAVE or the like
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] == b"data":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise MidiError(f"{name}: RIFF RMID file without a data chunk")


@dataclass(frozen=True)
class SmfChunks:
    """A Standard MIDI File's header fields and the bodies of its MTrk chunks, as present."""

    format: int  # 0, 1 or 2
    division: int  # the raw 16-bit header word: ticks per beat, or SMPTE when the top bit is set
    tracks: tuple[bytes, ...]


def split_chunks(data: bytes, name: str = "<bytes>") -> SmfChunks:
    """Walk the chunks of SMF bytes (SMF 1.0 spec, "Chunks"): keep MThd's fields and the MTrk
    bodies; skip any other chunk; a length that overstates what follows is clamped to the
    bytes present; the header's track count is ignored in favour of the MTrk chunks found."""
    if not data:
        raise MidiError(f"{name}: empty file")
    if data.startswith(b"RIFF"):
        data = unwrap_riff(data, name)
    if not data.startswith(b"MThd"):
        raise MidiError(f"{name}: not a MIDI file (no MThd header)")
    head_len = int.from_bytes(data[4:8], "big")
    if head_len < 6 or len(data) < 14:
        raise MidiError(f"{name}: unreadable MIDI (the header is cut short: "
                        f"{min(head_len, max(0, len(data) - 8))} of its 6 bytes)")
    fmt = int.from_bytes(data[8:10], "big")
    division = int.from_bytes(data[12:14], "big")
    if division == 0:
        raise MidiError(f"{name}: the header gives 0 ticks per beat")
    tracks: list[bytes] = []
    pos = 8 + head_len
    while pos + 8 <= len(data):
        chunk_id, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        body_start = pos + 8
        if chunk_id == b"MTrk":
            tracks.append(data[body_start:body_start + length])
        pos = body_start + length
    if not tracks:
        raise MidiError(f"{name}: no track (MTrk) chunk")
    return SmfChunks(fmt, division, tuple(tracks))


# ---------------------------------------------------------------- track bytes -> tick events

# data bytes after a channel status, by its high nibble (SMF spec, "MIDI events")
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
# system common / real-time statuses that have no place in a file: skipped with their data
_SYSTEM_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}

TickEvent = tuple[int, int, int, int, int]  # (tick, kind, channel, a, b)


class TrackError(ValueError):
    """A track's bytes stop being MIDI: cut short inside an event, or a data byte with no status."""


def _read_vlq(body: bytes, pos: int) -> tuple[int, int]:
    """The variable-length quantity (SMF 1.0: 7 bits a byte, at most 4 bytes) at pos, and the position
    after it; TrackError where the bytes end inside it."""
    value = 0
    for _ in range(4):
        if pos >= len(body):
            raise TrackError(f"cut short at byte {pos}")
        byte = body[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value, pos


def read_track(body: bytes) -> tuple[list[TickEvent], list[tuple[int, int]], int]:
    """One MTrk body -> (channel events, tempo changes (tick, microseconds a beat), last tick).

    Ticks are absolute within the track. Reading stops at End-of-Track (FF 2F) or where the
    bytes end between two events (End-of-Track missing is tolerated). Bytes that end inside an
    event (a truncated file) or a data byte with no status raise TrackError. Meta and sysex
    events are skipped by their length, whatever they hold; data bytes over 127 are clipped."""
    events: list[TickEvent] = []
    tempos: list[tuple[int, int]] = []
    n = len(body)
    pos = tick = status = 0
    while pos < n:
        delta, pos = _read_vlq(body, pos)
        tick += delta
        if pos >= n:
            raise TrackError(f"cut short at byte {pos}")
        byte = body[pos]
        if byte >= 0x80:
            pos += 1
            if byte < 0xF0:
                status = byte
            elif byte == 0xFF or byte in (0xF0, 0xF7):  # meta / sysex: a length, then data
                kind = -1
                if byte == 0xFF:
                    if pos >= n:
                        raise TrackError(f"cut short at byte {pos}")
                    kind = body[pos]
                    pos += 1
                length, pos = _read_vlq(body, pos)
                if kind == 0x2F:
                    break
                if kind == 0x51 and length == 3 and pos + 3 <= n:
                    tempo = int.from_bytes(body[pos:pos + 3], "big")
                    if tempo > 0:
                        tempos.append((tick, tempo))
                pos += length
                if pos > n:
                    raise TrackError(f"cut short at byte {n}")
                # the spec says sysex and meta cancel running status; real files (and mido) run on
                continue
            else:
                pos += _SYSTEM_BYTES.get(byte, 0)
                continue
        elif status == 0:
            raise TrackError(f"data byte 0x{byte:02X} with no status at byte {pos}")
        size = _DATA_BYTES[status & 0xF0]
        if pos + size > n:
            raise TrackError(f"cut short at byte {n}")
        a = min(body[pos], 127)
        b = min(body[pos + 1], 127) if size == 2 else 0
        pos += size
        hi, ch = status & 0xF0, status & 0x0F
        if hi == 0x90:
            events.append((tick, NOTE_ON if b else NOTE_OFF, ch, a, b))
        elif hi == 0x80:
            events.append((tick, NOTE_OFF, ch, a, 0))
        elif hi == 0xB0:
            events.append((tick, CONTROL, ch, a, b))
        elif hi == 0xC0:
            events.append((tick, PROGRAM, ch, a, 0))
        elif hi == 0xE0:
            events.append((tick, PITCH, ch, (b << 7 | a) - 8192, 0))
    return events, tempos, tick
