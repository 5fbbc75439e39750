"""FAISS index kinds for unit vectors searched by inner product: which kind for how many
vectors, how to make, search and merge one.

Every index is an `IndexIDMap2` over one of: exact `IndexFlatIP`, `IndexHNSWFlat`,
`IndexIVFFlat`, or `IndexIVFPQ` (faiss wiki, "Guidelines to choose an index").
The measurements behind the thresholds are in docs/SCALE.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..choices import IndexKind, values
from ..vectors import ip_to_distance

EXACT_BELOW = 100_000  # vectors: exact search takes <= 2 ms a clip below this (docs/PERFORMANCE.md)
PQ_ABOVE = 20_000_000  # vectors: above this, IVF-Flat's ~540 B a vector (10.8 GB) no longer fits a node
HNSW_M = 32
HNSW_EF_SEARCH = 64
IVF_NPROBE = 32
INDEX_KINDS = values(IndexKind, skip=("auto",))


def choose_index_kind(n: int) -> str:
    """Exact search while it is cheap; then IVF, which at 1M vectors kept recall@10 0.995 at 0.46 ms
    (HNSW: 0.966 at 0.24 ms, 3x the build time, 1.5x the memory, and no removal); then IVF-PQ,
    which compresses each vector to d/2 bytes where memory demands it (docs/SCALE.md)."""
    return "flat" if n < EXACT_BELOW else "ivf" if n <= PQ_ABOVE else "ivfpq"


def _nlist(n: int) -> int:
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


def empty_index(d: int, kind: str, training: np.ndarray | None = None) -> Any:
    """An empty IndexIDMap2 of one kind, its coarse quantizer (and codebooks) trained on a sample
    of `training` where the kind needs it. Shards made from one trained index merge with
    `merge_shards`."""
    import faiss

    inner: Any
    if kind == "flat":
        inner = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind in ("ivf", "ivfpq"):
        if training is None or not len(training):
            raise ValueError(f"an {kind} index needs vectors to train on")
        nlist = _nlist(len(training))
        if kind == "ivf":
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = max(1, d // 2)  # 2 dimensions a byte: 64 B for 128-d, recall@10 ~0.9 (docs/SCALE.md)
            while d % m:
                m -= 1
            inner = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = training[np.random.default_rng(0).choice(len(training), min(len(training), 256 * nlist),
                                                          replace=False)]
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        inner.nprobe = min(IVF_NPROBE, nlist)
        inner.make_direct_map()
    else:
        raise ValueError(f"unknown index kind {kind!r} ({', '.join(INDEX_KINDS)}, auto)")
    return faiss.IndexIDMap2(inner)


def make_faiss_index(vectors: np.ndarray, ids: np.ndarray, kind: str = "auto") -> Any:
    """Inner-product search over unit vectors with explicit int64 ids.

    kind: "flat" (exact), "hnsw" (graph, no training), "ivf" (inverted lists trained on a
    sample), "ivfpq" (the same with vectors compressed to d/2 bytes), or "auto": exact below
    EXACT_BELOW vectors, IVF up to PQ_ABOVE, IVF-PQ above.
    """
    kind = choose_index_kind(len(vectors)) if kind == "auto" else kind
    index = empty_index(vectors.shape[1], kind, vectors if kind in ("ivf", "ivfpq") else None)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def merge_shards(shards: list[Any]) -> Any:
    """One IVF index from shards that each started as a copy of the same trained empty index
    (`faiss.clone_index(empty_index(...))`) and had their own vectors added, on other workers
    or machines: the inverted lists are moved into the first shard, with their ids."""
    import faiss

    if not shards:
        raise ValueError("no shards to merge")
    first = shards[0]
    inner = faiss.extract_index_ivf(first.index)
    for shard in shards:  # IVF cannot merge lists that keep a direct map; it is rebuilt after
        faiss.extract_index_ivf(shard.index).set_direct_map_type(faiss.DirectMap.NoMap)  # type: ignore[attr-defined]
    id_map = [faiss.vector_to_array(first.id_map)]
    for other in shards[1:]:
        # the other's positions continue after ours; its external ids follow ours in the id map
        inner.merge_from(faiss.extract_index_ivf(other.index), inner.ntotal)
        id_map.append(faiss.vector_to_array(other.id_map))
    faiss.copy_array_to_vector(np.concatenate(id_map).astype(np.int64), first.id_map)
    first.ntotal = inner.ntotal
    inner.make_direct_map()
    first.construct_rev_map()
    return first


def search(index: Any, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances (0..2) and ids of the k nearest unit vectors to each row of vectors
    (fewer columns when the index holds fewer than k)."""
    ip, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, index.ntotal))
    return ip_to_distance(ip), ids
