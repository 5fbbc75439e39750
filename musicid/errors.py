"""Domain errors. The CLI turns each into one red line on stderr and a non-zero exit."""

from __future__ import annotations


class MusicIdError(Exception):
    """Base class of every error musicid reports to a user. `path`, where given, is the file or folder
    at fault (a missing index's folder), which `--json` errors report in place of the command's input."""

    def __init__(self, message: str = "", path: str | None = None):
        super().__init__(message)
        self.path = path


class ReadError(MusicIdError):
    """A music file (MIDI or score) cannot be read as notes: unreadable, unsafe, no notes, absurd length."""


class MidiError(ReadError):
    """A file is not a usable MIDI file (unreadable, no notes, absurd length)."""


class ScoreError(ReadError):
    """A score (MusicXML, .mxl, Humdrum kern) is unreadable, unsafe to read, or holds no notes."""


class RenderError(MusicIdError):
    """FluidSynth failed, produced silence, or ran past its time bound."""


class SoundFontError(MusicIdError):
    """The SoundFont path does not exist or is not a SoundFont."""


class DataDirError(MusicIdError):
    """A data folder does not have the <root>/<Composer>/*.mid layout training needs."""


class IndexNotFound(MusicIdError):
    """No index directory where one was expected."""


class IndexCorrupt(MusicIdError):
    """An index directory fails its checksums or cannot be read."""


class IndexMismatch(MusicIdError):
    """An index, model or feature settings do not belong together."""


class TrainingError(MusicIdError):
    """The embedder cannot be trained on the data given."""


class ServeError(MusicIdError):
    """The service cannot start as asked (an unsafe bind, a port in use)."""
