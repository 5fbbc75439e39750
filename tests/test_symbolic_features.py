"""The symbolic features, against examples worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from musicid.features.symbolic import N_SYMBOLIC, note_table, standardiser, symbolic_features, symbolic_features_of
from musicid.io.midi import load_midi
from musicid.io.smf import NOTE_OFF, NOTE_ON

# where each statistic sits in the vector (features.symbolic.symbolic_features)
PCS, TOP, BASS, VERT, VOICES, CHORDS, IOI, LENGTHS, REGISTER, RATES = (
    slice(0, 12), slice(12, 39), slice(39, 66), slice(66, 78), slice(78, 86), slice(86, 92),
    slice(92, 102), slice(102, 112), slice(112, 117), slice(117, 119))


def notes(*rows: tuple[float, float, int]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def test_a_rising_scale_by_hand() -> None:
    # C D E F G, half a second each, one voice
    s = symbolic_features(notes(*((0.5 * i, 0.5 * i + 0.5, p) for i, p in enumerate([60, 62, 64, 65, 67]))))
    assert s.shape == (N_SYMBOLIC,) and s.dtype == np.float32
    np.testing.assert_allclose(s[PCS][[0, 2, 4, 5, 7]], 0.2, rtol=1e-6)  # rotated to C, the first most used
    assert s[PCS].sum() == pytest.approx(1.0)
    top = s[TOP]
    assert top[13 + 2] == pytest.approx(0.75) and top[13 + 1] == pytest.approx(0.25)  # three tones, a semitone
    np.testing.assert_array_equal(s[BASS], s[TOP])  # one voice: the bass is the tune
    assert s[VERT].sum() == 0  # no chords
    assert s[VOICES][1] == pytest.approx(1.0) and s[CHORDS][0] == pytest.approx(1.0)
    assert s[RATES] == pytest.approx([np.log(5 / 2.5)] * 2)
    assert s[REGISTER][0] == pytest.approx(63.6 / 127, rel=1e-5)


def test_a_held_triad_by_hand() -> None:
    s = symbolic_features(notes((0, 1, 60), (0, 1, 64), (0, 1, 67)))
    vert = s[VERT]
    assert vert[[3, 4, 7]] == pytest.approx([1 / 3] * 3)  # E-G, C-E, C-G
    assert s[VOICES][3] == pytest.approx(1.0) and s[CHORDS][2] == pytest.approx(1.0)
    assert s[REGISTER][3] == pytest.approx(67 / 127) and s[REGISTER][4] == pytest.approx(60 / 127)  # top, bass


def test_key_does_not_count_and_tempo_only_moves_the_timing() -> None:
    rng = np.random.default_rng(3)
    starts = np.cumsum(rng.choice([0.25, 0.5], 40))
    tune = [(t, t + 0.4, int(p)) for t, p in zip(starts, rng.integers(55, 75, 40), strict=True)]
    piece = notes((0, starts[-1], 48), *tune)  # a held low C: the most used pitch class
    base = symbolic_features(piece)
    up = symbolic_features(piece + np.array([0, 0, 5]))  # a fourth higher
    np.testing.assert_allclose(up[:92], base[:92], atol=1e-6)  # pitch classes, intervals, voices
    assert not np.allclose(up[REGISTER], base[REGISTER])
    slow = symbolic_features(piece * np.array([2, 2, 1]))  # twice as slow
    np.testing.assert_allclose(slow[:92], base[:92], atol=1e-6)  # same notes and chords
    np.testing.assert_allclose(slow[RATES], base[RATES] - np.log(2), atol=1e-5)
    assert not np.allclose(slow[IOI], base[IOI])
    with pytest.raises(ValueError, match="no notes"):
        symbolic_features(notes())


def test_note_table_skips_drums_and_closes_notes_left_open() -> None:
    events = [(0.0, NOTE_ON, 0, 60, 90), (0.0, NOTE_ON, 9, 36, 90), (1.0, NOTE_OFF, 0, 60, 0),
              (1.0, NOTE_ON, 0, 62, 90), (1.0, NOTE_OFF, 9, 36, 0), (3.0, NOTE_ON, 0, 64, 90),
              (3.0, NOTE_OFF, 0, 64, 0), (4.0, NOTE_OFF, 1, 70, 0)]
    # the drum is left out, the zero-length E is not a note, the D sounds to the last event
    np.testing.assert_array_equal(note_table(events), [[0, 1, 60], [1, 4, 62]])


def test_a_file_and_its_statistics(tmp_path: Path) -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=40)
    inst.notes += [pretty_midi.Note(80, p, 0.5 * i, 0.5 * i + 0.5) for i, p in enumerate([60, 62, 64, 65, 67])]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "scale.mid"))
    direct = symbolic_features(notes(*((0.5 * i, 0.5 * i + 0.5, p) for i, p in enumerate([60, 62, 64, 65, 67]))))
    np.testing.assert_allclose(symbolic_features_of(load_midi(tmp_path / "scale.mid").events), direct, atol=1e-3)


def test_standardiser_floors_statistics_that_never_vary() -> None:
    rows = np.array([[0.0, 1.0], [0.0, 3.0]])
    mean, std = standardiser(rows)
    assert list(mean) == [0.0, 2.0] and list(std) == [0.01, 1.0]
