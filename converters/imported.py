"""An artifact someone else built (optimum, sentence-transformers' export helpers, llama.cpp, ``zoo export``),
brought in by ``zoo import``: the graph is copied, never rebuilt, then judged like any build.

It plays a converter's part for one target, so the build pipeline locks, gates, records and
stores an imported artifact exactly as one it built: below the floor, it is rejected and never
served. The one change to the graph: optimum names the transformer's output ``last_hidden_state``,
zoo's runtimes and pooling read ``token_embeddings``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInput, require
from zoo.store.sources import list_local_files

from .base import BuildResult, Converter, Progress, Target

__all__ = ["ImportedConverter", "ZOO_OUTPUT", "OPTIMUM_OUTPUT", "rename_onnx_output", "rename_openvino_output"]

ZOO_OUTPUT, OPTIMUM_OUTPUT, RERANKER_OUTPUT = "token_embeddings", "last_hidden_state", "logits"
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".xml", ".gguf")


def rename_onnx_output(src: Path, dst: Path, old: str, new: str) -> None:
    onnx = require("onnx", "onnx")
    model = onnx.load(str(src))
    if old not in {o.name for o in model.graph.output}:
        names = ", ".join(o.name for o in model.graph.output)
        raise InvalidInput(f"{src.name}: no output {old!r} (its outputs: {names}); not a transformer encoder export "
                           "(a reranker's: its head's logits)")
    for output in model.graph.output:
        if output.name == old:
            output.name = new
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    onnx.save(model, str(dst))


def rename_openvino_output(src: Path, dst: Path, old: str, new: str) -> None:
    ov = require("openvino", "openvino")
    model = ov.Core().read_model(str(src))
    hit = [o for o in model.outputs if old in o.get_names()]
    if not hit:
        names = ", ".join(n for o in model.outputs for n in o.get_names())
        raise InvalidInput(f"{src.name}: no output {old!r} (its outputs: {names}); not a transformer encoder export")
    for output in hit:
        output.get_tensor().set_names({new})
    ov.save_model(model, str(dst), compress_to_fp16=False)  # the weights stay exactly as they came


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ImportedConverter(Converter):
    name = "import"

    def __init__(self, graph: Path):
        self.graph = Path(graph)

    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        progress(f"{target.name}: importing {self.graph.name}", None)
        for f in Path(checkpoint).rglob("*"):  # the tokenizer, configs and module folders; not the weights
            if f.is_file() and f.suffix not in WEIGHTS:
                dst = out_dir / f.relative_to(checkpoint)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)
        info: dict[str, Any] = {"imported_from": self.graph.name, "imported_sha256": _sha256(self.graph)}
        runtime = None
        from zoo.engine.kinds import RERANKER, detect_kind

        # a reranker's graph gives its head's logits, under that name in optimum's exports and zoo's alike
        old, new = (RERANKER_OUTPUT, RERANKER_OUTPUT) if detect_kind(Path(checkpoint)) == RERANKER else (
            OPTIMUM_OUTPUT, ZOO_OUTPUT)
        if target.format == "onnx":
            rename_onnx_output(self.graph, out_dir / "model.onnx", old, new)
            runtime = "fp32" if target.precision == "fp32" else target.precision
        elif target.format == "openvino":
            rename_openvino_output(self.graph, out_dir / "openvino_model.xml", old, new)
            from .openvino import _runtime_precision

            info["inference_precision"] = {"fp32": "f32", "bf16": "bf16"}.get(target.precision)
            runtime = _runtime_precision(out_dir, info["inference_precision"])
        elif target.format == "gguf":  # llama.cpp reads it as it is; the tokenizer files came along above
            from .gguf import FILE_TYPES, save_tokenizer

            shutil.copyfile(self.graph, out_dir / self.graph.name)
            if not (out_dir / "tokenizer.json").exists():
                save_tokenizer(checkpoint, out_dir)
            runtime = FILE_TYPES[target.variant][1]
        else:
            raise InvalidInput(f"{target.name}: only ONNX, OpenVINO and GGUF artifacts can be imported")
        info["runtime_precision"] = runtime
        return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision=runtime,
                           notes=[f"imported {self.graph.name} (sha256 {info['imported_sha256'][:12]}), not rebuilt"])
