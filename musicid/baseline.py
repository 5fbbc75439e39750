"""The published method for the challenge set ("seed"), reproduced to be measured beside musicid.

As read from its code (shared/notes/seed-method.md): the first 30 s of each file rendered at
44.1 kHz stereo with FluidSynth's reverb and chorus; a 64-band mel spectrogram in dB
(n_fft 1024, hop 512, top_db 80), input 2 x 64 x 2584; a two-conv CNN to a 25-d non-negative
embedding (13,389,373 parameters); random triplets against one fixed anchor file per composer
(the second file in directory order), TripletMarginLoss(margin 1, p 2), SGD lr 0.001, batch 16,
10 epochs; the nearest anchor names the composer, and the distance to it is the novelty score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .errors import MidiError, RenderError
from .midi import load_midi
from .render import RenderSettings, render

SEED_SAMPLE_RATE = 44100
SEED_SECONDS = 30
SEED_N_FFT = 1024
SEED_HOP = 512
SEED_N_MELS = 64
SEED_TOP_DB = 80.0
SEED_SAMPLES = SEED_SECONDS * SEED_SAMPLE_RATE + 1  # 1,323,001 as in the published code
SEED_FRAMES = SEED_SAMPLES // SEED_HOP + 1  # 2584
SEED_THRESHOLD = 5.0  # "Other" above this distance to the nearest anchor


@dataclass(frozen=True)
class SeedSettings:
    epochs: int = 10
    batch: int = 16
    lr: float = 1e-3
    margin: float = 1.0
    seed: int = 10


def seed_features(audio: Tensor) -> Tensor:
    """(2, samples) stereo -> (2, 64, frames) mel power in dB, floored 80 dB under its peak."""
    from .features import mel_filters

    window = torch.hann_window(SEED_N_FFT)
    spec = torch.stft(audio, SEED_N_FFT, SEED_HOP, window=window, return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    mel = mel_filters(SEED_SAMPLE_RATE, SEED_N_FFT, SEED_N_MELS, 0.0, SEED_SAMPLE_RATE / 2) @ power
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    return torch.maximum(db, db.max() - SEED_TOP_DB)


def seed_input(path: Path) -> Tensor:
    """Render the first 30 s of a file as the published attempt did and featurise it."""
    settings = RenderSettings(sample_rate=SEED_SAMPLE_RATE, stereo=True, effects=True,
                              max_seconds=SEED_SECONDS + 1)
    audio = render(load_midi(path), settings, path.name, max_seconds=SEED_SAMPLES / SEED_SAMPLE_RATE)
    padded = np.zeros((2, SEED_SAMPLES), dtype=np.float32)
    padded[:, : audio.shape[1]] = audio[:, :SEED_SAMPLES]
    return seed_features(torch.from_numpy(padded))


class SeedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, 16, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(16, 32, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 13 * 643, 50), nn.ReLU(), nn.Linear(50, 25), nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, 2, 64, 2584) -> (batch, 25) non-negative embeddings."""
        return self.net(x)


def train_seed(inputs: Tensor, labels: Sequence[str], anchors: dict[str, int],
               settings: SeedSettings = SeedSettings()) -> SeedNet:
    """Random triplets: anchor = the composer's anchor file, positive = another file of theirs,
    negative = a file of another composer; one epoch draws as many triplets as there are files."""
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    labels_arr = np.asarray(labels)
    composers = sorted(anchors)
    model = SeedNet()
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr)
    loss_fn = nn.TripletMarginLoss(margin=settings.margin, p=2)
    model.train()
    for _ in range(settings.epochs):
        for _ in range(max(1, len(labels_arr) // settings.batch)):
            a, p, n = [], [], []
            for _ in range(settings.batch):
                c = composers[rng.integers(len(composers))]
                mine = np.flatnonzero((labels_arr == c) & (np.arange(len(labels_arr)) != anchors[c]))
                others = np.flatnonzero(labels_arr != c)
                a.append(anchors[c])
                p.append(int(rng.choice(mine)) if len(mine) else anchors[c])
                n.append(int(rng.choice(others)))
            loss = triplet_batch_loss(model, inputs, a, p, n, loss_fn)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def triplet_batch_loss(model: nn.Module, inputs: Tensor, a: Sequence[int], p: Sequence[int], n: Sequence[int],
                       loss_fn: nn.Module) -> Tensor:
    """The published loss(model(inputs[a]), model(inputs[p]), model(inputs[n])), with each distinct
    anchor file embedded once: the anchors are only as many as the composers, so this saves
    nearly a third of the work and changes nothing (the net has no batch statistics)."""
    anchors, which = np.unique(np.asarray(a), return_inverse=True)
    return loss_fn(model(inputs[anchors])[torch.from_numpy(which)], model(inputs[list(p)]), model(inputs[list(n)]))


@torch.inference_mode()
def seed_embed(model: SeedNet, inputs: Tensor, batch: int = 16) -> np.ndarray:
    return torch.cat([model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]).numpy()


def anchor_files(paths: Sequence[Path], labels: Sequence[str], idx: Sequence[int]) -> dict[str, int]:
    """Each composer's anchor among the tracks at idx: its second file in directory order (or only)."""
    out: dict[str, int] = {}
    for c in sorted({labels[i] for i in idx}):
        mine = sorted((i for i in idx if labels[i] == c), key=lambda i: paths[i].name)
        out[c] = mine[1] if len(mine) > 1 else mine[0]
    return out


def nearest_anchor(emb: np.ndarray, anchor_emb: np.ndarray, composers: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Predicted composer and the distance to the nearest anchor (the published novelty score)."""
    d = np.linalg.norm(emb[:, None, :] - anchor_emb[None, :, :], axis=-1)
    return [composers[j] for j in d.argmin(axis=1)], d.min(axis=1)


def prepare_seed_inputs(paths: Sequence[Path]) -> tuple[Tensor, list[int]]:
    """Inputs for every file that renders (the published pipeline dropped silent ones too)."""
    feats, ok = [], []
    for i, p in enumerate(paths):
        try:
            feats.append(seed_input(p))
            ok.append(i)
        except (MidiError, RenderError):
            continue
    return torch.stack(feats) if feats else torch.zeros(0, 2, SEED_N_MELS, SEED_FRAMES), ok
