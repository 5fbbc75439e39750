"""One entry point for every music file musicid reads: MIDI (midi.py) or a score (score.py).

The suffix says which: .mid/.midi/.smf/.kar/.rmi are MIDI, .musicxml/.xml/.mxl/.krn are scores. Both
readers give a midi.Midi, so everything downstream (the roll, the render, the symbolic features,
the notes hash, the piece sketch) reads a score as it reads MIDI, and a folder may mix the two.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ScoreError
from .midi import READER_VERSION, Midi, parse_midi
from .score import SCORE_READER_VERSION, SCORE_SUFFIXES, parse_score
from .score_files import MAX_SCORE_BYTES, composer_in
from .smf import read_file_bytes, read_midi_bytes

MIDI_SUFFIXES = {".mid", ".midi", ".smf", ".kar", ".rmi"}
MUSIC_SUFFIXES = MIDI_SUFFIXES | SCORE_SUFFIXES
# what the readers are, as caches and index manifests record it: other readers, other notes
READERS = {"midi_reader": READER_VERSION, "score_reader": SCORE_READER_VERSION}


def is_score_name(name: str) -> bool:
    return Path(name).suffix.lower() in SCORE_SUFFIXES


def is_music_file(path: Path) -> bool:
    """A file musicid reads, by its suffix (any case); hidden files are not."""
    return path.suffix.lower() in MUSIC_SUFFIXES and not path.name.startswith(".")


def read_music_bytes(path: str | Path) -> bytes:
    """The file's bytes, or a ReadError saying why they cannot be had (missing, unreadable, larger
    than any real piece: 16 MB for MIDI, 32 MB for a score)."""
    path = Path(path)
    if is_score_name(path.name):
        return read_file_bytes(path, MAX_SCORE_BYTES, "score", ScoreError)
    return read_midi_bytes(path)


def parse_music(data: bytes, name: str) -> Midi:
    """Bytes of the file called `name` -> its notes: a score by the score reader where the suffix
    names a score, else MIDI. Raises ReadError (MidiError or ScoreError), one line naming the file."""
    return parse_score(data, name) if is_score_name(name) else parse_midi(data, name)


def load_music(path: str | Path) -> Midi:
    """Read and parse one MIDI file or score; every failure is a ReadError naming the file."""
    path = Path(path)
    return parse_music(read_music_bytes(path), path.name)


def composer_of(path: str | Path) -> str | None:
    """The composer the file itself names (a score's `<creator type="composer">` or `!!!COM`), or
    None: MIDI files carry no standard composer field. Raises ReadError when it cannot be read."""
    path = Path(path)
    if not is_score_name(path.name):
        return None
    return composer_in(read_music_bytes(path), path.name)
