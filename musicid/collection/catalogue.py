"""What a labelled collection's own catalogue says of each track: its collection, genre and work.

The handed collections describe their files in a `metadata.csv` at their root (OpenScore Lieder and
String Quartets, the Polish Music Heritage scores and DCML's corpora: one row per file with `path`,
`work` and `genre`; DCML's piano corpus: `midi` and `work`; ASAP: `folder`, `midi_score`,
`midi_performance`). The many-composer protocols (protocols.py) and the general embedder's
genre-balanced training read it: a *work* keeps every movement and version of a piece on one side of
a split, and the *genre* (song, vocal, keyboard, chamber, string_quartet, orchestral, solo) is what
leave-genres-out enrols and queries apart.

A file the catalogue does not list, or a collection with none, falls back to the folder rules of
dataset.work_key and to its collection's genre in COLLECTION_GENRES ("unknown" elsewhere).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .dataset import work_key

CATALOGUE_FILE = "metadata.csv"
UNKNOWN_GENRE = "unknown"
# collections whose catalogue has no genre column, by folder name: ASAP and DCML's piano corpus are
# piano music; the challenge set's training folder mixes piano and chamber works without saying which
COLLECTION_GENRES = {"asap": "keyboard", "dcml-piano": "keyboard", "train": "mixed"}
_PATH_COLUMNS = ("path", "midi", "midi_score", "midi_performance")


@dataclass(frozen=True)
class TrackInfo:
    composer: str
    collection: str  # the collection's folder name ("openscore-lieder"; "sfl-challenge/train")
    genre: str
    work: str  # "<composer>/<key>": the catalogue's work, else dataset.work_key's


def _collection_name(root: Path) -> str:
    return f"{root.parent.name}/{root.name}" if root.name in ("train", "test") else root.name


@lru_cache(maxsize=64)
def _rows(root: str) -> dict[str, dict[str, str]]:
    """A collection's catalogue: the real path of each file it lists -> its row; {} without one."""
    f = Path(root) / CATALOGUE_FILE
    if not f.is_file():
        return {}
    out: dict[str, dict[str, str]] = {}
    with f.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for col in _PATH_COLUMNS:
                if row.get(col) and not row[col].startswith("{"):
                    out[os.path.realpath(Path(root) / row[col])] = row
    return out


def _collection_root(real: Path, composer: str) -> Path:
    """The collection a file lies in: the nearest folder above it with a catalogue, else the folder
    above its composer's folder."""
    for parent in real.parents:
        if (parent / CATALOGUE_FILE).is_file():
            return parent
    for parent in real.parents:
        if parent.name == composer:
            return parent.parent
    return real.parent


def track_info(path: Path, composer: str) -> TrackInfo:
    """One labelled track's collection, genre and work, through any symbolic links to its real file."""
    real = Path(os.path.realpath(path))
    root = _collection_root(real, composer)
    row = _rows(str(root)).get(str(real), {})
    genre = row.get("genre") or COLLECTION_GENRES.get(root.name, UNKNOWN_GENRE)
    if row.get("work"):
        work = f"{composer}/{row['work']}"
    elif row.get("folder"):  # ASAP: a folder per piece, scores and performances inside
        work = f"{composer}/{row['folder']}"
    else:
        composer_dir = next((p for p in real.parents if p.name == composer), None)
        work = work_key(real, composer, None, composer_dir) if composer_dir else f"{composer}/{real.stem}"
    return TrackInfo(composer, _collection_name(root), genre, work)


def catalogue(paths: Sequence[Path], composers: Sequence[str]) -> list[TrackInfo]:
    """track_info of each (path, composer), in order."""
    return [track_info(p, c) for p, c in zip(paths, composers, strict=True)]
