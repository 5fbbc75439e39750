"""The default composer embedder that ships inside the package (`musicid/model/weights/`).

`musicid index build DIR` enrols DIR's composers with it, without training (FaceNet's way: Schroff
et al., CVPR 2015): it was trained once, by `musicid embedder train`, on every composer of the
collections its card names. `--train` trains a per-index embedder instead; `--model M` enrols with
another checkpoint; `--fine-tune` goes on training the starting model on DIR's composers.

The checkpoint is weights only (loaded with `torch.load(weights_only=True)`). Beside it,
`composer-embedder.json` describes it without loading torch: its feature settings (a shipped model
serves only the representation it was trained on), training collections, their licences and the
licence that follows for the weights (CC BY-NC-SA 4.0: ASAP and DCML are NonCommercial-ShareAlike).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent / "weights"
CHECKPOINT = MODELS_DIR / "composer-embedder.pt"
CARD = MODELS_DIR / "composer-embedder.json"


@cache
def model_card() -> dict[str, Any]:
    """What the shipped embedder is: {"features", "composers", "collections", "licence", "train", ...};
    {} when the package carries none."""
    if not (CHECKPOINT.is_file() and CARD.is_file()):
        return {}
    data: dict[str, Any] = json.loads(CARD.read_text())
    return data


def default_model(features: dict[str, Any]) -> Path | None:
    """The shipped checkpoint when it was trained on exactly these feature settings
    (FeatureSettings.as_dict()), else None (e.g. `--features audio`: that route trains per index)."""
    card = model_card()
    return CHECKPOINT if card and card.get("features") == features else None


def write_card(checkpoint: Path, meta: dict[str, Any], features: dict[str, Any], sha256: str) -> Path:
    """Write the card beside a checkpoint about to ship (`bench/ship_embedder.py`): its settings and
    provenance from the checkpoint's meta. Returns the card's path."""
    from ..atomic import write_json

    card = checkpoint.with_suffix(".json")
    write_json(card, {
        "kind": "musicid shipped composer embedder", "checkpoint": checkpoint.name, "sha256": sha256,
        "features": features, **{k: meta[k] for k in ("composers", "collections", "licence", "train",
                                                       "train_report", "musicid", "background",
                                                       "held_out_composers", "genres", "works") if k in meta},
    })
    return card


def describe_model(path: Path | None = None) -> dict[str, Any]:
    """What an embedder checkpoint says it is (`musicid embedder info`): the shipped one's card when
    path is None, else the checkpoint's meta (composers, collections, licence, training), feature
    settings and background size. Raises IndexMismatch for a file that is not a musicid checkpoint,
    DataDirError when the package carries no shipped embedder."""
    if path is None:
        card = model_card()
        if not card:
            from ..errors import DataDirError

            raise DataDirError(f"this musicid carries no shipped embedder ({CHECKPOINT} is missing)")
        return {"path": str(CHECKPOINT), "shipped": True, **card}
    from .background import load_background
    from .embedder import load_checkpoint

    model, features, meta = load_checkpoint(path)
    background = load_background(path)
    return {"path": str(path), "shipped": False, "features": features.as_dict(), "dims": asdict(model.dims),
            **{k: v for k, v in meta.items() if k != "background"},
            "background": background.summary() if background is not None else None}
