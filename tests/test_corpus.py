"""corpus export on tiny scores made in code: one channel and program per part, failures skipped."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from musicid.io.corpus_export import CorpusError, _export_one, export_corpus, program_for, score_to_midi
from musicid.io.midi import load_midi

music21 = pytest.importorskip("music21")


def quartet(names: list[str], lyrics: bool = False) -> music21.stream.Score:
    from music21 import instrument, note, stream, tempo

    score = stream.Score()
    for i, name in enumerate(names):
        part = stream.Part()
        part.partName = name
        part.insert(0, instrument.Piano())  # the junk default many encoders leave
        if i == 0:
            part.insert(0, tempo.MetronomeMark(number=120))
        for k in range(8):
            n = note.Note(60 + 3 * i + (k % 4), quarterLength=1.0)
            if lyrics:
                n.lyric = "la"
            part.append(n)
        score.insert(0, part)
    return score


def programs_by_channel(path: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for track in mido.MidiFile(path).tracks:
        for msg in track:
            if msg.type == "program_change":
                out[msg.channel] = msg.program
    return out


def test_each_part_gets_its_own_channel_and_program(tmp_path: Path) -> None:
    n = score_to_midi(quartet(["Violin I", "Violin II", "Viola", "Violoncello"]), tmp_path / "q.mid")
    assert n == 32
    assert programs_by_channel(tmp_path / "q.mid") == {0: 40, 1: 40, 2: 41, 3: 42}
    midi = load_midi(tmp_path / "q.mid")
    assert midi.n_notes == 32 and abs(midi.duration - 4.0) < 0.01  # 8 quarters at 120 qpm


def test_sung_parts_are_voices_and_no_text_is_written(tmp_path: Path) -> None:
    score_to_midi(quartet(["", "", "", ""], lyrics=True), tmp_path / "c.mid")
    assert set(programs_by_channel(tmp_path / "c.mid").values()) == {52}
    texts = [m for t in mido.MidiFile(tmp_path / "c.mid").tracks for m in t
             if m.type in ("lyrics", "text", "copyright")]
    assert texts == []


@pytest.mark.parametrize("name, program, sung, expected", [
    ("Tenor", 0, False, 52), ("Basso", None, False, 52), ("Bassoon", None, False, 70),
    ("Cello", 48, False, 42), ("", 24, False, 24), ("", None, True, 52), ("", None, False, 0),
])
def test_program_choice(name: str, program: int | None, sung: bool, expected: int) -> None:
    assert program_for(name, program, sung) == expected


def test_bad_score_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<score-partwise><part id='P1'><measure>")
    reason = _export_one(bad, tmp_path / "bad.mid")
    assert reason and not (tmp_path / "bad.mid").exists()


def test_unknown_composer_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no scores for composer 'nobody'"):
        export_corpus(tmp_path, ["nobody"])


def test_export_is_cached(tmp_path: Path) -> None:
    first = export_corpus(tmp_path, ["schubert"], max_works=1, workers=1)
    assert first.written == {"Schubert": 1} and first.reused == 0 and not first.failures
    again = export_corpus(tmp_path, ["schubert"], max_works=1, workers=1)
    assert again.reused == 1
