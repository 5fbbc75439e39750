"""A general composer embedder: trained once on many labelled collections, then used to *enrol* any
folder's composers without training (`musicid index build --model MODEL`).

This is FaceNet's way (Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face
Recognition and Clustering", CVPR 2015): a triplet-trained embedding learnt on many identities, in
which new identities are enrolled by their vectors alone and a query far from every enrolled one is
unknown. Composers are identities by folder name across collections (ASAP's Beethoven and DCML's
are one composer). The checkpoint records what it was trained on, and the licence that follows for
the weights: a model trained on a CC BY-NC-SA collection carries its terms.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..collection.catalogue import CATALOGUE_FILE, TrackInfo, catalogue
from ..errors import DataDirError
from ..features.prepare import Prepared
from ..model.background import Background, background_of
from ..model.embedder import Embedder, dims_for, embed_tracks, save_checkpoint
from ..model.training import TrainReport
from ..progress import ProgressFn
from ..vectors import mean_vector
from .corpus import BuildOptions, prepare_corpus
from .model_cache import train_or_load

LICENCE_FILES = ("LICENSE.md", "LICENSE", "LICENSE.txt", "LICENCE.md", "LICENCE")
NON_COMMERCIAL = "CC BY-NC-SA 4.0"


def collection_licence(root: Path) -> str:
    """The licence a collection declares: the SPDX identifiers of its catalogue's `licence` column
    (metadata.csv, catalogue.py: "CC0-1.0", "CC-BY-4.0"), else the first line of its LICENSE file, or
    the README paragraph or heading that starts with "Licence"/"License"; "" when it declares none."""
    catalogue_file = root / CATALOGUE_FILE
    if catalogue_file.is_file():
        with catalogue_file.open(newline="", encoding="utf-8") as fh:
            spdx = sorted({(row.get("licence") or "").strip() for row in csv.DictReader(fh)} - {""})
        if spdx:
            return "; ".join(spdx)
    for name in LICENCE_FILES:
        f = root / name
        if f.is_file():
            for line in f.read_text(errors="replace").splitlines():
                if line.strip():
                    return line.strip().lstrip("#").strip()
    readme = root / "README.md"
    if readme.is_file():  # a paragraph or heading that starts "Licence" / "License"
        for line in readme.read_text(errors="replace").splitlines():
            text = line.strip().lstrip("*#- ").strip()
            if text.lower().startswith(("licence", "license")):
                return text
    return ""


def weights_licence(licences: list[str]) -> str:
    """The terms the trained weights carry: CC BY-NC-SA 4.0 when any collection is NonCommercial-
    ShareAlike (its terms follow what is derived from it), else the collections' own, listed."""
    if any("NonCommercial" in x or "BY-NC" in x for x in licences):
        return f"{NON_COMMERCIAL} (derived from a CC BY-NC-SA collection: non-commercial use, share alike)"
    named = sorted({part.strip() for x in licences for part in x.split(";") if part.strip()})
    return "; ".join(named) if named else "unknown: the training collections declare no licence"


@dataclass
class PretrainReport:
    out: Path
    composers: list[str]
    tracks_per_composer: dict[str, int]
    collections: list[dict[str, Any]]  # path, licence, tracks, composers
    licence: str  # what the weights carry
    failures: list[tuple[str, str]]
    train: TrainReport | None
    from_cache: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        if self.train is not None:
            d["train"] = {**asdict(self.train), "losses": []}
        return d


def prepare_collections(data_dirs: list[Path], options: BuildOptions, progress: ProgressFn | None = None
                        ) -> tuple[list[Prepared], list[str], list[dict[str, Any]], list[tuple[str, str]]]:
    """Every usable track of the labelled collections, in order: (prepared tracks, composer folder
    name of each, one {path, licence, tracks, composers} per collection, (collection/path, reason)
    per skipped file). Raises DataDirError for a folder that is not a labelled collection."""
    prepared: list[Prepared] = []
    composers_of: list[str] = []
    collections: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    for root in data_dirs:
        root = Path(root)
        corpus, _, _ = prepare_corpus(root, options, None, progress, min_composers=1)
        prepared += corpus.prepared
        composers_of += corpus.composers_of
        failures += [(f"{root.name}/{p}", r) for p, r in corpus.failures]
        collections.append({"path": str(root.resolve()), "licence": collection_licence(root),
                            "tracks": len(corpus.prepared), "composers": corpus.composers})
    return prepared, composers_of, collections, failures


def collection_of(collections: list[dict[str, Any]]) -> list[int]:
    """Each prepared track's collection, as its position in prepare_collections' collections (whose
    tracks come in that order)."""
    return [i for i, c in enumerate(collections) for _ in range(c["tracks"])]


def embed_background(model: Embedder, prepared: list[Prepared], composers_of: list[str],
                     progress: ProgressFn | None = None) -> Background:
    """The background a general embedder keeps (background.py): each training track's unit mean
    clip vector under `model`, with its composer, its symbolic features and its piece sketch's first slots."""
    vectors = [mean_vector(v) for v in embed_tracks(model, [p.clips for p in prepared], progress, "background")]
    return background_of(np.stack(vectors) if vectors else np.zeros((0, model.dims.embed_dim)), composers_of,
                         np.stack([p.symbolic for p in prepared]) if prepared else None,
                         np.stack([p.sketch for p in prepared]) if prepared else None)


def dense_ids(values: Sequence[str]) -> list[int]:
    """Each value's position among the distinct values, sorted: the integer labels training takes."""
    position = {v: n for n, v in enumerate(sorted(set(values)))}
    return [position[v] for v in values]


def training_domains(infos: list[TrackInfo], collection_ids: list[int], domains: str) -> list[int]:
    """Each track's domain for balanced batches (TrainSettings.domains, which validates it): its
    collection's position, or its genre's (catalogue.py) among the genres present, sorted."""
    return collection_ids if domains == "collection" else dense_ids([i.genre for i in infos])


def train_general_embedder(data_dirs: list[Path], out: Path, options: BuildOptions = BuildOptions(),
                           progress: ProgressFn | None = None, hold_out: Sequence[str] = ()) -> PretrainReport:
    """Train one embedder on every track of every labelled collection given (`<root>/<Composer>/...`)
    and write it to `out` (weights only, with its provenance in the checkpoint's meta).

    hold_out: composers kept out of its training and its background altogether (by label, any case),
    for protocols that need composers the embedder never saw (protocols.py's reserve); the
    checkpoint names them. Works and genres come from each collection's catalogue (catalogue.py),
    for options.train's spread_works and genre domains. Raises DataDirError (a folder that is not a
    labelled collection, or no composer left) and TrainingError."""
    t0 = time.monotonic()
    options = replace(options, dims=dims_for(options.dims, options.features))
    prepared, composers_of, collections, failures = prepare_collections(data_dirs, options, progress)
    all_composers = list(composers_of)
    held = {c.casefold() for c in hold_out}
    keep = [i for i, c in enumerate(composers_of) if c.casefold() not in held]
    each_collection = collection_of(collections)
    collection_ids = [each_collection[i] for i in keep]
    prepared, composers_of = [prepared[i] for i in keep], [composers_of[i] for i in keep]
    composers = sorted(set(composers_of))
    if len(composers) < 2:
        raise DataDirError("a general embedder needs at least two composers across the collections given")
    infos = catalogue([p.path for p in prepared], composers_of)
    works = [i.work for i in infos]
    work_ids = dense_ids(works) if options.train.spread_works else None
    model, report, from_cache = train_or_load(
        prepared, composers_of, np.arange(len(prepared)), composers, options, progress,
        collection_of=training_domains(infos, collection_ids, options.train.domains), work_of=work_ids)
    licence = weights_licence([c["licence"] for c in collections])
    background = embed_background(model, prepared, composers_of, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, options.features, {
        "kind": "general composer embedder", "musicid": __version__, "composers": composers,
        "collections": collections, "licence": licence, "train": asdict(options.train),
        "held_out_composers": sorted(c for c in set(all_composers) if c.casefold() in held),
        "genres": dict(Counter(i.genre for i in infos).most_common()), "works": len(set(works)),
        "train_report": {**asdict(report), "losses": []} if report else None,
        "background": {"tracks": len(background), "what": "each training track's unit mean clip vector"},
    }, background.to_checkpoint())
    return PretrainReport(out, composers, {c: composers_of.count(c) for c in composers}, collections, licence,
                          failures, report, from_cache, round(time.monotonic() - t0, 1))
