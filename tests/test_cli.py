"""Every command through CliRunner: exit codes and the lines a user reads."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musicid.cli import app

from .conftest import make_corpus, write_piece

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def test_help_lists_every_command_and_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    code, out, _ = run("--help")
    commands = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert code == 0 and commands == {"index", "corpus", "embedder", "query", "report", "eval", "render", "serve"}
    code, out, _ = run("index", "--help")
    assert {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()} == {
        "build", "add", "remove", "info"}
    # --help stays instant: the CLI module imports neither torch nor faiss nor numpy
    probe = "import sys, musicid.cli; print(sorted({'torch', 'faiss', 'numpy'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr


def test_index_build_through_the_cli(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute"], per_composer=4, seconds=32)
    (data / "Lowpiano" / "broken.mid").write_text("nope")
    code, out, err = run("index", "build", data, "--out", tmp_path / "idx", "--epochs", "1",
                         "--steps-per-epoch", "2", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    assert "1 of 9 files could not be used, skipped:" in out
    assert "Lowpiano/broken.mid: not a MIDI file (no MThd header)" in out
    assert "Index written to" in out and "held-out accuracy" in out
    code, out, _ = run("index", "info", "--index", tmp_path / "idx", "--json")
    info = json.loads(out)
    assert code == 0 and info["counts"]["tracks"] == 8
    # enrolled with the shipped embedder, which carries the licence of what it was trained on
    assert info["model"]["trained_here"] is False
    assert info["model"]["started_from"].endswith("composer-embedder.pt")
    assert info["model"]["licence"].startswith("CC BY-NC-SA 4.0")


def test_index_build_train_seed_reaches_the_model(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute"], per_composer=3, seconds=12)
    flags = ["--train", "--epochs", "1", "--steps-per-epoch", "2", "--workers", "1", "--cache-dir", tmp_path / "c"]
    for seed in ("0", "4"):
        code, _, err = run("index", "build", data, "--out", tmp_path / f"idx{seed}", "--seed", seed, *flags)
        assert code == 0, err
    manifest = json.loads((tmp_path / "idx4" / "manifest.json").read_text())
    assert manifest["model"]["trained_here"] is True and manifest["model"]["train"]["seed"] == 4
    # another seed trains another model (the model cache keys it apart), not the cached one again
    assert (tmp_path / "idx4" / "model.pt").read_bytes() != (tmp_path / "idx0" / "model.pt").read_bytes()


def test_index_build_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = run("index", "build", tmp_path, "--train", "--fine-tune")
    assert code == 2 and "--train trains from scratch" in err
    code, _, err = run("index", "build", tmp_path / "missing", "--out", tmp_path / "idx")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"Error: Invalid value for 'data_dir': dir '{tmp_path / 'missing'}' does not exist.")
    data = make_corpus(tmp_path / "data", ["Organ", "Strings"], per_composer=2, seconds=4)
    code, _, err = run("index", "build", data, "--soundfont", tmp_path / "none.sf2", "--out", tmp_path / "i")
    assert code == 1 and err.strip() == f"error: SoundFont not found: {tmp_path / 'none.sf2'}"
    assert not (tmp_path / "i").exists()
    for opt, bad in (("--index-type", "annoy"), ("--novelty", "vibes"), ("--classifier", "astrology"),
                     ("--features", "ensemble")):
        code, _, err = run("index", "build", data, opt, bad, "--out", tmp_path / "i")
        assert code == 2 and err.strip().splitlines()[-1].startswith(f"Error: Invalid value for '{opt}'")
        assert f"'{bad}' is not one of" in err
    for opt, bad, known in (("--novelty-view", "vibes", "fused"), ("--naming", "astrology", "knn")):  # old names
        code, _, err = run("index", "build", data, opt, bad, "--out", tmp_path / "i")
        assert code == 2 and len(err.strip().splitlines()) == 1 and f"'{bad}'" in err and known in err
    assert not (tmp_path / "i").exists()


def test_index_info(built_index: Path) -> None:
    code, out, _ = run("index", "info", "--index", built_index)
    assert code == 0
    assert "Lowpiano" in out and "threshold" in out and "held-out accuracy" in out
    assert "fused, threshold" in out and "fused parts" in out
    assert "(IndexFlatIP)" in out and "k-NN vote over clips" in out


def test_query_prints_composer_confidence_novelty(built_index: Path, tmp_path: Path) -> None:
    track = write_piece(tmp_path / "new.mid", "Lowpiano", seed=321)
    code, out, _ = run("query", track, "--index", built_index)
    assert code == 0
    assert "new.mid: Lowpiano" in out and "confidence" in out and "-> known composer" in out
    assert "embedding distance" in out and "symbolic-feature distance" in out  # the fused score's two parts
    code, out, _ = run("query", track, "--index", built_index, "--json", "-k", "3")
    r = json.loads(out)
    assert code == 0 and r["composer"] == "Lowpiano" and r["novel"] is False
    assert set(r["probabilities"]) == {"Highflute", "Lowpiano", "Strings"} and r["classifier"] == "knn"
    assert r["novelty"] <= r["threshold"] and set(r["novelty_parts"]) == {"track-knn", "symbolic-knn"}
    assert r["novelty"] == pytest.approx(max(r["novelty_z"].values()), abs=1e-3)  # per-index: the larger z


def test_query_flags_an_unseen_style(built_index: Path, tmp_path: Path) -> None:
    track = write_piece(tmp_path / "organ.mid", "Organ", seed=5, transpose=-12)
    code, out, _ = run("query", track, "--index", built_index, "--json")
    r = json.loads(out)
    assert code == 0 and r["novel"] is True and r["novelty"] > r["threshold"]
    code, out, _ = run("query", track, "--index", built_index)
    assert f"organ.mid: NOVEL (nearest composer {r['composer']})" in out.replace("\n", " ")


def test_query_known_piece(built_index: Path, corpus: Path) -> None:
    track = sorted((corpus / "Lowpiano").glob("*.mid"))[1]
    code, out, _ = run("query", track, "--index", built_index)
    assert code == 0 and f"known piece: same notes as indexed track Lowpiano/{track.name}" in out


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"just text", "not a MIDI file (no MThd header)"),
])
def test_query_bad_file_exits_1_with_reason(built_index: Path, tmp_path: Path, content: bytes,
                                            reason: str) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    code, out, err = run("query", bad, "--index", built_index)
    assert code == 1 and err.strip() == f"error: bad.mid: {reason}" and "Traceback" not in out + err


def test_query_without_index_says_how_to_build(tmp_path: Path) -> None:
    track = write_piece(tmp_path / "a.mid", "Organ", 1, 2)
    code, _, err = run("query", track, "--index", tmp_path / "nowhere")
    assert code == 1 and "no index at" in err and "musicid index build" in err


def test_report_ranks_by_novelty_and_exports(built_index: Path, tmp_path: Path) -> None:
    folder = tmp_path / "test"
    for i in range(2):
        write_piece(folder / f"known{i}.mid", "Lowpiano", 700 + i)
        write_piece(folder / f"unseen{i}.mid", "Organ", 800 + i)
    (folder / "zz broken é.mid").write_bytes(b"garbage")
    code, out, _ = run("report", "--novel", folder, "--index", built_index, "--csv", tmp_path / "r.csv")
    assert code == 0
    assert "4 tracks scored" in out and "zz broken é.mid: not a MIDI file" in out
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    scored = [r for r in rows if not r["error"]]
    novelty = [float(r["novelty"]) for r in scored]
    assert novelty == sorted(novelty, reverse=True)
    assert {r["file"] for r in scored[:2]} == {"unseen0.mid", "unseen1.mid"}
    assert rows[-1]["error"].startswith("not a MIDI file")
    code, out, _ = run("report", "--novel", folder, "--index", built_index, "--json")
    data = json.loads(out)
    assert code == 0 and len(data["results"]) == 4 and len(data["failures"]) == 1


def test_report_with_nothing_scorable_exits_1(built_index: Path, tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.mid").write_bytes(b"x")
    code, _, _ = run("report", "--novel", tmp_path / "t", "--index", built_index)
    assert code == 1
    code, _, err = run("report", tmp_path / "empty", "--index", built_index)
    assert code == 1 and "not found" in err


def test_render_writes_wav(tmp_path: Path) -> None:
    track = write_piece(tmp_path / "a.mid", "Strings", 1, 3)
    code, out, _ = run("render", track, tmp_path / "a.wav", "--seconds", "2")
    assert code == 0 and "2.0 s, 16000 Hz mono" in out
    assert (tmp_path / "a.wav").stat().st_size == 44 + 2 * 16000 * 2
    code, _, err = run("render", track, tmp_path / "b.wav", "--soundfont", track)
    assert code == 1 and "not a SoundFont" in err


def test_json_output_is_pure_json_even_with_ci_set(built_index: Path, tmp_path: Path) -> None:
    """pyfluidsynth prints a line to stdout on import when $CI is set; --json must not carry it."""
    import os
    import subprocess
    import sys

    track = write_piece(tmp_path / "a.mid", "Lowpiano", seed=3)
    r = subprocess.run([sys.executable, "-m", "musicid", "query", str(track), "--index", str(built_index), "--json"],
                       capture_output=True, text=True, env={**os.environ, "CI": "true"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["composer"] == "Lowpiano"


def test_ray_takes_an_optional_address() -> None:
    from musicid.cli import optional_values

    assert optional_values(["index", "build", "d", "--ray"]) == ["index", "build", "d", "--ray", "local"]
    assert optional_values(["index", "build", "d", "--ray", "--json"]) == ["index", "build", "d", "--ray", "local",
                                                                           "--json"]
    assert optional_values(["index", "build", "d", "--ray", "10.0.0.5:6380"]) == ["index", "build", "d", "--ray",
                                                                                  "10.0.0.5:6380"]


def test_index_add_and_remove_through_the_cli(built_index: Path, tmp_path: Path) -> None:
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(built_index, idx)
    new = make_corpus(tmp_path / "new", ["Organ"], per_composer=2, seconds=8, seed=4)
    code, out, err = run("index", "add", new, "--index", idx, "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    assert out.strip() == "added 2 Organ tracks; the index now holds 20 tracks by Highflute, Lowpiano, Organ, Strings"
    code, out, _ = run("index", "remove", "--index", idx, "--composer", "Organ", "--json")
    assert code == 0 and json.loads(out) == {"added": {}, "removed": {"Organ": 2}, "failures": [],
                                             "composers": ["Highflute", "Lowpiano", "Strings"], "tracks": 18}
    code, _, err = run("index", "remove", "--index", idx, "--composer", "Nobody")
    assert code == 1 and err.strip() == "error: no composer 'Nobody' in the index (Highflute, Lowpiano, Strings)"


def test_corpus_export_through_the_cli(tmp_path: Path) -> None:
    code, out, err = run("corpus", "export", tmp_path / "c", "--composers", "schubert", "--max-works", "1",
                         "--workers", "1", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["written"] == {"Schubert": 1} and rep["failures"] == [] and rep["reused"] == 0
    assert len(list((tmp_path / "c" / "Schubert").glob("*.mid"))) == 1
    code, out, _ = run("corpus", "export", tmp_path / "c", "--composers", "schubert", "--max-works", "1",
                       "--workers", "1")
    assert code == 0 and out.strip() == f"1 works in {tmp_path / 'c'} (Schubert 1); 1 already there, 0 skipped"
    code, _, err = run("corpus", "export", tmp_path / "c", "--composers", "nobody")
    assert code == 1 and err.strip() == "error: music21 has no scores for composer 'nobody'"


def test_version() -> None:
    from musicid import __version__

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout == f"musicid {__version__}\n"


def test_a_query_whose_neighbours_disagree_with_the_classifier_says_so() -> None:
    from rich.console import Console

    from musicid.cli.display import print_query
    from musicid.recognize.query import Neighbour, TrackResult, neighbours_disagree

    note = neighbours_disagree("Haydn", ["Bach"] * 5)
    assert note == ("the 5 nearest indexed tracks are mostly by Bach (5 of 5; 0 by Haydn): the classifier and the "
                    "neighbours disagree")
    assert neighbours_disagree("Bach", ["Haydn", "Bach", "Haydn", "Bach", "Mozart"]) is None  # a tie agrees
    assert neighbours_disagree("Bach", []) is None
    r = TrackResult("q.mid", "Haydn", 0.53, {"Haydn": 0.53, "Bach": 0.47}, {"Haydn": 0.3, "Bach": 0.2}, 0.1, 1.0,
                    False, 3, neighbours=[Neighbour(f"Bach/{i}.mid", "Bach", 0.1, 0.0) for i in range(5)],
                    disagreement=note)
    console = Console(record=True, width=200)
    print_query(console, r)
    assert f"  note: {note}" in console.export_text().splitlines()
    assert r.as_dict()["disagreement"] == note


def test_json_error_of_a_missing_index_names_the_index(tmp_path: Path) -> None:
    piece = write_piece(tmp_path / "q.mid", "Organ", 1, 2)
    r = CliRunner().invoke(app, ["query", str(piece), "--index", str(tmp_path / "none"), "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["path"] == str(tmp_path / "none")
    assert json.loads(r.stdout)["error"]["kind"] == "IndexNotFound"


def test_a_bad_choice_is_named_plainly_with_the_choices_and_exit_code_2(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "musicid", "index", "build", str(tmp_path), "--classifier", "foo"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Invalid value for '--classifier': 'foo' is not one of 'auto', 'knn', 'linear', 'fused'." in r.stderr
    assert "Value error" not in r.stderr


def test_a_line_of_composer_names_lists_twelve_and_counts_the_rest() -> None:
    """An embedder trained on hundreds of composers is summarised in one line, not listed whole."""
    from musicid.cli.display import name_list

    names = [f"Composer{i:03d}" for i in range(381)]
    line = name_list(names)
    assert line.startswith("Composer000, Composer001") and line.endswith("Composer011 and 369 more")
    assert name_list(names[:12]) == ", ".join(names[:12])
