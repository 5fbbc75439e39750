"""Stage 6, open-set recognition over an index: the novelty scores and the calibration of their
threshold (`novelty`), and the query -- a track prepared, embedded, searched, its composer named by the
classifier and k-NN vote, its novelty scored and known pieces matched (`query`). Imports the stages below
it.
"""
