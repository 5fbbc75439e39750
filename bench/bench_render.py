"""Render benchmark: musicid's renderer against the fluidsynth command line and the bare limit.

For the same files, in the same process, median of --runs runs, one core:
  (a) cli:     `fluidsynth -ni -F out.wav -r 44100` on whole files (44.1 kHz stereo WAV, reverb and
               chorus on: how the published attempt prepared its data)
  (b) limit:   pyfluidsynth synthesising exactly the samples musicid needs, events pre-parsed,
               nothing else around it
  (c) musicid: musicid.io.render.render(load_midi(path)): parse, fresh synth, events, checks
  (d) prepare: musicid's whole per-file work: read, hash, parse, render, log-mel, clips (no cache)

    python bench/bench_render.py DATA_DIR [--files 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from musicid.collection.dataset import list_music_files
from musicid.features.clips import FeatureSettings
from musicid.features.prepare import prepare_track
from musicid.io.midi import load_midi
from musicid.io.render import (
    RELEASE_SECONDS,
    RenderSettings,
    default_soundfont,
    fluidsynth_module,
    render,
    send_event,
)


def bare_limit(midis: list, settings: RenderSettings) -> float:
    """Seconds to synthesise exactly what musicid renders, with nothing but the synth calls."""
    fluidsynth = fluidsynth_module()
    write = fluidsynth._fl.fluid_synth_write_float
    write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    sr = settings.sample_rate
    t0 = time.perf_counter()
    for midi in midis:
        s = fluidsynth.Synth(gain=settings.gain, samplerate=float(sr),
                             **{"synth.reverb.active": 0, "synth.chorus.active": 0})
        s.sfload(str(default_soundfont()), 1)
        total = int(min(midi.duration + RELEASE_SECONDS, settings.max_seconds) * sr)
        left = np.empty(total, np.float32)
        right = np.empty(total, np.float32)
        pos = 0
        for t, kind, ch, a, b in midi.events:
            target = min(int(t * sr), total)
            if target > pos:
                write(s.synth, target - pos, left[pos:].ctypes.data, 0, 1, right[pos:].ctypes.data, 0, 1)
                pos = target
            send_event(s, kind, ch, a, b)
        if pos < total:
            write(s.synth, total - pos, left[pos:].ctypes.data, 0, 1, right[pos:].ctypes.data, 0, 1)
        s.delete()
    return time.perf_counter() - t0


def cli(paths: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    for p in paths:
        subprocess.run(["fluidsynth", "-ni", "-q", "-F", str(out / "x.wav"), "-r", "44100",
                        str(default_soundfont()), str(p)], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    paths = list_music_files(args.data_dir)
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.files).round().astype(int)]
    settings = RenderSettings()
    midis = [load_midi(p) for p in paths]
    audio_s = sum(min(m.duration + RELEASE_SECONDS, settings.max_seconds) for m in midis)
    full_s = sum(m.duration for m in midis)
    has_cli = shutil.which("fluidsynth") is not None
    times: dict[str, list[float]] = {"cli": [], "limit": [], "musicid": [], "prepare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            times["limit"].append(bare_limit(midis, settings))
            t0 = time.perf_counter()
            for p in paths:
                render(load_midi(p), settings, p.name)
            times["musicid"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in paths:
                prepare_track(p, settings, FeatureSettings())
            times["prepare"].append(time.perf_counter() - t0)
            if has_cli:
                times["cli"].append(cli(paths, Path(tmp)))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"{len(paths)} files, {audio_s / 60:.1f} min of audio rendered by musicid "
          f"({full_s / 60:.1f} min of music), median of {args.runs} runs, one core\n")
    print(f"{'renderer':<34} {'seconds':>8} {'x realtime':>11} {'vs limit':>9}")
    rows = [("(b) limit: bare pyfluidsynth, 16 kHz", "limit", audio_s),
            ("(c) musicid render, 16 kHz mono", "musicid", audio_s),
            ("(d) musicid render + log-mel + clips", "prepare", audio_s),
            ("(a) fluidsynth CLI, 44.1 kHz stereo", "cli", full_s)]
    for label, key, secs in rows:
        if key in med:
            print(f"{label:<34} {med[key]:>8.2f} {secs / med[key]:>11.0f} {med['limit'] / med[key]:>9.2f}")
    if "cli" in med:
        print(f"\nmusicid render is {med['cli'] / med['musicid']:.1f}x faster than the fluidsynth CLI "
              f"on the same files; it runs at {med['limit'] / med['musicid']:.2f}x of the bare limit.")
    else:
        print("\n(fluidsynth CLI not installed: apt-get install fluidsynth to compare against it)")


if __name__ == "__main__":
    main()
