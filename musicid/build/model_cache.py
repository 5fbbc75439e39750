"""The model cache: an embedder trained on exactly this training set with exactly these settings
is kept under the cache directory, keyed by both, so that rebuilding an index or rerunning an
evaluation on unchanged data loads it instead of training again (indexer's step 2).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..features.cache import settings_digest
from ..features.prepare import Prepared
from ..keys import file_sha256, without_later_defaults
from ..model.embedder import Embedder, load_checkpoint, save_checkpoint, weights_digest
from ..model.training import TrainReport, fine_tuning, train_embedder
from ..progress import ProgressFn

if TYPE_CHECKING:
    from .corpus import BuildOptions


def model_cache_path(options: BuildOptions, training_set: list[tuple[str, str]],
                      init: Embedder | None = None) -> Path | None:
    """Where a model trained on exactly these (file sha256, composer) pairs with these settings (and,
    fine-tuning, from this starting checkpoint, or these starting weights) is kept, so that rebuilding
    unchanged data does not train again; None when caching is off."""
    if options.cache_dir is None:
        return None
    # settings added later leave the keys of models cached before them as they were
    train = without_later_defaults(asdict(options.train), {"pitch_shift": 2, "anchor": 0.0, "time_stretch": 0.0,
                                                          "cosface": 0.0, "balance_collections": False,
                                                          "domains": "collection", "spread_works": False,
                                                          "composer_weighting": "uniform", "voice_dropout": 0.0,
                                                          "domain_adversary": 0.0})
    dims = without_later_defaults(asdict(options.dims), {"in_channels": 1})
    if options.fine_tune and options.model_path:
        start = {"init": file_sha256(options.model_path)}
    else:
        start = {"init_weights": weights_digest(init)} if init is not None else {}
    key = settings_digest({"tracks": sorted(training_set), "dims": dims, "train": train,
                           "features": options.features.as_dict(), "render": options.render.identity(), **start})
    return options.cache_dir / "models" / f"{key}.pt"


def balancing_acts(composers_of: list[str], train_idx: np.ndarray, collection_of: list[int] | None) -> bool:
    """Whether collection-balanced batches (TrainSettings.balance_collections) change anything for the
    tracks at train_idx: only when some composer among them has tracks in two collections or more.
    Otherwise every composer has one pool and training is plain P x K sampling, draw for draw."""
    if collection_of is None:
        return False
    spans: dict[str, set[int]] = {}
    for i in train_idx:
        spans.setdefault(composers_of[i], set()).add(collection_of[i])
    return any(len(s) > 1 for s in spans.values())


def train_or_load(prepared: list[Prepared], composers_of: list[str], train_idx: np.ndarray,
                  all_composers: list[str], options: BuildOptions, progress: ProgressFn | None = None,
                  init: Embedder | None = None, collection_of: list[int] | None = None,
                  work_of: list[int] | None = None) -> tuple[Embedder, TrainReport | None, bool]:
    """Step 2: train the embedder on the tracks at train_idx (from init's weights when fine-tuning),
    or load the model the cache holds for exactly that training set and those settings. Returns
    (model, report, from_cache). Fine-tuning trains with training.fine_tuning(options.train).
    collection_of: each prepared track's collection (an integer), for options.train.balance_collections;
    where no composer of the training set spans two collections the option changes nothing, and the
    model is keyed (and trained) as without it, so a cached one is reused. work_of: each prepared
    track's work (an integer), for options.train.spread_works."""
    if init is not None:
        options = replace(options, train=fine_tuning(options.train))
    if options.train.balance_collections and not balancing_acts(composers_of, train_idx, collection_of):
        # the same training draw for draw as without the option: key (and train) it as that one
        options = replace(options, train=replace(options.train, balance_collections=False))
    cached = model_cache_path(options, [(prepared[i].sha256, composers_of[i]) for i in train_idx], init)
    if cached is not None and cached.exists():
        model, _, meta = load_checkpoint(cached)
        report = TrainReport(**meta["train_report"]) if "train_report" in meta else None
        return model, report, True
    clips = torch.from_numpy(np.concatenate([prepared[i].clips for i in train_idx]))
    labels = np.concatenate([
        np.full(len(prepared[i].clips), all_composers.index(composers_of[i])) for i in train_idx
    ])
    collections = None if collection_of is None else np.concatenate([
        np.full(len(prepared[i].clips), collection_of[i]) for i in train_idx])
    works = None if work_of is None else np.concatenate([
        np.full(len(prepared[i].clips), work_of[i]) for i in train_idx])
    resume = cached.with_suffix(".partial.pt") if cached is not None else None  # the state after each epoch
    if resume is not None:
        resume.parent.mkdir(parents=True, exist_ok=True)
    model, report = train_embedder(clips, labels, options.dims, options.train, progress, init, collections, works,
                                   resume)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(cached, model, options.features, {"train_report": {**asdict(report), "losses": []}})
    if resume is not None:
        resume.unlink(missing_ok=True)
    return model, report, False
