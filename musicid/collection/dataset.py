"""Composer-labelled folders of MIDI files and scores: finding tracks, grouping them into works, splitting.

A data folder is <root>/<Composer>/*.mid (also .midi, any case, and scores: .musicxml, .xml, .mxl,
.krn; reader.py), with any
folders between: Composer/Collection/piece.mid, or a folder per piece,
Composer/Collection/Piece/{score,performance}.mid. A *work* is what must never
straddle a train/held-out split: all movements of one catalog number or of one
work folder, and every file with identical notes or of the same piece
(piece_match.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataDirError
from ..io.reader import is_music_file

# "<title>_<catalog>_<id>_<short>", e.g. "Cello Suite 3_BWV1009_2217_cs3-1pre"
_CATALOG = re.compile(r"_([A-Za-z]{1,4}\d+[A-Za-z0-9]*)_\d+_")
# one trailing movement marker after a separator: "-movement1", ".6", "_m2", " III", "-2b"
_MOVEMENT_SUFFIX = re.compile(r"[\s_\-.]+(movement|mvt|mov|part|no|m)?\s*(\d+[a-z]?|[ivx]+)$", re.IGNORECASE)

# a piece folder's movement number: after a number and a separator, "21-1", "664-3", "31-3_4"
_FOLDER_MOVEMENT = re.compile(r"(?<=\d)[\-_.]\d+[a-z]?$")


LABELS = ("folders", "metadata")  # where a track's composer comes from: its folder, or the file itself


@dataclass(frozen=True)
class TrackRef:
    path: Path
    composer: str | None  # None for unlabelled query folders
    base: Path | None = None  # the folder work keys are read below (work_key's composer_dir)


def list_music_files(folder: Path) -> list[Path]:
    """MIDI files and scores directly in a folder or below it, sorted. Symbolic links are followed,
    to files and to folders (each real folder read once, so a link loop ends), so collections can be
    linked under one root; a dangling link to a file is listed, for its reader to report."""
    found: list[Path] = []
    seen: set[str] = set()
    for where, subdirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(where)
        if real in seen:
            subdirs.clear()
            continue
        seen.add(real)
        found += [p for p in (Path(where) / f for f in files) if is_music_file(p)]
    return sorted(found)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataDirError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataDirError(f"not a folder: {root}")


def _check_count(root: Path, composers: list[str], min_composers: int) -> None:
    if len(composers) < min_composers:
        shown = ", ".join(composers[:8]) + (", ..." if len(composers) > 8 else "")
        raise DataDirError(f"{root}: {len(composers)} composer(s) ({shown}); training needs at least {min_composers}")


def scan_labelled(root: str | Path, min_composers: int = 1, labels: str = "folders",
                  ) -> tuple[list[TrackRef], list[str]]:
    """Tracks of a labelled folder and the warnings a user should see.

    labels "folders": <root>/<Composer>/... , the composer is the folder's name. labels "metadata":
    every file below root, the composer is the one the file names (a score's `<creator
    type="composer">` or kern `!!!COM`, reader.composer_of); files that name none (every MIDI file)
    or cannot be read are skipped and counted in the warnings. Raises DataDirError when the layout
    is not usable at all, or holds fewer than min_composers composers."""
    root = Path(root)
    _check_root(root)
    if labels not in LABELS:
        raise DataDirError(f"labels must be one of {', '.join(LABELS)}, not {labels!r}")
    if labels == "metadata":
        return _scan_by_metadata(root, min_composers)
    warnings: list[str] = []
    tracks: list[TrackRef] = []
    composers: list[str] = []
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for d in subdirs:
        files = list_music_files(d)
        if not files:
            warnings.append(f"{d.name}/: no MIDI files or scores, composer skipped")
            continue
        composers.append(d.name)
        tracks += [TrackRef(f, d.name, d) for f in files]
    if not composers:
        loose = [p for p in root.iterdir() if is_music_file(p)]
        hint = (f" ({len(loose)} music files lie directly in it: put each composer's in a subfolder, "
                "or take composers from the files with --labels metadata)" if loose else "")
        raise DataDirError(f"{root}: no <Composer>/*.mid subfolders{hint}")
    _check_count(root, composers, min_composers)
    return tracks, warnings


def _scan_by_metadata(root: Path, min_composers: int) -> tuple[list[TrackRef], list[str]]:
    from ..errors import ReadError
    from ..io.reader import composer_of

    tracks: list[TrackRef] = []
    unnamed: list[str] = []
    unreadable: list[str] = []
    for f in list_music_files(root):
        try:
            composer = composer_of(f)
        except ReadError as e:
            unreadable.append(str(e))
            continue
        if composer is None:
            unnamed.append(str(f.relative_to(root)))
        else:
            tracks.append(TrackRef(f, composer, root))
    warnings = []
    if unnamed:
        warnings.append(f"{len(unnamed)} file(s) name no composer (MIDI files never do), skipped: "
                        + ", ".join(unnamed[:3]) + (", ..." if len(unnamed) > 3 else ""))
    if unreadable:
        warnings.append(f"{len(unreadable)} file(s) unreadable, skipped: " + "; ".join(unreadable[:3])
                        + ("; ..." if len(unreadable) > 3 else ""))
    composers = sorted({str(t.composer) for t in tracks})
    if not composers:
        raise DataDirError(f"{root}: no file below it names its composer (--labels metadata reads a score's "
                           "<creator type=\"composer\"> or kern !!!COM)")
    _check_count(root, composers, min_composers)
    return tracks, warnings


def scan_unlabelled(path: str | Path) -> list[TrackRef]:
    """A single MIDI file or score, or every one below a folder."""
    path = Path(path)
    if not path.exists():
        raise DataDirError(f"not found: {path}")
    if path.is_file():
        return [TrackRef(path, None)]
    files = list_music_files(path)
    if not files:
        raise DataDirError(f"{path}: no MIDI files or scores")
    return [TrackRef(f, None) for f in files]


def _piece_to_work(folder: str) -> str:
    """A piece folder's work: its trailing movement numbers dropped while a number remains
    ("21-1" -> "21", "31-3_4" -> "31"); a catalog id keeps its number ("bwv_846")."""
    while (m := _FOLDER_MOVEMENT.search(folder)) and m.start() > 0:
        folder = folder[:m.start()]
    return folder


def work_key(path: Path, composer: str | None, group_by: str | None = None,
             composer_dir: Path | None = None) -> str:
    """The work a file belongs to, as "<composer>/<key>".

    path below composer_dir (the composer's folder; without it, path is taken as relative to it):
    - two or more folders down (Composer/Collection/Piece/x.mid, ASAP's layout), the file is a
      version of the piece its folder holds (a score, a performance): the key is the folder path,
      its last part less one movement suffix ("Piano_Sonatas/21-1" -> "Piano_Sonatas/21");
    - one folder down (Composer/Collection/x.mid, DCML's layout), the folder is a collection of
      pieces: the key is the folder and the file's own key ("beethoven_piano_sonatas/01");
    - directly in the composer folder: the file's own key, its catalog id ("_BWV1009_") or its stem
      less one movement suffix.
    group_by, a regex, overrides all of these: its first group (or match) in the path below the
    composer folder, less the file suffix ("Piano_Sonatas/21-1/midi_score" or a flat file's stem).
    Files a folder rule keeps apart can still be one piece: group_works joins them by their notes."""
    rel = path.relative_to(composer_dir) if composer_dir is not None else path
    folders = rel.parts[:-1]
    if group_by:
        where = rel.with_suffix("").as_posix()
        m = re.search(group_by, where)
        key = (m.group(1) if m and m.groups() else m.group(0)) if m else where
    elif len(folders) >= 2:
        key = "/".join((*folders[:-1], _piece_to_work(folders[-1])))
    else:
        m = _CATALOG.search(path.stem)
        key = m.group(1).upper() if m else (_MOVEMENT_SUFFIX.sub("", path.stem) or path.stem)
        key = "/".join((*folders, key))
    return f"{composer or ''}/{key}"


def group_works(keys: Sequence[str], notes_hashes: Sequence[str], sketches: np.ndarray | None = None) -> np.ndarray:
    """Integer group per track: the same work key, the same notes (notes hash) or the same piece
    (piece_match sketches, (n, N_SLOTS), at least SAME_PIECE alike) means the same group (union-find).
    A performance, an edition without repeats, or one sonata filed in two collections is one group."""
    from ..features.piece_match import same_piece_pairs

    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, k in enumerate(list(keys)):
        for label in (f"w:{k}", f"f:{notes_hashes[i]}"):
            if label in first:
                parent[find(i)] = find(first[label])
            else:
                first[label] = i
    if sketches is not None and len(keys):
        for i, j in same_piece_pairs(sketches):
            parent[find(int(i))] = find(int(j))
    roots = [find(i) for i in range(len(keys))]
    _, groups = np.unique(roots, return_inverse=True)
    return groups


def holdout_split(composers: Sequence[str], groups: np.ndarray, fraction: float = 0.2,
                  seed: int = 0) -> np.ndarray:
    """Boolean mask of held-out tracks: about `fraction` of each composer's tracks, whole works only.

    Works are taken in random order while they fit in 1.5x the share, so one big work
    cannot swamp the split; if none fits, the smallest is held out. A composer with a
    single work has none held out: it keeps it for training.
    """
    rng = np.random.default_rng(seed)
    composers_arr = np.asarray(composers)
    held = np.zeros(len(composers_arr), dtype=bool)
    for c in sorted(set(composers)):
        mine = np.flatnonzero(composers_arr == c)
        works = np.unique(groups[mine])
        if len(works) < 2:
            continue
        target = fraction * len(mine)
        sizes = {int(w): int((groups[mine] == w).sum()) for w in works}
        taken = 0
        for w in rng.permutation(works):
            if taken >= target:
                break
            if taken + sizes[int(w)] > max(1.5 * target, 1):  # one big work must not swamp the split
                continue
            held[mine[groups[mine] == w]] = True
            taken += sizes[int(w)]
        if taken == 0:  # every work is bigger than the share: hold out the smallest one
            w = min(rng.permutation(works), key=lambda w: sizes[int(w)])
            held[mine[groups[mine] == w]] = True
    return held


def kfold_groups(labels: Sequence[str], groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold number per track: whole groups per fold, each composer's works dealt round the folds."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    fold = np.full(len(labels_arr), -1)
    load = np.zeros(k)
    for c in sorted(set(labels)):
        mine = np.flatnonzero(labels_arr == c)
        works = rng.permutation(np.unique(groups[mine]))
        sizes = {w: int((groups[mine] == w).sum()) for w in works}
        per_fold = np.zeros(k)
        for w in sorted(works, key=lambda w: -sizes[w]):  # largest first, to the lightest fold
            f = int(np.lexsort((load, per_fold))[0])
            fold[mine[groups[mine] == w]] = f
            per_fold[f] += sizes[w]
            load[f] += sizes[w]
    return fold
