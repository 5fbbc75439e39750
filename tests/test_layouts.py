"""Real collection layouts: works from folders, performances and editions of one piece kept together,
and a performance of an indexed piece recognised as that piece."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from typer.testing import CliRunner

from musicid.cli import app
from musicid.collection.dataset import group_works, holdout_split, kfold_groups, scan_labelled, work_key
from musicid.features import piece_match as pm
from musicid.io.midi import load_midi

from .conftest import write_piece

runner = CliRunner()


def perform(score: Path, out: Path, seed: int, wrong_notes: int = 1, missed_notes: int = 1) -> Path:
    """A performance-timed copy of a score: smooth rubato (+-10% tempo), onset jitter (+-20 ms),
    other velocities, sustain pedal (CC64) every two seconds, a wrong note and a missed one, and
    another resolution (ticks per beat) and initial tempo."""
    rng = np.random.default_rng(seed)
    src = pretty_midi.PrettyMIDI(str(score))
    periods, phases = np.array([7.0, 3.1, 1.7]), rng.uniform(0, 2 * np.pi, 3)
    amps = 0.1 / 3 * periods / (2 * np.pi)  # each sine's slope <= 0.1/3: the tempo stays within +-10%

    def warp(t: float) -> float:
        return t + float((amps * (np.sin(2 * np.pi * t / periods + phases) - np.sin(phases))).sum())

    pm_out = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=97.0)
    for inst in src.instruments:
        notes = list(inst.notes)
        drop = set(rng.choice(len(notes), missed_notes, replace=False).tolist()) if missed_notes else set()
        wrong = set(rng.choice(len(notes), wrong_notes, replace=False).tolist()) if wrong_notes else set()
        played = pretty_midi.Instrument(program=inst.program)
        for i, n in enumerate(notes):
            if i in drop:
                continue
            start = max(0.0, warp(n.start) + rng.uniform(-0.02, 0.02))
            pitch = n.pitch + (1 if i in wrong else 0)
            played.notes.append(pretty_midi.Note(int(rng.integers(40, 100)), pitch, start,
                                                 max(start + 0.05, warp(n.end) + rng.uniform(-0.02, 0.02))))
        end = max(n.end for n in played.notes)
        for t in np.arange(0.1, end, 2.0):
            played.control_changes += [pretty_midi.ControlChange(64, 127, float(t)),
                                       pretty_midi.ControlChange(64, 0, float(t) + 1.8)]
        pm_out.instruments.append(played)
    out.parent.mkdir(parents=True, exist_ok=True)
    pm_out.write(str(out))
    return out


def without_repeat(score: Path, out: Path, repeat_ends: float) -> Path:
    """The same piece with its first `repeat_ends` seconds (a repeated section) played once less:
    the notes from repeat_ends on, moved to the start of the second pass."""
    src = pretty_midi.PrettyMIDI(str(score))
    pm_out = pretty_midi.PrettyMIDI()
    for inst in src.instruments:
        kept = pretty_midi.Instrument(program=inst.program)
        kept.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start - repeat_ends, n.end - repeat_ends)
                      for n in inst.notes if n.start >= repeat_ends]
        pm_out.instruments.append(kept)
    out.parent.mkdir(parents=True, exist_ok=True)
    pm_out.write(str(out))
    return out


def repeated_piece(path: Path, style: str, seed: int) -> Path:
    """A piece whose first 8 s are played twice (A A B), so that an edition without the repeat exists."""
    a = write_piece(path.parent / f".{path.stem}-a.mid", style, seed, seconds=8.0)
    b = write_piece(path.parent / f".{path.stem}-b.mid", style, seed + 7919, seconds=8.0)
    pm_out = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    notes = {part: pretty_midi.PrettyMIDI(str(part)).instruments[0].notes for part in (a, b)}
    for part, shift in ((a, 0.0), (a, 8.0), (b, 16.0)):
        for n in notes[part]:
            inst.notes.append(pretty_midi.Note(n.velocity, n.pitch, n.start + shift, n.end + shift))
    a.unlink()
    b.unlink()
    pm_out.instruments.append(inst)
    pm_out.write(str(path))
    return path


# ---------------------------------------------------------------- the sketch


def test_onset_chords_and_shingles_worked_by_hand() -> None:
    # C+E together (the E 30 ms late), then G+B, then D: three chords
    onsets = np.array([0.0, 0.03, 0.5, 0.52, 1.0])
    pitches = np.array([60, 76, 67, 59, 62])
    chords = pm.onset_chords(onsets, pitches)
    # pitch-class bits, and the bass (lowest MIDI pitch) from bit 12: {C, E} on C4, {G, B} on B3, {D} on D4
    assert chords.tolist() == [(1 | 1 << 4) | 60 << 12, (1 << 7 | 1 << 11) | 59 << 12, (1 << 2) | 62 << 12]
    assert chords.tolist() == [245777, 243840, 253956]
    # the same pitch classes on another bass is another chord (an inversion, another register)
    assert pm.onset_chords(np.array([0.0, 0.0]), np.array([64, 72])).tolist() == [(1 | 1 << 4) | 64 << 12]
    # a shingle is the chain mix64(mix64(0 ^ a) ^ b): order matters
    mix = pm._mix64
    ab = mix(mix(np.uint64(0) ^ np.uint64(chords[0])) ^ np.uint64(chords[1]))
    bc = mix(mix(np.uint64(0) ^ np.uint64(chords[1])) ^ np.uint64(chords[2]))
    assert pm.shingles(chords, 2).tolist() == sorted([int(ab), int(bc)])
    assert len(pm.shingles(chords, 3)) == 1 and pm.shingles(chords[::-1], 3).tolist() != pm.shingles(chords, 3).tolist()
    assert pm.shingles(chords, 4).tolist() == []  # fewer chords than a shingle needs
    # a chord is anchored at its first onset: 0.04 joins the chord at 0, 0.08 starts the next
    assert pm.onset_chords(np.array([0.0, 0.04, 0.08]), np.array([60, 62, 64])).tolist() == [
        (1 | 4) | 60 << 12, 16 | 64 << 12]
    # C+E / G+B / E instead of D: the 2-shingle sets share one of three, Jaccard 1/3
    other = pm.shingles(np.array([chords[0], chords[1], 16 | 64 << 12]), 2)
    assert pm.jaccard(pm.shingles(chords, 2), other) == pytest.approx(1 / 3)


def test_minhash_estimates_jaccard_and_too_little_music_matches_nothing() -> None:
    a = np.arange(0, 1500, dtype=np.uint64)
    b = np.arange(500, 2000, dtype=np.uint64)  # J = 1000 / 2000 = 0.5
    est = pm.similarities(pm.minhash(a), pm.minhash(b)[None, :])[0]
    assert abs(est - 0.5) < 4 * np.sqrt(0.25 / pm.N_SLOTS)
    assert pm.similarities(pm.minhash(a), pm.minhash(a)[None, :])[0] == 1.0
    tiny = pm.minhash(np.arange(pm.MIN_SHINGLES - 1, dtype=np.uint64))
    assert pm.is_empty(tiny) and pm.similarities(tiny, tiny[None, :])[0] == 0.0


def test_sketch_ignores_timing_and_tells_pieces_apart(tmp_path: Path) -> None:
    score = write_piece(tmp_path / "score.mid", "Organ", 3, seconds=20.0)
    retimed = perform(score, tmp_path / "retimed.mid", seed=1, wrong_notes=0, missed_notes=0)
    played = perform(score, tmp_path / "played.mid", seed=2)
    other = write_piece(tmp_path / "other.mid", "Organ", 4, seconds=20.0)
    s = {p.stem: pm.piece_sketch(load_midi(p).events) for p in (score, retimed, played, other)}
    assert load_midi(retimed).notes_hash != load_midi(score).notes_hash  # not the same notes hash ...
    assert np.array_equal(s["retimed"], s["score"])  # ... but the same chords in the same order
    sims = pm.similarities(s["score"], np.stack([s["played"], s["other"]]))
    assert sims[0] >= 0.7  # two wrong chords spoil at most 8 of 77 shingles
    assert sims[1] < 0.05


def test_same_piece_pairs_are_every_pair_at_the_threshold() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**32 - 1, (6, pm.N_SLOTS), dtype=np.uint32)
    table = np.concatenate([base, base[:3]])  # rows 6, 7, 8 copy rows 0, 1, 2
    table[7, :100] = rng.integers(0, 2**32 - 1, 100, dtype=np.uint32)  # 28 of 128 slots equal: 0.22
    table[8, :120] = rng.integers(0, 2**32 - 1, 120, dtype=np.uint32)  # 8 of 128: 0.06, another piece
    table[5] = pm.EMPTY
    table = np.concatenate([table, table[5:6]])  # two empty sketches never match
    assert pm.same_piece_pairs(table, block=4).tolist() == [[0, 6], [1, 7]]


# ---------------------------------------------------------------- folders and groups


def test_work_keys_from_piece_folders_collection_folders_and_flat_files() -> None:
    c = Path("/data/Beethoven")
    assert work_key(c / "Piano_Sonatas/21-1/midi_score.mid", "Beethoven", None, c) == "Beethoven/Piano_Sonatas/21"
    assert work_key(c / "Piano_Sonatas/21-2/Perf01.mid", "Beethoven", None, c) == "Beethoven/Piano_Sonatas/21"
    assert work_key(c / "Piano_Sonatas/31-3_4/x.mid", "B", None, c) == "B/Piano_Sonatas/31"
    assert work_key(c / "Fugue/bwv_846/x.mid", "B", None, c) == "B/Fugue/bwv_846"  # a catalog number stays whole
    assert work_key(c / "Fugue/bwv_846/x.mid", "B", None, c) != work_key(c / "Fugue/bwv_848/x.mid", "B", None, c)
    # a collection folder: the file is the piece
    assert work_key(c / "sonatas/01-1.mid", "B", None, c) == "B/sonatas/01"
    assert work_key(c / "sonatas/01-1.mid", "B", None, c) != work_key(c / "sonatas/02-1.mid", "B", None, c)
    # directly in the composer folder: as before
    assert work_key(c / "Cello Suite 3_BWV1009_2217_cs3-1pre.mid", "Bach", None, c) == "Bach/BWV1009"
    # --group-by sees the path below the composer folder
    assert work_key(c / "Sonatas/21-1/score.mid", "B", r"Sonatas/(\d+)", c) == "B/21"


def test_folder_per_work_tree_never_straddles_a_split(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files: dict[str, list[Path]] = {}
    for ci, composer in enumerate(("Organ", "Highflute")):
        for w in range(1, 6):
            for mvt in (1, 2):
                piece = root / composer / "Sonatas" / f"{w}-{mvt}"
                seed = 1000 * ci + 10 * w + mvt
                score = repeated_piece(piece / "midi_score.mid", composer, seed)
                perform(score, piece / "perfA.mid", seed + 1)
                perform(score, piece / "perfB.mid", seed + 2)
                files.setdefault(f"{composer}/{w}", []).extend(sorted(piece.glob("*.mid")))
                if mvt == 1:  # an edition without the repeat, in its own folder, performed too
                    variant = without_repeat(score, root / composer / "Sonatas" / f"{w}-1_no_repeat" / "midi_score.mid",
                                             8.0)
                    perform(variant, variant.parent / "perfC.mid", seed + 3)
                    files[f"{composer}/{w}"] += sorted(variant.parent.glob("*.mid"))
    refs, _ = scan_labelled(root)
    keys = [work_key(r.path, r.composer, None, root / str(r.composer)) for r in refs]
    midis = [load_midi(r.path) for r in refs]
    sketches = np.stack([pm.piece_sketch(m.events) for m in midis])
    assert len(set(keys)) == 20  # 10 works + 10 no-repeat folders, which only their notes join to their work
    groups = group_works(keys, [m.notes_hash for m in midis], sketches)
    assert len(set(groups.tolist())) == 10  # one group per work: nothing else joined
    of = {r.path: g for r, g in zip(refs, groups, strict=True)}
    for work_files in files.values():
        assert len(work_files) == 8 and len({of[p] for p in work_files}) == 1
    composers = [str(r.composer) for r in refs]
    for seed in range(5):
        held = holdout_split(composers, groups, 0.2, seed=seed)
        folds = kfold_groups(composers, groups, 3, seed=seed)
        assert held.any() and not held.all()
        for work_files in files.values():
            idx = [i for i, r in enumerate(refs) if r.path in set(work_files)]
            assert len(set(held[idx].tolist())) == 1 and len(set(folds[idx].tolist())) == 1


# ---------------------------------------------------------------- query


def test_a_performance_of_an_indexed_piece_is_recognised(built_index: Path, corpus: Path, tmp_path: Path) -> None:
    indexed = sorted((corpus / "Highflute").glob("*.mid"))[0]
    played = perform(indexed, tmp_path / "played.mid", seed=5)
    r = runner.invoke(app, ["query", str(played), "--index", str(built_index), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["known_piece"] == f"Highflute/{indexed.name}" and out["known_piece_match"] == "same piece"
    assert out["composer"] == "Highflute" and out["confidence"] == 1.0
    assert pm.SAME_PIECE <= out["known_piece_similarity"] < 1.0
    r = runner.invoke(app, ["query", str(played), "--index", str(built_index)])
    assert (f"known piece: a performance or edition of indexed track Highflute/{indexed.name} "
            f"(similarity {out['known_piece_similarity']:.2f})") in " ".join(r.stdout.split())
    # the indexed file itself is the same notes; a new piece in the same style is no known piece
    same = json.loads(runner.invoke(app, ["query", str(indexed), "--index", str(built_index), "--json"]).stdout)
    assert same["known_piece_match"] == "same notes" and same["known_piece_similarity"] == 1.0
    new = write_piece(tmp_path / "new.mid", "Highflute", 99)
    fresh = json.loads(runner.invoke(app, ["query", str(new), "--index", str(built_index), "--json"]).stdout)
    assert fresh["known_piece"] is None and fresh["known_piece_match"] is None
