"""musicid: tell who composed a MIDI file or score, or that it is by nobody the index knows."""

__version__ = "0.4.0"
