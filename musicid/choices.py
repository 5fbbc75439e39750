"""The named choices of musicid's settings, as str Enums: one list the library checks against and
the command line offers (Typer validates an Enum-typed option). Importing this is free: no numpy,
torch or FAISS, so `musicid --help` stays instant."""

from __future__ import annotations

from enum import Enum, StrEnum


class Representation(StrEnum):
    """The embedder's input (features/clips.py)."""

    pianoroll = "pianoroll"  # the notes straight from the MIDI, nothing rendered
    audio = "audio"  # log-mel spectrogram of the FluidSynth rendering
    family_rolls = "family-rolls"  # the piano roll once per instrument family, stacked


class Classifier(StrEnum):
    """How a track's composer is chosen (classifier.py)."""

    auto = "auto"  # linear with piano rolls, knn with audio
    knn = "knn"  # each clip's k nearest indexed clips vote
    linear = "linear"  # a class-balanced linear probe on the indexed clip vectors
    fused = "fused"  # the linear probe and a logistic regression on the symbolic features, log-probabilities summed


class NoveltyMethod(StrEnum):
    """The novelty score (novelty.py)."""

    fused = "fused"
    track_knn = "track-knn"
    clip_knn = "clip-knn"
    symbolic_knn = "symbolic-knn"
    spectral_knn = "spectral-knn"
    background_margin = "background-margin"
    background_snorm = "background-snorm"


class ThresholdRule(StrEnum):
    """Where the novelty threshold goes (novelty.calibrate)."""

    known_quantile = "known-quantile"  # above a share (keep) of held-out known tracks
    equal_error = "equal-error"  # between held-out known tracks and background tracks scored as known unknowns


class Judge(StrEnum):
    """What judges a batch's novelty in report (recognize/batch_judge.py)."""

    fused = "fused"  # the index's fused score and threshold, as query judges one track
    batch = "batch"  # the fused part that sets the batch apart from known music more, where one does


class Labels(StrEnum):
    """Where a track's composer comes from (dataset.scan_labelled)."""

    folders = "folders"  # <root>/<Composer>/...: the folder's name
    metadata = "metadata"  # the file itself: a score's <creator type="composer"> or kern !!!COM


class IndexKind(StrEnum):
    """The FAISS index (faiss_index.py)."""

    auto = "auto"
    flat = "flat"
    hnsw = "hnsw"
    ivf = "ivf"
    ivfpq = "ivfpq"


class Baseline(StrEnum):
    """A method eval also runs on the same splits."""

    published = "published"  # the published attempt at the challenge set (baseline.py)


def values(choice: type[Enum], skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The values of a choice, in declaration order, without those in skip."""
    return tuple(str(c.value) for c in choice if c.value not in skip)


def canonical(name: str, choices: tuple[str, ...], legacy: dict[str, str], what: str) -> str:
    """A choice's current name from its current or legacy name; ValueError naming `what` otherwise."""
    name = legacy.get(name, name)
    if name not in choices:
        raise ValueError(f"unknown {what} {name!r} ({', '.join(choices)})")
    return name
