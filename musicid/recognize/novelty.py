"""Novelty scores for open-set recognition, and the one calibration that index build and eval share.

A track is *novel* (by a composer the index does not hold) when its novelty score
lies above a threshold calibrated on held-out tracks by known composers. Each
score is a k-nearest-neighbour distance in one space (distance-based open-set
recognition; cf. Bendale and Boult, "Towards Open Set Deep Networks", CVPR 2016,
and the k-NN out-of-distribution score of Sun et al., ICML 2022):

- ``track-knn``: from the track's mean clip embedding (unit length) to the
  nearest indexed track's -- a whole piece against whole pieces;
- ``clip-knn``: the mean over the track's clips of the mean distance to each
  clip's k nearest indexed clips;
- ``symbolic-knn``: from the track's symbolic features (features/symbolic.py),
  each standardised over the indexed tracks, to the nearest indexed track's;
- ``spectral-knn``: ``clip-knn`` in the space of spectral statistics
  (features/spectral.py), an untrained view of the clips;
- ``background-margin``: ``track-knn`` less the distance from the track's
  mean embedding to the nearest *background* track (background.py: tracks of
  the composers a general embedder was trained on that the index does not
  enrol, a cohort of impostors): positive when the track lies nearer some
  composer the index does not hold than any it does;
- ``background-snorm``: adaptive score normalisation of ``track-knn`` against
  the same cohort: less the mean of the distances to the 10 nearest background
  tracks, divided by their standard deviation (AS-norm: Matějka et al.,
  "Analysis of score normalization in multilingual speaker recognition",
  Interspeech 2017);
- ``fused`` (the default), from robust z-scores -- (score - median) /
  interquartile range over held-out known tracks -- so 0 is a typical known
  track and 1 one interquartile range above: where the index has a background
  cohort (a general embedder's, such as the shipped one), the mean of the
  ``background-snorm`` and ``symbolic-knn`` z-scores; otherwise the larger of
  the ``track-knn`` and ``symbolic-knn`` z-scores. The cohort makes the score a
  normalised one, as in speaker verification (Auckenthaler et al., "Score
  normalization for text-independent speaker verification systems", DSP 2000):
  across collections it ranked novel tracks better than the nearest distance
  did, whether or not the embedder had seen their composers (docs/RESULTS.md,
  2026-12-02; indexes built with musicid 0.2.0 before that change used
  ``background-margin`` in its place). An index records the parts and the rule it was calibrated with
  (Calibration), so one built before keeps scoring as it did.

docs/RESULTS.md compares them by left-out composer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..index.calibration import DEFAULT_K, FUSED_PARTS, SNORM_COHORT, Calibration, NoveltySettings, Scales
from ..vectors import mean_vector

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.background import Background

@dataclass(frozen=True)
class TrackQuery:
    """What one track brings to be scored."""

    vectors: np.ndarray  # (n_clips, d) unit clip embeddings
    spectral: np.ndarray | None = None  # (n_clips, 2 * n_bins) features.spectral.spectral_stats; spectral-knn only
    symbolic: np.ndarray | None = None  # (N_SYMBOLIC,) features.symbolic.symbolic_features_of


def _nearest_track(dist: np.ndarray) -> float:
    return float(dist.mean()) if len(dist) else float("inf")


def _track_knn(store: IndexStore, q: TrackQuery, k: int, exclude: np.ndarray) -> float:
    return _nearest_track(store.search_tracks(mean_vector(q.vectors), 1, exclude)[0])


def _symbolic_knn(store: IndexStore, q: TrackQuery, k: int, exclude: np.ndarray) -> float:
    if q.symbolic is None:
        raise ValueError("symbolic-knn needs the track's symbolic features")
    return _nearest_track(store.search_symbolic(q.symbolic, 1, exclude)[0])


def _clip_knn(store: IndexStore, q: TrackQuery, k: int, exclude: np.ndarray) -> float:
    return float(store.search_clips(q.vectors, k, exclude)[0][:, :k].mean())


def _cohort(store: IndexStore, method: str) -> Background:
    """The index's background cohort; ValueError naming `method` when the index keeps none."""
    if store.cohort is None:
        raise ValueError(f"{method} needs an index enrolled with a general embedder that keeps "
                         "background composers (musicid embedder train)")
    return store.cohort


def _background_margin(store: IndexStore, q: TrackQuery, k: int, exclude: np.ndarray) -> float:
    cohort = _cohort(store, "background-margin")
    v = mean_vector(q.vectors)
    return _nearest_track(store.search_tracks(v, 1, exclude)[0]) - cohort.nearest(v)[0]


def _background_snorm(store: IndexStore, q: TrackQuery, k: int, exclude: np.ndarray) -> float:
    v = mean_vector(q.vectors)
    cohort = _cohort(store, "background-snorm").nearest_distances(v, SNORM_COHORT)
    if not len(cohort):
        return float("-inf")  # every background composer enrolled: nothing to normalise against
    return (_nearest_track(store.search_tracks(v, 1, exclude)[0]) - float(cohort.mean())) / (float(cohort.std()) + 1e-6)


def _spectral_knn(store: IndexStore, q: TrackQuery, k: int, exclude: np.ndarray) -> float:
    if q.spectral is None:
        raise ValueError("spectral-knn needs the clips' spectral statistics")
    return float(store.search_clips(q.spectral, k, exclude, space="spectral")[0][:, :k].mean())


Scorer = Callable[["IndexStore", TrackQuery, int, np.ndarray], float]
SCORERS: dict[str, Scorer] = {"track-knn": _track_knn, "clip-knn": _clip_knn, "symbolic-knn": _symbolic_knn,
                              "spectral-knn": _spectral_knn, "background-margin": _background_margin,
                              "background-snorm": _background_snorm}


def raw_scores(store: IndexStore, q: TrackQuery, methods: Sequence[str], k: int = DEFAULT_K,
               exclude_tracks: Sequence[int] = ()) -> dict[str, float]:
    """Each raw (uncalibrated) score of one track, by method name (fused excepted: see fuse).

    exclude_tracks: indexed track ids to act as if absent (leave-one-work-out calibration)."""
    excluded = np.asarray(list(exclude_tracks), dtype=np.int64)
    return {m: SCORERS[m](store, q, k, excluded) for m in methods}


TRACK_VECTOR_METHODS = ("track-knn", "symbolic-knn", "background-margin", "background-snorm")  # need no clips


def impostors_unavailable(cohort: Background | None, settings: NoveltySettings) -> str:
    """Why the background cohort's tracks cannot be scored as known unknowns (impostor_scores) under
    these settings, in words for a warning; "" when they can."""
    if cohort is None or not len(cohort):
        return "the index has no background (an embedder trained here, or every background composer enrolled)"
    if any(m not in TRACK_VECTOR_METHODS for m in settings.parts):
        return f"--novelty {settings.method} needs clips, which the background does not keep"
    if "symbolic-knn" in settings.parts and cohort.symbolic is None:
        return "the embedder's background keeps no symbolic features (python bench/rebackground.py adds them)"
    return ""


def impostor_scores(store: IndexStore, settings: NoveltySettings) -> list[dict[str, float]]:
    """Each background cohort track scored as a query by a composer the index does not hold: its
    unit track vector and symbolic features against the indexed tracks, with the cohort less its
    own composer (as for a composer the embedder never saw). These are *known unknowns* in the sense
    of open-set recognition (Scheirer et al., "Toward Open Set Recognition", TPAMI 2013; Dhamija et
    al., NeurIPS 2018): measured novel tracks for the threshold to sit above.

    Only the "equal-error" threshold rule uses them, so [] under any other. Returns one dict of
    raw scores (settings.parts) per cohort track; [] when they cannot be scored (impostors_unavailable:
    no cohort, a method that needs clips, or symbolic-knn without the background's symbolic features)."""
    cohort, methods = store.cohort, settings.parts
    if settings.threshold_rule != "equal-error" or impostors_unavailable(cohort, settings):
        return []
    assert cohort is not None
    out = []
    view = copy.copy(store)  # the same index, another cohort per background composer
    for label, composer in enumerate(cohort.composers):
        view.cohort = cohort.without([composer])
        for i in np.flatnonzero(cohort.labels == label):
            q = TrackQuery(cohort.vectors[i][None, :], None, None if cohort.symbolic is None else cohort.symbolic[i])
            out.append(raw_scores(view, q, methods))
    return out


def fuse(parts: dict[str, float], scales: Scales, rule: str = "max") -> float:
    """The fused score: each part as a robust z-score on its own scale, then their maximum or mean.

    A part that cannot be measured is left out of the mean: the background margin is -inf once
    every background composer has been enrolled (index add), and then the other part alone
    decides (as it always did under "max")."""
    z = [(parts[m] - med) / iqr for m, (med, iqr) in scales.items()]
    if rule == "max":
        return float(max(z))
    finite = [x for x in z if np.isfinite(x)]
    return float(np.mean(finite)) if finite else float(max(z))


def final_score(parts: dict[str, float], method: str, calibration: Calibration | None) -> float:
    """A track's novelty score under `method` from its raw scores; NaN for the fused score
    before its scales exist (an index being calibrated)."""
    if method != "fused":
        return parts[method]
    if calibration is None or not calibration.scales:
        return float("nan")
    return fuse(parts, calibration.scales, calibration.rule)


def robust_scales(parts: Sequence[dict[str, float]], names: Sequence[str] = FUSED_PARTS) -> Scales:
    """Each fused part's (names) median and interquartile range over held-out known tracks' raw scores.

    The range is floored at a tenth of the median, so that a handful of near-identical
    calibration tracks cannot make every later track look infinitely far."""
    if not len(parts):
        raise ValueError("no held-out scores to scale the fused score on")
    out = {}
    for m in names:
        x = np.asarray([p[m] for p in parts], dtype=float)
        x = x[np.isfinite(x)]
        med = float(np.median(x)) if len(x) else 0.0
        iqr = float(np.subtract(*np.percentile(x, [75, 25]))) if len(x) else 1.0
        out[m] = (med, max(iqr, 0.1 * abs(med), 1e-6))
    return out


def equal_error_threshold(known: np.ndarray, impostors: np.ndarray) -> float:
    """The threshold at which the share of known scores (n,) above it equals the share of impostor
    scores (m,) at or under it: the equal-error operating point of verification (e.g. the EER of
    speaker recognition, NIST SRE), between two measured distributions. Both non-empty."""
    candidates = np.unique(np.r_[known, impostors])
    false_alarm = (known[None, :] > candidates[:, None]).mean(axis=1)
    miss = (impostors[None, :] <= candidates[:, None]).mean(axis=1)
    return float(candidates[int(np.argmin(np.abs(false_alarm - miss)))])


def calibrate(held_out: Sequence[dict[str, float]], settings: NoveltySettings,
              impostors: Sequence[dict[str, float]] = ()) -> Calibration:
    """The novelty threshold (and, for the fused score, its parts' scales, fitted first on the
    held-out known tracks): under settings.threshold_rule "known-quantile", the score under which
    `settings.keep` of held-out known tracks lie; under "equal-error", the equal-error point between
    the held-out known tracks and the impostors (equal_error_threshold), or the quantile where there
    are no impostors with finite scores.

    held_out: each held-out known track's raw scores (raw_scores), holding settings.parts;
    impostors: the same for known unknowns (impostor_scores). Raises ValueError when held_out is empty."""
    if not len(held_out):
        raise ValueError("no held-out scores to calibrate on")
    scales = robust_scales(held_out, settings.parts) if settings.method == "fused" else None
    heldout_z = {m: tuple(sorted(z)) for m, (med, iqr) in scales.items()
                 if len(z := [(p[m] - med) / iqr for p in held_out if np.isfinite(p[m])])} if scales else None
    fitted = Calibration(float("inf"), scales, settings.rule, heldout_z=heldout_z or None)
    scores = np.asarray([final_score(p, settings.method, fitted) for p in held_out], dtype=float)
    threshold = float(np.quantile(scores, settings.keep))
    imp = np.asarray([final_score(p, settings.method, fitted) for p in impostors], dtype=float)
    imp = imp[np.isfinite(imp)]
    if settings.threshold_rule == "equal-error" and len(imp):
        return replace(fitted, threshold=equal_error_threshold(scores[np.isfinite(scores)], imp),
                       threshold_rule="equal-error", impostors=len(imp))
    return replace(fitted, threshold=threshold)
