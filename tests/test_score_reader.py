"""The score reader (score.py): MusicXML, .mxl and Humdrum kern read as the notes a synthesizer plays.

Each notation feature that readers commonly get wrong is written here in code, as the smallest
score that shows it, with the sounding notes a correct reader gives, worked out by hand: (onset s,
MIDI pitch, duration s) at 120 quarter notes a minute unless a tempo is marked. The project's own
cases (shared/cases/score-reader) are checked too, where they are on the machine.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from musicid.errors import ScoreError
from musicid.io.midi import note_spans, parse_midi
from musicid.io.reader import composer_of, load_music, parse_music
from musicid.io.score import _with_music21, parse_score
from musicid.io.score_files import composer_in, unzip_mxl
from musicid.io.smf import NOTE_ON, PROGRAM

Note = tuple[float, int, float]


def sounding(midi: object) -> list[Note]:
    spans = note_spans(midi.events, midi.duration, pedal=False)  # type: ignore[attr-defined]
    return sorted((round(s, 4), p, round(e - s, 4)) for s, e, _, p, _, _ in spans)


def musicxml(*parts: tuple[str, str], composer: str = "Test Composer", divisions: int = 1,
             part_attributes: str = "") -> bytes:
    """A partwise MusicXML document: parts as (name, measures' XML), 4/4, `divisions` a quarter."""
    names = "".join(f'<score-part id="P{i}"><part-name>{name}</part-name></score-part>'
                    for i, (name, _) in enumerate(parts, 1))
    body = "".join(
        f'<part id="P{i}"><measure number="1"><attributes><divisions>{divisions}</divisions>'
        f"<time><beats>4</beats><beat-type>4</beat-type></time>{part_attributes}</attributes>"
        + measures.replace("<next/>", '</measure><measure number="2">') + "</measure></part>"
        for i, (_, measures) in enumerate(parts, 1))
    creator = f'<identification><creator type="composer">{composer}</creator></identification>' if composer else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<score-partwise version="3.1">{creator}'
            f"<part-list>{names}</part-list>{body}</score-partwise>").encode()


def n(step: str, octave: int, duration: int, extra: str = "", alter: int = 0, voice: int = 1) -> str:
    alter_xml = f"<alter>{alter}</alter>" if alter else ""
    return (f"<note>{extra}<pitch><step>{step}</step>{alter_xml}<octave>{octave}</octave></pitch>"
            f"<duration>{duration}</duration><voice>{voice}</voice></note>")


def mxl(xml: bytes, container: str | None = "score.xml", members: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if container is not None:
            z.writestr("META-INF/container.xml",
                       '<?xml version="1.0"?><container><rootfiles>'
                       f'<rootfile full-path="{container}" media-type="application/vnd.recordare.musicxml+xml"/>'
                       "</rootfiles></container>")
        z.writestr("score.xml", xml)
        for name, data in (members or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


TIE_START, TIE_STOP = '<tie type="start"/>', '<tie type="stop"/>'
TWO_PARTS = musicxml(("Violin", n("F", 4, 2, alter=1) + n("B", 4, 2, alter=-1)), ("Violoncello", n("C", 3, 4)))

XML_CASES: dict[str, tuple[bytes, list[Note]]] = {
    # a tie within the bar and one across the barline: one note per tied chain
    "ties": (musicxml(("Piano", n("C", 4, 2) + n("E", 4, 1) + n("G", 4, 1, TIE_START) + "<next/>"
                       + n("G", 4, 2, TIE_STOP) + n("C", 5, 2))),
             [(0.0, 60, 1.0), (1.0, 64, 0.5), (1.5, 67, 1.5), (3.0, 72, 1.0)]),
    # three triplet eighths (divisions 3): onsets a third of a quarter apart
    "triplets": (musicxml(("Piano", "".join(n(s, 4, 1, "<time-modification><actual-notes>3</actual-notes>"
                                            "<normal-notes>2</normal-notes></time-modification>")
                                            for s in "CDE") + n("F", 4, 3) + n("G", 4, 6)), divisions=3),
                 [(0.0, 60, 0.1667), (0.1667, 62, 0.1667), (0.3333, 64, 0.1667), (0.5, 65, 0.5), (1.0, 67, 1.0)]),
    # a chord, then a second voice after <backup>, each at its own time
    "chords and voices": (musicxml(("Piano", n("C", 4, 4) + n("E", 4, 4, "<chord/>") + "<backup><duration>4</duration>"
                                    "</backup>" + "".join(n(s, 5, 1, voice=2) for s in "GFED"))),
                          [(0.0, 60, 2.0), (0.0, 64, 2.0), (0.0, 79, 0.5), (0.5, 77, 0.5), (1.0, 76, 0.5),
                           (1.5, 74, 0.5)]),
    # a grace note (no duration) is dropped
    "grace note": (musicxml(("Piano", '<note><grace/><pitch><step>D</step><octave>4</octave></pitch><voice>1</voice>'
                             "<type>eighth</type></note>" + n("C", 4, 2) + n("E", 4, 2))),
                   [(0.0, 60, 1.0), (1.0, 64, 1.0)]),
    # a B-flat clarinet: written D4 sounds C4
    "transposing part": (musicxml(("Clarinet in B-flat", n("D", 4, 2) + n("E", 4, 2)),
                                  part_attributes="<transpose><diatonic>-1</diatonic><chromatic>-2</chromatic>"
                                                  "</transpose>"),
                         [(0.0, 60, 1.0), (1.0, 62, 1.0)]),
    # a tempo mark: 60 quarters a minute
    "tempo mark": (musicxml(("Piano", '<direction><sound tempo="60"/></direction>'
                             + "".join(n(s, 4, 1) for s in "CDEF"))),
                   [(0.0, 60, 1.0), (1.0, 62, 1.0), (2.0, 64, 1.0), (3.0, 65, 1.0)]),
    # two parts, a sharp and a flat
    "two parts": (TWO_PARTS, [(0.0, 48, 2.0), (0.0, 66, 1.0), (1.0, 70, 1.0)]),
    # a repeated bar is read once, as written (never unfolded)
    "repeat": (musicxml(("Piano", '<barline location="left"><repeat direction="forward"/></barline>'
                         + "".join(n(s, 4, 1) for s in "CDEF")
                         + '<barline location="right"><repeat direction="backward"/></barline><next/>'
                         + n("G", 4, 4))),
               [(0.0, 60, 0.5), (0.5, 62, 0.5), (1.0, 64, 0.5), (1.5, 65, 0.5), (2.0, 67, 2.0)]),
}

KERN_CASES: dict[str, tuple[str, list[Note]]] = {
    # chord tokens and [ ] ties (one note per tie chain)
    "kern chords and ties": ("!!!COM: Test Composer\n**kern\n*M4/4\n=1\n4c 4e 4g\n[2cc\n4cc]\n=2\n1G\n==\n*-\n",
                             [(0.0, 60, 0.5), (0.0, 64, 0.5), (0.0, 67, 0.5), (0.5, 72, 1.5), (2.0, 55, 2.0)]),
    # reciprocal durations: 6 is a third of a half note
    "kern triplets": ("**kern\n*M4/4\n=1\n6c\n6d\n6e\n2f\n=2\n1g\n==\n*-\n",
                      [(0.0, 60, 0.3333), (0.3333, 62, 0.3333), (0.6667, 64, 0.3333), (1.0, 65, 1.0), (2.0, 67, 2.0)]),
    # a spine split (*^) and merge (*v): every sub-spine's notes
    "kern spine split": ("**kern\t**kern\n*M4/4\t*M4/4\n=1\t=1\n*\t*^\n1C\t2e\t4g\n.\t.\t4a\n.\t2f\t2b\n"
                         "*\t*v\t*v\n=2\t=2\n1G\t1cc\n==\t==\n*-\t*-\n",
                         [(0.0, 48, 2.0), (0.0, 64, 1.0), (0.0, 67, 0.5), (0.5, 69, 0.5), (1.0, 65, 1.0),
                          (1.0, 71, 1.0), (2.0, 55, 2.0), (2.0, 72, 2.0)]),
    # a q grace note (dropped) and *MM60
    "kern grace and tempo": ("**kern\n*MM60\n*M4/4\n=1\n8dq\n2c\n2e\n==\n*-\n", [(0.0, 60, 2.0), (2.0, 64, 2.0)]),
}


@pytest.mark.parametrize("case", list(XML_CASES))
def test_musicxml_sounds_as_written(case: str) -> None:
    data, expected = XML_CASES[case]
    assert sounding(parse_score(data, f"{case}.musicxml")) == expected


def metronome(unit: str, per_minute: str, dots: int = 0, sound: str = "") -> str:
    return (f"<direction><direction-type><metronome><beat-unit>{unit}</beat-unit>{'<beat-unit-dot/>' * dots}"
            f"<per-minute>{per_minute}</per-minute></metronome></direction-type>{sound}</direction>")


# what partitura does not play as MusicXML says it sounds: rewritten first (playback_xml.py)
PLAYBACK_CASES: dict[str, tuple[bytes, list[Note]]] = {
    # a cue note is silent ("a cue note is a silent note with no playback"): its time passes, as a
    # <forward>; a cue chord member and a cue grace note are dropped
    "cue notes": (musicxml(("Piano", "<note><cue/><pitch><step>A</step><octave>4</octave></pitch><duration>1</duration>"
                            "<voice>1</voice></note><note><chord/><cue/><pitch><step>C</step><octave>5</octave></pitch>"
                            "<duration>1</duration><voice>1</voice></note>" + n("C", 4, 1)
                            + "<note><grace/><cue/><pitch><step>B</step><octave>4</octave></pitch>"
                              "<voice>1</voice></note>"
                            + n("E", 4, 2))),
                  [(0.5, 60, 0.5), (1.0, 64, 1.0)]),
    # <octave-change>: a guitar sounds an octave below written, a bass clarinet a ninth below
    "octave change": (musicxml(("Guitar", n("E", 4, 4)), ("Bass Clarinet", n("D", 4, 4)),
                               part_attributes="<transpose><diatonic>0</diatonic><chromatic>0</chromatic>"
                                               "<octave-change>-1</octave-change></transpose>").replace(
        b'<part id="P2"><measure number="1"><attributes><divisions>1</divisions>'
        b"<time><beats>4</beats><beat-type>4</beat-type></time><transpose><diatonic>0</diatonic><chromatic>0",
        b'<part id="P2"><measure number="1"><attributes><divisions>1</divisions>'
        b"<time><beats>4</beats><beat-type>4</beat-type></time><transpose><diatonic>-1</diatonic><chromatic>-2"),
                      [(0.0, 48, 2.0), (0.0, 52, 2.0)]),
    # a metronome mark with no <sound tempo> sets the tempo: half = 30 and dotted quarter = 40 are
    # both 60 quarters a minute
    "metronome marks": (musicxml(("Piano", metronome("half", "30") + n("C", 4, 2) + metronome("quarter", "c. 40", 1)
                                  + n("D", 4, 2))),
                        [(0.0, 60, 2.0), (2.0, 62, 2.0)]),
}


@pytest.mark.parametrize("case", list(PLAYBACK_CASES))
def test_musicxml_sounds_as_its_playback_elements_say(case: str) -> None:
    """Cue notes, octave changes and metronome marks sound as MusicXML 4.0 says, through partitura
    and through the music21 fallback alike."""
    from musicid.io.midi import TimeMap, midi_from_ticks
    from musicid.io.playback_xml import playback_xml
    from musicid.io.score import TICKS_PER_QUARTER, score_events

    data, expected = PLAYBACK_CASES[case]
    assert sounding(parse_score(data, f"{case}.musicxml")) == expected
    events, last, tempos = score_events(*_with_music21(playback_xml(data), kern=False), case)
    assert sounding(midi_from_ticks(events, TimeMap(TICKS_PER_QUARTER, tempos), last, case)) == expected


def test_a_sound_tempo_beside_a_metronome_mark_wins() -> None:
    """<sound tempo> is the playback tempo (MusicXML 4.0, <sound>); the printed mark beside it is not read."""
    data = musicxml(("Piano", metronome("quarter", "240", sound='<sound tempo="60"/>') + n("C", 4, 4)))
    assert sounding(parse_score(data, "both.musicxml")) == [(0.0, 60, 4.0)]


@pytest.mark.parametrize("case", list(KERN_CASES))
def test_kern_sounds_as_written(case: str) -> None:
    text, expected = KERN_CASES[case]
    assert sounding(parse_score(text.encode(), f"{case}.krn")) == expected


@pytest.mark.parametrize("case", ["two parts", "transposing part", "grace note", "repeat"])
def test_music21_fallback_reads_the_same_notes(case: str) -> None:
    """music21 reads what partitura cannot; through the same layer it gives the same notes."""
    from musicid.io.midi import TimeMap, midi_from_ticks
    from musicid.io.score import TICKS_PER_QUARTER, score_events

    data, expected = XML_CASES[case]
    events, last, tempos = score_events(*_with_music21(data, kern=False), case)
    assert sounding(midi_from_ticks(events, TimeMap(TICKS_PER_QUARTER, tempos), last, case)) == expected


def test_compressed_musicxml_reads_as_its_document() -> None:
    assert sounding(parse_score(mxl(TWO_PARTS), "two.mxl")) == XML_CASES["two parts"][1]
    assert sounding(parse_score(mxl(TWO_PARTS, container=None), "bare.mxl")) == XML_CASES["two parts"][1]


def test_parts_get_channels_and_programs_from_their_names() -> None:
    midi = parse_score(TWO_PARTS, "two.musicxml")
    programs = {ch: a for _, kind, ch, a, _ in midi.events if kind == PROGRAM}
    assert programs == {0: 40, 1: 42}  # violin, cello
    assert {(ch, a) for _, kind, ch, a, _ in midi.events if kind == NOTE_ON} == {(0, 66), (0, 70), (1, 48)}
    kern = parse_score(b'**kern\t**kern\n*Icello\t*Ivioln\n=1\t=1\n1C\t1c\n==\t==\n*-\t*-\n', "k.krn")
    assert sorted(a for _, kind, _, a, _ in kern.events if kind == PROGRAM) == [40, 42]


def test_dynamics_set_velocity() -> None:
    data = musicxml(("Piano", '<direction><direction-type><dynamics><p/></dynamics></direction-type></direction>'
                     + n("C", 4, 2) + '<direction><direction-type><dynamics><ff/></dynamics></direction-type>'
                     "</direction>" + n("D", 4, 2)))
    velocities = [b for _, kind, _, _, b in parse_score(data, "dyn.musicxml").events if kind == NOTE_ON]
    assert velocities == [55, 108]


def test_the_composer_comes_from_the_file(tmp_path: Path) -> None:
    assert composer_in(TWO_PARTS, "a.musicxml") == "Test Composer"
    assert composer_in(mxl(musicxml(("Piano", n("C", 4, 4)), composer="Clara  Wieck &amp; co")), "a.mxl") \
        == "Clara Wieck & co"
    assert composer_in(b"!!!COM: Fryderyk Chopin\n**kern\n4c\n*-\n", "a.krn") == "Fryderyk Chopin"
    assert composer_in(musicxml(("Piano", n("C", 4, 4)), composer=""), "a.musicxml") is None
    midi = tmp_path / "a.mid"
    midi.write_bytes(b"MThd")
    assert composer_of(midi) is None  # MIDI files carry no standard composer field


def test_a_score_and_its_midi_export_are_the_same_piece() -> None:
    """The notes hash and the piece sketch of a score equal those of a MIDI file with its notes."""
    import pretty_midi

    from musicid.features.piece_match import piece_sketch

    score = parse_score(XML_CASES["chords and voices"][0], "s.musicxml")
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(velocity=64, pitch=p, start=s, end=s + d) for s, p, d in sounding(score)]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    midi = parse_midi(buf.getvalue(), "s.mid")
    assert midi.notes_hash == score.notes_hash
    assert (piece_sketch(midi.events) == piece_sketch(score.events)).all()


def test_load_music_reads_either_kind(tmp_path: Path) -> None:
    (tmp_path / "s.xml").write_bytes(TWO_PARTS)
    assert load_music(tmp_path / "s.xml").n_notes == 3
    assert parse_music(TWO_PARTS, "s.MusicXML").n_notes == 3  # the suffix in any case


SHARED_CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "score-reader"


@pytest.mark.skipif(not SHARED_CASES.is_dir(), reason="the shared score cases are not beside this checkout")
def test_shared_score_cases_when_present() -> None:
    """Every shared case: the notes as expected_music21.json gives them (quarters; 120 a minute, or 60
    where the case marks it), grace notes dropped, repeats as written; and the composer named."""
    expected = json.loads((SHARED_CASES / "expected_music21.json").read_text())
    assert len(expected) == 13
    for name, case in expected.items():
        per_quarter = 1.0 if name in ("x06_tempo_mark.musicxml", "k04_grace_and_tempo.krn") else 0.5
        want = sorted((round(o * per_quarter, 4), p, round(d * per_quarter, 4)) for o, p, d in case["notes_quarters"])
        assert sounding(load_music(SHARED_CASES / name)) == want, name
        assert composer_of(SHARED_CASES / name) in ("Test Composer", None), name
    assert composer_of(SHARED_CASES / "x09_compressed.mxl") == "Test Composer"
    assert composer_of(SHARED_CASES / "k01_chords_ties.krn") == "Test Composer"


def test_unzip_refuses_what_is_no_musicxml_archive() -> None:
    with pytest.raises(ScoreError, match="no MusicXML document"):
        unzip_mxl(mxl(b"", container=None, members={}).replace(b"score.xml", b"score.txt"), "x.mxl")


def score_piece(seed: int, octave: int, measures: int = 6) -> bytes:
    """A piano score of `measures` bars of random quarter notes and chords in one octave."""
    import random

    rng = random.Random(seed)
    bars = []
    for _ in range(measures):
        bar = ""
        for _ in range(4):
            step = rng.choice("CDEFGAB")
            bar += n(step, octave, 1)
            if rng.random() < 0.4:
                bar += n(rng.choice("CDEFGAB".replace(step, "")), octave, 1, "<chord/>")
        bars.append(bar)
    return musicxml(("Piano", "<next/>".join(bars)), composer="")


def test_index_build_takes_composers_from_the_scores(tmp_path: Path) -> None:
    """--labels metadata: a flat folder of scores and MIDI, each score's own composer; MIDI files (no
    composer field) are skipped and counted; a MIDI export of an indexed score is that known piece."""
    import pretty_midi

    from musicid.build.indexer import build_index
    from musicid.recognize.query import QueryEngine

    from .conftest import tiny_options

    data = tmp_path / "mixed"
    data.mkdir()
    for i in range(6):
        low = score_piece(i, 3).replace(b"<part-list>", b'<identification><creator type="composer">Anna  Low'
                                        b"</creator></identification><part-list>")
        (data / f"low{i}.musicxml").write_bytes(low)
        high = score_piece(100 + i, 5).replace(b"<part-list>", b'<identification><creator type="composer">Ben High'
                                               b"</creator></identification><part-list>")
        (data / f"high{i}.mxl").write_bytes(mxl(high))
    export = tmp_path / "export.mid"
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    indexed = parse_score((data / "low0.musicxml").read_bytes(), "low0.musicxml")
    inst.notes = [pretty_midi.Note(velocity=80, pitch=p, start=s, end=s + d) for s, p, d in sounding(indexed)]
    pm.instruments.append(inst)
    pm.write(str(export))
    (data / "stray.mid").write_bytes(export.read_bytes())
    report = build_index(data, tmp_path / "index", tiny_options(tmp_path, labels="metadata"))
    assert report.composers == ["Anna Low", "Ben High"]
    assert report.tracks_per_composer == {"Anna Low": 6, "Ben High": 6}
    assert report.warnings == ["1 file(s) name no composer (MIDI files never do), skipped: stray.mid",
                               "the novelty threshold rests on 2 held-out tracks: it is rough "
                               "(more works per composer steady it)"]  # a tiny folder
    result = QueryEngine.open(tmp_path / "index").query(export)
    assert result.known_piece == "low0.musicxml"


def test_a_pickup_bar_starts_the_piece_at_zero() -> None:
    """An anacrusis (an implicit first bar of one quarter) sounds from 0 s, not before it."""
    data = musicxml(("Piano", n("G", 4, 1) + "<next/>" + n("C", 5, 4))).replace(
        b'<measure number="1">', b'<measure number="0" implicit="yes">', 1)
    assert sounding(parse_score(data, "pickup.musicxml")) == [(0.0, 67, 0.5), (0.5, 72, 2.0)]
