"""`musicid eval --train-on`: a general embedder trained on other collections, less every piece of the
evaluated folder, and for each left-out composer a model that never saw that composer."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from typer.testing import CliRunner

from musicid.build.corpus import prepare_corpus
from musicid.cli import app
from musicid.evaluation.evaluate import EvalOptions, evaluate
from musicid.evaluation.sources import build_training_set, composer_groups, select_composers, works_per_composer
from musicid.io.timing import GRID_PER_BEAT, file_timing_kind, timing_kind

from .conftest import TINY_DIMS, TINY_FEATURES, TINY_TRAIN, make_corpus, tiny_options

TINY_ROLLS = replace(TINY_FEATURES, n_bins=128, hop_length=1600, representation="pianoroll")


def performed(src: Path, dst: Path, seed: int, stretch: float = 1.07, jitter: float = 0.015) -> Path:
    """A performance-timed copy of src: every onset moved by up to `jitter` seconds, the whole slowed
    by `stretch`, at 480 ticks a beat: the same notes in the same order, other times."""
    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI(str(src))
    out = pretty_midi.PrettyMIDI(resolution=480)
    for inst in pm.instruments:
        copy = pretty_midi.Instrument(program=inst.program)
        for n in inst.notes:
            start = max(0.0, n.start * stretch + float(rng.uniform(-jitter, jitter)))
            copy.notes.append(pretty_midi.Note(n.velocity, n.pitch, start, start + (n.end - n.start) * stretch))
        out.instruments.append(copy)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.write(str(dst))
    return dst


def test_score_and_performance_are_told_from_the_onsets(tmp_path: Path) -> None:
    # a score: eighths, triplets and thirty-seconds at 480 ticks a beat (120 bpm: a beat is 0.5 s)
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120)
    inst = pretty_midi.Instrument(program=0)
    beats = np.concatenate([np.arange(0, 8, 0.5), 8 + np.arange(0, 4, 1 / 3), 12 + np.arange(0, 2, 1 / 8)])
    for i, b in enumerate(beats):
        inst.notes.append(pretty_midi.Note(80, 60 + i % 12, float(b) * 0.5, float(b) * 0.5 + 0.05))
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "score.mid"))
    assert file_timing_kind(tmp_path / "score.mid") == "score"
    assert file_timing_kind(performed(tmp_path / "score.mid", tmp_path / "perf.mid", 0)) == "performance"
    # the rule itself, on tick arrays
    assert timing_kind(np.arange(0, 4800, 480 // GRID_PER_BEAT), 480) == "score"
    assert timing_kind(np.array([0, 7, 480, 960]), 480) == "score"  # 3 of 4 on the grid (a grace note)
    assert timing_kind(np.array([0, 7, 13, 961]), 480) == "performance"
    assert timing_kind(np.array([3, 7]), None) == "performance"  # SMPTE: no beat
    assert timing_kind(np.array([], dtype=np.int64), 96) == "score"


def test_composer_groups_are_balanced_and_deterministic() -> None:
    assert composer_groups(["B", "A", "C"], None) == [["A"], ["B"], ["C"]]
    groups = composer_groups(["A", "B", "C", "D"], 2, None, {"A": 10, "B": 1, "C": 6, "D": 5})
    assert groups == [["A", "B"], ["C", "D"]]  # A to one, C then D to the other, B to the lighter: 11 / 11
    assert composer_groups(["A", "B"], 5) == [["A"], ["B"]]
    with pytest.raises(ValueError, match="at least 1"):
        composer_groups(["A"], 0)


def test_duplicates_of_evaluated_pieces_leave_the_training_set(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings"], per_composer=4, seconds=6)
    other = make_corpus(tmp_path / "other", ["Lowpiano", "Highflute"], per_composer=4, seconds=6, seed=5)
    same = sorted((data / "Lowpiano").glob("*.mid"))
    shutil.copy(same[0], other / "Lowpiano" / "copy of a score.mid")  # the same notes
    performed(same[1], other / "Lowpiano" / "a performance.mid", 1)  # the same piece, other times
    options = tiny_options(tmp_path)
    evaluated, _, _ = prepare_corpus(data, options)
    t = build_training_set([other], evaluated, options)
    rec = t.removed[str(other.resolve())]
    assert (rec["tracks"], rec["same_notes"], rec["same_piece"]) == (2, 1, 1)
    assert {m["track"]: m["same_as"] for m in rec["matches"]} == {
        "Lowpiano/copy of a score.mid": f"Lowpiano/{same[0].name}",
        "Lowpiano/a performance.mid": f"Lowpiano/{same[1].name}"}
    assert len(t.prepared) == 8 and t.collections[0]["tracks"] == 10 and t.collections[0]["kept"] == 8
    assert not {p.path.name for p in t.prepared} & {"copy of a score.mid", "a performance.mid"}


def test_works_decide_which_composers_are_evaluated(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings"], per_composer=4, seconds=4)
    make_corpus(tmp_path / "data", ["Highflute"], per_composer=8, seconds=4)  # 4 works of 2 movements
    corpus, _, _ = prepare_corpus(data, tiny_options(tmp_path))
    assert works_per_composer(corpus) == {"Highflute": 4, "Lowpiano": 2, "Strings": 2}
    assert select_composers(corpus, ("strings", "Highflute")).composers == ["Highflute", "Strings"]
    with pytest.raises(Exception, match="1 composer\\(s\\) with at least 3 works"):
        select_composers(corpus, min_works=3)
    with pytest.raises(Exception, match="no composer folder named Bach"):
        select_composers(corpus, ("Bach",))


def test_each_left_out_composer_uses_a_model_that_never_saw_it(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute", "Choir"], per_composer=6, seconds=6)
    a = make_corpus(tmp_path / "a", ["Lowpiano", "Highflute", "Organ"], per_composer=4, seconds=6, seed=3)
    b = make_corpus(tmp_path / "b", ["Strings"], per_composer=4, seconds=6, seed=4)
    for i, f in enumerate(sorted((a / "Highflute").glob("*.mid"))[:2]):  # one collection spells it lower case
        write_to = b / "highflute" / f"hf{i}.mid"
        write_to.parent.mkdir(parents=True, exist_ok=True)
        performed(f, write_to, 10 + i)
    fast = tiny_options(tmp_path, train=replace(TINY_TRAIN, epochs=1, steps_per_epoch=2),
                        features=TINY_ROLLS)
    opts = EvalOptions(folds=2, bootstrap=0, train_on=(a, b), composer_groups=2, build=fast)
    s = evaluate(data, opts).summary
    assert s["protocol"] == "general-embedder" and s["train_on"] == [str(a.resolve()), str(b.resolve())]
    # balanced by training tracks: Highflute (6, both spellings) alone; Lowpiano (4) with Choir (in no collection)
    assert s["composer_groups"] == [["Highflute"], ["Choir", "Lowpiano"]]
    folds, *left_out = s["models"]
    assert folds["used_for"] == ["fold 0", "fold 1"] and "left_out" not in folds
    assert folds["composers"] == ["Highflute", "Lowpiano", "Organ", "Strings", "highflute"]
    assert len(left_out) == 2
    used = [c for m in left_out for c in m["used_for"]]
    assert sorted(used) == ["Choir", "Highflute", "Lowpiano"]
    for m in left_out:
        trained = {c.lower() for c in m["composers"]}
        assert all(c.lower() not in trained for c in m["used_for"]), m  # highflute too: names match in any case
        assert set(m["used_for"]) <= set(m["left_out"])
    assert set(s["loco"]["per_composer"]) == {"Choir", "Highflute", "Lowpiano"}
    assert s["meta"]["models_from_cache"] == 0
    again = evaluate(data, opts).summary  # the models were cached: nothing is trained twice
    assert again["meta"]["models_from_cache"] == 3 and again["track"] == s["track"]


def test_fine_tuning_starts_each_split_from_its_general_model_and_never_from_the_left_out_composer(
        tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute", "Choir"], per_composer=6, seconds=6)
    a = make_corpus(tmp_path / "a", ["Lowpiano", "Highflute", "Organ"], per_composer=4, seconds=6, seed=3)
    fast = tiny_options(tmp_path, train=replace(TINY_TRAIN, epochs=1, steps_per_epoch=2), features=TINY_ROLLS)
    opts = EvalOptions(folds=2, bootstrap=0, train_on=(a,), composer_groups=3, fine_tune=True, also_per_index=True,
                       build=fast)
    s = evaluate(data, opts).summary
    assert s["protocol"] == "general-embedder" and s["fine_tuned"] is True
    general = [m for m in s["models"] if not m.get("fine_tuned")]
    tuned = [m for m in s["models"] if m.get("fine_tuned")]
    assert len(general) == 4 and len(tuned) == 2 + 3  # a model per fold and per left-out composer
    for m in tuned[2:]:  # fine-tuned on the known composers' tracks only
        assert m["left_out"] == m["used_for"] and m["used_for"][0] not in m["composers"]
    # the per-index models train on the same tracks from scratch: never the fine-tuned ones from the cache
    assert s["per_index"]["models"] and not any(m["from_cache"] for m in s["per_index"]["models"])
    again = evaluate(data, replace(opts, also_per_index=False)).summary
    assert all(m["from_cache"] for m in again["models"]) and again["track"] == s["track"]
    with pytest.raises(ValueError, match="give --train-on"):
        EvalOptions(fine_tune=True)


def test_eval_cli_general_protocol_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import musicid.cli.eval_commands as cli_eval

    flags = cli_eval.build_flags  # the command's own options, at the tests' tiny sizes
    monkeypatch.setattr(cli_eval, "build_flags", lambda *a, **kw: replace(
        flags(*a, **kw), dims=TINY_DIMS, features=TINY_ROLLS, train=replace(TINY_TRAIN, epochs=1, steps_per_epoch=2),
        workers=1))
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings", "Highflute"], per_composer=6, seconds=6)
    make_corpus(tmp_path / "data", ["Organ"], per_composer=2, seconds=6)  # one work: left out by --min-works 2
    a = make_corpus(tmp_path / "a", ["Lowpiano", "Strings", "Choir"], per_composer=3, seconds=6, seed=3)
    shutil.copy(sorted((data / "Strings").glob("*.mid"))[0], a / "Strings" / "dup.mid")
    args = ["eval", str(data), "--train-on", str(a), "--min-works", "2", "--composer-groups", "2",
            "--also-per-index", "--folds", "2", "--bootstrap", "20", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out")]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "150"})  # table rows unwrapped
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert s["protocol"] == "general-embedder" and s["train_on"] == [str(a.resolve())]
    # training tracks: Lowpiano 3, Strings 3 (4 less the duplicate), Highflute 0
    assert s["composer_groups"] == [["Highflute", "Lowpiano"], ["Strings"]]  # Highflute ties: to the first
    assert s["duplicates_removed"][str(a.resolve())]["tracks"] == 1
    assert s["meta"]["selection"]["left_out"] == ["Organ"]
    assert s["meta"]["composers"] == ["Highflute", "Lowpiano", "Strings"]
    assert len(s["models"]) == 3 and s["track"]["n"] == 18 and "macro_f1_ci" in s["track"]
    assert set(s["loco"]["per_composer"]) == {"Highflute", "Lowpiano", "Strings"}
    assert "mean_auroc_ci" in s["loco"] and "flagged_novel" in s["loco"]["per_composer"]["Strings"]
    # the per-index embedder on the same folds and splits, beside
    pi = s["per_index"]
    assert pi["track"]["n"] == 18 and set(pi["loco"]["per_composer"]) == set(s["loco"]["per_composer"])
    assert len(pi["models"]) == 5 and "macro_f1_ci" in pi["track"]
    # Lowpiano and Strings move in half and whole seconds: on the beat grid; Highflute's 0.15 s are not
    assert {k: v["n"] for k, v in s["track_by_timing"].items()} == {"score": 12, "performance": 6}
    assert "general embedder trained on a 9 of 10 tracks" in r.output
    assert "2 composer group(s)" in r.output and "per-index embedder, mean" in r.output
    assert "musicid, performance MIDI tracks (linear)" in r.output and "per-index embedder, track (linear)" in r.output
    assert "3 general model(s); 0 from the model cache" in r.output
    assert "evaluated Highflute, Lowpiano, Strings (composers with at least 2 work groups); left out: Organ" in r.output
    r = CliRunner().invoke(app, ["eval", str(data), "--composer-groups", "2"])
    assert r.exit_code == 2 and "give --train-on" in r.stderr
    r = CliRunner().invoke(app, ["eval", str(data), "--composers", "Lowpiano", "--min-works", "2"])
    assert r.exit_code == 2 and "not both" in r.stderr
