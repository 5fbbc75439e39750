"""`musicid index build|add|remove|info`: each calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..choices import Classifier, IndexKind, Labels, NoveltyMethod, Representation, ThresholdRule
from .common import (
    CLASSIFIER_OPT,
    COSFACE_OPT,
    FEATURES_OPT,
    INDEX_OPT,
    LABELS_OPT,
    LEGACY_NAMING_OPT,
    LEGACY_VIEW_OPT,
    NOVELTY_OPT,
    PITCH_SHIFT_OPT,
    RANDOM_PROGRAMS_OPT,
    SEED_OPT,
    THRESHOLD_OPT,
    TIME_STRETCH_OPT,
    build_flags,
    domain_errors,
    echo_json,
    hidden,
    index_app,
    index_dir,
    out,
    progress_bars,
)


@index_app.command("build")
def index_build(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False,
                                    help="Folder of <Composer>/ subfolders of MIDI files and scores (.mid, .midi, "
                                         ".musicxml, .xml, .mxl, .krn)."),
    labels: Labels = LABELS_OPT,
    out_dir: Path | None = typer.Option(None, "--out", "-o",
                                        help="Index directory to write [default: ./musicid-index]."),
    soundfont: Path | None = typer.Option(None, "--soundfont",
                                          help="SoundFont (.sf2) [default: TimGM6mb.sf2 from pretty_midi]."),
    model: Path | None = typer.Option(None, "--model",
                                      help="Enrol with this embedder checkpoint (e.g. from musicid embedder "
                                           "train) [default: the shipped embedder]."),
    train: bool = typer.Option(False, "--train",
                               help="Train a per-index embedder on this folder instead of enrolling with the "
                                    "shipped one (what --features audio and family-rolls always do). Not with "
                                    "--model."),
    fine_tune: bool = typer.Option(False, "--fine-tune",
                                   help="Go on training the starting model (--model, or the shipped one) on "
                                        "this folder's composers."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, hidden=True,
                                      help="Training epochs, when it trains (--train, --fine-tune, --features "
                                           "audio) [default: 12]."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1, hidden=True,
                                               help="Batches per epoch, when it trains [default: 40]."),
    group_by: str | None = typer.Option(None, "--group-by",
                                        help="Regex on file names whose first group names the work."),
    workers: int = typer.Option(0, "--workers", min=0, show_default=False,
                                help="Processes reading and rendering files [default: one per core]."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir",
                                          help="Render cache [default: $MUSICID_CACHE or ~/.cache/musicid]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the render cache."),
    features: Representation = FEATURES_OPT,
    classifier: Classifier = CLASSIFIER_OPT,
    novelty: NoveltyMethod = NOVELTY_OPT,
    threshold_rule: ThresholdRule = THRESHOLD_OPT,
    pitch_shift: int = hidden(PITCH_SHIFT_OPT),
    time_stretch: float = hidden(TIME_STRETCH_OPT),
    cosface: float = hidden(COSFACE_OPT),
    random_programs: bool = hidden(RANDOM_PROGRAMS_OPT),
    seed: int = hidden(SEED_OPT),
    index_type: IndexKind = typer.Option(IndexKind.auto, "--index-type",
                                         help="FAISS index: auto (exact below 100k clips, IVF to 20M, IVF-PQ "
                                              "above), flat, ivf, ivfpq, hnsw."),
    ray_address: str | None = typer.Option(None, "--ray", metavar="[ADDRESS]",
                                           help="Render and embed on a Ray cluster: --ray alone starts a local "
                                                "one, --ray HOST:PORT (or auto) attaches to a running one. "
                                                "Needs pip install 'musicid[ray]'."),
    as_json: bool = typer.Option(False, "--json", help="Print the build summary as JSON."),
    naming: str | None = LEGACY_NAMING_OPT,
    novelty_view: str | None = LEGACY_VIEW_OPT,
) -> None:
    """Enrol the folder's composers with the shipped embedder (or train one: --train), embed every
    clip, calibrate novelty and write the index."""
    from ..build.indexer import build_index

    if train and (model or fine_tune):
        raise typer.BadParameter("--train trains from scratch: it takes neither --model nor --fine-tune")
    with domain_errors(as_json, data_dir):
        opts = build_flags(features, classifier, naming, novelty, novelty_view, index_kind=index_type.value,
                        group_by=group_by, soundfont=soundfont, model=model, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, pitch_shift=pitch_shift, time_stretch=time_stretch,
                        cosface=cosface, cache_dir=cache_dir, no_cache=no_cache, workers=workers,
                        ray_address=ray_address, fine_tune=fine_tune, shipped=not train,
                        random_programs=random_programs, seed=seed,
                        threshold_rule=threshold_rule.value, labels=labels.value)
        with progress_bars(not as_json) as progress:
            report = build_index(data_dir, index_dir(out_dir), opts, progress)
    if as_json:
        from dataclasses import asdict
        echo_json(asdict(report))
        return
    from .display import print_build_report
    print_build_report(out, report)


def _print_edit(rep: Any, as_json: bool) -> None:
    if as_json:
        echo_json(rep.as_dict())
        return
    for path, reason in rep.failures:
        out.print(f"  skipped {path}: {reason}", highlight=False, soft_wrap=True)
    done = (f"added {', '.join(f'{n} {c}' for c, n in rep.added.items())}" if rep.added
            else f"removed {', '.join(f'{n} {c}' for c, n in rep.removed.items())}")
    out.print(f"{done} tracks; the index now holds {rep.tracks} tracks by {', '.join(rep.composers)}",
              highlight=False, soft_wrap=True)


@index_app.command("add")
def index_add(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False,
                                    help="Folder of <Composer>/ subfolders of MIDI files and scores to add."),
    labels: Labels = LABELS_OPT,
    index: Path | None = INDEX_OPT,
    workers: int = typer.Option(0, "--workers", min=0, show_default=False,
                                help="Processes reading and rendering files [default: one per core]."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Render cache [default: as for build]."),
    as_json: bool = typer.Option(False, "--json", help="Print what was added as JSON."),
) -> None:
    """Add tracks (a new composer, say) to an index, embedded with its own model."""
    from ..build.edit import add_tracks

    with domain_errors(as_json, data_dir), progress_bars(not as_json) as progress:
        rep = add_tracks(index_dir(index), data_dir, cache_dir, workers, progress, labels.value)
    _print_edit(rep, as_json)


@index_app.command("remove")
def index_remove(
    index: Path | None = INDEX_OPT,
    composer: str | None = typer.Option(None, "--composer", help="Remove every track by this composer."),
    track: str | None = typer.Option(None, "--track", help="Remove this track (its path in the index)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove a composer's tracks, or one track, from an index."""
    from ..build.edit import remove_tracks

    with domain_errors(as_json, index):
        rep = remove_tracks(index_dir(index), composer, track)
    _print_edit(rep, as_json)


@index_app.command("info")
def index_info(index: Path | None = INDEX_OPT,
               as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON.")) -> None:
    """Show what an index holds: composers, tracks, clips, settings, threshold."""
    from ..index.store import load_store

    with domain_errors(as_json, index):
        store = load_store(index_dir(index))
    if as_json:
        echo_json(store.manifest.as_dict())
        return
    from .display import print_index_info
    print_index_info(out, store)
