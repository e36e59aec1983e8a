"""Artifacts as plain folders other tools load and make: ``zoo export`` and ``zoo import``.

The folder is sentence-transformers' layout, as its own ``export_*`` helpers and the hub write
it: the checkpoint's configs, tokenizer, weights and module folders (``1_Pooling``, ...) at the
root, and the artifact under the name sentence-transformers and optimum look for
(``onnx/model.onnx``, ``onnx/model_O3.onnx``, ``onnx/model_qint8_avx512_vnni.onnx``,
``openvino/openvino_model.xml``, ``openvino/openvino_model_qint8_quantized.xml``; a GGUF as
``model-<type>.gguf`` at the root, where llama.cpp's users look). So
``SentenceTransformer(DIR, backend="onnx", model_kwargs={"file_name": "onnx/model.onnx"})`` loads
it, as do tools that read that layout (LlamaIndex's HuggingFace/OpenVINO embedding classes).
``zoo-artifact.json`` beside them holds the artifact's identity, provenance and fidelity report, and
``quantization_ranges.npy`` the int8/uint8 calibration ranges zoo serves with (when it has stored them).

One change to the graph: zoo names the transformer's output ``token_embeddings`` (what its pooling
reads), optimum reads ``last_hidden_state``; the exported graph's output is renamed, nothing else.
The folder is written under a temporary name and renamed whole. ``zoo import`` reads the same
names (and optimum's ``model.onnx`` / ``openvino_model.xml`` at the root) and gates each graph.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Optional

from converters.imported import OPTIMUM_OUTPUT, RERANKER_OUTPUT, ZOO_OUTPUT, rename_onnx_output, rename_openvino_output

from ..errors import ArtifactNotFound, InvalidInput
from ..registry.catalog import artifact_dict

__all__ = ["export_artifact", "exported_name", "import_folder", "found_artifacts"]

# (2, dim) float32, [min; max] per dimension at the model's own normalisation and full width: pass it to
# sentence-transformers' quantize_embeddings(..., ranges=np.load(...)) to quantize as zoo serves
RANGES_FILE = "quantization_ranges.npy"
ONNX_FILE = re.compile(r"model(?:_(O[1-4])|_qu?int8_(\w+)|_(int8w))?\.onnx")
# weight-only graphs have no sentence-transformers name; zoo's own, beside the ones it has
WEIGHT_ONLY_XML = {"openvino_model_int8w.xml": "openvino-int8w", "openvino_model_int4w.xml": "openvino-int4w"}



def exported_name(artifact) -> str | None:
    """Where ``artifact`` goes in the folder (None: the checkpoint itself, at the root)."""
    if artifact.format == "torch":
        if artifact.target != "torch-fp32":
            raise InvalidInput(f"{artifact.target} is a cast made at load time, not a file to export; export "
                               "torch-fp32 (the checkpoint) or an ONNX/OpenVINO artifact")
        return None
    variant = artifact.variant or ""
    if artifact.format == "onnx":
        if artifact.precision == "int8w":
            return "onnx/model_int8w.onnx"
        if artifact.precision == "int8":
            return f"onnx/model_qint8_{variant or 'static'}.onnx"
        if variant.lower().startswith("o"):
            return f"onnx/model_{variant.upper()}.onnx"
        return "onnx/model.onnx"
    if artifact.format == "openvino":
        if artifact.precision in ("int8w", "int4w"):
            return f"openvino/openvino_model_{artifact.precision}.xml"
        return "openvino/openvino_model_qint8_quantized.xml" if artifact.precision == "int8" \
            else "openvino/openvino_model.xml"
    if artifact.format == "gguf":  # at the root, as llama.cpp users (LocalAI, llama-server) look for it
        return f"model-{variant}.gguf"
    raise InvalidInput(f"artifacts of format {artifact.format!r} cannot be exported yet")


def default_names(artifact, relative: Optional[str]) -> list[str]:
    """Where consumers look when told nothing but the backend, beside the artifact's own name: so an int8
    export loaded with sentence-transformers' defaults (``backend="onnx"``, no ``file_name``) runs the
    int8 graph, not an fp32 one or a re-export; and optimum's root ``openvino_model.xml``, the only place
    LlamaIndex's ``OpenVINOEmbedding`` looks before exporting from the checkpoint."""
    if artifact.format == "onnx":
        defaults = ["onnx/model.onnx"]
    elif artifact.format == "openvino":
        defaults = ["openvino/openvino_model.xml", "openvino_model.xml"]
    else:
        return []
    return [d for d in defaults if d != relative]


def export_artifact(reg, name: str, target: str | int, directory: str | Path) -> dict:
    """Write ``name``'s ready artifact ``target`` (a target name or id) as a folder; returns what was written."""
    resolved = reg.resolve(name)
    arts = resolved.revision.artifacts
    chosen = next((a for a in arts if a.target == target or str(a.id) == str(target)), None)
    if chosen is None:
        raise ArtifactNotFound(f"{resolved.model.name} has no artifact {target!r}; its artifacts: "
                               f"{', '.join(a.target for a in arts)}")
    if chosen.status.value != "ready":
        raise ArtifactNotFound(f"{resolved.model.name} {chosen.target} is {chosen.status.value}, not ready; only "
                               "artifacts that passed the fidelity gate are exported")
    relative = exported_name(chosen)
    checkpoint = next(a for a in arts if a.target == "torch-fp32")
    out = Path(directory).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"{out} exists and is not an empty folder; export into a new one")
    base, tree = reg.artifact_path(checkpoint), reg.artifact_path(chosen)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    try:
        _write_export(base, tree, staging, out, relative, chosen, resolved, checkpoint)
    except OSError as exc:
        raise InvalidInput(f"cannot write the export to {out} ({exc.strerror or type(exc).__name__}); choose a "
                           "new folder in a writable place") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [] if relative is None else [relative] if chosen.format == "gguf" else [
        str(p.relative_to(out)) for p in (out / relative).parent.iterdir()]
    return {"path": str(out), "file_name": relative, "default_file_names": default_names(chosen, relative),
            "ranges_file": RANGES_FILE if chosen.precision_ranges else None,
            "files": sorted(written), "artifact": chosen.target, "format": chosen.format,
            "pooling": resolved.model.pooling, "normalize": resolved.model.normalize}


def _write_export(base: Path, tree: Path, staging: Path, out: Path, relative, chosen, resolved, checkpoint) -> None:
    """The export assembled in ``staging`` and renamed to ``out`` whole."""
    shutil.copytree(base, staging, symlinks=False)
    for p in staging.rglob("*"):  # the store's files are read-only; the copy is the user's
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    # a reranker's graph gives logits under optimum's name already: exported as it is
    old, new = (RERANKER_OUTPUT, RERANKER_OUTPUT) if resolved.model.kind == "reranker" else (ZOO_OUTPUT, OPTIMUM_OUTPUT)
    if relative is not None:
        dst = staging / relative
        dst.parent.mkdir(parents=True, exist_ok=True)
        if chosen.format == "onnx":
            rename_onnx_output(tree / "model.onnx", dst, old, new)
        elif chosen.format == "gguf":  # no graph output to rename: llama.cpp pools inside
            shutil.copyfile(tree / relative, dst)
        else:
            rename_openvino_output(tree / "openvino_model.xml", dst, old, new)
        for default in default_names(chosen, relative):  # the same bytes where defaults look (hard links)
            for suffix in ((".xml", ".bin") if chosen.format == "openvino" else (".onnx",)):
                source, link = dst.with_suffix(suffix), (staging / default).with_suffix(suffix)
                if source.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(source, link)
    record = {"model": resolved.model.name, "revision": resolved.revision.resolved_id,
              "source": resolved.model.source, "file_name": relative,
              "default_file_names": default_names(chosen, relative), "artifact": artifact_dict(chosen),
              "checkpoint_digest": checkpoint.store_digest,
              "note": ("a reranker's graph gives its head's logits, as optimum's; " if resolved.model.kind == "reranker"
                       else "the graph's output is renamed token_embeddings -> last_hidden_state for optimum; ")
              + "store_digest names zoo's stored bytes"}
    (staging / "zoo-artifact.json").write_text(json.dumps(record, indent=1, default=str))
    if chosen.precision_ranges:  # the int8/uint8 ranges zoo serves with, as sentence-transformers takes them
        import numpy as np

        from ..engine.precision import ranges_for

        ranges = ranges_for(chosen.precision_ranges, normalize=resolved.model.normalize, dims=resolved.model.dim)
        np.save(staging / RANGES_FILE, ranges)
    if out.exists():
        out.rmdir()
    os.replace(staging, out)


def _link_or_copy(source: Path, link: Path) -> None:
    try:
        os.link(source, link)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, link)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two exported graphs are one (hard links, or copies of the same bytes, their weights too)."""
    pairs = [(a, b)] + ([(a.with_suffix(".bin"), b.with_suffix(".bin"))] if a.suffix == ".xml" else [])
    for x, y in pairs:
        if not (x.exists() and y.exists()):
            return False
        if os.path.samefile(x, y):
            continue
        if x.stat().st_size != y.stat().st_size or x.read_bytes() != y.read_bytes():
            return False
    return True


def found_artifacts(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The ONNX/OpenVINO/GGUF files in an exported folder, by the target each is (sentence-transformers'
    and optimum's names, under ``onnx/``, ``openvino/`` or at the root; a GGUF by the file type its
    header declares); and the files not understood."""
    targets: dict[str, Path] = {}
    skipped: list[str] = []
    paths = sorted([*directory.glob("*.onnx"), *directory.glob("onnx/*.onnx"),
                    *directory.glob("*.xml"), *directory.glob("openvino/*.xml"), *directory.glob("*.gguf")])
    # a zoo export names its artifact; the copies of it at the default names are that artifact, not others
    try:
        named = json.loads((directory / "zoo-artifact.json").read_text()).get("file_name")
    except (OSError, ValueError, AttributeError):
        named = None
    if named and (directory / named) in paths:
        paths.remove(directory / named)
        paths.insert(0, directory / named)
    for path in paths:
        rel = str(path.relative_to(directory))
        same = next((t for t, p in targets.items() if _same_file(p, path)), None)
        if same is not None:
            skipped.append(f"{rel} (the same graph as {targets[same].relative_to(directory)}, {same})")
            continue
        target = None
        if path.suffix == ".gguf":
            if importlib.util.find_spec("llama_cpp") is None:
                skipped.append(f"{rel} (reading a GGUF needs llama-cpp-python: pip install 'zoo[gguf]')")
                continue
            from converters.gguf import target_of_file

            target = target_of_file(path)
            if target is None:
                skipped.append(f"{rel} (a GGUF of a file type no zoo target is: f16 and q8_0 are)")
                continue
        elif path.suffix == ".onnx" and (m := ONNX_FILE.fullmatch(path.name)):
            level, isa, weights = m.groups()
            target = f"onnx-{level.lower()}" if level else f"onnx-int8-{isa}" if isa else \
                "onnx-int8w" if weights else "onnx-fp32"
        elif path.name == "openvino_model.xml":
            target = "openvino-fp32"
        elif path.name == "openvino_model_qint8_quantized.xml":
            target = "openvino-int8"
        elif path.name in WEIGHT_ONLY_XML:
            target = WEIGHT_ONLY_XML[path.name]
        if target is None or target in targets:
            skipped.append(f"{rel} (unrecognised name)" if target is None else f"{rel} (a second {target})")
        else:
            targets[target] = path
    return targets, skipped


def import_folder(reg, name: str, directory: str | Path, *, force: bool = False, progress=None) -> dict:
    """Register the checkpoint in ``directory`` as ``name``, then bring in and gate every ONNX/OpenVINO
    artifact exported beside it; returns the registration, the outcomes and what was skipped."""
    from converters import converter_for

    from ..core.hardware import detect
    from .pipeline import convert

    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: no such folder")
    found, skipped = found_artifacts(folder)
    hw = detect()
    usable = {}
    for target, path in found.items():
        try:
            t, conv = converter_for(target)
        except KeyError:
            skipped.append(f"{path.relative_to(folder)} ({target} is not a zoo target)")
            continue
        why = conv.unavailable_reason(t, hw)
        if why:
            skipped.append(f"{path.relative_to(folder)} ({target} cannot run here: {why})")
        else:
            usable[target] = path
    # the checkpoint first: a folder without one is refused before any artifact is read
    resolved = reg.register(name, str(folder), force=force)
    outcomes = convert(reg, name, list(usable), rebuild=True, imports=usable, hardware=hw,
                       progress=progress) if usable else []
    return {"model": resolved.model.name, "revision": resolved.revision.resolved_id, "outcomes": outcomes,
            "skipped": skipped}
