"""The real pipeline on tiny generated data: render, train, embed, index, reload, query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from musicid.build.indexer import build_index
from musicid.collection.dataset import group_works, holdout_split, kfold_groups, scan_labelled, work_key
from musicid.errors import DataDirError, IndexCorrupt, IndexMismatch, IndexNotFound, TrainingError
from musicid.features.clips import FeatureSettings
from musicid.index.manifest import FORMAT_VERSION
from musicid.index.store import load_store, track_means
from musicid.model.embedder import Embedder, load_checkpoint
from musicid.model.training import batch_hard_triplet_loss
from musicid.recognize.query import QueryEngine

from .conftest import TINY_DIMS, TINY_FEATURES, TINY_TRAIN, make_corpus, tiny_options, write_piece


def test_work_keys_from_catalog_ids_and_stems() -> None:
    assert work_key(Path("Cello Suite 3_BWV1009_2217_cs3-1pre.mid"), "Bach") == "Bach/BWV1009"
    assert work_key(Path("Piano Sonata No 1 in F minor_OP2NO1_2422_ps01_01.mid"), "B") == "B/OP2NO1"
    assert work_key(Path("Sonata in A_D959_1734_sy_sps93.mid"), "S") == "S/D959"
    assert work_key(Path("quartet-op76-2.mid"), "H") == work_key(Path("quartet-op76-3.mid"), "H")
    assert work_key(Path("sonata_k331_mvt1.mid"), "M", group_by=r"(k\d+)") == "M/k331"
    # one movement suffix only: chorale numbers must not collapse into one work
    assert work_key(Path("bwv99.6.mid"), "Bach") == "Bach/bwv99"
    assert work_key(Path("bwv99.6.mid"), "Bach") != work_key(Path("bwv244.3.mid"), "Bach")
    assert work_key(Path("opus74no1-movement1.mid"), "H") == "H/opus74no1"


def test_groups_join_works_and_identical_notes() -> None:
    groups = group_works(["a/W1", "a/W1", "a/W2", "a/W3"], ["f1", "f2", "f3", "f2"])
    assert groups[0] == groups[1] == groups[3]  # W3 has the same notes as a W1 movement
    assert groups[2] != groups[0]


def test_holdout_keeps_works_whole_and_one_work_per_composer_for_training() -> None:
    composers = ["A"] * 10 + ["B"] * 2
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    held = holdout_split(composers, groups, 0.2, seed=3)
    for g in np.unique(groups):
        assert len(set(held[groups == g])) == 1  # a work is all in or all out
    assert held[:10].sum() == 2  # 20% of A, one whole work
    assert not held[10:].any()  # B has one work: keeps it for training


def test_holdout_is_not_swamped_by_one_big_work() -> None:
    composers = ["A"] * 40
    groups = np.array([0] * 30 + list(range(1, 11)))  # one 30-track work and ten single tracks
    for seed in range(10):
        held = holdout_split(composers, groups, 0.2, seed=seed)
        assert 4 <= held.sum() <= 12 and not held[:30].any()


def test_kfold_never_splits_a_work() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 200)
    labels = [f"c{g % 4}" for g in groups]
    fold = kfold_groups(labels, groups, 5)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    assert set(fold) == set(range(5))


def test_batch_hard_loss_prefers_separated_embeddings() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.nn.functional.normalize(torch.tensor([[1., 0], [1, .1], [-1, 0], [-1, .1]]), dim=1)
    mixed = torch.nn.functional.normalize(torch.tensor([[1., 0], [-1, .1], [-1, 0], [1, .1]]), dim=1)
    assert batch_hard_triplet_loss(apart, labels) < 0.2 < batch_hard_triplet_loss(mixed, labels)
    with pytest.raises(TrainingError):
        batch_hard_triplet_loss(apart, torch.tensor([0, 0, 0, 0]))


def test_pitch_shift_augmentation_stays_inside_each_instrument_plane() -> None:
    from musicid.model.augment import augment

    x = torch.zeros(64, 4 * 16, 8)
    x[:, 16 + 15] = 1.0  # the top row of the second plane: any upward shift wraps within that plane
    out = augment(x, torch.Generator().manual_seed(0), max_shift=2, planes=4)
    planes = out.reshape(64, 4, 16, 8)
    spread = planes.amax(dim=(2, 3)) - planes.amin(dim=(2, 3))  # a plane with no notes stays flat
    assert torch.all(spread[:, [0, 2, 3]] == 0) and torch.allclose(spread[:, 1], torch.ones(64))


def test_scan_reports_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="not found"):
        scan_labelled(tmp_path / "nope")
    write_piece(tmp_path / "flat" / "a.mid", "Organ", 0, 2)
    with pytest.raises(DataDirError, match="put each composer's in a subfolder"):
        scan_labelled(tmp_path / "flat")
    write_piece(tmp_path / "one" / "Solo" / "a.mid", "Organ", 0, 2)
    (tmp_path / "one" / "Empty").mkdir()
    with pytest.raises(DataDirError, match="training needs at least 2"):
        scan_labelled(tmp_path / "one", min_composers=2)
    tracks, warnings = scan_labelled(tmp_path / "one")
    assert [t.composer for t in tracks] == ["Solo"]
    assert warnings == ["Empty/: no MIDI files or scores, composer skipped"]


def test_build_writes_a_self_describing_index(built_index: Path, corpus: Path) -> None:
    store = load_store(built_index)
    m = json.loads((built_index / "manifest.json").read_text())
    assert m["format_version"] == 6 and m["composers"] == ["Highflute", "Lowpiano", "Strings"]
    assert set(m["files"]) == {"vectors.npy", "spectral_vectors.npy", "clips.parquet", "tracks.parquet",
                               "spectral_norm.npy", "symbolic_norm.npy", "index.faiss", "spectral.faiss",
                               "centroids.npy", "track_vectors.npy", "linear_probe.npy", "symbolic_probe.npy",
                               "model.pt"}
    settings = m["settings"]
    assert settings["novelty"] == {"method": "fused", "k": 5, "keep": 0.95, "background": False,
                                   "threshold_rule": "known-quantile"}
    assert m["calibration"]["threshold_rule"] == "known-quantile" and m["calibration"]["impostors"] == 0
    assert settings["index_kind"] == "flat"
    assert set(m["calibration"]["scales"]) == {"track-knn", "symbolic-knn"} and store.symbolic_norm.shape == (2, 119)
    assert settings["classifier"] == "knn" and settings["group_by"] is None  # auto, on the audio representation
    assert store.manifest.settings.features == TINY_FEATURES  # the file serialises the settings it was built with
    assert store.index.ntotal == len(store.clips) == len(store.vectors) == m["counts"]["clips"]
    # the raw vectors are kept beside FAISS (float16): what FAISS holds is derived from them
    assert store.vectors.dtype == np.float16 and isinstance(store.vectors, np.memmap)  # never read by a query
    _, nearest = store.index.search(store.vectors[:5].astype(np.float32), 1)
    assert nearest[:, 0].tolist() == store.clips.clip_id[:5].tolist()
    assert len(store.tracks) == 18 and set(store.tracks.split) == {"train", "heldout"}
    # every held-out work is whole
    for work, rows in store.tracks.groupby("work"):
        assert rows.split.nunique() == 1, work
    assert m["calibration"]["threshold"] > 0 and m["novelty"]["heldout"]["tracks"] >= 2
    assert np.allclose(np.linalg.norm(store.centroids, axis=1), 1.0, atol=1e-5)
    model, features, _ = load_checkpoint(built_index / "model.pt")
    assert model.dims == TINY_DIMS and features.as_dict() == settings["features"]


def test_tiny_composers_are_told_apart(built_index: Path, tmp_path: Path) -> None:
    engine = QueryEngine.open(built_index)
    for style in ["Lowpiano", "Highflute", "Strings"]:
        new = write_piece(tmp_path / f"{style}.mid", style, seed=999, seconds=10)
        r = engine.query(new)
        assert r.composer == style, (style, r.probabilities)
        assert r.known_piece is None


def test_query_of_an_indexed_file_names_the_known_piece(built_index: Path, corpus: Path) -> None:
    engine = QueryEngine.open(built_index)
    track = sorted((corpus / "Strings").glob("*.mid"))[0]
    r = engine.query(track)
    assert r.composer == "Strings" and not r.novel
    assert r.known_piece == f"Strings/{track.name}"
    assert r.neighbours[0].path == f"Strings/{track.name}" and r.neighbours[0].distance < 1e-3


def test_a_known_piece_takes_its_indexed_composer_whatever_the_model_says(built_index: Path,
                                                                         corpus: Path) -> None:
    from dataclasses import replace

    from musicid.features.prepare import prepare_track
    from musicid.io.midi import load_midi

    engine = QueryEngine.open(built_index)
    strings = sorted((corpus / "Strings").glob("*.mid"))[0]
    piano = prepare_track(sorted((corpus / "Lowpiano").glob("*.mid"))[0], engine.render_settings, engine.features)
    assert engine.score(piano, "piano").composer == "Lowpiano"
    # a piano's sound with the notes of an indexed Strings track: the model hears a piano, the index knows the piece
    r = engine.score(replace(piano, notes_hash=load_midi(strings).notes_hash), "disguised")
    assert r.known_piece == f"Strings/{strings.name}" and r.composer == "Strings" and r.confidence == 1.0
    assert max(r.probabilities, key=r.probabilities.__getitem__) == "Lowpiano"  # the model's own view stays on show


def test_unseen_style_is_more_novel_than_known(built_index: Path, tmp_path: Path) -> None:
    engine = QueryEngine.open(built_index)
    known = [engine.query(write_piece(tmp_path / f"k{i}.mid", "Lowpiano", 500 + i)).novelty for i in range(3)]
    unseen = [engine.query(write_piece(tmp_path / f"u{i}.mid", "Organ", 600 + i)).novelty for i in range(3)]
    assert min(unseen) > max(known)


def test_build_skips_bad_files_and_says_why(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute"], per_composer=4, seconds=6)
    (data / "Lowpiano" / "broken.mid").write_bytes(b"not midi at all")
    (data / "Highflute" / "silent.mid").write_bytes(b"")
    report = build_index(data, tmp_path / "idx", tiny_options(tmp_path))
    assert sorted(report.failures) == [("Highflute/silent.mid", "empty file"),
                                       ("Lowpiano/broken.mid", "not a MIDI file (no MThd header)")]
    assert report.tracks_per_composer == {"Highflute": 4, "Lowpiano": 4}
    assert [f["path"] for f in load_store(tmp_path / "idx").manifest.about["failures"]] == [
        "Highflute/silent.mid", "Lowpiano/broken.mid"]  # in folder order


def test_second_build_reads_the_render_cache(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute"], per_composer=4, seconds=6)
    first = build_index(data, tmp_path / "a", tiny_options(tmp_path))
    second = build_index(data, tmp_path / "b", tiny_options(tmp_path))
    assert first.cached_tracks == 0 and second.cached_tracks == 8
    assert not first.model_from_cache and second.model_from_cache and "train" not in second.timings
    assert (load_store(tmp_path / "a").manifest.about["model"]["sha256"]
            == load_store(tmp_path / "b").manifest.about["model"]["sha256"])
    assert load_store(tmp_path / "a").manifest.about["counts"] == load_store(tmp_path / "b").manifest.about["counts"]


def test_build_with_given_model_reuses_it_and_its_features(built_index: Path, tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Organ"], per_composer=4, seconds=6, seed=5)
    report = build_index(data, tmp_path / "idx", tiny_options(tmp_path, model_path=built_index / "model.pt"))
    assert not report.trained and report.composers == ["Organ"]
    store = load_store(tmp_path / "idx")
    assert store.manifest.about["model"]["sha256"] == load_store(built_index).manifest.about["model"]["sha256"]


def test_single_composer_cannot_train(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Organ"], per_composer=2, seconds=4)
    with pytest.raises(DataDirError, match="training needs at least 2"):
        build_index(data, tmp_path / "idx", tiny_options(tmp_path))


def test_damaged_index_is_refused(built_index: Path, tmp_path: Path) -> None:
    import shutil

    with pytest.raises(IndexNotFound):
        load_store(tmp_path / "none")
    bad = tmp_path / "bad"
    shutil.copytree(built_index, bad)
    data = (bad / "index.faiss").read_bytes()
    (bad / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorrupt, match="index.faiss does not match its checksum"):
        load_store(bad)
    shutil.rmtree(bad)
    shutil.copytree(built_index, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["settings"]["features"]["n_bins"] = 64
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="feature settings differ"):
        QueryEngine.open(bad)
    # an index written by musicid 0.1 (format 4: untyped manifest, no raw vectors) is refused in one line
    manifest["format_version"] = 4
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch) as e:
        load_store(bad)
    assert str(e.value) == (f"{bad / 'manifest.json'}: index format 4, this musicid reads {FORMAT_VERSION}; "
                            "rebuild the index with musicid index build")


def test_untrained_model_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    from musicid.model.embedder import save_checkpoint

    model = Embedder(TINY_DIMS)
    save_checkpoint(tmp_path / "m.pt", model, FeatureSettings())
    loaded, _, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 32, 100)
    torch.testing.assert_close(model.eval()(x), loaded(x))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(IndexMismatch, match="not a musicid model checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_every_index_kind_finds_the_same_neighbours_and_round_trips(kind: str, tmp_path: Path) -> None:
    import faiss

    from musicid.index.faiss_index import choose_index_kind, make_faiss_index

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(2000, dtype=np.int64) * 7  # ids are not positions
    index = make_faiss_index(x, ids, kind)
    _, found = index.search(x[:20], 1)
    assert found[:, 0].tolist() == (ids[:20]).tolist()  # each vector's nearest is itself
    faiss.write_index(index, str(tmp_path / "i.faiss"))
    again = faiss.read_index(str(tmp_path / "i.faiss"))
    assert again.search(x[:20], 1)[1].tolist() == found.tolist()
    assert choose_index_kind(5_000) == "flat" and choose_index_kind(5_000_000) == "ivf"


def test_track_knn_finds_an_indexed_track_unless_it_is_left_out(built_index: Path) -> None:
    from musicid.recognize.novelty import TrackQuery, raw_scores

    store = load_store(built_index)
    vecs = np.asarray(store.vectors, np.float32)
    tids = store.track_of(store.clips.clip_id.to_numpy())
    assert np.allclose(track_means(vecs, tids, store.tracks.track_id.to_numpy()), store.track_vectors, atol=1e-3)
    t = int(store.tracks.track_id.iloc[3])
    own = TrackQuery(vecs[tids == t])
    assert raw_scores(store, own, ["track-knn"])["track-knn"] == pytest.approx(0.0, abs=1e-3)
    assert raw_scores(store, own, ["track-knn"], exclude_tracks=[t])["track-knn"] > 0.01
    with pytest.raises(ValueError, match="without clips"):
        track_means(vecs, tids, np.array([10_000]))


def test_novelty_method_and_index_type_are_chosen_recorded_and_used(built_index: Path, corpus: Path,
                                                                    tmp_path: Path) -> None:
    import faiss

    from musicid.features.prepare import prepare_track
    from musicid.features.spectral import spectral_stats
    from musicid.index.calibration import NoveltySettings
    from musicid.model.embedder import embed_clips
    from musicid.recognize.novelty import TrackQuery, raw_scores

    model = built_index / "model.pt"
    build_index(corpus, tmp_path / "emb", tiny_options(tmp_path, model_path=model,
                                                          novelty=NoveltySettings("clip-knn"), index_kind="hnsw"))
    build_index(corpus, tmp_path / "snd", tiny_options(tmp_path, model_path=model,
                                                          novelty=NoveltySettings("spectral-knn")))
    emb, snd = QueryEngine.open(tmp_path / "emb"), QueryEngine.open(tmp_path / "snd")
    assert emb.store.manifest.settings.novelty.method == "clip-knn"
    assert emb.store.manifest.settings.index_kind == "hnsw"
    assert isinstance(faiss.downcast_index(emb.store.index.index), faiss.IndexHNSWFlat)
    assert isinstance(faiss.downcast_index(snd.store.index.index), faiss.IndexFlatIP)

    track = write_piece(tmp_path / "q.mid", "Organ", 700)
    a, b = emb.query(track), snd.query(track)
    assert a.composer == b.composer and a.probabilities == b.probabilities  # the same model, the same names
    # each index scores novelty in its own view, and the two views give different numbers
    p = prepare_track(track, snd.render_settings, snd.features)
    vecs = embed_clips(emb.model, torch.from_numpy(p.clips))
    assert a.novelty == pytest.approx(raw_scores(emb.store, TrackQuery(vecs), ["clip-knn"])["clip-knn"], abs=1e-4)
    spectral = TrackQuery(vecs, spectral_stats(p.clips))
    assert b.novelty == pytest.approx(raw_scores(snd.store, spectral, ["spectral-knn"])["spectral-knn"], abs=1e-4)
    assert abs(a.novelty - b.novelty) > 1e-3

    # the default view, the blend of two parts, each scaled by the held-out known tracks' median and
    # interquartile range: the track view (the query's mean vector against every indexed track's mean
    # clip vector) and the score view (its score statistics against every indexed track's, standardised)
    trk = QueryEngine.open(built_index)
    c = trk.query(track)
    cal = trk.store.manifest.calibration
    assert trk.store.manifest.settings.novelty.method == "fused" and c.probabilities == a.probabilities
    clip_vecs = np.asarray(trk.store.vectors, np.float32)
    tids = trk.store.track_of(trk.store.clips.clip_id.to_numpy())
    q = vecs.mean(0) / np.linalg.norm(vecs.mean(0))
    track_part = min(np.linalg.norm(q - clip_vecs[tids == t].mean(0) / np.linalg.norm(clip_vecs[tids == t].mean(0)))
                     for t in trk.store.tracks.track_id)
    mean, std = trk.store.symbolic_norm
    indexed = np.stack(trk.store.tracks.symbolic.to_numpy())
    score_part = np.linalg.norm((indexed - p.symbolic) / std, axis=1).min()
    assert c.novelty_parts == pytest.approx({"track-knn": track_part, "symbolic-knn": score_part}, abs=1e-3)
    assert cal.scales is not None
    (tm, ti), (sm, si) = cal.scales["track-knn"], cal.scales["symbolic-knn"]
    assert c.novelty == pytest.approx(max((track_part - tm) / ti, (score_part - sm) / si), abs=1e-3)
    assert np.allclose(mean, indexed.mean(0), atol=1e-5)  # standardised over the indexed tracks
    assert len({round(x, 3) for x in (a.novelty, b.novelty, c.novelty)}) == 3
    with pytest.raises(ValueError, match="spectral statistics"):
        raw_scores(snd.store, TrackQuery(vecs), ["spectral-knn"])
    with pytest.raises(ValueError, match="symbolic features"):
        raw_scores(trk.store, TrackQuery(vecs), ["symbolic-knn"])


def test_spectral_vectors_are_standardised_statistics_that_round_trip() -> None:
    from musicid.features.spectral import SpectralNorm, spectral_stats
    from musicid.vectors import ip_to_distance

    rng = np.random.default_rng(1)
    clips = rng.standard_normal((6, 8, 50)).astype(np.float32) + np.linspace(-3, 3, 8)[None, :, None]
    stats = spectral_stats(clips)
    assert stats.shape == (6, 16)
    level = clips.mean(axis=(1, 2))[:, None]
    np.testing.assert_allclose(stats[:, :8], clips.mean(axis=2) - level, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats[:, 8:], clips.std(axis=2), rtol=1e-5)
    np.testing.assert_allclose(spectral_stats(clips + 7.0), stats, atol=1e-4)  # a louder rendering: same sound
    norm = SpectralNorm.fit(stats)
    np.testing.assert_allclose(((stats - norm.mean) / norm.std).mean(axis=0), 0, atol=1e-5)
    v = norm.vectors(stats)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(SpectralNorm.from_array(norm.as_array()).vectors(stats), v)
    assert np.allclose(np.diag(ip_to_distance(v @ v.T)), 0, atol=1e-3)


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_shards_built_apart_merge_into_the_index_built_whole(kind: str) -> None:
    import faiss

    from musicid.index.faiss_index import choose_index_kind, empty_index, make_faiss_index, merge_shards

    rng = np.random.default_rng(2)
    x = rng.standard_normal((12_000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.permutation(50_000)[:12_000].astype(np.int64)  # ids are not positions
    trained = empty_index(32, kind, x)
    shards = []
    for part in np.array_split(np.arange(len(x)), 3):  # as three workers would, each from the trained copy
        shard = faiss.clone_index(trained)
        shard.add_with_ids(x[part], ids[part])
        shards.append(shard)
    merged, whole = merge_shards(shards), make_faiss_index(x, ids, kind)
    assert merged.ntotal == len(x)
    got, want = merged.search(x[:40], 10)[1], whole.search(x[:40], 10)[1]
    assert all(set(a) == set(b) for a, b in zip(got, want, strict=True))
    np.testing.assert_allclose(merged.reconstruct(int(ids[777])), whole.reconstruct(int(ids[777])), atol=1e-6)
    assert choose_index_kind(30_000_000) == "ivfpq" and choose_index_kind(1_000_000) == "ivf"


def test_piano_roll_is_the_notes_at_ten_frames_a_second() -> None:
    from musicid.features.clips import family_rolls_settings, piano_roll, pianoroll_settings
    from musicid.io.smf import NOTE_OFF, NOTE_ON

    s = pianoroll_settings()
    assert s.frames_per_second == 10 and s.clip_frames == 300 and s.as_dict()["representation"] == "pianoroll"
    # a checkpoint written before 0.2 (keys n_mels and front, the family rolls called "ensemble") still loads
    old = {**{k: v for k, v in s.as_dict().items() if k not in ("n_bins", "representation")}, "n_mels": 512,
           "front": "ensemble"}
    assert FeatureSettings.from_dict(old) == family_rolls_settings()
    events = [(1.0, NOTE_ON, 0, 60, 127), (2.0, NOTE_OFF, 0, 60, 0),
              (1.5, NOTE_ON, 1, 60, 64), (3.0, NOTE_OFF, 1, 60, 0),  # overlaps: the louder wins
              (0.0, NOTE_ON, 9, 38, 100), (0.5, NOTE_OFF, 9, 38, 0)]  # drums: left out
    roll = piano_roll(sorted(events), 4.0, s)
    assert roll.shape == (128, 41)
    assert torch.all(roll[60, 10:20] == 1.0) and torch.allclose(roll[60, 20:30], torch.tensor(64 / 127))
    assert roll[60, :10].sum() == 0 and roll[60, 30:].sum() == 0 and roll[38].sum() == 0
    assert roll.sum() == pytest.approx(10 + 10 * 64 / 127)


def test_family_rolls_put_each_note_on_its_instrument_family_plane() -> None:
    from musicid.features.clips import family_rolls_settings, piano_roll, pianoroll_settings
    from musicid.io.smf import NOTE_OFF, NOTE_ON, PROGRAM

    events = [(0.0, PROGRAM, 0, 42, 0), (0.0, NOTE_ON, 0, 48, 100),  # a cello
              (0.0, NOTE_ON, 1, 60, 127),  # no program: a piano
              (0.0, NOTE_ON, 9, 38, 100), (0.5, NOTE_OFF, 9, 38, 0),  # drums: left out
              (1.0, NOTE_OFF, 0, 48, 0), (1.0, NOTE_OFF, 1, 60, 0),
              (1.0, PROGRAM, 0, 73, 0), (1.0, NOTE_ON, 0, 72, 127),  # the cello's channel is now a flute
              (1.0, PROGRAM, 2, 52, 0), (1.0, NOTE_ON, 2, 67, 127),  # a choir
              (2.0, NOTE_OFF, 0, 72, 0), (2.0, NOTE_OFF, 2, 67, 0)]  # in file order, as midi.parse_midi lists them
    roll = piano_roll(events, 2.0, family_rolls_settings())
    assert roll.shape == (512, 21)
    keys, strings, voices, winds = roll.reshape(4, 128, -1)
    assert torch.allclose(strings[48, :10], torch.tensor(100 / 127)) and strings.sum() == pytest.approx(10 * 100 / 127)
    assert torch.all(keys[60, :10] == 1.0) and keys.sum() == 10
    assert torch.all(winds[72, 10:20] == 1.0) and winds.sum() == 10
    assert torch.all(voices[67, 10:20] == 1.0) and voices.sum() == 10
    flat = piano_roll(events, 2.0, pianoroll_settings())  # the plain roll: every note, one plane
    assert flat.shape == (128, 21) and torch.equal(flat, roll.reshape(4, 128, -1).amax(dim=0))


def test_family_rolls_tell_apart_composers_whose_notes_alike_are_played_by_different_instruments(
        tmp_path: Path) -> None:
    from dataclasses import replace

    from musicid.features.clips import family_rolls_settings, piano_roll, pianoroll_settings
    from musicid.io.midi import load_midi

    corpus = make_corpus(tmp_path / "train", ["Lowpiano", "Lowcello"], per_composer=6)
    piano = load_midi(write_piece(tmp_path / "p.mid", "Lowpiano", 7))
    cello = load_midi(write_piece(tmp_path / "c.mid", "Lowcello", 7))  # the same notes
    assert torch.equal(piano_roll(piano.events, 10, pianoroll_settings()),
                       piano_roll(cello.events, 10, pianoroll_settings()))  # a plain roll cannot hear the difference

    features = replace(family_rolls_settings(), clip_seconds=4, clip_hop_seconds=2, max_clips=8)
    build_index(corpus, tmp_path / "idx", tiny_options(tmp_path, features=features))
    engine = QueryEngine.open(tmp_path / "idx")
    assert engine.features.representation == "family-rolls" and engine.model.dims.in_channels == 4
    assert engine.store.manifest.settings.classifier == "linear"  # auto, on a piano roll
    for style, seed in (("Lowpiano", 901), ("Lowcello", 901), ("Lowpiano", 902), ("Lowcello", 902)):
        assert engine.query(write_piece(tmp_path / f"{style}{seed}.mid", style, seed)).composer == style


def test_only_an_audio_index_cares_which_soundfont_is_installed(built_index: Path, corpus: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    import musicid.io.render
    from musicid.features.clips import pianoroll_settings

    features = replace(pianoroll_settings(), clip_seconds=4, clip_hop_seconds=2, max_clips=8)
    build_index(corpus, tmp_path / "roll", tiny_options(tmp_path, features=features))
    monkeypatch.setattr(musicid.io.render, "soundfont_digest", lambda path: "another soundfont")
    with pytest.raises(IndexMismatch, match="is not the one this index was built with"):
        QueryEngine.open(built_index)  # audio: queries would sound different from the index
    assert QueryEngine.open(tmp_path / "roll").features.representation == "pianoroll"  # notes: nothing is rendered


def test_pianoroll_builds_and_names_composers_without_rendering(corpus: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from musicid.features.clips import pianoroll_settings

    features = replace(pianoroll_settings(), clip_seconds=4, clip_hop_seconds=2, max_clips=8)
    # 128 pitch rows: twice the tiny training, or the three toy styles come out near a three-way tie
    report = build_index(corpus, tmp_path / "idx", tiny_options(tmp_path, features=features,
                                                                 dims=replace(TINY_DIMS, n_bins=128),
                                                                 train=replace(TINY_TRAIN, epochs=6)))
    assert report.failures == []
    engine = QueryEngine.open(tmp_path / "idx")
    assert engine.features.representation == "pianoroll" and engine.model.dims.n_bins == 128
    assert engine.store.manifest.settings.classifier == "linear"  # auto, on the piano roll
    for style in ("Lowpiano", "Highflute", "Strings"):
        r = engine.query(write_piece(tmp_path / f"{style}.mid", style, 900))
        assert r.composer == style, (style, r.probabilities)
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert r.confidence == pytest.approx(max(r.probabilities.values()), abs=1e-4)


def test_symbolic_features_see_a_piece_written_differently_on_a_known_instrument(built_index: Path,
                                                                                tmp_path: Path) -> None:
    # a new piece in a known style, and one on that style's piano and register but written as a single
    # line of quick chromatic steps: the notes' statistics tell them apart, whatever the embedding hears
    engine = QueryEngine.open(built_index)
    known = engine.query(write_piece(tmp_path / "known.mid", "Lowpiano", 4242))
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes += [pretty_midi.Note(90, 40 + i % 7, 0.2 * i, 0.2 * i + 0.18) for i in range(50)]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "other.mid"))
    other = engine.query(tmp_path / "other.mid")
    assert other.novelty_parts["symbolic-knn"] > 3 * known.novelty_parts["symbolic-knn"]
    assert other.novel and not known.novel
    assert other.novelty > known.novelty


def test_scan_follows_linked_collection_folders(tmp_path: Path) -> None:
    """Collections linked under one root make one composer of both; a link loop is read once."""
    write_piece(tmp_path / "lieder" / "Brahms" / "a.mid", "Organ", 0, 2)
    write_piece(tmp_path / "asap" / "Brahms" / "b.mid", "Organ", 1, 2)
    root = tmp_path / "all" / "Brahms"
    root.mkdir(parents=True)
    (root / "lieder").symlink_to(tmp_path / "lieder" / "Brahms")
    (root / "asap").symlink_to(tmp_path / "asap" / "Brahms")
    (root / "loop").symlink_to(root)
    tracks, warnings = scan_labelled(tmp_path / "all")
    assert sorted(t.path.name for t in tracks) == ["a.mid", "b.mid"] and warnings == []
    assert {t.composer for t in tracks} == {"Brahms"}
