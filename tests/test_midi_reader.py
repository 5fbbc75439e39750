"""The MIDI reader on files as they are really written.

Each case of /work/shared/cases/midi-reader/ is rebuilt here byte for byte from its kind, so
CI needs no shared data: every variant holds the plain file's music (one C4, velocity 64, from
0 to 0.5 s: 480 ticks at 480 ticks a beat and 120 bpm) and must give the plain file's notes.
Second readers: symusic (C++) agrees on the bad key signatures, the unknown chunk and the
overstated track count; mido agrees on the plain file and m21a/m21b; FluidSynth's own file
player plays the key-signature and overstated-length cases (docs/RELIABILITY.md).
"""

from __future__ import annotations

import io
from pathlib import Path

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicid.errors import IndexMismatch, MidiError
from musicid.features.clips import piano_roll, pianoroll_settings
from musicid.io.midi import READER_VERSION, load_midi, parse_midi
from musicid.io.smf import NOTE_OFF, NOTE_ON

PLAIN_EVENTS = ((0.0, NOTE_ON, 0, 60, 64), (0.5, NOTE_OFF, 0, 60, 0))
EOT = b"\x00\xff\x2f\x00"
NOTE = b"\x00\x90\x3c\x40" + b"\x83\x60\x80\x3c\x00"  # on at 0, off 480 ticks later


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def header(fmt: int = 0, ntrks: int = 1, division: int = 480) -> bytes:
    return b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + ntrks.to_bytes(2, "big") + \
        division.to_bytes(2, "big")


def mtrk(body: bytes, extra_length: int = 0) -> bytes:
    return b"MTrk" + (len(body) + extra_length).to_bytes(4, "big") + body


def smf(*bodies: bytes, fmt: int = 0, ntrks: int | None = None, division: int = 480) -> bytes:
    return header(fmt, len(bodies) if ntrks is None else ntrks, division) + b"".join(mtrk(b) for b in bodies)


def rmid(data: bytes) -> bytes:
    chunk = b"data" + len(data).to_bytes(4, "little") + data + b"\x00" * (len(data) & 1)
    return b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"RMID" + chunk


PLAIN = smf(NOTE + EOT)
CASES = {  # the shared cases' kinds, each giving PLAIN_EVENTS
    "m02 SMPTE 25 fps x 40 ticks": smf(b"\x00\x90\x3c\x40" + vlq(500) + b"\x80\x3c\x00" + EOT, division=0xE728),
    "m04 RIFF RMID wrapper": rmid(PLAIN),
    "m08 key signature out of range": smf(b"\x00\xff\x59\x02\xee\x01" + NOTE + EOT),
    "m09 key signature with no data": smf(b"\x00\xff\x59\x00" + NOTE + EOT),
    "m10 unknown chunk before the track": header() + b"XFIH\x00\x00\x00\x00" + mtrk(NOTE + EOT),
    "m11 track length plus one": header() + mtrk(NOTE + EOT, extra_length=1),
    "m12 two tracks announced, one present": header(fmt=1, ntrks=2) + mtrk(NOTE + EOT),
    "running status across a meta event": smf(b"\x00\x90\x3c\x40" + b"\x00\xff\x01\x01x" + b"\x83\x60\x3c\x00" + EOT),
}
NOTE_AT_1S = vlq(960) + b"\x90\x3c\x40" + vlq(456) + b"\x80\x3c\x00" + EOT  # 1 s to 1.475 s
M21A = smf(NOTE_AT_1S)
M21B = smf(b"\x08\xff\x01\x01x" * 120 + b"\x00" + NOTE_AT_1S[2:])  # 120 text events, 8 ticks apart


def test_plain_file_reads_as_written() -> None:
    midi = parse_midi(PLAIN, "m00.mid")
    assert midi.events == PLAIN_EVENTS and midi.duration == 0.5 and midi.n_notes == 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_variant_gives_the_plain_files_notes(case: str) -> None:
    midi, plain = parse_midi(CASES[case], "case.mid"), parse_midi(PLAIN, "m00.mid")
    assert midi.events == PLAIN_EVENTS
    assert (midi.duration, midi.n_notes, midi.notes_hash) == (0.5, 1, plain.notes_hash)


def test_text_events_before_a_note_change_nothing() -> None:
    a, b = parse_midi(M21A, "m21a.mid"), parse_midi(M21B, "m21b.mid")
    assert a.events == b.events == ((1.0, NOTE_ON, 0, 60, 64), (1.475, NOTE_OFF, 0, 60, 0))
    assert a.notes_hash == b.notes_hash and a.duration == b.duration == 1.475
    roll = pianoroll_settings()
    assert piano_roll(a.events, a.duration, roll).equal(piano_roll(b.events, b.duration, roll))


@pytest.mark.parametrize("case", ["m08 key signature out of range", "m09 key signature with no data",
                                  "m10 unknown chunk before the track", "m12 two tracks announced, one present"])
def test_symusic_agrees(case: str) -> None:
    symusic = pytest.importorskip("symusic")
    score = symusic.Score.from_midi(CASES[case], ttype="second")
    assert [(n.start, n.end, n.pitch, n.velocity) for t in score.tracks for n in t.notes] == [(0.0, 0.5, 60, 64)]


def test_mido_agrees_on_m21() -> None:
    for data in (M21A, M21B):
        t, notes = 0.0, []
        for msg in mido.MidiFile(file=io.BytesIO(data)):
            t += msg.time
            if msg.type.startswith("note"):
                notes.append((round(t, 9), msg.type))
        assert notes == [(1.0, "note_on"), (1.475, "note_off")]


@pytest.mark.parametrize("data, fault", [
    (PLAIN[:30], "unreadable MIDI (track 1 of 1: cut short at byte 8)"),
    (smf(b"\x00\x3c\x40" + EOT), "unreadable MIDI (track 1 of 1: data byte 0x3C with no status at byte 1)"),
    (header(), "no track (MTrk) chunk"),
    (b"RIFF\x04\x00\x00\x00RMID", "RIFF RMID file without a data chunk"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a MIDI file (no MThd header)"),
    (smf(NOTE + EOT, division=0), "the header gives 0 ticks per beat"),
])
def test_unreadable_file_names_its_fault(data: bytes, fault: str) -> None:
    with pytest.raises(MidiError) as e:
        parse_midi(data, "bad.mid")
    assert str(e.value) == f"bad.mid: {fault}"


def test_format_2_plays_its_patterns_in_turn() -> None:
    second = b"\x00\x90\x40\x50" + b"\x83\x60\x80\x40\x00"  # E4, 480 ticks
    midi = parse_midi(smf(NOTE + EOT, second + EOT, fmt=2), "patterns.mid")
    assert midi.events == PLAIN_EVENTS + ((0.5, NOTE_ON, 0, 64, 80), (1.0, NOTE_OFF, 0, 64, 0))


def test_sustain_pedal_holds_notes_in_the_roll_and_the_render() -> None:
    from musicid.io.render import RenderSettings, render

    pedal_down, pedal_up = b"\x00\xb0\x40\x7f", vlq(3 * 480) + b"\xb0\x40\x00"  # lifted at 2 s
    midi = parse_midi(smf(pedal_down + NOTE + pedal_up + EOT), "pedal.mid")
    assert midi.duration == 2.0  # released at 0.5 s, held by the pedal to 2 s
    roll = piano_roll(midi.events, midi.duration, pianoroll_settings())  # 10 frames a second
    assert roll[60].nonzero().flatten().tolist() == list(range(20))
    assert len(render(midi, RenderSettings())) == 3 * 16000  # to the pedal's lift + 1 s release


def test_restruck_key_ends_the_held_note() -> None:
    restrike = vlq(480) + b"\x90\x3c\x40" + vlq(240) + b"\x80\x3c\x00"  # again at 1 s, off at 1.25 s
    midi = parse_midi(smf(b"\x00\xb0\x40\x7f" + NOTE + restrike + EOT), "restrike.mid")
    roll = piano_roll(midi.events, midi.duration, pianoroll_settings())
    assert roll[60].nonzero().flatten().tolist() == list(range(12))  # 0-1 s, then 1-1.25 s held to the end
    assert midi.duration == 1.25  # the pedal never lifts: held notes sound to the file's end


def test_index_from_an_older_reader_is_refused(built_index: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from musicid.index.store import load_store

    assert json.loads((built_index / "manifest.json").read_text())["midi_reader"] == READER_VERSION
    old = tmp_path / "old"
    shutil.copytree(built_index, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["midi_reader"]  # as an index written before the reader was versioned
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="built with an older MIDI reader; rebuild with musicid index build"):
        load_store(old)


def test_feature_cache_key_names_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    from musicid.features.cache import settings_digest
    from musicid.io import reader

    now = settings_digest({"features": {"representation": "pianoroll"}})
    for key in ("midi_reader", "score_reader"):  # either reader changed: other notes, another key
        monkeypatch.setattr(reader, "READERS", {**reader.READERS, key: reader.READERS[key] - 1})
        assert settings_digest({"features": {"representation": "pianoroll"}}) != now
        monkeypatch.undo()
    assert reader.READERS["midi_reader"] == READER_VERSION


# ---------------------------------------------------------------- properties

Note = tuple[int, int, int, int]  # (start beat-sixteenths, length sixteenths, pitch, velocity)
notes_st = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40), st.integers(21, 108), st.integers(1, 127)),
                    min_size=1, max_size=12)
META = [b"\xff\x01\x03abc", b"\xff\x59\x02\xee\x01", b"\xff\x59\x00", b"\xff\x58\x04\x04\x02\x18\x08",
        b"\xff\x51\x03\x07\xa1\x20"]  # text, bad key sig, empty key sig, time sig, the same tempo again


def write(notes: list[Note], tpq: int, metas: list[tuple[int, int]], tempo_change: int) -> bytes:
    """notes -> SMF bytes at tpq ticks a beat, with metas [(sixteenth, index into META)] among
    them and the tempo set to 500000, then to tempo_change us a beat at sixteenth 64."""
    per = tpq // 4
    ev: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x51\x03" + (500000).to_bytes(3, "big")),
                                        (64 * per, 0, b"\xff\x51\x03" + tempo_change.to_bytes(3, "big"))]
    for s, n, p, v in notes:
        ev += [(s * per, 1, bytes([0x90, p, v])), ((s + n) * per, 0, bytes([0x80, p, 0]))]
    ev += [(s * per, 0, META[i]) for s, i in metas]
    ev.sort(key=lambda e: (e[0], e[1]))  # offs (and metas) before ons at one tick
    body, last = b"", 0
    for tick, _, msg in ev:
        body += vlq(tick - last) + msg
        last = tick
    return smf(body + EOT, division=tpq)


@settings(max_examples=60, deadline=None)
@given(notes=notes_st, metas=st.lists(st.tuples(st.integers(0, 63), st.integers(0, len(META) - 1)), max_size=30),
       factor=st.sampled_from([2, 3, 5, 8]), tempo_change=st.sampled_from([500000, 428571, 652174]))
def test_metadata_and_resolution_never_move_a_note(notes: list[Note], metas: list[tuple[int, int]],
                                                   factor: int, tempo_change: int) -> None:
    plain = parse_midi(write(notes, 96, [], tempo_change), "plain.mid")
    for variant in (write(notes, 96, metas, tempo_change), write(notes, 96 * factor, [], tempo_change)):
        midi = parse_midi(variant, "variant.mid")
        assert midi.events == plain.events and midi.notes_hash == plain.notes_hash
        roll = pianoroll_settings()
        assert piano_roll(midi.events, midi.duration, roll).equal(piano_roll(plain.events, plain.duration, roll))


CASES_DIR = Path(__file__).resolve().parents[2] / "shared" / "cases" / "midi-reader"


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason="the shared reader cases are not on this machine")
def test_shared_cases_when_present() -> None:
    plain = load_midi(CASES_DIR / "m00_plain_one_note.mid")
    for path in sorted(CASES_DIR.glob("m[01]*.mid")):
        assert load_midi(path).events == plain.events, path.name
    a = load_midi(CASES_DIR / "m21a_note_at_1s_plain.mid")
    b = load_midi(CASES_DIR / "m21b_note_at_1s_after_text_events.mid")
    assert a.events == b.events and a.notes_hash == b.notes_hash


def test_format_2_patterns_start_at_the_previous_end_of_track() -> None:
    """32 patterns of 1.5 s whose End-of-Track lies 40 ticks after their last note-off (48 s in all):
    pattern k starts at k x 1.5 s, not at the previous pattern's last event (which drifts 42 ms a pattern)."""
    pattern = (b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00\x90\x3c\x40" + vlq(1400) + b"\x80\x3c\x00"
               + vlq(40) + b"\xff\x2f\x00")  # tempo 120, C4 for 1400 ticks, End-of-Track at 1440
    midi = parse_midi(smf(*[pattern] * 32, fmt=2), "patterns.mid")
    onsets = [t for t, kind, *_ in midi.events if kind == NOTE_ON]
    assert onsets == [k * 1.5 for k in range(32)]
    assert midi.duration == pytest.approx(31 * 1.5 + 1400 / 960)


def test_a_note_never_released_sounds_until_the_file_ends(built_index: Path, tmp_path: Path) -> None:
    """As a synthesizer plays it: the reader writes the note-off at End-of-Track, so the note table,
    the symbolic features and a query all see the note (C4 from 1 s to 2 s)."""
    from typer.testing import CliRunner

    from musicid.cli import app
    from musicid.features.symbolic import N_SYMBOLIC, note_table, symbolic_features_of

    data = smf(vlq(960) + b"\x90\x3c\x5a" + vlq(960) + b"\xff\x2f\x00")  # on at 1 s, End-of-Track at 2 s
    midi = parse_midi(data, "m22.mid")
    assert midi.events == ((1.0, NOTE_ON, 0, 60, 90), (2.0, NOTE_OFF, 0, 60, 0))
    assert midi.duration == 2.0 and midi.n_notes == 1
    assert note_table(midi.events).tolist() == [[1.0, 2.0, 60.0]]
    assert symbolic_features_of(midi.events).shape == (N_SYMBOLIC,)
    (tmp_path / "m22.mid").write_bytes(data)
    r = CliRunner().invoke(app, ["query", str(tmp_path / "m22.mid"), "--index", str(built_index), "--json"])
    assert r.exit_code == 0, r.output
    if CASES_DIR.is_dir():
        assert load_midi(CASES_DIR / "m22_note_never_released.mid").events == midi.events
