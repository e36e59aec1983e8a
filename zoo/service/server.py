"""``zoo serve``: an OpenAI-compatible embeddings server (FastAPI on uvicorn).

Embeddings go through the same engine as ``zoo.load`` (selection, vector cache),
with concurrent requests coalesced by ``zoo.service.batcher``. Every error is an
OpenAI-style body ``{"error": {"message", "type", "param", "code"}}`` with the
right 4xx, and never takes the server down; a 5xx says only "internal error" and a
request id, and the server log has the details under that id. Bodies are declared in
``protocol`` (so ``/openapi.json`` is the contract), and ``guard`` checks the Host,
Content-Type, Origin and API key of every request before a route sees it. When an API
key is set, every ``/v1`` endpoint requires ``Authorization: Bearer KEY``; ``/health``
and ``/metrics`` stay open for probes and scrapers.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime
import asyncio
import base64
import logging
import os
import re
import time
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Optional


from .settings import ServeSettings
from .token_encodings import MODEL as MODEL_IDS, decode as decode_token_ids, largest_id
from ..errors import (ArtifactNotFound, InvalidInput, InvalidSource, ModelExists, ModelNotFound, NotAModel,
                      RevisionNotFound, SourceUnavailable, ZooError, require)

__all__ = ["ServeSettings", "create_app", "ApiError", "check_source"]

log = logging.getLogger("zoo.serve")


# A registry lookup per request cost ~6 % of the box under load; a name's resolution is reused
# this long, so an alias moved by `zoo alias` in another process shows within it.
NAME_TTL_S = 5.0


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _from_zoo_error(exc: ZooError) -> ApiError:
    from .jobs import JobNotFound, JobsBusy

    if isinstance(exc, JobsBusy):
        return ApiError(429, str(exc), type="rate_limit_error", code="jobs_busy", headers={"Retry-After": "30"})
    if isinstance(exc, (ModelNotFound, JobNotFound)):
        return ApiError(404, str(exc), code="model_not_found" if isinstance(exc, ModelNotFound) else "job_not_found",
                        param="model" if isinstance(exc, ModelNotFound) else None)
    if isinstance(exc, ModelExists):
        return ApiError(409, str(exc), code="model_exists", param="name")
    if isinstance(exc, SourceUnavailable):
        return ApiError(502, str(exc), type="upstream_error", code="source_unavailable")
    if isinstance(exc, ArtifactNotFound):
        return ApiError(404, str(exc), code="artifact_not_found")
    if isinstance(exc, InvalidInput):
        return ApiError(400, str(exc), param=exc.param, code=exc.code)
    if isinstance(exc, (InvalidSource, RevisionNotFound, NotAModel)):
        return ApiError(400, str(exc), code="invalid_value")
    raise exc  # anything else is the server's problem: a generic 500, details in the log


def check_source(text: str, roots: list[str]) -> None:
    """Refuse a registration source before anything touches the filesystem.

    ``hf://`` and ``pkg://`` name no local path. A directory must resolve, symlinks followed, to a
    path under one of ``roots`` (``--allow-source-dir``); with none, local directories are off. The
    answer is the same whether the path exists or not, so it reveals nothing about the host.
    """
    from ..store.sources import parse_source

    text = text.strip()
    if text.startswith(("hf://", "pkg://")):
        parse_source(text)  # syntax only for these kinds
        return
    path = text[len("file://"):] if text.startswith("file://") else text
    if "://" in path:
        parse_source(text)  # an unknown scheme: its own clear error
    refused = ApiError(403, "local-directory sources are off on this server, or outside the directories it allows; "
                            "an operator can allow roots with --allow-source-dir DIR", param="source",
                       code="source_not_allowed")
    if not roots or not os.path.isabs(path):
        raise refused
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return
    raise refused


class Service:
    """What the app holds: registry, loaded models with their batchers, metrics, limits."""

    def __init__(self, settings: ServeSettings):
        from .metrics import Metrics
        from ..registry.catalog import open_registry

        self.settings = settings
        self.registry = open_registry(settings.home, settings.registry_url)
        self.metrics = Metrics()
        self.batchers: dict[str, Any] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self._names: dict[str, tuple[str, float]] = {}  # requested name -> (canonical, trusted until)
        self.started = time.time()
        self._images = None  # the image requests' own threads (``images``)

    async def images(self, fn, *args, **kwargs):
        """Run image work (fetching URLs, decoding, the vision tower) on threads of its own: a slow image
        host or a burst of large images then waits there, never in front of text requests, which use
        asyncio's default threads for tokenizing."""
        import functools
        from concurrent.futures import ThreadPoolExecutor

        if self._images is None:
            self._images = ThreadPoolExecutor(max_workers=IMAGE_WORKERS, thread_name_prefix="zoo-images")
        return await asyncio.get_running_loop().run_in_executor(self._images, functools.partial(fn, *args, **kwargs))

    def canonical(self, name: str) -> str:
        resolved = self.registry.resolve(name)
        canonical = resolved.model.name
        allowed = self.settings.models
        if allowed and canonical not in allowed and name not in allowed:
            raise ModelNotFound(f"model {name!r} is not served here; served: {', '.join(allowed)}")
        return canonical

    async def batcher(self, name: str):
        from .batcher import DynamicBatcher

        known = self._names.get(name)
        if known is not None and known[1] > time.monotonic() and known[0] in self.batchers:
            return self.batchers[known[0]]
        canonical = await asyncio.to_thread(self.canonical, name)
        self._names[name] = (canonical, time.monotonic() + NAME_TTL_S)
        if canonical in self.batchers:
            return self.batchers[canonical]
        lock = self._loading.setdefault(canonical, asyncio.Lock())
        async with lock:
            if canonical not in self.batchers:
                from ..api import load

                # the artifact with the best single-text latency, run as measured best for batches
                model = await asyncio.to_thread(load, canonical, registry=self.registry, cache=self.settings.cache,
                                                artifact=self.settings.artifacts.get(canonical),
                                                objective="latency", runtime_objective="throughput")
                m = self.metrics

                def on_batch(rows, tokens, hits, seconds, name=canonical):
                    m.batch_size.labels(name).observe(rows)
                    m.batch_seconds.labels(name).observe(seconds)
                    m.cache_hits.labels(name).inc(hits)
                    m.cache_misses.labels(name).inc(rows - hits)

                self.batchers[canonical] = DynamicBatcher(
                    model, max_batch_rows=self.settings.max_batch_rows, max_batch_tokens=self.settings.max_batch_tokens,
                    max_wait_ms=self.settings.max_wait_ms, max_queue_texts=self.settings.max_queue_texts,
                    max_queue_tokens=self.settings.max_queue_tokens, on_batch=on_batch)
        return self.batchers[canonical]


def _is_id(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _integral(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _token_input(items: list) -> Optional[list[list[int]]]:
    """``input`` as token ids (OpenAI's schema: a list of integers is one input, a list of such lists
    several), or None when it holds no ids. Mixed, empty or non-integer lists get a 400 naming the index.
    A JSON number with no fraction (``220.0``) is an integer, as JSON Schema counts it."""
    items = [[_integral(y) for y in x] if isinstance(x, list) else _integral(x) for x in items]
    if all(_is_id(x) for x in items):
        items = [items]
    elif any(isinstance(x, str) for x in items) or not any(isinstance(x, list) or _is_id(x) for x in items):
        return None  # texts (the text checks name any non-string among them)
    from ..engine.backends.lean import id_list_problem

    for i, x in enumerate(items):
        if not isinstance(x, list):
            raise ApiError(400, f"'input' mixes token-id lists with {type(x).__name__} at index {i}; send all texts "
                                "or all token-id lists", param=f"input[{i}]", code="invalid_type")
        problem = id_list_problem(x)  # the engine's own check, before any model is loaded
        if problem is not None:
            raise ApiError(400, f"'input[{i}]'{problem[0]}", param=f"input[{i}]", code=problem[1])
    return items


DATA_URI = re.compile(r"data:image/[a-z0-9.+-]+;base64,", re.I)


def _image_input(texts: list, allowed_hosts: list[str]) -> list:
    """``modality: image`` inputs: data URIs, decoded to bytes; and URLs on the operator's allow-list
    (``--allow-image-host``), left as URLs for ``_fetch_images``. Any other URL is refused unread:
    fetching what a client names is server-side request forgery."""
    import binascii
    from urllib.parse import urlsplit

    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ApiError(400, f"'input[{i}]' is {type(t).__name__}; send each image as a data URI string",
                           param=f"input[{i}]", code="invalid_type")
        head = DATA_URI.match(t)
        if head is None:
            if not t[:8].lower().startswith(("http://", "https://")):
                raise ApiError(400, f"'input[{i}]' is not an image data URI (data:image/png;base64,...)",
                               param=f"input[{i}]", code="invalid_value")
            try:
                parts = urlsplit(t)
                host = "" if "@" in parts.netloc else (parts.hostname or "").lower()  # no userinfo tricks
            except ValueError:
                host = ""
            if host and host in allowed_hosts:
                out.append(t)
                continue
            why = ("this server fetches images only from the hosts its operator allows (--allow-image-host)"
                   if allowed_hosts else "this server does not fetch images")
            raise ApiError(400, f"'input[{i}]' is a URL; {why}; send the image itself as data:image/...;base64,...",
                           param=f"input[{i}]", code="url_not_allowed")
        try:
            out.append(base64.b64decode(t[head.end():], validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(400, f"'input[{i}]' is not valid base64 after its data: header", param=f"input[{i}]",
                           code="invalid_value") from None
    return out


FETCH_TIMEOUT_S = 10.0  # for all of a request's image URLs together, connect to last byte (--image-fetch-timeout-s)
IMAGE_WORKERS = 4  # threads for image requests; more queue behind them (text requests have their own)


def _fetch_images(items: list, max_bytes: int, timeout_s: float = FETCH_TIMEOUT_S) -> list[bytes]:
    """The allowed URLs among ``items`` fetched: no redirect followed (it could lead anywhere), at
    most ``max_bytes`` each, all within ``timeout_s`` from the first connect to the last byte (a host
    that sends a byte every few seconds is cut at the deadline, not kept alive read by read); a failure
    is a 400 that names the input."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    deadline = time.monotonic() + timeout_s
    out = []
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            out.append(item)
            continue
        late = ApiError(400, f"fetching 'input[{i}]' took longer than {timeout_s:g} s", param=f"input[{i}]",
                        code="fetch_timeout")
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise late
            with opener.open(urllib.request.Request(item, headers={"User-Agent": "zoo"}), timeout=left) as r:
                chunks, size = [], 0
                while size <= max_bytes:
                    if time.monotonic() > deadline:
                        raise late
                    chunk = r.read1(min(1 << 16, max_bytes + 1 - size))  # returns what one read got
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                data = b"".join(chunks)
        except ApiError:
            raise
        except urllib.error.HTTPError as exc:
            raise ApiError(400, f"fetching 'input[{i}]' got HTTP {exc.code}", param=f"input[{i}]",
                           code="fetch_failed") from None
        except TimeoutError:
            raise late from None
        except (urllib.error.URLError, OSError, ValueError):
            if time.monotonic() > deadline:
                raise late from None
            raise ApiError(400, f"'input[{i}]' could not be fetched", param=f"input[{i}]", code="fetch_failed") from None
        if len(data) > max_bytes:
            raise ApiError(413, f"'input[{i}]' is larger than {max_bytes} bytes", param=f"input[{i}]",
                           code="input_too_long")
        out.append(data)
    return out


def _check_count(inputs: int, settings: ServeSettings) -> None:
    if inputs > settings.max_inputs:
        raise ApiError(400, f"{inputs} inputs; this server takes at most {settings.max_inputs} per request",
                       param="input", code="too_many_inputs")


def _parse_embeddings_request(body: Any, settings: ServeSettings) -> dict:
    """The request's texts and options; the input's own problems get messages that say what to send."""
    from .protocol import EmbeddingsRequest, validate

    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_type")
    if "input" not in body:
        raise ApiError(400, "missing required field 'input' (a string or a list of strings)", param="input",
                       code="missing_required_parameter")
    raw = body["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list):
        raise ApiError(400, f"'input' must be a string, a list of strings or token ids, not {type(raw).__name__}",
                       param="input", code="invalid_type")
    if not texts:
        raise ApiError(400, "'input' is an empty list; send at least one string", param="input", code="invalid_value")
    if body.get("modality") == "image":
        _check_count(len(texts), settings)
        images = _image_input(texts, [h.lower() for h in settings.allow_image_hosts])
        req = validate(EmbeddingsRequest, {**body, "input": ["image"] * len(images)})
        if req.precision != "float32":
            raise ApiError(400, "precision applies to text inputs; images are served as float32",
                           param="precision", code="invalid_value")
        if req.prompt_name is not None:
            raise ApiError(400, "prompt_name applies to text inputs; images are embedded as they are",
                           param="prompt_name", code="invalid_value")
        return {"images": images, "model": req.model, "format": req.encoding_format, "dimensions": req.dimensions,
                "precision": "float32"}
    token_ids = _token_input(texts)
    if token_ids is not None:
        texts = token_ids
    _check_count(len(texts), settings)
    for i, t in enumerate(texts if token_ids is None else ()):
        if not isinstance(t, str):
            raise ApiError(400, f"'input[{i}]' is {type(t).__name__}; send strings, or token ids for every input",
                           param=f"input[{i}]", code="invalid_type")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"'input[{i}]' is not valid Unicode (lone surrogate)", param=f"input[{i}]",
                           code="invalid_value") from None
        if len(t) > settings.max_input_chars:
            raise ApiError(400, f"'input[{i}]' has {len(t)} characters; this server takes at most "
                                f"{settings.max_input_chars} per input", param=f"input[{i}]", code="input_too_long")
    for i, ids in enumerate(token_ids or ()):
        if len(ids) > settings.max_input_chars:
            raise ApiError(400, f"'input[{i}]' has {len(ids)} token ids; this server takes at most "
                                f"{settings.max_input_chars} per input", param=f"input[{i}]", code="input_too_long")
    req = validate(EmbeddingsRequest, body if token_ids is None else {**body, "input": token_ids})
    return {"texts": texts, "token_ids": token_ids is not None, "model": req.model, "format": req.encoding_format,
            "dimensions": req.dimensions, "precision": req.precision, "prompt_name": req.prompt_name}


def _declare_what_is_served(request: dict, settings: ServeSettings, service) -> None:
    """Make the embeddings request's schema say what this server accepts, so a client (or a fuzzer) that
    follows it is not refused: the per-input character cap, and where the served models are fixed
    (``--models``), their names, their modalities and the ids their vocabularies hold. One refusal of a
    schema-valid request stays by design: ``dimensions`` above the chosen model's width (as OpenAI's API)."""
    props = request["properties"]
    for option in props["input"]["anyOf"]:
        if option.get("type") == "string":
            option["maxLength"] = settings.max_input_chars
        elif option.get("items", {}).get("type") == "string":
            option["items"]["maxLength"] = settings.max_input_chars
    served = [service.batchers[name].model for name in settings.models if name in service.batchers]
    if not settings.models or len(served) != len(settings.models):
        return  # models load on demand: any name may be registered meanwhile
    served = [m for m in served if m.kind == "embedding"]  # a reranker named here is refused (400)
    if not served:
        return
    props["model"]["enum"] = sorted(m.name for m in served)
    if not any("image" in m.spec.modalities for m in served):
        props["modality"]["enum"] = ["text"]
        request.pop("if", None), request.pop("then", None)
    bounds = [largest_id(settings.token_encoding_of(m.name)) if settings.token_encoding_of(m.name) != MODEL_IDS
              else m.backend.encoder.tokenizer.get_vocab_size(with_added_tokens=True) - 1
              for m in served if settings.token_encoding_of(m.name) != MODEL_IDS or hasattr(m.backend, "encoder")]
    for option in props["input"]["anyOf"]:
        items = option.get("items", {})
        ids = items.get("items", items) if items.get("type") == "array" else items
        if ids.get("type") == "integer":
            if bounds:
                ids["maximum"] = min(bounds)
            (items if items.get("type") == "array" else option)["maxItems"] = settings.max_input_chars


def _openapi_body(model) -> dict:
    """``openapi_extra`` declaring ``model`` as the JSON request body (handlers parse it themselves)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def create_app(settings: ServeSettings):
    require("fastapi", "serve")
    orjson = require("orjson", "serve")
    import numpy as np
    from fastapi import FastAPI, Request
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from . import protocol as P
    from .guard import Guard
    from .protocol import wants_bytes
    from ..engine.precision import RANGED, quantize

    service = Service(settings)

    async def startup():
        from .jobs import recover

        interrupted = await asyncio.to_thread(recover, service.registry)
        for job_id in interrupted:
            print(f"zoo serve: job {job_id} was interrupted by a restart; POST /v1/zoo/jobs/{job_id}/retry to rerun",
                  flush=True)
        for name in settings.models:
            await service.batcher(name)

    docs = {} if settings.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="zoo", version=__import__("zoo").__version__, on_startup=[startup], **docs)
    app.state.service = service
    metrics = service.metrics

    def error_response(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(P.BodyError)
    async def _body_error(request, exc: P.BodyError):
        return error_response(ApiError(400, exc.message, param=exc.param, code=exc.code))

    @app.exception_handler(ZooError)
    async def _zoo_error(request, exc: ZooError):
        return error_response(_from_zoo_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(ApiError(exc.status_code, message, code=code, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        request_id = request.scope.get("zoo.request_id", "-")
        log.error("request %s: %s %s failed", request_id, request.method, request.url.path, exc_info=exc)
        err = ApiError(500, f"internal error; the server log has the details under request id {request_id}",
                       type="server_error", code="internal_error")
        body = err.body()
        body["error"]["request_id"] = request_id
        return JSONResponse(body, status_code=500, headers={"X-Request-Id": request_id})

    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Guard, settings=settings, metrics=metrics, routes=app.router.routes)

    async def json_body(request: Request) -> Any:
        return P.parse_json(await request.body())

    errors = {status: {"model": P.ErrorResponse, "description": what} for status, what in (
        (400, "The request is malformed; `error.param` names the field"),
        (401, "Missing or wrong API key"),
        (403, "Refused by this server's policy (Origin, management, source directories)"),
        (413, "Body, input or request too large"),
        (415, "The body is not declared as JSON"),
        (500, "Internal error; `error.request_id` names the log entry"))}
    not_found = {404: {"model": P.ErrorResponse, "description": "Unknown model or job"}}
    busy = {429: {"model": P.ErrorResponse, "description": "Queue full; retry after `Retry-After` seconds"}}
    conflict = {409: {"model": P.ErrorResponse, "description": "The name is taken"}}

    raw_rows = {200: {"description": "JSON; or, with `Accept: application/octet-stream`, the rows' little-endian "
                                     "bytes, row-major, shape in `X-Zoo-Shape` (rows,columns) and numpy dtype in "
                                     "`X-Zoo-Dtype`", "content": {"application/octet-stream": {
                                         "schema": {"type": "string", "format": "binary"}}}}}

    @app.post("/v1/embeddings", response_model=P.EmbeddingsResponse,
              responses={**raw_rows, **errors, **not_found, **busy}, openapi_extra=_openapi_body(P.EmbeddingsRequest))
    async def embeddings(request: Request):
        """OpenAI-compatible embeddings of one text or a list of texts; `precision` int8, uint8, binary,
        ubinary or float16 for compact vectors, and `Accept: application/octet-stream` for raw bytes."""
        req = _parse_embeddings_request(await json_body(request), settings)
        batcher = await service.batcher(req["model"])
        model = batcher.model
        if model.kind != "embedding":  # a reranker's scores are no vectors: refused by name
            from ..engine.kinds import refuse_kind

            refusal = refuse_kind(model.name, model.kind, ("embedding",), "/v1/embeddings")
            raise ApiError(400, str(refusal), param="model", code=refusal.code)
        if req["dimensions"] is not None and req["dimensions"] > model.dim:
            raise ApiError(400, f"dimensions must be at most {model.dim} for {model.name}, got {req['dimensions']}",
                           param="dimensions", code="invalid_value")
        raw = wants_bytes(request.headers.get("accept"))
        ranges = None
        if req["precision"] in RANGED:  # stored once per artifact; the first request computes them (a few seconds)
            try:
                ranges = await asyncio.to_thread(model.ranges, dimensions=req["dimensions"])
            except InvalidInput as exc:
                raise ApiError(400, str(exc), param="precision", code=exc.code) from None
        shape = {"precision": req["precision"], "ranges": ranges, "raw": raw}
        if "images" in req:
            if "image" not in model.spec.modalities:
                raise ApiError(400, f"{model.name} embeds text only; images need a CLIP-family model",
                               param="modality", code="invalid_value")
            images = req["images"]
            if any(isinstance(x, str) for x in images):  # URLs the operator allows
                images = await service.images(_fetch_images, images, settings.max_body_bytes,
                                              settings.image_fetch_timeout_s)
            try:  # headers are checked before any pixel is decoded (zoo.engine.images)
                vectors = await service.images(model.embed_images, images, dimensions=req["dimensions"],
                                               max_pixels=settings.max_image_pixels)
            except InvalidInput as exc:
                raise ApiError(400, str(exc), param=exc.param or "input", code=exc.code) from None
            metrics.inputs.labels(model.name).inc(len(req["images"]))
            return _embeddings_response(model.name, vectors, req["format"], 0, P.matryoshka_header(model, req["dimensions"]),
                                        **shape)
        encoding = settings.token_encoding_of(model.name)
        # once: for usage, the budget, the engine; token ids get the model's special tokens, as text does
        try:
            if req["token_ids"] and encoding != MODEL_IDS:  # OpenAI's reading: a tiktoken encoding's ids
                req["texts"], req["token_ids"] = await asyncio.to_thread(decode_token_ids, encoding, req["texts"]), False
            prompt = model.resolve_prompt(prompt_name=req["prompt_name"])
            if req["token_ids"] and prompt:  # as TEI's /embed: the ids' text (special tokens skipped), the prompt before
                req["texts"], req["token_ids"] = await asyncio.to_thread(model.ids_as_text, req["texts"]), False
            if req["token_ids"]:
                tokenized = await asyncio.to_thread(model.tokenize_ids, req["texts"])
            else:
                tokenized = await asyncio.to_thread(model.tokenize, req["texts"], prompt=prompt)
        except InvalidInput as exc:
            raise ApiError(400, str(exc), param=exc.param or "input", code=exc.code) from None
        tokens = tokenized.lengths
        from .batcher import Overloaded

        try:
            vectors = await batcher.embed(tokenized, req["dimensions"])
        except Overloaded as exc:
            metrics.rejected.labels(model.name).inc()
            raise ApiError(429, str(exc), type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(exc.retry_after)}) from None
        except ValueError as exc:
            raise ApiError(413, str(exc), param="input", code="too_many_inputs") from None
        finally:
            metrics.queue_depth.labels(model.name).set(batcher.queue_depth)
        metrics.inputs.labels(model.name).inc(len(req["texts"]))
        metrics.tokens.labels(model.name).inc(sum(tokens))
        return _embeddings_response(model.name, vectors, req["format"], sum(tokens),
                                    P.matryoshka_header(model, req["dimensions"]), **shape)

    def _embeddings_response(name: str, vectors, encoding: str, tokens: int, headers: Optional[dict] = None, *,
                             precision: str = "float32", ranges=None, raw: bool = False):
        vectors = quantize(np.ascontiguousarray(vectors, dtype=np.float32), precision, ranges)
        headers = {**(headers or {}), "X-Zoo-Precision": precision}
        if raw:  # bulk clients: the rows' bytes, no JSON; shape and dtype in headers
            out = np.ascontiguousarray(vectors, dtype=vectors.dtype.newbyteorder("<"))
            return Response(out.tobytes(), media_type="application/octet-stream", headers={
                **headers, "X-Zoo-Shape": f"{out.shape[0]},{out.shape[1]}", "X-Zoo-Dtype": out.dtype.name,
                "X-Zoo-Prompt-Tokens": str(tokens), "X-Zoo-Model": name})
        if encoding == "base64":  # OpenAI's meaning, which its clients decode blindly: float32, whatever the precision
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            data = list(vectors)  # rows; orjson writes float32 exactly, integers as integers
        body = {"object": "list", "model": name,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        # orjson: ~10x json's speed on float arrays, which is most of a response's cost on the event loop
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                        headers=headers)

    def _card(d: dict) -> dict:
        """One model as OpenAI's model object, with zoo's details under ``zoo``."""
        loaded = {name: b.model.info.get("artifact") for name, b in service.batchers.items()}
        current = next((r for r in d["revisions"] if r["resolved_id"] == d["current_revision"]), {})
        created = datetime.fromisoformat(d["created_at"]).timestamp()
        return {"id": d["name"], "object": "model", "owned_by": "zoo", "created": int(created),
                "zoo": {"dim": d["dim"], "max_seq_length": d["max_seq_length"], "source": d["source"],
                        "revision": d["current_revision"], "aliases": [a["name"] for a in d["aliases"]],
                        "prompts": {"query": d["query_prompt"], "document": d["document_prompt"]},
                        "artifacts": [a["target"] for a in current.get("artifacts", []) if a.get("status") == "ready"],
                        "serving_artifact": loaded.get(d["name"]), "matryoshka_dims": d["matryoshka_dims"],
                        "token_encoding": settings.token_encoding_of(d["name"])}}

    @app.get("/v1/models", response_model=P.ModelList, responses={401: errors[401], 500: errors[500]})
    async def list_models():
        """The models served here, with zoo's details (dim, revision, ready artifacts)."""
        def read():
            return [service.registry.describe(m.name) for m in service.registry.list_models()]
        described = await asyncio.to_thread(read)
        allowed = settings.models
        return {"object": "list", "data": [_card(d) for d in described if not allowed or d["name"] in allowed]}

    @app.get("/v1/models/{model}", response_model=P.ModelCard,
             responses={401: errors[401], **not_found, 500: errors[500]})
    async def retrieve_model(model: str):
        """One model, as OpenAI's ``models.retrieve``; an alias answers with the model it names."""
        def read():
            # never the default's first-use registration: a GET changes nothing
            resolved = service.registry.resolve(model, auto_default=False)
            return service.registry.describe(resolved.model.name)
        try:
            d = await asyncio.to_thread(read)
        except ModelNotFound:
            d = None
        if d is None or (settings.models and d["name"] not in settings.models):
            raise ApiError(404, f"The model '{model}' does not exist or is not served here", param="model",
                           code="model_not_found")
        return _card(d)

    @app.get("/health", response_model=P.Health)
    async def health():
        """Liveness: always open, for probes."""
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 1),
                "models_loaded": sorted(service.batchers)}

    @app.get("/metrics", response_class=Response, responses={200: {
        "content": {"text/plain": {"schema": {"type": "string"}}},
        "description": "Prometheus text exposition format"}})
    async def prometheus():
        """Prometheus metrics: always open, for scrapers; labels are route templates and registered models."""
        for name, b in service.batchers.items():
            metrics.queue_depth.labels(name).set(b.queue_depth)
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    jobs_busy = {429: {"model": P.ErrorResponse, "description": "Too many management jobs wait; retry after "
                                                                  "`Retry-After` seconds"}}

    @app.post("/v1/zoo/models", status_code=202, response_model=P.JobResponse, responses={**errors, **conflict, **jobs_busy},
              openapi_extra=_openapi_body(P.RegisterRequest))
    async def register(request: Request):
        """Register a model from a source, as a job (fetching and hashing never run in the server)."""
        from .jobs import submit_register

        req = P.validate(P.RegisterRequest, await json_body(request))
        check_source(req.source, settings.allow_source_dirs)
        return await asyncio.to_thread(submit_register, service.registry, req.name, req.source,
                                       revision=req.revision, force=req.force,
                                       trust_remote_code=req.trust_remote_code)

    @app.post("/v1/zoo/models/{name}/convert", status_code=202, response_model=P.JobResponse,
              responses={**errors, **not_found, **jobs_busy}, openapi_extra=_openapi_body(P.ConvertRequest))
    async def convert(name: str, request: Request):
        """Build artifacts of a registered model, as a job; each is gated before it may serve."""
        from .jobs import submit_convert

        req = P.validate(P.ConvertRequest, await json_body(request))
        targets = [req.targets] if isinstance(req.targets, str) else req.targets
        return await asyncio.to_thread(submit_convert, service.registry, name, targets, rebuild=req.rebuild)

    @app.get("/v1/zoo/jobs/{job_id}", response_model=P.JobResponse,
             responses={401: errors[401], 403: errors[403], **not_found})
    async def job(job_id: str):
        """A job's status, progress and outcome."""
        from .jobs import get_job

        return await asyncio.to_thread(get_job, service.registry, job_id)

    @app.post("/v1/zoo/jobs/{job_id}/retry", status_code=202, response_model=P.JobResponse,
              responses={**errors, **not_found}, openapi_extra=_openapi_body(P.RetryRequest))
    async def retry(job_id: str, request: Request):
        """Run a failed or interrupted job again (send ``{}``)."""
        from .jobs import retry as retry_job

        P.validate(P.RetryRequest, await json_body(request))
        return await asyncio.to_thread(retry_job, service.registry, job_id)

    from . import rerank, tei

    tei.add_routes(app, service, settings, orjson)
    rerank.add_routes(app, service, settings, orjson, errors, ApiError)

    def openapi() -> dict:
        if app.openapi_schema is None:
            from .guard import needs_key

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (P.EmbeddingsRequest, P.RegisterRequest, P.ConvertRequest, P.RetryRequest,
                          P.TeiEmbedRequest, P.TeiTokenizeRequest, P.TeiDecodeRequest, P.RerankRequest,
                          P.TeiRerankRequest):
                declared = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(declared.pop("$defs", {}))
                components[model.__name__] = declared
            _declare_what_is_served(components["EmbeddingsRequest"], settings, service)
            served = [service.batchers[name].model for name in settings.models if name in service.batchers]
            fixed = served if settings.models and len(served) == len(settings.models) else []
            tei.declare_what_is_served(components, settings, [m for m in fixed if m.kind == "embedding"],
                                       [m for m in fixed if m.kind == "reranker"])
            rerank.declare_what_is_served(components, settings, [m for m in fixed if m.kind == "reranker"])
            if settings.api_key:
                schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                for path, operations in schema["paths"].items():
                    for method, operation in operations.items():
                        if needs_key(method.upper(), path):
                            operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def serve(settings: ServeSettings, port: int = 8000, log_level: str = "info") -> None:
    uvicorn = require("uvicorn", "serve")
    app = create_app(settings)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=settings.host, port=port, log_level=log_level, access_log=False,
                http=_head_deadline_protocol(settings.header_timeout_s), timeout_keep_alive=KEEP_ALIVE_S)


KEEP_ALIVE_S = 5  # an idle keep-alive connection closes after this (uvicorn's own default, stated)


def _head_deadline_protocol(timeout_s: float):
    """uvicorn's h11 protocol with a deadline on every request head.

    uvicorn limits only the idle time between requests; a client that sends a request head one byte at
    a time held a connection open indefinitely (40 such held 40 connections for 70 s). Here each head,
    the first on a connection and each after a response, must be complete within ``timeout_s`` or the
    connection is closed. A body is bounded by ``max_body_bytes`` and read by the route.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineH11(H11Protocol):
        _head_timer = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(timeout_s, self._head_overdue)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_overdue(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.info("closed a connection whose request head took longer than %.1f s", timeout_s)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # a head arrived (or the connection ended)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadlineH11
