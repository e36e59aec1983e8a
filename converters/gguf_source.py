"""Where llama.cpp's own conversion code comes from: the source release of the installed llama-cpp-python.

The GGUF converter runs llama.cpp's ``convert_hf_to_gguf.py`` (its ``conversion`` package and its
own ``gguf-py``), never a writer of ours: which tensors are renamed, how the vocabulary becomes
llama.cpp's and which pooling is declared is llama.cpp's knowledge, and it moves with llama.cpp.
The llama-cpp-python wheel holds the runtime but not those scripts; its source release holds both,
under ``vendor/llama.cpp``, from the one llama.cpp commit the runtime was built from. So the
converter and the runtime that loads its files always agree on the format.

Where the scripts are looked for, in order:

1. ``$ZOO_LLAMA_CPP_DIR``: a llama.cpp checkout (an offline machine, or a newer converter);
2. ``<user cache>/zoo/tools/llama.cpp-<version>``: extracted before, for the installed version
   (tools, not state: every zoo home on the machine shares it);
3. the source release itself, fetched with ``pip download`` (pip's own index, proxy, hash check
   and cache: the pip that built the installed package from source has usually cached it). Only
   the conversion files are extracted, into a temporary folder renamed into place whole, so a
   crash never leaves a half-extracted copy that a later call would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from importlib import metadata
from pathlib import Path
from zoo.errors import MissingExtra, ZooError

__all__ = ["conversion_script", "llama_cpp_version", "ENV_DIR"]

ENV_DIR = "ZOO_LLAMA_CPP_DIR"
SCRIPT = "convert_hf_to_gguf.py"
# what the conversion script imports besides torch and transformers
WANTED = (SCRIPT, "conversion/", "gguf-py/gguf/", "LICENSE")


def llama_cpp_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise MissingExtra("llama_cpp", "gguf") from None


def tools_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("zoo", appauthor=False)) / "tools"


def conversion_script(progress=lambda step, frac: None) -> tuple[Path, dict]:
    """The path of ``convert_hf_to_gguf.py`` and where it came from (recorded in provenance)."""
    override = os.environ.get(ENV_DIR)
    if override:
        script = Path(override) / SCRIPT
        if not script.is_file():
            raise ZooError(f"${ENV_DIR} is set to {override}, which has no {SCRIPT}; point it at a llama.cpp checkout")
        return script, {"source": f"${ENV_DIR}"}
    version = llama_cpp_version()
    root = tools_dir()
    final = root / f"llama.cpp-{version}"
    if not (final / "source.json").is_file():
        progress(f"fetching llama.cpp's conversion code (llama-cpp-python {version} source release)", None)
        _extract(version, root, final)
    return final / SCRIPT, json.loads((final / "source.json").read_text())


def _extract(version: str, root: Path, final: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        download = staging / "download"
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "--dest", str(download), f"llama-cpp-python=={version}"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(download.glob("*.tar.gz")) if download.is_dir() else []
        if run.returncode != 0 or not archives:
            last = (run.stderr.strip().splitlines() or ["no archive"])[-1]
            raise ZooError(f"could not fetch llama-cpp-python {version}'s source release for llama.cpp's GGUF "
                           f"conversion code ({last}); on a machine without a package index set ${ENV_DIR} "
                           "to a llama.cpp checkout")
        archive = archives[0]
        tree = staging / "tree"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/", 3)  # <sdist>/vendor/llama.cpp/<path>
                if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                    continue
                rel = parts[3]
                if (member.isfile() and any(rel == w or (w.endswith("/") and rel.startswith(w)) for w in WANTED)
                        and ".." not in Path(rel).parts):
                    dst = tree / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(dst, "wb") as out:
                        shutil.copyfileobj(src, out)
        if not (tree / SCRIPT).is_file():
            raise ZooError(f"{archive.name} has no vendor/llama.cpp/{SCRIPT}; this llama-cpp-python release "
                           f"cannot convert checkpoints (set ${ENV_DIR} to a llama.cpp checkout)")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        (tree / "source.json").write_text(json.dumps({"source": archive.name, "sha256": digest}))
        try:
            tree.rename(final)
        except OSError:  # another process put the same version in place first
            if not (final / "source.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
