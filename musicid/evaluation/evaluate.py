"""Honest evaluation: k-fold cross-validation grouped by work, and leave-one-composer-out novelty.

No work (all movements of one catalog number, every file with identical notes)
ever has tracks on both sides of a split. Each fold indexes the other folds with
its embedder and queries the held-out fold exactly as `musicid query` would; each
left-out composer's split calibrates every novelty method (novelty.calibrate, as
index build does) on known works and scores the composer's tracks against known
held-out ones. 95% intervals come from resampling whole works
(metrics.group_bootstrap). Naming is also reported apart for score MIDI and
performance MIDI tracks (timing.timing_kind).

Where each split's embedder comes from is an embedder source (evaluation/sources.py):
per index (trained on the split's own training tracks), or, with --train-on, a
general embedder trained on other collections less every piece of this folder,
with each left-out composer's model trained without that composer
(`protocol: general-embedder` in eval.json).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import write_json
from ..build.corpus import BuildOptions, Corpus, Embedding, classifier_for, index_settings, prepare_corpus
from ..build.indexer import make_store
from ..choices import Baseline
from ..collection.dataset import holdout_split, kfold_groups
from ..errors import TrainingError
from ..features.spectral import spectral_stats
from ..index.calibration import COHORT_METHODS, METHODS, NoveltySettings
from ..index.faiss_index import search
from ..io.timing import file_timing_kind
from ..model.classifier import CLASSIFIERS
from ..model.embedder import Embedder, dims_for, embed_tracks
from ..model.training import fine_tuning
from ..progress import ProgressFn
from ..recognize.novelty import SCORERS, TrackQuery, calibrate, final_score, impostor_scores, raw_scores
from ..recognize.query import DEFAULT_K, neighbour_composers, shares
from .baseline import LocoScores, Split, run_published
from .intervals import add_intervals
from .metrics import classification_report, group_bootstrap, loco_summary, open_set_figures
from .sources import (
    EmbedderSource,
    FineTunedSource,
    GeneralSource,
    PerIndexSource,
    build_training_set,
    composer_groups,
    select_composers,
    works_per_composer,
)

BASELINES = tuple(b.value for b in Baseline)
LEGACY_BASELINES = {"seed": "published"}  # the name before 0.2


@dataclass(frozen=True)
class EvalOptions:
    folds: int = 5
    k: int = DEFAULT_K
    loco: bool = True  # leave-one-composer-out novelty
    baseline: str | None = None  # "published": also run the published method on the same splits
    baseline_epochs: int = 10  # the published method's; fewer only to test the wiring
    bootstrap: int = 1000  # resamplings of whole works for the 95% intervals; 0: none
    build: BuildOptions = field(default_factory=BuildOptions)
    composers: tuple[str, ...] = ()  # evaluate only these composers (folder names, any case)
    min_works: int = 0  # evaluate only the composers with at least this many works (sources.select_composers)
    train_on: tuple[Path, ...] = ()  # the general-embedder protocol: train the embedder on these collections
    composer_groups: int | None = None  # its left-out composer groups; None: one per composer
    also_per_index: bool = False  # with train_on: the per-index embedder on the same splits too
    fine_tune: bool = False  # with train_on: fine-tune each split's general embedder on its training tracks

    def __post_init__(self) -> None:
        if self.composers and self.min_works:
            raise ValueError("give the composers to evaluate or a minimum number of works, not both")
        if not self.train_on and (self.composer_groups is not None or self.also_per_index or self.fine_tune):
            raise ValueError("composer groups, fine-tuning and the per-index comparison belong to the "
                             "general-embedder protocol: give --train-on (or, to fine-tune, --enrol and --model)")
        if self.composer_groups is not None and self.composer_groups < 1:
            raise ValueError(f"composer groups must be at least 1, not {self.composer_groups}")
        if self.baseline is not None:
            name = LEGACY_BASELINES.get(self.baseline, self.baseline)
            if name not in BASELINES:
                raise ValueError(f"unknown baseline {self.baseline!r} ({', '.join(BASELINES)})")
            object.__setattr__(self, "baseline", name)


def _classify_every_way(store: Any, vecs: np.ndarray, symbolic: np.ndarray, k: int
                        ) -> tuple[dict[str, str], list[str]]:
    """One held-out track's composer by each classifier (knn, linear, fused), and each clip's own k-NN
    vote winner, from one search."""
    _, ids = search(store.index, vecs, k)
    voters = neighbour_composers(store, store.track_of(ids)[:, :k])  # each neighbour's composer, looked up once
    composers = store.composers
    named = {"knn": composers[int(np.argmax(shares(voters, len(composers))))],
             "linear": composers[int(np.argmax(store.composer_proba(vecs)))],
             "fused": composers[int(np.argmax(store.composer_proba(vecs, symbolic)))]}
    clips = [composers[int(np.argmax(shares(row, len(composers))))] for row in voters]
    return named, clips


def loco_splits(composers_of: Sequence[str], groups: np.ndarray, seed: int) -> dict[str, Split]:
    """For each composer: (train, calibration, known-test, novel) track indices, works kept whole.

    The other composers' tracks are split three ways: 20% known-test, then 20% of the rest to
    calibrate the threshold on, and the rest to train and index.
    """
    labels = np.asarray(composers_of)
    out = {}
    for c in sorted(set(composers_of)):
        known_idx = np.flatnonzero(labels != c)
        test_mask = holdout_split(list(labels[known_idx]), groups[known_idx], 0.2, seed)
        rest = known_idx[~test_mask]
        calib_mask = holdout_split(list(labels[rest]), groups[rest], 0.2, seed + 1)
        novel = np.flatnonzero(labels == c)
        out[c] = (rest[~calib_mask], rest[calib_mask], known_idx[test_mask], novel)
    return out


def _embed_all(model: Embedder, corpus: Corpus, spectral: list[np.ndarray]) -> Embedding:
    """Every track's clip vectors under one model, in corpus order (the spectral statistics do not
    depend on the model: computed once, passed in)."""
    return Embedding(embed_tracks(model, [p.clips for p in corpus.prepared]), spectral)


class _Embeddings:
    """The corpus embedded under each of the last few models asked for: a general source gives
    every fold one model and every composer of a group one, which need embedding once."""

    def __init__(self, corpus: Corpus, spectral: list[np.ndarray], keep: int = 3):
        self.corpus, self.spectral, self.keep = corpus, spectral, keep
        self.made: list[tuple[Embedder, Embedding]] = []

    def __call__(self, model: Embedder) -> Embedding:
        for m, emb in self.made:
            if m is model:
                return emb
        emb = _embed_all(model, self.corpus, self.spectral)
        self.made = [*self.made[-(self.keep - 1):], (model, emb)] if self.keep > 1 else [(model, emb)]
        return emb


def timing_report(tested: Sequence[int], y_true: Sequence[str], y_pred: Sequence[str], kinds: Sequence[str],
                  labels: Sequence[str]) -> dict[str, Any]:
    """Naming figures (metrics.classification_report) apart for each timing kind ("score",
    "performance": timing.timing_kind) among the tested tracks; kinds is indexed by corpus position,
    y_true and y_pred follow tested."""
    out = {}
    for kind in sorted({kinds[i] for i in tested}):
        mine = [n for n, i in enumerate(tested) if kinds[i] == kind]
        out[kind] = classification_report([y_true[n] for n in mine], [y_pred[n] for n in mine], labels)
    return out


@dataclass
class EvalResult:
    summary: dict[str, Any]  # what eval.json holds
    map_vectors: dict[int, np.ndarray]  # fold 0 model's clip vectors per track, for the map
    map_composers: list[str]
    map_held_out: list[bool]  # track was in fold 0's test fold


def _cross_validate(corpus: Corpus, embed: _Embeddings, fold: np.ndarray, options: EvalOptions, b: BuildOptions,
                    source: EmbedderSource, kinds: Sequence[str], step: Any
                    ) -> tuple[dict[str, Any], dict[str, list[str]], list[int], dict[int, np.ndarray]]:
    """k folds grouped by work: each gets its embedder from the source, indexes the other folds and
    names its own tracks."""
    composers, composers_of = corpus.composers, corpus.composers_of
    classifier = classifier_for(b)
    tested: list[int] = []  # held-out track indices, fold after fold
    y_pred: dict[str, list[str]] = {n: [] for n in CLASSIFIERS}
    clip_true: list[str] = []
    clip_pred: list[str] = []
    per_fold = []
    map_vectors: dict[int, np.ndarray] = {}
    for f in range(options.folds):
        train_idx, test_idx = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if len({composers_of[i] for i in train_idx}) < 2 or not len(test_idx):
            raise TrainingError(f"fold {f} has too few composers or tracks; use fewer --folds")
        emb = embed(source.for_fold(f, train_idx))
        store = make_store(corpus, emb, train_idx, index_settings(b, 0), composers)
        fold_true, fold_pred = [], []
        for i in test_idx:
            named, votes = _classify_every_way(store, emb.vectors[i], corpus.prepared[i].symbolic, options.k)
            fold_true.append(composers_of[i])
            fold_pred.append(named[classifier])
            for n in CLASSIFIERS:
                y_pred[n].append(named[n])
            clip_true += [composers_of[i]] * len(votes)
            clip_pred += votes
        tested += test_idx.tolist()
        per_fold.append({"fold": f, "tracks": len(test_idx),
                         "accuracy": float(np.mean(np.array(fold_true) == np.array(fold_pred)))})
        if f == 0:
            map_vectors = dict(enumerate(emb.vectors))
        step()
    y_true = [composers_of[i] for i in tested]
    out: dict[str, Any] = {
        "track": {**classification_report(y_true, y_pred[classifier], composers), "classifier": classifier},
        "track_by_classifier": {n: classification_report(y_true, y_pred[n], composers) for n in CLASSIFIERS},
        "track_by_timing": timing_report(tested, y_true, y_pred[classifier], kinds, composers),
        "clip": classification_report(clip_true, clip_pred, composers),
        "folds": per_fold,
        "fold_of": {str(p.path.relative_to(corpus.root)): int(fold[i]) for i, p in enumerate(corpus.prepared)},
    }
    return out, y_pred, tested, map_vectors


def _leave_composers_out(corpus: Corpus, embed: _Embeddings, splits: dict[str, Split], b: BuildOptions,
                         source: EmbedderSource, step: Any) -> tuple[dict[str, Any], dict[str, LocoScores]]:
    """Each composer left out of the index (and of its embedder's training: the source's duty) in
    turn: every novelty method calibrated on known works and judged on the composer's tracks against
    known held-out ones."""
    composers_of = corpus.composers_of
    per_method: dict[str, dict[str, Any]] = {m: {} for m in METHODS}
    loco_scores: dict[str, LocoScores] = {}  # method -> what its figures were computed from
    for c, (train_idx, calib_idx, known_test, novel_idx) in splits.items():
        if not len(calib_idx) or not len(known_test):
            raise TrainingError(f"leaving {c} out leaves too few works by the other composers to calibrate and "
                                "test on (each split needs a few); use --no-loco or a folder with more works")
        known_composers = sorted({composers_of[i] for i in train_idx})
        model = source.for_left_out(c, train_idx)
        emb = embed(model)
        if emb.background is None:
            emb.background = source.background(model)
        # a general embedder's background composers that are not in this split's index (never c: its
        # model was trained without it) are the background-margin novelty's cohort
        cohort = emb.background is not None and len(emb.background.without(known_composers)) > 0
        store = make_store(corpus, emb, train_idx, index_settings(b, 0, background=cohort), known_composers)
        methods = [m for m in METHODS if cohort or m not in COHORT_METHODS]
        raw_methods = tuple(m for m in SCORERS if m in methods)
        raw = {part: [raw_scores(store, TrackQuery(emb.vectors[i], emb.spectral[i], corpus.prepared[i].symbolic),
                                 raw_methods, b.novelty.k) for i in idx]
               for part, idx in (("calib", calib_idx), ("known", known_test), ("novel", novel_idx))}
        for method in methods:
            settings = NoveltySettings(method, b.novelty.k, b.novelty.keep, background=cohort,
                                       threshold_rule=b.novelty.threshold_rule)
            cal = calibrate(raw["calib"], settings, impostor_scores(store, settings))
            scores = {part: np.asarray([final_score(p, method, cal) for p in ps]) for part, ps in raw.items()}
            per_method[method][c] = open_set_figures(scores["novel"], scores["known"], cal.threshold, len(calib_idx))
            loco_scores.setdefault(method, {})[c] = (novel_idx, scores["novel"], known_test, scores["known"])
        step()
    out = {"loco": {**loco_summary(per_method[b.novelty.method]), "method": b.novelty.method},
           "loco_by_method": {m: loco_summary(per) for m, per in per_method.items() if per}}
    return out, loco_scores


def _judge(source: EmbedderSource, corpus: Corpus, spectral: list[np.ndarray], fold: np.ndarray,
           splits: dict[str, Split], kinds: Sequence[str], options: EvalOptions, b: BuildOptions, step: Any
           ) -> tuple[dict[str, Any], dict[str, list[str]], list[int], dict[int, np.ndarray], dict[str, LocoScores]]:
    """One embedder source's naming figures on the folds and novelty figures on the splits (none
    without options.loco): (figures, predictions by classifier, tested track positions, fold 0's
    clip vectors, the novelty scores behind each method's figures)."""
    embed = _Embeddings(corpus, spectral)
    out, y_pred, tested, map_vectors = _cross_validate(corpus, embed, fold, options, b, source, kinds, step)
    loco_scores: dict[str, LocoScores] = {}
    if options.loco:
        loco, loco_scores = _leave_composers_out(corpus, embed, splits, b, source, step)
        out.update(loco)
    out["models"] = source.models
    return out, y_pred, tested, map_vectors, loco_scores


def evaluate(data_dir: str | Path, options: EvalOptions = EvalOptions(),
             progress: ProgressFn | None = None) -> EvalResult:
    """Run every fold and every leave-one-composer-out split; return a JSON-ready result.

    With options.train_on, the general-embedder protocol: the embedder is trained on those
    collections less every track that is the same piece as one of data_dir's (sources.py), and
    eval.json records the protocol (train_on, duplicates_removed, composer_groups, models); with
    also_per_index, the per-index embedder's figures on the same folds and splits go under
    "per_index". Raises DataDirError or TrainingError when the folder cannot be split so."""
    t_start = time.monotonic()
    b = options.build
    b = replace(b, dims=dims_for(b.dims, b.features), ray=False)  # the embedder takes the representation's rows
    whole, _, _ = prepare_corpus(Path(data_dir), b, None, progress)
    corpus = select_composers(whole, options.composers, options.min_works)
    composers_of, composers, groups = corpus.composers_of, corpus.composers, corpus.groups
    fold = kfold_groups(composers_of, groups, options.folds, b.seed)
    spectral = [spectral_stats(p.clips) for p in corpus.prepared]
    kinds = [file_timing_kind(p.path) for p in corpus.prepared]
    protocol: dict[str, Any] = {"protocol": "per-index"}
    source: EmbedderSource = PerIndexSource(corpus, b)
    if options.train_on:
        training = build_training_set(options.train_on, whole, b, progress)
        groups_of = composer_groups(composers, options.composer_groups, training,
                                    {c: composers_of.count(c) for c in composers})
        source = GeneralSource(training, groups_of, b, progress)
        if options.fine_tune:
            source = FineTunedSource(source, corpus, b, progress)
        protocol = {"protocol": "general-embedder", "train_on": [c["path"] for c in training.collections],
                    "collections": training.collections, "duplicates_removed": training.removed,
                    "train_on_failed": training.failed, "composer_groups": groups_of,
                    "fine_tuned": options.fine_tune}
    sources = [source, *([PerIndexSource(corpus, b)] if options.also_per_index else [])]
    steps = len(sources) * (options.folds + (len(composers) if options.loco else 0)) + (options.baseline is not None)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress:
            progress("evaluate", done[0], steps)

    splits = loco_splits(composers_of, groups, b.seed) if options.loco else {}
    out, y_pred, tested, map_vectors, loco_scores = _judge(source, corpus, spectral, fold, splits, kinds, options,
                                                           b, step)
    per_index = _judge(sources[1], corpus, spectral, fold, splits, kinds, options, b, step) \
        if options.also_per_index else None
    baseline_rows = None
    if options.baseline == "published":
        out["baseline"], baseline_rows = run_published([p.path for p in corpus.prepared], composers_of, composers,
                                                       fold, options.folds, splits, options.baseline_epochs)
        step()
    classifier = classifier_for(b)
    if options.bootstrap:
        draws = group_bootstrap(groups, composers_of, options.bootstrap, b.seed)
        add_intervals(out, draws, composers_of, composers, np.asarray(tested, dtype=np.int64), y_pred, classifier,
                      b.novelty.method, loco_scores, baseline_rows, kinds)
        if per_index is not None:
            pi_out, pi_pred, pi_tested, _, pi_loco = per_index
            add_intervals(pi_out, draws, composers_of, composers, np.asarray(pi_tested, dtype=np.int64), pi_pred,
                          classifier, b.novelty.method, pi_loco, None, kinds)
    if per_index is not None:
        out["per_index"] = {k: v for k, v in per_index[0].items() if k != "fold_of"}  # the same folds

    selection = None
    if options.composers or options.min_works:
        works = works_per_composer(whole)
        selection = {"rule": (f"composers named: {', '.join(options.composers)}" if options.composers else
                              f"composers with at least {options.min_works} work groups"),
                     "works_per_composer": works, "kept": composers,
                     "left_out": sorted(set(whole.composers) - set(composers))}
    out = {**protocol, **out}
    out["meta"] = {
        "data_dir": str(Path(data_dir).resolve()), "tracks": len(corpus.prepared), "composers": composers,
        "selection": selection, "timing_kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
        "failed": len(corpus.failures), "folds": options.folds, "k": options.k,
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "models_from_cache": sum(s.from_cache for s in sources),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "musicid_version": __version__,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {"features": b.features.as_dict(), "dims": asdict(b.dims), "train": asdict(b.train),
                     **({"fine_tune_train": asdict(fine_tuning(b.train))} if options.fine_tune else {}),
                     "classifier": classifier, "novelty": asdict(b.novelty)},
    }
    return EvalResult(out, map_vectors, composers_of, [bool(f == 0) for f in fold])


def save_results(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write confusion.png, embedding_map.png (plots.py draws them) and eval.json; return the paths."""
    from .plots import plot_confusion, plot_embedding_map

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_confusion(result.summary, out_dir / "confusion.png")]
    if result.map_vectors:
        paths.append(plot_embedding_map(result.map_vectors, result.map_composers, result.map_held_out,
                                        out_dir / "embedding_map.png"))
    paths.append(out_dir / "eval.json")
    write_json(paths[-1], result.summary)
    return paths
