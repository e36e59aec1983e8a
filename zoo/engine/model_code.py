"""A model's own code: what a folder asks Python to run, and the check that it is the code an operator trusted.

Why this exists: a folder whose ``config.json`` has an ``auto_map`` (nomic-embed, jina-embeddings) names a class
in a ``.py`` file beside the weights. sentence-transformers and transformers without ``trust_remote_code`` load
such a folder as the plain base class the config also names (``bert``, ``xlm-roberta``) and return vectors of a
different function, with no error; a gate whose reference is that same reading passes every artifact of it.
So zoo refuses a folder with code unless the operator opts in, records each code file's sha256 when they do,
and checks those digests before anything imports the code again: code that changed since it was trusted is
refused, not run.

What counts as code here, as the loaders would run it:
- ``auto_map`` in ``config.json`` (the folder's and each Transformer module folder's) and in
  ``tokenizer_config.json``: a reference ``module.Class``, or ``repo--module.Class`` for code in another
  repository (refused even when trusted: zoo does not fetch a second repository's code);
- a ``modules.json`` module whose type is not one of sentence-transformers' own (``custom_st.Transformer``);
- every ``.py`` file the folder holds: the referenced modules import their siblings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

from ..errors import CodeChanged, UntrustedCode

__all__ = ["ModelCode", "find_model_code", "verify_trusted", "TRUST_FLAG"]

TRUST_FLAG = "--trust-remote-code"
ST_PREFIX = "sentence_transformers."


@dataclass(frozen=True)
class ModelCode:
    references: tuple[str, ...]  # what asks for code, e.g. "config.json auto_map AutoModel -> modeling_x.Model"
    files: tuple[tuple[str, str], ...]  # (path in the folder, sha256) of every .py file, sorted by path
    external: tuple[str, ...]  # repositories whose code a reference names (repo--module.Class)

    @property
    def digests(self) -> dict[str, str]:
        return dict(self.files)

    def describe(self) -> str:
        """One line: what asks for code and which files hold it."""
        files = ", ".join(p for p, _ in self.files) or "no .py file in the folder"
        return f"{'; '.join(self.references)} (code files: {files})"


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _auto_map_refs(config_path: Path, label: str) -> Iterable[str]:
    config = _json(config_path)
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if not isinstance(auto_map, dict):
        return
    for key, value in sorted(auto_map.items()):
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and ref:
                yield f"{label} auto_map {key} -> {ref}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _code_files(directory: Path) -> tuple[tuple[str, str], ...]:
    """Every .py file at the top of the folder and in its module folders (where loaders look)."""
    found = [p for p in directory.glob("*.py")] + [p for p in directory.glob("*/*.py")]
    return tuple(sorted((p.relative_to(directory).as_posix(), _sha256(p)) for p in found if p.is_file()))


def find_model_code(directory: Path) -> Optional[ModelCode]:
    """The code ``directory`` asks to run, or None for a folder that runs only the libraries' own classes."""
    d = Path(directory)
    refs: list[str] = list(_auto_map_refs(d / "config.json", "config.json"))
    refs += _auto_map_refs(d / "tokenizer_config.json", "tokenizer_config.json")
    modules = _json(d / "modules.json")
    for module in modules if isinstance(modules, list) else []:
        if not isinstance(module, dict):
            continue
        kind, path = str(module.get("type", "")), str(module.get("path", ""))
        if kind and not kind.startswith(ST_PREFIX):
            refs.append(f"modules.json module {module.get('name', path)!s} -> {kind}")
        if path and kind.endswith("Transformer") and (d / path / "config.json").is_file():
            refs += _auto_map_refs(d / path / "config.json", f"{path}/config.json")
    if not refs:
        return None
    external = sorted({ref.rsplit(" -> ", 1)[1].split("--", 1)[0] for ref in refs if "--" in ref.rsplit(" -> ", 1)[1]})
    return ModelCode(tuple(refs), _code_files(d), tuple(external))


def refusal(code: ModelCode, source: str) -> str:
    """Why a folder with code is refused by default, and the flag that opts in."""
    return (f"{source} runs its own code: {code.describe()}. zoo does not run a model's code unless told to; "
            f"read those files, then register with {TRUST_FLAG} (trust_remote_code: true in YAML and the HTTP "
            "API). Loaded without its code, such a model embeds as its base class and gives wrong vectors")


def external_refusal(code: ModelCode, source: str) -> str:
    return (f"{source} names code in another repository ({', '.join(code.external)}): zoo runs only code stored "
            "with the model, pinned by digest; copy those .py files into the model folder and point auto_map at "
            "them (module.Class, without the repo-- prefix)")


def verify_trusted(directory: Path, trusted: Optional[Mapping[str, str]]) -> bool:
    """Check the folder's code against the digests recorded when it was trusted, before anything imports it.

    True: the folder has code and it is the trusted code (load it with trust_remote_code). False: no code.
    Raises UntrustedCode for code never trusted, CodeChanged for code that differs from what was trusted."""
    code = find_model_code(directory)
    if code is None:
        return False
    if not trusted:
        raise UntrustedCode(refusal(code, "this model"))
    now = code.digests
    changed = sorted(p for p in set(now) | set(trusted) if now.get(p) != trusted.get(p))
    if changed:
        raise CodeChanged(f"the model's code changed since it was trusted ({', '.join(changed)} differ from the "
                          f"sha256 recorded at registration); refusing to run it. Read the files and register the "
                          f"model again with {TRUST_FLAG} to trust the new code")
    if code.external:
        raise UntrustedCode(external_refusal(code, "this model"))
    return True
