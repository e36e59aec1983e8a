"""The datasets layer: batch jobs that embed a whole dataset into Parquet shards, on one machine
or a Ray cluster (``zoo embed-dataset``, ``zoo.embed_dataset``, ``zoo.ray.embed_dataset``).

It sits above selection: a job resolves one artifact there, pins its store digest, and every
worker serves exactly those bytes. Inputs and shards (``inputs``), stamped atomic output
(``output``), the worker both engines share (``worker``), the driver (``job``), Ray
(``ray_engine``), and which outputs no longer match what serves (``stale``).
"""
