"""``POST /v1/rerank`` (and ``/v2/rerank``): Cohere's and Jina's rerank shape, as LocalAI, vLLM and llama.cpp serve it.

``{model, query, documents, top_n, return_documents}`` -> ``{id, model, results: [{index, relevance_score,
document?: {text}}], usage, meta}``, results best first (ties in input order), at most ``top_n``. The Cohere SDK's
``rerank``, LlamaIndex's and LangChain's Cohere/Jina rerankers read it. The same key, limits, batcher, cache and
metrics as ``/v1/embeddings``: the pairs of concurrent requests share the model's batches, and a pair's score
is cached by the exact artifact. A reranker's scores are its activation's (``CrossEncoder.predict``'s).

Refused with a 400 that names the field: more documents than the server takes, a document past its character
cap, ``top_n`` below 1 or above the server's inputs cap, and an embedding model named for a rerank.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime
import asyncio
import uuid
from typing import Any

from ..errors import InvalidInput
from .settings import ServeSettings

__all__ = ["add_routes", "parse_rerank_request", "declare_what_is_served"]


def parse_rerank_request(body: Any, settings: ServeSettings, api_error) -> dict:
    """The request's query, documents and options; the server's caps checked before any model is loaded."""
    from . import protocol as P

    if not isinstance(body, dict):
        raise api_error(400, "request body must be a JSON object", code="invalid_type")
    documents = body.get("documents")
    if isinstance(documents, list):
        if len(documents) > settings.max_inputs:
            raise api_error(400, f"{len(documents)} documents; this server takes at most {settings.max_inputs} per "
                                 "request", param="documents", code="too_many_inputs")
        for i, d in enumerate(documents):
            text = d.get("text") if isinstance(d, dict) else d
            if isinstance(text, str) and len(text) > settings.max_input_chars:
                raise api_error(400, f"'documents[{i}]' has {len(text)} characters; this server takes at most "
                                     f"{settings.max_input_chars} per document", param=f"documents[{i}]",
                                code="input_too_long")
    query = body.get("query")
    if isinstance(query, str) and len(query) > settings.max_input_chars:
        raise api_error(400, f"'query' has {len(query)} characters; this server takes at most "
                             f"{settings.max_input_chars}", param="query", code="input_too_long")
    req = P.validate(P.RerankRequest, body)
    if req.top_n is not None and req.top_n > settings.max_inputs:  # as declared: never more than it takes
        raise api_error(400, f"top_n must be at most {settings.max_inputs}, this server's documents per request; "
                             f"got {req.top_n}", param="top_n", code="invalid_value")
    texts = [d if isinstance(d, str) else d.text for d in req.documents]
    for i, t in enumerate([req.query] + texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            field = "query" if i == 0 else f"documents[{i - 1}]"
            raise api_error(400, f"'{field}' is not valid Unicode (lone surrogate)", param=field,
                            code="invalid_value") from None
    return {"model": req.model, "query": req.query, "documents": texts, "top_n": req.top_n,
            "return_documents": req.return_documents}


def check_kind(model, api_error) -> None:
    """A model that is not a reranker is refused by name (an embedding model gives no relevance scores)."""
    if getattr(model, "kind", "embedding") != "reranker":
        from ..engine.kinds import refuse_kind

        exc = refuse_kind(model.name, model.kind, ("reranker",), "/v1/rerank")
        raise api_error(400, str(exc), param="model", code=exc.code)
    if model.num_labels != 1:
        raise api_error(400, f"{model.name} scores {model.num_labels} labels; reranking needs a one-label "
                             "cross-encoder", param="model", code="model_kind")


def declare_what_is_served(components: dict, settings: ServeSettings, rerankers: list) -> None:
    """Make the rerank request's schema say what this server accepts: the characters per text, the documents
    per request, and where the served models are fixed (``--models``), the rerankers' names."""
    props = components["RerankRequest"]["properties"]
    props["query"]["maxLength"] = settings.max_input_chars
    documents = props["documents"]
    documents["maxItems"] = settings.max_inputs
    for option in documents["items"]["anyOf"]:
        if option.get("type") == "string":
            option["maxLength"] = settings.max_input_chars
    document = components.get("RerankDocument", {}).get("properties", {}).get("text")
    if document is not None:
        document["maxLength"] = settings.max_input_chars
    for option in props["top_n"]["anyOf"]:
        if option.get("type") == "integer":
            option["maximum"] = settings.max_inputs
    if rerankers:
        props["model"]["enum"] = sorted(m.name for m in rerankers)


def add_routes(app, service, settings: ServeSettings, orjson, errors: dict, api_error) -> None:
    from fastapi import Request
    from fastapi.responses import Response

    from . import protocol as P
    from .batcher import Overloaded
    from ..engine.reranker import ranked

    metrics = service.metrics
    not_found = {404: {"model": P.ErrorResponse, "description": "Unknown model"}}
    busy = {429: {"model": P.ErrorResponse, "description": "Queue full; retry after `Retry-After` seconds"}}

    async def rerank(request: Request):
        """Documents ordered by relevance to the query, by a reranker (cross-encoder); Cohere's and Jina's shape."""
        req = parse_rerank_request(P.parse_json(await request.body()), settings, api_error)
        batcher = await service.batcher(req["model"])
        model = batcher.model
        check_kind(model, api_error)
        try:
            tokenized = await asyncio.to_thread(model.tokenize_pairs, req["query"], req["documents"])
        except InvalidInput as exc:
            raise api_error(400, str(exc), param=exc.param or "documents", code=exc.code) from None
        try:
            scores = await batcher.embed(tokenized)
        except Overloaded as exc:
            metrics.rejected.labels(model.name).inc()
            raise api_error(429, str(exc), type="rate_limit_error", code="queue_full",
                            headers={"Retry-After": str(exc.retry_after)}) from None
        except ValueError as exc:
            raise api_error(413, str(exc), param="documents", code="too_many_inputs") from None
        finally:
            metrics.queue_depth.labels(model.name).set(batcher.queue_depth)
        tokens = sum(tokenized.lengths)
        metrics.inputs.labels(model.name).inc(len(req["documents"]))
        metrics.tokens.labels(model.name).inc(tokens)
        results = [{"index": i, "relevance_score": float(scores[i, 0]),
                    **({"document": {"text": req["documents"][i]}} if req["return_documents"] else {})}
                   for i in ranked(scores[:, 0], req["top_n"])]
        body = {"id": str(uuid.uuid4()), "model": model.name, "results": results,
                "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}}
        truncated = sum(tokenized.truncated)
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"X-Zoo-Truncated": str(truncated), "X-Zoo-Artifact": str(model.info.get("artifact"))})

    doc = {"response_model": P.RerankResponse, "responses": {**errors, **not_found, **busy},
           "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {
               "schema": {"$ref": "#/components/schemas/RerankRequest"}}}}}}
    app.post("/v1/rerank", summary="Rerank (Cohere's and Jina's /v1/rerank)", **doc)(rerank)
    # the Cohere SDK's ClientV2 (and vLLM) use /v2/rerank: the same request and response
    app.post("/v2/rerank", summary="Rerank (Cohere's v2 path)", **doc)(rerank)
