"""musicid's own **kern pass (kern.py): each part of the syntax it follows, with the notes by hand.

Notes are (onset, pitch, duration) in quarter notes, as kern.read_kern gives them."""

from __future__ import annotations

from fractions import Fraction

import pytest

from musicid.io.kern import KernError, duration, pitch, read_kern


def notes(text: str) -> list[tuple[float, int, float]]:
    parts, _ = read_kern(text)
    return sorted((float(on), int(key), float(off - on)) for p in parts for on, off, key in p.notes)


@pytest.mark.parametrize("token, quarters", [("4c", 1), ("8.c", Fraction(3, 4)), ("2..c", Fraction(7, 2)),
                                             ("6c", Fraction(2, 3)), ("0c", 8), ("00c", 16), ("3%2c", Fraction(8, 3)),
                                             ("c", None)])
def test_durations(token: str, quarters: Fraction | None) -> None:
    assert duration(token) == quarters


@pytest.mark.parametrize("token, key", [("c", 60), ("cc", 72), ("C", 48), ("CC", 36), ("f#", 66), ("b-", 70),
                                        ("a##", 71), ("4r", None), ("4cnL", 60)])
def test_pitches(token: str, key: int | None) -> None:
    assert pitch(token) == key


def test_ties_across_barlines_with_continuation() -> None:
    assert notes("**kern\n[2c\n=2\n_2c\n=3\n2c]\n4d\n*-\n") == [(0.0, 60, 6.0), (6.0, 62, 1.0)]


def test_a_transposing_instruments_kern_is_at_concert_pitch() -> None:
    """**kern is encoded at concert pitch: *ITr names the interval to the written part and moves no
    note (a B-flat clarinet's *ITrd1c2, a D trumpet's *ITrd-1c-2, as the Polish scores write them);
    *Tr marks data transposed from concert pitch, so its semitones come off (humlib's written-pitch
    clarinet part: *Trd1c2, written d sounds c)."""
    assert notes("**kern\t**kern\n*ITrd1c2\t*ITrd-1c-2\n4c\t4d\n*-\t*-\n") == [(0.0, 60, 1.0), (0.0, 62, 1.0)]
    assert notes("**kern\n*Trd1c2\n4d\n4e\n*-\n") == [(0.0, 60, 1.0), (1.0, 62, 1.0)]


def test_spine_exchange_and_added_spine() -> None:
    text = ("**kern\t**kern\n4c\t4e\n*x\t*x\n4e\t4c\n*\t*+\n*\t*\t**kern\n4g\t4g\t4b\n*-\t*-\t*-\n")
    parts, _ = read_kern(text)
    assert len(parts) == 3 and [len(p.notes) for p in parts] == [3, 3, 1]
    assert sorted((float(on), key) for on, _, key in parts[2].notes) == [(2.0, 71)]


def test_tempo_marks_and_other_spines_kept_in_step() -> None:
    parts, tempos = read_kern("**kern\t**dynam\n*MM60\t*\n4c\tp\n*MM120\t*\n4d\tf\n*-\t*-\n")
    assert [(float(q), us) for q, us in tempos] == [(0.0, 1_000_000), (1.0, 500_000)]
    assert [(float(on), key) for on, _, key in parts[0].notes] == [(0.0, 60), (1.0, 62)]


def test_instrument_names_and_codes() -> None:
    parts, _ = read_kern('**kern\t**kern\n*Icello\t*I"Violino\n4C\t4c\n*-\t*-\n')
    assert (parts[0].program, parts[0].name, parts[1].name) == (42, "", "Violino")


def test_a_spine_path_written_on_a_data_record_is_followed() -> None:
    # invalid Humdrum (a data token and *^ on one record), but written: the split takes effect there
    text = "**kern\t**kern\n1C\t*^\n.\t2e\t4g\n.\t.\t4a\n.\t2f\t2b\n*\t*v\t*v\n1G\t1c\n*-\t*-\n"
    assert notes(text) == [(0.0, 48, 4.0), (0.0, 64, 2.0), (0.0, 67, 1.0), (1.0, 69, 1.0), (2.0, 65, 2.0),
                           (2.0, 71, 2.0), (4.0, 55, 4.0), (4.0, 60, 4.0)]


def test_broken_spines_name_the_record() -> None:
    with pytest.raises(KernError, match="^line 3 has 1 fields where 2 spines are open$"):
        read_kern("**kern\t**kern\n4c\t4d\n4e\n*-\t*-\n")
    with pytest.raises(KernError, match="^no exclusive interpretation line"):
        read_kern("!! only comments\n")
