"""Dirty MIDI collections: every bad file gets a one-line reason, batches go on, queries exit 1."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from musicid.build.indexer import build_index
from musicid.cli import app
from musicid.errors import MidiError, RenderError
from musicid.io.midi import load_midi, parse_midi
from musicid.io.render import RenderSettings, render

from .conftest import make_corpus, tiny_options, write_piece


def midi_bytes(events: list[tuple[int, mido.Message | mido.MetaMessage]], tpb: int = 480) -> bytes:
    """A one-track MIDI file from (delta ticks, message) pairs."""
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    for delta, msg in events:
        track.append(msg.copy(time=delta))
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def note(delta: int, kind: str, pitch: int = 60, vel: int = 90) -> tuple[int, mido.Message]:
    return delta, mido.Message(kind, note=pitch, velocity=vel)


TWO_HOURS = 2 * 3600 * 960  # ticks: 480 a beat at the default 120 bpm is 960 a second


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty.mid": (b"", "empty file"),
    "text.mid": (b"MIDI? no, a shopping list\n", "not a MIDI file (no MThd header)"),
    "wav.mid": (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00", "not a MIDI file (no MThd header)"),
    "truncated.mid": (midi_bytes([note(0, "note_on"), note(480, "note_off")])[:30], "unreadable MIDI"),
    "meta only.mid": (midi_bytes([(0, mido.MetaMessage("track_name", name="Beethoven")),
                                  (0, mido.MetaMessage("set_tempo", tempo=500000))]),
                      "no notes with a positive length"),
    "zero length.mid": (midi_bytes([note(0, "note_on"), note(0, "note_off")]), "no notes with a positive length"),
    "drums only.mid": (midi_bytes([(0, mido.Message("note_on", channel=9, note=36, velocity=100)),
                                   (480, mido.Message("note_off", channel=9, note=36))]),
                       "only percussion, no pitched notes"),
    "hours.mid": (midi_bytes([note(0, "note_on"), note(480, "note_off"), note(TWO_HOURS, "note_on", 62),
                              note(480, "note_off", 62)]), "lasts 2.0 h, over the 1 h limit"),
    "silent.mid": (midi_bytes([(0, mido.Message("control_change", control=7, value=0)),
                               note(0, "note_on"), note(960, "note_off")]), "rendered to silence"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_reason(tmp_path: Path, name: str) -> None:
    data, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises((MidiError, RenderError)) as exc:
        render(load_midi(path), RenderSettings(), name)
    assert str(exc.value) == f"{name}: {reason}" or (reason == "unreadable MIDI" and reason in str(exc.value))


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_query_of_bad_file_exits_1_with_one_line(built_index: Path, tmp_path: Path, name: str) -> None:
    data, reason = BAD_FILES[name]
    (tmp_path / name).write_bytes(data)
    r = CliRunner().invoke(app, ["query", str(tmp_path / name), "--index", str(built_index)])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}: ") and reason in lines[0]
    assert "Traceback" not in r.stdout + r.stderr


def test_render_stops_at_the_last_note_not_the_last_event(tmp_path: Path) -> None:
    """A stray controller 40 minutes in must not make FluidSynth render 40 minutes of nothing."""
    data = midi_bytes([note(0, "note_on"), note(960, "note_off"),
                       (40 * 60 * 960, mido.Message("control_change", control=64, value=0))])
    audio = render(parse_midi(data, "late.mid"))
    assert len(audio) == RenderSettings().sample_rate * 2  # 1 s note + 1 s release


def test_render_length_is_bounded(tmp_path: Path) -> None:
    midi = load_midi(write_piece(tmp_path / "long.mid", "Strings", 0, seconds=90))
    assert len(render(midi, RenderSettings(max_seconds=20))) == 20 * 16000


def test_a_dirty_collection_builds_and_lists_every_bad_file(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings"], per_composer=4, seconds=6)
    weird = data / "Strings" / "Ünïcode — name with spaces.mid"
    write_piece(weird, "Strings", 42, 6)
    (data / "Empty composer").mkdir()
    for name, (content, _) in BAD_FILES.items():
        (data / "Lowpiano" / name).write_bytes(content)
    (data / "Lowpiano" / "dangling.mid").symlink_to(tmp_path / "nowhere.mid")
    linked = tmp_path / "elsewhere" / "linked.mid"
    write_piece(linked, "Lowpiano", 43, 6)
    (data / "Lowpiano" / "linked.mid").symlink_to(linked)
    report = build_index(data, tmp_path / "idx", tiny_options(tmp_path))
    failed = dict(report.failures)
    assert set(failed) == {f"Lowpiano/{n}" for n in [*BAD_FILES, "dangling.mid"]}
    assert failed["Lowpiano/dangling.mid"].startswith("cannot read")
    assert report.tracks_per_composer == {"Lowpiano": 5, "Strings": 5}  # the symlink and the Ünïcode name count
    assert report.warnings == ["Empty composer/: no MIDI files or scores, composer skipped",
                               "the novelty threshold rests on 2 held-out tracks: it is rough "
                               "(more works per composer steady it)"]  # a tiny folder


def test_a_composer_enrolled_from_a_single_work_is_named_in_a_warning(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings"], per_composer=4, seconds=6)
    make_corpus(tmp_path / "data", ["Highflute"], per_composer=2, seconds=6, seed=3)  # two movements of one work
    report = build_index(data, tmp_path / "idx", tiny_options(tmp_path))
    assert report.tracks_per_composer == {"Highflute": 2, "Lowpiano": 4, "Strings": 4}
    single = [w for w in report.warnings if "single work" in w]
    assert single == ["1 composer(s) enrolled from a single work (Highflute): none of it is held out to calibrate "
                      "on, and one work names a composer and tells it from strangers far less reliably than three "
                      "(README, How many works)"]


GOOD = midi_bytes([note(0, "note_on", 60), note(0, "note_on", 64), note(480, "note_off", 60),
                   (0, mido.Message("control_change", control=64, value=127)),
                   (0, mido.Message("program_change", program=40)), note(240, "note_off", 64),
                   (0, mido.Message("pitchwheel", pitch=1000)), note(0, "note_on", 67), note(960, "note_off", 67)])

mutations = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "cut"]),
                               st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    b = bytearray(data)
    for op, pos, val in ops:
        pos = min(pos, max(len(b) - 1, 0))
        if op == "flip" and b:
            b[pos] = val
        elif op == "insert":
            b[pos:pos] = bytes([val])
        elif op == "delete" and b:
            del b[pos]
        elif op == "cut":
            del b[pos:]
    return bytes(b)


FUZZ_PARSE_EXAMPLES = 3000
FUZZ_RENDER_EXAMPLES = 300


@settings(max_examples=FUZZ_PARSE_EXAMPLES, deadline=timedelta(seconds=2), derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutations)
def test_fuzz_parse_3000_mutated_files(ops: list[tuple[str, int, int]]) -> None:
    """3,000 mutated MIDI byte strings: parse or MidiError, nothing else, none over 2 s."""
    try:
        parse_midi(mutate(GOOD, ops), "fuzz.mid")
    except MidiError:
        pass


# byte flips inside the track's events (after the 22 header bytes): ~73% still parse (measured on
# 2,000), so these reach FluidSynth with odd notes, controllers, programs and timings
event_flips = st.lists(st.tuples(st.just("flip"), st.integers(22, len(GOOD) - 1), st.integers(0, 255)),
                       min_size=1, max_size=3)


@settings(max_examples=FUZZ_RENDER_EXAMPLES, deadline=timedelta(seconds=10), derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(event_flips)
def test_fuzz_render_300_mutated_files(ops: list[tuple[str, int, int]]) -> None:
    """300 files with flipped event bytes through parse and a bounded render: audio or a domain error."""
    try:
        audio = render(parse_midi(mutate(GOOD, ops), "fuzz.mid"), RenderSettings(max_seconds=30, timeout_seconds=5))
        assert 0 < len(audio) <= 30 * 16000
    except (MidiError, RenderError):
        pass


def test_json_errors_are_json(built_index: Path, tmp_path: Path) -> None:
    """A script that asked for --json gets a JSON error object on stdout, and the exit code."""
    import json

    (tmp_path / "text.mid").write_bytes(BAD_FILES["text.mid"][0])
    r = CliRunner().invoke(app, ["query", str(tmp_path / "text.mid"), "--index", str(built_index), "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout) == {"error": {"path": str(tmp_path / "text.mid"), "kind": "MidiError",
                                              "message": "text.mid: not a MIDI file (no MThd header)"}}
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--index", str(built_index), "--json"])
    assert r.exit_code == 1  # nothing could be scored
    assert json.loads(r.stdout)["failures"] == [{"path": "text.mid", "kind": "MidiError",
                                                 "reason": "not a MIDI file (no MThd header)"}]
