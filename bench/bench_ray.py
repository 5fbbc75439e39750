"""Ray build benchmark: `index build --ray` on a two-node loopback cluster against the local build.

Both build the same tracks with the same model (--model: no training; the cluster's
work is render -> log-mel -> embedding) from an empty render cache. Prints wall times,
their ratio, and how many tracks each node rendered and embedded. On one 2-core
machine both nodes share the same two cores, so this measures the pipeline's overhead
and that work spreads, not a speed-up.

    python bench/bench_ray.py DATA_DIR --model MODEL.pt [--files N]   (N: first N files of each composer)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cpus-per-node", type=int, default=2)
    ap.add_argument("--files", type=int, help="only the first N files of each composer")
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from musicid.build.corpus import BuildOptions
    from musicid.build.indexer import build_index

    tmp = Path(tempfile.mkdtemp(prefix="musicid-bench-ray-"))
    try:
        if args.files:  # a subset, linked into a folder of the same layout
            for composer in sorted(p for p in args.data_dir.iterdir() if p.is_dir()):
                (tmp / "data" / composer.name).mkdir(parents=True)
                for f in sorted(composer.glob("*.mid"))[: args.files]:
                    (tmp / "data" / composer.name / f.name).symlink_to(f.resolve())
            args.data_dir = tmp / "data"
        t = time.monotonic()
        local = build_index(args.data_dir, tmp / "local", BuildOptions(model_path=args.model, cache_dir=tmp / "c1"))
        t_local = time.monotonic() - t

        t = time.monotonic()
        node = {"num_cpus": args.cpus_per_node, "object_store_memory": 2 << 30}
        cluster = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.2",
                                                                "include_dashboard": False, **node})
        cluster.add_node(node_ip_address="127.0.0.3", **node)
        t_start = time.monotonic() - t
        try:
            t = time.monotonic()
            dist = build_index(args.data_dir, tmp / "ray", BuildOptions(model_path=args.model, cache_dir=tmp / "c2",
                                                                        ray=True, ray_address=cluster.address))
            t_ray = time.monotonic() - t
        finally:
            ray.shutdown()
            cluster.shutdown()
        assert dist.ray is not None
        n = sum(local.tracks_per_composer.values())
        print(f"tracks: {n} ({sum(local.clips_per_composer.values())} clips), failures local {len(local.failures)} "
              f"ray {len(dist.failures)}")
        print("| build | wall s | render s | embed s |  (Ray with --model: one fused render+embed pipeline, "
              "all under render s)")
        print("|---|---:|---:|---:|")
        print(f"| local, {os.cpu_count()} render workers | {t_local:.1f} | {local.timings['render']:.1f} | "
              f"{local.timings['embed']:.1f} |")
        print(f"| Ray, 2 nodes x {args.cpus_per_node} CPUs (loopback) | {t_ray:.1f} | {dist.timings['render']:.1f} | "
              f"{dist.timings['embed']:.1f} |")
        print(f"Ray / local wall: {t_ray / t_local:.2f}x; cluster start {t_start:.1f} s (not included)")
        print(f"rendered per node: {dist.ray['rendered_on']}; embedded per node: {dist.ray['embedded_on']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
