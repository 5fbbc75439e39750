"""Which clips make a training batch: P composers x K clips (Hermans, Beyer and Leibe, "In Defense of
the Triplet Loss for Person Re-Identification", 2017), with the K positives dealt over a composer's
collections or genres and spread over its works, and the P composers drawn by their works.

Pure functions of index arrays and a numpy Generator; training.train_embedder calls them once per
composer per step.
"""

from __future__ import annotations

import numpy as np


def collection_balanced_pick(rng: np.random.Generator, pools: list[np.ndarray], k: int) -> np.ndarray:
    """k clip indices of one composer from its pools (one array of clip indices per collection that
    holds it): the k places dealt round-robin over the pools in a random order, then each pool's share
    drawn without replacement where it has enough clips. One pool: k clips of it, as plain P x K
    sampling (Hermans et al., 2017) draws them. Balancing the positives over collections is domain-
    balanced sampling for domain generalisation (e.g. Gulrajani and Lopez-Paz, "In Search of Lost
    Domain Generalization", ICLR 2021): a composer's clips from another collection, often another
    genre or ensemble, are positives in every batch rather than in proportion to their number."""
    if len(pools) == 1:
        return rng.choice(pools[0], size=k, replace=len(pools[0]) < k)
    order = rng.permutation(len(pools))
    counts = np.bincount(order[np.arange(k) % len(pools)], minlength=len(pools))
    return np.concatenate([rng.choice(pool, size=n, replace=len(pool) < n)
                           for pool, n in zip(pools, counts, strict=True) if n])


def spread_pick(rng: np.random.Generator, pools: list[list[np.ndarray]], k: int) -> np.ndarray:
    """k clip indices of one composer from its pools (one per domain, a genre or a collection, each a
    list of clip-index arrays, one per work): the k places dealt round-robin over the domains in a
    random order, each domain's share spread over as many distinct works as it has (drawn without
    replacement, then again), and one random clip of each work drawn. Positives that span works
    and genres make a batch's pull "same composer", not "same piece" or "same texture"; with one
    domain and one work it is plain P x K sampling of that work's clips (Hermans et al., 2017)."""
    order = rng.permutation(len(pools))
    counts = np.bincount(order[np.arange(k) % len(pools)], minlength=len(pools))
    picked: list[int] = []
    for works, n in zip(pools, counts, strict=True):
        if not n:
            continue
        chosen = np.concatenate([rng.permutation(len(works)) for _ in range(-(-int(n) // len(works)))])[:n]
        picked += [int(rng.choice(works[w])) for w in chosen]
    return np.asarray(picked, dtype=np.int64)


def composer_weights(labels: np.ndarray, works: np.ndarray | None, classes: np.ndarray, how: str) -> np.ndarray | None:
    """The probability of drawing each class among the P of a batch: None (uniform) for "uniform";
    for "sqrt-works", proportional to the square root of the class's number of works, so that a
    composer known by one song is drawn, and its one work pulled together, less often than one with
    forty works, yet far more often than in proportion to its clips."""
    if how == "uniform" or works is None:
        return None
    if how != "sqrt-works":
        raise ValueError(f"unknown composer weighting {how!r} (uniform, sqrt-works)")
    w = np.array([np.sqrt(len(np.unique(works[labels == c]))) for c in classes])
    return w / w.sum()
