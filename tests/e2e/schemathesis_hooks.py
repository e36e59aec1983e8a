"""A schemathesis check for the embedding and rerank routes, loaded by test_http_contract.py (SCHEMATHESIS_HOOKS).

schemathesis' own ``positive_data_acceptance`` takes a list of statuses; allowing 400 there let any
refusal of a schema-valid request pass. This check allows exactly the refusals no schema can state,
each documented, and nothing else: every other schema-valid request must be answered 2xx.

- ``/v1/embeddings``: ``dimensions`` above the model's width (it differs per model; OpenAI's API answers
  it with 400 too); ``precision`` int8/uint8 at a normalised width zoo stores no calibration ranges for
  (the widths differ per model; ``zoo.engine.precision.range_widths``).
- ``/v1/rerank``, ``/v2/rerank``: none.
- TEI's ``/rerank``: ``truncate: false`` with a query and text past the model's max length together (422).
- TEI's ``/embed`` and ``POST /``: token ids of the model's own vocabulary that are only its framing or
  padding, or hold its framing or padding inside the content ([PAD] between words): zoo refuses them
  rather than embed padding as content (422, naming the id).
"""

import os

import schemathesis

EMBEDDING_ROUTES = ("/v1/embeddings", "/embed", "/")
# checked where the server serves a reranker (ZOO_FUZZ_RERANK=1); served beside embedding models only, every
# rerank names a model of another kind and is refused by design (400 / 422, declared)
RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")


def _allowed(path: str, status: int, body: dict) -> bool:
    if path in ("/v1/rerank", "/v2/rerank"):
        return False  # every schema-valid rerank is answered
    if path == "/rerank":  # truncate false and a pair past the max length: its tokens are the tokenizer's count
        return status == 422 and "must have less than" in str(body.get("error", ""))
    if path == "/v1/embeddings":
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = str(error.get("message", ""))
        return status == 400 and (
            (error.get("param") == "dimensions" and message.startswith("dimensions must be at most"))
            or (error.get("param") == "precision" and message.startswith("int8/uint8 at dimensions=")
                and "needs calibration ranges" in message))
    message = str(body.get("error", ""))
    return status == 422 and body.get("error_type") == "validation" and \
        ("holds only the model's special tokens or padding" in message
         or "is one of the model's special tokens inside the content" in message)


@schemathesis.check
def embeddings_accept_what_the_schema_admits(ctx, response, case):
    path = case.operation.path
    routes = RERANK_ROUTES if os.environ.get("ZOO_FUZZ_RERANK") == "1" else EMBEDDING_ROUTES
    if path not in routes or case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if 200 <= response.status_code < 300:
        return None
    try:
        body = response.json()
    except Exception:  # noqa: BLE001
        body = {}
    body = body if isinstance(body, dict) else {}
    if _allowed(path, response.status_code, body):
        return None
    raise AssertionError(f"a schema-valid request was refused with {response.status_code}: {body or response.text[:300]}")
