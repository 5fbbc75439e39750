"""`musicid query`, `report`, `render`, `serve` and `corpus export`: using an index, and making a corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from ..choices import Judge
from ..io.corpus_export import DEFAULT_COMPOSERS
from .common import INDEX_OPT, app, corpus_app, domain_errors, echo_json, fail, index_dir, out, progress_bars


@app.command("query")
def query(
    track: Path = typer.Argument(..., dir_okay=False,
                                 help="MIDI file or score (.musicxml, .xml, .mxl, .krn) to identify; a folder: "
                                      "musicid report --novel FOLDER."),
    index: Path | None = INDEX_OPT,
    k: int = typer.Option(10, "-k", min=1, help="Neighbours per clip in the vote."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Name the composer of one MIDI file or score, with confidence and novelty."""
    from ..recognize.query import QueryEngine

    with domain_errors(as_json, track):
        result = QueryEngine.open(index_dir(index)).query(track, k)
    if as_json:
        echo_json(result.as_dict())
        return
    from .display import print_query
    print_query(out, result)


@app.command("report")
def report(
    test_dir: Path = typer.Argument(..., help="Folder (or file) of MIDI files and scores to score."),
    novel: bool = typer.Option(False, "--novel", help="Rank by novelty score, most novel first."),
    index: Path | None = INDEX_OPT,
    csv: Path | None = typer.Option(None, "--csv", help="Also write the table as CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    workers: int = typer.Option(0, "--workers", min=0, show_default=False,
                                help="Render processes [default: one per core]."),
    judge: Judge = typer.Option(Judge.fused, "--judge",
                                help="batch: judge novelty by the part of the fused score (embedding or notes) "
                                     "that sets this folder apart from known music more, where one does "
                                     "(docs/GUIDE.md)."),
    reference: Path | None = typer.Option(None, "--reference", exists=True, file_okay=False,
                                          help="<Composer>/ subfolders of files from the same source as "
                                               "TEST_DIR: those by indexed composers place the novelty "
                                               "threshold (and --judge batch's reference) instead of the "
                                               "index's held-out works; at least 19 (docs/GUIDE.md)."),
) -> None:
    """Score every MIDI file and score in a folder: composer, confidence, novelty, flagged."""
    from ..recognize.batch_judge import judge_report, reference_works
    from ..recognize.query import QueryEngine, rank_by_novelty, report_folder
    from .display import print_judgement, print_report, write_csv

    with domain_errors(as_json, test_dir):
        engine = QueryEngine.open(index_dir(index))
        with progress_bars(not as_json) as progress:
            results, failures = report_folder(engine, test_dir, novel, workers, progress)
            known = reference_works(engine, reference, workers, progress) if reference else []
        judgement = None
        if (judge == Judge.batch or reference) and results:
            results, judgement = judge_report(results, engine.store.manifest, judge == Judge.batch,
                                              known)  # in report_folder's order
            if novel:
                results = rank_by_novelty(results)  # ...now by this judgement's novelty
        if csv:
            write_csv(csv, results, failures)
    if as_json:
        echo_json({"results": [r.as_dict() for r in results],
                    "failures": [{"path": str(f.path), "kind": f.kind, "reason": f.reason} for f in failures],
                    **({"judgement": judgement.as_dict()} if judgement else {})})
    else:
        print_report(out, results, failures, novel)
        if judgement:
            print_judgement(out, judgement)
    if not results:
        raise typer.Exit(1)


@corpus_app.command("export")
def corpus_export(
    out_dir: Path = typer.Argument(..., help="Folder to write <Composer>/<work>.mid into."),
    composers: str = typer.Option(",".join(DEFAULT_COMPOSERS), "--composers",
                                  help="Comma-separated music21 corpus composers."),
    max_works: int = typer.Option(40, "--max-works", min=1, help="At most this many works per composer."),
    workers: int = typer.Option(0, "--workers", min=0, show_default=False,
                                help="Parse processes [default: one per core]."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Export a starter corpus from music21's bundled scores, in the layout index build reads."""
    from ..io.corpus_export import export_corpus

    with domain_errors(as_json, out_dir), progress_bars(not as_json) as progress:
        rep = export_corpus(out_dir, [c.strip() for c in composers.split(",") if c.strip()],
                            max_works, workers, progress)
    if as_json:
        echo_json(rep.as_dict())
        return
    for work, reason in rep.failures:
        out.print(f"  skipped {work}: {reason}", highlight=False, soft_wrap=True)
    total = sum(rep.written.values())
    out.print(f"{total} works in {rep.out} ({', '.join(f'{c} {n}' for c, n in rep.written.items())}); "
              f"{rep.reused} already there, {len(rep.failures)} skipped", highlight=False, soft_wrap=True)


@app.command("render")
def render_cmd(
    track: Path = typer.Argument(..., help="MIDI file or score (.musicxml, .xml, .mxl, .krn)."),
    wav: Path = typer.Argument(..., help="WAV file to write."),
    soundfont: Path | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2)."),
    seconds: float | None = typer.Option(None, "--seconds", min=0.1, help="Render at most this much [default: 600]."),
) -> None:
    """Render a MIDI file or score to a WAV, exactly as the model hears it."""
    from ..io.reader import load_music
    from ..io.render import RenderSettings, render, write_wav

    with domain_errors():
        settings = RenderSettings(soundfont=str(soundfont) if soundfont else "")
        audio = render(load_music(track), settings, track.name, max_seconds=seconds)
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
    workers: int = typer.Option(0, "--workers", min=0, show_default=False,
                                help="Requests served in parallel [default: one per core]."),
) -> None:
    """Serve the index over HTTP (API docs at /docs) with a page at / to hear why."""
    try:
        from ..serve import ServeConfig, serve
    except ModuleNotFoundError as e:  # the [serve] extra (fastapi, uvicorn, python-multipart) is not installed
        fail(f"musicid serve needs {e.name or 'FastAPI'}, from the [serve] extra: pip install 'musicid[serve]'")
    with domain_errors():
        serve(ServeConfig(index_dir(index), token=token, workers=workers), host, port)
