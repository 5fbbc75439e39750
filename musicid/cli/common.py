"""What every command shares: the Typer apps, the consoles, one-line errors, progress bars, JSON
output, and the options index build and eval have in common."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..choices import Classifier, Labels, NoveltyMethod, Representation, ThresholdRule
from ..errors import MusicIdError

# rich_markup_mode=None: click's plain usage errors ("Error: Invalid value for '--features': ..."), one line
# a script can read, instead of a boxed panel
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Tell who composed a MIDI file or score, or that it is by nobody the index knows.")
index_app = typer.Typer(no_args_is_help=True, help="Build and inspect an index.")
app.add_typer(index_app, name="index")
corpus_app = typer.Typer(no_args_is_help=True, help="A starter corpus from music21's bundled scores.")
app.add_typer(corpus_app, name="corpus")
embedder_app = typer.Typer(no_args_is_help=True, help="Train a general embedder once, to enrol any folder with.")
app.add_typer(embedder_app, name="embedder")

# piped (a file, another program), Rich would wrap tables at 80 columns: give them room unless COLUMNS says
PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
out = Console(width=PIPED_WIDTH)
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        out.print(f"musicid {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print musicid's version and exit.")) -> None:
    """Tell who composed a MIDI file or score, or that it is by nobody the index knows."""

STAGES = {"export": "Exporting scores", "render": "Preparing tracks", "train": "Training embedder",
          "embed": "Embedding clips", "evaluate": "Folds and LOCO splits"}
INDEX_OPT = typer.Option(None, "--index", "-i",
                         help="Index directory [default: $MUSICID_INDEX or ./musicid-index].")


def fail(message: str, code: int = 1, as_json: bool = False, path: Path | None = None,
          kind: str = "UsageError") -> NoReturn:
    """One red line on stderr and exit code; with as_json also {"error": {path, kind, message}} on
    stdout, so a script that asked for JSON always gets JSON."""
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    if as_json:
        echo_json({"error": {"path": str(path) if path else None, "kind": kind, "message": message}})
    raise typer.Exit(code)


@contextmanager
def domain_errors(as_json: bool = False, path: Path | None = None) -> Iterator[None]:
    """Domain errors become one red line and exit 1 (and a JSON error object with as_json);
    Ctrl-C exits 130 without a traceback."""
    try:
        yield
    except MusicIdError as e:
        fail(str(e), as_json=as_json, path=Path(e.path) if e.path else path, kind=type(e).__name__)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Callable[[str, int, int], None] | None]:
    if not enabled:
        yield None
        return
    bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def hidden(option: Any) -> Any:
    """A copy of a shared option that --help does not list: a training knob for experiments, where the
    command's everyday use does not need it (`embedder train` lists them; docs/GUIDE.md documents all)."""
    import copy

    quiet = copy.copy(option)
    quiet.hidden = True
    return quiet


def index_dir(index: Path | None) -> Path:
    from ..index.store import default_index_dir

    return index or default_index_dir()


def echo_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


FEATURES_OPT = typer.Option(Representation.pianoroll, "--features",
                            help="What the embedder reads: pianoroll (the notes), audio (log-mel of the FluidSynth "
                                 "rendering) or family-rolls (a roll per instrument family); audio and family-rolls "
                                 "train per index (docs/GUIDE.md).")
RANDOM_PROGRAMS_OPT = typer.Option(False, "--random-programs",
                                   help="With --features audio: render each channel with a random General MIDI "
                                        "instrument (an experiment; docs/RESULTS.md).")
P_OPT = typer.Option(4, "--composers-per-batch", "-P", min=2, help="P: composers in each training batch.")
K_OPT = typer.Option(12, "--clips-per-composer", "-K", min=2, help="K: clips per composer in each batch.")
SEED_OPT = typer.Option(0, "--seed", min=0,
                        help="Training seed, when an embedder is trained (eval's folds do not change with it).")
PITCH_SHIFT_OPT = typer.Option(2, "--pitch-shift", min=0,
                               help="Training augmentation: shift each batch by up to this many semitones (mel bins "
                                    "with audio).")
TIME_STRETCH_OPT = typer.Option(0.0, "--time-stretch", min=0.0, max=1.0,
                                 help='Training augmentation: each crop up to 1 + this times slower or faster.')
COSFACE_OPT = typer.Option(0.0, "--cosface", min=0.0,
                            help="Training: add this weight times a CosFace term over the training composers to the "
                                 "triplet loss.")
BALANCE_OPT = typer.Option(False, "--balance-collections",
                           help="Training on several collections: deal each composer's clips in a batch evenly over "
                                "its collections (or --domains).")
CLASSIFIER_OPT = typer.Option(Classifier.auto, "--classifier",
                              help="How the composer is chosen: knn vote, linear probe, fused (probe and the notes' "
                                   "statistics), or auto (docs/GUIDE.md).")
NOVELTY_OPT = typer.Option(NoveltyMethod.fused, "--novelty",
                           help="The novelty score; fused combines the embedding's and the notes' distances "
                                "(docs/DESIGN.md compares them all).")
THRESHOLD_OPT = typer.Option(ThresholdRule.known_quantile, "--threshold-rule",
                             help="Where the novelty threshold goes: above 95% of held-out known works, or equal-error"
                                  " against the background (docs/GUIDE.md).")
LABELS_OPT = typer.Option(Labels.folders, "--labels",
                          help="Composer of each file: folders (<Composer>/ subfolders) or metadata (the composer a "
                               "score names).")
# the flags of musicid 0.1, hidden, for one release
LEGACY_NAMING_OPT = typer.Option(None, "--naming", hidden=True, help="Old name of --classifier (vote, head).")
LEGACY_VIEW_OPT = typer.Option(None, "--novelty-view", hidden=True, help="Old name of --novelty.")


def legacy_name(new: str, old: str | None, convert: Callable[[str], str]) -> str:
    """The value of a renamed option: the old flag's (translated) where given, else the new one's."""
    if old is None:
        return new
    try:
        return convert(old)
    except ValueError as e:
        fail(str(e), 2)


def build_flags(features: Representation, classifier: Classifier, naming: str | None, novelty: NoveltyMethod,
                novelty_view: str | None, **flags: Any) -> Any:
    """BuildOptions from the flags index build and eval share (build_options, below)."""
    from ..index.calibration import method_name
    from ..index.manifest import classifier_name

    return build_options(features.value, legacy_name(classifier.value, naming, classifier_name),
                         legacy_name(novelty.value, novelty_view, method_name), **flags)


def build_options(representation: str = "pianoroll", classifier: str = "auto", novelty: str = "fused",
                  index_kind: str = "auto", group_by: str | None = None, soundfont: Path | None = None,
                  model: Path | None = None, epochs: int | None = None, steps_per_epoch: int | None = None,
                  pitch_shift: int = 2, time_stretch: float = 0.0, cosface: float = 0.0,
                  cache_dir: Path | None = None, no_cache: bool = False, workers: int = 0,
                  ray_address: str | None = None, fine_tune: bool = False, shipped: bool = False,
                  random_programs: bool = False, seed: int = 0, threshold_rule: str = "known-quantile",
                  labels: str = "folders") -> Any:
    """build.corpus.BuildOptions from the command line's flags (index build, eval and embedder train share them).

    shipped: without `model`, start from the shipped embedder where it serves this representation
    (shipped.default_model), as `index build` does unless told --train.

    seed: the training seed (TrainSettings.seed), not the seed of eval's folds (BuildOptions.seed).

    ray_address: None (no Ray), "local" (start a local instance) or HOST:PORT / auto. ValueError for
    an unknown representation, classifier, novelty method or index kind."""
    from dataclasses import replace

    from ..build.corpus import BuildOptions
    from ..features.cache import default_cache_dir
    from ..features.clips import FeatureSettings, family_rolls_settings, pianoroll_settings
    from ..index.calibration import NoveltySettings
    from ..io.render import RenderSettings
    from ..model.training import TrainSettings

    make = {"pianoroll": pianoroll_settings, "family-rolls": family_rolls_settings, "audio": FeatureSettings}
    if representation not in make:
        raise ValueError(f"unknown input representation {representation!r} ({', '.join(make)})")
    feature_settings = make[representation]()
    if model is None and shipped:
        from ..model.shipped import default_model

        model = default_model(feature_settings.as_dict())
    train = TrainSettings()
    train = replace(train, epochs=epochs or train.epochs, steps_per_epoch=steps_per_epoch or train.steps_per_epoch,
                    pitch_shift=pitch_shift, time_stretch=time_stretch, cosface=cosface, seed=seed)
    return BuildOptions(render=RenderSettings(soundfont=str(soundfont.resolve()) if soundfont else "",
                                              random_programs=random_programs),
                        features=feature_settings, train=train, model_path=model, fine_tune=fine_tune,
                        novelty=NoveltySettings(novelty, threshold_rule=threshold_rule), classifier=classifier,
                        index_kind=index_kind, group_by=group_by, labels=labels,
                        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
                        workers=workers, ray=ray_address is not None,
                        ray_address=None if ray_address in (None, "local") else ray_address)
