"""Test data made in code: tiny MIDI "composers" with different registers, instruments and rhythms."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from musicid.build.corpus import BuildOptions
from musicid.features.clips import FeatureSettings
from musicid.index.store import load_store
from musicid.model.embedder import EmbedderDims
from musicid.model.training import TrainSettings

# Each style: (GM program, lowest pitch, note length s, chord size)
STYLES = {
    "Lowpiano": (0, 36, 0.50, 3),
    "Highflute": (73, 72, 0.15, 1),
    "Strings": (48, 55, 1.00, 4),
    "Organ": (19, 48, 0.25, 2),
    "Lowcello": (42, 36, 0.50, 3),  # Lowpiano's notes and rhythm, played by a cello
    "Choir": (52, 60, 1.50, 4),  # slow four-voice chords, sung
}

TINY_FEATURES = FeatureSettings(n_bins=32, clip_seconds=4, clip_hop_seconds=2, max_clips=8)
TINY_DIMS = EmbedderDims(n_bins=32, width=8, n_blocks=3, embed_dim=16)
TINY_TRAIN = TrainSettings(epochs=3, steps_per_epoch=8, clips_per_composer=6, crop_frames=64)


def write_piece(path: Path, style: str, seed: int, seconds: float = 10.0, transpose: int = 0) -> Path:
    program, low, step, chord = STYLES[style]
    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    t = 0.0
    while t < seconds:
        root = low + transpose + int(rng.integers(0, 12))
        for j in range(chord):
            inst.notes.append(pretty_midi.Note(velocity=int(rng.integers(70, 110)), pitch=root + 4 * j,
                                               start=t, end=t + step * 0.9))
        t += step
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def make_corpus(root: Path, styles: list[str], per_composer: int = 6, seconds: float = 10.0,
                seed: int = 0) -> Path:
    """root/<Style>/<Style>_<work>_<n>.mid, two movements per work."""
    for si, style in enumerate(styles):
        for i in range(per_composer):
            write_piece(root / style / f"{style} Suite_OP{i // 2 + 1}_{100 * si + i}_m{i % 2 + 1}.mid",
                        style, seed * 1000 + 100 * si + i, seconds)
    return root


def tiny_options(tmp: Path, **kw: object) -> BuildOptions:
    opts = BuildOptions(features=TINY_FEATURES, dims=TINY_DIMS, train=TINY_TRAIN,
                        cache_dir=tmp / "cache", workers=1)
    return replace(opts, **kw)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("data") / "train", ["Lowpiano", "Highflute", "Strings"])


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    from musicid.build.indexer import build_index

    tmp = tmp_path_factory.mktemp("idx")
    out = tmp / "index"
    build_index(corpus, out, tiny_options(tmp))
    return out


def vectors_by_clip(index_dir: Path) -> dict[tuple[str, float], np.ndarray]:
    store = load_store(index_dir)
    ids, vecs = store.clips["clip_id"].to_numpy(), store.vectors  # the raw vectors, clips row order
    path_of = store.tracks.set_index("track_id")["path"]
    clips = store.clips.set_index("clip_id")
    return {(str(path_of[clips.at[i, "track_id"]]), float(clips.at[i, "offset"])): v
            for i, v in zip(ids, vecs, strict=True)}


def assert_same_index(a: Path, b: Path, atol: float = 2e-3) -> None:
    """The same tracks, clips and vectors. Vectors are kept as float16 (relative error under 1e-3),
    and an edit derives centroids, track vectors and the probe from those, a build from float32."""
    sa, sb = load_store(a), load_store(b)
    assert sa.composers == sb.composers
    cols = ["path", "composer", "work", "notes_hash", "n_clips"]
    ta = sa.tracks[cols].sort_values("path").reset_index(drop=True)
    tb = sb.tracks[cols].sort_values("path").reset_index(drop=True)
    assert ta.equals(tb)
    va, vb = vectors_by_clip(a), vectors_by_clip(b)
    assert va.keys() == vb.keys()
    for key in va:
        np.testing.assert_allclose(va[key], vb[key], atol=atol)
    np.testing.assert_allclose(sa.centroids, sb.centroids, atol=atol)
    # the tracks' mean vectors and the linear probe (refitted by an edit) agree too
    tv = [dict(zip(s.tracks["path"], s.track_vectors, strict=True)) for s in (sa, sb)]
    for path in tv[0]:
        np.testing.assert_allclose(tv[0][path], tv[1][path], atol=atol)
    every = np.stack(list(va.values()))
    assert sa.probe is not None and sb.probe is not None
    np.testing.assert_allclose(sa.probe.log_proba(every), sb.probe.log_proba(every), atol=1e-2)
    import faiss

    for s in (sa, sb):  # FAISS holds exactly the indexed clips, in both spaces
        for index in (s.index, s.spectral_index):
            assert sorted(faiss.vector_to_array(index.id_map).tolist()) == sorted(s.clips["clip_id"].tolist())
