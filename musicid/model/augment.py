"""Training augmentations of a batch of clips: pure functions of tensors and a random generator.

- crop_lengths / stretched_crop: random crops of the 30 s clips, optionally played slower or faster
  (a tempo change: time is resampled, rows keep their pitch);
- drop_voices: one voice of a piano roll taken away, the voice found by pitch rank in every frame;
- augment: a random gain and a pitch (row) shift within each stacked plane.

A clip is (rows, frames); a batch (batch, rows, frames), rows = planes x rows per plane.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def augment(x: Tensor, gen: torch.Generator, max_shift: int = 2, planes: int = 1) -> Tensor:
    """Random gain and a random shift of up to max_shift rows (a small pitch/timbre change),
    within each of the clip's stacked planes."""
    shift = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=gen))
    if shift:
        b, rows, frames = x.shape
        x = torch.roll(x.reshape(b, planes, rows // planes, frames), shift, dims=-2).reshape(b, rows, frames)
    return x + (torch.rand(x.shape[0], 1, 1, generator=gen) - 0.5)


def stretched_crop(clip: Tensor, start: int, source: int, crop: int) -> Tensor:
    """clip[:, start:start + source] (rows, frames) resampled linearly to crop frames: the same notes
    played crop / source times as slow (rows keep their pitch)."""
    x = clip[None, :, start:start + source].float()
    return x[0] if source == crop else F.interpolate(x, size=crop, mode="linear", align_corners=False)[0]


def crop_lengths(rng: np.random.Generator, n: int, crop: int, frames: int, stretch: float) -> np.ndarray:
    """n source lengths for crops of `crop` frames: crop itself without stretch; else crop times a tempo
    factor drawn log-uniformly from [1 / (1 + stretch), 1 + stretch], at most the clip's frames (so a
    speed-up tops out at frames / crop: x1.17 for the roll's 256-frame crops of 300-frame clips, where
    about 15% of crops sit at stretch 0.25)."""
    if not stretch:
        return np.full(n, crop)
    factors = np.exp(rng.uniform(-np.log1p(stretch), np.log1p(stretch), size=n))
    return np.clip(np.rint(crop * factors).astype(int), 8, frames)


def drop_voices(x: Tensor, gen: torch.Generator, p: float, planes: int = 1) -> Tensor:
    """Voice dropout on piano rolls: each clip of x (batch, planes * pitches, frames), with probability
    p, loses one voice, found without part information as a pitch rank, the way the skyline
    algorithm takes the melody as the highest note sounding (Uitdenbogerd and Zobel, "Manipulation
    of music for melody matching", ACM Multimedia 1998): the r-th highest (or, as often, the r-th
    lowest) of the pitches sounding in each frame is silenced, r drawn uniformly from 1 to the
    plane's typical polyphony (the median number of pitches sounding in its sounding frames). In
    four-part writing that is one of soprano, alto, tenor and bass (voice crossings aside); in
    piano music, one line of the chords. A plane whose typical polyphony is under 2 (a melody
    alone) is left whole, as are frames with fewer than r pitches sounding. Draws 3 x batch numbers
    from gen whatever the clips hold. Returns a new tensor; x is not changed. Rows per plane must
    be pitches (a piano roll or family rolls), not mel bands."""
    b, rows, frames = x.shape
    chosen = torch.rand(b, generator=gen) < p
    from_top = torch.rand(b, generator=gen) < 0.5
    where = torch.rand(b, generator=gen)
    if not chosen.any():
        return x
    v = x.reshape(b, planes, rows // planes, frames).clone()
    for i in chosen.nonzero().flatten().tolist():
        on = v[i] > 0  # (planes, pitches, frames)
        rank = on.flip(1).cumsum(1).flip(1) if from_top[i] else on.cumsum(1)  # 1 = the highest / lowest sounding
        for plane in range(planes):
            poly = on[plane].sum(0)
            sounding = poly[poly > 0]
            typical = int(sounding.median()) if len(sounding) else 0
            if typical < 2:
                continue
            r = 1 + min(int(where[i] * typical), typical - 1)
            v[i, plane][on[plane] & (rank[plane] == r)] = 0.0
    return v.reshape(b, rows, frames)
