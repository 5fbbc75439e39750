"""Render, featurise and embed tracks on a Ray cluster, for builds that outgrow one machine.

    musicid index build DATA_DIR --ray [ADDRESS]

Ray Data pipelines over tracks, each step a `map_batches`:
  read (and render, for audio) -> features (piano roll or log-mel) -> clips, as tasks (each node
  uses its own render cache);
  clips -> vectors (+ spectral statistics), as tasks whose worker processes load the embedder once.
With a given model (--model) both steps run as one pipeline (Ray fuses them into one
task per track, so the clips never leave the node) and only vectors reach the
driver. Without one, the clips come back to train on (on the driver: the
embedder is small, docs/SCALE.md) and a second pipeline embeds them.
A bad file comes back as the same one-line Failure a local build gives; a task
lost with its node is retried by Ray (and what a failed pipeline did not return
is run again), and rows are keyed by track position, so nothing is lost or
counted twice.

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

from ..errors import MusicIdError
from ..features.clips import FeatureSettings
from ..features.prepare import Failure, Prepared, _prepare_or_fail
from ..io.render import RenderSettings
from ..progress import ProgressFn

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


def _dims(shape: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(shape).split(","))


def _array(raw: bytes, shape: str, dtype: Any) -> np.ndarray:
    return np.frombuffer(raw, dtype=dtype).reshape(_dims(shape))


def _shape(a: np.ndarray) -> str:
    return ",".join(map(str, a.shape))


def _prepare_batch(batch: dict[str, np.ndarray], render_settings: RenderSettings, features: FeatureSettings,
                   cache_dir: str) -> dict[str, np.ndarray]:
    import ray
    import torch

    from ..features.cache import FeatureCache

    torch.set_num_threads(1)
    cache = FeatureCache.for_tracks(Path(cache_dir), render_settings, features) if cache_dir else None
    node = ray.get_runtime_context().get_node_id()
    rows: dict[str, list[Any]] = {k: [] for k in ("pos", "ok", "reason", "sha", "notes_hash", "duration",
                                                  "rendered", "offsets", "clips", "shape", "symbolic", "sketch",
                                                  "node")}
    for pos, path in zip(batch["pos"], batch["path"], strict=True):
        r = _prepare_or_fail(Path(str(path)), render_settings, features, cache)
        rows["pos"].append(int(pos))
        rows["ok"].append(isinstance(r, Prepared))
        if isinstance(r, Prepared):
            for k, v in (("reason", ""), ("sha", r.sha256), ("notes_hash", r.notes_hash),
                         ("duration", r.duration), ("rendered", r.rendered_seconds),
                         ("offsets", ",".join(map(str, r.offsets))), ("clips", r.clips.tobytes()),
                         ("shape", _shape(r.clips)), ("symbolic", r.symbolic.astype(np.float32).tobytes()),
                         ("sketch", r.sketch.astype(np.uint32).tobytes())):
                rows[k].append(v)
        else:
            for k, v in (("reason", r.reason), ("sha", ""), ("notes_hash", ""), ("duration", 0.0),
                         ("rendered", 0.0), ("offsets", ""), ("clips", b""), ("shape", ""), ("symbolic", b""),
                         ("sketch", b"")):
                rows[k].append(v)
        rows["node"].append(node)
    return {k: np.asarray(v, dtype=object) for k, v in rows.items()}


def _from_row(row: dict[str, Any], path: Path, keep_clips: bool) -> Prepared | Failure:
    if not row["ok"]:
        return Failure(path, str(row["reason"]))
    if keep_clips:
        clips = _array(row["clips"], row["shape"], np.float16)
    else:  # embedded where it was rendered: no clips held here (Prepared.clips says so)
        clips = np.zeros((0, *_dims(row["shape"])[1:]), np.float16)
    return Prepared(path, str(row["sha"]), str(row["notes_hash"]), float(row["duration"]), float(row["rendered"]),
                    clips, [float(o) for o in str(row["offsets"]).split(",") if o],
                    np.frombuffer(row["symbolic"], dtype=np.float32).copy(),
                    np.frombuffer(row["sketch"], dtype=np.uint32).copy(), False)


def _tracks(ray: Any, paths: Sequence[Path], positions: list[int]) -> Any:
    return ray.data.from_items([{"pos": i, "path": str(Path(paths[i]).absolute())} for i in positions],
                               override_num_blocks=max(1, len(positions)))


def _render_stage(ds: Any, render_settings: RenderSettings, features: FeatureSettings, cache_dir: Path | None) -> Any:
    return ds.map_batches(_prepare_batch, batch_size=1, batch_format="numpy",
                          fn_kwargs={"render_settings": render_settings, "features": features,
                                     "cache_dir": str(cache_dir) if cache_dir else ""},
                          max_retries=TASK_RETRIES, num_cpus=1, scheduling_strategy="SPREAD")


def _embed_stage(ray: Any, ds: Any, model: Any) -> Any:
    import hashlib

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    key = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()
    # tasks, not an actor pool: Ray retries a task lost with its node, while an actor lost with
    # its node fails or stalls the pipeline; each worker process still loads the model once
    return ds.map_batches(_embed_batch, batch_size=1, batch_format="numpy",
                          fn_kwargs={"state": [ray.put(state)], "dims": model.dims, "key": key},
                          max_retries=TASK_RETRIES, num_cpus=1, scheduling_strategy="SPREAD")


PIPELINE_ATTEMPTS = 3


def _collect(make: Callable[[list[int]], Any], n: int, stage: str,
             progress: ProgressFn | None) -> list[dict[str, Any]]:
    """Every row once, by track position. `make(positions)` builds the pipeline for those tracks.

    Ray retries a task lost with its node; should the pipeline still fail (a block whose
    retries ran out), the tracks not yet returned are run again on what is left of the
    cluster. A track delivered twice (a retried task) counts once.
    """
    import ray

    rows: list[dict[str, Any] | None] = [None] * n
    done = 0
    if progress:
        progress(stage, 0, n)
    for attempt in range(1, PIPELINE_ATTEMPTS + 1):
        todo = [i for i, r in enumerate(rows) if r is None]
        if not todo:
            break
        try:
            for row in make(todo).iter_rows():
                pos = int(row["pos"])
                if rows[pos] is None:
                    rows[pos] = row
                    done += 1
                    if progress:
                        progress(stage, done, n)
        except ray.exceptions.RayError as e:
            if attempt == PIPELINE_ATTEMPTS:
                raise RayUnavailable(f"the cluster failed {attempt} times, last: {type(e).__name__}: "
                                     f"{str(e).splitlines()[0]}") from e
    if done < n:
        raise RayUnavailable(f"the cluster returned no result for {n - done} track(s)")
    return [r for r in rows if r is not None]


def prepare_on_ray(paths: Sequence[Path], render_settings: RenderSettings, features: FeatureSettings,
                   cache_dir: Path | None, address: str | None,
                   progress: ProgressFn | None = None) -> tuple[list[Prepared | Failure], dict[str, int]]:
    """prepare.prepare_many on a Ray cluster: results in the order of `paths`, and tracks per node.
    The clips come back to the driver (to train on); see embed_tracks_on_ray for builds that
    need only the vectors."""
    ray = connect(address)
    rows = _collect(lambda todo: _render_stage(_tracks(ray, paths, todo), render_settings, features, cache_dir),
                    len(paths), "render", progress)
    return ([_from_row(r, Path(paths[i]), True) for i, r in enumerate(rows)],
            _count([str(r["node"]) for r in rows], _node_ips(ray)))


_MODELS: dict[str, Any] = {}  # per worker process: model key -> Embedder, loaded once


def _worker_model(state: list[Any], dims: Any, key: str) -> Any:
    if key not in _MODELS:
        import ray
        import torch

        from ..model.embedder import Embedder

        torch.set_num_threads(1)
        model = Embedder(dims)
        model.load_state_dict(ray.get(state[0]))  # the state travels once per worker, by reference
        model.eval()
        _MODELS.clear()
        _MODELS[key] = model
    return _MODELS[key]


def _embed_batch(batch: dict[str, np.ndarray], state: list[Any], dims: Any, key: str) -> dict[str, np.ndarray]:
    """Add each track's vectors and spectral statistics to its row and drop the clips; other columns
    pass through."""
    import ray
    import torch

    from ..features.spectral import spectral_stats
    from ..model.embedder import embed_clips

    model = _worker_model(state, dims, key)
    node = ray.get_runtime_context().get_node_id()
    cols: dict[str, list[Any]] = {"vectors": [], "vshape": [], "stats": [], "sshape": []}
    for raw, shape in zip(batch["clips"], batch["shape"], strict=True):
        if not shape:  # a track that failed to render
            for k in cols:
                cols[k].append(b"" if k in ("vectors", "stats") else "")
            continue
        clips = _array(raw, shape, np.float16)
        v = embed_clips(model, torch.from_numpy(clips.copy()))
        st = spectral_stats(clips)
        cols["vectors"].append(v.tobytes())
        cols["vshape"].append(_shape(v))
        cols["stats"].append(st.tobytes())
        cols["sshape"].append(_shape(st))
    out = {k: v for k, v in batch.items() if k != "clips"}
    out.update({k: np.asarray(v, dtype=object) for k, v in cols.items()})
    out["embed_node"] = np.asarray([node] * len(batch["pos"]), dtype=object)
    return out


def embed_on_ray(model: Any, prepared: Sequence[Prepared], address: str | None,
                 progress: ProgressFn | None = None) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """Every track's clip vectors and spectral statistics, computed by tasks whose worker processes
    load the model once; and tracks embedded per node."""
    ray = connect(address)

    def make(todo: list[int]) -> Any:
        ds = ray.data.from_items([{"pos": i, "clips": prepared[i].clips.tobytes(), "shape": _shape(prepared[i].clips)}
                                  for i in todo], override_num_blocks=max(1, len(todo)))
        return _embed_stage(ray, ds, model)

    rows = _collect(make, len(prepared), "embed", progress)
    return ([_array(r["vectors"], r["vshape"], np.float32).copy() for r in rows],
            [_array(r["stats"], r["sshape"], np.float32).copy() for r in rows],
            _count([str(r["embed_node"]) for r in rows], _node_ips(ray)))


@dataclass
class Embedded:
    """What comes back for one track from a build with a given model: no clips, just the results."""

    results: list[Prepared | Failure]  # Prepared with no clips (shape (0, n_bins, frames))
    vectors: list[np.ndarray | None]  # per result; None for a failure
    stats: list[np.ndarray | None]
    run: RayRun


def embed_tracks_on_ray(paths: Sequence[Path], render_settings: RenderSettings, features: FeatureSettings,
                        cache_dir: Path | None, model: Any, address: str | None,
                        progress: ProgressFn | None = None) -> Embedded:
    """render -> log-mel -> clips -> vectors in one pipeline: only vectors, spectral statistics and
    metadata reach the driver (about 1.3 kB a clip instead of 144 kB of spectrogram), so the
    driver's memory bounds the index, not the audio."""
    ray = connect(address)

    def make(todo: list[int]) -> Any:
        ds = _render_stage(_tracks(ray, paths, todo), render_settings, features, cache_dir)
        return _embed_stage(ray, ds, model)

    rows = _collect(make, len(paths), "render + embed", progress)
    ips = _node_ips(ray)
    return Embedded(
        [_from_row(r, Path(paths[i]), False) for i, r in enumerate(rows)],
        [_array(r["vectors"], r["vshape"], np.float32).copy() if r["ok"] else None for r in rows],
        [_array(r["stats"], r["sshape"], np.float32).copy() if r["ok"] else None for r in rows],
        RayRun(_count([str(r["node"]) for r in rows], ips),
               _count([str(r["embed_node"]) for r in rows if r["ok"]], ips)))
