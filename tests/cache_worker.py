"""A child process for the cache tests: writes deterministic vectors through SqliteCache.

    python cache_worker.py PATH WORKER N [--forever]

Writes N private keys and N shared keys (the same for every worker) in batches of 20,
reading each batch back. Vectors are a pure function of the text, so any process can
check any row. ``--forever`` keeps writing large batches until killed.
"""

import sys

import numpy as np

from zoo.engine.cache import CacheConfig
from zoo.engine.cache.sqlite import SqliteCache

DIM = 64
CONFIG = CacheConfig(model="worker-model", artifact_digest="sha256:test", runtime_precision="f32", prompt="",
                     normalize=True, dimensions=DIM)


def vector_of(text: str) -> np.ndarray:
    seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def main() -> None:
    path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cache = SqliteCache(path)
    if "--forever" in sys.argv:
        i = 0
        while True:
            texts = [f"forever {worker} {i} {j}" for j in range(500)]
            cache.put_many(CONFIG, [(k, vector_of(t), 0) for k, t in zip(CONFIG.keys(texts), texts)])
            print(i, flush=True)
            i += 1
    texts = [f"private {worker} {i}" for i in range(n)] + [f"shared {i}" for i in range(n)]
    for start in range(0, len(texts), 20):
        batch = texts[start:start + 20]
        keys = CONFIG.keys(batch)
        cache.put_many(CONFIG, [(k, vector_of(t), 0) for k, t in zip(keys, batch)])
        found = cache.get_many(CONFIG, keys)
        assert len(found) == len(batch), (worker, start, len(found))
        for k, t in zip(keys, batch):
            assert np.array_equal(found[k].vector, vector_of(t))
    cache.flush()
    print("done", flush=True)


if __name__ == "__main__":
    main()
