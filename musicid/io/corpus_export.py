"""A starter corpus from music21's bundled scores, written as <Composer>/<work>.mid.

music21 parses the scores; the MIDI is written here with pretty_midi from the
parsed notes (music21's own writer is slow, expands repeats, and puts every
part on channel 0). Each part gets its own channel and a General MIDI program,
no text metadata is written, each work is bounded in length and time, and a
work that fails is skipped with its reason.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_with
from ..errors import MusicIdError
from ..progress import ProgressFn
from .score import program_for

DEFAULT_COMPOSERS = ("bach", "palestrina", "monteverdi", "trecento", "josquin", "mozart", "haydn")
SCORE_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid"}
MAX_SECONDS = 900.0  # a work longer than this is cut
MAX_NOTES = 40000
PARSE_TIMEOUT = 120.0

# part name keyword -> General MIDI program (0-based)


class CorpusError(MusicIdError):
    """music21 is missing, or a composer is not in its corpus."""


@dataclass
class ExportReport:
    out: Path
    written: dict[str, int]  # composer -> works written (including ones already there)
    reused: int
    failures: list[tuple[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "written": self.written, "reused": self.reused,
                "failures": [{"work": w, "reason": r} for w, r in self.failures]}


def _composer_dir_name(composer: str) -> str:
    return composer.replace("_", " ").title().replace(" ", "")


def list_works(composer: str, max_works: int | None) -> list[Path]:
    """Score files of a music21 composer (analyses skipped), evenly sampled down to max_works."""
    try:
        from music21 import corpus
    except ImportError as e:
        raise CorpusError("music21 is not installed: pip install music21") from e
    paths = sorted({Path(p) for p in corpus.getComposer(composer) if Path(p).suffix.lower() in SCORE_SUFFIXES},
                   key=str)
    if not paths:
        raise CorpusError(f"music21 has no scores for composer '{composer}'")
    if max_works and len(paths) > max_works:
        import numpy as np

        idx = np.linspace(0, len(paths) - 1, max_works).round().astype(int)
        paths = [paths[i] for i in sorted(set(idx))]
    return paths


def score_to_midi(score: Any, out: Path) -> int:
    """Write a parsed music21 score as MIDI with one channel and program per part; return notes written."""
    from .render import fluidsynth_module

    fluidsynth_module()  # pretty_midi imports it; this way its stdout print is swallowed
    import pretty_midi

    boundaries = score.metronomeMarkBoundaries()
    def seconds(ql: float) -> float:
        t = 0.0
        for start, end, mark in boundaries:
            qpm = mark.getQuarterBPM() or 96.0
            if ql <= start:
                break
            t += (min(ql, end) - start) * 60.0 / qpm
        return t

    pm = pretty_midi.PrettyMIDI()
    n_notes = 0
    parts = list(score.parts) or [score]
    for part in parts:
        inst = part.getInstrument(returnDefault=True)
        notes = list(part.flatten().notes)
        program = program_for(part.partName or "", inst.midiProgram, any(n.lyric for n in notes[:50]))
        track = pretty_midi.Instrument(program=program)
        for n in notes:
            start_ql = float(n.getOffsetInHierarchy(score) if n.activeSite is not None else n.offset)
            start = seconds(start_ql)
            end = seconds(start_ql + float(n.quarterLength))
            if end <= start or start > MAX_SECONDS:
                continue
            vel = int(n.volume.velocity or 80) if n.volume is not None else 80
            for p in getattr(n, "pitches", ()):
                track.notes.append(pretty_midi.Note(velocity=vel, pitch=int(p.midi), start=start,
                                                    end=min(end, MAX_SECONDS)))
                n_notes += 1
            if n_notes > MAX_NOTES:
                raise CorpusError(f"over {MAX_NOTES} notes")
        if track.notes:
            pm.instruments.append(track)
    if not n_notes:
        raise CorpusError("no notes")
    # pretty_midi gives each instrument its own channel, skipping the drum channel
    write_with(out, lambda tmp: pm.write(str(tmp)))
    return n_notes


def _export_one(src: Path, out: Path) -> str | None:
    """Parse and write one work; None on success, else the reason."""
    try:
        from music21 import converter, stream
        score = converter.parse(str(src))
        if isinstance(score, stream.Opus):  # ABC: one tune per voice; make them parts of one score
            score = score.mergeScores()
        score_to_midi(score, out)
        return None
    except Exception as e:  # noqa: BLE001 - music21 raises anything on a bad score; report it, go on
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def export_corpus(out_dir: str | Path, composers: Sequence[str] = DEFAULT_COMPOSERS,
                  max_works: int | None = 40, workers: int = 0,
                  progress: ProgressFn | None = None) -> ExportReport:
    """Write out_dir/<Composer>/<work>.mid; works already exported are kept (the export is its cache)."""
    out_dir = Path(out_dir)
    jobs: list[tuple[str, Path, Path]] = []
    for comp in composers:
        folder = out_dir / _composer_dir_name(comp)
        folder.mkdir(parents=True, exist_ok=True)
        for src in list_works(comp, max_works):
            rel = src.parent.name + "-" + src.stem if src.parent.name != comp else src.stem
            jobs.append((comp, src, folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', rel)}.mid"))
    todo = [j for j in jobs if not j[2].exists()]
    reused = len(jobs) - len(todo)
    failures: list[tuple[str, str]] = []
    if progress:
        progress("export", reused, len(jobs))
    if todo:
        workers = workers or max(1, os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [(j, pool.submit(_export_one, j[1], j[2])) for j in todo]
            for n, ((comp, src, _dst), fut) in enumerate(futures, 1):
                try:
                    reason = fut.result(timeout=PARSE_TIMEOUT)
                except FutureTimeout:
                    reason = f"parse took over {PARSE_TIMEOUT:.0f} s"
                if reason:
                    failures.append((f"{comp}/{src.name}", reason))
                if progress:
                    progress("export", reused + n, len(jobs))
    written = {_composer_dir_name(c): sum(1 for j in jobs if j[0] == c and j[2].exists()) for c in composers}
    return ExportReport(out_dir, written, reused, failures)
