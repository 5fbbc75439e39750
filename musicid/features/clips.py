"""The embedder's input representations, and 30-second clips of them: pure functions of tensors.

- "pianoroll" (the default): 128 pitch rows straight from the MIDI notes
  (velocity while a note sounds), 10 frames a second; nothing is rendered.
- "audio": the log-mel spectrogram of the FluidSynth rendering. Mirrors openai/whisper's
  audio.py: a mel filterbank computed once and cached, torch.stft, log10 with a
  dynamic-range floor. No torchaudio, no file I/O.
- "family-rolls": the piano roll once per instrument family (keyboards and the rest,
  strings, voices, winds; by each channel's General MIDI program), stacked as
  planes: the notes, and who plays them.

A representation is (n_bins, frames): mel bands, or pitch rows (per plane).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..choices import Representation, canonical, values
from ..io.render import SAMPLE_RATE

N_FFT = 2048
HOP_LENGTH = 640  # 40 ms: 25 frames a second at 16 kHz
N_MELS = 96
CLIP_SECONDS = 30
TOP_DB = 80.0  # dynamic range kept below each track's peak
REPRESENTATIONS = values(Representation)  # the notes; rendered audio; the notes per instrument family
LEGACY_REPRESENTATIONS = {"ensemble": "family-rolls"}  # the name before 0.2
FAMILIES = ("keys", "strings", "voices", "winds")  # the family rolls' planes, in order


def exact_div(x: int, y: int) -> int:
    assert x % y == 0, f"{x} is not a multiple of {y}"
    return x // y


@dataclass(frozen=True)
class FeatureSettings:
    """Input representation and clipping settings; an index refuses a model made with others."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_bins: int = N_MELS
    f_min: float = 30.0
    f_max: float = 8000.0
    clip_seconds: int = CLIP_SECONDS
    clip_hop_seconds: int = 15  # clips overlap by half
    max_clips: int = 40  # per track
    representation: str = "audio"  # "audio": log-mel of the rendering; "pianoroll"/"family-rolls": the notes

    def __post_init__(self) -> None:
        object.__setattr__(self, "representation", canonical(self.representation, REPRESENTATIONS,
                                                             LEGACY_REPRESENTATIONS, "input representation"))

    @property
    def from_notes(self) -> bool:
        """The representation is read from the notes: nothing is rendered."""
        return self.representation != "audio"

    @property
    def channels(self) -> int:
        """Stacked planes of n_bins // channels rows each (one per instrument family for "family-rolls")."""
        return len(FAMILIES) if self.representation == "family-rolls" else 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def clip_frames(self) -> int:
        return exact_div(self.clip_seconds * self.sample_rate, self.hop_length)

    @property
    def clip_hop_frames(self) -> int:
        return exact_div(self.clip_hop_seconds * self.sample_rate, self.hop_length)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSettings:
        """From as_dict's keys, or those written before 0.2 (n_mels, front), so older checkpoints load.
        ValueError or TypeError for anything else."""
        legacy = {"n_mels": "n_bins", "front": "representation"}
        return cls(**{legacy.get(k, k): v for k, v in d.items()})


def pianoroll_settings() -> FeatureSettings:
    """The piano-roll representation: 128 pitch rows, 10 frames a second (a 1600-sample hop
    at the nominal 16 kHz keeps the clip arithmetic of the audio representation)."""
    return FeatureSettings(n_bins=128, hop_length=1600, representation="pianoroll")


def family_rolls_settings() -> FeatureSettings:
    """The family-rolls representation: the piano roll once per instrument family, 4 x 128 rows."""
    return FeatureSettings(n_bins=128 * len(FAMILIES), hop_length=1600, representation="family-rolls")


def program_family(program: int) -> int:
    """General MIDI program (0-127) -> index into FAMILIES: strings 40-51 (solo and ensembles),
    voices 52-54 (choir, voice, synth voice), winds 56-79 (brass, reeds, pipes); everything
    else -- pianos, organs, guitars, harps' neighbours, synths -- is "keys"."""
    if 40 <= program <= 51:
        return 1
    if 52 <= program <= 54:
        return 2
    if 56 <= program <= 79:
        return 3
    return 0


def piano_roll(events: Any, duration: float, settings: FeatureSettings) -> torch.Tensor:
    """(128 * channels, frames): each pitched note's velocity / 127 while it sounds (the louder
    of overlapping notes); drums left out. A note sounds as the renderer plays it: on past its
    note-off while the sustain pedal holds it, until the pedal lifts (midi.note_spans), and to
    the end of the roll when never switched off. With family rolls, a note goes to the
    plane of its channel's instrument family at the time it starts (program 0 until a program
    change). events as midi.Midi.events; duration in seconds."""
    from ..io.midi import note_spans
    from ..io.smf import DRUM_CHANNEL

    fps = settings.frames_per_second
    n = max(1, int(duration * fps) + 1)
    by_family = settings.channels > 1
    roll = torch.zeros(128 * settings.channels, n)
    for start, end, ch, pitch, vel, program in note_spans(events, duration):
        if ch == DRUM_CHANNEL:
            continue
        row = 128 * (program_family(program) if by_family else 0) + pitch
        i0 = min(int(start * fps + 1e-6), n - 1)  # + 1e-6: a time on a frame boundary is in that frame,
        i1 = min(max(i0 + 1, int(end * fps + 1e-6)), n)  # however its float came out (0.3 * 10 < 3 or > 3)
        roll[row, i0:i1] = torch.clamp(roll[row, i0:i1], min=vel / 127.0)
    return roll


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_bins: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular HTK-mel filterbank, area-normalised, shape (n_bins, n_fft // 2 + 1)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(np.array(f_min)), _hz_to_mel(np.array(f_max)), n_bins + 2)
    hz = _mel_to_hz(mel_pts)
    # never narrower than two FFT bins, or low filters would fall between bins
    min_width = 2.0 * sample_rate / n_fft
    lower, center, upper = hz[:-2], hz[1:-1], hz[2:]
    lower = np.minimum(lower, center - min_width / 2)
    upper = np.maximum(upper, center + min_width / 2)
    rising = (fft_freqs[None, :] - lower[:, None]) / (center - lower)[:, None]
    falling = (upper[:, None] - fft_freqs[None, :]) / (upper - center)[:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling))
    fb *= (2.0 / (upper - lower))[:, None]
    return torch.from_numpy(fb.astype(np.float32))


def log_mel(audio: torch.Tensor, settings: FeatureSettings = FeatureSettings()) -> torch.Tensor:
    """Log-mel spectrogram in dB-like log10 units.

    audio: (..., samples) float waveform at settings.sample_rate.
    returns: (..., n_bins, frames) with frames = samples // hop_length + 1,
    floored TOP_DB below the maximum of each leading-dimension entry.
    """
    lead = audio.shape[:-1]
    x = audio.reshape(-1, audio.shape[-1]).float()
    window = torch.hann_window(settings.n_fft, device=x.device)
    spec = torch.stft(x, settings.n_fft, settings.hop_length, window=window, return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2  # |X|^2 without the sqrt abs() would take
    fb = mel_filters(settings.sample_rate, settings.n_fft, settings.n_bins, settings.f_min, settings.f_max)
    mel = fb.to(x.device) @ power
    logm = torch.clamp(mel, min=1e-10).log10()
    floor = logm.amax(dim=(-2, -1), keepdim=True) - TOP_DB / 10.0
    logm = torch.maximum(logm, floor)
    return logm.reshape(*lead, *logm.shape[-2:])


def clip_offsets(n_frames: int, settings: FeatureSettings = FeatureSettings()) -> list[int]:
    """Start frames of the clips cut from a track of n_frames (at least one clip)."""
    size, hop = settings.clip_frames, settings.clip_hop_frames
    if n_frames <= size:
        return [0]
    starts = list(range(0, n_frames - size + 1, hop))
    if len(starts) > settings.max_clips:  # spread the clips over the whole track
        idx = np.linspace(0, len(starts) - 1, settings.max_clips).round().astype(int)
        starts = [starts[i] for i in idx]
    return starts


def cut_clips(spec: torch.Tensor, settings: FeatureSettings = FeatureSettings()) -> tuple[torch.Tensor, list[int]]:
    """Cut (n_bins, frames) into (n_clips, n_bins, clip_frames) and their start frames.

    A track shorter than one clip is padded with its quietest value.
    """
    size = settings.clip_frames
    if spec.shape[-1] < size:
        pad = spec.new_full((spec.shape[0], size - spec.shape[-1]), float(spec.min()))
        spec = torch.cat([spec, pad], dim=-1)
    starts = clip_offsets(spec.shape[-1], settings)
    return torch.stack([spec[:, s:s + size] for s in starts]), starts

