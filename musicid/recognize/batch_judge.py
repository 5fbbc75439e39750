"""Judging a batch of queries by the part of the fused novelty score that sets the batch apart.

The fused score averages two z-scores, one from the embedding (``background-snorm``) and one from
the notes' statistics (``symbolic-knn``), because neither tells strangers apart everywhere: across
genres with a few works per composer the embedding's did (AUROC 0.62 against the symbolic one's
0.48), on piano music queried against a piano index from another collection the symbolic one did
(0.76 against 0.46; docs/RESULTS.md, 2026-12-07). A batch of queries (``report --novel DIR``) says
which setting it is in without any label: the part in which the batch as a whole lies further from
the index's held-out known tracks is the one that sees its strangers. The choice is transductive
(made for the test set at hand, in Vapnik's sense, "Statistical Learning Theory", 1998): each part's
*shift* is the AUROC of the batch's z-scores against the held-out known tracks' (0.5: the batch
looks known in that part), and the batch is judged by the part that shifts it more, by more than
MARGIN, and by the fused score when the shifts tie. Judged by one part, a track's novelty is that
part's z-score and its threshold the same quantile of the held-out z-scores that placed the fused
threshold.

Measured offline on the many-composer protocols and across collections (docs/RESULTS.md,
2026-12-07): novelty AUROC 0.597 (fused 0.563), 0.592 (0.588) and 0.759 (0.677). MARGIN was read
off those same splits. On splits it was not shaped on: five new draws of unseen composers 0.648
(fused 0.628), never worse; three new pairs of piano collections 0.683 (0.650), 0.674 (0.826) and
0.864 (0.864, a tie). The loss is its known weakness: a batch from another collection than the
index shifts in the embedding as a whole, known and novel works alike, and the shift is taken for
novelty. Opt-in for that reason.

A reference (``report --reference DIR``: attributed files from the queries' own source) takes the
place of the index's held-out works, for the threshold and for the batch's shift alike
(source_calibration), so that a change of source is not read as novelty. Its thresholds are split
conformal order statistics (conformal_threshold), and it needs at least min_reference(keep) works
(19 for the default keep of 0.95): on the protocols, a threshold interpolated between the scores
of 5-10 reference works flagged 12-32% of known works, the conformal one of 20 or more 0-9%
(docs/RESULTS.md, 2026-12-07, musicid 0.5.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataDirError, IndexMismatch
from ..index.calibration import Calibration
from ..index.manifest import Manifest
from ..progress import ProgressFn
from .query import QueryEngine, TrackResult, report_folder

MARGIN = 0.05  # how much more one part must shift the batch than the other to judge it alone
JUDGES = ("fused", "batch")  # report --judge: the index's fused score, or the part the batch picks


@dataclass(frozen=True)
class BatchJudgement:
    """How one batch was judged: part is the fused part chosen (None: the shifts tied, the fused score
    judged); shifts, each part's AUROC of the batch's z-scores against the held-out known tracks';
    threshold, the novelty threshold the batch was judged against."""

    part: str | None
    shifts: dict[str, float]
    threshold: float
    reference_tracks: int = 0  # known works of the queries' own source it was judged against (0: the index's)

    def as_dict(self) -> dict[str, Any]:
        return {"part": self.part, "shifts": {k: round(v, 4) for k, v in self.shifts.items()},
                "threshold": round(self.threshold, 4), "margin": MARGIN, "reference_tracks": self.reference_tracks}


def shift(batch: np.ndarray, heldout_sorted: np.ndarray) -> float:
    """P(a batch z-score > a held-out one), ties counted half: (n,) against (m,) ascending; NaN if
    either is empty."""
    if not len(batch) or not len(heldout_sorted):
        return float("nan")
    below = np.searchsorted(heldout_sorted, batch, side="left")
    at_or_below = np.searchsorted(heldout_sorted, batch, side="right")
    return float((below + at_or_below).sum() / (2 * len(batch) * len(heldout_sorted)))


def min_reference(keep: float) -> int:
    """The fewest reference scores whose conformal_threshold is finite: the least n with
    ceil((n + 1) * keep) <= n (19 for keep = 0.95, 99 for 0.99)."""
    return math.ceil(round(keep / (1.0 - keep), 9))


def conformal_threshold(scores: np.ndarray, keep: float) -> float:
    """The split conformal threshold (Vovk, Gammerman and Shafer, "Algorithmic Learning in a Random
    World", 2005; Lei et al., "Distribution-Free Predictive Inference for Regression", JASA 2018):
    the ceil((n + 1) * keep)-th smallest of n scores, so that a new score exchangeable with them
    exceeds it with probability at most 1 - keep; +inf where n < min_reference(keep)."""
    s = np.sort(np.asarray(scores, dtype=float))
    k = math.ceil(round((len(s) + 1) * keep, 9))
    return float(s[k - 1]) if 1 <= k <= len(s) else float("inf")


def judge_batch(results: Sequence[TrackResult], calibration: Calibration, keep: float,
                margin: float = MARGIN, conformal: bool = False) -> BatchJudgement | None:
    """The part (or the fused score) a batch of fused-score results is judged by; None where the
    index keeps no held-out z-scores (calibrated before musicid 0.5, or not with the fused score).

    keep: the share of held-out known tracks under a threshold (NoveltySettings.keep); conformal: a
    chosen part's threshold is the conformal_threshold of its held-out z-scores (a reference's:
    source_calibration) rather than their interpolated keep-quantile (the index's own, as calibrated)."""
    if not calibration.heldout_z or not results:
        return None
    shifts = {}
    for part, held in calibration.heldout_z.items():
        z = np.array([r.novelty_z.get(part, np.nan) for r in results], dtype=float)
        shifts[part] = shift(z[np.isfinite(z)], np.asarray(held, dtype=float))
    ranked = sorted((s, p) for p, s in shifts.items() if np.isfinite(s))
    if len(ranked) < 2 or ranked[-1][0] - ranked[-2][0] <= margin:
        return BatchJudgement(None, shifts, calibration.threshold)
    part = ranked[-1][1]
    part_z = np.asarray(calibration.heldout_z[part], dtype=float)
    threshold = conformal_threshold(part_z, keep) if conformal else float(np.quantile(part_z, keep))
    return BatchJudgement(part, shifts, threshold)


def rejudge(results: Sequence[TrackResult], judgement: BatchJudgement) -> list[TrackResult]:
    """The results judged by the chosen part (novelty: its z-score; threshold and flag from it), in
    the order given; where the fused score judged, its novelty against judgement.threshold (the
    index's own threshold unless a reference placed it)."""
    if judgement.part is None:
        return [replace(r, threshold=round(judgement.threshold, 4), novel=r.novelty > judgement.threshold)
                for r in results]
    part = judgement.part
    judged = []
    for r in results:
        z = r.novelty_z.get(part, float("nan"))
        novelty = z if np.isfinite(z) else r.novelty
        judged.append(replace(r, novelty=round(novelty, 4), threshold=round(judgement.threshold, 4),
                              novel=novelty > judgement.threshold, novelty_method=part))
    return judged


def source_calibration(known: Sequence[TrackResult], calibration: Calibration, keep: float) -> Calibration:
    """The index's calibration placed on known works from the queries' own source instead of the
    index's held-out works: each part's held-out z-scores replaced by theirs, the threshold put at
    the conformal_threshold of their novelty scores. Split conformal calibration on the source the
    queries come from, so that neither the flag rate nor the batch judge reads a change of source
    (edition, encoding, genre) as novelty: offline on four pairs of piano collections, 5-8% of known
    works flagged against 0-19% with the index's threshold (docs/RESULTS.md, 2026-12-07, musicid
    0.5.1); on the many-composer protocols with 20 or more reference works drawn from the queries'
    genre, 0-6% pooled (the index's threshold: 7-20%; 0.5.2).

    known: results (TrackResult) of works by composers the index holds, not among the queries.
    Raises DataDirError when fewer than min_reference(keep) have a finite novelty score: fewer
    cannot place a threshold that keeps `keep` of the source's known works."""
    scores = np.array([r.novelty for r in known], dtype=float)
    scores = scores[np.isfinite(scores)]
    if len(scores) < min_reference(keep):
        raise DataDirError(f"{len(scores)} reference work(s) by indexed composers: a threshold that flags at most "
                           f"{1 - keep:.0%} of known works needs at least {min_reference(keep)} "
                           "(split conformal calibration)")
    parts = calibration.heldout_z or {}
    z = {part: tuple(sorted(v for r in known if np.isfinite(v := r.novelty_z.get(part, np.nan)))) for part in parts}
    return replace(calibration, threshold=conformal_threshold(scores, keep),
                   heldout_z={p: v for p, v in z.items() if v} or None)


def reference_works(engine: QueryEngine, folder: Path, workers: int = 0,
                    progress: ProgressFn | None = None) -> list[TrackResult]:
    """The results of a reference folder's files (<folder>/<Composer>/...) by composers the index
    holds, for source_calibration; files by other composers and unreadable ones are left out.
    Raises DataDirError where none is left."""
    results, _ = report_folder(engine, folder, False, workers, progress)
    indexed = set(engine.store.composers)
    known = [r for r in results if Path(r.path).parts[0] in indexed and len(Path(r.path).parts) > 1]
    if not known:
        raise DataDirError(f"{folder}: no readable file under a subfolder named for an indexed composer "
                           f"({', '.join(sorted(indexed))})")
    return known


def judge_report(results: Sequence[TrackResult], manifest: Manifest, by_batch: bool = True,
                 reference: Sequence[TrackResult] = ()) -> tuple[list[TrackResult], BatchJudgement]:
    """A folder's (or an upload batch's) fused-score results judged against the index described by
    manifest: (the results rejudged, in the order given; how they were judged). by_batch: as one
    batch, by the part that sets it apart (judge_batch); else by the fused score. reference: known
    works from the queries' own source (source_calibration), judged against in place of the index's
    held-out works. Raises IndexMismatch where a batch is to be judged and the index keeps no
    held-out z-scores (calibrated before musicid 0.5.0, or not with the fused score): it must be
    rebuilt."""
    keep = manifest.settings.novelty.keep
    calibration = source_calibration(reference, manifest.calibration, keep) if reference else manifest.calibration
    if by_batch:
        judgement = judge_batch(results, calibration, keep, conformal=bool(reference))
        if judgement is None:
            raise IndexMismatch("judging a batch needs an index calibrated with the fused score that keeps its "
                                "held-out tracks' z-scores (built by musicid 0.5.0 or later): rebuild it")
    else:
        judgement = BatchJudgement(None, {}, calibration.threshold)
    judgement = replace(judgement, reference_tracks=len(reference))
    return rejudge(results, judgement), judgement
