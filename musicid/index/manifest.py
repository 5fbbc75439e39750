"""An index's manifest: its settings and calibration as frozen dataclasses, and the JSON file that
only serialises them (validated once, on load).

    manifest.json
      format, format_version     "musicid-index", FORMAT_VERSION
      composers                  the indexed composers, in the order of every per-composer array
      settings                   IndexSettings: features, render, classifier, novelty, index_kind, group_by
      calibration                calibration.Calibration: threshold (and the fused score's scales)
      soundfont_sha              sha256 of the SoundFont the index was rendered with
      files                      sha256 of every data file
      ...                        what the index is (created, data_dir, counts, failures, model, machine,
                                 held-out figures, edits): read by people and `index info`, never as settings
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..choices import canonical
from ..errors import IndexCorrupt, IndexMismatch, IndexNotFound
from ..features.clips import FeatureSettings
from ..io.reader import READERS
from ..io.render import RenderSettings
from ..model.classifier import CLASSIFIERS
from .calibration import Calibration, NoveltySettings
from .faiss_index import INDEX_KINDS

FORMAT = "musicid-index"
FORMAT_VERSION = 6  # 5: typed settings, raw vectors kept beside FAISS, field names of 0.2; 6: piece sketches
LEGACY_CLASSIFIERS = {"vote": "knn", "head": "linear"}  # the names before 0.2 (--naming)


def classifier_name(name: str) -> str:
    """A classifier's name from its current or legacy name; ValueError for an unknown one."""
    return canonical(name, CLASSIFIERS, LEGACY_CLASSIFIERS, "classifier")


@dataclass(frozen=True)
class IndexSettings:
    """Everything that decides what an index answers, apart from its model and its tracks."""

    features: FeatureSettings
    render: RenderSettings = field(default_factory=RenderSettings)
    classifier: str = "linear"  # "knn" (vote of each clip's k nearest indexed clips), "linear" (a probe) or "fused"
    novelty: NoveltySettings = field(default_factory=NoveltySettings)
    index_kind: str = "flat"  # the FAISS index kind (faiss_index.INDEX_KINDS), resolved from "auto" at build
    group_by: str | None = None  # regex naming the work in a file path (dataset.work_key); reused by index add

    def __post_init__(self) -> None:
        object.__setattr__(self, "classifier", classifier_name(self.classifier))
        if self.index_kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.index_kind!r} ({', '.join(INDEX_KINDS)})")

    def as_dict(self) -> dict[str, Any]:
        return {"features": self.features.as_dict(), "render": asdict(self.render), "classifier": self.classifier,
                "novelty": asdict(self.novelty), "index_kind": self.index_kind, "group_by": self.group_by}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexSettings:
        """From as_dict's shape; KeyError, TypeError or ValueError when it is not that."""
        return cls(FeatureSettings.from_dict(d["features"]), RenderSettings(**d["render"]), d["classifier"],
                   NoveltySettings(**d["novelty"]), d["index_kind"], d.get("group_by"))


@dataclass(frozen=True)
class Manifest:
    """What manifest.json says, typed: settings and calibration to act on, the rest to show."""

    composers: tuple[str, ...]
    settings: IndexSettings
    calibration: Calibration
    soundfont_sha: str = ""
    about: dict[str, Any] = field(default_factory=dict)  # provenance and figures; never read as settings

    def as_dict(self) -> dict[str, Any]:
        """The JSON object manifest.json holds (without format and files: write_store adds them)."""
        return {**self.about, "composers": list(self.composers), "settings": self.settings.as_dict(),
                "calibration": self.calibration.as_dict(), "soundfont_sha": self.soundfont_sha}

    def with_about(self, **changes: Any) -> Manifest:
        return replace(self, about={**self.about, **changes})

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest.json") -> Manifest:
        """Validate a manifest read from disk; IndexMismatch for another format version, IndexCorrupt
        for anything malformed."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise IndexCorrupt(f"{where}: not a musicid index manifest")
        if d.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(f"{where}: index format {d.get('format_version')}, this musicid reads "
                                f"{FORMAT_VERSION}; rebuild the index with musicid index build")
        for key, ours in READERS.items():  # notes hashes and features from another reader would not match ours
            reader = d.get(key, 1 if key == "midi_reader" else 0)
            if reader != ours:
                what = "MIDI" if key == "midi_reader" else "score"
                raise IndexMismatch(f"{where}: built with an {'older' if reader < ours else 'newer'} {what} "
                                    "reader; rebuild with musicid index build")
        try:
            known = ("composers", "settings", "calibration", "soundfont_sha", "format", "format_version", "files",
                     *READERS)
            return cls(tuple(str(c) for c in d["composers"]), IndexSettings.from_dict(d["settings"]),
                       Calibration.from_dict(d["calibration"]), str(d.get("soundfont_sha", "")),
                       {k: v for k, v in d.items() if k not in known})
        except (KeyError, TypeError, ValueError) as e:
            raise IndexCorrupt(f"{where}: malformed manifest ({type(e).__name__}: {e})") from e


def read_manifest_file(path: Path) -> dict[str, Any]:
    """The manifest.json of an index directory as JSON; IndexNotFound / IndexCorrupt when there is none."""
    mf = path / "manifest.json"
    if not path.exists():
        raise IndexNotFound(f"no index at {path} (build one with: musicid index build DATA_DIR --out {path}; "
                            "or name one with --index or $MUSICID_INDEX)",
                            path=str(path))
    if not mf.exists():
        raise IndexNotFound(f"{path} is not a musicid index (no manifest.json)", path=str(path))
    try:
        d = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{mf}: unreadable manifest ({e})") from e
    if not isinstance(d, dict):
        raise IndexCorrupt(f"{mf}: not a musicid index manifest")
    return d
