"""Split the demo's exported corpus into an index folder and a test folder, whole works only.

    python scripts/demo_split.py CORPUS_DIR TRAIN_DIR TEST_DIR [--group-by REGEX] [--fraction F]

About F of each composer's files go to TEST_DIR as known-<Composer>-<file>.mid, chosen the way
`musicid index build` holds works out (musicid.collection.dataset.holdout_split): every movement of a held-out
work goes with it, so no test track shares a work with an indexed one. Both folders are emptied first.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from musicid.collection.dataset import group_works, holdout_split, work_key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("train", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("--group-by", default=None, help="the same regex given to index build")
    ap.add_argument("--fraction", type=float, default=0.125)
    args = ap.parse_args()
    files = sorted(args.corpus.glob("*/*.mid"))
    composers = [f.parent.name for f in files]
    groups = group_works([work_key(f, c, args.group_by, f.parent) for f, c in zip(files, composers, strict=True)],
                         [str(f) for f in files])
    held = holdout_split(composers, groups, args.fraction, seed=0)
    for d in (args.train, args.test):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for f, c, h in zip(files, composers, held, strict=True):
        if h:
            shutil.copyfile(f, args.test / f"known-{c}-{f.name}")
        else:
            (args.train / c).mkdir(exist_ok=True)
            shutil.copyfile(f, args.train / c / f.name)
    n_works = len(np.unique(groups[held]))
    print(f"{int(held.sum())} of {len(files)} files ({n_works} works) held out to {args.test}")


if __name__ == "__main__":
    main()
