"""Print the many-composer protocols' reserve (protocols.draw_reserve), one composer a line: the
composers `musicid embedder train --hold-out FILE` keeps out of a general embedder's training.

    python bench/reserve.py ALL [--seed 0] > reserve.txt

ALL: the handed collections linked under one root (bash bench/link_collections.sh DATA ALL).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from musicid.collection.catalogue import catalogue
from musicid.collection.dataset import scan_labelled
from musicid.evaluation.protocols import draw_reserve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    refs, _ = scan_labelled(args.root, min_composers=1)
    reserve = draw_reserve(catalogue([r.path for r in refs], [str(r.composer) for r in refs]), args.seed)
    print("\n".join(reserve.composers))


if __name__ == "__main__":
    main()
