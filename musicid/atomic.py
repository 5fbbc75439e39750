"""Files and directories that are either whole or absent: write to a temporary name, then rename.

Every file musicid persists goes through here: a crash or a kill never leaves a
half-written file (or index directory) under a real name. The pattern is
faiss/contrib's checkpointing (`big_batch_search.py`): write beside the target,
fsync, `os.replace`. A whole directory (an index) is written into a staging
folder and swapped in with Linux's `renameat2(RENAME_EXCHANGE)`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends
    without an exception, deleted otherwise. The suffix is kept, so writers that add or check
    one (numpy's .npz, wave) see what they expect."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write text (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Write an object as indented JSON, atomically (anything JSON cannot hold is written as str)."""
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_with(path: str | Path, write: Callable[[Path], object]) -> None:
    """Let `write` (a library's own writer: faiss.write_index, DataFrame.to_parquet, ...) fill a
    temporary path, then rename it onto `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (renames into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_dir(target: Path) -> Path:
    """A fresh folder beside target to write a new directory into; sweeps ones left by killed
    processes (their pid is in the name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.staging-"
    for old in target.parent.glob(prefix + "*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=target.parent))


def commit_directory(staging: Path, target: Path) -> None:
    """Put a fully written staging directory at target, replacing any old one atomically."""
    for f in staging.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(staging)
    if not target.exists():
        os.replace(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old directory
    else:  # no renameat2: a brief window in which target is absent but target.old exists
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)


def replace_directory(target: Path, fill: Callable[[Path], object]) -> None:
    """Let `fill` write a whole directory into a staging folder, then swap it in at target.
    On any failure, or a kill, target is left as it was."""
    staging = staging_dir(target)
    try:
        fill(staging)
        commit_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
