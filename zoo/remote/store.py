"""A shared artifact store at a URL, laid out as a home's store: ``blobs/<sha256>`` and
``manifests/<digest>.json``.

Why by digest: an artifact's digest names exactly one set of bytes, so a home that pulls it gets
what the pushing home built, not a conversion of its own (which would give other vectors). Every
blob is checked against its sha256 and the manifest against the digest before anything gets a
final name in the home; a pushed manifest is written last, so a manifest in the shared store means
its blobs are all there. Local-filesystem uploads go to a temporary name first and are renamed;
object stores (S3) make each PUT visible whole.

S3 settings come from the usual environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL`` (an S3-compatible server), ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Iterable, Optional

from ..errors import ArtifactNotFound, StoreCorruption, ZooError, require
from ..store.blobs import CHUNK, ManifestEntry, Store, parse_manifest

__all__ = ["RemoteStore", "Transfer", "fetch_missing", "store_url"]


def store_url(url: Optional[str] = None) -> Optional[str]:
    """The shared store's URL: ``url`` itself, else ``$ZOO_STORE_URL``, else none."""
    return url or os.environ.get("ZOO_STORE_URL") or None


@dataclass
class Transfer:
    """What a push or a pull moved."""
    artifacts: int = 0
    blobs_sent: int = 0
    blobs_present: int = 0  # already at the destination (same sha256, same size)
    bytes_sent: int = 0


class RemoteStore:
    def __init__(self, url: str):
        if not isinstance(url, str) or "://" not in url:
            raise ZooError(f"store URL {url!r} needs a scheme, e.g. file:///shared/zoo-store or s3://bucket/prefix")
        scheme = url.split("://", 1)[0]
        if scheme in ("s3", "s3a"):
            require("s3fs", "remote")
        fsspec = require("fsspec", "remote")
        self.url = url.rstrip("/")
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise ZooError(f"cannot open store URL {self.url}: {exc}") from None
        self.root = root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def _path(self, kind: str, name: str) -> str:
        return f"{self.root}/{kind}/{name}"

    @contextlib.contextmanager
    def _reaching(self, what: str, missing_is_an_answer: bool = True):
        """Turn the filesystem's own exceptions into one line naming the URL and what was tried. A missing
        file passes through where the caller reads it as an answer (no such artifact)."""
        try:
            yield
        except ZooError:
            raise
        except FileNotFoundError:
            if missing_is_an_answer:
                raise
            raise ZooError(f"shared store {self.url}: cannot {what} (no such folder, or one that cannot be made "
                           "there); check the URL") from None
        except Exception as exc:  # botocore, aiohttp and OSError subclasses alike
            raise ZooError(f"shared store {self.url}: cannot {what} ({type(exc).__name__}); check the URL, "
                           "credentials and that the server is reachable") from None

    # -- reading -------------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        with self._reaching("list manifests"):
            return self.fs.exists(self._path("manifests", f"{digest}.json"))

    def manifest(self, digest: str) -> list[ManifestEntry]:
        """The manifest of ``digest``, checked to hash to it (a swapped manifest names other bytes)."""
        try:
            with self._reaching(f"read the manifest of {digest[:12]}"):
                raw = self.fs.cat_file(self._path("manifests", f"{digest}.json"))
        except FileNotFoundError:
            raise ArtifactNotFound(f"artifact {digest[:12]} is not in the shared store {self.url}; push it "
                                   "there from a home that has it (`zoo push NAME --store-url URL`)") from None
        return parse_manifest(raw, digest, f"the shared store {self.url}")

    def pull(self, store: Store, digest: str) -> Transfer:
        """Bring ``digest``'s manifest and blobs into ``store``, each verified, each written by rename."""
        from filelock import FileLock

        entries = self.manifest(digest)
        done = Transfer(artifacts=1)
        # the lock a tree is built under (and gc removes with it): one process pulls, the others wait
        with FileLock(str(store.root / f".tree-{digest}.lock")), store.writing():
            for e in entries:
                local = store.blob_path(e.sha256)
                if local.exists() and store._check_file(local, e) is None:
                    done.blobs_present += 1
                    continue
                path = self._path("blobs", e.sha256)
                try:
                    with self._reaching(f"download blob {e.sha256[:12]}"), self.fs.open(path, "rb") as f:
                        try:
                            store.ingest(e, iter(lambda: f.read(CHUNK), b""))
                        except StoreCorruption as exc:
                            raise StoreCorruption(f"the shared store {self.url} holds a damaged blob for artifact "
                                                  f"{digest[:12]}: {exc}; delete blobs/{e.sha256} there and push "
                                                  "the artifact again") from None
                except FileNotFoundError:
                    raise StoreCorruption(f"the shared store {self.url} lacks blob {e.sha256[:12]} ({e.path}) of "
                                          f"artifact {digest[:12]}; push the artifact again") from None
                done.blobs_sent += 1
                done.bytes_sent += e.size
            store.write_manifest(entries)
            store.refresh_tree(digest)
        return done

    # -- writing -------------------------------------------------------------------------------
    def push(self, store: Store, digests: Iterable[str]) -> Transfer:
        """Upload each artifact's blobs (those not there yet), then its manifest."""
        done = Transfer()
        with self._reaching("write", missing_is_an_answer=False):
            self.fs.makedirs(f"{self.root}/blobs", exist_ok=True)
            self.fs.makedirs(f"{self.root}/manifests", exist_ok=True)
        seen: set[str] = set()  # artifacts share blobs (tokenizer, configs): each is sent and counted once
        for digest in digests:
            entries = store.manifest(digest)
            for e in entries:
                if e.sha256 in seen:
                    continue
                seen.add(e.sha256)
                blob = store.blob_path(e.sha256)
                if store._check_file(blob, e):  # never spread a damaged file
                    raise StoreCorruption(f"artifact {digest[:12]}: local blob of {e.path} is damaged; run "
                                          "`zoo verify --repair` before pushing")
                target = self._path("blobs", e.sha256)
                with self._reaching(f"upload blob {e.sha256[:12]}"):
                    if self.fs.exists(target) and self.fs.size(target) == e.size and self._holds(target, e):
                        done.blobs_present += 1
                        continue
                    self._put(target, path=str(blob))
                done.blobs_sent += 1
                done.bytes_sent += e.size
            body = json.dumps([x.as_dict() for x in sorted(entries, key=lambda x: x.path)], indent=1)
            with self._reaching(f"upload the manifest of {digest[:12]}"):
                self._put(self._path("manifests", f"{digest}.json"), data=body.encode())
            done.artifacts += 1
        return done

    def _holds(self, target: str, e: ManifestEntry) -> bool:
        """Whether the shared store's blob at ``target`` hashes to ``e``: a damaged blob of the right size is
        replaced, not kept (object stores offer no sha256 of their own, so this reads it once)."""
        h = hashlib.sha256()
        with self.fs.open(target, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest() == e.sha256

    def _put(self, target: str, *, path: Optional[str] = None, data: Optional[bytes] = None) -> None:
        """Upload a local file (``path``) or bytes (``data``) to ``target``, visible only whole."""
        if not self.local:  # an object store's PUT is visible only once complete
            self.fs.put_file(path, target) if path is not None else self.fs.pipe_file(target, data)
            return
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                if path is not None:
                    with open(path, "rb") as src:
                        shutil.copyfileobj(src, f, CHUNK)
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def fetch_missing(store: Store, digest: Optional[str], url: Optional[str] = None) -> Optional[Transfer]:
    """Pull ``digest`` from the shared store when this home lacks its files; None when nothing was needed.

    Without a store URL a missing artifact is left to the store's own error, with the way out added.
    """
    if not digest or not store.lacks(digest):
        return None
    url = store_url(url)
    if url is None:
        # an intact home that lacks the files gets the way out; a damaged one, the store's own error
        if not store.has(digest) and store.manifests.is_dir():
            raise ArtifactNotFound(f"artifact {digest[:12]} has no files in this home; set "
                                   "--store-url / ZOO_STORE_URL to a shared store that holds it (`zoo push`), "
                                   "or rebuild it here with `zoo verify --repair`")
        return None
    return RemoteStore(url).pull(store, digest)
