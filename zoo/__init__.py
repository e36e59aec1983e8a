"""zoo: a managed model zoo for text-embedding models.

    import zoo
    m = zoo.load("all-minilm-l6-v2")
    m.embed(["a", "b"])   # float32 array of shape (2, 384)
    zoo.embed_dataset("texts.parquet", "vectors/")   # a dataset into Parquet shards

Importing zoo is cheap; registries and runtimes load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "embed_dataset", "open_registry", "ZooError", "__version__"]

from typing import TYPE_CHECKING

from .errors import ZooError

if TYPE_CHECKING:  # type checkers see the real signatures; at run time each name imports on first call
    from .api import load
    from .datasets.job import embed_dataset
    from .registry import open_registry
else:
    def load(*args, **kwargs):
        from .api import load as _load

        return _load(*args, **kwargs)

    load.__doc__ = "Load a registered model by name; see zoo.api.load."

    def embed_dataset(*args, **kwargs):
        from .datasets.job import embed_dataset as _embed_dataset

        return _embed_dataset(*args, **kwargs)

    embed_dataset.__doc__ = "Embed a dataset into Parquet shards; see zoo.datasets.job.embed_dataset."

    def open_registry(home=None, registry_url=None):
        from .registry import open_registry as _open

        return _open(home, registry_url)
