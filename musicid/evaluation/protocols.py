"""The many-composer protocols' splits: who is enrolled, who is queried, and who the embedder never saw.

A general embedder is judged on composers it was not trained on, as a user's composers are. The
*reserve* is a seeded draw of composers kept out of the judged embedder's training and background
(`musicid embedder train --hold-out FILE`: the shipped embedder's measured twin, not the shipped
embedder, which trained on every composer); every protocol here enrols and queries reserve composers
only:

- *many unseen composers*: each draw indexes some reserve composers from a few works each and
  queries their other works (known) and every work of at least 30 other reserve composers (novel:
  absent from both the embedder's training and the index);
- *leave genres out*: reserve composers who wrote in two genres or more are enrolled from the works
  of their main genre and queried with their works of every other genre (a song composer's
  quartets), the novel composers' works beside them;
- *enrolment size*: the reserve composers with the most works enrolled from 1, 3, 5 and 7 of them
  in turn and queried with the same remaining works each time, the novel composers' works beside
  them: how much a user gains by enrolling more of each composer's works (speaker verification's
  enrolment-size curve).

Works (catalogue.py) are never split: a work is enrolled or queried whole. Composers with files in
the collections older protocols use (ASAP, DCML's piano corpus, the challenge set) stay out of the
reserve, so that those protocols keep every composer they had.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..collection.catalogue import TrackInfo

PROTECTED_COLLECTIONS = ("asap", "dcml-piano", "sfl-challenge/train")
NAMED_GENRES = ("keyboard", "song", "vocal", "chamber", "string_quartet", "orchestral", "solo")


@dataclass(frozen=True)
class Reserve:
    enrolable: tuple[str, ...]  # reserve composers with enough works to enrol and query
    novel_only: tuple[str, ...]  # reserve composers only ever queried as novel
    seed: int

    @property
    def composers(self) -> tuple[str, ...]:
        return tuple(sorted(self.enrolable + self.novel_only))


@dataclass(frozen=True)
class EnrolSplit:
    """One draw of a protocol: track positions (into the infos it was drawn from) to enrol, and to
    query; the enrolled composers; and the genre each query track is judged under."""

    name: str
    enrol: np.ndarray
    query: np.ndarray
    known: tuple[str, ...]
    enrol_works: int | None = None  # works enrolled per composer, where the protocol fixes it


def works_of(infos: Sequence[TrackInfo]) -> dict[str, dict[str, list[int]]]:
    """composer -> work -> the positions of its tracks."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for n, i in enumerate(infos):
        out[i.composer][i.work].append(n)
    return out


def genres_of(infos: Sequence[TrackInfo]) -> dict[str, dict[str, set[str]]]:
    """composer -> named genre -> its works in that genre ("unknown" and "mixed" left out)."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for i in infos:
        if i.genre in NAMED_GENRES:
            out[i.composer][i.genre].add(i.work)
    return out


def draw_reserve(infos: Sequence[TrackInfo], seed: int = 0, enrolable: int = 40, multi_genre: int = 20,
                 novel_only: int = 60, min_works: int = 3, max_files: int = 60) -> Reserve:
    """The reserve: `enrolable` composers with at least min_works works, `multi_genre` of them with
    works in two named genres or more (leave-genres-out needs them), and `novel_only` composers drawn
    from the rest, whatever their number of works; none with a file in PROTECTED_COLLECTIONS, none
    with more than max_files files (the composers the training learns most from stay in it).
    Deterministic in seed and the catalogue. Raises ValueError when the catalogue has too few."""
    rng = np.random.default_rng(seed)
    works = works_of(infos)
    genres = genres_of(infos)
    protected = {i.composer for i in infos if i.collection in PROTECTED_COLLECTIONS}
    free = sorted(c for c in works if c not in protected and sum(map(len, works[c].values())) <= max_files)
    rich = [c for c in free if len(works[c]) >= min_works]
    multi = [c for c in rich if len(genres[c]) >= 2]
    if len(multi) < multi_genre or len(rich) < enrolable:
        raise ValueError(f"the catalogue has {len(rich)} composers with {min_works} works or more "
                         f"({len(multi)} in two genres): too few for a reserve of {enrolable} ({multi_genre})")
    chosen = list(rng.choice(multi, size=multi_genre, replace=False))
    rest = [c for c in rich if c not in chosen]
    chosen += list(rng.choice(rest, size=enrolable - multi_genre, replace=False))
    others = [c for c in free if c not in chosen]
    if len(others) < novel_only:
        raise ValueError(f"only {len(others)} composers left for {novel_only} novel ones")
    novel = list(rng.choice(others, size=novel_only, replace=False))
    return Reserve(tuple(sorted(map(str, chosen))), tuple(sorted(map(str, novel))), seed)


def _enrol_works(rng: np.random.Generator, works: list[str], at_most: int) -> list[str]:
    """A few works to enrol, at most at_most and always one fewer than there are."""
    n = max(1, min(at_most, len(works) - 1))
    return [works[i] for i in sorted(rng.choice(len(works), size=n, replace=False))]


def many_unseen_splits(infos: Sequence[TrackInfo], reserve: Reserve, draws: int = 5, indexed: int = 30,
                       novel: int = 30, enrol_works: int = 3, seed: int = 0) -> list[EnrolSplit]:
    """`draws` splits of the reserve: `indexed` enrolable composers enrolled from up to enrol_works
    works each (their other works queried as known), and `novel` composers drawn from the rest of
    the reserve (all their works queried as novel)."""
    rng = np.random.default_rng(seed)
    works = works_of(infos)
    out = []
    for d in range(draws):
        index = sorted(map(str, rng.choice(reserve.enrolable, size=min(indexed, len(reserve.enrolable)),
                                           replace=False)))
        pool = sorted(set(reserve.composers) - set(index))
        away = sorted(map(str, rng.choice(pool, size=min(novel, len(pool)), replace=False)))
        enrol: list[int] = []
        query: list[int] = []
        for c in index:
            names = sorted(works[c])
            chosen = set(_enrol_works(rng, names, enrol_works))
            for w in names:
                (enrol if w in chosen else query).extend(works[c][w])
        for c in away:
            query += [n for w in works[c].values() for n in w]
        out.append(EnrolSplit(f"draw {d}", np.array(sorted(enrol)), np.array(sorted(query)), tuple(index)))
    return out


def leave_genres_out_split(infos: Sequence[TrackInfo], reserve: Reserve) -> EnrolSplit:
    """Every enrolable reserve composer who wrote in two named genres or more, enrolled from the works
    of the genre it has most works in (ties: the first in NAMED_GENRES) and queried with its works of
    every other named genre; the novel-only composers' works queried beside them."""
    works, genres = works_of(infos), genres_of(infos)
    enrol: list[int] = []
    query: list[int] = []
    known: list[str] = []
    for c in reserve.enrolable:
        g = genres[c]
        if len(g) < 2:
            continue
        main = max(NAMED_GENRES, key=lambda x: (len(g.get(x, ())), -NAMED_GENRES.index(x)))
        known.append(c)
        for w, tracks in works[c].items():
            if w in g[main]:
                enrol += tracks
            else:
                query += [n for n in tracks if infos[n].genre in NAMED_GENRES]
    for c in reserve.novel_only:
        query += [n for w in works[c].values() for n in w]
    return EnrolSplit("leave genres out", np.array(sorted(enrol)), np.array(sorted(query)), tuple(known))


ENROLMENT_SIZES = (1, 3, 5, 7)


def enrolment_size_splits(infos: Sequence[TrackInfo], reserve: Reserve, sizes: Sequence[int] = ENROLMENT_SIZES,
                          draws: int = 3, seed: int = 0) -> list[EnrolSplit]:
    """The enrolment-size curve: the enrolable reserve composers with more than max(sizes) works,
    their works put in a seeded order per draw; for each size n the first n works enrolled and the
    works from position max(sizes) on queried, every work of the novel-only composers beside them.
    Within a draw the queries are the same at every size and each size's enrolment holds the
    smaller ones', so the figures differ only by how much was enrolled. Splits are named
    "draw D, N works", sizes ascending within each draw. Raises ValueError with fewer than two
    such composers."""
    sizes = sorted(set(int(n) for n in sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"enrolment sizes must be 1 or more: {sizes}")
    top = sizes[-1]
    works = works_of(infos)
    rich = [c for c in reserve.enrolable if len(works[c]) > top]
    if len(rich) < 2:
        raise ValueError(f"{len(rich)} reserve composer(s) with more than {top} works: too few for the "
                         "enrolment-size curve")
    novel = [n for c in reserve.novel_only for w in works[c].values() for n in w]
    names = {c: sorted(works[c]) for c in rich}
    rng = np.random.default_rng(seed)
    out = []
    for d in range(draws):
        order = {c: [names[c][i] for i in rng.permutation(len(names[c]))] for c in rich}
        query = sorted(novel + [n for c in rich for w in order[c][top:] for n in works[c][w]])
        for size in sizes:
            enrol = sorted(n for c in rich for w in order[c][:size] for n in works[c][w])
            out.append(EnrolSplit(f"draw {d}, {size} works", np.array(enrol), np.array(query), tuple(rich), size))
    return out
