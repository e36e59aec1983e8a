"""A small Hugging Face hub on 127.0.0.1, speaking what huggingface_hub 0.36 asks for.

Repos are in-memory: ``{repo_id: FakeRepo}`` where a repo has commits
(sha -> {path: bytes}) and refs (branch or tag name -> sha). Endpoints:

- GET  /api/models/{repo}[/revision/{rev}]          -> {id, sha, siblings}
- GET  /api/models/{repo}/tree/{rev}[/{path}]       -> [{type, path, size, oid}]
- HEAD/GET /{repo}/resolve/{rev}/{path}             -> bytes, X-Repo-Commit, ETag, Content-Length
- errors: 404 + X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound

Every request is logged in ``server.requests`` so tests can assert what was fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

__all__ = ["FakeRepo", "FakeHub"]


@dataclass
class FakeRepo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    hide_siblings: bool = False  # as the real hub does for very large repos

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None


class _Handler(BaseHTTPRequestHandler):
    hub: "FakeHub"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, head: bool = False):
        body = json.dumps({"error": code}).encode()
        self._send(status, body, {"X-Error-Code": code, "Content-Type": "application/json"}, head)

    def _json(self, obj):
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _route(self, head: bool):
        path = unquote(urlparse(self.path).path)
        self.hub.requests.append((self.command, path))
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/(.+))?$", path)
        if m:
            return self._info(m.group(1), m.group(2) or "main")
        m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
        if m:
            return self._tree(m.group(1), m.group(2), m.group(3) or "")
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve(m.group(1), m.group(2), m.group(3), head)
        self._error(404, "NotFound", head)

    def _lookup(self, repo_id: str, rev: str, head: bool = False):
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", head)
            return None, None
        sha = repo.resolve(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", head)
            return None, None
        return repo, sha

    def _info(self, repo_id: str, rev: str):
        repo, sha = self._lookup(repo_id, rev)
        if repo is None:
            return
        files = repo.commits[sha]
        self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "tags": [],
                    "siblings": [] if repo.hide_siblings else [{"rfilename": p} for p in sorted(files)]})

    def _tree(self, repo_id: str, rev: str, prefix: str):
        repo, sha = self._lookup(repo_id, rev)
        if repo is None:
            return
        self._json([{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for p, b in sorted(repo.commits[sha].items()) if p.startswith(prefix)])

    def _resolve(self, repo_id: str, rev: str, file_path: str, head: bool):
        repo, sha = self._lookup(repo_id, rev, head)
        if repo is None:
            return
        body = repo.commits[sha].get(file_path)
        if body is None:
            return self._error(404, "EntryNotFound", head)
        etag = '"' + hashlib.sha256(body).hexdigest() + '"'
        self._send(200, body, {"X-Repo-Commit": sha, "ETag": etag,
                               "Content-Type": "application/octet-stream"}, head)

    def do_GET(self):
        self._route(head=False)

    def do_HEAD(self):
        self._route(head=True)


class FakeHub:
    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
