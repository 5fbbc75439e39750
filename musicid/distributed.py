"""Render, featurise and embed tracks on a Ray cluster, for builds that outgrow one machine.

    musicid index build DATA_DIR --ray [ADDRESS]

Two Ray Data pipelines over tracks, each `map_batches`:
  1. render -> log-mel -> clips, as tasks (each node uses its own render cache);
  2. clips -> vectors, on a pool of actors that each load the embedder once.
Training stays on the driver between the two: the embedder is small (docs/SCALE.md).
A bad file comes back as the same one-line Failure a local build gives; a task
lost with its node is retried by Ray, and rows are keyed by track position, so
nothing is lost or counted twice.

This is the only module that imports ray (`pip install 'musicid[ray]'`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MusicIdError
from .features import FeatureSettings
from .prepare import Failure, Prepared, _prepare_or_fail
from .render import RenderSettings

ProgressFn = Callable[[str, int, int], None]
TASK_RETRIES = 4


class RayUnavailable(MusicIdError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass
class RayRun:
    """Where the work ran: tracks rendered and tracks embedded per node (by IP address)."""

    rendered_on: dict[str, int]
    embedded_on: dict[str, int]


def connect(address: str | None) -> Any:
    """Attach to a running cluster at address, or start a local one when address is None."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable("--ray needs Ray: pip install 'musicid[ray]'") from e
    if not ray.is_initialized():
        try:
            # "local": never attach silently to whatever cluster the temp dir last recorded
            ray.init(address=address or "local", log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {e}") from e
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # musicid shows its own
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def _node_ips(ray: Any) -> dict[str, str]:
    return {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}


def _count(node_ids: Sequence[str], ips: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in node_ids:
        out[ips.get(n, n)] = out.get(ips.get(n, n), 0) + 1
    return dict(sorted(out.items()))


def _prepare_batch(batch: dict[str, np.ndarray], render_settings: RenderSettings, features: FeatureSettings,
                   cache_dir: str) -> dict[str, np.ndarray]:
    import ray
    import torch

    from .cache import FeatureCache

    torch.set_num_threads(1)
    cache = FeatureCache(Path(cache_dir), {"render": render_settings.identity(),
                                           "features": features.as_dict()}) if cache_dir else None
    node = ray.get_runtime_context().get_node_id()
    rows: dict[str, list[Any]] = {k: [] for k in ("pos", "ok", "reason", "sha", "fingerprint", "duration",
                                                  "rendered", "offsets", "clips", "shape", "node")}
    for pos, path in zip(batch["pos"], batch["path"], strict=True):
        r = _prepare_or_fail(Path(str(path)), render_settings, features, cache)
        rows["pos"].append(int(pos))
        rows["ok"].append(isinstance(r, Prepared))
        if isinstance(r, Prepared):
            for k, v in (("reason", ""), ("sha", r.sha256), ("fingerprint", r.fingerprint),
                         ("duration", r.duration), ("rendered", r.rendered_seconds),
                         ("offsets", ",".join(map(str, r.offsets))), ("clips", r.clips.tobytes()),
                         ("shape", ",".join(map(str, r.clips.shape)))):
                rows[k].append(v)
        else:
            for k, v in (("reason", r.reason), ("sha", ""), ("fingerprint", ""), ("duration", 0.0),
                         ("rendered", 0.0), ("offsets", ""), ("clips", b""), ("shape", "")):
                rows[k].append(v)
        rows["node"].append(node)
    return {k: np.asarray(v, dtype=object) for k, v in rows.items()}


def prepare_on_ray(paths: Sequence[Path], render_settings: RenderSettings, features: FeatureSettings,
                   cache_dir: Path | None, address: str | None,
                   progress: ProgressFn | None = None) -> tuple[list[Prepared | Failure], dict[str, int]]:
    """prepare.prepare_many on a Ray cluster: results in the order of `paths`, and tracks per node."""
    ray = connect(address)  # with ray.data imported
    if progress:
        progress("render", 0, len(paths))
    ds = ray.data.from_items([{"pos": i, "path": str(Path(p).absolute())} for i, p in enumerate(paths)],
                             override_num_blocks=max(1, len(paths)))
    ds = ds.map_batches(_prepare_batch, batch_size=1, batch_format="numpy",
                        fn_kwargs={"render_settings": render_settings, "features": features,
                                   "cache_dir": str(cache_dir) if cache_dir else ""},
                        max_retries=TASK_RETRIES, num_cpus=1, scheduling_strategy="SPREAD")
    results: list[Prepared | Failure | None] = [None] * len(paths)
    nodes: list[str] = []
    for row in ds.iter_rows():
        pos = int(row["pos"])
        if results[pos] is not None:  # a retried task delivered this track twice
            continue
        path = Path(paths[pos])
        if row["ok"]:
            shape = tuple(int(s) for s in str(row["shape"]).split(","))
            clips = np.frombuffer(row["clips"], dtype=np.float16).reshape(shape)
            offsets = [float(o) for o in str(row["offsets"]).split(",") if o]
            results[pos] = Prepared(path, str(row["sha"]), str(row["fingerprint"]), float(row["duration"]),
                                    float(row["rendered"]), clips, offsets, False)
        else:
            results[pos] = Failure(path, str(row["reason"]))
        nodes.append(str(row["node"]))
        if progress:
            progress("render", len(nodes), len(paths))
    missing = [str(paths[i]) for i, r in enumerate(results) if r is None]
    if missing:
        raise RayUnavailable(f"the cluster returned no result for {len(missing)} track(s), e.g. {missing[0]}")
    return [r for r in results if r is not None], _count(nodes, _node_ips(ray))


class _EmbedActor:
    """Holds one embedder, loaded once per actor."""

    def __init__(self, state: dict[str, Any], dims: Any):
        import torch

        from .embedder import Embedder

        torch.set_num_threads(1)
        self.model = Embedder(dims)
        self.model.load_state_dict(state)
        self.model.eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray
        import torch

        from .embedder import embed_clips

        node = ray.get_runtime_context().get_node_id()
        vecs, shapes = [], []
        for raw, shape in zip(batch["clips"], batch["shape"], strict=True):
            clips = np.frombuffer(raw, dtype=np.float16).reshape(tuple(int(s) for s in str(shape).split(",")))
            v = embed_clips(self.model, torch.from_numpy(clips.copy()))
            vecs.append(v.tobytes())
            shapes.append(f"{v.shape[0]},{v.shape[1]}")
        return {"pos": batch["pos"], "vectors": np.asarray(vecs, dtype=object),
                "vshape": np.asarray(shapes, dtype=object), "node": np.asarray([node] * len(vecs), dtype=object)}


def embed_on_ray(model: Any, prepared: Sequence[Prepared], address: str | None, actors: int = 0,
                 progress: ProgressFn | None = None) -> tuple[list[np.ndarray], dict[str, int]]:
    """Every track's clip vectors, computed by a pool of actors that each load the model once."""
    ray = connect(address)
    from ray.data import ActorPoolStrategy

    # leave one CPU per node to the read step: Ray Data stalls when actors take every slot
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n_nodes = max(1, len([n for n in ray.nodes() if n["Alive"]]))
    size = actors or max(1, min(len(prepared), cpus - n_nodes))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ds = ray.data.from_items([{"pos": i, "clips": p.clips.tobytes(), "shape": ",".join(map(str, p.clips.shape))}
                              for i, p in enumerate(prepared)], override_num_blocks=max(1, len(prepared)))
    ds = ds.map_batches(_EmbedActor, batch_size=1, batch_format="numpy", fn_constructor_args=(state, model.dims),
                        compute=ActorPoolStrategy(size=size), num_cpus=1, max_restarts=TASK_RETRIES,
                        max_task_retries=TASK_RETRIES, scheduling_strategy="SPREAD")
    out: list[np.ndarray | None] = [None] * len(prepared)
    nodes: list[str] = []
    for row in ds.iter_rows():
        pos = int(row["pos"])
        if out[pos] is not None:
            continue
        shape = tuple(int(s) for s in str(row["vshape"]).split(","))
        out[pos] = np.frombuffer(row["vectors"], dtype=np.float32).reshape(shape).copy()
        nodes.append(str(row["node"]))
        if progress:
            progress("embed", len(nodes), len(prepared))
    if any(v is None for v in out):
        raise RayUnavailable("the cluster returned no vectors for some tracks")
    return [v for v in out if v is not None], _count(nodes, _node_ips(ray))
