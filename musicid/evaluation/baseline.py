"""The published method for the challenge set (`--baseline published`), reproduced to be measured beside musicid.

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
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ReadError, RenderError
from ..io.reader import load_music
from ..io.render import RenderSettings, render

PUBLISHED_SAMPLE_RATE = 44100
PUBLISHED_SECONDS = 30
PUBLISHED_N_FFT = 1024
PUBLISHED_HOP = 512
PUBLISHED_N_MELS = 64
PUBLISHED_TOP_DB = 80.0
PUBLISHED_SAMPLES = PUBLISHED_SECONDS * PUBLISHED_SAMPLE_RATE + 1  # 1,323,001 as in the published code
PUBLISHED_FRAMES = PUBLISHED_SAMPLES // PUBLISHED_HOP + 1  # 2584
PUBLISHED_THRESHOLD = 5.0  # "Other" above this distance to the nearest anchor


@dataclass(frozen=True)
class PublishedSettings:
    epochs: int = 10
    batch: int = 16
    lr: float = 1e-3
    margin: float = 1.0
    seed: int = 10


def published_features(audio: Tensor) -> Tensor:
    """(2, samples) stereo -> (2, 64, frames) mel power in dB, floored 80 dB under its peak."""
    from ..features.clips import mel_filters

    window = torch.hann_window(PUBLISHED_N_FFT)
    spec = torch.stft(audio, PUBLISHED_N_FFT, PUBLISHED_HOP, window=window, return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    mel = mel_filters(PUBLISHED_SAMPLE_RATE, PUBLISHED_N_FFT, PUBLISHED_N_MELS, 0.0, PUBLISHED_SAMPLE_RATE / 2) @ power
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    return torch.maximum(db, db.max() - PUBLISHED_TOP_DB)


def published_input(path: Path) -> Tensor:
    """Render the first 30 s of a file as the published attempt did and featurise it."""
    settings = RenderSettings(sample_rate=PUBLISHED_SAMPLE_RATE, stereo=True, effects=True,
                              max_seconds=PUBLISHED_SECONDS + 1)
    audio = render(load_music(path), settings, path.name, max_seconds=PUBLISHED_SAMPLES / PUBLISHED_SAMPLE_RATE)
    padded = np.zeros((2, PUBLISHED_SAMPLES), dtype=np.float32)
    padded[:, : audio.shape[1]] = audio[:, :PUBLISHED_SAMPLES]
    return published_features(torch.from_numpy(padded))


class PublishedNet(nn.Module):
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


def train_published(inputs: Tensor, labels: Sequence[str], anchors: dict[str, int],
                    settings: PublishedSettings = PublishedSettings()) -> PublishedNet:
    """Random triplets: anchor = the composer's anchor file, positive = another file of theirs,
    negative = a file of another composer; one epoch draws as many triplets as there are files."""
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    labels_arr = np.asarray(labels)
    composers = sorted(anchors)
    model = PublishedNet()
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
def published_embed(model: PublishedNet, inputs: Tensor, batch: int = 16) -> np.ndarray:
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


def prepare_published_inputs(paths: Sequence[Path]) -> tuple[Tensor, list[int]]:
    """Inputs for every file that renders (the published pipeline dropped silent ones too)."""
    feats, ok = [], []
    for i, p in enumerate(paths):
        try:
            feats.append(published_input(p))
            ok.append(i)
        except (ReadError, RenderError):
            continue
    return torch.stack(feats) if feats else torch.zeros(0, 2, PUBLISHED_N_MELS, PUBLISHED_FRAMES), ok


# per left-out composer: novel track indices, their scores, known-test track indices, their scores
LocoScores = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train, calibration, known-test, novel


def run_published(paths: Sequence[Path], composers_of: Sequence[str], composers: Sequence[str], fold: np.ndarray,
                  folds: int, splits: dict[str, Split], epochs: int = 10,
                  ) -> tuple[dict[str, Any], tuple[np.ndarray, list[str], LocoScores]]:
    """The published method on eval's folds and leave-one-composer-out splits: its figures, and per
    track what they were computed from (tested track indices, their predicted composers, the
    novelty scores), for eval's paired intervals."""
    from .metrics import classification_report, loco_summary, open_set_figures

    inputs, ok = prepare_published_inputs(paths)
    row = {i: r for r, i in enumerate(ok)}  # track index -> row of inputs
    usable = np.array([i in row for i in range(len(paths))])

    def fit(train_idx: np.ndarray) -> tuple[PublishedNet, dict[str, int]]:
        train_idx = train_idx[usable[train_idx]]
        anchors = anchor_files(paths, composers_of, list(train_idx))
        model = train_published(inputs[[row[i] for i in train_idx]], [composers_of[i] for i in train_idx],
                                {c: list(train_idx).index(i) for c, i in anchors.items()},  # positions in the subset
                                PublishedSettings(epochs=epochs))
        return model, anchors

    def scores(model: PublishedNet, anchors: dict[str, int], idx: np.ndarray) -> tuple[list[str], np.ndarray]:
        idx = idx[usable[idx]]
        names = sorted(anchors)
        emb = published_embed(model, inputs[[row[i] for i in idx]])
        anchor_emb = published_embed(model, inputs[[row[anchors[c]] for c in names]])
        return nearest_anchor(emb, anchor_emb, names)

    tested: list[int] = []
    y_pred: list[str] = []
    for f in range(folds):
        model, anchors = fit(np.flatnonzero(fold != f))
        test = np.flatnonzero((fold == f) & usable)
        tested += test.tolist()
        y_pred += scores(model, anchors, test)[0]
    y_true = [composers_of[i] for i in tested]
    result: dict[str, Any] = {"method": "published attempt", "skipped_tracks": int((~usable).sum()),
                              "track": classification_report(y_true, y_pred, composers)}
    loco_scores: LocoScores = {}
    if splits:
        per = {}
        for c, (train_idx, _calib, known_test, novel_idx) in splits.items():
            model, anchors = fit(train_idx)
            _, nov = scores(model, anchors, novel_idx)
            _, kn = scores(model, anchors, known_test)
            per[c] = open_set_figures(nov.tolist(), kn.tolist(), PUBLISHED_THRESHOLD, 0)
            loco_scores[c] = (novel_idx[usable[novel_idx]], nov, known_test[usable[known_test]], kn)
        result["loco"] = loco_summary(per)
    return result, (np.asarray(tested, dtype=np.int64), y_pred, loco_scores)
