"""``lvmbench bench``: measurements of the machine and the code, never part of a run's results.

``step``: the training step in each input mode (speed, memory, FLOPs); ``loader``: how fast a CPU core
decodes and augments images (``--loader``); ``ingest``: how fast the store takes in run directories
(``--ingest N``). BENCHMARKS.md records what they measured.
"""
