"""The map the page at / draws: the indexed tracks on a 2-D PCA of their mean clip vectors, and
where a query falls on it (`GET /index/map`, `POST /query?explain=true`)."""

from __future__ import annotations

import numpy as np


class EmbeddingMap:
    """A 2-D PCA of the indexed tracks' mean vectors, computed once per loaded index (numpy only).

    vectors: (n_tracks, d) unit mean clip vectors; `place` projects another (d,) vector with it."""

    def __init__(self, vectors: np.ndarray):
        x = np.asarray(vectors, dtype=np.float64)
        self.mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        comps = np.zeros((2, x.shape[1]))
        if len(x) >= 2:
            _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
            comps[:len(vt[:2])] = vt[:2]
            comps *= np.where(comps.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # one sign, run to run
        self.components = comps
        self.points = (x - self.mean) @ comps.T  # (n_tracks, 2)

    def place(self, vector: np.ndarray) -> list[float]:
        return [round(float(v), 5) for v in (np.asarray(vector, np.float64) - self.mean) @ self.components.T]
