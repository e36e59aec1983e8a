"""The remote layer: a shared artifact store that homes push to and pull from, by digest.

A store URL (``--store-url`` / ``$ZOO_STORE_URL``: ``file://`` for a shared filesystem, ``s3://``
through s3fs, any fsspec URL) holds the same blobs and manifests as a home's ``store/``. Hosts
that share a registry and a store URL then serve the very same bytes, so their vectors mix in one
index. Sits on the store layer only; it knows nothing of the registry or models.
"""

from .store import RemoteStore, fetch_missing, store_url

__all__ = ["RemoteStore", "fetch_missing", "store_url"]
