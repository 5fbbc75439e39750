"""Stage 4, the composer embedder: the CNN and its checkpoints (`embedder`), its triplet and CosFace
training, resumable (`training`), the P x K batch sampling (`sampling`), the background cohort of training
tracks (`background`), the embedder that ships in the package (`shipped`, weights in `weights/`) and the
linear probe fitted on an index's vectors (`classifier`). Imports the stages below it.
"""
