"""Stage 7, building: what a build is asked (`BuildOptions`) and a labelled folder prepared for it
(`corpus`), the embedder trained or loaded from the model cache (`model_cache`), every clip embedded
and the threshold calibrated into a published index (`indexer`), tracks added to or removed from a
built index (`edit`), the same steps on a Ray cluster (`distributed`), and the general embedder
trained once on many collections (`pretrain`). Imports the stages below it.
"""
