"""What ``zoo serve`` may be told, and the one check every way of telling it goes through.

The command line, ``ZOO_*`` variables, a YAML deployment's ``serve:`` and ``ServeSettings(...)`` in
Python all end in ``check_serve_option``, so a value the command line refuses cannot arrive through
YAML instead (``max_batch_rows: 0`` once hung the first request and the shutdown with it). The
ranges live in ``LIMITS`` and the CLI's click types are built from them. Light on imports: the
CLI reads this module to declare its options.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from ..errors import InvalidInput
from .token_encodings import DEFAULT_TOKEN_ENCODING, check_token_encoding

__all__ = ["ServeSettings", "LIMITS", "SERVE_KEYS", "check_serve_option", "MAX_INPUTS"]

MAX_INPUTS = 2048  # per request, as OpenAI's embeddings endpoint

# option -> (lowest, highest or None): the ranges the CLI, YAML and Python share
LIMITS: dict[str, tuple[float, Optional[float]]] = {
    "port": (0, 65535),
    "max_inputs": (1, MAX_INPUTS),
    "max_input_chars": (1, None),
    "max_queue_texts": (1, None),
    "max_queue_tokens": (1, None),
    "max_batch_rows": (1, None),
    "max_batch_tokens": (1, None),
    "max_wait_ms": (0, 60_000),
    "max_body_bytes": (1, None),
    "max_image_pixels": (1, None),
    "header_timeout_s": (0.1, 3600),
    "image_fetch_timeout_s": (0.1, 600),
}


@dataclass
class ServeSettings:
    home: Optional[str] = None
    registry_url: Optional[str] = None
    models: list[str] = field(default_factory=list)  # preloaded, and (if set) the only ones served
    artifacts: dict[str, str] = field(default_factory=dict)  # model -> the artifact that serves it (else selection)
    api_key: Optional[str] = None
    cache: bool = True
    host: str = "127.0.0.1"  # where it listens: loopback decides the Host check and management defaults
    max_inputs: int = MAX_INPUTS  # per request, as OpenAI (more is a 400)
    max_input_chars: int = 100_000  # per input
    max_queue_texts: int = 8192  # per model: beyond it, 429
    max_queue_tokens: int = 1 << 20  # per model, tokens after truncation: beyond it, 429 (one request past it: 413)
    max_batch_rows: int = 256  # coalesced texts per engine call; the engine cuts them by its best batch size
    max_batch_tokens: int = 16384  # tokens summed over a coalesced engine call's texts
    max_wait_ms: float = 2.0  # idle: how long a partial batch waits for a burst to join
    max_body_bytes: int = 16 * 1024 * 1024  # a request body past this is a 413, before it is read whole
    max_image_pixels: int = 4096 * 4096  # per image input, checked from its header before any decode
    allow_image_hosts: list[str] = field(default_factory=list)  # hosts whose image URLs are fetched (else none)
    allow_source_dirs: list[str] = field(default_factory=list)  # roots a local-directory registration may use
    cors_origins: list[str] = field(default_factory=list)  # origins allowed to POST, with CORS headers for them
    allowed_hosts: list[str] = field(default_factory=list)  # Host names served besides loopback's
    allow_unauthenticated_management: bool = False  # /v1/zoo/... beyond loopback without a key
    docs: bool = True  # /docs, /redoc and /openapi.json
    header_timeout_s: float = 10.0  # a request head not complete by then closes its connection (slow clients)
    image_fetch_timeout_s: float = 10.0  # all of one request's allowed image URLs, connect to last byte
    # what a token-id input means: a tiktoken encoding's ids (OpenAI's reading), or "model" (the model's own)
    token_encoding: str = DEFAULT_TOKEN_ENCODING
    token_encodings: dict[str, str] = field(default_factory=dict)  # model -> its own, over token_encoding

    def token_encoding_of(self, model: str) -> str:
        return self.token_encodings.get(model, self.token_encoding)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in LIMITS or f.name in ("allow_source_dirs", "token_encoding"):
                check_serve_option(f.name, getattr(self, f.name))
        for encoding in self.token_encodings.values():
            check_token_encoding(encoding)


# the keys a YAML deployment's serve: may set, and the type of each (port is not a setting of the app)
SERVE_KEYS: dict[str, Any] = {"host": str, "port": int, "api_key": str, "models": list, "cache": bool,
                              "max_wait_ms": (int, float), "header_timeout_s": (int, float), "image_fetch_timeout_s": (int, float), "allow_source_dirs": list, "cors_origins": list,
                              "allow_image_hosts": list, "allowed_hosts": list,
                              "allow_unauthenticated_management": bool, "docs": bool, "token_encoding": str,
                              **{k: int for k in LIMITS if k not in ("port", "max_wait_ms", "header_timeout_s", "image_fetch_timeout_s")}}


def check_serve_option(name: str, value: Any) -> None:
    """Refuse a value the server cannot work with: one line naming the option and what it accepts."""
    if name in LIMITS:
        lo, hi = LIMITS[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            raise InvalidInput(f"{name} must be a number, not {type(value).__name__}", param=name)
        if value < lo or (hi is not None and value > hi):
            allowed = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise InvalidInput(f"{name} is {value}; it must be {allowed}", param=name)
    elif name == "token_encoding":
        check_token_encoding(value)
    elif name == "allow_source_dirs":
        for d in value or []:
            if not os.path.isdir(d):
                raise InvalidInput(f"allow_source_dirs: {d} is not a directory on this machine", param=name)
