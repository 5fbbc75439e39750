"""Stage 8, measuring: cross-validation by work and the leave-one-composer-out protocol (`evaluate`,
with the embedders compared in `sources` and the work-resampling intervals in `intervals`), the
many-composer protocols (`protocols` draws the splits, `enrolment` runs them), cross-collection
transfer (`cross_collection`), the published baseline (`baseline`), the figures themselves (`metrics`) and
the plots (`plots`). Imports the stages below it.
"""
