"""The progress callback every long-running library function takes (the CLI draws it as bars)."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
"""progress(stage, done, total): `stage` names the step ("render", "train", "embed", ...);
called with done == 0 when a step starts and done == total when it ends."""
