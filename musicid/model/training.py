"""Training the clip embedder: P composers x K clips a batch, a triplet loss (FaceNet, Schroff et al.,
CVPR 2015; batch-all and batch-hard mining, Hermans et al., "In Defense of the Triplet Loss for Person
Re-Identification", 2017), optionally with a CosFace margin softmax over the training composers (Wang
et al., CVPR 2018), a domain adversary (a classifier of each clip's collection or genre whose gradient
is reversed into the embedder; Ganin and Lempitsky, "Unsupervised Domain Adaptation by
Backpropagation", ICML 2015), transposition, time-stretch and voice-dropout augmentation (augment.py),
and a resumable state after every epoch (step, losses, weights, optimiser, schedule, proxies, the
adversary and every random generator: a resumed run is the uninterrupted one, draw for draw).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..atomic import write_bytes
from ..errors import TrainingError
from ..progress import ProgressFn
from .augment import augment, crop_lengths, drop_voices, stretched_crop
from .embedder import Embedder, EmbedderDims
from .sampling import collection_balanced_pick, composer_weights, spread_pick


@dataclass(frozen=True)
class TrainSettings:
    """Batch-hard triplet training (Hermans et al., 2017): P composers x K clips a batch."""

    epochs: int = 12
    steps_per_epoch: int = 40
    composers_per_batch: int = 4  # P (capped at the number of composers)
    clips_per_composer: int = 12  # K
    crop_frames: int = 256  # random ~10 s crops of the 30 s clips while training
    lr: float = 2e-3
    weight_decay: float = 1e-4
    mining: str = "batch-all"  # or "batch-hard"
    margin: float = 0.2  # batch-hard with margin 0 uses the soft margin log(1 + exp(d_ap - d_an))
    seed: int = 0
    threads: int = 0  # torch threads while training; 0 = all cores
    pitch_shift: int = 2  # augmentation: rows (mel bins, or semitones of a piano roll) a batch may move
    anchor: float = 0.0  # from a starting model: L2-SP weight on the squared distance to its weights
    time_stretch: float = 0.0  # augmentation: each crop's tempo scaled by up to 1 + this, either way
    cosface: float = 0.0  # weight of a CosFace term over the training composers, added to the triplet loss
    balance_collections: bool = False  # a composer's K clips drawn evenly from each collection that holds it
    domains: str = "collection"  # what balance_collections balances over: "collection" or "genre" (catalogue.py)
    spread_works: bool = False  # a composer's K clips drawn from as many of its works as it has (spread_pick)
    composer_weighting: str = "uniform"  # or "sqrt-works": a composer drawn for P in proportion to sqrt(works)
    voice_dropout: float = 0.0  # augmentation: the chance a crop loses one voice (augment.drop_voices; rolls only)
    domain_adversary: float = 0.0  # weight of the reversed gradient of a domain classifier (the domains' ids)

    def __post_init__(self) -> None:
        if self.domains not in ("collection", "genre"):
            raise ValueError(f"unknown training domains {self.domains!r} (collection, genre)")
        if self.composer_weighting not in ("uniform", "sqrt-works"):
            raise ValueError(f"unknown composer weighting {self.composer_weighting!r} (uniform, sqrt-works)")
        if not 0.0 <= self.voice_dropout <= 1.0:
            raise ValueError(f"voice dropout is a probability, not {self.voice_dropout}")
        if self.domain_adversary < 0.0:
            raise ValueError(f"the domain adversary's weight cannot be negative ({self.domain_adversary})")


FINE_TUNE_ANCHOR = 0.01  # L2-SP weight for --fine-tune (docs/RESULTS.md, 2026-12-01)


def fine_tuning(train: TrainSettings) -> TrainSettings:
    """The settings `--fine-tune` goes on training a general embedder with: train's, plus an L2-SP
    penalty, anchor * sum((w - w_start)^2) over every weight (Li, Grandvalet & Davoine, "Explicit
    inductive bias for transfer learning with convolutional networks", ICML 2018), so that what the
    general training learned of composers the index does not hold is not trained away. It holds
    the weights only: BatchNorm's running statistics still move to the index's own tracks.
    Measured on the challenge set (docs/RESULTS.md, 2026-12-01): without it, leave-one-composer-out
    AUROC fell from 0.775 to 0.741 while naming rose; with 0.01 it stays at 0.780. An anchor
    already set is kept (0 reads as unset: free fine-tuning is not offered)."""
    return train if train.anchor else replace(train, anchor=FINE_TUNE_ANCHOR)


def pairwise_distances(emb: Tensor) -> Tensor:
    """Euclidean distances between rows of unit vectors, shape (n, n)."""
    sim = emb @ emb.T
    return torch.sqrt(torch.clamp(2.0 - 2.0 * sim, min=1e-12))


def batch_hard_triplet_loss(emb: Tensor, labels: Tensor, margin: float = 0.0) -> Tensor:
    """For each anchor: its farthest positive against its nearest negative.

    margin 0 selects the soft-margin form log(1 + exp(d_ap - d_an)).
    """
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    d_ap = (d * (same & ~eye)).amax(dim=1)
    d_an = d.masked_fill(same, float("inf")).amin(dim=1)
    valid = torch.isfinite(d_an) & (same & ~eye).any(dim=1)
    if not valid.any():
        raise TrainingError("a batch needs two composers and two clips of one composer")
    gap = (d_ap - d_an)[valid]
    return F.softplus(gap).mean() if margin <= 0 else F.relu(gap + margin).mean()


def batch_all_triplet_loss(emb: Tensor, labels: Tensor, margin: float = 0.2) -> Tensor:
    """Every valid (anchor, positive, negative) in the batch; mean over the triplets still active.

    Stabler than batch-hard when one composer's clips are as varied as the gap between
    composers (a piano sonata and a wind octet by one composer): it cannot collapse to
    the trivial solution, since easy triplets keep pulling.
    """
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    if not valid.any():
        raise TrainingError("a batch needs two composers and two clips of one composer")
    gap = d[:, :, None] - d[:, None, :]
    losses = F.relu(gap + margin)[valid]
    active = losses > 1e-6
    return losses[active].mean() if active.any() else losses.sum()


COSFACE_SCALE = 16.0  # s: CosFace's logit scale
COSFACE_MARGIN = 0.2  # m: subtracted from the cosine to the clip's own composer


def cosface_loss(emb: Tensor, labels: Tensor, proxies: Tensor, scale: float = COSFACE_SCALE,
                 margin: float = COSFACE_MARGIN) -> Tensor:
    """Large-margin cosine loss (Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
    Recognition", CVPR 2018): cross-entropy over scale * cos(emb, proxy of each composer), less
    margin for the clip's own. emb: (batch, dim) unit vectors; labels: (batch,) indices into
    proxies (n_composers, dim), learnt with the embedder and thrown away after training. Unlike
    triplets, every step sees every training composer, not the batch's P."""
    cos = emb @ F.normalize(proxies, dim=-1).T
    logits = scale * (cos - margin * F.one_hot(labels, len(proxies)).to(cos.dtype))
    return F.cross_entropy(logits, labels)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: Tensor, weight: float) -> Tensor:
    """The gradient reversal layer (Ganin and Lempitsky, ICML 2015): x unchanged going forward, the
    gradient multiplied by -weight going back, so that what minimises a classifier's loss above it
    maximises that loss for the layers below."""
    out: Tensor = _ReverseGradient.apply(x, weight)
    return out


def adversary_weight(step: int, total: int, weight: float) -> float:
    """The reversed gradient's weight at `step` of `total`: weight * (2 / (1 + exp(-10 p)) - 1), p the
    share of training done, rising from 0 so that the adversary does not act on an embedding that
    has learnt nothing yet (Ganin and Lempitsky, 2015)."""
    return weight * (2.0 / (1.0 + np.exp(-10.0 * step / max(total, 1))) - 1.0)


ADVERSARY_HIDDEN = 64  # the domain classifier's hidden units


def domain_classifier(embed_dim: int, n_domains: int) -> nn.Sequential:
    """The adversary: an MLP from a unit embedding (embed_dim,) to n_domains logits, thrown away after
    training."""
    return nn.Sequential(nn.Linear(embed_dim, ADVERSARY_HIDDEN), nn.ReLU(), nn.Linear(ADVERSARY_HIDDEN, n_domains))


@dataclass
class TrainReport:
    seconds: float
    steps: int
    clips_seen: int
    final_loss: float
    losses: list[float] = field(default_factory=list)


def train_embedder(
    clips: Tensor,
    labels: np.ndarray,
    dims: EmbedderDims = EmbedderDims(),
    settings: TrainSettings = TrainSettings(),
    progress: ProgressFn | None = None,
    init: Embedder | None = None,
    collections: np.ndarray | None = None,
    works: np.ndarray | None = None,
    resume: Path | None = None,
) -> tuple[Embedder, TrainReport]:
    """Train on clips (n, n_bins, frames) with integer composer labels (n,); P composers x K clips a
    batch, triplet loss (settings.mining). init: start from this model's weights (fine-tuning; its
    dims are used, `dims` is ignored). collections (n,): each clip's collection, integer; with
    settings.balance_collections a composer's K clips are dealt evenly over the collections that
    hold it (collection_balanced_pick), so that its positives span them; with settings.domain_adversary
    they are the domains a reversed-gradient classifier learns to tell apart (domain_classifier), so
    that the embedding is pushed to carry none of them. works (n,): each clip's work,
    integer; with settings.spread_works they are also spread over the composer's works (spread_pick),
    and settings.composer_weighting may weigh the draw of composers by their works. resume: a file
    where the whole training state (weights, optimiser, schedule, random generators, losses) is
    written atomically after every epoch and from which a later call with the same data and settings
    goes on, draw for draw as if never stopped; the caller deletes it when done (model_cache keys it
    like the model). Raises TrainingError with fewer than two composers, or with a domain adversary
    and fewer than two domains."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise TrainingError("training needs at least two composers (triplets need a negative)")
    domain_of = None
    if settings.domain_adversary:
        if collections is None or len(np.unique(collections)) < 2:
            raise TrainingError("a domain adversary needs clips of two domains or more (collections or genres)")
        domain_of = torch.from_numpy(np.searchsorted(np.unique(collections), collections))
    if collections is None or not settings.balance_collections:
        collections = np.zeros(len(labels), dtype=np.int64)
    by_class = {int(c): [np.flatnonzero((labels == c) & (collections == d))
                         for d in np.unique(collections[labels == c])] for c in classes}
    if settings.spread_works and works is not None:
        by_work = {int(c): [[pool[works[pool] == w] for w in np.unique(works[pool])] for pool in pools]
                   for c, pools in by_class.items()}

        def pick(c: int) -> np.ndarray:
            return spread_pick(rng, by_work[c], k)
    else:
        def pick(c: int) -> np.ndarray:
            return collection_balanced_pick(rng, by_class[c], k)
    weights = composer_weights(labels, works, classes, settings.composer_weighting)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    old_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if init is not None:
        dims = init.dims
    model = Embedder(dims)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    start = [w.detach().clone() for w in model.parameters()] if init is not None and settings.anchor else []
    total_steps = settings.epochs * settings.steps_per_epoch
    proxies = None  # CosFace's, one per training composer
    if settings.cosface:
        proxies = nn.Parameter(0.01 * torch.randn(len(classes), dims.embed_dim, generator=gen))
    adversary = domain_classifier(dims.embed_dim, int(domain_of.max()) + 1) if domain_of is not None else None
    params = list(model.parameters()) + ([proxies] if proxies is not None else []) + \
        (list(adversary.parameters()) if adversary is not None else [])
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=total_steps, pct_start=0.15)
    p = min(settings.composers_per_batch, len(classes))
    k = settings.clips_per_composer
    crop = min(settings.crop_frames, clips.shape[-1])
    losses: list[float] = []
    first = 0
    if resume is not None and resume.exists():
        first, losses = _load_state(resume, model, opt, sched, proxies, rng, gen, adversary)
    t0 = time.monotonic()
    model.train()
    try:
        for step in range(first, total_steps):
            chosen = rng.choice(classes, size=p, replace=False, p=weights)
            idx = np.concatenate([pick(int(c)) for c in chosen])
            sources = crop_lengths(rng, len(idx), crop, clips.shape[-1], settings.time_stretch)
            starts = rng.integers(0, clips.shape[-1] - sources + 1)
            batch = torch.stack([stretched_crop(clips[i], s, n, crop)
                                 for i, s, n in zip(idx, starts, sources, strict=True)])
            if settings.voice_dropout:
                batch = drop_voices(batch, gen, settings.voice_dropout, dims.in_channels)
            batch = augment(batch, gen, settings.pitch_shift, dims.in_channels)
            batch_labels = np.repeat(chosen, k)
            y = torch.from_numpy(batch_labels)
            emb = model(batch)
            triplet = LOSSES[settings.mining](emb, y, settings.margin)
            loss = triplet
            if proxies is not None:
                index = torch.from_numpy(np.searchsorted(classes, batch_labels))  # rows of proxies
                loss = loss + settings.cosface * cosface_loss(emb, index, proxies)
            if adversary is not None and domain_of is not None:
                reversed_emb = reverse_gradient(emb, adversary_weight(step, total_steps, settings.domain_adversary))
                loss = loss + F.cross_entropy(adversary(reversed_emb), domain_of[torch.from_numpy(idx)])
            if start:  # L2-SP
                drift = sum(((w - w0) ** 2).sum() for w, w0 in zip(model.parameters(), start, strict=True))
                loss = loss + settings.anchor * drift
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(triplet.item())  # the triplet loss alone, comparable with and without the pull
            if progress:
                progress("train", step + 1, total_steps)
            if resume is not None and (step + 1) % settings.steps_per_epoch == 0 and step + 1 < total_steps:
                _save_state(resume, step + 1, losses, model, opt, sched, proxies, rng, gen, adversary)
    finally:
        torch.set_num_threads(old_threads)
    model.eval()
    tail = losses[-settings.steps_per_epoch:]
    report = TrainReport(time.monotonic() - t0, total_steps, total_steps * p * k,
                         float(np.mean(tail)), losses)
    return model, report


def _save_state(path: Path, step: int, losses: list[float], model: Embedder, opt: torch.optim.Optimizer,
                sched: Any, proxies: Tensor | None, rng: np.random.Generator, gen: torch.Generator,
                adversary: nn.Module | None = None) -> None:
    """The training state after `step` steps, written atomically (weights-only loadable)."""
    buf = io.BytesIO()
    torch.save({"step": step, "losses": torch.tensor(losses, dtype=torch.float64), "model": model.state_dict(),
                "opt": opt.state_dict(), "sched": sched.state_dict(),
                "proxies": proxies.detach() if proxies is not None else None,
                "adversary": adversary.state_dict() if adversary is not None else None,
                "numpy_rng": json.dumps(rng.bit_generator.state), "torch_gen": gen.get_state(),
                "torch_rng": torch.get_rng_state()}, buf)
    write_bytes(path, buf.getvalue())


def _load_state(path: Path, model: Embedder, opt: torch.optim.Optimizer, sched: Any, proxies: Tensor | None,
                rng: np.random.Generator, gen: torch.Generator,
                adversary: nn.Module | None = None) -> tuple[int, list[float]]:
    """Restore what _save_state wrote; returns (steps done, losses so far). TrainingError when the
    file does not fit this training (another model shape or loss)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if (proxies is None) != (state["proxies"] is None):
            raise ValueError("the CosFace term differs")
        if proxies is not None:
            with torch.no_grad():
                proxies.copy_(state["proxies"])
        if (adversary is None) != (state.get("adversary") is None):  # states written before 0.5.2 keep none
            raise ValueError("the domain adversary differs")
        if adversary is not None:
            adversary.load_state_dict(state["adversary"])
    except Exception as e:
        raise TrainingError(f"cannot resume training from {path} ({e}); delete it to start again") from e
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    gen.set_state(state["torch_gen"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), [float(x) for x in state["losses"]]


LOSSES = {"batch-all": batch_all_triplet_loss, "batch-hard": batch_hard_triplet_loss}
