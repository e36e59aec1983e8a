"""``zoo serve``: an OpenAI-compatible embeddings server (FastAPI on uvicorn).

Embeddings go through the same engine as ``zoo.load`` (selection, vector cache),
with concurrent requests coalesced by ``zoo.batcher``. Every error is an
OpenAI-style body ``{"error": {"message", "type", "param", "code"}}`` with the
right 4xx, and never takes the server down. When an API key is set, every
``/v1`` endpoint requires ``Authorization: Bearer KEY``; ``/health`` and
``/metrics`` stay open for probes and scrapers.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime
import asyncio
import base64
import hmac
import json
import time
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Optional


from ..errors import (InvalidInput, InvalidSource, ModelExists, ModelNotFound, NotAModel, RevisionNotFound,
                      SourceUnavailable, ZooError, require)

__all__ = ["ServeSettings", "create_app", "ApiError"]


@dataclass
class ServeSettings:
    home: Optional[str] = None
    registry_url: Optional[str] = None
    models: list[str] = field(default_factory=list)  # preloaded, and (if set) the only ones served
    api_key: Optional[str] = None
    cache: bool = True
    max_inputs: int = 2048  # per request, as OpenAI
    max_input_chars: int = 100_000  # per input
    max_queue_texts: int = 8192  # per model: beyond it, 429
    max_batch_rows: int = 256  # coalesced texts per engine call; the engine cuts them by its best batch size
    max_batch_tokens: int = 16384  # tokens summed over a coalesced engine call's texts
    max_wait_ms: float = 2.0  # idle: how long a partial batch waits for a burst to join


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
    from .jobs import JobNotFound

    if isinstance(exc, (ModelNotFound, JobNotFound)):
        return ApiError(404, str(exc), code="model_not_found" if isinstance(exc, ModelNotFound) else "job_not_found",
                        param="model" if isinstance(exc, ModelNotFound) else None)
    if isinstance(exc, ModelExists):
        return ApiError(409, str(exc), code="model_exists", param="name")
    if isinstance(exc, SourceUnavailable):
        return ApiError(502, str(exc), type="upstream_error", code="source_unavailable")
    if isinstance(exc, (InvalidInput, InvalidSource, RevisionNotFound, NotAModel)):
        return ApiError(400, str(exc), code="invalid_value")
    return ApiError(500, str(exc), type="server_error", code="internal_error")


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
                    on_batch=on_batch)
        return self.batchers[canonical]


def _parse_embeddings_request(body: Any, settings: ServeSettings) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    allowed = {"input", "model", "encoding_format", "dimensions", "user"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
                       param=unknown[0], code="unknown_parameter")
    if "input" not in body:
        raise ApiError(400, "missing required field 'input' (a string or a list of strings)", param="input",
                       code="missing_required_parameter")
    raw = body["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list):
        raise ApiError(400, f"'input' must be a string or a list of strings, not {type(raw).__name__}", param="input",
                       code="invalid_type")
    if not texts:
        raise ApiError(400, "'input' is an empty list; send at least one string", param="input", code="invalid_value")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            kind = "token ids (integers)" if isinstance(t, int) or isinstance(t, list) else type(t).__name__
            raise ApiError(400, f"'input[{i}]' is {kind}; zoo takes text: send strings", param=f"input[{i}]",
                           code="invalid_type")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"'input[{i}]' is not valid Unicode (lone surrogate)", param=f"input[{i}]",
                           code="invalid_value") from None
        if len(t) > settings.max_input_chars:
            raise ApiError(413, f"'input[{i}]' has {len(t)} characters; this server takes at most "
                                f"{settings.max_input_chars} per input", param=f"input[{i}]", code="input_too_long")
    if len(texts) > settings.max_inputs:
        raise ApiError(413, f"{len(texts)} inputs; this server takes at most {settings.max_inputs} per request",
                       param="input", code="too_many_inputs")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "missing required field 'model' (a registered model name or alias)", param="model",
                       code="missing_required_parameter")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(400, f"encoding_format must be 'float' or 'base64', not {fmt!r}", param="encoding_format",
                       code="invalid_value")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise ApiError(400, f"dimensions must be a positive integer, not {dims!r}", param="dimensions",
                       code="invalid_value")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, "'user' must be a string", param="user", code="invalid_type")
    return {"texts": texts, "model": model, "format": fmt, "dimensions": dims}


def create_app(settings: ServeSettings):
    require("fastapi", "serve")
    orjson = require("orjson", "serve")
    import numpy as np
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    service = Service(settings)

    async def startup():
        from .jobs import recover

        interrupted = await asyncio.to_thread(recover, service.registry)
        for job_id in interrupted:
            print(f"zoo serve: job {job_id} was interrupted by a restart; POST /v1/zoo/jobs/{job_id}/retry to rerun",
                  flush=True)
        for name in settings.models:
            await service.batcher(name)

    app = FastAPI(title="zoo", version=__import__("zoo").__version__, on_startup=[startup])
    app.state.service = service
    metrics = service.metrics

    def error_response(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(ZooError)
    async def _zoo_error(request, exc: ZooError):
        return error_response(_from_zoo_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error",
                                       code="internal_error"))

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        path = request.url.path
        route = path if not path.startswith("/v1/zoo/") else "/v1/zoo/" + path.split("/")[3]
        if settings.api_key and path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
                response = error_response(ApiError(401, "missing or invalid API key: send Authorization: Bearer KEY",
                                                   code="invalid_api_key"))
                metrics.requests.labels(route, "401").inc()
                return response
        response = await call_next(request)
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        req = _parse_embeddings_request(await json_body(request), settings)
        batcher = await service.batcher(req["model"])
        model = batcher.model
        if req["dimensions"] is not None and req["dimensions"] > model.dim:
            raise ApiError(400, f"dimensions must be at most {model.dim} for {model.name}, got {req['dimensions']}",
                           param="dimensions", code="invalid_value")
        tokenized = await asyncio.to_thread(model.tokenize, req["texts"])  # once: for usage, the budget, the engine
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
        if req["format"] == "base64":
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            data = list(np.ascontiguousarray(vectors, dtype=np.float32))  # rows; orjson writes float32 exactly
        body = {"object": "list", "model": model.name,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
                "usage": {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}}
        # orjson: ~10x json's speed on float arrays, which is most of a response's cost on the event loop
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    @app.get("/v1/models")
    async def list_models():
        def read():
            return [service.registry.describe(m.name) for m in service.registry.list_models()]
        described = await asyncio.to_thread(read)
        allowed = settings.models
        loaded = {name: b.model.info.get("artifact") for name, b in service.batchers.items()}
        data = []
        for d in described:
            if allowed and d["name"] not in allowed:
                continue
            current = next((r for r in d["revisions"] if r["resolved_id"] == d["current_revision"]), {})
            created = datetime.fromisoformat(d["created_at"]).timestamp()
            data.append({"id": d["name"], "object": "model", "owned_by": "zoo", "created": int(created),
                         "zoo": {"dim": d["dim"], "max_seq_length": d["max_seq_length"], "source": d["source"],
                                 "revision": d["current_revision"], "aliases": [a["name"] for a in d["aliases"]],
                                 "prompts": {"query": d["query_prompt"], "document": d["document_prompt"]},
                                 "artifacts": [a["target"] for a in current.get("artifacts", [])
                                               if a.get("status") == "ready"],
                                 "serving_artifact": loaded.get(d["name"])}})
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health():
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 1),
                "models_loaded": sorted(service.batchers)}

    @app.get("/metrics")
    async def prometheus():
        for name, b in service.batchers.items():
            metrics.queue_depth.labels(name).set(b.queue_depth)
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    @app.post("/v1/zoo/models", status_code=201)
    async def register(request: Request):
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not isinstance(body.get("source"), str):
            raise ApiError(400, "send {\"name\": NAME, \"source\": SOURCE[, \"revision\": REV, \"force\": bool]}",
                           param="name" if not isinstance(body, dict) or "name" not in body else "source",
                           code="missing_required_parameter")
        unknown = sorted(set(body) - {"name", "source", "revision", "force"})
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(unknown)}", param=unknown[0], code="unknown_parameter")
        await asyncio.to_thread(service.registry.register, body["name"], body["source"],
                                revision=body.get("revision"), force=bool(body.get("force")))
        return await asyncio.to_thread(service.registry.describe, body["name"])

    @app.post("/v1/zoo/models/{name}/convert", status_code=202)
    async def convert(name: str, request: Request):
        from .jobs import submit_convert

        body = await json_body(request) if await request.body() else {}
        targets = body.get("targets") if isinstance(body, dict) else None
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise ApiError(400, "send {\"targets\": [TARGET, ...]} (e.g. onnx-fp32, openvino-int8, all-cpu)",
                           param="targets", code="missing_required_parameter")
        return await asyncio.to_thread(submit_convert, service.registry, name, targets,
                                       rebuild=bool(body.get("rebuild")))

    @app.get("/v1/zoo/jobs/{job_id}")
    async def job(job_id: str):
        from .jobs import get_job

        return await asyncio.to_thread(get_job, service.registry, job_id)

    @app.post("/v1/zoo/jobs/{job_id}/retry", status_code=202)
    async def retry(job_id: str):
        from .jobs import retry as retry_job

        return await asyncio.to_thread(retry_job, service.registry, job_id)

    return app


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    uvicorn = require("uvicorn", "serve")
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
