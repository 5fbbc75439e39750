"""Background composers: what a general embedder was trained on, kept as an impostor cohort for novelty.

A general embedder (`musicid embedder train`) knows more composers than any one index enrols. Its
checkpoint keeps one unit vector per training track (the track's mean clip embedding) with the
track's composer: the *background*. An index enrolled with that embedder keeps the background
tracks of every composer it does not enrol, and the `background-margin` novelty score compares a
query's distance to the nearest indexed track with its distance to the nearest background track:
a query nearer some background composer than any enrolled one is evidence that it is by nobody the
index knows. This is cohort score normalisation from speaker verification (Rosenberg et al.,
"The use of cohort normalized scores for speaker verification", ICSLP 1992; Auckenthaler et al.,
"Score normalization for text-independent speaker verification systems", DSP 2000), with the
background identities of open-set recognition (Dhamija et al., "Reducing Network Agnostophobia",
NeurIPS 2018) as the cohort.

Composers are matched by name across collections, forgiving form: "J. S. Bach", "Bach" and
"Johann_Sebastian_Bach" are one composer (same_composer), so that a user's own spelling of an
enrolled composer does not leave that composer in the background.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..features.piece_match import SKETCH_VERSION
from ..features.symbolic import SYMBOLIC_VERSION
from ..vectors import ip_to_distance

SKETCH_SLOTS = 32  # piece-sketch slots a background keeps per track: 128 bytes, enough to match a piece

FILE = "background.npz"


def name_key(composer: str) -> str:
    """A composer name reduced to its surname, lower case, without accents: "J.S. Bach" -> "bach",
    "Dvořák" -> "dvorak", "Johann_Sebastian_Bach" -> "bach"."""
    plain = unicodedata.normalize("NFKD", composer).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z]+", plain)
    return words[-1] if words else composer.lower()


def same_composer(a: str, b: str) -> bool:
    """Whether two composer names (folder names) are one composer, by surname (name_key)."""
    return name_key(a) == name_key(b)


@dataclass(frozen=True)
class Background:
    """Background tracks: unit track vectors and their composers.

    composers: the background composers' names; labels (n,): each vector's composer, an index into
    composers; vectors (n, d): unit mean clip embeddings, float32; symbolic (n, N_SYMBOLIC): each
    track's symbolic features (features/symbolic.py), float32, or None (backgrounds written before
    2026-12-02 keep none), so that background tracks can be scored as queries by composers an
    index does not hold (novelty.impostor_scores, for the equal-error threshold rule); sketches
    (n, SKETCH_SLOTS) uint32: the first slots of each track's piece sketch (piece_match.py), or None
    (backgrounds written before 2026-12-07), so that a build can tell which of its pieces the
    embedder was trained on (training_overlap)."""

    composers: tuple[str, ...]
    labels: np.ndarray
    vectors: np.ndarray
    symbolic: np.ndarray | None = None
    sketches: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.sketches is not None and len(self.sketches) != len(self.labels):
            raise ValueError(f"background: {len(self.sketches)} sketches for {len(self.labels)} tracks")
        if self.vectors.ndim != 2 or len(self.labels) != len(self.vectors):
            raise ValueError(f"background: {len(self.labels)} labels for vectors of shape {self.vectors.shape}")
        if self.symbolic is not None and (self.symbolic.ndim != 2 or len(self.symbolic) != len(self.labels)):
            raise ValueError(f"background: symbolic features of shape {self.symbolic.shape} "
                             f"for {len(self.labels)} tracks")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.composers):
            raise ValueError("background: a label names no composer")

    def __len__(self) -> int:
        return len(self.vectors)

    def without(self, enrolled: Sequence[str]) -> Background:
        """The background less every track by an enrolled composer (same_composer), and less any
        composer left with no track."""
        drop = {i for i, c in enumerate(self.composers) if any(same_composer(c, e) for e in enrolled)}
        keep = np.flatnonzero(~np.isin(self.labels, sorted(drop))) if drop else np.arange(len(self.labels))
        present = sorted({int(x) for x in self.labels[keep]})
        remap = np.full(len(self.composers), -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        return Background(tuple(self.composers[i] for i in present), remap[self.labels[keep]],
                          self.vectors[keep], None if self.symbolic is None else self.symbolic[keep],
                          None if self.sketches is None else self.sketches[keep])

    def nearest_distances(self, track_vector: np.ndarray, k: int) -> np.ndarray:
        """(min(k, len),) distances (0-2, ascending) from one unit track vector (d,) to its k nearest
        background tracks; empty when the background holds none."""
        return ip_to_distance(np.sort(self.vectors @ track_vector.astype(np.float32))[::-1][:k])

    def nearest(self, track_vector: np.ndarray) -> tuple[float, str]:
        """Distance (Euclidean between unit vectors, 0-2) from one unit track vector (d,) to the
        nearest background track, and that track's composer; (inf, "") when it holds none (every
        background composer enrolled: the margin is then -inf, and the fused score is its other
        part alone, under either rule: novelty.fuse)."""
        if not len(self):
            return float("inf"), ""
        ip = self.vectors @ track_vector.astype(np.float32)
        i = int(np.argmax(ip))
        return float(ip_to_distance(ip[i])), self.composers[int(self.labels[i])]

    def summary(self) -> dict[str, Any]:
        """What the manifest says of it: composers and track counts."""
        return {"composers": {c: int(np.sum(self.labels == i)) for i, c in enumerate(self.composers)},
                "tracks": len(self)}

    # ------------------------------------------------------------ persistence

    def to_checkpoint(self) -> dict[str, Any]:
        """Tensors and lists that torch.load(weights_only=True) reads back (vectors as float16)."""
        import torch

        out = {"composers": list(self.composers), "labels": torch.from_numpy(self.labels.astype(np.int64)),
               "vectors": torch.from_numpy(self.vectors.astype(np.float16))}
        if self.symbolic is not None:
            out["symbolic"] = torch.from_numpy(self.symbolic.astype(np.float32))
            out["symbolic_version"] = SYMBOLIC_VERSION
        if self.sketches is not None:  # uint32 slots, stored as int32 (torch has no uint32 tensors to save)
            out["sketches"] = torch.from_numpy(self.sketches.astype(np.uint32).view(np.int32))
            out["sketch_version"] = SKETCH_VERSION
        return out

    @classmethod
    def from_checkpoint(cls, d: dict[str, Any]) -> Background:
        symbolic = d.get("symbolic") if d.get("symbolic_version") == SYMBOLIC_VERSION else None
        sketches = d.get("sketches") if d.get("sketch_version") == SKETCH_VERSION else None
        return cls(tuple(str(c) for c in d["composers"]), d["labels"].numpy().astype(np.int64),
                   d["vectors"].float().numpy(), None if symbolic is None else symbolic.numpy().astype(np.float32),
                   None if sketches is None else sketches.numpy().view(np.uint32))

    def save(self, path: Path) -> None:
        """An .npz of vectors (float16), labels, composers and symbolic features (float32, where kept);
        no pickles."""
        arrays: dict[str, np.ndarray] = {"vectors": self.vectors.astype(np.float16),
                                         "labels": self.labels.astype(np.int64),
                                         "composers": np.array(self.composers, dtype=str)}
        if self.symbolic is not None:
            arrays |= {"symbolic": self.symbolic.astype(np.float32), "symbolic_version": np.array(SYMBOLIC_VERSION)}
        with path.open("wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle

    @classmethod
    def load(cls, path: Path) -> Background:
        with np.load(path, allow_pickle=False) as z:
            return cls(tuple(str(c) for c in z["composers"]), z["labels"].astype(np.int64),
                       z["vectors"].astype(np.float32),
                       z["symbolic"].astype(np.float32) if _current_symbolic(z) else None)


def _current_symbolic(z: Any) -> bool:
    """Whether an .npz holds symbolic features of today's SYMBOLIC_VERSION (older ones are not comparable)."""
    return "symbolic" in z and "symbolic_version" in z and z["symbolic_version"].item() == SYMBOLIC_VERSION


def background_of(track_vectors: np.ndarray, composers_of: Sequence[str],
                  symbolic: np.ndarray | None = None, sketches: np.ndarray | None = None) -> Background:
    """A background from unit track vectors (n, d), each track's composer and (optionally) each
    track's symbolic features (n, N_SYMBOLIC) and piece sketch (n, N_SLOTS; its first SKETCH_SLOTS kept)."""
    composers = tuple(sorted(set(composers_of)))
    labels = np.asarray([composers.index(c) for c in composers_of], dtype=np.int64)
    return Background(composers, labels, np.asarray(track_vectors, dtype=np.float32).reshape(len(labels), -1),
                      None if symbolic is None else np.asarray(symbolic, dtype=np.float32).reshape(len(labels), -1),
                      None if sketches is None else
                      np.asarray(sketches, dtype=np.uint32).reshape(len(labels), -1)[:, :SKETCH_SLOTS].copy())


def training_overlap(sketches: np.ndarray, background: Background | None) -> np.ndarray:
    """(n,) bool: which of n tracks' piece sketches (n, N_SLOTS) are the same piece (piece_match.
    SAME_PIECE, estimated on the first SKETCH_SLOTS slots) as a track the embedder was trained on;
    all False when the background keeps no sketches."""
    from ..features.piece_match import SAME_PIECE, best_matches

    if background is None or background.sketches is None or not len(sketches):
        return np.zeros(len(sketches), dtype=bool)
    _, sim = best_matches(np.asarray(sketches)[:, :SKETCH_SLOTS], background.sketches)
    return sim >= SAME_PIECE


def load_background(checkpoint: Path) -> Background | None:
    """The background a checkpoint keeps (a general embedder's), or None (a per-index one)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    bg = ckpt.get("background")
    return Background.from_checkpoint(bg) if bg else None
