"""Arithmetic on unit embedding vectors that every stage shares: a track's mean vector and the
Euclidean distance between unit vectors from their inner product (what FAISS's inner-product search
returns)."""

from __future__ import annotations

import numpy as np


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """(n_clips, d) -> (d,): a track's mean clip vector, unit length (track-knn, centroids)."""
    mean = vectors.mean(axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


def ip_to_distance(ip: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their inner product (0 .. 2)."""
    return np.sqrt(np.clip(2.0 - 2.0 * ip, 0.0, 4.0))
