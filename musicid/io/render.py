"""MIDI to audio with FluidSynth, in memory, bounded in time and length.

The only module that touches FluidSynth. Events are fed to the synthesizer one
by one (not through FluidSynth's own file player, which renders some valid
files to silence) and audio is pulled in float32 between events.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import time
import wave
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import RenderError, SoundFontError
from ..keys import file_sha256
from .midi import Midi
from .smf import CONTROL, DRUM_CHANNEL, NOTE_OFF, NOTE_ON, PITCH, PROGRAM

SAMPLE_RATE = 16000
RELEASE_SECONDS = 1.0  # audio kept after the last note ends
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class RenderSettings:
    """How a MIDI file becomes audio; part of every cache key and index manifest."""

    sample_rate: int = SAMPLE_RATE
    gain: float = 0.2
    max_seconds: float = 600.0  # render at most this much of a track
    timeout_seconds: float = 60.0  # wall-clock bound for one render
    soundfont: str = ""  # "" means the TimGM6mb.sf2 that ships with pretty_midi
    stereo: bool = False  # (2, samples) instead of a mono mix
    effects: bool = False  # FluidSynth's reverb and chorus, as its command line renders
    random_programs: bool = False  # timbre augmentation: each melodic channel a random GM program (random_programs)

    def resolved_soundfont(self) -> Path:
        return Path(self.soundfont) if self.soundfont else default_soundfont()

    def identity(self) -> dict[str, Any]:
        """Everything that changes the audio, the SoundFont by content, not by path."""
        from ..keys import without_later_defaults

        d = without_later_defaults(asdict(self), {"stereo": False, "effects": False,
                                                  "random_programs": False})  # off: audio as before
        d.pop("timeout_seconds")
        d["soundfont"] = soundfont_digest(self.resolved_soundfont())
        return d


def default_soundfont() -> Path:
    """TimGM6mb.sf2 inside the pretty_midi package, found without importing it (its import
    imports pyfluidsynth, which prints to stdout when $CI is set)."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise SoundFontError("pretty_midi is not installed, so there is no default SoundFont; pass --soundfont")
    return Path(list(spec.submodule_search_locations)[0]) / "TimGM6mb.sf2"


def check_soundfont(path: str | Path) -> Path:
    """Return the path if it is a readable SoundFont 2 file, else raise SoundFontError."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except FileNotFoundError:
        raise SoundFontError(f"SoundFont not found: {path}") from None
    except OSError as e:
        raise SoundFontError(f"cannot read SoundFont {path}: {e.strerror or e}") from e
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise SoundFontError(f"not a SoundFont (.sf2) file: {path}")
    return path


@lru_cache(maxsize=8)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))[:16]


def soundfont_digest(path: Path) -> str:
    st = check_soundfont(path).stat()
    return _digest_cached(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=1)
def fluidsynth_module() -> Any:
    """pyfluidsynth, imported once. It prints "'fluidsynth' was found at ..." to stdout on import
    whenever $CI is set, which would corrupt `--json` output: that print is swallowed here."""
    with contextlib.redirect_stdout(io.StringIO()):
        import fluidsynth
    return fluidsynth


class _Synth:
    """One FluidSynth instance with a SoundFont loaded, reused across renders."""

    def __init__(self, soundfont: Path, sample_rate: int, gain: float, effects: bool = False):
        fluidsynth = fluidsynth_module()

        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._write.restype = ctypes.c_int
        self.synth = fluidsynth.Synth(
            gain=gain, samplerate=float(sample_rate),
            **{"synth.reverb.active": int(effects), "synth.chorus.active": int(effects)},
        )
        self.sfid = self.synth.sfload(str(soundfont), 1)
        if self.sfid < 0:
            self.synth.delete()
            raise SoundFontError(f"FluidSynth could not load SoundFont {soundfont}")

    def close(self) -> None:
        self.synth.delete()

    def write_into(self, buf: np.ndarray, pos: int, n: int) -> None:
        """Synthesise n frames straight into buf[:, pos:pos + n] (buf: (2, frames) float32, C-contiguous):
        no buffer is allocated or copied per call, which at one call per event was a quarter of the
        render time (docs/PERFORMANCE.md)."""
        offset = pos * buf.itemsize
        rc = self._write(self.synth.synth, n, buf[0].ctypes.data + offset, 0, 1, buf[1].ctypes.data + offset, 0, 1)
        if rc != 0:
            raise RenderError("FluidSynth failed to synthesise audio")


def send_event(synth: Any, kind: int, channel: int, a: int, b: int) -> None:
    """Send one musicid.io.midi event to a fluidsynth.Synth."""
    if kind == NOTE_ON:
        synth.noteon(channel, a, b)
    elif kind == NOTE_OFF:
        synth.noteoff(channel, a)
    elif kind == CONTROL:
        synth.cc(channel, a, b)
    elif kind == PROGRAM:
        synth.program_change(channel, a)
    elif kind == PITCH:
        synth.pitch_bend(channel, a)


RANDOM_PROGRAMS = 96  # General MIDI programs 0-95 (pianos to synth pads): no sound effects, no percussion


def random_programs(midi: Midi) -> np.ndarray:
    """(16,) one General MIDI program (0-95) per channel, drawn at random but fixed by the piece's
    notes (the same file always gets the same instruments): the timbre augmentation of
    RenderSettings.random_programs, so that an audio embedder cannot name a composer by the
    ensemble that plays (docs/RESULTS.md: the audio route learnt instrumentation). The drum
    channel keeps its kit."""
    notes = np.asarray([(round(t, 3), ch, a) for t, kind, ch, a, _ in midi.events[:2000] if kind == NOTE_ON],
                       dtype=np.float64)
    seed = int.from_bytes(hashlib.sha256(notes.tobytes()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, RANDOM_PROGRAMS, size=16)


def _new_synth(settings: RenderSettings, programs: np.ndarray | None = None) -> _Synth:
    """A fresh synthesizer per render (~25 ms): bit-identical output whatever ran before. programs:
    (16,) a program per channel to start from (else 0, the piano)."""
    synth = _Synth(check_soundfont(settings.resolved_soundfont()), settings.sample_rate, settings.gain,
                   settings.effects)
    for ch in range(16):
        program = 0 if programs is None or ch == DRUM_CHANNEL else int(programs[ch])
        synth.synth.program_select(ch, synth.sfid, 128 if ch == DRUM_CHANNEL else 0, program)
    return synth


def render(midi: Midi, settings: RenderSettings = RenderSettings(), name: str = "<midi>",
           max_seconds: float | None = None) -> np.ndarray:
    """Synthesise a piece to float32 audio at settings.sample_rate: (samples,) mono, or (2, samples).

    Renders up to the end of the last note plus a short release, and never more
    than max_seconds (default settings.max_seconds). With settings.random_programs every melodic
    channel plays random_programs(midi)'s instrument and the file's program changes are ignored. Raises RenderError on a
    FluidSynth failure, on silence, or when the wall-clock bound is passed.
    """
    sr = settings.sample_rate
    limit = settings.max_seconds if max_seconds is None else max_seconds
    total = int(min(midi.duration + RELEASE_SECONDS, limit) * sr)
    deadline = time.monotonic() + settings.timeout_seconds
    programs = random_programs(midi) if settings.random_programs else None
    synth = _new_synth(settings, programs)
    out = np.zeros((2, total), dtype=np.float32)
    pos = 0
    s = synth.synth
    try:
        for t, kind, ch, a, b in midi.events:
            target = min(int(t * sr), total)
            if target > pos:
                synth.write_into(out, pos, target - pos)
                pos = target
                if time.monotonic() > deadline:
                    raise RenderError(
                        f"{name}: render took over {settings.timeout_seconds:.0f} s, stopped"
                    )
            if pos >= total:
                break
            if programs is not None and kind == PROGRAM and ch != DRUM_CHANNEL:
                continue  # the file's own instruments are what the augmentation replaces
            send_event(s, kind, ch, a, b)
        block = sr
        while pos < total:
            n = min(block, total - pos)
            synth.write_into(out, pos, n)
            pos += n
            if time.monotonic() > deadline:
                raise RenderError(f"{name}: render took over {settings.timeout_seconds:.0f} s, stopped")
    except RenderError:
        raise
    except Exception as e:
        raise RenderError(f"{name}: FluidSynth failed ({type(e).__name__}: {e})") from e
    finally:
        synth.close()
    if not settings.stereo:  # the mono mix, in place: (left + right) / 2
        out[0] += out[1]
        out[0] *= 0.5
        out = out[0]
    peak = float(np.abs(out).max()) if total else 0.0
    if not np.isfinite(peak):
        raise RenderError(f"{name}: FluidSynth produced invalid samples")
    if peak < SILENCE_PEAK:
        raise RenderError(f"{name}: rendered to silence")
    return out


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio as 16-bit PCM WAV, atomically."""
    path = Path(path)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
