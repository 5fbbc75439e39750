"""musicid serve through FastAPI's TestClient: every endpoint, its errors, the token rule, the bounds."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import socket
import threading
import warnings
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from musicid import __version__
from musicid.cli import app as cli_app
from musicid.errors import MidiError, RenderError, ServeError
from musicid.io.midi import load_midi, parse_midi
from musicid.io.smf import NOTE_OFF, NOTE_ON
from musicid.serve import ServeConfig, check_bind, clip_window, create_app, safe_name

from .conftest import write_piece
from .test_bad_input import BAD_FILES

with warnings.catch_warnings():  # starlette 1.x asks for httpx2 in place of httpx, which works the same
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-token"


def client_for(config: ServeConfig) -> TestClient:
    return TestClient(create_app(config))


@pytest.fixture(scope="module")
def client(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    cache = tmp_path_factory.mktemp("serve-cache")
    with client_for(ServeConfig(built_index, workers=2, cache_dir=cache)) as c:
        yield c


@pytest.fixture
def editable(built_index: Path, tmp_path: Path) -> Iterator[TestClient]:
    """A server with a token over a copy of the index (edits replace the directory)."""
    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    with client_for(ServeConfig(index, token=TOKEN, workers=1, cache_dir=tmp_path / "cache")) as c:
        yield c


def upload(path: Path, name: str | None = None) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name or path.name, path.read_bytes(), "audio/midi")}


def cli_json(*args: str) -> object:
    r = CliRunner().invoke(cli_app, list(args))
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def first_track(corpus: Path, style: str = "Lowpiano") -> Path:
    return sorted((corpus / style).glob("*.mid"))[0]


def test_query_is_the_cli_json(client: TestClient, built_index: Path, tmp_path: Path) -> None:
    piece = write_piece(tmp_path / "new piece.mid", "Lowpiano", seed=77, seconds=12)
    r = client.post("/query", files=upload(piece))
    assert r.status_code == 200
    expected = cli_json("query", str(piece), "--index", str(built_index), "--json")
    assert isinstance(expected, dict)
    assert r.json() == {**expected, "path": "new piece.mid"}
    assert r.json()["composer"] == "Lowpiano" and "explain" not in r.json()


def test_explain_points_at_the_matching_clips_and_the_map(client: TestClient, corpus: Path) -> None:
    track = first_track(corpus)
    body = client.post("/query?explain=true&k=5", files=upload(track)).json()
    ex = body["explain"]
    tracks = {t["path"]: t["track_id"] for t in client.get("/tracks").json()}
    me = tracks[str(track.relative_to(corpus))]
    assert body["known_piece"] == str(track.relative_to(corpus))
    # an indexed file's nearest neighbour is itself, clip for clip, on the same spot of the map
    assert ex["neighbours"][0]["track_id"] == me and body["neighbours"][0]["distance"] == pytest.approx(0, abs=1e-3)
    assert ex["neighbours"][0]["query_offset"] == body["neighbours"][0]["offset"]
    assert [n["track_id"] for n in ex["neighbours"]] == [tracks[n["path"]] for n in body["neighbours"]]
    assert ex["offsets"] == [0.0, 2.0, 4.0, 6.0] and ex["clip_seconds"] == 4
    points = {p["track_id"]: (p["x"], p["y"]) for p in client.get("/index/map").json()["points"]}
    assert len(points) == len(tracks)
    assert ex["map"] == pytest.approx(points[me], abs=1e-3)


def test_report_ranks_files_and_lists_bad_ones(client: TestClient, tmp_path: Path) -> None:
    known = write_piece(tmp_path / "k.mid", "Highflute", seed=5)
    unseen = write_piece(tmp_path / "u.mid", "Organ", seed=6)
    files = [("files", ("k.mid", known.read_bytes())), ("files", ("u.mid", unseen.read_bytes())),
             ("files", ("empty.mid", b"")), ("files", ("notes.txt", b"hello"))]
    body = client.post("/report", files=files).json()
    singles = {n: client.post("/query", files={"file": (n, p.read_bytes())}).json()
               for n, p in (("k.mid", known), ("u.mid", unseen))}
    assert [r["novelty"] for r in body["results"]] == sorted((s["novelty"] for s in singles.values()), reverse=True)
    assert {r["path"]: r for r in body["results"]} == singles
    assert body["failures"] == [{"path": "empty.mid", "reason": "empty file"},
                                {"path": "notes.txt", "reason": "not a MIDI file (no MThd header)"}]
    in_order = client.post("/report?novel=false", files=files[:2]).json()["results"]
    assert [r["path"] for r in in_order] == ["k.mid", "u.mid"]


def test_a_batch_is_judged_on_request_and_refused_by_an_index_without_held_out_z_scores(editable: TestClient,
                                                                                       tmp_path: Path) -> None:
    files = [("files", (f"{style}.mid", write_piece(tmp_path / f"{style}.mid", style, seed=s).read_bytes()))
             for style, s in (("Highflute", 5), ("Organ", 6))]
    body = editable.post("/report?judge=batch", files=files).json()
    assert body["judgement"]["margin"] == 0.05 and len(body["results"]) == 2
    engine = editable.app.app.state.service.state.engine  # type: ignore[attr-defined]
    manifest = engine.store.manifest  # as an index calibrated before musicid 0.5.0 reads
    engine.store.manifest = replace(manifest, calibration=replace(manifest.calibration, heldout_z=None))
    r = editable.post("/report?judge=batch", files=files)
    assert r.status_code == 409 and "rebuild it" in r.json()["error"]
    assert editable.post("/report", files=files).status_code == 200  # the fused score still judges


def test_index_is_index_info_json_and_healthz(client: TestClient, built_index: Path) -> None:
    assert client.get("/index").json() == cli_json("index", "info", "--index", str(built_index), "--json")
    health = client.get("/healthz").json()
    assert health == {"ok": True, "tracks": 18, "composers": ["Highflute", "Lowpiano", "Strings"], "workers": 2}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/query", "/report", "/index", "/tracks/{track_id}/audio", "/tracks", "/tracks/{track_id}"} <= set(paths)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_get_4xx_with_their_one_line_reason(client: TestClient, name: str) -> None:
    data, reason = BAD_FILES[name]
    r = client.post("/query", files={"file": (name, data)})
    assert r.status_code == (415 if "MThd" in reason else 422)
    error = r.json()["error"]
    assert error.startswith(f"{name}: ") and reason in error and "\n" not in error


def test_oversized_uploads_get_413(client: TestClient, built_index: Path) -> None:
    big = b"MThd" + bytes(10 * 1024 * 1024)
    r = client.post("/query", files={"file": ("big.mid", big)})
    assert r.status_code == 413 and r.json() == {"error": "big.mid: over the 10 MB upload limit"}
    with client_for(ServeConfig(built_index, workers=1, max_request_bytes=1000)) as small:
        r = small.post("/query", files={"file": ("a.mid", b"MThd" + bytes(2000))})  # says its length
        assert r.status_code == 413 and "request body over" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # says no length: counted as it arrives
            yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mid\"\r\n\r\nMThd"
            for _ in range(10):
                yield bytes(500)

        r = small.post("/query", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413


def test_request_errors_are_one_line(client: TestClient) -> None:
    r = client.post("/query")
    assert r.status_code == 422 and r.json() == {"error": "file: Field required"}
    assert client.post("/query?k=0", files={"file": ("a.mid", b"MThd")}).json()["error"].startswith("k: ")


def test_an_upload_is_never_written_where_its_name_points(client: TestClient, corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "planted.mid"
    for name in (str(target), "../../planted.mid", "..\\..\\planted.mid"):
        r = client.post("/query", files=upload(first_track(corpus), name))
        assert r.status_code == 200 and r.json()["path"] == "planted.mid"
    assert not target.exists() and not (tmp_path.parent / "planted.mid").exists()
    service = client.app.app.state.service  # type: ignore[attr-defined]
    assert list(service._tmp.iterdir()) == []  # the server's own temporary copy is gone too
    assert safe_name("a/b/c.midi") == "c.midi" and safe_name("") == "upload.mid" and safe_name("..") == "upload.mid"
    long = client.post("/query", files=upload(first_track(corpus), "\u00e9" * 200 + ".mid"))  # 402 bytes of UTF-8
    assert long.status_code == 200 and long.json()["path"] == "\u00e9" * 60


def wav_info(data: bytes) -> tuple[int, int, int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return w.getnchannels(), w.getframerate(), w.getnframes(), pcm


def test_audio_of_an_indexed_clip_and_of_the_query(client: TestClient, corpus: Path) -> None:
    track = first_track(corpus)
    tid = {t["path"]: t["track_id"] for t in client.get("/tracks").json()}[str(track.relative_to(corpus))]
    r = client.get(f"/tracks/{tid}/audio?offset=2&seconds=3")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    channels, rate, frames, pcm = wav_info(r.content)
    assert (channels, rate, frames) == (1, 16000, 3 * 16000) and np.abs(pcm).max() > 300  # heard, not silence
    ex = client.post("/query?explain=true", files=upload(track)).json()["explain"]
    mine = client.get(f"/queries/{ex['upload']}/audio?offset=2&seconds=3")
    assert mine.status_code == 200 and mine.content == r.content  # the same file, the same stretch, the same audio
    errors = {f"/tracks/{tid}/audio?offset=20": 416, "/tracks/999/audio": 404, f"/tracks/{tid}/audio?seconds=61": 422,
              "/queries/0123456789abcdef/audio": 404}
    for url, status in errors.items():
        r = client.get(url)
        assert r.status_code == status and "\n" not in r.json()["error"], url


def test_audio_of_a_track_whose_file_moved_says_where_it_looked(built_index: Path, tmp_path: Path) -> None:
    with client_for(ServeConfig(built_index, workers=1, cache_dir=tmp_path)) as c:
        store = c.app.app.state.service.state.engine.store  # type: ignore[attr-defined]
        store.manifest = store.manifest.with_about(data_dir=str(tmp_path / "gone"))
        r = c.get("/tracks/0/audio")
    assert r.status_code == 404 and r.json()["error"].startswith(f"track 0: its file is no longer at {tmp_path}")


def test_clip_window_restarts_held_notes_and_shifts_the_rest(tmp_path: Path) -> None:
    midi = load_midi(write_piece(tmp_path / "s.mid", "Strings", seed=1, seconds=6))  # 1 s chords, 0.9 s long
    window = clip_window(midi, 2.5, 2.0)
    assert window.duration == 2.0 and all(0 <= t < 2.0 for t, *_ in window.events)
    starts = [(t, a) for t, k, _, a, b in window.events if k == NOTE_ON]
    held = {a for t, k, _, a, _ in midi.events if k == NOTE_ON and 2.0 <= t < 2.5}
    assert {a for t, a in starts if t == 0} == held  # the chord struck at 2 s still sounds at 2.5 s
    assert [t for t, _ in starts if t > 0][:1] == [pytest.approx(0.5)]  # the next chord, at 3 s
    assert any(k == NOTE_OFF for _, k, *_ in window.events)


def test_editing_needs_the_token(client: TestClient, editable: TestClient, corpus: Path) -> None:
    files = {"files": ("a.mid", first_track(corpus).read_bytes())}
    r = client.post("/tracks", data={"composer": "X"}, files=files)
    assert r.status_code == 403 and r.json()["error"] == "editing is off: start musicid serve with --token"
    assert client.delete("/tracks/0").status_code == 403
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        assert editable.post("/tracks", data={"composer": "X"}, files=files, headers=headers).status_code == 401
        assert editable.delete("/tracks/0", headers=headers).status_code == 401
    assert editable.get("/healthz").json()["tracks"] == 18  # nothing changed


def test_add_and_remove_are_seen_by_the_next_query(editable: TestClient, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    organ = [write_piece(tmp_path / f"organ {i}.mid", "Organ", seed=300 + i) for i in range(4)]
    probe = editable.post("/query", files=upload(organ[3])).json()
    assert "Organ" not in probe["probabilities"]
    r = editable.post("/tracks", data={"composer": "Organ"}, headers=auth,
                      files=[("files", (p.name, p.read_bytes())) for p in organ[:3]])
    assert r.status_code == 200, r.text
    assert r.json()["added"] == {"Organ": 3} and r.json()["tracks"] == 21
    after = editable.post("/query", files=upload(organ[3])).json()
    assert "Organ" in after["probabilities"] and after["neighbours"][0]["composer"] == "Organ"
    assert "Organ" in editable.get("/index").json()["composers"]
    added = {t["path"]: t["track_id"] for t in editable.get("/tracks").json()}["Organ/organ 0.mid"]
    assert editable.get(f"/tracks/{added}/audio?seconds=2").status_code == 200  # found by content

    known = editable.post("/query", files=upload(organ[0])).json()
    assert known["known_piece"] == "Organ/organ 0.mid"
    r = editable.delete(f"/tracks/{added}", headers=auth)
    assert r.status_code == 200 and r.json()["removed"] == {"Organ": 1}
    assert editable.post("/query", files=upload(organ[0])).json()["known_piece"] is None
    assert editable.delete(f"/tracks/{added}", headers=auth).status_code == 404

    bad = editable.post("/tracks", data={"composer": "../etc"}, headers=auth,
                        files={"files": ("a.mid", organ[0].read_bytes())})
    assert bad.status_code == 422 and "composer name" in bad.json()["error"]
    bad = editable.post("/tracks", data={"composer": "Organ"}, headers=auth, files={"files": ("e.mid", b"")})
    assert bad.status_code == 422 and bad.json()["error"] == "e.mid: empty file"
    assert editable.get("/healthz").json()["tracks"] == 20


def test_a_query_past_its_time_bound_is_504_and_the_worker_comes_back(built_index: Path, corpus: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    with client_for(ServeConfig(built_index, workers=1, query_timeout=0.2)) as c:
        service = c.app.app.state.service  # type: ignore[attr-defined]
        real = service.query

        def stuck(*args: object) -> object:
            release.wait(30)
            return real(*args)

        monkeypatch.setattr(service, "query", stuck)
        r = c.post("/query", files=upload(first_track(corpus)))
        assert r.status_code == 504 and r.json() == {"error": "gave up after 0.2 s"}
        release.set()
        monkeypatch.setattr(service, "query", real)
        service.config = replace(service.config, query_timeout=60.0)
        assert c.post("/query", files=upload(first_track(corpus))).status_code == 200
        service.pending = service.workers * 8  # as many waiting as the queue holds
        r = c.post("/query", files=upload(first_track(corpus)))
        assert r.status_code == 503 and r.json()["error"].startswith("busy: ")
        service.pending = 0


def test_workers_serve_requests_in_parallel(built_index: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests that each wait for the other finish only if two workers run them at once."""
    # one worker: the first waits for a partner that never starts, past the 1.5 s bound (the barrier gives up at 3 s)
    for workers, timeout, expected in ((2, 60.0, [200, 200]), (1, 1.5, [504, 504])):
        api = create_app(ServeConfig(built_index, workers=workers, query_timeout=timeout))
        service = api.app.state.service  # type: ignore[attr-defined]
        meet = threading.Barrier(2, timeout=3)
        real = service.query
        monkeypatch.setattr(service, "query", lambda *a, real=real, meet=meet: (meet.wait(), real(*a))[1])

        async def both(api: object = api) -> list[int]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(api), base_url="http://t") as c:  # type: ignore[arg-type]
                data = first_track(corpus).read_bytes()
                rs = await asyncio.gather(*(c.post("/query", files={"file": ("a.mid", data)}) for _ in range(2)))
                return [r.status_code for r in rs]

        assert asyncio.run(both()) == expected
        service.close()


def test_no_open_bind_without_a_token(built_index: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ServeError, match="refusing to listen on 0.0.0.0 without --token"):
        check_bind("0.0.0.0", None)
    r = CliRunner().invoke(cli_app, ["serve", "--index", str(built_index), "--host", "192.168.1.5"])
    assert r.exit_code == 1 and r.stderr.startswith("error: refusing to listen on 192.168.1.5 without --token")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(cli_app, ["serve", "--index", str(built_index), "--port", str(port)])
    assert r.exit_code == 1 and r.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_the_page_is_served_without_outside_resources(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in r.text


def test_a_render_past_its_bound_is_504_and_a_bad_file_422(tmp_path: Path) -> None:
    from musicid.io.render import RenderSettings, render
    from musicid.serve import error_status

    midi = load_midi(write_piece(tmp_path / "p.mid", "Strings", seed=2, seconds=4))
    with pytest.raises(RenderError) as slow:
        render(midi, RenderSettings(timeout_seconds=0.0), "p.mid")
    assert error_status(slow.value) == 504
    with pytest.raises(MidiError) as bad:
        parse_midi(b"MThd", "x.mid")
    assert error_status(bad.value) == 422


def test_scores_are_queried_reported_and_added_like_midi(client: TestClient, editable: TestClient) -> None:
    """An .mxl upload is read by the score reader in /query, /report and /tracks; a bad score is one
    line in the report's failures."""
    from .test_score_bad_input import BAD_SCORES, ENTITIES
    from .test_score_reader import musicxml, mxl, n

    score = mxl(musicxml(("Flute", "<next/>".join("".join(n(s, 5, 1) for s in "CEGE") for _ in range(5)))))
    single = client.post("/query", files={"file": ("s.mxl", score)}).json()
    assert single["path"] == "s.mxl" and single["composer"] in {"Highflute", "Lowpiano", "Strings"}
    body = client.post("/report", files=[("files", ("s.mxl", score)),
                                         ("files", ("x.musicxml", BAD_SCORES["xxe.musicxml"][0]))]).json()
    assert body["results"] == [single]
    assert body["failures"] == [{"path": "x.musicxml", "reason": ENTITIES}]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = editable.post("/tracks", data={"composer": "Scored"}, headers=auth, files=[("files", ("s.mxl", score))])
    assert r.status_code == 200, r.text
    assert r.json()["added"] == {"Scored": 1}
    added = {t["path"]: t["track_id"] for t in editable.get("/tracks").json()}["Scored/s.mxl"]
    assert editable.get(f"/tracks/{added}/audio?seconds=2").status_code == 200  # found by content, read as a score
    assert editable.post("/query", files={"file": ("s.mxl", score)}).json()["known_piece"] == "Scored/s.mxl"


def test_k_and_explain_are_honoured_as_form_fields(client: TestClient, tmp_path: Path) -> None:
    piece = write_piece(tmp_path / "p.mid", "Strings", seed=11)
    plain = client.post("/query", files=upload(piece)).json()
    as_form = client.post("/query", files=upload(piece), data={"k": "3", "explain": "true"}).json()
    in_url = client.post("/query?k=3&explain=true", files=upload(piece)).json()
    assert "explain" not in plain and as_form == in_url  # the form's k and explain, as the URL's
    r = client.post("/query", files=upload(piece), data={"k": "0"})
    assert r.status_code == 422 and r.json() == {"error": "k: Input should be greater than or equal to 1"}
    both = client.post("/query?k=3", files=upload(piece), data={"k": "0"})
    assert both.status_code == 422  # each is checked; where both are valid, the URL's wins


def test_every_request_gets_one_access_log_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import re

    with caplog.at_level(logging.INFO, logger="musicid.serve.access"):
        client.get("/healthz")
        client.get("/tracks/999999/audio")
    lines = [r.getMessage() for r in caplog.records if r.name == "musicid.serve.access"]
    assert len(lines) == 2
    assert re.fullmatch(r"GET /healthz 200 \d+ ms", lines[0]) and re.fullmatch(r"GET /tracks/999999/audio 404 \d+ ms",
                                                                                lines[1])


def test_serve_says_where_it_is_and_logs_requests(built_index: Path, tmp_path: Path) -> None:
    """A real `musicid serve`: its first line names the URL and the index; each request is a line on stderr."""
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "MUSICID_CACHE": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "musicid", "serve", "--index", str(built_index), "--port",
                             str(port), "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first.startswith(f"musicid {__version__} serving {built_index} (18 tracks by 3 composers) at "
                                f"http://127.0.0.1:{port}/"), first
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        _, errors = proc.communicate(timeout=20)
    assert "GET /healthz 200" in errors


def test_serve_without_its_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in [m for m in sys.modules if m == "musicid.serve" or m.startswith("musicid.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    r = CliRunner().invoke(cli_app, ["serve", "--index", "/nonexistent"])
    assert r.exit_code == 1
    assert r.output.strip() == ("error: musicid serve needs fastapi, from the [serve] extra: "
                                "pip install 'musicid[serve]'")
