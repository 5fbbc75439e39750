"""The composer classifiers: why the linear probe exists (a minority composer), its edge cases, and its
fusion with the symbolic features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from musicid.index.store import load_store
from musicid.model.classifier import LinearProbe, fit_linear_probe

from .conftest import make_corpus, tiny_options, write_piece


def _blobs(rng: np.random.Generator, n_major: int, n_minor: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([rng.normal([0.0, 0.0], 1.0, (n_major, 2)), rng.normal([1.5, 0.0], 1.0, (n_minor, 2))])
    return x, np.array([0] * n_major + [1] * n_minor)


def test_head_finds_the_minority_composer_that_a_vote_outnumbers() -> None:
    rng = np.random.default_rng(0)
    x, y = _blobs(rng, 500, 25)
    test_minor = rng.normal([1.5, 0.0], 1.0, (400, 2))
    test_major = rng.normal([0.0, 0.0], 1.0, (400, 2))
    probe = fit_linear_probe(x, y, 2)

    def vote(q: np.ndarray) -> np.ndarray:  # the plain 10-NN vote over the same points
        d = ((q[:, None, :] - x[None]) ** 2).sum(-1)
        return (y[np.argsort(d, axis=1)[:, :10]].mean(1) > 0.5).astype(int)

    head_recall = (probe.log_proba(test_minor).argmax(1) == 1).mean()
    assert (vote(test_minor) == 1).mean() < 0.4 < 0.65 < head_recall
    assert (probe.log_proba(test_major).argmax(1) == 0).mean() > 0.65  # the majority is not given away


def test_track_probabilities_pool_clips_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 200, 200)
    probe = fit_linear_probe(x, y, 2)
    clips = rng.normal([1.5, 0.0], 1.0, (12, 2))
    p = probe.track_proba(clips)
    assert p.sum() == pytest.approx(1.0) and p[1] > 0.5
    mean = probe.log_proba(clips).mean(0)  # the clips' geometric mean, renormalised
    assert p == pytest.approx(np.exp(mean) / np.exp(mean).sum())
    again = LinearProbe.from_array(probe.as_array())
    assert np.allclose(again.log_proba(x), probe.log_proba(x), atol=1e-5)


def test_a_composer_without_clips_never_wins_and_one_composer_always_does() -> None:
    rng = np.random.default_rng(2)
    x, y = _blobs(rng, 100, 100)
    probe = fit_linear_probe(x, y * 2, 3)  # labels 0 and 2; composer 1 has no clips
    assert set(probe.log_proba(rng.normal(0.75, 3.0, (500, 2))).argmax(1)) <= {0, 2}
    alone = fit_linear_probe(x, np.ones(len(x), int), 3)
    assert set(alone.log_proba(x).argmax(1)) == {1}


def test_a_large_index_is_fitted_on_a_bounded_sample() -> None:
    rng = np.random.default_rng(3)
    x, y = _blobs(rng, 3000, 3000)
    small = fit_linear_probe(x, y, 2, max_fit=1000)
    full = fit_linear_probe(x, y, 2)
    assert not np.allclose(small.weights, full.weights)  # another fit...
    agree = (small.log_proba(x).argmax(1) == full.log_proba(x).argmax(1)).mean()
    assert agree > 0.95  # ...that names nearly every point the same way
    # and the same sample each time
    assert np.array_equal(fit_linear_probe(x, y, 2, max_fit=1000).weights, small.weights)


def test_fused_classifier_sums_the_probe_and_the_symbolic_model(built_index: Path, corpus: Path,
                                                                tmp_path: Path) -> None:
    from dataclasses import replace

    from musicid.build.indexer import build_index
    from musicid.features.clips import family_rolls_settings
    from musicid.recognize.query import QueryEngine

    store = load_store(built_index)
    track = store.tracks.iloc[0]
    clips = store.clips["track_id"].to_numpy() == track["track_id"]
    vecs, sym = np.asarray(store.vectors[clips], np.float32), np.asarray(track["symbolic"], np.float32)
    z = (sym - store.symbolic_norm[0]) / store.symbolic_norm[1]
    assert store.probe is not None
    logits = store.probe.log_proba(vecs).mean(0) + store.symbolic_probe.log_proba(z[None])[0]
    fused = store.composer_proba(vecs, sym)
    assert fused == pytest.approx(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), abs=1e-6)
    assert np.array_equal(store.composer_proba(vecs), store.probe.track_proba(vecs))  # no features: the probe
    # the symbolic model alone tells the three styles apart (chord sizes and note lengths differ)
    sym_z = (np.stack(store.tracks["symbolic"].to_numpy()) - store.symbolic_norm[0]) / store.symbolic_norm[1]
    named = [store.composers[i] for i in store.symbolic_probe.log_proba(sym_z).argmax(1)]
    assert named == list(store.tracks["composer"])
    # ... but not two composers with the same notes on other instruments: there it must not outvote the probe
    same_notes = make_corpus(tmp_path / "same", ["Lowpiano", "Lowcello"], per_composer=6)
    features = replace(family_rolls_settings(), clip_seconds=4, clip_hop_seconds=2, max_clips=8)
    build_index(same_notes, tmp_path / "same_idx", tiny_options(tmp_path, features=features, classifier="fused"))
    engine = QueryEngine.open(tmp_path / "same_idx")
    for style, seed in (("Lowpiano", 901), ("Lowcello", 901), ("Lowpiano", 902), ("Lowcello", 902)):
        assert engine.query(write_piece(tmp_path / f"{style}{seed}.mid", style, seed)).composer == style

    build_index(corpus, tmp_path / "idx", tiny_options(tmp_path, classifier="fused"))
    kept = load_store(tmp_path / "idx").fitted_symbolic_probe  # kept in the index: a query does not fit it
    assert kept is not None and kept.weights.shape == (3, len(sym))
    engine = QueryEngine.open(tmp_path / "idx")
    for style in ("Lowpiano", "Highflute", "Strings"):
        r = engine.query(write_piece(tmp_path / f"{style}.mid", style, 905))
        assert r.classifier == "fused" and r.composer == style, r.probabilities
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-3)


def test_tempered_probe_weighs_features_by_what_they_tell_on_works_it_did_not_fit() -> None:
    from musicid.model.classifier import fit_tempered_probe

    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 8)
    groups = np.arange(24) // 2  # works of two movements each
    noise = rng.normal(size=(24, 119))  # the same distribution for every composer: nothing to tell
    probe, w = fit_tempered_probe(noise, labels, groups, 3, c=0.1)
    assert w <= 0.2  # it fits its 24 tracks, and out of fold it knows nothing
    assert np.abs(np.exp(probe.log_proba(rng.normal(size=(50, 119)))) - 1 / 3).max() < 0.15
    telling = noise + np.eye(3)[labels] @ rng.normal(0.0, 1.5, (3, 119))  # each composer its own means
    probe, w = fit_tempered_probe(telling, labels, groups, 3, c=0.1)
    assert w >= 0.5 and (probe.log_proba(telling).argmax(1) == labels).mean() == 1.0
    assert fit_tempered_probe(noise, labels, np.zeros(24), 3, c=0.1)[1] == 0.0  # one work: no evidence
