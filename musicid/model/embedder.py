"""The clip embedder: a small CNN over 30-s clips (piano roll or log-mel) whose output is a unit vector,
trained with a triplet loss (training.py); embedding clips and tracks; checkpoints.

Sizes live in EmbedderDims; a checkpoint is {"dims", "features", "state_dict",
"composers", "meta"} and loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..atomic import write_bytes
from ..errors import IndexMismatch
from ..features.clips import FeatureSettings
from ..progress import ProgressFn


@dataclass(frozen=True)
class EmbedderDims:
    n_bins: int = 96  # rows of a clip, all planes together
    in_channels: int = 1  # planes stacked in those rows (the family rolls' instrument families)
    width: int = 24  # channels of the first block; doubled at each of the next
    n_blocks: int = 4
    embed_dim: int = 128


def dims_for(dims: EmbedderDims, features: FeatureSettings) -> EmbedderDims:
    """dims shaped for what the input representation produces: its rows, and the planes stacked in them."""
    return replace(dims, n_bins=features.n_bins, in_channels=features.channels)


class Embedder(nn.Module):
    def __init__(self, dims: EmbedderDims):
        super().__init__()
        if dims.n_bins % dims.in_channels:
            raise ValueError(f"{dims.n_bins} rows do not split into {dims.in_channels} planes")
        self.dims = dims
        layers: list[nn.Module] = [
            nn.Conv2d(dims.in_channels, dims.width, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(dims.width),
            nn.ReLU(inplace=True),
        ]
        c = dims.width
        for i in range(dims.n_blocks):
            out = dims.width * 2 ** min(i + 1, 3)
            layers += [
                nn.Conv2d(c, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            if i < dims.n_blocks - 1:
                layers.append(nn.MaxPool2d(2))
            c = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, dims.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, n_bins, frames) clips (log-mel or piano roll) -> (batch, embed_dim) unit vectors."""
        x = x - x.mean(dim=(-2, -1), keepdim=True)  # invariant to overall loudness
        x = x.reshape(x.shape[0], self.dims.in_channels, -1, x.shape[-1])  # (batch, planes, rows, frames)
        h = self.body(x.contiguous(memory_format=torch.channels_last))
        h = h.mean(dim=2)  # pool frequency: (batch, channels, time)
        h = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return F.normalize(self.head(h), dim=-1)


@torch.inference_mode()
def embed_clips(model: Embedder, clips: Tensor, batch_size: int = 64) -> np.ndarray:
    """(n, n_bins, frames) clips -> (n, embed_dim) float32 unit vectors."""
    model.eval()
    out = [model(clips[i:i + batch_size].float()) for i in range(0, len(clips), batch_size)]
    if not out:
        return np.zeros((0, model.dims.embed_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def embed_tracks(model: Embedder, clips: list[np.ndarray], progress: ProgressFn | None = None,
                 stage: str = "embed") -> list[np.ndarray]:
    """Each track's clip vectors: clips[i] (n_clips, n_bins, frames) -> (n_clips, embed_dim) float32,
    one track after another, reporting progress as `stage`."""
    out = []
    for n, c in enumerate(clips):
        out.append(embed_clips(model, torch.from_numpy(c)))
        if progress:
            progress(stage, n + 1, len(clips))
    return out


def save_checkpoint(path: Path, model: Embedder, features: FeatureSettings,
                    meta: dict[str, Any] | None = None, background: dict[str, Any] | None = None) -> str:
    """Write the checkpoint atomically; return the sha256 of its bytes. background: a general
    embedder's background tracks (background.Background.to_checkpoint)."""
    buf = io.BytesIO()
    torch.save({
        "dims": asdict(model.dims),
        "features": features.as_dict(),
        "state_dict": model.state_dict(),
        "meta": meta or {},
        **({"background": background} if background else {}),
    }, buf)
    data = buf.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def weights_digest(model: Embedder) -> str:
    """sha256 of a model's weights (its state dict's tensors, in order): names a starting point
    that is not a file, such as a general embedder eval fine-tunes."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: Path) -> tuple[Embedder, FeatureSettings, dict[str, Any]]:
    """Load a checkpoint without unpickling arbitrary objects."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        dims = EmbedderDims(**{("n_bins" if k == "n_mels" else k): v for k, v in ckpt["dims"].items()})
        features = FeatureSettings.from_dict(ckpt["features"])
        model = Embedder(dims)
        model.load_state_dict(ckpt["state_dict"])
    except FileNotFoundError:
        raise IndexMismatch(f"model checkpoint not found: {path}") from None
    except Exception as e:
        raise IndexMismatch(f"not a musicid model checkpoint: {path} ({type(e).__name__})") from e
    model.eval()
    return model.to(memory_format=torch.channels_last), features, dict(ckpt.get("meta", {}))  # type: ignore[call-overload]


def check_features_match(model_features: FeatureSettings, features: FeatureSettings, what: str) -> None:
    if model_features != features:
        diff = [k for k, v in model_features.as_dict().items() if features.as_dict().get(k) != v]
        raise IndexMismatch(f"{what}: feature settings differ from the model's ({', '.join(diff)})")
