"""Does a general embedder tell apart the composers it never saw as well as those it trained on?

    python bench/generalisation_gap.py ALL --model M [--model M2 ...] [--cache-dir DIR]

ALL: the handed collections linked under one root (bash bench/link_collections.sh DATA ALL); M: an embedder
trained with `--hold-out` on the many-composer protocols' reserve (protocols.draw_reserve, seed 0), such as the
shipped embedder's measured twin. For each model, the pair verification AUROC (the probability that two
tracks by one composer lie closer, by cosine of their unit mean clip vectors, than two tracks by two
composers; Mann-Whitney over seeded pairs) on

- the training composers: the checkpoint's background (every training track; it keeps no works, so pairs
  of one work's movements count as same-composer pairs);
- the reserve composers, never trained on: every pair; pairs of two different works only; and pairs of two
  different works *in one named genre* (a song against a song: what a user's index meets, where texture
  cannot tell the composers apart), beside pairs of two different works in two named genres (where texture
  separates strangers and divides a composer's own works).

A large gap between the first two says the embedder memorised its training composers (more identities or
regularisation would help); no gap with a low figure says it has not learnt to separate even those
(more steps, capacity or a better input would).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from musicid.build.corpus import BuildOptions
from musicid.evaluation.enrolment import prepare_reserve
from musicid.evaluation.protocols import NAMED_GENRES
from musicid.model.background import load_background
from musicid.model.embedder import embed_tracks, load_checkpoint
from musicid.recognize.novelty import mean_vector


def pair_auroc(vectors: np.ndarray, labels: np.ndarray, works: np.ndarray | None = None, pairs: int = 500_000,
               seed: int = 0, genres: np.ndarray | None = None, same_genre: bool = True) -> tuple[float, int]:
    """AUROC of same-label against different-label pair cosines over `pairs` seeded pairs of distinct rows
    (of distinct works where works are given; where genres are given, of one named genre, or of two named
    genres with same_genre False), and how many same-label pairs it rests on."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(vectors), pairs), rng.integers(0, len(vectors), pairs)
    keep = i != j if works is None else works[i] != works[j]
    if genres is not None:
        named = np.isin(genres, list(NAMED_GENRES))
        keep &= named[i] & named[j] & ((genres[i] == genres[j]) == same_genre)
    i, j = i[keep], j[keep]
    cos = (vectors[i] * vectors[j]).sum(1)
    same = labels[i] == labels[j]
    ranks = rankdata(np.concatenate([cos[same], cos[~same]]))
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)), n_pos


def reserve_vectors(root: Path, model_path: Path, cache_dir: Path
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reserve's tracks as unit mean clip vectors (n, d), with their composers, works and genres."""
    model, features, meta = load_checkpoint(model_path)
    options = replace(BuildOptions(), cache_dir=cache_dir, workers=1)
    _, prepared, infos, _ = prepare_reserve(root, features, options, trained_on=meta.get("composers", []))
    vectors = np.stack([mean_vector(embed_tracks(model, [p.clips])[0]) for p in prepared])
    return (vectors, np.array([i.composer for i in infos]), np.array([i.work for i in infos]),
            np.array([i.genre for i in infos]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--model", type=Path, action="append", required=True)
    ap.add_argument("--cache-dir", type=Path, default=BuildOptions().cache_dir)
    args = ap.parse_args()
    print("| embedder | training composers (background) | reserve composers, every pair | "
          "reserve composers, two works | two works, one genre | two works, two genres |")
    print("|---|---|---|---|---|---|")
    for path in args.model:
        bg = load_background(path)
        if bg is None:
            raise SystemExit(f"{path}: keeps no background (not a general embedder)")
        trained, n_trained = pair_auroc(bg.vectors, bg.labels)
        v, composers, works, genres = reserve_vectors(args.root, path, args.cache_dir)
        every, n_every = pair_auroc(v, composers)
        apart, n_apart = pair_auroc(v, composers, works)
        within, n_within = pair_auroc(v, composers, works, genres=genres)
        across, n_across = pair_auroc(v, composers, works, genres=genres, same_genre=False)
        print(f"| {path.name} | {trained:.3f} ({n_trained} same-composer pairs) | {every:.3f} ({n_every}) | "
              f"{apart:.3f} ({n_apart}) | {within:.3f} ({n_within}) | {across:.3f} ({n_across}) |", flush=True)


if __name__ == "__main__":
    main()
