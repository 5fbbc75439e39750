"""How an index scores novelty and where its threshold lies: NoveltySettings and Calibration, the frozen
settings an index's manifest records (manifest.py). The scores themselves, and the calibration that
places the threshold, are in novelty.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..choices import NoveltyMethod, ThresholdRule, canonical, values

METHODS = values(NoveltyMethod)  # fused, track-knn, clip-knn, symbolic-knn, spectral-knn
LEGACY_METHODS = {"blend": "fused", "track": "track-knn", "embedding": "clip-knn", "score": "symbolic-knn",
                  "sound": "spectral-knn"}  # the names before 0.2 ("views"), still accepted on the command line
FUSED_PARTS = ("track-knn", "symbolic-knn")  # without a background cohort: the larger z-score
FUSED_COHORT_PARTS = ("background-snorm", "symbolic-knn")  # with one: the mean z-score
COHORT_METHODS = ("background-margin", "background-snorm")  # scores that need a background cohort
SNORM_COHORT = 10  # background-snorm: the nearest background tracks whose distances normalise the score
FUSION_RULES = ("max", "mean")
# where the threshold goes: above settings.keep of held-out known tracks; or, where the index's
# background can be scored as known unknowns (impostor_scores), at the equal-error point between
# those and the held-out known tracks (falling back to the quantile where it cannot)
THRESHOLD_RULES = values(ThresholdRule)
DEFAULT_K = 5  # neighbours of each clip for clip-knn and spectral-knn; track-knn and symbolic-knn take the nearest
DESCRIPTIONS = {  # what each score is, written into the manifest
    "track-knn": "distance from the track's mean embedding to the nearest indexed track's mean embedding",
    "clip-knn": "mean distance of each clip to its k nearest indexed clips, averaged over the track's clips",
    "spectral-knn": "mean distance of each clip to its k nearest indexed clips in the space of spectral "
                    "statistics (features/spectral.py), averaged over the track's clips",
    "symbolic-knn": "distance from the track's symbolic features (features/symbolic.py) to the nearest indexed "
                    "track's, each feature standardised over the indexed tracks",
    "background-margin": "track-knn less the distance from the track's mean embedding to the nearest "
                         "background track (composers the embedder was trained on that the index does not hold)",
    "background-snorm": "track-knn less the mean distance from the track's mean embedding to its 10 nearest "
                        "background tracks, divided by their standard deviation (adaptive score normalisation)",
    "fused": "robust z-scores ((score - median) / interquartile range of held-out known tracks, "
             "calibration.scales) combined by calibration.rule: the mean of background-snorm and "
             "symbolic-knn where the index has a background cohort, else the larger of track-knn and "
             "symbolic-knn",
}


def method_name(name: str) -> str:
    """A novelty method's name, from its current or its legacy name; ValueError for an unknown one."""
    return canonical(name, METHODS, LEGACY_METHODS, "novelty score")


@dataclass(frozen=True)
class NoveltySettings:
    """How novelty is scored and where its threshold goes."""

    method: str = "fused"  # one of METHODS
    k: int = DEFAULT_K  # neighbours per clip (clip-knn, spectral-knn)
    keep: float = 0.95  # share of held-out known tracks at or under the threshold ("known-quantile")
    background: bool = False  # the index keeps background tracks (background.py): background-margin can be scored
    threshold_rule: str = "known-quantile"  # one of THRESHOLD_RULES: where calibrate puts the threshold

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", method_name(self.method))
        if self.k < 1:
            raise ValueError(f"novelty k must be at least 1, not {self.k}")
        if not 0.0 < self.keep < 1.0:
            raise ValueError(f"novelty keep must lie between 0 and 1, not {self.keep}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"unknown threshold rule {self.threshold_rule!r} ({', '.join(THRESHOLD_RULES)})")

    @property
    def parts(self) -> tuple[str, ...]:
        """The raw scores this method is made from (an index calibrated before keeps its own:
        Calibration.parts)."""
        if self.method != "fused":
            return (self.method,)
        return FUSED_COHORT_PARTS if self.background else FUSED_PARTS

    @property
    def rule(self) -> str:
        """How the fused score combines its parts' z-scores: "mean" with a background cohort, else "max"."""
        return "mean" if self.method == "fused" and self.background else "max"


Scales = dict[str, tuple[float, float]]  # fused: each part's (median, interquartile range)


@dataclass(frozen=True)
class Calibration:
    """Where a method's threshold lies, from held-out known tracks (and the fused score's scales,
    one per part, and how their z-scores combine)."""

    threshold: float
    scales: Scales | None = None
    rule: str = "max"  # fused: "max" or "mean" of the parts' z-scores ("max" where a file does not say)
    threshold_rule: str = "known-quantile"  # how the threshold was placed (THRESHOLD_RULES)
    impostors: int = 0  # "equal-error": how many known unknowns it was placed against
    # fused: each part's z-scores over the held-out known tracks, ascending (what batch_judge.py sets a
    # batch of queries against); None where an index was calibrated before musicid 0.5
    heldout_z: dict[str, tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if self.rule not in FUSION_RULES:
            raise ValueError(f"unknown fusion rule {self.rule!r} ({', '.join(FUSION_RULES)})")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"unknown threshold rule {self.threshold_rule!r} ({', '.join(THRESHOLD_RULES)})")

    @property
    def parts(self) -> tuple[str, ...] | None:
        """The fused score's parts, as calibrated (None for any other method)."""
        return tuple(self.scales) if self.scales else None

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": round(self.threshold, 4),
                "scales": {k: [float(a), float(b)] for k, (a, b) in self.scales.items()} if self.scales else None,
                "rule": self.rule, "threshold_rule": self.threshold_rule, "impostors": self.impostors,
                "heldout_z": {k: [round(float(x), 4) for x in v] for k, v in self.heldout_z.items()}
                if self.heldout_z else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        scales, heldout_z = d.get("scales"), d.get("heldout_z")
        return cls(float(d["threshold"]),
                   {str(k): (float(a), float(b)) for k, (a, b) in scales.items()} if scales else None,
                   str(d.get("rule", "max")), str(d.get("threshold_rule", "known-quantile")),
                   int(d.get("impostors", 0)),
                   {str(k): tuple(float(x) for x in v) for k, v in heldout_z.items()} if heldout_z else None)
