"""text-embeddings-inference's native routes on ``zoo serve``, so TEI's clients work unchanged.

LangChain's ``HuggingFaceEndpointEmbeddings``, Haystack's TEI embedder and huggingface_hub's
``InferenceClient.feature_extraction`` POST to the server's root; LlamaIndex's
``TextEmbeddingsInference`` POSTs to ``/embed``. Each speaks TEI's shapes, not OpenAI's:

- ``POST /embed`` (and ``POST /``): ``{inputs, truncate, truncation_direction, prompt_name, normalize,
  dimensions}`` -> ``[[float]]``. As TEI: ``normalize`` defaults to true, inputs past the max length
  are cut unless ``truncate`` is false (TEI's default since 1.9), and token ids are the model's own
  (its special tokens may be included: they are stripped and added once, as ``m.embed_tokens``).
- ``POST /tokenize``, ``POST /decode``: the model's tokenizer, with TEI's token objects (UTF-8 byte
  offsets; special tokens without offsets).
- ``GET /info``: TEI's fields, and zoo's (revision, artifact, digest) under ``zoo``.
- Errors in TEI's shape, ``{"error", "error_type"}``, with its statuses: 400 empty, 413 a batch or
  input past the server's caps, 422 validation, 429 overloaded.

With one model served the shapes work as TEI's; with several, a request names its model in a
``model`` field or the ``X-Zoo-Model`` header (``/info``: the header or ``?model=``). The same key,
limits, batcher, cache and metrics as ``/v1/embeddings`` apply: these are other doors to one engine.
"""


import asyncio
from typing import Any, Optional

from ..errors import InvalidInput, ModelNotFound
from .settings import ServeSettings

__all__ = ["TeiProblem", "add_routes", "declare_what_is_served"]

STATUS = {"empty": 400, "validation": 422, "tokenizer": 422, "overloaded": 429, "backend": 424, "unhealthy": 503}


class TeiProblem(Exception):
    """A refusal in TEI's shape."""

    def __init__(self, error_type: str, message: str, status: Optional[int] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.error_type, self.message = error_type, message
        self.status = status or STATUS[error_type]
        self.headers = headers or {}


def add_routes(app, service, settings: ServeSettings, orjson) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    from . import protocol as P
    from .batcher import Overloaded

    metrics = service.metrics
    refusals = {status: {"model": P.TeiError, "description": what} for status, what in (
        (400, "Empty batch, or a body that is not JSON"), (404, "Unknown model"),
        (422, "Validation: a field, a prompt name, ids, more inputs or characters than this server takes, or "
              "an input too long with truncate false"),
        (429, "Overloaded; retry after `Retry-After` seconds"))}
    # what the guard refuses before a route sees it comes in zoo's (OpenAI's) shape
    refusals.update({status: {"model": P.ErrorResponse, "description": what} for status, what in (
        (401, "Missing or wrong API key"), (413, "Body past --max-body-bytes"),
        (415, "The body is not declared as JSON"))})

    @app.exception_handler(TeiProblem)
    async def _problem(request, exc: TeiProblem):
        return JSONResponse({"error": exc.message, "error_type": exc.error_type}, status_code=exc.status,
                            headers=exc.headers)

    async def body_of(request: Request, model, empty_field: str):
        try:
            body = P.parse_json(await request.body())
        except P.BodyError as exc:
            raise TeiProblem("validation", exc.message, status=400) from None
        if isinstance(body, dict) and body.get(empty_field) == []:
            raise TeiProblem("empty", f"`{empty_field}` cannot be empty")
        try:
            return P.validate(model, body)
        except P.BodyError as exc:
            raise TeiProblem("validation", exc.message) from None

    async def chosen(request: Request, named: Optional[str]):
        """The batcher of the model the request names, or of the one model served."""
        name = named or request.headers.get("x-zoo-model") or request.query_params.get("model")
        if not name:
            served = list(settings.models) or [m.name for m in await asyncio.to_thread(service.registry.list_models)]
            if len(served) != 1:
                raise TeiProblem("validation", f"this server serves {len(served)} models; name one with a \"model\" "
                                               "field or the X-Zoo-Model header")
            name = served[0]
        try:
            return await service.batcher(name)
        except ModelNotFound as exc:
            raise TeiProblem("validation", str(exc), status=404) from None

    def check_inputs(items: list, what: str = "input") -> None:
        """This server's caps: inputs per request, and characters (or ids) per input."""
        if len(items) > settings.max_inputs:
            raise TeiProblem("validation", f"batch size {len(items)} > maximum allowed batch size "
                                           f"{settings.max_inputs}")
        for i, x in enumerate(items):
            if len(x) > settings.max_input_chars:
                raise TeiProblem("validation", f"{what} {i} has {len(x)} "
                                               f"{'characters' if isinstance(x, str) else 'ids'}; this server "
                                               f"takes at most {settings.max_input_chars} per input")

    def expect(model, kind: str, route: str) -> None:
        """A model of another kind is refused by name, as TEI refuses a route its model does not serve."""
        if model.kind != kind:
            from ..engine.kinds import refuse_kind

            raise TeiProblem("validation", str(refuse_kind(model.name, model.kind, (kind,), route)))

    def encoder_of(model):
        encoder = getattr(model.backend, "encoder", None)
        if encoder is None:
            raise TeiProblem("validation", f"the {model.info.get('artifact')} runtime of {model.name} has no "
                                           "tokenizer to show")
        return encoder

    async def embed(request: Request):
        req = await body_of(request, P.TeiEmbedRequest, "inputs")
        single_ids = isinstance(req.inputs, list) and all(isinstance(x, int) for x in req.inputs)
        items = [req.inputs] if isinstance(req.inputs, str) or single_ids else list(req.inputs)
        check_inputs(items)
        batcher = await chosen(request, req.model)
        model = batcher.model
        expect(model, "embedding", "/embed")
        if req.dimensions is not None and req.dimensions > model.dim:
            raise TeiProblem("validation", f"dimensions must be at most {model.dim} for {model.name}, "
                                           f"got {req.dimensions}")
        try:
            prompt = model.resolve_prompt(prompt_name=req.prompt_name)
        except InvalidInput as exc:
            raise TeiProblem("validation", str(exc)) from None
        texts = [i for i, x in enumerate(items) if isinstance(x, str)]
        ids = [i for i, x in enumerate(items) if not isinstance(x, str)]
        direction = req.truncation_direction.lower()

        def tokenize():
            from ..engine.backends.lean import Prepared

            parts: dict[int, Any] = {}
            if ids and prompt:  # as TEI: the ids' text (special tokens skipped), the prompt before it
                encoder_of(model)  # a runtime without a tokenizer is refused as TEI's validation error
                for i in ids:  # one at a time: an error names "token input 0", as it always has here
                    items[i] = model.ids_as_text([items[i]])[0]
                texts.extend(ids), texts.sort(), ids.clear()
            if texts:
                prepared = model.tokenize([items[i] for i in texts], truncation_direction=direction, prompt=prompt)
                parts.update({i: (prepared, row) for row, i in enumerate(texts)})
            if ids:
                prepared = model.tokenize_ids([items[i] for i in ids])
                parts.update({i: (prepared, row) for row, i in enumerate(ids)})
            return Prepared.join([parts[i] for i in range(len(items))])

        try:
            tokenized = await asyncio.to_thread(tokenize)
        except InvalidInput as exc:
            raise TeiProblem("validation", str(exc)) from None
        if req.truncate is False and any(tokenized.truncated):
            i = tokenized.truncated.index(True)
            whole = prompt + items[i] if isinstance(items[i], str) else tokenized.texts[i]  # not the kept end
            given = await asyncio.to_thread(encoder_of(model).full_length, whole)
            raise TeiProblem("validation", f"Input validation error: `inputs` must have less than "
                                           f"{model.spec.max_seq_length} tokens. Given: {given} (input {i}; "
                                           "truncate true cuts it)")
        try:
            vectors = await batcher.embed(tokenized, req.dimensions, normalize=req.normalize)
        except Overloaded as exc:
            metrics.rejected.labels(model.name).inc()
            raise TeiProblem("overloaded", str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        except ValueError as exc:  # more than this server's whole queue in one request
            raise TeiProblem("validation", str(exc)) from None
        finally:
            metrics.queue_depth.labels(model.name).set(batcher.queue_depth)
        tokens = sum(tokenized.lengths)
        metrics.inputs.labels(model.name).inc(len(items))
        metrics.tokens.labels(model.name).inc(tokens)
        return Response(orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                        headers={"x-compute-tokens": str(tokens), "x-zoo-model": model.name,
                                 **P.matryoshka_header(model, req.dimensions)})

    embed_doc = {"response_model": list[list[float]], "responses": refusals,
                 "openapi_extra": _body(P.TeiEmbedRequest), "tags": ["text-embeddings-inference"]}
    app.post("/embed", summary="Embed (TEI's /embed)", **embed_doc)(embed)
    app.post("/", summary="Embed (TEI's root route, where huggingface_hub's InferenceClient posts)",
             **embed_doc)(embed)

    @app.post("/rerank", response_model=list[P.TeiRank], responses=refusals, openapi_extra=_body(P.TeiRerankRequest),
              tags=["text-embeddings-inference"])
    async def rerank(request: Request):
        """``texts`` by relevance to ``query``, best first, as TEI's /rerank (a reranker, cross-encoder, model)."""
        req = await body_of(request, P.TeiRerankRequest, "texts")
        check_inputs(req.texts, "texts")
        check_inputs([req.query], "query")
        batcher = await chosen(request, req.model)
        model = batcher.model
        expect(model, "reranker", "/rerank")
        if model.num_labels != 1:
            raise TeiProblem("validation", f"{model.name} scores {model.num_labels} labels; /rerank needs one")
        if req.raw_scores and model.spec.activation not in (None, "identity"):
            raise TeiProblem("validation", f"raw_scores: {model.name} serves its scores through its "
                                           f"{model.spec.activation} activation, as sentence-transformers does; "
                                           "send raw_scores false")
        try:
            tokenized = await asyncio.to_thread(model.tokenize_pairs, req.query, req.texts)
        except InvalidInput as exc:
            raise TeiProblem("validation", str(exc)) from None
        if req.truncate is False and any(tokenized.truncated):
            i = tokenized.truncated.index(True)
            raise TeiProblem("validation", f"Input validation error: `inputs` must have less than "
                                           f"{model.spec.max_seq_length} tokens (query and text {i} together; "
                                           "truncate true cuts them)")
        try:
            scores = await batcher.embed(tokenized)
        except Overloaded as exc:
            metrics.rejected.labels(model.name).inc()
            raise TeiProblem("overloaded", str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        except ValueError as exc:
            raise TeiProblem("validation", str(exc)) from None
        finally:
            metrics.queue_depth.labels(model.name).set(batcher.queue_depth)
        tokens = sum(tokenized.lengths)
        metrics.inputs.labels(model.name).inc(len(req.texts))
        metrics.tokens.labels(model.name).inc(tokens)
        from ..engine.reranker import ranked

        out = [{"index": i, "score": float(scores[i, 0]), **({"text": req.texts[i]} if req.return_text else {})}
               for i in ranked(scores[:, 0], None)]
        return Response(orjson.dumps(out), media_type="application/json",
                        headers={"x-compute-tokens": str(tokens), "x-zoo-model": model.name})

    @app.post("/tokenize", response_model=list[list[P.TeiToken]], responses=refusals,
              openapi_extra=_body(P.TeiTokenizeRequest), tags=["text-embeddings-inference"])
    async def tokenize(request: Request):
        """The model's tokens of each input, as TEI's /tokenize gives them."""
        req = await body_of(request, P.TeiTokenizeRequest, "inputs")
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        check_inputs(texts)
        model = (await chosen(request, req.model)).model
        encoder = encoder_of(model)
        try:
            prompt = model.resolve_prompt(prompt_name=req.prompt_name)
        except InvalidInput as exc:
            raise TeiProblem("validation", str(exc)) from None
        return await asyncio.to_thread(lambda: [_tokens(encoder, prompt + t, req.add_special_tokens) for t in texts])

    @app.post("/decode", response_model=list[str], responses=refusals, openapi_extra=_body(P.TeiDecodeRequest),
              tags=["text-embeddings-inference"])
    async def decode(request: Request):
        """Token ids of the model's vocabulary back to text, as TEI's /decode."""
        req = await body_of(request, P.TeiDecodeRequest, "ids")
        id_lists = [req.ids] if all(isinstance(x, int) for x in req.ids) else req.ids
        check_inputs(id_lists, "ids")
        tokenizer = encoder_of((await chosen(request, req.model)).model).tokenizer
        vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        for i, ids in enumerate(id_lists):
            bad = next((t for t in ids if t >= vocab), None)
            if bad is not None:
                raise TeiProblem("validation", f"ids {i}: id {bad} is outside this model's vocabulary (0 to {vocab - 1})")
        return await asyncio.to_thread(tokenizer.decode_batch, id_lists, skip_special_tokens=req.skip_special_tokens)

    @app.get("/info", response_model=P.TeiInfo, responses={k: refusals[k] for k in (401, 404, 422)},
             tags=["text-embeddings-inference"])
    async def info(request: Request):
        """The served model, in TEI's /info fields (zoo's own under ``zoo``)."""
        model = (await chosen(request, None)).model
        about = model.info
        return {"model_id": model.name, "model_sha": about.get("revision"),
                "model_dtype": str(about.get("runtime_precision")), "served_model_name": model.name,
                "model_type": {"reranker": {"id2label": {str(i): f"LABEL_{i}" for i in range(model.num_labels)}}}
                if model.kind == "reranker" else {"embedding": {"pooling": model.spec.pooling}},
                "max_concurrent_requests": settings.max_queue_texts, "max_input_length": model.spec.max_seq_length,
                "max_batch_tokens": settings.max_batch_tokens, "max_batch_requests": settings.max_batch_rows,
                "max_client_batch_size": settings.max_inputs, "auto_truncate": True, "tokenization_workers": 1,
                "version": __import__("zoo").__version__, "sha": None, "docker_label": None,
                "zoo": {"revision": about.get("revision"), "artifact": about.get("artifact"),
                        "store_digest": about.get("store_digest"), "dim": model.spec.dim, "kind": model.kind,
                        "modalities": list(model.spec.modalities), "normalize": model.spec.normalize}}


def _body(model) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _tokens(encoder, text: str, add_special_tokens: bool) -> list[dict]:
    """TEI's token objects: special tokens carry no offsets; others their UTF-8 byte span of ``text``."""
    encoding = encoder.untruncated().encode(text, add_special_tokens=add_special_tokens)
    at = [0]
    for ch in text:  # character offset -> byte offset
        at.append(at[-1] + len(ch.encode("utf-8", "surrogatepass")))
    out = []
    for token_id, (a, b), special, token in zip(encoding.ids, encoding.offsets, encoding.special_tokens_mask,
                                                encoding.tokens):
        if special:
            out.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
        else:
            out.append({"id": token_id, "text": text[a:b], "special": False, "start": at[a], "stop": at[b]})
    return out


def declare_what_is_served(components: dict, settings: ServeSettings, served: list, rerankers: list = ()) -> None:
    """Make the TEI request schemas say what this server accepts (as ``/v1/embeddings``'s): the caps, the
    prompt names, and with the served models fixed (``--models``), their names, widths and vocabularies.
    One refusal of a schema-valid request stays: token ids that are only the model's framing or padding,
    or hold its framing inside the content (a 422 that says so; never embedded as content). ``served``: the
    embedding models; ``rerankers``: the rerankers (``/rerank``)."""
    from ..engine.model import PROMPT_NAMES

    tokenizers = [m.backend.encoder.tokenizer for m in served if hasattr(m.backend, "encoder")]
    largest = min(t.get_vocab_size(with_added_tokens=True) for t in tokenizers) - 1 if tokenizers else None

    def cap(node: dict) -> None:
        for option in node.get("anyOf", [node]):
            kind = option.get("type")
            if kind == "string":
                option["maxLength"] = settings.max_input_chars
            elif kind == "integer" and largest is not None:
                option["maximum"] = largest
            elif kind == "array":
                is_ids = option["items"].get("type") == "integer"
                option["maxItems"] = settings.max_input_chars if is_ids else settings.max_inputs
                cap(option["items"])

    for name in ("TeiEmbedRequest", "TeiTokenizeRequest", "TeiDecodeRequest"):
        props = components[name]["properties"]
        cap(props["inputs" if "inputs" in props else "ids"])
        if "prompt_name" in props:
            props["prompt_name"] = {"anyOf": [{"type": "string", "enum": sorted(PROMPT_NAMES)}, {"type": "null"}],
                                    "default": None}
        if served:
            props["model"] = {"anyOf": [{"type": "string", "enum": sorted(m.name for m in served)},
                                        {"type": "null"}], "default": None}
    rerank = components["TeiRerankRequest"]["properties"]
    cap(rerank["query"]), cap(rerank["texts"])
    if rerankers:
        rerank["model"] = {"anyOf": [{"type": "string", "enum": sorted(m.name for m in rerankers)},
                                     {"type": "null"}], "default": None}
        if any(m.spec.activation not in (None, "identity") for m in rerankers):  # refused: raw logits not served
            rerank["raw_scores"] = {"type": "boolean", "enum": [False], "default": False}
    if served:
        dims = components["TeiEmbedRequest"]["properties"]["dimensions"]
        for option in dims.get("anyOf", [dims]):
            if option.get("type") == "integer":
                option["maximum"] = min(m.dim for m in served)
