"""Stage 5, the vector index: its settings and manifest (`manifest`), the novelty settings and the
calibration record it keeps (`calibration`; calibrating itself is `recognize.novelty.calibrate`), the
store of clip vectors and track metadata on disk and in memory (`store`) and the FAISS index kinds and
search (`faiss_index`). Imports the stages below it.
"""
