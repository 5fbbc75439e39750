"""Recompute a general embedder's background (its training tracks' unit mean clip vectors, composers
and, since 2026-12-02, symbolic features) with the checkpoint's own weights, and write the checkpoint anew.

    python bench/rebackground.py general.pt DATA_DIR... [--out new.pt] [--cache-dir DIR]

DATA_DIR...: the collections it was trained on, in the order `musicid embedder train` was given them
(the checkpoint records them). The weights are not touched. Refuses when the collections do not give
the checkpoint's track counts, or when the recomputed vectors differ from the recorded ones by more
than float16 rounding (another model, or other data): the background must be the same tracks.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from musicid.atomic import write_bytes
from musicid.build.corpus import BuildOptions
from musicid.build.pretrain import embed_background, prepare_collections
from musicid.model.background import Background
from musicid.model.embedder import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("data_dirs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, help="where to write it (default: over the checkpoint)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    model, features, meta = load_checkpoint(args.checkpoint)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    old = Background.from_checkpoint(ckpt["background"])
    options = replace(BuildOptions(cache_dir=args.cache_dir), features=features, dims=model.dims)
    prepared, composers_of, collections, _ = prepare_collections(args.data_dirs, options)
    recorded = [c["tracks"] for c in meta.get("collections", [])]
    if [c["tracks"] for c in collections] != recorded:
        raise SystemExit(f"the collections give {[c['tracks'] for c in collections]} tracks, the checkpoint "
                         f"records {recorded}: not the data it was trained on (or not in that order)")
    new = embed_background(model, prepared, composers_of)
    gap = float(np.abs(new.vectors - old.vectors).max())
    if new.composers != old.composers or not np.array_equal(new.labels, old.labels) or gap > 5e-3:
        raise SystemExit(f"the recomputed background differs from the recorded one (largest gap {gap:.4f})")
    ckpt["background"] = replace(new, vectors=old.vectors).to_checkpoint()  # the recorded vectors, bit for bit
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    out = args.out or args.checkpoint
    write_bytes(out, buf.getvalue())
    print(f"wrote {out}: background of {len(new)} tracks, symbolic features {new.symbolic.shape} "
          f"(largest vector gap {gap:.5f})")


if __name__ == "__main__":
    main()
