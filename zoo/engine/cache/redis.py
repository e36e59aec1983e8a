"""A vector cache on Redis, for a cache shared by several hosts (the ``redis`` extra).

Keys are ``zoo:v1:<model>:<digest>``, values the same bytes as the SQLite rows
(a flag byte, then little-endian float32). Lookups are one MGET per batch and
writes one pipelined SET NX per batch. Size is bounded by Redis itself (set
``maxmemory`` with ``maxmemory-policy allkeys-lru``); ``prune`` evicts by Redis'
own idle clock (OBJECT IDLETIME) for a one-off trim.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ...errors import InvalidInput, ZooError, require
from .base import CacheConfig, Entry, decode_entry, encode_entry, summarize

__all__ = ["RedisCache"]

CHUNK = 1000


class RedisCache:
    def __init__(self, url: str, prefix: str = "zoo:v1:"):
        redis = require("redis", "redis")
        self.location = url
        self.prefix = prefix
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        try:
            self.client = redis.Redis.from_url(url, socket_connect_timeout=5)
            self.client.ping()
        except ValueError as exc:
            raise InvalidInput(f"cannot read Redis URL {url!r}: {exc}") from None
        except self._errors as exc:
            raise ZooError(f"cannot reach the Redis cache at {url}: {exc}; start redis-server or "
                           "use the local cache (unset ZOO_CACHE)") from None

    def _key(self, config: CacheConfig, key: bytes) -> str:
        return f"{self.prefix}{config.model}:{key.hex()}"

    def _stats_key(self) -> str:
        return f"{self.prefix}stats"

    def get_many(self, config: CacheConfig, keys: Sequence[bytes]) -> dict[bytes, Entry]:
        found: dict[bytes, Entry] = {}
        try:
            for start in range(0, len(keys), CHUNK):
                chunk = keys[start:start + CHUNK]
                for key, value in zip(chunk, self.client.mget([self._key(config, k) for k in chunk])):
                    if value is not None:
                        found[key] = decode_entry(value)
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(self._stats_key(), f"{config.model}:hits", len(found))
            pipe.hincrby(self._stats_key(), f"{config.model}:misses", len(keys) - len(found))
            pipe.execute()
        except self._errors as exc:
            raise ZooError(f"Redis cache at {self.location} failed: {exc}") from None
        return found

    def put_many(self, config: CacheConfig, items: Sequence[tuple[bytes, np.ndarray, int]]) -> None:
        try:
            for start in range(0, len(items), CHUNK):
                pipe = self.client.pipeline(transaction=False)
                for key, vector, flags in items[start:start + CHUNK]:
                    pipe.set(self._key(config, key), encode_entry(vector, flags), nx=True)
                pipe.execute()
        except self._errors as exc:
            raise ZooError(f"Redis cache at {self.location} failed: {exc}") from None

    def _scan(self, model: Optional[str] = None):
        pattern = f"{self.prefix}{model}:*" if model else f"{self.prefix}*"
        stats_key = self._stats_key().encode()
        return (k for k in self.client.scan_iter(match=pattern, count=CHUNK) if k != stats_key)

    def _sizes(self, keys: list) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.strlen(k)
        return pipe.execute()

    def stats(self) -> dict:
        per_model: dict[str, dict] = {}
        keys = list(self._scan())
        for k, size in zip(keys, self._sizes(keys)):
            model = k.decode()[len(self.prefix):].rsplit(":", 1)[0]
            f = per_model.setdefault(model, {"entries": 0, "bytes": 0})
            f["entries"] += 1
            f["bytes"] += size + len(k)
        for field, value in (self.client.hgetall(self._stats_key()) or {}).items():
            model, kind = field.decode().rsplit(":", 1)
            per_model.setdefault(model, {"entries": 0, "bytes": 0})[kind] = int(value)
        try:
            policy = self.client.config_get("maxmemory*")
        except Exception:  # CONFIG may be disabled on managed Redis
            policy = {}
        return {"backend": "redis", "location": self.location, **summarize(per_model),
                "max_bytes": int(policy.get("maxmemory", 0)) or None,
                "eviction_policy": policy.get("maxmemory-policy")}

    def clear(self, model: Optional[str] = None) -> int:
        removed = 0
        keys = list(self._scan(model))
        for start in range(0, len(keys), CHUNK):
            removed += self.client.unlink(*keys[start:start + CHUNK])
        if model is None:
            self.client.delete(self._stats_key())
        else:
            self.client.hdel(self._stats_key(), f"{model}:hits", f"{model}:misses")
        return removed

    def prune(self, max_bytes: int) -> dict:
        keys = list(self._scan())
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.object("idletime", k)
        idle = pipe.execute()
        sizes = [s + len(k) for k, s in zip(keys, self._sizes(keys))]
        total, doomed = sum(sizes), []
        for _, k, size in sorted(zip(idle, keys, sizes), key=lambda t: -(t[0] or 0)):  # idlest first
            if total <= max_bytes:
                break
            doomed.append(k)
            total -= size
        for start in range(0, len(doomed), CHUNK):
            self.client.unlink(*doomed[start:start + CHUNK])
        return {"removed": len(doomed), "entries": len(keys) - len(doomed), "bytes": total}
