"""zoo on Ray: add embeddings to a ``ray.data.Dataset`` you already hold.

    import ray, zoo.ray
    ds = zoo.ray.embed_dataset(ray.data.read_parquet("texts/"), model="all-minilm-l6-v2", workers=2)
    ds.write_parquet("vectors/")

The artifact is resolved once, on the driver, and every actor serves exactly that store digest
(its ``artifact_digest`` column says which). For stamped, resumable Parquet output, use
``zoo embed-dataset --engine ray`` / ``zoo.embed_dataset(..., engine="ray")``.
"""

from __future__ import annotations

__all__ = ["embed_dataset"]


def embed_dataset(ds, **options):
    from .datasets.ray_engine import embed_ray_dataset

    return embed_ray_dataset(ds, **options)


embed_dataset.__doc__ = __doc__
