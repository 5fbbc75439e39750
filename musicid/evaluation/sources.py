"""What `musicid eval` evaluates on and where each split's embedder comes from.

- select_composers: the evaluated folder's tracks, restricted to named composers or to those with
  enough works.
- Embedder sources: PerIndexSource trains one embedder per split on the split's own training
  tracks (the per-index protocol); GeneralSource trains a *general* embedder on other labelled
  collections (the general-embedder protocol), from which every track that is the same
  piece as one of the evaluated folder's was removed (build_training_set). Its naming folds share
  one model trained on every composer of those collections; for novelty, the evaluated folder's
  composers are dealt into groups (composer_groups) and each group's model is trained without any
  track by the group's composers, so a left-out composer was never in its embedder's training.

Every model comes from model_cache.train_or_load, so a model already trained on exactly the same
tracks with the same settings is loaded from the model cache; each source records its models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..build.corpus import BuildOptions, Corpus, relative
from ..build.model_cache import train_or_load
from ..build.pretrain import collection_of, embed_background, prepare_collections
from ..errors import DataDirError, TrainingError
from ..features.piece_match import SAME_PIECE, best_matches
from ..features.prepare import Prepared
from ..model.background import Background
from ..model.embedder import Embedder
from ..progress import ProgressFn


def works_per_composer(corpus: Corpus) -> dict[str, int]:
    """Each composer's number of work groups (corpus.groups: movements of one work, files with
    the same notes and performances of one piece are one group)."""
    labels = np.asarray(corpus.composers_of)
    return {c: len(np.unique(corpus.groups[labels == c])) for c in corpus.composers}


def select_composers(corpus: Corpus, composers: Sequence[str] = (), min_works: int = 0) -> Corpus:
    """The corpus restricted to the named composers (folder names, any case) or, with min_works, to
    the composers with at least that many work groups (works_per_composer); the corpus itself when
    neither is given. Works, groups and held-out flags are kept as they were for the whole folder.
    Raises DataDirError for a name with no folder, or when fewer than two composers are left."""
    if not composers and min_works <= 0:
        return corpus
    have = {c.lower(): c for c in corpus.composers}
    if composers:
        unknown = [c for c in composers if c.lower() not in have]
        if unknown:
            raise DataDirError(f"{corpus.root}: no composer folder named {', '.join(unknown)} "
                               f"(have: {', '.join(corpus.composers)})")
        keep = {have[c.lower()] for c in composers}
        rule = "named"
    else:
        works = works_per_composer(corpus)
        keep = {c for c, n in works.items() if n >= min_works}
        rule = f"at least {min_works} works"
    if len(keep) < 2:
        raise DataDirError(f"{corpus.root}: {len(keep)} composer(s) with {rule} "
                           f"({', '.join(sorted(keep)) or 'none'}); evaluation needs at least 2")
    idx = [i for i, c in enumerate(corpus.composers_of) if c in keep]
    return replace(corpus, prepared=[corpus.prepared[i] for i in idx],
                   composers_of=[corpus.composers_of[i] for i in idx], works=[corpus.works[i] for i in idx],
                   groups=corpus.groups[idx], held=corpus.held[idx])


# ---------------------------------------------------------------- the general embedder's training set


@dataclass
class TrainingSet:
    """The tracks a general embedder may train on: every track of the collections given, less the
    ones that are the same piece as an evaluated track."""

    prepared: list[Prepared]
    composers_of: list[str]  # composer folder name per track
    collections: list[dict[str, Any]]  # per collection: path, licence, tracks (read), kept, composers
    removed: dict[str, dict[str, Any]]  # collection path -> {tracks, same_notes, same_piece, matches}
    failed: int  # files of the collections that could not be read
    collection_of: list[int] = field(default_factory=list)  # per track: its position in collections

    def tracks_of(self, composers: Sequence[str]) -> int:
        """How many training tracks are by these composers (folder names, any case)."""
        names = {c.lower() for c in composers}
        return sum(c.lower() in names for c in self.composers_of)


def build_training_set(train_on: Sequence[Path], evaluated: Corpus, options: BuildOptions,
                       progress: ProgressFn | None = None) -> TrainingSet:
    """Prepare every track of the train_on collections (<root>/<Composer>/..., as
    pretrain.train_general_embedder does) and drop each that is the same piece as a track of
    `evaluated`: the same notes (notes_hash) or a piece_match similarity of at least SAME_PIECE
    between their sketches (a performance of a score, an edition with other repeats). Raises
    DataDirError for a folder that is not a labelled collection."""
    prepared, composers_of, collections, failures = prepare_collections(list(train_on), options, progress)
    by_hash: dict[str, int] = {}
    for i, p in enumerate(evaluated.prepared):
        by_hash.setdefault(p.notes_hash, i)
    if prepared and evaluated.prepared:
        best, sim = best_matches(np.stack([p.sketch for p in prepared]),
                                 np.stack([p.sketch for p in evaluated.prepared]))
    else:
        best, sim = np.full(len(prepared), -1), np.zeros(len(prepared))
    keep = np.ones(len(prepared), dtype=bool)
    removed: dict[str, dict[str, Any]] = {}
    start = 0
    for root, col in zip(train_on, collections, strict=True):
        n = col["tracks"]
        rec: dict[str, Any] = {"tracks": 0, "same_notes": 0, "same_piece": 0, "matches": []}
        for i in range(start, start + n):
            same = by_hash.get(prepared[i].notes_hash)
            if same is None and best[i] >= 0 and sim[i] >= SAME_PIECE:
                same, how = int(best[i]), "same_piece"
            elif same is not None:
                how = "same_notes"
            else:
                continue
            keep[i] = False
            rec["tracks"] += 1
            rec[how] += 1
            rec["matches"].append({"track": relative(prepared[i].path, Path(root)), "composer": composers_of[i],
                                   "same_as": relative(evaluated.prepared[same].path, evaluated.root),
                                   "how": how, "similarity": round(float(sim[i]), 3)})
        removed[col["path"]] = rec
        col["kept"] = n - rec["tracks"]
        start += n
    idx = np.flatnonzero(keep)
    of = collection_of(collections)
    return TrainingSet([prepared[i] for i in idx], [composers_of[i] for i in idx], collections, removed,
                       len(failures), [of[i] for i in idx])


def composer_groups(composers: Sequence[str], n_groups: int | None, training: TrainingSet | None = None,
                    evaluated_tracks: dict[str, int] | None = None) -> list[list[str]]:
    """The evaluated composers dealt into n_groups groups (None: one group per composer, exact
    leave-one-out), balanced: composers in order of most training tracks (training.tracks_of: what
    leaving them out removes), then most evaluated tracks, then name, each to the group with the
    fewest training tracks so far (then fewest evaluated tracks, fewest composers, the first). Deterministic;
    each group sorted by name, groups in the order they were first filled. More groups than
    composers are not made. Raises ValueError for n_groups < 1."""
    names = sorted(composers)
    if n_groups is None:
        return [[c] for c in names]
    if n_groups < 1:
        raise ValueError(f"composer groups must be at least 1, not {n_groups}")
    n = min(n_groups, len(names))
    train = {c: training.tracks_of([c]) if training else 0 for c in names}
    tracks = {c: (evaluated_tracks or {}).get(c, 0) for c in names}
    groups: list[list[str]] = [[] for _ in range(n)]
    load = [(0, 0)] * n
    for c in sorted(names, key=lambda c: (-train[c], -tracks[c], c)):
        g = min(range(n), key=lambda g: (load[g], len(groups[g]), g))
        groups[g].append(c)
        load[g] = (load[g][0] + train[c], load[g][1] + tracks[c])
    return [sorted(g) for g in groups if g]


# ---------------------------------------------------------------- embedder sources


class EmbedderSource(Protocol):
    """Where eval's embedder for each split comes from."""

    name: str
    models: list[dict[str, Any]]  # per distinct model: used_for, composers and tracks trained on, from_cache

    def for_fold(self, fold: int, train_idx: np.ndarray) -> Embedder:
        """The embedder for a naming fold whose training tracks are corpus positions train_idx."""
        ...

    def for_left_out(self, composer: str, train_idx: np.ndarray) -> Embedder:
        """The embedder for the split that leaves `composer` out (train_idx: its known training tracks)."""
        ...

    @property
    def from_cache(self) -> int:
        """How many of its models the model cache held."""
        ...

    def background(self, model: Embedder) -> Background | None:
        """The background tracks (background.py) that come with one of its models, or None."""
        ...


def _record(used_for: str, composers_of: Sequence[str], idx: np.ndarray, from_cache: bool,
            left_out: Sequence[str] | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"used_for": [used_for], "composers": sorted({composers_of[i] for i in idx}),
                           "tracks": len(idx), "from_cache": bool(from_cache)}
    if left_out is not None:
        rec["left_out"] = list(left_out)
    return rec


@dataclass
class PerIndexSource:
    """Today's protocol: each split trains its own embedder on its own training tracks."""

    corpus: Corpus
    options: BuildOptions
    name: str = "per-index"
    models: list[dict[str, Any]] = field(default_factory=list)

    def for_fold(self, fold: int, train_idx: np.ndarray) -> Embedder:
        c = self.corpus
        model, _, cached = train_or_load(c.prepared, c.composers_of, train_idx, c.composers, self.options)
        self.models.append(_record(f"fold {fold}", c.composers_of, train_idx, cached))
        return model

    def for_left_out(self, composer: str, train_idx: np.ndarray) -> Embedder:
        c = self.corpus
        known = sorted({c.composers_of[i] for i in train_idx})
        model, _, cached = train_or_load(c.prepared, c.composers_of, train_idx, known, self.options)
        self.models.append(_record(composer, c.composers_of, train_idx, cached, [composer]))
        return model

    @property
    def from_cache(self) -> int:
        return sum(m["from_cache"] for m in self.models)

    def background(self, model: Embedder) -> Background | None:
        return None  # a per-index embedder knows only the index's composers


@dataclass
class GeneralSource:
    """The general-embedder protocol: one model on the whole training set for every fold, and one
    per composer group, trained without the group's composers (folder names, any case), for each
    left-out composer of that group. A composer that no collection has is still in a group: its
    model simply never had it."""

    training: TrainingSet
    groups: list[list[str]]
    options: BuildOptions
    progress: ProgressFn | None = None
    name: str = "general"
    models: list[dict[str, Any]] = field(default_factory=list)
    # -1: the folds' model, g: group g's; each with its record and its training set positions
    _made: dict[int, tuple[Embedder, dict[str, Any], np.ndarray]] = field(default_factory=dict)
    _backgrounds: dict[int, Background] = field(default_factory=dict)  # the same keys

    def _model(self, key: int, used_for: str, left_out: Sequence[str] | None) -> Embedder:
        if key in self._made:
            model, rec, _ = self._made[key]
            rec["used_for"].append(used_for)
            return model
        t = self.training
        out = {c.lower() for c in left_out or ()}
        idx = np.asarray([i for i, c in enumerate(t.composers_of) if c.lower() not in out], dtype=np.int64)
        composers = sorted({t.composers_of[i] for i in idx})
        if len(composers) < 2:
            raise TrainingError("the --train-on collections have fewer than two composers"
                                + (f" besides {', '.join(left_out)}" if left_out else "")
                                + ": a general embedder needs at least two")
        model, _, cached = train_or_load(t.prepared, t.composers_of, idx, composers, self.options, self.progress,
                                         collection_of=t.collection_of or None)
        rec = _record(used_for, t.composers_of, idx, cached, left_out)
        self.models.append(rec)
        self._made[key] = (model, rec, idx)
        return model

    def background(self, model: Embedder) -> Background | None:
        """The model's background as `musicid embedder train` keeps it: each of its training tracks
        under it (embedded once per model)."""
        key = next((k for k, (m, _, _) in self._made.items() if m is model), None)
        if key is None:
            return None
        if key not in self._backgrounds:
            idx = self._made[key][2]
            self._backgrounds[key] = embed_background(model, [self.training.prepared[i] for i in idx],
                                                      [self.training.composers_of[i] for i in idx], self.progress)
        return self._backgrounds[key]

    def for_fold(self, fold: int, train_idx: np.ndarray) -> Embedder:
        return self._model(-1, f"fold {fold}", None)

    def for_left_out(self, composer: str, train_idx: np.ndarray) -> Embedder:
        g = next((g for g, members in enumerate(self.groups) if composer in members), None)
        if g is None:
            raise ValueError(f"{composer} is in no composer group")
        return self._model(g, composer, self.groups[g])

    @property
    def from_cache(self) -> int:
        return sum(m["from_cache"] for m in self.models)


@dataclass
class FineTunedSource:
    """The general-embedder protocol with `index build --model M --fine-tune`'s step: each split's
    general embedder (its GeneralSource model) goes on training on the split's own training tracks,
    with the per-index settings. A left-out composer is still in neither model's training. Its
    records follow the general models' in one list, each marked "fine_tuned"."""

    general: GeneralSource
    corpus: Corpus
    options: BuildOptions
    progress: ProgressFn | None = None
    name: str = "fine-tuned"
    models: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.models = self.general.models  # one list: the general models, then the fine-tuned ones

    def _tuned(self, init: Embedder, used_for: str, train_idx: np.ndarray, composers: list[str],
               left_out: Sequence[str] | None = None) -> Embedder:
        c = self.corpus
        model, _, cached = train_or_load(c.prepared, c.composers_of, train_idx, composers, self.options,
                                         self.progress, init=init)
        self.models.append({**_record(used_for, c.composers_of, train_idx, cached, left_out), "fine_tuned": True})
        return model

    def for_fold(self, fold: int, train_idx: np.ndarray) -> Embedder:
        return self._tuned(self.general.for_fold(fold, train_idx), f"fold {fold}", train_idx, self.corpus.composers)

    def for_left_out(self, composer: str, train_idx: np.ndarray) -> Embedder:
        known = sorted({self.corpus.composers_of[i] for i in train_idx})
        return self._tuned(self.general.for_left_out(composer, train_idx), composer, train_idx, known, [composer])

    @property
    def from_cache(self) -> int:
        return sum(m["from_cache"] for m in self.models)

    def background(self, model: Embedder) -> Background | None:
        return None  # its background was embedded with the weights before fine-tuning (as index build)
