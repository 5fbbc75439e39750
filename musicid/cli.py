"""The musicid command line: thin commands over the library; heavy imports happen inside them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .choices import Baseline, Classifier, IndexKind, NoveltyMethod, Representation
from .corpus import DEFAULT_COMPOSERS
from .errors import MusicIdError

# rich_markup_mode=None: click's plain usage errors ("Error: Invalid value for '--features': ..."), one line
# a script can read, instead of a boxed panel
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Tell who composed a MIDI file, or that it is by nobody the index knows.")
index_app = typer.Typer(no_args_is_help=True, help="Build and inspect an index.")
app.add_typer(index_app, name="index")
corpus_app = typer.Typer(no_args_is_help=True, help="A starter corpus from music21's bundled scores.")
app.add_typer(corpus_app, name="corpus")
embedder_app = typer.Typer(no_args_is_help=True, help="Train a general embedder once, to enrol any folder with.")
app.add_typer(embedder_app, name="embedder")

out = Console()
err = Console(stderr=True)

STAGES = {"export": "Exporting scores", "render": "Preparing tracks", "train": "Training embedder",
          "embed": "Embedding clips", "evaluate": "Folds and LOCO splits"}
INDEX_OPT = typer.Option(None, "--index", "-i",
                         help="Index directory [default: $MUSICID_INDEX or ./musicid-index].")


def _fail(message: str, code: int = 1, as_json: bool = False, path: Path | None = None,
          kind: str = "UsageError") -> None:
    """One red line on stderr and exit code; with as_json also {"error": {path, kind, message}} on
    stdout, so a script that asked for JSON always gets JSON."""
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    if as_json:
        _echo_json({"error": {"path": str(path) if path else None, "kind": kind, "message": message}})
    raise typer.Exit(code)


@contextmanager
def _errors(as_json: bool = False, path: Path | None = None) -> Iterator[None]:
    """Domain errors become one red line and exit 1 (and a JSON error object with as_json);
    Ctrl-C exits 130 without a traceback."""
    try:
        yield
    except MusicIdError as e:
        _fail(str(e), as_json=as_json, path=path, kind=type(e).__name__)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Callable[[str, int, int], None] | None]:
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


def _index_dir(index: Path | None) -> Path:
    from .index_store import default_index_dir
    return index or default_index_dir()


def _echo_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


FEATURES_OPT = typer.Option(Representation.pianoroll, "--features",
                            help="What the embedder is fed: pianoroll (the notes straight from the MIDI, no "
                                 "rendering; the best on docs/RESULTS.md's benchmark), audio (log-mel of the "
                                 "FluidSynth rendering: hears instrumentation too) or family-rolls (the piano roll "
                                 "once per instrument family: keys, strings, voices, winds).")
PITCH_SHIFT_OPT = typer.Option(2, "--pitch-shift", min=0,
                               help="Training augmentation: shift each batch by up to this many rows "
                                    "(mel bins, or semitones with a piano roll).")
CLASSIFIER_OPT = typer.Option(Classifier.auto, "--classifier",
                              help="How a track's composer is chosen: knn (its clips' nearest indexed clips vote), "
                                   "linear (a class-balanced linear probe on the indexed clips), or auto: knn "
                                   "with audio, linear with piano rolls (docs/RESULTS.md).")
NOVELTY_OPT = typer.Option(NoveltyMethod.fused, "--novelty",
                           help="The novelty score: track-knn (distance from the track's mean embedding to the "
                                "nearest indexed track's), symbolic-knn (the same for its symbolic features: "
                                "intervals, chords, voices, rhythm), fused (the larger of those two as robust "
                                "z-scores on held-out known tracks), clip-knn (its clips to their k nearest "
                                "indexed clips) or spectral-knn (the same in spectral statistics); "
                                "docs/RESULTS.md compares them.")
# the flags of musicid 0.1, hidden, for one release
LEGACY_NAMING_OPT = typer.Option(None, "--naming", hidden=True, help="Old name of --classifier (vote, head).")
LEGACY_VIEW_OPT = typer.Option(None, "--novelty-view", hidden=True, help="Old name of --novelty.")


def _legacy(new: str, old: str | None, convert: Callable[[str], str]) -> str:
    """The value of a renamed option: the old flag's (translated) where given, else the new one's."""
    if old is None:
        return new
    try:
        return convert(old)
    except ValueError as e:
        _fail(str(e), 2)
        raise  # unreachable: _fail exits


def _options(features: Representation, classifier: Classifier, naming: str | None, novelty: NoveltyMethod,
             novelty_view: str | None, **flags: Any) -> Any:
    """BuildOptions from the flags index build and eval share (indexer.build_options)."""
    from .indexer import build_options
    from .manifest import classifier_name
    from .novelty import method_name

    return build_options(features.value, _legacy(classifier.value, naming, classifier_name),
                         _legacy(novelty.value, novelty_view, method_name), **flags)


@index_app.command("build")
def index_build(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder of <Composer>/*.mid subfolders."),
    out_dir: Path | None = typer.Option(None, "--out", "-o",
                                        help="Index directory to write [default: ./musicid-index]."),
    soundfont: Path | None = typer.Option(None, "--soundfont",
                                          help="SoundFont (.sf2) [default: TimGM6mb.sf2 from pretty_midi]."),
    model: Path | None = typer.Option(None, "--model",
                                      help="Enrol with this embedder checkpoint (e.g. from musicid embedder "
                                           "train) instead of training one."),
    fine_tune: bool = typer.Option(False, "--fine-tune",
                                   help="With --model: go on training it on this folder's composers."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs [default: 12]."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1,
                                               help="Batches per epoch [default: 40]."),
    group_by: str | None = typer.Option(None, "--group-by",
                                        help="Regex on file names whose first group names the work."),
    workers: int = typer.Option(0, "--workers", min=0, help="Render processes [default: one per core]."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir",
                                          help="Render cache [default: $MUSICID_CACHE or ~/.cache/musicid]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the render cache."),
    features: Representation = FEATURES_OPT,
    classifier: Classifier = CLASSIFIER_OPT,
    novelty: NoveltyMethod = NOVELTY_OPT,
    pitch_shift: int = PITCH_SHIFT_OPT,
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
    """Render, train the embedder, embed every clip and write the index."""
    from .indexer import build_index

    with _errors(as_json, data_dir):
        opts = _options(features, classifier, naming, novelty, novelty_view, index_kind=index_type.value,
                        group_by=group_by, soundfont=soundfont, model=model, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, pitch_shift=pitch_shift, cache_dir=cache_dir,
                        no_cache=no_cache, workers=workers, ray_address=ray_address, fine_tune=fine_tune)
        with _progress(not as_json) as progress:
            report = build_index(data_dir, _index_dir(out_dir), opts, progress)
    if as_json:
        from dataclasses import asdict
        _echo_json(asdict(report))
        return
    from .display import print_build_report
    print_build_report(out, report)


def _print_edit(rep: Any, as_json: bool) -> None:
    if as_json:
        _echo_json(rep.as_dict())
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
                                    help="Folder of <Composer>/*.mid subfolders to add."),
    index: Path | None = INDEX_OPT,
    workers: int = typer.Option(0, "--workers", min=0, help="Render processes [default: one per core]."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Render cache [default: as for build]."),
    as_json: bool = typer.Option(False, "--json", help="Print what was added as JSON."),
) -> None:
    """Add tracks (a new composer, say) to an index, embedded with its own model."""
    from .index_edit import add_tracks

    with _errors(as_json, data_dir), _progress(not as_json) as progress:
        rep = add_tracks(_index_dir(index), data_dir, cache_dir, workers, progress)
    _print_edit(rep, as_json)


@index_app.command("remove")
def index_remove(
    index: Path | None = INDEX_OPT,
    composer: str | None = typer.Option(None, "--composer", help="Remove every track by this composer."),
    track: str | None = typer.Option(None, "--track", help="Remove this track (its path in the index)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove a composer's tracks, or one track, from an index."""
    from .index_edit import remove_tracks

    with _errors(as_json, index):
        rep = remove_tracks(_index_dir(index), composer, track)
    _print_edit(rep, as_json)


@index_app.command("info")
def index_info(index: Path | None = INDEX_OPT,
               as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON.")) -> None:
    """Show what an index holds: composers, tracks, clips, settings, threshold."""
    from .index_store import load_store

    with _errors(as_json, index):
        store = load_store(_index_dir(index))
    if as_json:
        _echo_json(store.manifest.as_dict())
        return
    from .display import print_index_info
    print_index_info(out, store)


@app.command("query")
def query(
    track: Path = typer.Argument(..., help="MIDI file to identify."),
    index: Path | None = INDEX_OPT,
    k: int = typer.Option(10, "-k", min=1, help="Neighbours per clip in the vote."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Name the composer of one MIDI file, with confidence and novelty."""
    from .query import QueryEngine

    with _errors(as_json, track):
        result = QueryEngine.open(_index_dir(index)).query(track, k)
    if as_json:
        _echo_json(result.as_dict())
        return
    from .display import print_query
    print_query(out, result)


@app.command("report")
def report(
    test_dir: Path = typer.Argument(..., help="Folder (or file) of MIDI files to score."),
    novel: bool = typer.Option(False, "--novel", help="Rank by novelty score, most novel first."),
    index: Path | None = INDEX_OPT,
    csv: Path | None = typer.Option(None, "--csv", help="Also write the table as CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    workers: int = typer.Option(0, "--workers", min=0, help="Render processes [default: one per core]."),
) -> None:
    """Score every MIDI file in a folder: composer, confidence, novelty, flagged."""
    from .display import print_report, write_csv
    from .query import QueryEngine, report_folder

    with _errors(as_json, test_dir):
        engine = QueryEngine.open(_index_dir(index))
        with _progress(not as_json) as progress:
            results, failures = report_folder(engine, test_dir, novel, workers, progress)
        if csv:
            write_csv(csv, results, failures)
    if as_json:
        _echo_json({"results": [r.as_dict() for r in results],
                    "failures": [{"path": str(f.path), "kind": f.kind, "reason": f.reason} for f in failures]})
    else:
        print_report(out, results, failures, novel)
    if not results:
        raise typer.Exit(1)


@corpus_app.command("export")
def corpus_export(
    out_dir: Path = typer.Argument(..., help="Folder to write <Composer>/<work>.mid into."),
    composers: str = typer.Option(",".join(DEFAULT_COMPOSERS), "--composers",
                                  help="Comma-separated music21 corpus composers."),
    max_works: int = typer.Option(40, "--max-works", min=1, help="At most this many works per composer."),
    workers: int = typer.Option(0, "--workers", min=0, help="Parse processes [default: one per core]."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Export a starter corpus from music21's bundled scores, in the layout index build reads."""
    from .corpus import export_corpus

    with _errors(as_json, out_dir), _progress(not as_json) as progress:
        rep = export_corpus(out_dir, [c.strip() for c in composers.split(",") if c.strip()],
                            max_works, workers, progress)
    if as_json:
        _echo_json(rep.as_dict())
        return
    for work, reason in rep.failures:
        out.print(f"  skipped {work}: {reason}", highlight=False, soft_wrap=True)
    total = sum(rep.written.values())
    out.print(f"{total} works in {rep.out} ({', '.join(f'{c} {n}' for c, n in rep.written.items())}); "
              f"{rep.reused} already there, {len(rep.failures)} skipped", highlight=False, soft_wrap=True)


@app.command("eval")
def eval_cmd(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder of <Composer>/*.mid subfolders."),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-validation folds, grouped by work."),
    out_dir: Path = typer.Option(Path("eval-results"), "--out", "-o", help="Where eval.json and the PNGs go."),
    group_by: str | None = typer.Option(None, "--group-by", help="Regex whose first group names the work."),
    loco: bool = typer.Option(True, "--loco/--no-loco", help="Leave-one-composer-out novelty figures."),
    baseline: Baseline | None = typer.Option(None, "--baseline",
                                             help="Also run this method on the same splits: published (the "
                                                  "published attempt at the challenge set)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs per fold [default: 12]."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1, help="Batches per epoch."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Render and model cache."),
    features: Representation = FEATURES_OPT,
    classifier: Classifier = CLASSIFIER_OPT,
    novelty: NoveltyMethod = NOVELTY_OPT,
    pitch_shift: int = PITCH_SHIFT_OPT,
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0,
                                  help="Draws of whole works for the 95% intervals; 0: no intervals."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout."),
    enrol: Path | None = typer.Option(None, "--enrol", exists=True, file_okay=False,
                                      help="Cross-collection protocol: enrol this folder's composers with --model "
                                           "(no training) and query DATA_DIR against them: its tracks by "
                                           "enrolled composers are known, all others novel."),
    model: Path | None = typer.Option(None, "--model", exists=True, dir_okay=False,
                                      help="The embedder for --enrol (from musicid embedder train, trained "
                                           "without DATA_DIR)."),
    naming: str | None = LEGACY_NAMING_OPT,
    novelty_view: str | None = LEGACY_VIEW_OPT,
) -> None:
    """Cross-validate by work (both classifiers) and measure leave-one-composer-out novelty (every method);
    or, with --enrol and --model, the cross-collection protocol."""
    from .evaluate import EvalOptions, evaluate, save_results

    if enrol is not None or model is not None:
        _cross_collection(data_dir, enrol, model, out_dir, bootstrap, cache_dir, as_json)
        return
    with _errors(as_json, data_dir):
        b = _options(features, classifier, naming, novelty, novelty_view, group_by=group_by, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, pitch_shift=pitch_shift, cache_dir=cache_dir)
        options = EvalOptions(folds=folds, loco=loco, baseline=baseline.value if baseline else None,
                              bootstrap=bootstrap, build=b)
        with _progress(not as_json) as progress:
            result = evaluate(data_dir, options, progress)
        paths = save_results(result, out_dir)
    if as_json:
        _echo_json(result.summary)
        return
    from .display import print_eval
    print_eval(out, result.summary, paths)


@embedder_app.command("train")
def embedder_train(
    data_dirs: list[Path] = typer.Argument(..., exists=True, file_okay=False,
                                           help="Labelled collections, each <root>/<Composer>/... (ASAP's "
                                                "Composer/Work/Piece layout too)."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (weights only)."),
    features: Representation = FEATURES_OPT,
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs [default: 12]."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1,
                                               help="Batches per epoch [default: 40]."),
    composers_per_batch: int = typer.Option(4, "--composers-per-batch", "-P", min=2,
                                            help="P: composers in each batch."),
    clips_per_composer: int = typer.Option(12, "--clips-per-composer", "-K", min=2, help="K: clips per composer."),
    pitch_shift: int = PITCH_SHIFT_OPT,
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Render and model cache."),
    workers: int = typer.Option(0, "--workers", min=0, help="Render processes [default: one per core]."),
    as_json: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
) -> None:
    """Train one embedder on every composer of every collection given; then enrol any folder with
    `musicid index build DIR --model OUT` (no training)."""
    from dataclasses import replace

    from .indexer import build_options
    from .pretrain import train_general_embedder

    with _errors(as_json, data_dirs[0]):
        b = build_options(features.value, epochs=epochs, steps_per_epoch=steps_per_epoch, pitch_shift=pitch_shift,
                          cache_dir=cache_dir, workers=workers)
        b = replace(b, train=replace(b.train, composers_per_batch=composers_per_batch,
                                     clips_per_composer=clips_per_composer))
        with _progress(not as_json) as progress:
            rep = train_general_embedder(data_dirs, out_path, b, progress)
    if as_json:
        _echo_json(rep.as_dict())
        return
    for path, reason in rep.failures:
        out.print(f"  skipped {path}: {reason}", highlight=False, soft_wrap=True)
    out.print(f"wrote {rep.out}: {len(rep.composers)} composers, {sum(rep.tracks_per_composer.values())} tracks "
              f"from {len(rep.collections)} collection(s) in {rep.seconds / 60:.1f} min"
              + (" (the model cache held it)" if rep.from_cache else ""), highlight=False, soft_wrap=True)
    out.print(f"licence of the weights: {rep.licence}", highlight=False, soft_wrap=True)


def _cross_collection(query_dir: Path, enrol: Path | None, model: Path | None, out_dir: Path, bootstrap: int,
                      cache_dir: Path | None, as_json: bool) -> None:
    from .atomic import write_json
    from .cross_collection import evaluate_cross_collection
    from .indexer import build_options

    if enrol is None or model is None:
        _fail("the cross-collection protocol needs both --enrol DIR and --model MODEL", 2, as_json)
        return
    with _errors(as_json, query_dir), _progress(not as_json) as progress:
        result = evaluate_cross_collection(model, enrol, query_dir, build_options(cache_dir=cache_dir), bootstrap,
                                           progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "eval.json", result)
    if as_json:
        _echo_json(result)
        return
    from .display import print_cross_collection
    print_cross_collection(out, result, out_dir / "eval.json")


@app.command("render")
def render_cmd(
    track: Path = typer.Argument(..., help="MIDI file."),
    wav: Path = typer.Argument(..., help="WAV file to write."),
    soundfont: Path | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2)."),
    seconds: float | None = typer.Option(None, "--seconds", min=0.1, help="Render at most this much [default: 600]."),
) -> None:
    """Render a MIDI file to a WAV, exactly as the model hears it."""
    from .midi import load_midi
    from .render import RenderSettings, render, write_wav

    with _errors():
        settings = RenderSettings(soundfont=str(soundfont) if soundfont else "")
        audio = render(load_midi(track), settings, track.name, max_seconds=seconds)
        write_wav(wav, audio, settings.sample_rate)
    out.print(f"wrote {wav} ({len(audio) / settings.sample_rate:.1f} s, {settings.sample_rate} Hz mono)",
              highlight=False, soft_wrap=True)


@app.command("serve")
def serve_cmd(
    index: Path | None = INDEX_OPT,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; other than loopback needs --token."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    token: str | None = typer.Option(None, "--token", envvar="MUSICID_TOKEN",
                                     help="Bearer token that allows POST /tracks and DELETE /tracks/ID."),
    workers: int = typer.Option(0, "--workers", min=0, help="Requests served in parallel [default: one per core]."),
) -> None:
    """Serve the index over HTTP (API docs at /docs) with a page at / to hear why."""
    from .serve import ServeConfig, serve

    with _errors():
        serve(ServeConfig(_index_dir(index), token=token, workers=workers), host, port)


def optional_values(argv: list[str], options: tuple[str, ...] = ("--ray",), default: str = "local") -> list[str]:
    """Let an option take an optional value, which typer cannot express: `--ray` alone (last, or
    followed by another option) means `--ray local`."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg in options and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(default)
    return out


def main() -> None:
    app(args=optional_values(sys.argv[1:]))


if __name__ == "__main__":
    main()
