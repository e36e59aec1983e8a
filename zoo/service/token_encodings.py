"""What a token-id ``input`` on ``/v1/embeddings`` means: OpenAI's ids, decoded back to text.

OpenAI's embeddings API takes token arrays as ids of a *tiktoken* encoding (``cl100k_base`` for its
ada-002 and text-embedding-3 models). LangChain's ``OpenAIEmbeddings`` sends exactly that by default
(``check_embedding_ctx_length=True``). Reading those ids in the served model's own vocabulary, as zoo
once did whenever they all fell inside it, embeds garbage with HTTP 200: cosine 0.02-0.18 to the
text's vector on realistic queries. So by default an id list is decoded with the tiktoken encoding
and embedded as the text it encodes; an operator whose clients send the model's own ids says so per
model (``token_encoding: model``, LocalAI's meaning).

The tables are OpenAI's published ``.tiktoken`` files. They install offline inside the
``bpe-openai`` wheel (MIT) and are checked against the sha256 that tiktoken itself pins for them, so
a changed file is refused rather than read. zoo looks ids up itself instead of calling bpe-openai's
``decode``: that one reads id -1 as the last special token (a Python negative index). Decoding is a
table lookup (each id is a byte string; the bytes joined are UTF-8 text), so nothing here can
differ from tiktoken's ``decode``: invalid UTF-8 (an id list cut inside a character) becomes U+FFFD,
as there.

Special tokens (``<|endoftext|>`` and kin) are refused: no embedding client sends them by default
(tiktoken refuses to encode them unless told), and the valid ids are then one range, which the
OpenAPI schema declares.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from typing import Sequence

from ..errors import InvalidInput, require

__all__ = ["TOKEN_ENCODINGS", "TIKTOKEN_ENCODINGS", "DEFAULT_TOKEN_ENCODING", "decode", "largest_id",
           "check_token_encoding"]

# name -> sha256 of OpenAI's file, as tiktoken_ext.openai_public pins it
TIKTOKEN_ENCODINGS = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
MODEL = "model"  # the served model's own vocabulary
TOKEN_ENCODINGS = (*TIKTOKEN_ENCODINGS, MODEL)
DEFAULT_TOKEN_ENCODING = "cl100k_base"


def check_token_encoding(name) -> None:
    if name not in TOKEN_ENCODINGS:
        raise InvalidInput(f"token_encoding is {name!r}; it must be one of {', '.join(TOKEN_ENCODINGS)}",
                           param="token_encoding")


@functools.lru_cache(maxsize=None)
def _table(name: str) -> tuple[bytes, ...]:
    """Each ordinary token's bytes, indexed by id (the ranks of OpenAI's file are 0..n-1)."""
    import base64
    from importlib import resources

    require("bpe_openai", "serve")
    raw = gzip.decompress((resources.files("bpe_openai.data") / f"{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != TIKTOKEN_ENCODINGS[name]:
        raise InvalidInput(f"the installed {name} table is not OpenAI's published file (its sha256 differs); "
                           "reinstall bpe-openai")
    table = []
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            if int(rank) != len(table):
                raise InvalidInput(f"the installed {name} table is not contiguous at rank {len(table)}")
            table.append(base64.b64decode(token))
    return tuple(table)


def largest_id(name: str) -> int:
    """The largest id ``name`` decodes (its ordinary tokens are 0..this)."""
    return len(_table(name)) - 1


def decode(name: str, id_lists: Sequence[Sequence[int]]) -> list[str]:
    """Each id list as the text it encodes in the tiktoken encoding ``name``. An id outside the
    encoding's ordinary tokens is refused naming the input, the position and the setting to change."""
    table = _table(name)
    texts = []
    for i, ids in enumerate(id_lists):
        for j, t in enumerate(ids):
            if not 0 <= t < len(table):
                raise InvalidInput(
                    f"token input {i}: id {int(t)} at position {j} is not a text token of {name} (0 to "
                    f"{len(table) - 1}; special tokens are refused). Token ids here are {name}'s, as OpenAI's "
                    f"API reads them; a server serving this model's own ids is started with token_encoding: model",
                    param=f"input[{i}]")
        texts.append(b"".join(table[t] for t in ids).decode("utf-8", errors="replace"))
    return texts
