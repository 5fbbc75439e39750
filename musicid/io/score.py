"""Read a score (MusicXML, compressed MusicXML, Humdrum **kern) into the MIDI reader's Midi.

A score becomes the same note events a MIDI file gives (midi.Midi): sounding pitch, onset and
duration in seconds through the score's tempo marks, each part on its own channel with a General
MIDI program named by the part, velocity from the dynamics marked. So the piano roll, the symbolic
features, the notes hash, the piece sketch and the rendered audio all work on scores unchanged.

MusicXML is read by partitura (Cancino-Chacón et al., "Partitura: A Python Package for Symbolic
Music Processing", 2022; version 1.9), chosen by measurement over music21, verovio and muspy
(docs/PERFORMANCE.md, "Score reader"); kern by musicid's own linear pass (kern.py), which the same
measurement found right, faster and able to read every handed file; music21 (and partitura, for kern)
read what the first reader cannot, kern over FALLBACK_MAX_BYTES excepted. What musicid adds around
them is only what none of them does (the bytes' safety and the composer's name in score_files.py,
the rest here):

- bounded, safe input: a size limit; `.mxl` archives opened by us (no member outside the archive,
  no member that inflates past MAX_XML_BYTES, read in bounded chunks whatever its header claims);
  XML that declares entities is refused before any parser sees it (XXE, "billion laughs"); lxml's
  default depth limit (256) stops absurdly nested XML; kern without a **kern spine, or with NUL
  bytes, is refused up front;
- how the notes sound: grace notes are dropped (partitura gives them no duration; music21 and the
  DCML conversions do the same or give them a 32nd), cue notes are silent, a transposing part's
  `<transpose>` is applied with its `<octave-change>` (a B-flat clarinet's written D4 sounds C4, a
  guitar's written E4 sounds E3) (playback_xml.py), onsets and durations in quarters are turned into
  seconds through the tempo marks (`<sound tempo>`, `<metronome>`, kern `*MM`; 120 quarters a
  minute until the first one, as in MIDI), repeats are read once as written, never unfolded;
- the composer written in the file (MusicXML `<creator type="composer">`, kern `!!!COM`).

Every failure is a ScoreError whose message is one line naming the file and the fault.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import sys
import tempfile
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ScoreError
from .kern import KernTooLarge
from .midi import Midi, TimeMap, midi_from_ticks
from .playback_xml import playback_xml
from .score_files import MAX_SCORE_BYTES, check_kern, check_xml, unzip_mxl
from .smf import CONTROL, DRUM_CHANNEL, MAX_TRACK_SECONDS, NOTE_OFF, NOTE_ON, PROGRAM, TickEvent

SCORE_SUFFIXES = {".musicxml", ".xml", ".mxl", ".krn"}
# Bumped whenever the score reader can give a file other events; recorded with midi.READER_VERSION
# in the feature-cache key and the index manifest.
SCORE_READER_VERSION = 2  # 2: cue notes silent, <octave-change>, <metronome> marks, kern *ITr/*Tr
FALLBACK_MAX_BYTES = 1024 * 1024  # kern larger than this is read by musicid's pass alone (kern.py)
MAX_NOTES = 1_000_000  # more notes than any piece holds (a 40-minute quartet: ~22,000): refused, bounding memory
TICKS_PER_QUARTER = 10080  # divisible by 2^5, 3^2, 5 and 7: every common tuplet lands on a tick
# more quarters than an hour holds at 1,000 a minute: absurd durations stop here, before any table is built
MAX_TICKS = int(MAX_TRACK_SECONDS / 60 * 1000) * TICKS_PER_QUARTER
DEFAULT_VELOCITY = 80  # where no dynamic is marked (MuseScore's mf; DCML's conversions use 80)
VOICE_PROGRAM = 52  # Choir Aahs: a sung part
VELOCITY_OF = {"pppp": 20, "ppp": 30, "pp": 40, "p": 55, "mp": 65, "mf": 80, "f": 95, "ff": 108,
               "fff": 118, "ffff": 127, "sf": 100, "sfz": 100, "fz": 100, "rf": 95, "fp": 55}

# part name -> General MIDI program (0-based); the first pattern that matches wins
PART_PROGRAMS = [
    (r"sopran|alto|altus|tenor|cantus|bassus|quint|sext|voice|vox|canto|basso(?!on)|^bass(\s|$)|"
     r"singstimme|gesang|chant|voix|coro|choir|chorus", VOICE_PROGRAM),
    (r"violin|violino|vl\.|^vn", 40), (r"viola|^va\b", 41), (r"cello|violoncello|^vc\b", 42),
    (r"contrabass|double bass|violone|^cb\b", 43),
    (r"flute|flauto|traverso", 73), (r"oboe", 68), (r"clarinet", 71), (r"bassoon|fagott", 70),
    (r"horn|corno", 60), (r"trumpet|tromba|clarino", 56), (r"trombone", 57), (r"timpani", 47),
    (r"organ|organo", 19), (r"harpsichord|cembalo|continuo", 6), (r"harp\b|arpa", 46),
    (r"guitar|chitarra", 24), (r"lute|liuto|theorbo", 24),
    (r"piano|klavier|pianoforte", 0),
]
def program_for(part_name: str, instrument_program: int | None, sung: bool = False) -> int:
    """GM program for a part: named by the part ("Violin 1", "Tenor"), else a voice if it has
    lyrics, else the score's own program, else piano. Part names come first because score
    encoders often leave a default piano on every part."""
    name = (part_name or "").lower()
    for pattern, program in PART_PROGRAMS:
        if re.search(pattern, name):
            return program
    if sung:
        return VOICE_PROGRAM
    return int(instrument_program) if instrument_program is not None else 0


@dataclass(frozen=True)
class PartNotes:
    """One part of a score as it sounds, in quarter notes from the start (the libraries' unit)."""

    name: str  # the part's name ("Violin 1"), "" where the score gives none
    notes: list[tuple[float, float, int, int]]  # (onset, end, sounding MIDI pitch, velocity)
    program: int | None = None  # a GM program the score gives by code (kern *I), used where the name says none


Tempos = list[tuple[float, int]]  # (quarter, microseconds a quarter), in time order


@functools.cache
def _partitura() -> Any:
    """partitura, imported so that it cannot reach the network: partitura 1.9 downloads a 30 MB
    SoundFont at import whenever pyfluidsynth is importable (partitura/utils/fluidsynth.py). Hiding
    pyfluidsynth while it imports keeps partitura to its readers; musicid renders through its own
    FluidSynth wrapper (render.py)."""
    saved = sys.modules.get("fluidsynth")
    sys.modules["fluidsynth"] = None  # type: ignore[assignment]  # import fluidsynth -> ImportError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import partitura
    finally:
        if saved is None:
            del sys.modules["fluidsynth"]
        else:
            sys.modules["fluidsynth"] = saved
    return partitura


def _with_partitura(xml_or_kern: bytes, kern: bool) -> tuple[list[PartNotes], Tempos]:
    """The parts and tempo marks partitura reads: ties joined, tuplets exact, grace notes (partitura's
    GraceNote, no duration) left out, each part's `<transpose>` in force added to the written pitch."""
    import numpy as np

    pt = _partitura()
    if kern:
        with tempfile.TemporaryDirectory(prefix="musicid-kern-") as tmp:  # load_kern reads a path
            path = Path(tmp) / "score.krn"
            path.write_bytes(xml_or_kern)
            score = pt.load_kern(str(path), quiet=True)
    else:
        score = pt.load_musicxml(io.BytesIO(xml_or_kern), quiet=True)
    parts: list[PartNotes] = []
    tempos: dict[float, int] = {}
    for part in score.parts:
        shifts = sorted((int(t.start.t), int(t.chromatic or 0)) for t in part.iter_all(pt.score.Transposition))
        shift_at, shift_by = [t for t, _ in shifts], [c for _, c in shifts]
        marks = sorted((int(d.start.t), VELOCITY_OF.get(str(getattr(d, "text", "") or "").strip().lower(), 0))
                       for d in part.iter_all(pt.score.ConstantLoudnessDirection))
        marks = [(t, v) for t, v in marks if v]
        dyn_at, dyn_velocity = [t for t, _ in marks], [v for _, v in marks]
        starts, ends, keys, velocities = [], [], [], []
        for note in part.notes_tied:
            if isinstance(note, pt.score.GraceNote):
                continue
            start = int(note.start.t)
            end_point = getattr(note, "end_tied", None) or note.end
            i, j = bisect_right(shift_at, start) - 1, bisect_right(dyn_at, start) - 1
            starts.append(start)
            ends.append(int(end_point.t) if end_point is not None else start)
            keys.append(int(note.midi_pitch) + (shift_by[i] if i >= 0 else 0))
            velocities.append(dyn_velocity[j] if j >= 0 else DEFAULT_VELOCITY)
        # divisions -> quarters for every onset and end at once (one call: it interpolates a table)
        quarters = np.asarray(part.quarter_map(np.asarray(starts + ends, dtype=np.int64)), dtype=np.float64)
        n = len(starts)
        notes = list(zip(quarters[:n].tolist(), quarters[n:].tolist(), keys, velocities, strict=True))
        parts.append(PartNotes(str(getattr(part, "part_name", "") or ""), notes))
        for tempo in part.iter_all(pt.score.Tempo):
            try:
                us = int(tempo.microseconds_per_quarter)
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                continue
            tempos.setdefault(float(part.quarter_map(tempo.start.t)), us)  # the first part's mark wins
    return parts, sorted(tempos.items())


def _with_music21(xml_or_kern: bytes, kern: bool) -> tuple[list[PartNotes], Tempos]:
    """The same from music21 (converter.parseData; ties stripped, sounding pitch, grace notes left
    out): the fallback for scores partitura cannot read (7.8% of the Polish kern files measured, its
    spine-split handling)."""
    from music21 import converter, dynamics, tempo

    text: str | bytes = xml_or_kern.decode("utf-8", "replace") if kern else xml_or_kern
    noise = io.StringIO()  # music21 prints its parser's warnings ("humdrum.spineParser: WARNING ...")
    with warnings.catch_warnings(), contextlib.redirect_stderr(noise), contextlib.redirect_stdout(noise):
        warnings.simplefilter("ignore")
        stream = converter.parseData(text, format="humdrum" if kern else "musicxml")
        stream = stream.toSoundingPitch().stripTies()
    tempos: dict[float, int] = {}
    for mark in stream.flatten().getElementsByClass(tempo.MetronomeMark):
        bpm = mark.getQuarterBPM()
        if bpm:
            tempos.setdefault(float(mark.offset), round(60_000_000 / bpm))
    parts = []
    for part in (stream.parts or [stream]):
        levels = sorted((float(d.getOffsetInHierarchy(part)), VELOCITY_OF.get(str(d.value).lower(), 0))
                        for d in part.recurse().getElementsByClass(dynamics.Dynamic))
        levels = [(q, v) for q, v in levels if v]
        level_at = [q for q, _ in levels]
        notes = []
        for n in part.recurse().notes:
            if n.duration.isGrace:
                continue
            onset = float(n.getOffsetInHierarchy(part))
            j = bisect_right(level_at, onset) - 1
            for pitch in n.pitches:
                notes.append((onset, onset + float(n.quarterLength), int(pitch.midi),
                              levels[j][1] if j >= 0 else DEFAULT_VELOCITY))
        parts.append(PartNotes(str(part.partName or ""), notes))
    return parts, sorted(tempos.items())


def _with_kern(text: bytes, kern: bool) -> tuple[list[PartNotes], Tempos]:
    """musicid's own linear **kern pass (kern.py), first for kern: measured the fastest and the one
    that reads every handed file."""
    from .kern import read_kern

    parts, tempos = read_kern(text.decode("utf-8", "replace"))
    return ([PartNotes(p.name, [(float(on), float(off), int(key), DEFAULT_VELOCITY) for on, off, key in p.notes],
                       p.program) for p in parts],
            [(float(q), us) for q, us in tempos])


def _read(data: bytes, name: str) -> tuple[list[PartNotes], Tempos]:
    """Parts and tempo marks of a score's bytes, by partitura, else by music21 where partitura fails;
    ScoreError (one line) when neither reads it."""
    suffix = Path(name).suffix.lower()
    kern = suffix == ".krn"
    if kern:
        check_kern(data, name)
        doc = data
    else:
        doc = check_xml(unzip_mxl(data, name) if suffix == ".mxl" and data.startswith(b"PK") else data, name)
        if re.search(rb"<score-timewise\b", doc[:1 << 16]):
            raise ScoreError(f"{name}: a timewise MusicXML score (only partwise scores are read)")
        for value in re.findall(rb"<divisions>([^<]{0,64})</divisions>", doc):
            try:
                divisions = float(value.strip())
            except ValueError:
                divisions = float("nan")
            if not (math.isfinite(divisions) and divisions > 0):
                shown = value.strip().decode("ascii", "replace")[:20]
                raise ScoreError(f"{name}: <divisions> is {shown}: its note durations mean nothing")
        doc = playback_xml(doc)  # cue notes silent, octave transpositions, metronome marks (playback_xml.py)
    failures = []
    readers: tuple[Callable[[bytes, bool], tuple[list[PartNotes], Tempos]], ...] = (
        (_with_kern, _with_partitura, _with_music21) if kern else (_with_partitura, _with_music21))
    if kern and len(doc) > FALLBACK_MAX_BYTES:
        readers = (_with_kern,)  # the libraries' kern readers take minutes on a large file: no fallback there
    for reader in readers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return reader(doc, kern)
        except RecursionError as e:
            raise ScoreError(f"{name}: unreadable score (nested too deeply)") from e
        except KernTooLarge as e:
            raise ScoreError(f"{name}: {e}") from e
        except MemoryError as e:
            raise ScoreError(f"{name}: unreadable score (too large to hold in memory)") from e
        except Exception as e:  # noqa: BLE001 - the libraries raise anything from lxml's errors to IndexError
            detail = " ".join(str(e).split())[:120]
            failures.append(f"{type(e).__name__}{': ' + detail if detail else ''}")
    what = "kern" if kern else "MusicXML"
    names = ("musicid", "partitura", "music21") if kern else ("partitura", "music21")
    said = "; ".join(f"{who}: {why}" for who, why in zip(names, failures, strict=False))
    raise ScoreError(f"{name}: unreadable {what} ({said})")


# ---------------------------------------------------------------- notes as they sound


def _channels() -> Iterator[int]:
    """MIDI channels for parts in turn, skipping the drum channel; past 15 parts they are reused."""
    while True:
        yield from (c for c in range(16) if c != DRUM_CHANNEL)


def _ticks(quarters: float) -> int:
    return round(quarters * TICKS_PER_QUARTER)


def score_events(parts: list[PartNotes], tempos: Tempos, name: str,
                 ) -> tuple[list[TickEvent], int, list[tuple[int, int]]]:
    """Parts -> (tick events in time order, last tick, tempo changes (tick, microseconds a quarter))
    at TICKS_PER_QUARTER ticks a quarter: one channel per part, its program first (named by the
    part, else the program the score gives by code, else piano). Tempo marks outside 1 to 60 million
    quarters a minute are ignored. Raises ScoreError for a sounding pitch outside MIDI's 0-127 and
    for a score whose onsets or lengths are not finite."""
    if sum(len(part.notes) for part in parts) > MAX_NOTES:
        raise ScoreError(f"{name}: over {MAX_NOTES:,} notes, more than any piece holds")
    events: list[TickEvent] = []
    last_tick = 0
    # partitura puts a pickup (anacrusis) before 0: the piece starts at its first note, as in MIDI
    earliest = min((on for part in parts for on, *_ in part.notes if math.isfinite(on)), default=0.0)
    shift = -min(0.0, earliest)
    for index, (part, channel) in enumerate(zip(parts, _channels(), strict=False)):
        events.append((0, PROGRAM, channel, program_for(part.name, part.program), 0))
        for onset, end, pitch, velocity in part.notes:
            if not (math.isfinite(onset) and math.isfinite(end)):
                raise ScoreError(f"{name}: a note with no finite onset or length")
            if not 0 <= pitch <= 127:
                raise ScoreError(f"{name}: a note at MIDI pitch {pitch} ({part.name or f'part {index + 1}'}, "
                                 "sounding), outside MIDI's 0-127")
            on, off = _ticks(onset + shift), _ticks(end + shift)
            if off <= on or on < 0:
                continue
            events += [(on, NOTE_ON, channel, pitch, velocity), (off, NOTE_OFF, channel, pitch, 0)]
            last_tick = max(last_tick, off)
    # at one tick: programs, then note-offs before note-ons (a repeated key sounds twice)
    order = {PROGRAM: 0, CONTROL: 1, NOTE_OFF: 2, NOTE_ON: 3}
    events.sort(key=lambda e: (e[0], order.get(e[1], 4)))
    changes = [(max(0, _ticks(q + shift)), us) for q, us in tempos if math.isfinite(q) and 0 < us <= 60_000_000]
    return events, last_tick, changes


def parse_score(data: bytes, name: str = "<bytes>") -> Midi:
    """Parse score bytes (the suffix of `name` says which notation: .musicxml/.xml, .mxl, .krn)
    into a Midi, as midi.parse_midi does for MIDI bytes. Raises ScoreError, one line naming the
    file and the fault, for anything that is not a readable score with notes."""
    if len(data) > MAX_SCORE_BYTES:
        raise ScoreError(f"{name}: {len(data) / 1e6:.0f} MB is too large for a score")
    if not data.strip():
        raise ScoreError(f"{name}: empty file")
    parts, tempos = _read(data, name)
    events, last_tick, changes = score_events(parts, tempos, name)
    if last_tick <= 0:
        raise ScoreError(f"{name}: no notes with a positive length")
    if last_tick > MAX_TICKS:
        raise ScoreError(f"{name}: lasts {last_tick / TICKS_PER_QUARTER:.0f} quarter notes, too long for a piece")
    return midi_from_ticks(events, TimeMap(TICKS_PER_QUARTER, changes), last_tick, name, ScoreError)
