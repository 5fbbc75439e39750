"""Stage 1, reading and writing music: the MIDI reader (`smf` walks a Standard MIDI File's bytes,
`midi` turns its ticks into seconds and notes), the score reader (`score`, with `score_files` making the
bytes safe and `kern` for Humdrum **kern), `reader` choosing between them by file type, `timing` telling
score MIDI from performance MIDI, `render` (FluidSynth) and `corpus_export` (music21's corpus as a
labelled folder). Imports only the foundation modules (`musicid.errors`, `atomic`, `keys`, `progress`).
"""
