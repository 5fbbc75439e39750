"""What makes two files or two settings the same: the stable keys of caches, checkpoints and manifests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """The file's sha256, hex, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def without_later_defaults(settings: dict[str, Any], added_later: dict[str, Any]) -> dict[str, Any]:
    """settings without those added after caches and models were first keyed, while they hold
    the value that behaves as before: keys made before the setting existed stay valid."""
    return {k: v for k, v in settings.items() if k not in added_later or v != added_later[k]}
