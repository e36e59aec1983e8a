"""What every request passes before a route sees it: one pure ASGI middleware, in this order.

1. A request id (``X-Request-Id``), so a 5xx body can name the log line that explains it.
   The body limit (``--max-body-bytes``): a declared ``Content-Length`` past it is a 413 before
   anything is read, and a body that streams past it is cut off with a 413 at that byte.
2. The Host header. Bound to loopback, only ``localhost``, ``127.0.0.1`` and ``[::1]`` (and any
   ``--allowed-host``) are served: a page on another site that rebinds its own DNS name to
   127.0.0.1 sends its own name as Host, and gets a 400 instead of our responses.
3. The API key (``Authorization: Bearer KEY``) on every route but the probes and docs (``OPEN``):
   ``/v1/...`` and TEI's ``/embed``, ``/rerank``, ``/tokenize``, ``/decode``, ``/info`` and ``POST /``.
4. Management (``/v1/zoo/...``) is off when the server listens beyond loopback without a key,
   unless the operator passed ``--allow-unauthenticated-management``.
5. POST bodies are JSON: any other ``Content-Type`` is a 415. A browser's cross-site "simple
   request" (``text/plain``, forms, no body) is therefore never acted on, and JSON needs a CORS
   preflight. (A method a route does not take gets the router's 405 instead.)
6. An ``Origin`` that is not in ``--cors-origin`` is refused on every POST (403): no cross-site
   page can register, convert or spend CPU here unless the operator named it.

It also counts requests for ``/metrics`` by route *template* (``/v1/zoo/jobs/{job_id}``), with
one label for every path that matched no route, so no request can add a label of its own.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
import uuid
from typing import Any, Callable, Optional

import orjson

__all__ = ["Guard", "is_loopback", "needs_key", "OPEN", "UNMATCHED"]

UNMATCHED = "unmatched"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


OPEN = ("/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def needs_key(method: str, path: str) -> bool:
    """Whether a request needs the API key (when one is set): all but the probes and the docs."""
    return path not in OPEN


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(value: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` -> ``[::1]``, ``Example.COM:80`` -> ``example.com``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def error_body(message: str, code: str, *, type: str = "invalid_request_error",
               param: Optional[str] = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


class BodyTooLarge(Exception):
    pass


class Guard:
    def __init__(self, app, settings, metrics, routes):
        self.app, self.settings, self.metrics, self.routes = app, settings, metrics, routes
        self.loopback = is_loopback(settings.host)
        named = {_hostname(h) for h in settings.allowed_hosts}
        self.hosts: Optional[set[str]] = ({*LOOPBACK_NAMES, *named} if self.loopback
                                          else named or None)  # beyond loopback: only what the operator names
        self.origins = set(settings.cors_origins)
        self.key = settings.api_key.encode() if settings.api_key else None
        self.management_open = bool(self.key) or self.loopback or settings.allow_unauthenticated_management

    @property
    def _too_large(self) -> bytes:
        return error_body(f"request body is larger than this server's {self.settings.max_body_bytes} bytes "
                          "(--max-body-bytes)", "body_too_large")

    def _refusal(self, scope: dict, headers: dict[str, str]) -> Optional[tuple[int, bytes]]:
        """(status, error body) when the request is refused before any route sees it, else None."""
        path, method = scope["path"], scope["method"]
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            return 413, self._too_large
        if self.hosts is not None and _hostname(headers.get("host", "")) not in self.hosts:
            return 400, error_body("Host header not served here; an operator can add names with --allowed-host",
                                   "invalid_host")
        if self.key is not None and needs_key(method, path):
            given = headers.get("authorization", "")
            token = given[7:] if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.key):
                return 401, error_body("missing or invalid API key: send Authorization: Bearer KEY", "invalid_api_key")
        if path.startswith("/v1/zoo/") and not self.management_open:
            return 403, error_body("management endpoints are off: this server listens beyond loopback without an API "
                                   "key; set --api-key, or pass --allow-unauthenticated-management",
                                   "management_disabled")
        if method == "POST" and _accepts(scope, self.routes):  # others get their 404 or 405 from the router
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                return 415, error_body("POST bodies must be JSON: send Content-Type: application/json",
                                       "unsupported_media_type")
            origin = headers.get("origin")
            if origin is not None and origin not in self.origins:
                return 403, error_body("requests from this Origin are refused; an operator can allow it with "
                                       "--cors-origin", "origin_not_allowed")
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        scope["zoo.request_id"] = request_id
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        refusal = self._refusal(scope, headers)
        if refusal is not None:
            code, body = refusal
            await _respond(send_with_id, code, body)
            self._count(_route_of(scope, self.routes), code, started)
            return
        limit = self.settings.max_body_bytes
        received = 0

        async def receive_within_limit() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, receive_within_limit, send_with_id)
        except BodyTooLarge:
            if "started" in status:
                raise
            await _respond(send_with_id, 413, self._too_large)
        finally:
            self._count(_route_of(scope, self.routes), status["code"], started)

    def _count(self, route: str, status: int, started: float) -> None:
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _accepts(scope: dict, routes) -> bool:
    """Whether a route serves this path with this method."""
    return any(route.matches(scope)[0].name == "FULL" for route in routes)


def _route_of(scope: dict, routes) -> str:
    """The route template a request matched (or would have, when refused before routing)."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return path
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match.name != "NONE":
            return candidate.path
    return UNMATCHED


async def _respond(send: Callable, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
