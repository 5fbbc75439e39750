"""The many-composer protocols' splits, the catalogues they read, and the hold-out that keeps their
composers unseen by the embedder."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from musicid.build.pretrain import train_general_embedder
from musicid.collection.catalogue import TrackInfo, track_info
from musicid.errors import DataDirError
from musicid.evaluation.enrolment import check_unseen
from musicid.evaluation.protocols import (
    NAMED_GENRES,
    draw_reserve,
    enrolment_size_splits,
    leave_genres_out_split,
    many_unseen_splits,
)
from musicid.model.background import load_background
from musicid.model.embedder import load_checkpoint
from musicid.model.sampling import spread_pick
from musicid.model.training import TrainSettings

from .conftest import TINY_TRAIN, make_corpus, tiny_options, write_piece


def synthetic_catalogue(n_composers: int = 140, seed: int = 0) -> list[TrackInfo]:
    """Composers with 1 to 8 works, two tracks a work, some in two or three genres; the first five in
    a protected collection (ASAP), one with far too many files to be reserved."""
    rng = np.random.default_rng(seed)
    infos = []
    for c in range(n_composers):
        name = f"C{c:03d}"
        collection = "asap" if c < 5 else "polish-scores"
        n_works = 40 if c == 5 else int(rng.integers(1, 9))
        genres = list(rng.choice(NAMED_GENRES, size=int(rng.integers(1, 4)), replace=False))
        for w in range(n_works):
            genre = genres[w % len(genres)]
            infos += [TrackInfo(name, collection, str(genre), f"{name}/w{w}")] * 2
    return infos


def test_a_reserve_is_drawn_by_seed_away_from_protected_and_prolific_composers() -> None:
    infos = synthetic_catalogue()
    a, b = draw_reserve(infos, seed=3), draw_reserve(infos, seed=3)
    assert a == b and a != draw_reserve(infos, seed=4)
    assert len(a.enrolable) == 40 and len(a.novel_only) == 60 and len(set(a.composers)) == 100
    assert not {"C000", "C001", "C002", "C003", "C004"} & set(a.composers)  # in ASAP
    assert "C005" not in a.composers  # 80 files: its training value is kept
    works = {c: {i.work for i in infos if i.composer == c} for c in a.enrolable}
    assert all(len(w) >= 3 for w in works.values())
    genres = {c: {i.genre for i in infos if i.composer == c} for c in a.enrolable}
    assert sum(len(g) >= 2 for g in genres.values()) >= 20


def test_a_reserve_too_small_for_the_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        draw_reserve(synthetic_catalogue(30))


def _work_sides(infos: list[TrackInfo], enrol: np.ndarray, query: np.ndarray) -> tuple[set[str], set[str]]:
    return {infos[i].work for i in enrol}, {infos[i].work for i in query}


def test_many_unseen_draws_keep_their_novel_composers_out_of_the_index_and_works_whole() -> None:
    infos = synthetic_catalogue()
    reserve = draw_reserve(infos)
    splits = many_unseen_splits(infos, reserve, draws=4)
    assert len(splits) == 4 and len({s.known for s in splits}) == 4  # four different draws
    for s in splits:
        enrolled = {infos[i].composer for i in s.enrol}
        queried = {infos[i].composer for i in s.query}
        novel = queried - set(s.known)
        assert enrolled == set(s.known) and len(s.known) == 30
        assert len(novel) == 30 and not novel & enrolled
        assert set(s.known) | novel <= set(reserve.composers)  # never a composer the embedder trained on
        enrol_works, query_works = _work_sides(infos, s.enrol, s.query)
        assert not enrol_works & query_works
        for c in s.known:  # a few works enrolled, the rest queried
            mine = {i.work for i in infos if i.composer == c}
            assert 1 <= len(mine & enrol_works) <= 3 and mine & query_works


def test_leave_genres_out_enrols_one_genre_and_queries_the_others_never_splitting_a_work() -> None:
    infos = synthetic_catalogue()
    reserve = draw_reserve(infos)
    s = leave_genres_out_split(infos, reserve)
    assert len(s.known) >= 20
    enrol_works, query_works = _work_sides(infos, s.enrol, s.query)
    assert not enrol_works & query_works
    for c in s.known:
        enrolled_genres = {infos[i].genre for i in s.enrol if infos[i].composer == c}
        queried_genres = {infos[i].genre for i in s.query if infos[i].composer == c}
        assert len(enrolled_genres) == 1 and queried_genres and not enrolled_genres & queried_genres
    novel = {infos[i].composer for i in s.query} - set(s.known)
    assert novel == set(reserve.novel_only) - {c for c in reserve.novel_only
                                              if not any(i.composer == c for i in infos)}


def test_enrolment_size_splits_query_the_same_works_at_every_size_and_enrol_nested_works() -> None:
    infos = synthetic_catalogue()
    reserve = draw_reserve(infos)
    splits = enrolment_size_splits(infos, reserve, sizes=(3, 1, 2), draws=2)
    assert [s.name for s in splits] == [f"draw {d}, {n} works" for d in (0, 1) for n in (1, 2, 3)]
    works = {c: {i.work for i in infos if i.composer == c} for c in reserve.composers}
    rich = {c for c in reserve.enrolable if len(works[c]) > 3}
    for d in (0, 1):
        draw = splits[3 * d: 3 * d + 3]
        assert len({tuple(s.query) for s in draw}) == 1  # one query set per draw
        previous: set[str] = set()
        for s in draw:
            assert set(s.known) == rich and s.enrol_works is not None
            enrol_works, query_works = _work_sides(infos, s.enrol, s.query)
            assert not enrol_works & query_works and previous <= enrol_works
            for c in rich:
                assert len(works[c] & enrol_works) == s.enrol_works
                assert len(works[c] & query_works) == len(works[c]) - 3  # every work from position 3 on queried
            queried = {infos[i].composer for i in s.query}
            assert queried - rich == {c for c in reserve.novel_only if works[c]}
            previous = enrol_works
    assert splits[0].enrol.tolist() != splits[3].enrol.tolist()  # draws differ
    with pytest.raises(ValueError, match="too few"):
        enrolment_size_splits(infos, reserve, sizes=(40,))


def test_spread_pick_spreads_positives_over_genres_and_works() -> None:
    rng = np.random.default_rng(0)
    pools = [[np.array([0, 1]), np.array([2, 3])], [np.array([4, 5]), np.array([6, 7])]]  # 2 genres x 2 works
    work_of = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}
    for _ in range(20):
        picked = spread_pick(rng, pools, 4)
        assert len(picked) == 4 and len({work_of[int(i)] for i in picked}) == 4
    one = spread_pick(rng, [[np.array([9, 10, 11])]], 5)  # one work: plain draws of its clips
    assert len(one) == 5 and set(one.tolist()) <= {9, 10, 11}


def test_unknown_training_domains_are_refused() -> None:
    with pytest.raises(ValueError, match="domains"):
        TrainSettings(domains="ensemble")


def test_the_catalogue_gives_genre_and_work_through_links_and_falls_back_to_folders(tmp_path: Path) -> None:
    root = tmp_path / "songs-collection"
    write_piece(root / "Alpha" / "Op1" / "a.mid", "Lowpiano", 1)
    write_piece(root / "Alpha" / "Op1" / "b.mid", "Lowpiano", 2)
    write_piece(root / "Alpha" / "loose-2.mid", "Lowpiano", 3)
    with (root / "metadata.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["composer", "work", "genre", "path"])
        w.writerow(["Alpha", "Alpha_Op1", "song", "Alpha/Op1/a.mid"])
        w.writerow(["Alpha", "Alpha_Op1", "song", "Alpha/Op1/b.mid"])
    linked = tmp_path / "all" / "Alpha"
    linked.mkdir(parents=True)
    (linked / "songs").symlink_to(root / "Alpha")
    a = track_info(linked / "songs" / "Op1" / "a.mid", "Alpha")
    assert a == TrackInfo("Alpha", "songs-collection", "song", "Alpha/Alpha_Op1")
    assert track_info(linked / "songs" / "Op1" / "b.mid", "Alpha").work == a.work
    loose = track_info(linked / "songs" / "loose-2.mid", "Alpha")  # not in the catalogue
    assert loose.genre == "unknown" and loose.work == "Alpha/loose"


def test_held_out_composers_are_kept_out_of_training_and_background(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute", "Strings"], per_composer=4, seed=5)
    out = tmp_path / "general.pt"
    rep = train_general_embedder([data], out, tiny_options(tmp_path, train=replace(TINY_TRAIN, epochs=2)),
                                 hold_out=["strings"])
    assert rep.composers == ["Highflute", "Lowpiano"]
    _, _, meta = load_checkpoint(out)
    assert meta["composers"] == ["Highflute", "Lowpiano"] and meta["held_out_composers"] == ["Strings"]
    background = load_background(out)
    assert background is not None and set(background.composers) == {"Highflute", "Lowpiano"}
    reserve = draw_reserve(synthetic_catalogue())
    check_unseen(reserve, meta["composers"])  # none of the reserve seen: no error
    with pytest.raises(DataDirError, match="reserve composer"):
        check_unseen(reserve, [*meta["composers"], reserve.enrolable[0]])
