"""Spectral statistics of a clip: each band's mean and spread over time, its level removed.

An untrained description of what a clip sounds like, for the `spectral-knn`
novelty score (novelty.py): standardised with the indexed clips' statistics,
made unit length and searched by inner product like the embeddings. Pure
functions of arrays, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def spectral_stats(clips: np.ndarray) -> np.ndarray:
    """(n_clips, n_bins, frames) log-mel (or piano-roll) clips -> (n_clips, 2 * n_bins) float32: each
    band's mean, then its standard deviation over time, with the clip's overall level removed
    first (how loud a file is played is not who wrote it)."""
    x = np.asarray(clips, dtype=np.float32)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)


@dataclass(frozen=True)
class SpectralNorm:
    """Per-dimension mean and standard deviation of the indexed clips' spectral statistics."""

    mean: np.ndarray  # (2 * n_bins,)
    std: np.ndarray  # (2 * n_bins,), never 0

    @classmethod
    def fit(cls, stats: np.ndarray) -> SpectralNorm:
        """Fit on (n_clips, 2 * n_bins) statistics; ValueError when there are none."""
        if not len(stats):
            raise ValueError("no clips to fit the spectral statistics' standardisation on")
        return cls(stats.mean(axis=0).astype(np.float32), (stats.std(axis=0) + 1e-6).astype(np.float32))

    @classmethod
    def from_array(cls, a: np.ndarray) -> SpectralNorm:
        """From as_array's (2, 2 * n_bins) rows."""
        return cls(a[0].astype(np.float32), a[1].astype(np.float32))

    def as_array(self) -> np.ndarray:
        return np.stack([self.mean, self.std]).astype(np.float32)

    def vectors(self, stats: np.ndarray) -> np.ndarray:
        """(n, 2 * n_bins) statistics -> standardised unit-length vectors, searchable by inner product."""
        z = (stats - self.mean) / self.std
        return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)
