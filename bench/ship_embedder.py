"""Put a checkpoint from `musicid embedder train` into the package as the shipped default embedder.

    python bench/ship_embedder.py general.pt

Re-saves it weights only (what `torch.load(weights_only=True)` reads), with the collections' paths
reduced to their folder names (a path on the training machine means nothing elsewhere; short_name), as
musicid/model/weights/composer-embedder.pt, and writes its card, composer-embedder.json, beside it
(shipped.write_card). Prints the size and the sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import torch

from musicid.atomic import write_bytes
from musicid.build.pretrain import collection_licence, weights_licence
from musicid.model.shipped import CHECKPOINT, write_card

GENERIC = {"train", "test", "data", "midi", "scores", "performances"}


def short_name(path: Path) -> str:
    """A collection's folder name, with its parent's where the name alone says nothing ("train")."""
    return f"{path.parent.name}/{path.name}" if path.name.lower() in GENERIC else path.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    args = ap.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    meta = dict(ckpt.get("meta", {}))
    if "collections" not in meta or "licence" not in meta:
        raise SystemExit(f"{args.checkpoint}: not from musicid embedder train (no collections or licence recorded)")
    # licences re-read where the collection is still here: what its catalogue declares now
    collections = [{**c, "licence": collection_licence(Path(c["path"])) if Path(c["path"]).is_dir() else c["licence"]}
                   for c in meta["collections"]]
    meta["licence"] = weights_licence([c["licence"] for c in collections])
    meta["collections"] = [{**c, "path": short_name(Path(c["path"]))} for c in collections]
    ckpt["meta"] = meta
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    data = buf.getvalue()
    CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(CHECKPOINT, data)
    sha = hashlib.sha256(data).hexdigest()
    card = write_card(CHECKPOINT, meta, ckpt["features"], sha)
    print(f"wrote {CHECKPOINT} ({len(data) / 1e6:.1f} MB, sha256 {sha[:12]}) and {card}")
    print(f"composers: {', '.join(meta['composers'])}")
    print(f"licence: {meta['licence']}")


if __name__ == "__main__":
    main()
