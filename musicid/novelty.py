"""The sound view: what a clip sounds like, for telling known composers from unknown ones.

An embedder trained to separate the composers it knows maps anything new onto
one of them: a Haydn quartet lands inside the nearest known cluster. Novelty is
therefore scored in a second, untrained view of each clip -- the mean and the
spread over time of every mel band, the clip's overall level removed --
standardised with statistics of the indexed clips and compared by cosine
distance, like the embeddings. The learned embedding still names the composer.
Chosen with `index build --novelty-view sound`; docs/RESULTS.md has the measured
comparison of the views (the default, "blend", takes the larger of the "track"
view, whole tracks' mean embeddings, and the "score" view, statistics of the
notes: query.py, descriptors.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VIEWS = ("blend", "track", "score", "embedding", "sound")  # query.track_novelty scores each; RESULTS.md compares them


def clip_stats(clips: np.ndarray) -> np.ndarray:
    """(n_clips, n_mels, frames) log-mel clips -> (n_clips, 2 * n_mels): each band's mean, then std,
    with the clip's overall level removed first (how loud a file is played is not who wrote it)."""
    x = np.asarray(clips, dtype=np.float32)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)


@dataclass(frozen=True)
class SoundNorm:
    """Per-dimension mean and standard deviation of the indexed clips' statistics."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, stats: np.ndarray) -> SoundNorm:
        if not len(stats):
            raise ValueError("no clips to fit the sound view on")
        return cls(stats.mean(axis=0).astype(np.float32), (stats.std(axis=0) + 1e-6).astype(np.float32))

    @classmethod
    def from_array(cls, a: np.ndarray) -> SoundNorm:
        return cls(a[0].astype(np.float32), a[1].astype(np.float32))

    def as_array(self) -> np.ndarray:
        return np.stack([self.mean, self.std]).astype(np.float32)

    def vectors(self, stats: np.ndarray) -> np.ndarray:
        """Standardised, unit-length sound vectors, searchable by inner product."""
        z = (stats - self.mean) / self.std
        return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)
