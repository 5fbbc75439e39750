"""Stage 2, what the model and the recognisers see of a track: the 30-second clips of a piano roll or
log-mel spectrogram (`clips`), the notes' symbolic statistics (`symbolic`), the audio's spectral
statistics (`spectral`), the piece sketch that tells the same piece whatever its timing (`piece_match`),
the on-disk feature cache (`cache`) and `prepare`, which makes all of them from one file. Imports the
foundation and `io`.
"""
