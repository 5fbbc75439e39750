"""On-disk cache of rendered tracks' spectrograms, keyed by file content + settings.

Each entry is one .npz written to a temporary name and renamed into place, so
a killed build never leaves a half-written entry under a real key; an entry
that fails to load is deleted and treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_with

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("MUSICID_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "musicid"


def settings_digest(settings: dict[str, Any]) -> str:
    """Key of cached features and models: the settings, and the readers that read the notes (MIDI and
    score: a new reader can give other notes, times or notes_hashes: its entries never mix with old)."""
    from ..io.reader import READERS

    blob = json.dumps({"v": CACHE_VERSION, **READERS, **settings}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class FeatureCache:
    """Spectrograms by (file sha256, settings digest). A None directory disables it."""

    @classmethod
    def for_tracks(cls, directory: Path | None, render: Any, features: Any) -> FeatureCache:
        """The cache of tracks prepared with these render.RenderSettings and clips.FeatureSettings:
        the one key every build, edit, evaluation and Ray worker uses."""
        return cls(directory, {"render": render.identity(), "features": features.as_dict()})

    def __init__(self, directory: Path | None, settings: dict[str, Any]):
        self.directory = directory
        self.digest = settings_digest(settings)

    def _path(self, file_sha: str) -> Path:
        assert self.directory is not None
        return self.directory / self.digest / file_sha[:2] / f"{file_sha}.npz"

    def get(self, file_sha: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        if self.directory is None:
            return None
        path = self._path(file_sha)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                spec = z["spec"]
                meta = json.loads(str(z["meta"]))
            return spec, meta
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError):
            path.unlink(missing_ok=True)  # damaged: never read as good
            return None

    def put(self, file_sha: str, spec: np.ndarray, meta: dict[str, Any]) -> None:
        if self.directory is None:
            return
        path = self._path(file_sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda tmp: np.savez(tmp, spec=spec, meta=np.array(json.dumps(meta))))
