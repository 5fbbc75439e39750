"""MIDI loading, FluidSynth rendering and log-mel features on files made in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from musicid.errors import MidiError, RenderError, SoundFontError
from musicid.features.clips import FeatureSettings, clip_offsets, cut_clips, log_mel, mel_filters
from musicid.io.midi import load_midi, parse_midi
from musicid.io.render import RenderSettings, check_soundfont, render, write_wav

from .conftest import write_piece


def test_midi_events_notes_and_notes_hash(tmp_path: Path) -> None:
    a = load_midi(write_piece(tmp_path / "a.mid", "Lowpiano", seed=1, seconds=6))
    b = load_midi(write_piece(tmp_path / "b.mid", "Lowpiano", seed=1, seconds=6))
    c = load_midi(write_piece(tmp_path / "c.mid", "Lowpiano", seed=2, seconds=6))
    assert a.n_notes > 10 and a.n_drum_notes == 0
    assert 5.5 < a.duration < 6.6
    assert a.notes_hash == b.notes_hash  # same notes, different file
    assert a.notes_hash != c.notes_hash


def test_text_metadata_never_reaches_events(tmp_path: Path) -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0, name="Ludwig van Beethoven")
    inst.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=0, end=1))
    pm.instruments.append(inst)
    pm.lyrics.append(pretty_midi.Lyric("Beethoven", 0.5))
    path = tmp_path / "meta.mid"
    pm.write(str(path))
    plain = pretty_midi.PrettyMIDI()
    plain.instruments.append(pretty_midi.Instrument(0))
    plain.instruments[0].notes.append(pretty_midi.Note(velocity=90, pitch=60, start=0, end=1))
    plain.write(str(tmp_path / "plain.mid"))
    assert load_midi(path).events == load_midi(tmp_path / "plain.mid").events


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"hello, I am text\n", "not a MIDI file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01", "unreadable MIDI"),
])
def test_not_midi_is_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(MidiError, match=reason):
        parse_midi(data, "x.mid")


def test_no_notes_and_drums_only_are_rejected(tmp_path: Path) -> None:
    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(0))
    empty.write(str(tmp_path / "empty.mid"))
    with pytest.raises(MidiError, match="no notes"):
        load_midi(tmp_path / "empty.mid")
    drums = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(0, is_drum=True)
    kit.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=0, end=0.5))
    drums.instruments.append(kit)
    drums.write(str(tmp_path / "drums.mid"))
    with pytest.raises(MidiError, match="only percussion"):
        load_midi(tmp_path / "drums.mid")


def test_render_is_mono_bounded_and_not_silent(tmp_path: Path) -> None:
    midi = load_midi(write_piece(tmp_path / "a.mid", "Strings", seed=0, seconds=8))
    settings = RenderSettings()
    audio = render(midi, settings)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) / settings.sample_rate - (midi.duration + 1.0)) < 0.05
    assert 0.01 < np.abs(audio).max() <= 1.0
    short = render(midi, settings, max_seconds=2.0)
    assert len(short) == 2 * settings.sample_rate
    np.testing.assert_allclose(short, audio[: len(short)], atol=1e-6)  # same synth state each time


def test_render_time_bound_is_an_error(tmp_path: Path) -> None:
    midi = load_midi(write_piece(tmp_path / "a.mid", "Strings", seed=0, seconds=60))
    with pytest.raises(RenderError, match="render took over"):
        render(midi, RenderSettings(timeout_seconds=0.0))


def test_transposed_render_differs(tmp_path: Path) -> None:
    midi = load_midi(write_piece(tmp_path / "a.mid", "Highflute", seed=0, seconds=4))
    up = midi.transposed(5)
    assert [e[3] for e in up.events if e[1] == 0] == [e[3] + 5 for e in midi.events if e[1] == 0]
    assert not np.allclose(render(midi), render(up))


def test_soundfont_checks(tmp_path: Path) -> None:
    with pytest.raises(SoundFontError, match="SoundFont not found"):
        check_soundfont(tmp_path / "missing.sf2")
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"this is not a soundfont")
    with pytest.raises(SoundFontError, match="not a SoundFont"):
        check_soundfont(fake)


def test_wav_written(tmp_path: Path) -> None:
    import wave

    write_wav(tmp_path / "x.wav", np.zeros(1600, np.float32), 16000)
    with wave.open(str(tmp_path / "x.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 16000, 1600)


def test_log_mel_shape_range_and_batching() -> None:
    s = FeatureSettings()
    t = torch.arange(s.sample_rate * 2) / s.sample_rate
    a440 = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    spec = log_mel(a440, s)
    assert spec.shape == (s.n_bins, 2 * s.sample_rate // s.hop_length + 1)
    assert float(spec.max() - spec.min()) <= 8.0 + 1e-4  # floored 80 dB under the peak
    # the loudest band contains 440 Hz
    fb = mel_filters(s.sample_rate, s.n_fft, s.n_bins, s.f_min, s.f_max)
    bin440 = round(440 * s.n_fft / s.sample_rate)
    assert int(spec.mean(-1).argmax()) == int(fb[:, bin440].argmax())
    batch = log_mel(torch.stack([a440, 0.5 * a440]), s)
    torch.testing.assert_close(batch[0], spec)
    torch.testing.assert_close(batch[1] - batch[0], torch.full_like(spec, float(np.log10(0.25))),
                               atol=1e-3, rtol=0)


def test_mel_filters_cover_every_band() -> None:
    fb = mel_filters(16000, 2048, 96, 30.0, 8000.0)
    assert fb.shape == (96, 1025)
    assert bool((fb.sum(dim=1) > 0).all())


def test_clips_cover_track_and_are_capped() -> None:
    s = FeatureSettings()
    assert clip_offsets(100, s) == [0]
    assert clip_offsets(s.clip_frames + 2 * s.clip_hop_frames, s) == [0, s.clip_hop_frames, 2 * s.clip_hop_frames]
    long = clip_offsets(s.clip_frames * 100, s)
    assert len(long) == s.max_clips and long[0] == 0 and long[-1] == s.clip_frames * 99
    clips, starts = cut_clips(torch.zeros(s.n_bins, 10), s)
    assert clips.shape == (1, s.n_bins, s.clip_frames) and starts == [0]


def test_random_programs_change_the_instruments_not_the_notes(tmp_path: Path) -> None:
    from musicid.io.render import RANDOM_PROGRAMS, random_programs

    flute = load_midi(write_piece(tmp_path / "f.mid", "Highflute", 3))
    other = load_midi(write_piece(tmp_path / "g.mid", "Highflute", 4))
    programs = random_programs(flute)
    # fixed by the piece: the same file always sounds the same; another piece gets other instruments
    assert np.array_equal(programs, random_programs(load_midi(tmp_path / "f.mid")))
    assert not np.array_equal(programs, random_programs(other))
    assert programs.shape == (16,) and 0 <= programs.min() and programs.max() < RANDOM_PROGRAMS
    plain = render(flute, RenderSettings(max_seconds=4))
    varied = render(flute, RenderSettings(max_seconds=4, random_programs=True))
    assert varied.shape == plain.shape and not np.allclose(varied, plain, atol=1e-3)
    assert np.array_equal(varied, render(flute, RenderSettings(max_seconds=4, random_programs=True)))
    # a cache entry or an index rendered one way is never read for the other
    assert RenderSettings(random_programs=True).identity() != RenderSettings().identity()
    assert "random_programs" not in RenderSettings().identity()  # caches made before it still hit
