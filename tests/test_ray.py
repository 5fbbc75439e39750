"""`index build --ray` on a real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3).

The fixture starts both nodes and stops exactly them (never `ray stop`, which kills
every Ray process on the machine).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from musicid.build.indexer import build_index
from musicid.index.store import load_store

from .conftest import assert_same_index, make_corpus, tiny_options

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install -e '.[ray]')")

pytestmark = pytest.mark.timeout(420)
NODE = {"num_cpus": 2, "object_store_memory": 200 << 20}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.2", "include_dashboard": False,
                                                      **NODE})
    c.add_node(node_ip_address="127.0.0.3", **NODE)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_corpus(tmp_path_factory.mktemp("raydata") / "train", ["Lowpiano", "Highflute"], per_composer=5,
                    seconds=8)
    (d / "Lowpiano" / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")  # truncated header
    return d


def test_ray_build_is_the_local_build_and_ran_on_both_nodes(cluster: Any, data: Path, built_index: Path,
                                                            tmp_path: Path) -> None:
    model = built_index / "model.pt"  # the same model on both sides: the vectors must match
    local = build_index(data, tmp_path / "local", tiny_options(tmp_path / "a", model_path=model))
    dist = build_index(data, tmp_path / "ray", tiny_options(tmp_path / "b", model_path=model, ray=True,
                                                            ray_address=cluster.address))
    assert_same_index(tmp_path / "local", tmp_path / "ray")  # 1 torch thread per actor: float order
    assert dist.failures == local.failures and len(dist.failures) == 1  # same file, same one-line reason
    assert dist.ray is not None
    assert set(dist.ray["rendered_on"]) == {"127.0.0.2", "127.0.0.3"}, dist.ray
    assert set(dist.ray["embedded_on"]) == {"127.0.0.2", "127.0.0.3"}, dist.ray
    assert sum(dist.ray["rendered_on"].values()) == 11 and sum(dist.ray["embedded_on"].values()) == 10
    assert load_store(tmp_path / "ray").manifest.about["ray"] == dist.ray


def test_z_a_worker_node_killed_mid_build_loses_and_duplicates_nothing(cluster: Any, data: Path, built_index: Path,
                                                                     tmp_path: Path) -> None:
    model = built_index / "model.pt"
    more = make_corpus(tmp_path / "more", ["Lowpiano", "Highflute"], per_composer=10, seconds=8, seed=11)
    worker = next(iter(cluster.worker_nodes))
    started, killed = threading.Event(), threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage.startswith("render") and done >= 2:
            started.set()

    def kill() -> None:
        if started.wait(120):
            cluster.remove_node(worker, allow_graceful=False)
            killed.set()

    killer = threading.Thread(target=kill)
    killer.start()
    report = build_index(more, tmp_path / "ray", tiny_options(tmp_path / "b", model_path=model, ray=True,
                                                              ray_address=cluster.address), progress)
    killed_before_the_end = killed.is_set()
    killer.join()
    assert killed_before_the_end and worker not in cluster.worker_nodes  # the node really died mid-build
    build_index(more, tmp_path / "local", tiny_options(tmp_path / "a", model_path=model))
    assert_same_index(tmp_path / "local", tmp_path / "ray")  # every track once, none lost
    assert report.ray is not None and sum(report.ray["embedded_on"].values()) == 20


def test_a_ray_build_that_trains_renders_there_trains_here_and_embeds_there(cluster: Any, data: Path,
                                                                           tmp_path: Path) -> None:
    dist = build_index(data, tmp_path / "ray", tiny_options(tmp_path / "b", ray=True, ray_address=cluster.address))
    assert dist.trained and dist.ray is not None
    assert sum(dist.ray["rendered_on"].values()) == 11 and sum(dist.ray["embedded_on"].values()) == 10
    # the same tracks through a local build with the model the cluster build trained: the same index
    build_index(data, tmp_path / "local", tiny_options(tmp_path / "a", model_path=tmp_path / "ray" / "model.pt"))
    assert_same_index(tmp_path / "local", tmp_path / "ray")


def test_the_cli_flag_alone_builds_on_a_local_ray(data: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "musicid", "index", "build", str(data), "--out", str(tmp_path / "idx"), "--ray",
           "--epochs", "1", "--steps-per-epoch", "2", "--cache-dir", str(tmp_path / "cache"), "--json"]
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report = json.loads(done.stdout)
    assert sum(report["ray"]["rendered_on"].values()) == 11 and len(report["failures"]) == 1
