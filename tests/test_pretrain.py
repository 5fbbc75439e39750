"""A general embedder, trained once, enrols composers it never saw (FaceNet's way)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musicid.build.indexer import build_index
from musicid.build.pretrain import collection_licence, train_general_embedder, weights_licence
from musicid.cli import app
from musicid.errors import DataDirError, TrainingError
from musicid.features.symbolic import N_SYMBOLIC
from musicid.model.background import load_background
from musicid.model.embedder import load_checkpoint
from musicid.model.training import FINE_TUNE_ANCHOR, fine_tuning, train_embedder
from musicid.recognize.query import QueryEngine

from .conftest import TINY_DIMS, TINY_TRAIN, make_corpus, tiny_options, write_piece


@pytest.fixture(scope="module")
def general(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedder trained on two collections: Lowpiano and Highflute in one (CC BY-NC-SA), Strings in
    the other (no licence file)."""
    tmp = tmp_path_factory.mktemp("general")
    a = make_corpus(tmp / "a", ["Lowpiano", "Highflute"], per_composer=6, seed=1)
    (a / "LICENSE.md").write_text("# Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International\n")
    b = make_corpus(tmp / "b", ["Strings"], per_composer=6, seed=2)
    rep = train_general_embedder([a, b], tmp / "general.pt", tiny_options(tmp, train=replace(TINY_TRAIN, epochs=4)))
    assert rep.composers == ["Highflute", "Lowpiano", "Strings"] and rep.tracks_per_composer["Strings"] == 6
    return tmp / "general.pt"


def test_the_checkpoint_says_what_it_was_trained_on_and_its_licence(general: Path) -> None:
    _, _, meta = load_checkpoint(general)
    assert meta["composers"] == ["Highflute", "Lowpiano", "Strings"]
    assert [c["tracks"] for c in meta["collections"]] == [12, 6]
    nc_sa = "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International"
    assert meta["collections"][0]["licence"] == nc_sa
    assert meta["collections"][1]["licence"] == ""
    assert meta["licence"].startswith("CC BY-NC-SA 4.0")


def test_an_unseen_composer_is_enrolled_without_training_and_a_second_is_flagged(general: Path,
                                                                                 tmp_path: Path) -> None:
    # Organ was never in the embedder's training: enrolled beside Lowpiano by its vectors alone
    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    report = build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general))
    assert not report.trained and report.composers == ["Lowpiano", "Organ"]
    assert (tmp_path / "idx" / "model.pt").read_bytes() == general.read_bytes()  # the model, as given
    engine = QueryEngine.open(tmp_path / "idx")
    for seed in (901, 902, 903):
        organ = engine.query(write_piece(tmp_path / f"organ{seed}.mid", "Organ", seed))
        assert organ.composer == "Organ" and not organ.novel, organ
    # Choir: in neither the embedder's training nor the index
    choir = [engine.query(write_piece(tmp_path / f"choir{seed}.mid", "Choir", seed)) for seed in (905, 906)]
    assert all(r.novel for r in choir), [(r.novelty, r.threshold) for r in choir]


def test_fine_tuning_starts_from_the_given_model(general: Path, tmp_path: Path) -> None:
    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    report = build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general, fine_tune=True))
    assert report.trained
    tuned, _, _ = load_checkpoint(tmp_path / "idx" / "model.pt")
    assert tuned.dims == load_checkpoint(general)[0].dims
    assert (tmp_path / "idx" / "model.pt").read_bytes() != general.read_bytes()
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["model"]["started_from"] == str(general) and manifest["model"]["trained_here"] is True
    assert manifest["model"]["train"]["anchor"] == FINE_TUNE_ANCHOR  # it says how it was fine-tuned
    # the tuned weights still carry the licence of what the general model was trained on
    assert manifest["model"]["licence"].startswith("CC BY-NC-SA 4.0")
    _, _, meta = load_checkpoint(tmp_path / "idx" / "model.pt")
    assert meta["licence"] == load_checkpoint(general)[2]["licence"] and meta["fine_tuned_from"] == str(general)
    with pytest.raises(TrainingError, match="--fine-tune starts from a model"):
        build_index(folder, tmp_path / "idx2", tiny_options(tmp_path, fine_tune=True))


def test_fine_tuning_is_pulled_towards_the_starting_weights() -> None:
    # L2-SP: with a pull, fine-tuning on new composers moves the weights less from the general ones
    torch.manual_seed(0)
    clips = torch.rand(48, 32, 64)
    labels = np.repeat([0, 1, 2, 3], 12)
    for c, rows in enumerate([(0, 8), (24, 32), (12, 16), (16, 20)]):
        clips[labels == c, rows[0]:rows[1]] += 1.0  # each composer loud in its own register
    start, _ = train_embedder(clips[labels < 2], labels[labels < 2], TINY_DIMS, TINY_TRAIN)

    def moved(anchor: float) -> float:  # fine-tuned on composers 2 and 3, which the start never saw
        new = labels >= 2
        tuned, _ = train_embedder(clips[new], labels[new], settings=replace(TINY_TRAIN, anchor=anchor), init=start)
        return float(sum(((a - b) ** 2).sum() for a, b in zip(tuned.parameters(), start.parameters(), strict=True)))

    free, pulled = moved(0.0), moved(1.0)
    assert 0 < pulled < 0.5 * free, (pulled, free)
    assert fine_tuning(TINY_TRAIN).anchor == FINE_TUNE_ANCHOR > 0  # what --fine-tune trains with
    assert fine_tuning(replace(TINY_TRAIN, anchor=0.5)).anchor == 0.5  # a given pull is kept


def test_time_stretch_plays_a_crop_faster_or_slower_at_the_same_pitch() -> None:
    from musicid.model.augment import crop_lengths, stretched_crop

    clip = torch.zeros(16, 120)
    clip[5, 10:30] = 1.0  # one note, 20 frames (2 s) long, on row 5
    twice_as_fast = stretched_crop(clip, 0, 100, 50)  # 100 frames of music squeezed into 50
    assert twice_as_fast.shape == (16, 50)
    assert (twice_as_fast[5] > 0.5).sum() == 10 and twice_as_fast[torch.arange(16) != 5].abs().sum() == 0
    assert torch.equal(stretched_crop(clip, 7, 50, 50), clip[:, 7:57])  # no stretch: the plain crop
    rng = np.random.default_rng(0)
    lengths = crop_lengths(rng, 2000, 100, 120, 0.25)  # tempo x0.8 to x1.25, at most the clip's 120 frames
    assert lengths.min() == 80 and lengths.max() == 120 and (lengths < 100).mean() > 0.4
    assert (crop_lengths(rng, 5, 100, 120, 0.0) == 100).all()


def test_voice_dropout_silences_one_voice_of_four_part_writing_and_leaves_a_melody_whole() -> None:
    from musicid.build.corpus import BuildOptions
    from musicid.features.clips import FeatureSettings
    from musicid.model.augment import drop_voices
    from musicid.model.training import TrainSettings

    chorale = torch.zeros(400, 128, 20)
    bass = [48 + f % 3 for f in range(20)]  # a moving bass under three held voices
    for f in range(20):
        chorale[:, [bass[f], 55, 64, 72], f] = 0.7
    out = drop_voices(chorale, torch.Generator().manual_seed(0), 1.0)
    gone = [tuple(((chorale[i] > 0) & (out[i] == 0)).any(dim=1).nonzero().flatten().tolist()) for i in range(400)]
    voices = {(48, 49, 50): "bass", (55,): "tenor", (64,): "alto", (72,): "soprano"}
    assert set(gone) == set(voices)  # exactly one whole voice each time, each of the four in turn
    assert all(gone.count(v) > 60 for v in voices)
    assert torch.equal(out[out > 0], chorale[out > 0])  # what stays is untouched
    half = drop_voices(chorale, torch.Generator().manual_seed(1), 0.5)
    assert 0.4 < (half != chorale).any(dim=2).any(dim=1).float().mean() < 0.6
    melody = torch.zeros(8, 128, 20)
    melody[:, 60, :10] = melody[:, 62, 10:] = 1.0
    assert torch.equal(drop_voices(melody, torch.Generator().manual_seed(0), 1.0), melody)
    with pytest.raises(ValueError, match="voice dropout needs pitch rows"):
        BuildOptions(features=FeatureSettings(), train=TrainSettings(voice_dropout=0.5))
    with pytest.raises(ValueError, match="probability"):
        TrainSettings(voice_dropout=1.5)


def test_cosface_term_pulls_clips_to_their_own_composer_and_trains_with_any_composer_labels() -> None:
    from musicid.model.embedder import Embedder
    from musicid.model.training import cosface_loss

    proxies = torch.eye(3, 8)  # three composers' directions
    labels = torch.tensor([0, 1, 2])
    right = cosface_loss(proxies.clone(), labels, proxies)  # every clip on its own composer's direction
    wrong = cosface_loss(proxies.roll(1, dims=0), labels, proxies)  # every clip on another's
    assert right < 0.1 < 5 < wrong
    assert cosface_loss(proxies.clone(), labels, proxies, margin=0.0) < right  # the margin asks for more
    clips = torch.rand(36, 32, 64)
    labels_np = np.repeat([3, 7, 9], 12)  # composer labels need not be 0..n-1
    model, _ = train_embedder(clips, labels_np, TINY_DIMS, replace(TINY_TRAIN, cosface=1.0))
    assert model.state_dict().keys() == Embedder(TINY_DIMS).state_dict().keys()  # the proxies are not kept


def test_the_domain_adversary_reverses_its_gradient_into_the_embedder_and_needs_two_domains() -> None:
    from musicid.errors import TrainingError
    from musicid.model.embedder import Embedder
    from musicid.model.training import TrainSettings, adversary_weight, reverse_gradient

    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)  # forward: unchanged
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.5, -1.0, -1.5]))  # backward: reversed and scaled
    assert adversary_weight(0, 100, 2.0) == 0.0 and 1.99 < adversary_weight(100, 100, 2.0) <= 2.0
    assert adversary_weight(10, 100, 1.0) < adversary_weight(50, 100, 1.0) < adversary_weight(90, 100, 1.0)
    clips = torch.rand(36, 32, 64)
    labels = np.repeat([0, 1, 2], 12)
    domains = np.tile([4, 9], 18)  # any integers: two domains
    model, _ = train_embedder(clips, labels, TINY_DIMS, replace(TINY_TRAIN, domain_adversary=1.0), collections=domains)
    assert model.state_dict().keys() == Embedder(TINY_DIMS).state_dict().keys()  # the adversary is not kept
    with pytest.raises(TrainingError, match="two domains or more"):
        train_embedder(clips, labels, TINY_DIMS, replace(TINY_TRAIN, domain_adversary=1.0),
                       collections=np.zeros(36, dtype=np.int64))
    with pytest.raises(ValueError, match="cannot be negative"):
        TrainSettings(domain_adversary=-1.0)


def test_balanced_batches_draw_a_composer_evenly_from_each_collection_that_holds_it() -> None:
    from musicid.model.sampling import collection_balanced_pick

    rng = np.random.default_rng(0)
    big, small = np.arange(100), np.arange(100, 104)  # 100 keyboard clips, 4 string clips of one composer
    for _ in range(50):
        pick = collection_balanced_pick(rng, [big, small], 8)
        assert len(pick) == 8 and np.isin(pick, small).sum() == 4 and len(set(pick[np.isin(pick, small)])) == 4
    odd = [collection_balanced_pick(rng, [big, small, np.arange(200, 300)], 8) for _ in range(300)]
    assert all(sorted(np.bincount(np.digitize(p, [100, 104]), minlength=3)) == [2, 3, 3] for p in odd)
    # one collection: the plain draw, with the same random numbers as before the option existed
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert (collection_balanced_pick(a, [big], 8) == b.choice(big, size=8, replace=False)).all()


def test_balanced_training_draws_every_collection_into_each_batch(tmp_path: Path) -> None:
    # through train_or_load, as embedder train calls it: the composer's few clips from the second collection
    # are in every batch only with the option
    import musicid.model.training as E

    seen: list[np.ndarray] = []
    real = E.collection_balanced_pick

    def spy(rng: np.random.Generator, pools: list[np.ndarray], k: int) -> np.ndarray:
        out = real(rng, pools, k)
        seen.append(out)
        return out

    clips = torch.rand(44, 32, 64)
    labels = np.repeat([0, 1], [40, 4])
    collections = np.r_[np.zeros(36, int), np.full(4, 1), np.zeros(4, int)]  # composer 0: 36 + 4 clips
    E.collection_balanced_pick = spy
    try:
        for balance in (False, True):
            seen.clear()
            train_embedder(clips, labels, TINY_DIMS, replace(TINY_TRAIN, epochs=1, balance_collections=balance),
                           collections=collections)
            from_second = [np.isin(p, np.arange(36, 40)).sum() for p in seen if p.max() < 40]
            assert bool(min(from_second) == TINY_TRAIN.clips_per_composer // 2) is balance
    finally:
        E.collection_balanced_pick = real


def test_models_cached_by_earlier_versions_are_still_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a training setting added at its default leaves the model cache's key as it was (pinned with musicid
    # 0.3's readers: MIDI reader 3, score reader 1; a new reader changes the key, as it should, so the
    # readers are pinned here); setting it makes a different model, so a different key
    from musicid.build.corpus import BuildOptions
    from musicid.io import reader

    monkeypatch.setattr(reader, "READERS", {"midi_reader": 3, "score_reader": 1})
    from musicid.build.model_cache import model_cache_path
    from musicid.features.clips import pianoroll_settings
    from musicid.io.render import RenderSettings
    from musicid.model.training import TrainSettings

    sf2 = tmp_path / "fixed.sf2"
    sf2.write_bytes(b"RIFF\x00\x00\x00\x00sfbk a fixed stand-in")  # the key digests the SoundFont's bytes
    options = BuildOptions(features=pianoroll_settings(), cache_dir=Path("/cache"),
                           render=RenderSettings(soundfont=str(sf2)))
    tracks = [("ab" * 32, "Bach"), ("cd" * 32, "Chopin")]
    assert model_cache_path(options, tracks).name == "9359c762a04e8899.pt"
    for changed in (TrainSettings(time_stretch=0.25), TrainSettings(cosface=1.0), TrainSettings(anchor=0.01),
                    TrainSettings(balance_collections=True), TrainSettings(voice_dropout=0.5),
                    TrainSettings(domain_adversary=1.0)):
        assert model_cache_path(replace(options, train=changed), tracks).name != "9359c762a04e8899.pt"


def test_balancing_a_training_set_with_no_composer_in_two_collections_reuses_the_plain_model(tmp_path: Path) -> None:
    # every composer in one collection: the option changes no draw, so the model trained without it is
    # loaded, not trained again; a composer in two collections makes it a different model
    from musicid.build.model_cache import balancing_acts, train_or_load
    from musicid.features.prepare import Prepared

    rng = np.random.default_rng(0)
    prepared = [Prepared(tmp_path / f"{i}.mid", f"{i:064x}", "", 30.0, 30.0,
                         rng.random((2, 32, 64)).astype(np.float16), [0.0, 15.0], np.zeros(4), np.zeros(4, np.uint32))
                for i in range(6)]
    composers_of = ["Bach"] * 3 + ["Chopin"] * 3
    idx = np.arange(6)
    plain = tiny_options(tmp_path, train=replace(TINY_TRAIN, epochs=1))
    balanced = replace(plain, train=replace(plain.train, balance_collections=True))
    one_each, bach_in_both = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]
    assert not balancing_acts(composers_of, idx, one_each) and balancing_acts(composers_of, idx, bach_in_both)
    assert not balancing_acts(composers_of, np.arange(2, 6), [0, 0, 1, 1, 1, 1])  # Bach's other track not trained on
    model, _, cached = train_or_load(prepared, composers_of, idx, ["Bach", "Chopin"], plain)
    assert not cached
    again, _, cached = train_or_load(prepared, composers_of, idx, ["Bach", "Chopin"], balanced, collection_of=one_each)
    assert cached and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                             again.state_dict().values(), strict=True))
    _, _, cached = train_or_load(prepared, composers_of, idx, ["Bach", "Chopin"], balanced, collection_of=bach_in_both)
    assert not cached


def test_licences_and_bad_collections(tmp_path: Path) -> None:
    assert weights_licence(["MIT", ""]) == "MIT"
    assert weights_licence(["", ""]) == "unknown: the training collections declare no licence"
    (tmp_path / "README.md").write_text("# x\n\n**Licence.** CC BY-NC-SA 4.0 (LICENSE.md), as for the source.\n")
    assert collection_licence(tmp_path) == "Licence.** CC BY-NC-SA 4.0 (LICENSE.md), as for the source."
    (tmp_path / "README.md").write_text("MIDI files, as published with an MIT-licensed challenge.\n")
    assert collection_licence(tmp_path) == ""  # a sentence that mentions a licence is not a declaration
    one = make_corpus(tmp_path / "one", ["Organ"], per_composer=2, seconds=4)
    with pytest.raises(DataDirError, match="at least two composers"):
        train_general_embedder([one], tmp_path / "m.pt", tiny_options(tmp_path))


def test_embedder_train_through_the_cli(tmp_path: Path) -> None:
    a = make_corpus(tmp_path / "a", ["Lowpiano", "Highflute"], per_composer=3, seconds=6)
    r = CliRunner().invoke(app, ["embedder", "train", str(a), "--out", str(tmp_path / "m.pt"), "--features",
                                 "pianoroll", "--epochs", "1", "--steps-per-epoch", "2", "-P", "2", "-K", "4",
                                 "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "--seed", "3",
                                 "--voice-dropout", "0.5", "--width", "12", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["composers"] == ["Highflute", "Lowpiano"] and rep["train"]["steps"] == 2
    assert rep["licence"] == "unknown: the training collections declare no licence"
    model, features, meta = load_checkpoint(tmp_path / "m.pt")
    assert model.dims.width == 12 and model.body[0].out_channels == 12
    assert features.representation == "pianoroll" and meta["train"]["composers_per_batch"] == 2
    assert meta["train"]["seed"] == 3 and meta["train"]["voice_dropout"] == 0.5
    info = CliRunner().invoke(app, ["embedder", "info", str(tmp_path / "m.pt")]).stdout
    assert "voice dropout 0.5" in info and "first block 12 channels, 4 blocks, 128 dimensions" in info
    r = CliRunner().invoke(app, ["embedder", "train", str(a), "--out", str(tmp_path / "audio.pt"), "--features",
                                 "audio", "--voice-dropout", "0.5", "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 2 and "voice dropout needs pitch rows" in r.output
    assert not (tmp_path / "audio.pt").exists()


def test_open_set_labels_make_every_other_composer_and_every_flag_unknown() -> None:
    from musicid.evaluation.cross_collection import UNKNOWN, open_set_labels

    truth, pred = open_set_labels(["A", "B", "X", "X"], ["A", "A", "B", "A"], [False, False, True, False], {"A", "B"})
    assert truth == ["A", "B", UNKNOWN, UNKNOWN] and pred == ["A", "A", UNKNOWN, "A"]


def test_cross_collection_protocol_through_the_cli(general: Path, tmp_path: Path) -> None:
    enrol = make_corpus(tmp_path / "enrol", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    query = make_corpus(tmp_path / "query", ["Lowpiano", "Organ", "Choir", "Highflute"], per_composer=4, seed=8)
    r = CliRunner().invoke(app, ["eval", str(query), "--enrol", str(enrol), "--model", str(general), "--out",
                                 str(tmp_path / "out"), "--bootstrap", "50", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert result["enrolled"] == ["Lowpiano", "Organ"] and result["novel_composers"] == {"Choir": 4, "Highflute": 4}
    every = result["all"]
    assert every["known_tracks"] == 8 and every["novel_tracks"] == 8
    assert every["classification"]["accuracy"] == 1.0  # Organ, never in the embedder's training, enrolled and named
    assert every["novelty"]["auroc"] >= 0.75 and len(every["novelty"]["auroc_ci"]) == 2
    assert set(every["open_set"]["labels"]) == {"Lowpiano", "Organ", "(unknown)"}
    # Highflute was in the embedder's training: the figures without it count Choir alone as novel
    assert result["novel_unseen_by_embedder"]["novel_tracks"] == 4
    assert "novelty AUROC" in r.output and "open-set macro-F1" in r.output
    assert result["novelty_method"] == "fused"
    # index build's flags hold in this protocol too (they were once dropped without a word)
    r = CliRunner().invoke(app, ["eval", str(query), "--enrol", str(enrol), "--model", str(general), "--out",
                                 str(tmp_path / "out2"), "--bootstrap", "0", "--cache-dir", str(tmp_path / "c"),
                                 "--novelty", "symbolic-knn"])
    assert r.exit_code == 0, r.output
    symbolic = json.loads((tmp_path / "out2" / "eval.json").read_text())
    assert symbolic["novelty_method"] == "symbolic-knn"
    assert [t["novelty"] for t in symbolic["tracks"]] != [t["novelty"] for t in result["tracks"]]
    # --fine-tune: the model goes on training on the enrolled folder first, as index build --fine-tune does
    r = CliRunner().invoke(app, ["eval", str(query), "--enrol", str(enrol), "--model", str(general), "--out",
                                 str(tmp_path / "out3"), "--bootstrap", "0", "--cache-dir", str(tmp_path / "c"),
                                 "--fine-tune", "--epochs", "1", "--steps-per-epoch", "4"])
    assert r.exit_code == 0, r.output
    tuned = json.loads((tmp_path / "out3" / "eval.json").read_text())
    assert tuned["fine_tuned"] is True and result["fine_tuned"] is False
    assert [t["novelty"] for t in tuned["tracks"]] != [t["novelty"] for t in result["tracks"]]
    r = CliRunner().invoke(app, ["eval", str(query), "--enrol", str(enrol)])
    assert r.exit_code == 2 and "needs both --enrol DIR and --model MODEL" in r.stderr


def test_background_composers_the_index_does_not_hold_are_its_novelty_cohort(general: Path, tmp_path: Path) -> None:
    from musicid.build.edit import add_tracks
    from musicid.index.calibration import NoveltySettings

    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general,
                                                       novelty=NoveltySettings("background-margin")))
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["settings"]["novelty"]["background"] is True
    # Lowpiano is enrolled, so only the two others stay in the background
    assert manifest["novelty"]["background"] == {"composers": {"Highflute": 6, "Strings": 6}, "tracks": 12}
    engine = QueryEngine.open(tmp_path / "idx")
    strings = engine.query(write_piece(tmp_path / "strings.mid", "Strings", 931))
    # nearer the Strings background than any indexed piece: a positive margin, flagged
    assert strings.novel and strings.novelty > 0, strings
    assert strings.background_composer == "Strings"  # the query says whom it lies nearest
    # once Strings is enrolled it leaves the background: its pieces lie nearer the index than the cohort
    add_tracks(tmp_path / "idx", make_corpus(tmp_path / "more", ["Strings"], per_composer=4, seed=8),
               tmp_path / "cache")
    engine = QueryEngine.open(tmp_path / "idx")
    assert engine.store.cohort is not None and engine.store.cohort.composers == ("Highflute",)
    info = CliRunner().invoke(app, ["index", "info", "--index", str(tmp_path / "idx")], env={"COLUMNS": "200"})
    assert f"{general}, enrolled without training" in info.output
    assert "licence  CC BY-NC-SA 4.0" in info.output  # the terms of what the embedder learnt from
    assert "background  1 composer the embedder knows and the index does not (Highflute)" in info.output
    again = engine.query(write_piece(tmp_path / "strings.mid", "Strings", 931))
    assert again.composer == "Strings" and again.novelty < 0 and again.background_composer == "Highflute", again
    # a per-index embedder has no background: the score is refused in one line, before anything is written
    with pytest.raises(TrainingError, match="background-margin needs a general embedder"):
        build_index(folder, tmp_path / "idx2", tiny_options(tmp_path, novelty=NoveltySettings("background-margin")))
    assert not (tmp_path / "idx2").exists()


def test_with_a_background_the_default_novelty_is_the_mean_of_normalised_and_symbolic_z_scores(
        general: Path, tmp_path: Path) -> None:
    from musicid.index.calibration import Calibration

    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general))  # --novelty fused
    cal = json.loads((tmp_path / "idx" / "manifest.json").read_text())["calibration"]
    assert cal["rule"] == "mean" and list(cal["scales"]) == ["background-snorm", "symbolic-knn"]
    engine = QueryEngine.open(tmp_path / "idx")
    strings = engine.query(write_piece(tmp_path / "strings.mid", "Strings", 931))
    organ = engine.query(write_piece(tmp_path / "organ.mid", "Organ", 901))
    assert strings.novelty_rule == "mean" and set(strings.novelty_parts) == {"background-snorm", "symbolic-knn"}
    z = [(strings.novelty_parts[m] - med) / iqr for m, (med, iqr) in cal["scales"].items()]
    assert strings.novelty == pytest.approx(sum(z) / 2, abs=1e-3)
    assert list(strings.novelty_z.values()) == pytest.approx(z, abs=1e-3)  # what the query line shows averaged
    # Strings, a background composer, lies past the threshold; the enrolled Organ below it
    assert strings.novel and not organ.novel and strings.novelty > organ.novelty + 1, (strings, organ)
    info = CliRunner().invoke(app, ["index", "info", "--index", str(tmp_path / "idx")], env={"COLUMNS": "200"})
    assert "fused parts  the mean z-score of background-normalised distance: median" in info.output, info.output
    # once every background composer is enrolled the margin cannot be measured (-inf): the symbolic
    # part alone decides, and the score stays a number a JSON reader accepts
    from musicid.build.edit import add_tracks

    add_tracks(tmp_path / "idx", make_corpus(tmp_path / "more", ["Strings", "Highflute"], per_composer=4, seed=8),
               tmp_path / "cache")
    emptied = QueryEngine.open(tmp_path / "idx")
    assert emptied.store.cohort is not None and len(emptied.store.cohort) == 0
    alone = emptied.query(write_piece(tmp_path / "organ.mid", "Organ", 901))
    med, iqr = cal["scales"]["symbolic-knn"]
    assert alone.novelty_parts["background-snorm"] == float("-inf")
    assert alone.novelty == pytest.approx((alone.novelty_parts["symbolic-knn"] - med) / iqr, abs=1e-3)
    assert json.loads(json.dumps(alone.as_dict(), allow_nan=False))["novelty_parts"]["background-snorm"] is None
    said = CliRunner().invoke(app, ["query", str(tmp_path / "organ.mid"), "--index", str(tmp_path / "idx")],
                              env={"COLUMNS": "200"})
    assert said.exit_code == 0 and "from background-normalised distance -inf" in said.output
    assert "the one measured" in said.output
    said = CliRunner().invoke(app, ["query", str(tmp_path / "organ.mid"), "--index", str(tmp_path / "idx"), "--json"])
    assert said.exit_code == 0 and json.loads(said.output)["novelty_parts"]["background-snorm"] is None
    # an index calibrated before the rule existed (its calibration names track-knn and symbolic-knn, and no
    # rule) keeps scoring as it did: the larger of those two z-scores
    old = Calibration.from_dict({"threshold": 2.0, "scales": {"track-knn": [0.1, 0.05], "symbolic-knn": [3.0, 1.0]}})
    assert old.rule == "max" and old.parts == ("track-knn", "symbolic-knn")
    engine.store.manifest = replace(engine.store.manifest, calibration=old)
    again = engine.query(write_piece(tmp_path / "strings.mid", "Strings", 931))
    assert again.novelty_rule == "max" and set(again.novelty_parts) == {"track-knn", "symbolic-knn"}
    assert again.novelty == pytest.approx(max((again.novelty_parts["track-knn"] - 0.1) / 0.05,
                                              again.novelty_parts["symbolic-knn"] - 3.0), abs=1e-3)
    assert again.novelty_parts["symbolic-knn"] == strings.novelty_parts["symbolic-knn"]


def test_a_batch_is_judged_by_the_part_that_sets_it_apart_from_held_out_known_tracks() -> None:
    from musicid.index.calibration import Calibration
    from musicid.recognize.batch_judge import judge_batch, rejudge, shift
    from musicid.recognize.query import TrackResult

    held = np.array([-1.0, 0.0, 0.0, 1.0])
    assert shift(np.array([2.0, 3.0]), held) == 1.0 and shift(np.array([-2.0]), held) == 0.0
    assert shift(np.array([0.0]), held) == pytest.approx(0.5)  # ties count half: (1 below + 2 ties / 2) / 4
    cal = Calibration(1.0, {"background-snorm": (0.0, 1.0), "symbolic-knn": (0.0, 1.0)}, "mean",
                      heldout_z={"background-snorm": tuple(np.linspace(-2, 2, 21)),
                                 "symbolic-knn": tuple(np.linspace(-2, 2, 21))})

    def result(name: str, snorm: float, symbolic: float) -> TrackResult:
        z = {"background-snorm": snorm, "symbolic-knn": symbolic}
        return TrackResult(name, "Organ", 1.0, {}, {}, (snorm + symbolic) / 2, 1.0, (snorm + symbolic) / 2 > 1.0, 1,
                           novelty_z=z)

    # the notes set this batch apart (two tracks far out in symbolic-knn), the embedding does not
    batch = [result("a", 0.1, 5.0), result("b", -0.2, 4.0), result("c", 0.0, 0.1), result("d", 0.2, -0.3)]
    j = judge_batch(batch, cal, keep=0.95)
    assert j is not None and j.part == "symbolic-knn" and j.shifts["symbolic-knn"] > j.shifts["background-snorm"]
    assert j.threshold == pytest.approx(np.quantile(np.linspace(-2, 2, 21), 0.95))  # 1.8
    judged = rejudge(batch, j)
    assert [r.path for r in judged if r.novel] == ["a", "b"] and judged[0].novelty == 5.0
    assert all(r.threshold == pytest.approx(1.8) and r.novelty_method == "symbolic-knn" for r in judged)
    # neither part shifts the batch by more than the margin over the other: the fused score judges
    even = [result("a", 3.0, 3.0), result("b", 0.0, 0.0)]
    j = judge_batch(even, cal, keep=0.95)
    assert j is not None and j.part is None and j.threshold == 1.0
    assert [r.path for r in rejudge(even, j)] == ["a", "b"] and rejudge(even, j)[0].novelty == 3.0
    # an index calibrated without the held-out z-scores cannot judge a batch
    assert judge_batch(batch, Calibration(1.0, cal.scales, "mean"), keep=0.95) is None


def test_report_judges_a_folder_by_batch_and_says_by_what(general: Path, tmp_path: Path) -> None:
    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general))
    cal = json.loads((tmp_path / "idx" / "manifest.json").read_text())["calibration"]
    assert set(cal["heldout_z"]) == {"background-snorm", "symbolic-knn"}
    assert cal["heldout_z"]["symbolic-knn"] == sorted(cal["heldout_z"]["symbolic-knn"])
    pile = tmp_path / "pile"
    for style, seed in (("Organ", 901), ("Organ", 902), ("Choir", 905), ("Choir", 906)):
        write_piece(pile / f"{style}{seed}.mid", style, seed)
    runner = CliRunner()
    r = runner.invoke(app, ["report", "--novel", str(pile), "--index", str(tmp_path / "idx"), "--judge", "batch",
                            "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    j = out["judgement"]
    assert set(j["shifts"]) == {"background-snorm", "symbolic-knn"} and j["margin"] == 0.05
    flagged = sorted(x["path"] for x in out["results"] if x["novel"])
    assert flagged == ["Choir905.mid", "Choir906.mid"], out  # the strangers, whichever part judged
    assert all(x["threshold"] == j["threshold"] for x in out["results"])
    r = runner.invoke(app, ["report", "--novel", str(pile), "--index", str(tmp_path / "idx"), "--judge", "batch"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "batch: judged by" in r.stdout and "0.5 = alike" in r.stdout
    # the service's batch route judges the same files the same way
    from musicid.serve import ServeConfig, create_app

    from .test_serve import TestClient  # imported there with starlette's httpx2 warning silenced

    files = [("files", (p.name, p.read_bytes())) for p in sorted(pile.iterdir())]
    with TestClient(create_app(ServeConfig(tmp_path / "idx", workers=1, cache_dir=tmp_path / "cache"))) as client:
        body = client.post("/report?judge=batch", files=files).json()
        assert body["judgement"] == j and body["results"] == out["results"]
        assert "judgement" not in client.post("/report", files=files).json()
        assert client.post("/report?judge=nope", files=files).status_code == 422


def test_a_reference_folder_from_the_queries_source_places_the_threshold(general: Path, tmp_path: Path) -> None:
    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general))
    pile, ref = tmp_path / "pile", tmp_path / "ref"
    for style, seed in (("Organ", 901), ("Organ", 902), ("Choir", 905), ("Choir", 906)):
        write_piece(pile / f"{style}{seed}.mid", style, seed)
    for style, seeds in (("Organ", range(910, 920)), ("Lowpiano", range(920, 930)),
                         ("Choir", [931])):  # Choir is not indexed: not a known reference work
        for seed in seeds:
            write_piece(ref / style / f"{style}{seed}.mid", style, seed)
    runner = CliRunner()
    idx = ["--index", str(tmp_path / "idx"), "--json"]
    ref_scores = json.loads(runner.invoke(app, ["report", str(ref), *idx]).stdout)["results"]
    known = sorted(x["novelty"] for x in ref_scores if not x["path"].startswith("Choir"))
    r = runner.invoke(app, ["report", "--novel", str(pile), "--reference", str(ref), *idx])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    j = out["judgement"]
    assert j["reference_tracks"] == 20 and j["part"] is None and j["shifts"] == {}
    assert j["threshold"] == pytest.approx(known[-1], abs=2e-4)  # of 20: the ceil(21 * 0.95) = 20th smallest
    assert all(x["threshold"] == j["threshold"] and x["novel"] == (x["novelty"] > j["threshold"])
               for x in out["results"])
    assert [x["novelty"] for x in out["results"]] == sorted((x["novelty"] for x in out["results"]), reverse=True)
    # judged as a batch, the shifts are measured against the reference works, not the index's held-out ones
    batch = json.loads(runner.invoke(app, ["report", str(pile), "--reference", str(ref), "--judge", "batch",
                                           *idx]).stdout)["judgement"]
    alone = json.loads(runner.invoke(app, ["report", str(pile), "--judge", "batch", *idx]).stdout)["judgement"]
    assert batch["reference_tracks"] == 20 and alone["reference_tracks"] == 0 and batch["shifts"] != alone["shifts"]
    text = runner.invoke(app, ["report", str(pile), "--reference", str(ref), "--index", str(tmp_path / "idx")],
                         env={"COLUMNS": "200"}).stdout
    assert "placed on 20 known works of the reference folder" in text
    # the service's POST /report takes the reference as files with their composers, and judges alike
    from musicid.serve import ServeConfig, create_app

    from .test_serve import TestClient  # imported there with starlette's httpx2 warning silenced

    files = [("files", (p.name, p.read_bytes())) for p in sorted(pile.iterdir())]
    refs = sorted(ref.rglob("*.mid"))
    upload = [("reference", (p.name, p.read_bytes())) for p in refs]
    with TestClient(create_app(ServeConfig(tmp_path / "idx", workers=1, cache_dir=tmp_path / "cache"))) as client:
        body = client.post("/report", files=files + upload, data={"reference_composer": [p.parent.name for p in refs]})
        assert body.json()["judgement"] == j and body.json()["results"] == out["results"]
        few = client.post("/report", files=files + upload[:12], data={"reference_composer": ["Organ"] * 12})
        assert few.status_code == 422 and "at least 19" in few.json()["error"]
        unpaired = client.post("/report", files=files + upload[:2], data={"reference_composer": ["Organ"]})
        assert unpaired.status_code == 422 and "give one composer per reference file" in unpaired.json()["error"]
    # too few known works to hold the flag rate on known works at 5%: refused, not guessed
    for seed in range(912, 920):
        (ref / "Organ" / f"Organ{seed}.mid").unlink()
    r = runner.invoke(app, ["report", str(pile), "--reference", str(ref), "--index", str(tmp_path / "idx")])
    assert r.exit_code == 1 and "12 reference work(s) by indexed composers" in r.output and "at least 19" in r.output
    shutil.rmtree(ref / "Organ")
    shutil.rmtree(ref / "Lowpiano")
    r = runner.invoke(app, ["report", str(pile), "--reference", str(ref), "--index", str(tmp_path / "idx")])
    assert r.exit_code == 1 and "no readable file under a subfolder named for an indexed composer" in r.output


def test_the_conformal_threshold_is_an_order_statistic_that_keeps_the_nominal_share() -> None:
    from musicid.recognize.batch_judge import conformal_threshold, min_reference

    assert min_reference(0.95) == 19 and min_reference(0.9) == 9 and min_reference(0.99) == 99
    assert conformal_threshold(np.arange(1.0, 20.0), 0.95) == 19.0  # 19 scores: ceil(20 * 0.95) = 19th
    assert conformal_threshold(np.arange(40.0, 0.0, -1.0), 0.95) == 39.0  # ceil(41 * 0.95) = 39th, in any order
    assert conformal_threshold(np.arange(1.0, 19.0), 0.95) == float("inf")  # 18: no finite threshold keeps 95%
    # over many exchangeable draws a new score exceeds it at most 1 - keep of the time (here 1/20 exactly)
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(20000, 20))
    exceed = np.mean([d[-1] > conformal_threshold(d[:-1], 0.95) for d in draws])
    assert exceed == pytest.approx(0.05, abs=0.006)


def test_equal_error_threshold_sits_between_held_out_known_tracks_and_the_background(
        general: Path, tmp_path: Path) -> None:
    from musicid.index.calibration import NoveltySettings
    from musicid.recognize.novelty import equal_error_threshold

    # one known score in four above it, one impostor in four at or under it
    assert equal_error_threshold(np.array([0.0, 1, 2, 3]), np.array([2.5, 4, 5, 6])) == 2.5
    # the background keeps each training track's symbolic features, so it can be scored as queries
    bg = load_background(general)
    assert bg is not None and bg.symbolic is not None and bg.symbolic.shape == (18, N_SYMBOLIC)
    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=6, seed=7)
    build_index(folder, tmp_path / "q", tiny_options(tmp_path))  # known-quantile, the default
    build_index(folder, tmp_path / "e", tiny_options(tmp_path, model_path=general,
                                                     novelty=NoveltySettings(threshold_rule="equal-error")))
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    cal = manifest["calibration"]
    # placed against the 12 background tracks the index does not enrol (Highflute's and Strings')
    assert cal["threshold_rule"] == "equal-error" and cal["impostors"] == 12, cal
    assert "the same share of held-out known-composer tracks scores above the threshold as of 12 background" \
        in manifest["novelty"]["rule"]
    engine = QueryEngine.open(tmp_path / "e")
    strings = engine.query(write_piece(tmp_path / "strings.mid", "Strings", 931))
    organ = engine.query(write_piece(tmp_path / "organ.mid", "Organ", 901))
    assert strings.novel and not organ.novel, (strings, organ)
    # a per-index embedder keeps no background: the rule falls back to the quantile of known tracks
    said = build_index(folder, tmp_path / "p",
                       tiny_options(tmp_path, novelty=NoveltySettings(threshold_rule="equal-error")))
    assert "--threshold-rule equal-error: the index has no background (an embedder trained here, or every " \
        "background composer enrolled), so the threshold is known-quantile's" in said.warnings, said.warnings
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["calibration"]["threshold_rule"] \
        == "known-quantile"
    r = CliRunner().invoke(app, ["index", "build", str(folder), "--threshold-rule", "nearest"])
    assert r.exit_code == 2 and "threshold-rule" in r.output


def test_a_background_keeps_symbolic_features_only_of_the_current_version(tmp_path: Path) -> None:
    from musicid.model.background import Background, background_of

    bg = background_of(np.eye(3, 4), ["Bach", "Grieg", "Bach"], np.arange(15.0).reshape(3, 5))
    bg.save(tmp_path / "b.npz")
    for again in (Background.load(tmp_path / "b.npz"), Background.from_checkpoint(bg.to_checkpoint())):
        assert again.symbolic is not None and (again.without(["Bach"]).symbolic == [[5, 6, 7, 8, 9]]).all()
    stale = {**bg.to_checkpoint(), "symbolic_version": -1}  # features computed another way: not comparable
    assert Background.from_checkpoint(stale).symbolic is None
    assert background_of(np.eye(2, 4), ["Bach", "Grieg"]).symbolic is None


def test_background_snorm_is_the_nearest_distance_normalised_by_the_ten_nearest_background_tracks() -> None:
    import numpy as np

    from musicid.model.background import background_of
    from musicid.recognize.novelty import SCORERS, TrackQuery
    from musicid.vectors import mean_vector

    rng = np.random.default_rng(0)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    bg = background_of(unit(rng.normal(size=(12, 8))), ["Dvorak"] * 6 + ["Grieg"] * 6)

    class Store:  # the two things the score reads from an index: its cohort and its nearest track
        cohort = bg

        def search_tracks(self, v: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.array([0.3]), np.array([0])

    clips = unit(rng.normal(size=(3, 8)))
    ip = np.sort(bg.vectors @ mean_vector(clips))[::-1][:10]
    d = np.sqrt(2 - 2 * ip)
    score = SCORERS["background-snorm"](Store(), TrackQuery(clips), 5, np.array([], dtype=np.int64))
    assert score == pytest.approx((0.3 - d.mean()) / d.std(), rel=1e-4)
    Store.cohort = bg.without(["Dvorak", "Grieg"])  # every background composer enrolled: nothing to compare
    assert SCORERS["background-snorm"](Store(), TrackQuery(clips), 5, np.array([], dtype=np.int64)) == float("-inf")


def test_a_composer_spelt_otherwise_is_still_the_same_composer() -> None:
    import numpy as np

    from musicid.model.background import background_of, name_key

    assert [name_key(n) for n in ("J.S. Bach", "Johann_Sebastian_Bach", "bach", "Dvořák")] == [
        "bach", "bach", "bach", "dvorak"]
    bg = background_of(np.eye(4, dtype=np.float32), ["Bach", "Dvorak", "Bach", "Grieg"])
    left = bg.without(["J. S. Bach", "Antonín Dvořák"])
    assert left.composers == ("Grieg",) and left.labels.tolist() == [0] and len(left) == 1
    assert left.nearest(np.eye(4, dtype=np.float32)[3]) == (0.0, "Grieg")
    assert bg.without(["Bach", "Dvorak", "Grieg"]).nearest(np.ones(4, np.float32) / 2) == (float("inf"), "")


def test_embedder_info_says_what_the_shipped_and_a_given_embedder_were_trained_on(general: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["embedder", "info", "--json"])
    shipped = json.loads(r.stdout)
    assert r.exit_code == 0 and shipped["shipped"] and len(shipped["composers"]) == 481
    assert shipped["licence"].startswith("CC BY-NC-SA 4.0")
    assert [c["path"] for c in shipped["collections"]] == ["asap", "dcml-piano", "sfl-challenge/train",
                                                           "openscore-lieder", "openscore-quartets", "polish-scores",
                                                           "dcml-chamber-vocal"]
    assert shipped["held_out_composers"] == []  # every composer handed to the project: its twin held 100 out
    assert sum(c["tracks"] for c in shipped["collections"]) == shipped["background"]["tracks"] == 7666
    r = runner.invoke(app, ["embedder", "info"])  # the shipped recipe, readable without --json
    assert r.exit_code == 0 and "P = 16 composers x K = 4 clips" in r.stdout
    assert "genre-balanced batches" in r.stdout and "and 469 more (--json lists all)" in r.stdout
    assert "held out" not in r.stdout and "background  7666 tracks" in r.stdout
    r = runner.invoke(app, ["embedder", "info", str(general)])
    assert r.exit_code == 0 and "Highflute, Lowpiano, Strings" in r.stdout and "18 tracks" in r.stdout


def test_a_stopped_training_resumes_from_its_last_epoch_draw_for_draw(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    clips = torch.rand(24, TINY_DIMS.n_bins, 40, generator=gen)
    labels = np.repeat([0, 1, 2], 8)
    works = np.repeat(np.arange(6), 4)
    domains = np.tile([0, 1], 12)
    settings = replace(TINY_TRAIN, epochs=4, steps_per_epoch=3, cosface=1.0, spread_works=True,
                       composer_weighting="sqrt-works", domain_adversary=1.0)
    whole, _ = train_embedder(clips, labels, TINY_DIMS, settings, collections=domains, works=works)

    state = tmp_path / "train.partial.pt"

    def stop_after_seven(stage: str, done: int, total: int) -> None:
        if done == 7:  # in the third epoch: the state after the second was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embedder(clips, labels, TINY_DIMS, settings, stop_after_seven, collections=domains, works=works,
                       resume=state)
    assert state.exists()
    resumed, report = train_embedder(clips, labels, TINY_DIMS, settings, collections=domains, works=works,
                                     resume=state)
    assert report.steps == 12 and len(report.losses) == 12
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_catalogue_licence_column_is_the_collection_licence(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("composer,path,licence\nA,A/a.krn,CC-BY-4.0\nB,B/b.krn,CC0-1.0\n"
                                           "C,C/c.krn,CC-BY-4.0\n")
    (tmp_path / "LICENSE").write_text("Creative Commons Legal Code\n")  # CC0's legal text: says nothing short
    assert collection_licence(tmp_path) == "CC-BY-4.0; CC0-1.0"
    assert weights_licence(["CC-BY-4.0; CC0-1.0", "CC0-1.0"]) == "CC-BY-4.0; CC0-1.0"
    assert weights_licence(["CC0-1.0", "CC-BY-NC-SA-4.0"]).startswith("CC BY-NC-SA 4.0")


def test_a_build_warns_with_counts_when_it_indexes_pieces_the_embedder_was_trained_on(general: Path,
                                                                                      tmp_path: Path) -> None:
    trained_on = sorted((general.parent / "a" / "Lowpiano").glob("*.mid"))[:2]
    folder = make_corpus(tmp_path / "mine", ["Lowpiano", "Organ"], per_composer=4, seed=11)
    for f, name in zip(trained_on, ("trained-a.mid", "trained-b.mid"), strict=True):  # renamed: two works
        shutil.copy(f, folder / "Lowpiano" / name)
    report = build_index(folder, tmp_path / "idx", tiny_options(tmp_path, model_path=general))
    overlap = [w for w in report.warnings if "trained on" in w]
    assert len(overlap) == 1
    assert overlap[0].startswith("2 of 10 tracks (2 works) are pieces the embedder was trained on")
    rough = [w for w in report.warnings if "threshold rests on" in w]  # a handful of works: said so
    assert len(rough) == 1 and rough[0].startswith(f"the novelty threshold rests on {report.heldout['tracks']} ")
    fresh = make_corpus(tmp_path / "fresh", ["Lowpiano", "Organ"], per_composer=4, seed=12)
    clean = build_index(fresh, tmp_path / "idx2", tiny_options(tmp_path, model_path=general))
    assert not [w for w in clean.warnings if "trained on" in w]


def test_a_protocol_split_enrols_as_index_build_and_judges_known_and_novel_works(general: Path,
                                                                                 tmp_path: Path) -> None:
    from musicid.collection.catalogue import TrackInfo
    from musicid.evaluation.enrolment import run_protocol
    from musicid.evaluation.protocols import EnrolSplit
    from musicid.features.cache import FeatureCache
    from musicid.features.prepare import prepare_many
    from musicid.model.background import load_background

    folder = make_corpus(tmp_path / "q", ["Lowpiano", "Organ", "Choir"], per_composer=6, seed=21)
    paths = sorted(folder.rglob("*.mid"))
    model, features, _ = load_checkpoint(general)
    options = tiny_options(tmp_path, model_path=general)
    prepared = prepare_many(paths, options.render, features, FeatureCache.for_tracks(
        options.cache_dir, options.render, features), 1)
    # make_corpus: two movements per work (OP1..OP3); Choir's songs, the others' keyboard
    infos = [TrackInfo(p.parent.name, "q", "song" if p.parent.name == "Choir" else "keyboard",
                       f"{p.parent.name}/{p.name.split('_')[1]}") for p in paths]
    known = ("Lowpiano", "Organ")
    enrol = np.array([n for n, i in enumerate(infos) if i.composer in known and not i.work.endswith("OP3")])
    query = np.array([n for n in range(len(infos)) if n not in set(enrol.tolist())])
    out = run_protocol("many-unseen", model, load_background(general), folder, prepared, infos,
                       [EnrolSplit("draw 0", enrol, query, known)], options, bootstrap=50)
    split = out["splits"][0]
    assert (split["enrolled"], split["known_tracks"], split["novel_tracks"], split["novel_composers"]) == (2, 4, 6, 1)
    assert [r["composer"] for r in split["tracks"]] == [infos[i].composer for i in query]
    assert split["classification"]["macro_f1"] == 1.0  # the known works' other movements named right
    assert split["novelty"]["auroc"] > 0.9
    assert out["mean"]["auroc"] == pytest.approx(split["novelty"]["auroc"], abs=1e-4)
    assert set(split["flag_rates_by_genre"]) == {"keyboard", "song"}
    assert split["flag_rates_by_genre"]["song"]["novel_tracks"] == 6
    # per genre: the known keyboard works all named right; no AUROC where a genre has one side only
    by_genre = split["flag_rates_by_genre"]
    assert by_genre["keyboard"]["named_right"] == 1.0
    assert "auroc" not in by_genre["song"] and "named_right" not in by_genre["song"]
    # an enrolment-size pair: the same queries, the known composers enrolled from one work, then two
    from musicid.evaluation.enrolment import by_enrolment_size
    sized = [EnrolSplit(f"draw 0, {n} works", np.array([i for i in enrol if infos[i].work[-1] <= str(n)]), query,
                        known, n) for n in (2, 1)]
    out = run_protocol("enrolment-size", model, load_background(general), folder, prepared, infos, sized, options,
                       bootstrap=0)
    assert [s["enrolled_tracks"] for s in out["splits"]] == [8, 4]
    assert [r["path"] for r in out["splits"][0]["tracks"]] == [r["path"] for r in out["splits"][1]["tracks"]]
    curve = by_enrolment_size(out["splits"])
    assert list(curve) == ["1", "2"] and all(m["draws"] == 1 for m in curve.values())
    assert [curve[n]["macro_f1"] for n in ("2", "1")] == [s["classification"]["macro_f1"] for s in out["splits"]]
