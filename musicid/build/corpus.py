"""A labelled folder made ready for a build: what the build is asked (BuildOptions), the folder's tracks
read and rolled or rendered, grouped into works and split into indexed and held-out tracks (Corpus), and
their clip vectors (Embedding) -- the first and third of index build's steps (indexer.py), which
evaluation and the general embedder's training share.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..collection.dataset import group_works, holdout_split, scan_labelled, work_key
from ..features.cache import FeatureCache, default_cache_dir
from ..features.clips import FeatureSettings, pianoroll_settings
from ..features.prepare import Failure, Prepared, prepare_many
from ..features.spectral import spectral_stats
from ..index.calibration import NoveltySettings
from ..index.faiss_index import choose_index_kind
from ..index.manifest import IndexSettings
from ..io.render import RenderSettings
from ..model.background import Background
from ..model.embedder import Embedder, EmbedderDims, embed_tracks
from ..model.training import TrainSettings
from ..progress import ProgressFn


@dataclass(frozen=True)
class BuildOptions:
    render: RenderSettings = field(default_factory=RenderSettings)
    features: FeatureSettings = field(default_factory=pianoroll_settings)  # the best in docs/RESULTS.md
    dims: EmbedderDims = field(default_factory=EmbedderDims)
    train: TrainSettings = field(default_factory=TrainSettings)
    model_path: Path | None = None  # enrol with this checkpoint instead of training one
    fine_tune: bool = False  # with model_path: go on training it on this folder's composers
    holdout_fraction: float = 0.2
    novelty: NoveltySettings = field(default_factory=NoveltySettings)
    classifier: str = "auto"  # "knn", "linear" (classifier.py), or auto: the better one per representation
    index_kind: str = "auto"  # FAISS index: auto, flat, ivf, ivfpq, hnsw (faiss_index.make_faiss_index)
    group_by: str | None = None
    labels: str = "folders"  # composer from the folder, or from the file itself (dataset.LABELS)
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    workers: int = 0
    seed: int = 0
    ray: bool = False  # render and embed on a Ray cluster (distributed.py)
    ray_address: str | None = None  # None with ray=True: a local Ray instance

    def __post_init__(self) -> None:
        if self.train.voice_dropout and not self.features.from_notes:
            raise ValueError("voice dropout needs pitch rows: train on a piano roll, not on audio")


def classifier_for(options: BuildOptions) -> str:
    """The classifier an index uses: auto is the k-NN vote on audio and the linear probe on piano
    rolls, the better of the two for each representation in docs/RESULTS.md (5 folds, same models)."""
    if options.classifier != "auto":
        return options.classifier
    return "linear" if options.features.from_notes else "knn"


def index_settings(options: BuildOptions, n_vectors: int, background: bool = False) -> IndexSettings:
    """The settings an index built with these options records (the FAISS kind resolved for its size;
    background: the index keeps a background cohort, which the fused novelty then uses)."""
    kind = options.index_kind if options.index_kind != "auto" else choose_index_kind(n_vectors)
    return IndexSettings(options.features, options.render, classifier_for(options),
                         replace(options.novelty, background=background), kind, options.group_by)


@dataclass
class Corpus:
    """The usable tracks of a labelled folder, prepared, with their works and held-out split."""

    root: Path
    prepared: list[Prepared]
    composers_of: list[str]
    works: list[str]
    groups: np.ndarray  # work group per track: no group straddles a split
    held: np.ndarray  # bool per track: held out to calibrate
    failures: list[tuple[str, str]]  # (path relative to root, reason)
    warnings: list[str]

    @property
    def composers(self) -> list[str]:
        return sorted(set(self.composers_of))


@dataclass
class Embedding:
    """Every prepared track's clip vectors and spectral statistics, in Corpus order."""

    vectors: list[np.ndarray]  # (n_clips, d) each
    spectral: list[np.ndarray]  # (n_clips, 2 * n_bins) each
    ray: dict[str, dict[str, int]] | None = None
    background: Background | None = None  # the embedder's background tracks (a general embedder's), or None


def relative(path: Path, root: Path) -> str:
    """path relative to root where it lies below it, else as given."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def prepare_corpus(data_dir: Path, options: BuildOptions, model: Embedder | None = None,
                   progress: ProgressFn | None = None, min_composers: int = 2,
                   ) -> tuple[Corpus, Embedding | None, dict[str, Any] | None]:
    """Step 1: scan, read and render (or roll) every file, locally or on Ray, and group the works.
    With a model and Ray, tracks are embedded where they are rendered: their Embedding comes back
    too (else None); and on Ray, where each track was rendered. DataDirError with fewer than
    min_composers composer folders."""
    refs, warnings = scan_labelled(data_dir, min_composers=min_composers, labels=options.labels)
    paths = [r.path for r in refs]
    embedded, ray_run = None, None
    cache = FeatureCache.for_tracks(options.cache_dir, options.render, options.features)
    if options.ray and model is not None:
        from .distributed import embed_tracks_on_ray

        streamed = embed_tracks_on_ray(paths, options.render, options.features, cache.directory, model,
                                       options.ray_address, progress=progress)
        results = streamed.results
        ray_run = {"rendered_on": streamed.run.rendered_on, "embedded_on": streamed.run.embedded_on}
        embedded = Embedding([v for v in streamed.vectors if v is not None],
                             [s for s in streamed.stats if s is not None], ray_run)
    elif options.ray:
        from .distributed import prepare_on_ray

        results, rendered_on = prepare_on_ray(paths, options.render, options.features, cache.directory,
                                              options.ray_address, progress)
        ray_run = {"rendered_on": rendered_on}
    else:
        results = prepare_many(paths, options.render, options.features, cache, options.workers, progress)
    prepared, composers_of, bases, failures = [], [], [], []
    for ref, res in zip(refs, results, strict=True):
        if isinstance(res, Failure):
            failures.append((relative(ref.path, data_dir), res.reason))
        else:
            prepared.append(res)
            composers_of.append(str(ref.composer))
            bases.append(ref.base)
    works = [work_key(p.path, c, options.group_by, base)
             for p, c, base in zip(prepared, composers_of, bases, strict=True)]
    groups = group_works(works, [p.notes_hash for p in prepared],
                         np.stack([p.sketch for p in prepared]) if prepared else None)
    held = holdout_split(composers_of, groups, options.holdout_fraction, options.seed)
    return Corpus(data_dir, prepared, composers_of, works, groups, held, failures, warnings), embedded, ray_run


def embed_corpus(model: Embedder, prepared: list[Prepared], options: BuildOptions,
                 progress: ProgressFn | None = None) -> Embedding:
    """Step 3: every track's clip vectors (and spectral statistics), locally or on Ray."""
    if options.ray:
        from .distributed import embed_on_ray

        vectors, spectral, embedded_on = embed_on_ray(model, prepared, options.ray_address, progress=progress)
        return Embedding(vectors, spectral, {"embedded_on": embedded_on})
    return Embedding(embed_tracks(model, [p.clips for p in prepared], progress),
                     [spectral_stats(p.clips) for p in prepared])
