"""The cache's entry format and key derivation, shared by every cache backend.

A vector is stored under a digest of everything that shapes it: the artifact's
content digest, the precision the runtime computes in, the effective prompt,
normalisation and output dimensions, and the exact text. Switching any of these
can only miss, never return another configuration's vector. A stored row also
remembers whether its text was truncated, so a cached answer reports truncation
exactly as a computed one does.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Iterable, Optional, Protocol, Sequence

import numpy as np

from ...errors import InvalidInput

__all__ = ["VectorCache", "CacheConfig", "Entry", "parse_size", "DEFAULT_MAX_BYTES", "TRUNCATED", "encode_entry",
           "decode_entry", "summarize"]

DEFAULT_MAX_BYTES = 2 * 1024 ** 3
TRUNCATED = 1  # entry flag: the text was cut to the model's max length before embedding
KEY_VERSION = b"zoo-cache-v1"


@dataclass(frozen=True)
class CacheConfig:
    """Everything besides the text that decides a vector; its digest namespaces the keys."""
    model: str
    artifact_digest: str
    runtime_precision: str
    prompt: str
    normalize: bool
    dimensions: int

    @property
    def digest(self) -> bytes:
        fields = {"artifact": self.artifact_digest, "precision": self.runtime_precision, "prompt": self.prompt,
                  "normalize": self.normalize, "dimensions": self.dimensions}
        return hashlib.sha256(KEY_VERSION + json.dumps(fields, sort_keys=True).encode()).digest()

    def keys(self, texts: Iterable[str]) -> list[bytes]:
        prefix = self.digest
        # surrogatepass: a token-id input's key starts with a lone surrogate (no text has one), which
        # leaves every text's bytes, and so every existing key, as they were
        return [hashlib.sha256(prefix + t.encode("utf-8", "surrogatepass")).digest() for t in texts]


@dataclass(frozen=True)
class Entry:
    vector: np.ndarray  # float32, (dimensions,)
    flags: int = 0


def encode_entry(vector: np.ndarray, flags: int) -> bytes:
    return struct.pack("<B", flags) + np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_entry(blob: bytes) -> Entry:
    return Entry(np.frombuffer(blob, dtype="<f4", offset=1).astype(np.float32), blob[0])


class VectorCache(Protocol):
    """What the engine needs from a cache; all methods are safe across threads and processes."""
    location: str

    def get_many(self, config: CacheConfig, keys: Sequence[bytes]) -> dict[bytes, Entry]: ...

    def put_many(self, config: CacheConfig, items: Sequence[tuple[bytes, np.ndarray, int]]) -> None: ...

    def stats(self) -> dict: ...

    def clear(self, model: Optional[str] = None) -> int: ...

    def prune(self, max_bytes: int) -> dict: ...


SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", re.I)  # fullmatch only
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
         "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


def parse_size(value) -> int:
    """Bytes from 123, "500MB", "1.5GiB" (decimal and binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        m = SIZE_RE.fullmatch(str(value))
        unit = (m.group(2) or "").lower() if m else None
        if not m or unit not in UNITS:
            raise InvalidInput(f"cannot read size {value!r}; use bytes or a unit such as 500MB or 2GiB")
        size = int(float(m.group(1)) * UNITS[unit])
    if size < 0:
        raise InvalidInput(f"size must be >= 0, got {value!r}")
    return size


def summarize(per_model: dict[str, dict]) -> dict:
    """Fill each model's hit/miss figures and hit rate; return the totals over all models."""
    for f in per_model.values():
        f.setdefault("hits", 0)
        f.setdefault("misses", 0)
        looked = f["hits"] + f["misses"]
        f["hit_rate"] = f["hits"] / looked if looked else None
    hits = sum(f["hits"] for f in per_model.values())
    misses = sum(f["misses"] for f in per_model.values())
    return {"entries": sum(f["entries"] for f in per_model.values()),
            "bytes": sum(f["bytes"] for f in per_model.values()),
            "hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else None,
            "models": per_model}
