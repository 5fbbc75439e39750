"""Index benchmark: search latency, recall@10 and memory of FAISS index types by size.

Synthetic unit vectors of the embedder's size (128), clustered like clip
embeddings (a few hundred "tracks" of near-duplicate clips). Each figure is
measured against exact search (IndexFlatIP) on the same vectors in the same
process. Single queries on one thread, as `musicid query` issues them; builds on two.

    python bench/bench_index.py [--sizes 10000 100000 1000000] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

from musicid.index.faiss_index import empty_index, make_faiss_index, merge_shards

D = 128


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.standard_normal((max(n // 20, 1), D)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.standard_normal((n, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def index_bytes(index: faiss.Index) -> int:
    return len(faiss.serialize_index(index))


def latency(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, list[float]]:
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append((time.perf_counter() - t) * 1000)
        out.append(ids[0])
    return np.array(out), times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def run(sizes: list[int], n_queries: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        x = clustered(n, rng)
        q = x[rng.choice(n, n_queries, replace=False)] + 0.05 * rng.standard_normal((n_queries, D)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        ids = np.arange(n, dtype=np.int64)
        candidates = {"flat (exact)": "flat", "hnsw32": "hnsw", "ivf-flat": "ivf", "ivf-pq": "ivfpq",
                      "ivf-flat, 4 shards merged": "shards"}
        truth = None
        for name, kind in candidates.items():
            faiss.omp_set_num_threads(2)  # building may use both cores
            t = time.perf_counter()
            if kind == "shards":  # train once, fill 4 copies apart (as 4 workers would), merge
                trained = empty_index(D, "ivf", x)
                shards = []
                for part in np.array_split(np.arange(n), 4):
                    shard = faiss.clone_index(trained)
                    shard.add_with_ids(x[part], ids[part])
                    shards.append(shard)
                t_merge = time.perf_counter()
                index = merge_shards(shards)
                print(f"  merge of 4 shards at n={n}: {time.perf_counter() - t_merge:.3f} s", flush=True)
            else:
                index = make_faiss_index(x, ids, kind)
            build = time.perf_counter() - t
            faiss.omp_set_num_threads(1)  # single queries: one thread is fastest
            found, times = latency(index, q)
            if truth is None:
                truth = found
            rows.append({"n": n, "index": name, "build_s": round(build, 2),
                         "p50_ms": round(float(np.percentile(times, 50)), 3),
                         "p95_ms": round(float(np.percentile(times, 95)), 3),
                         "recall@10": round(recall(found, truth), 4),
                         "bytes_per_vector": round(index_bytes(index) / n, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    rows = run(args.sizes, args.queries)
    print(f"\n{'n':>9} {'index':<13} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>9} {'B/vector':>9}")
    for r in rows:
        print(f"{r['n']:>9} {r['index']:<13} {r['build_s']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} "
              f"{r['recall@10']:>9} {r['bytes_per_vector']:>9}")


if __name__ == "__main__":
    main()
