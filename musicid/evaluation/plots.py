"""eval's figures as PNG files: the track-level confusion matrix and a 2-D map of the embedding (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(summary: dict[str, Any], path: Path) -> Path:
    """eval's track-level confusion matrix (rows: true composer), as a PNG at path."""
    plt = _pyplot()
    rep = summary["track"]
    m = np.array(rep["confusion"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(m / np.maximum(m.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    labels = rep["labels"]
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m[i].sum() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{summary['meta']['folds']}-fold by work, track level: macro-F1 {rep['macro_f1']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_embedding_map(map_vectors: dict[int, np.ndarray], composers_of: Sequence[str], held: Sequence[bool],
                       path: Path) -> Path:
    """A 2-D PCA of clip vectors (track index -> (n_clips, d)) coloured by composer, held-out tracks'
    clips marked x, as a PNG at path."""
    plt = _pyplot()
    order = sorted(map_vectors)
    x = np.concatenate([map_vectors[i] for i in order])
    who = np.concatenate([[composers_of[i]] * len(map_vectors[i]) for i in order])
    out_fold = np.concatenate([[held[i]] * len(map_vectors[i]) for i in order])
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    xy = xc @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for n, c in enumerate(sorted(set(who))):
        sel = who == c
        a, b = sel & ~out_fold, sel & out_fold
        ax.scatter(xy[a, 0], xy[a, 1], s=4, alpha=0.3, color=f"C{n}", label=f"{c} (trained on)")
        ax.scatter(xy[b, 0], xy[b, 1], s=16, marker="x", color=f"C{n}", label=f"{c} (held out, x)")
    ax.set_title("clip embeddings, fold 0 model (PCA)")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
