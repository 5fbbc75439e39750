"""`musicid eval` (its protocols) and `musicid embedder train`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..choices import Baseline, Classifier, NoveltyMethod, Representation, ThresholdRule
from .common import (
    BALANCE_OPT,
    CLASSIFIER_OPT,
    COSFACE_OPT,
    FEATURES_OPT,
    K_OPT,
    LEGACY_NAMING_OPT,
    LEGACY_VIEW_OPT,
    NOVELTY_OPT,
    P_OPT,
    PITCH_SHIFT_OPT,
    RANDOM_PROGRAMS_OPT,
    SEED_OPT,
    THRESHOLD_OPT,
    TIME_STRETCH_OPT,
    app,
    build_flags,
    build_options,
    domain_errors,
    echo_json,
    embedder_app,
    fail,
    hidden,
    out,
    progress_bars,
)

if TYPE_CHECKING:
    from ..build.corpus import BuildOptions


@app.command("eval")
def eval_cmd(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False,
                                    help="Folder of <Composer>/ subfolders of MIDI files and scores."),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-validation folds, grouped by work."),
    out_dir: Path = typer.Option(Path("eval-results"), "--out", "-o", help="Where eval.json and the PNGs go."),
    group_by: str | None = typer.Option(None, "--group-by", help="Regex whose first group names the work."),
    loco: bool = typer.Option(True, "--loco/--no-loco", help="Leave-one-composer-out novelty figures."),
    baseline: Baseline | None = typer.Option(None, "--baseline",
                                             help="Also run this method on the same splits: published (the "
                                                  "published attempt at the challenge set)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, hidden=True,
                                      help="Training epochs per fold [default: 12]."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1, hidden=True,
                                               help="Batches per epoch."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Render and model cache."),
    features: Representation = FEATURES_OPT,
    classifier: Classifier = CLASSIFIER_OPT,
    novelty: NoveltyMethod = NOVELTY_OPT,
    threshold_rule: ThresholdRule = THRESHOLD_OPT,
    pitch_shift: int = hidden(PITCH_SHIFT_OPT),
    time_stretch: float = hidden(TIME_STRETCH_OPT),
    cosface: float = hidden(COSFACE_OPT),
    balance_collections: bool = hidden(BALANCE_OPT),
    composers_per_batch: int = hidden(P_OPT),
    clips_per_composer: int = hidden(K_OPT),
    random_programs: bool = hidden(RANDOM_PROGRAMS_OPT),
    seed: int = hidden(SEED_OPT),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0,
                                  help="Draws of whole works for the 95% intervals; 0: no intervals."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout."),
    enrol: Path | None = typer.Option(None, "--enrol", exists=True, file_okay=False,
                                      help="Cross-collection protocol: enrol this folder with --model, query "
                                           "DATA_DIR against it."),
    model: Path | None = typer.Option(None, "--model", exists=True, dir_okay=False,
                                      help="The embedder for --enrol or --protocol [default with --protocol: the "
                                           "shipped one; it trained on every handed composer, so on the handed "
                                           "collections give its measured twin (bench/train_shipped.sh)]."),
    train_on: list[Path] | None = typer.Option(None, "--train-on", exists=True, file_okay=False,
                                               help="General-embedder protocol: train on this collection "
                                                    "(repeatable), less DATA_DIR's pieces."),
    composer_groups: int | None = typer.Option(None, "--composer-groups", min=1,
                                               help="With --train-on: one model per group of left-out composers "
                                                    "[default: per composer]."),
    composers: str | None = typer.Option(None, "--composers",
                                         help="Evaluate only these composers (comma-separated folder names)."),
    min_works: int = typer.Option(0, "--min-works", min=0,
                                  help="Evaluate only the composers with at least this many works."),
    also_per_index: bool = typer.Option(False, "--also-per-index",
                                        help="With --train-on: also the per-index embedder on the same splits."),
    fine_tune: bool = typer.Option(False, "--fine-tune",
                                   help="Fine-tune each split's general embedder on its index, as index build "
                                        "--fine-tune does."),
    protocol_name: str = typer.Option("folds", "--protocol",
                                      help="folds, or the many-composer protocols (many-unseen, leave-genres-out, "
                                           "many-composers: those two; enrolment-size) on the reserve "
                                           "composers of DATA_DIR's catalogued collections (docs/GUIDE.md)."),
    draws: int = typer.Option(5, "--draws", min=1,
                              help="many-unseen (and many-composers' many-unseen half): draws of indexed and "
                                   "novel composers; enrolment-size: orders of each composer's works, at most 3; "
                                   "leave-genres-out: one split."),
    naming: str | None = LEGACY_NAMING_OPT,
    novelty_view: str | None = LEGACY_VIEW_OPT,
) -> None:
    """Cross-validate by work (both classifiers) and measure leave-one-composer-out novelty (every method);
    with --train-on, using a general embedder trained on other collections; with --enrol and --model,
    the cross-collection protocol; with --protocol, the many-composer protocols."""
    from ..evaluation.evaluate import EvalOptions, evaluate, save_results

    with domain_errors(as_json, data_dir):  # index build's flags: both protocols build indexes with them
        b = build_flags(features, classifier, naming, novelty, novelty_view, group_by=group_by, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, pitch_shift=pitch_shift, time_stretch=time_stretch,
                        cosface=cosface, cache_dir=cache_dir, random_programs=random_programs, seed=seed,
                        threshold_rule=threshold_rule.value)
    if protocol_name != "folds":
        _many_composers(data_dir, protocol_name, model, out_dir, draws, bootstrap, b, as_json)
        return
    if enrol is not None or model is not None:
        if train_on:
            fail("--train-on and --enrol/--model are two protocols: give one", 2, as_json)
        _cross_collection(data_dir, enrol, model, out_dir, bootstrap, replace(b, fine_tune=fine_tune), as_json)
        return
    names = tuple(c.strip() for c in composers.split(",") if c.strip()) if composers else ()
    try:
        protocol = EvalOptions(composers=names, min_works=min_works, train_on=tuple(train_on or ()),
                               composer_groups=composer_groups, also_per_index=also_per_index,
                               fine_tune=fine_tune)
    except ValueError as e:
        fail(str(e), 2, as_json)
        return
    with domain_errors(as_json, data_dir):
        b = replace(b, train=replace(b.train, composers_per_batch=composers_per_batch,
                                     clips_per_composer=clips_per_composer,
                                     balance_collections=balance_collections))
        options = replace(protocol, folds=folds, loco=loco, baseline=baseline.value if baseline else None,
                          bootstrap=bootstrap, build=b)
        with progress_bars(not as_json) as progress:
            result = evaluate(data_dir, options, progress)
        paths = save_results(result, out_dir)
    if as_json:
        echo_json(result.summary)
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
    composers_per_batch: int = P_OPT,
    clips_per_composer: int = K_OPT,
    pitch_shift: int = PITCH_SHIFT_OPT,
    time_stretch: float = TIME_STRETCH_OPT,
    cosface: float = COSFACE_OPT,
    balance_collections: bool = BALANCE_OPT,
    domains: str = typer.Option("collection", "--domains",
                                help="What --balance-collections balances a composer's clips over: "
                                     "collection, or genre (from each collection's metadata.csv)."),
    spread_works: bool = typer.Option(False, "--spread-works",
                                      help="Draw a composer's clips in a batch from as many of its works "
                                           "as it has, so that positives are not the same piece."),
    composer_weighting: str = typer.Option("uniform", "--composer-weighting",
                                           help="How often a composer is drawn into a batch: uniform, or "
                                                "sqrt-works (in proportion to the square root of its works)."),
    voice_dropout: float = typer.Option(0.0, "--voice-dropout", min=0.0, max=1.0,
                                        help="Training augmentation (rolls): the chance a crop loses one voice, "
                                             "the r-th highest or lowest pitch sounding in each frame."),
    domain_adversary: float = typer.Option(0.0, "--domain-adversary", min=0.0,
                                           help="Training: a classifier of each clip's domain (--domains: "
                                                "collection or genre) on the embedding, its gradient reversed "
                                                "into the embedder with this weight (Ganin and Lempitsky, "
                                                "2015), so that the embedding stops carrying the domain."),
    width: int | None = typer.Option(None, "--width", min=4,
                                     help="Capacity: channels of the embedder's first convolution block, doubled "
                                          "at each of the next up to 8 times as many [default: 24]."),
    hold_out: Path | None = typer.Option(None, "--hold-out", exists=True, dir_okay=False,
                                         help="A file of composer names, one a line, kept out of training "
                                              "and of the background (the protocols' reserve)."),
    seed: int = SEED_OPT,
    random_programs: bool = RANDOM_PROGRAMS_OPT,
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Render and model cache."),
    workers: int = typer.Option(0, "--workers", min=0, show_default=False,
                                help="Render processes [default: one per core]."),
    as_json: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
) -> None:
    """Train one embedder on every composer of every collection given; then enrol any folder with
    `musicid index build DIR --model OUT` (no training)."""
    from ..build.pretrain import train_general_embedder

    with domain_errors(as_json, data_dirs[0]):
        b = build_options(features.value, epochs=epochs, steps_per_epoch=steps_per_epoch, pitch_shift=pitch_shift,
                          time_stretch=time_stretch, cosface=cosface, seed=seed,
                          cache_dir=cache_dir, workers=workers, random_programs=random_programs)
        try:
            b = replace(b, train=replace(b.train, composers_per_batch=composers_per_batch,
                                         clips_per_composer=clips_per_composer,
                                         balance_collections=balance_collections, domains=domains,
                                         spread_works=spread_works, composer_weighting=composer_weighting,
                                         voice_dropout=voice_dropout, domain_adversary=domain_adversary))
            if width is not None:
                b = replace(b, dims=replace(b.dims, width=width))
        except ValueError as e:
            fail(str(e), 2, as_json)
        held = [x.strip() for x in hold_out.read_text().splitlines() if x.strip()] if hold_out else []
        with progress_bars(not as_json) as progress:
            rep = train_general_embedder(data_dirs, out_path, b, progress, hold_out=held)
    if as_json:
        echo_json(rep.as_dict())
        return
    for path, reason in rep.failures:
        out.print(f"  skipped {path}: {reason}", highlight=False, soft_wrap=True)
    out.print(f"wrote {rep.out}: {len(rep.composers)} composers, {sum(rep.tracks_per_composer.values())} tracks "
              f"from {len(rep.collections)} collection(s) in {rep.seconds / 60:.1f} min"
              + (" (the model cache held it)" if rep.from_cache else ""), highlight=False, soft_wrap=True)
    out.print(f"licence of the weights: {rep.licence}", highlight=False, soft_wrap=True)


@embedder_app.command("info")
def embedder_info(
    model: Path | None = typer.Argument(None, exists=True, dir_okay=False,
                                        help="A checkpoint [default: the shipped embedder]."),
    as_json: bool = typer.Option(False, "--json", help="Print it as JSON."),
) -> None:
    """What an embedder was trained on, and the licence its weights carry (default: the shipped one)."""
    from ..model.shipped import describe_model
    from .display import NAMES_LISTED, name_list

    with domain_errors(as_json, model):
        d = describe_model(model)
    if as_json:
        echo_json(d)
        return
    composers = d.get("composers") or []
    rows = [("checkpoint", d["path"] + (" (shipped)" if d["shipped"] else "")),
            ("features", str(d.get("features", {}).get("representation", "?"))),
            *((("network", f"first block {d['dims']['width']} channels, {d['dims']['n_blocks']} blocks, "
                           f"{d['dims']['embed_dim']} dimensions"),) if d.get("dims") else ()),
            ("composers", f"{len(composers)}: {name_list(composers)}"
                          + (" (--json lists all)" if len(composers) > NAMES_LISTED else "")),
            *((f"  {c.get('path', '')}",
               f"{c.get('tracks')} tracks read, licence: {c.get('licence') or 'none declared'}")
              for c in d.get("collections", [])),
            *((("held out", f"{len(d['held_out_composers'])} composers, kept out of training and background "
                            "for the many-composer protocols (--json names them)"),)
              if d.get("held_out_composers") else ()),
            *((("genres", ", ".join(f"{g} {n}" for g, n in d["genres"].items()) + " tracks trained on"),)
              if d.get("genres") else ()),
            ("licence", str(d.get("licence") or "not recorded")),
            ("background", f"{d['background']['tracks']} tracks" if isinstance(d.get("background"), dict)
             and "tracks" in d["background"] else "none")]
    train = d.get("train") or {}
    if train:
        balanced = f"{train.get('domains', 'collection')}-balanced batches"
        extras = [name for name, on in ((balanced, train.get("balance_collections")),
                                        ("positives spread over works", train.get("spread_works")),
                                        ("composers drawn by sqrt(works)",
                                         train.get("composer_weighting") == "sqrt-works"),
                                        (f"pitch shift {train.get('pitch_shift')}", train.get("pitch_shift", 2) != 2),
                                        (f"CosFace {train.get('cosface')}", train.get("cosface")),
                                        (f"time stretch {train.get('time_stretch')}", train.get("time_stretch")),
                                        (f"voice dropout {train.get('voice_dropout')}", train.get("voice_dropout")),
                                        (f"{train.get('domains', 'collection')} adversary "
                                         f"{train.get('domain_adversary')}", train.get("domain_adversary")))
                  if on]
        rows.append(("recipe", ", ".join([f"P = {train.get('composers_per_batch')} composers x K = "
                                          f"{train.get('clips_per_composer')} clips, {train.get('mining')} triplets, "
                                          f"seed {train.get('seed')}", *extras])))
    report = d.get("train_report") or {}
    if report:
        rows.append(("training", f"{report.get('steps')} steps, {report.get('seconds', 0) / 60:.1f} min, "
                                 f"final loss {report.get('final_loss', 0):.3f}"))
    for k, v in rows:
        out.print(f"[b]{k:>12}[/b]  {v}", highlight=False, soft_wrap=True)


def _cross_collection(query_dir: Path, enrol: Path | None, model: Path | None, out_dir: Path, bootstrap: int,
                      options: BuildOptions, as_json: bool) -> None:
    """The cross-collection protocol with index build's flags (classifier, novelty, group-by, cache)."""
    from ..atomic import write_json
    from ..evaluation.cross_collection import evaluate_cross_collection

    if enrol is None or model is None:
        fail("the cross-collection protocol needs both --enrol DIR and --model MODEL", 2, as_json)
        return
    with domain_errors(as_json, query_dir), progress_bars(not as_json) as progress:
        result = evaluate_cross_collection(model, enrol, query_dir, options, bootstrap, progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "eval.json", result)
    if as_json:
        echo_json(result)
        return
    from .display import print_cross_collection
    print_cross_collection(out, result, out_dir / "eval.json")


MANY_COMPOSER_PROTOCOLS = {"many-unseen": ("many-unseen",), "leave-genres-out": ("leave-genres-out",),
                           "enrolment-size": ("enrolment-size",),
                           "many-composers": ("many-unseen", "leave-genres-out")}


def _many_composers(data_dir: Path, name: str, model: Path | None, out_dir: Path, draws: int, bootstrap: int,
                    b: BuildOptions, as_json: bool) -> None:
    """The many-composer protocols (evaluation/enrolment.py) with index build's flags; eval.json and a summary."""
    from ..atomic import write_json
    from ..evaluation.enrolment import evaluate_many_composers
    from ..model.shipped import default_model

    if name not in MANY_COMPOSER_PROTOCOLS:
        fail(f"unknown protocol {name!r} (folds, {', '.join(MANY_COMPOSER_PROTOCOLS)})", 2, as_json)
        return
    model = model or default_model(b.features.as_dict())
    if model is None:
        fail("this musicid carries no shipped embedder for these features: give --model", 2, as_json)
        return
    with domain_errors(as_json, data_dir):
        with progress_bars(not as_json) as progress:
            result = evaluate_many_composers(data_dir, model, MANY_COMPOSER_PROTOCOLS[name], b, draws=draws,
                                             bootstrap=bootstrap, progress=progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "eval.json", result)
    if as_json:
        echo_json(result)
        return
    for key in ("many_unseen", "leave_genres_out"):
        if key not in result:
            continue
        m = result[key]["mean"]
        out.print(f"{key.replace('_', ' ')} ({m['draws']} draw(s)): novelty AUROC {m['auroc']}, naming macro-F1 "
                  f"{m['macro_f1']}, flagged {m['flagged_known']} of known and {m['flagged_novel']} of novel tracks",
                  highlight=False, soft_wrap=True)
        by_genre = ", ".join(f"{g} {v}" for g, v in m["flagged_known_by_genre"].items())
        out.print(f"  known tracks flagged, by genre: {by_genre}", highlight=False, soft_wrap=True)
    for size, m in result.get("enrolment_size", {}).get("by_size", {}).items():
        out.print(f"enrolled from {size} work(s) each ({m['draws']} draw(s)): novelty AUROC {m['auroc']}, naming "
                  f"macro-F1 {m['macro_f1']}, flagged {m['flagged_known']} of known and {m['flagged_novel']} of "
                  "novel tracks", highlight=False, soft_wrap=True)
    out.print(f"wrote {out_dir / 'eval.json'} ({result['wall_seconds'] / 60:.1f} min)", highlight=False)
