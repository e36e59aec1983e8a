"""What the quantizing converters share: one fp32 export per conversion, and its sensitivity ranking.

A search builds a target many times, and several int8 targets are built in one ``zoo convert``.
Exporting and measuring sensitivity are the same work each time, so both are done once per
conversion in ``settings["work_dir"]`` (a folder the build pipeline owns and removes) and reused.
Without a work dir (a converter called on its own) each call exports afresh.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from zoo.errors import ZooError

from .base import Progress, Recipe, SearchSpace

__all__ = ["fp32_export", "copy_export", "sensitivity_nodes", "search_space", "keep_float", "text_feeds",
           "image_feeds"]

SENSITIVITY_TEXTS = 80  # single-text runs over a spread of the calibration texts (short ones included)
# NNCF's SmoothQuant strength for transformers, measured in every pass whichever target asks first, so
# one pass serves all the int8 targets of a conversion (the smoothed errors cost one product each)
COMMON_SMOOTHING = (0.95,)


def fp32_export(checkpoint: Path, settings: dict[str, Any], scratch: Path) -> Path:
    """A folder holding ``model.onnx`` (fp32) plus tokenizer and configs: the shared one if any."""
    from .export import export_onnx

    work = settings.get("work_dir")
    folder = Path(work) / "fp32-export" if work else scratch
    done = folder / ".export.json"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        record_export(folder, export_onnx(checkpoint, folder))
    return folder


def record_export(folder: Path, info: dict[str, Any]) -> None:
    """Write the export's record (``.export.json``), with the files that hold its graphs' weights outside them:
    read from the graphs once here, so the targets built from the export (and every search attempt) skip them
    without parsing a graph again."""
    external = sorted(str(f.relative_to(folder)) for f in external_data_files(folder))
    (Path(folder) / ".export.json").write_text(json.dumps({**info, "external_data": external}))


def copy_export(export: Path, out_dir: Path, *, with_model: bool = True) -> dict[str, Any]:
    """Copy the export's files into ``out_dir`` (the ONNX graph only if ``with_model``); its info.

    The export's own records (``.export.json``, ``.sensitivity.json``) stay behind: an artifact
    holds only what its runtime reads, so its digest depends on nothing else."""
    info = json.loads((export / ".export.json").read_text())
    graph_files = set() if with_model else {export / name for name in info.get("external_data", [])}
    for f in export.rglob("*"):
        if f.is_file() and not f.name.startswith(".") and (with_model or (f.suffix != ".onnx"
                                                                             and f not in graph_files)):
            target = out_dir / f.relative_to(export)
            if target != f:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
    info.pop("external_data", None)  # the export's bookkeeping, not the artifact's provenance
    return info


def external_data_files(folder: Path) -> set[Path]:
    """The files holding the weights of the folder's ONNX graphs outside the graph (a model past protobuf's 2 GB:
    the TorchScript exporter writes one file per tensor, named after it, with no suffix). An artifact that
    rewrites the graph (int8, weight-only, OpenVINO) must not carry the fp32 weights along: at 0.6B parameters
    they added 2.4 GB to each."""
    import onnx

    files: set[Path] = set()
    for graph in Path(folder).rglob("*.onnx"):
        model = onnx.load(str(graph), load_external_data=False)
        for tensor in model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                where = {e.key: e.value for e in tensor.external_data}.get("location")
                if where:
                    files.add((graph.parent / where).resolve())
    return {f for f in Path(folder).rglob("*") if f.resolve() in files}


def text_feeds(folder: Path, input_names: list[str], settings: dict[str, Any], texts) -> list[dict]:
    """``texts`` as graph inputs, one text per feed: real lengths, no padding (how every int8 path
    calibrates, so a short text's ranges are its own)."""
    from zoo.engine.backends.lean import TextEncoder

    from zoo.engine.kinds import RERANKER, detect_kind

    encoder = TextEncoder.from_folder(folder, int(settings["max_seq_length"]), input_names)
    texts = list(texts)
    if detect_kind(Path(folder)) == RERANKER:  # a cross-encoder reads pairs: each text with the next as its document
        pairs = [(texts[i], texts[(i + 1) % len(texts)]) for i in range(len(texts))]
        return [encoder.pad(encoder.encode_pairs([p])) for p in pairs]
    return [encoder.pad(encoder.encode([t])) for t in texts]


def image_feeds(folder: Path, images) -> Iterator[dict]:
    """A vision tower's inputs, one image per feed, preprocessed as ``folder``'s CLIP-family model says."""
    from zoo.engine.images import pixel_values

    pre = json.loads((Path(folder) / "preprocessor_config.json").read_text())
    return ({"pixel_values": pixel_values([im], pre)} for im in images)


def sensitivity_nodes(checkpoint: Path, settings: dict[str, Any], scratch: Path, progress: Progress,
                      smooth_alphas: tuple[float, ...] = ()) -> tuple[list[dict[str, Any]], float]:
    """Every MatMul/Gemm, most sensitive to int8 first (see ``converters.sensitivity``); seconds taken.

    ``smooth_alphas``: also measure each linear product after SmoothQuant at these strengths. The
    measurement is cached in the conversion's work dir and redone (with the union of strengths)
    only when a later target asks for one it lacks.

    A CLIP-family export has two graphs: the text tower is measured on the calibration texts, the
    vision tower on generated calibration images, and their products are ranked together (node
    names carry their tower)."""
    from .sensitivity import measure_sensitivity

    export = fp32_export(checkpoint, settings, scratch)
    cached = export / ".sensitivity.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        if set(smooth_alphas) <= set(data.get("smooth_alphas", [])):
            return data["nodes"], data["seconds"]
        smooth_alphas = tuple(sorted(set(smooth_alphas) | set(data.get("smooth_alphas", []))))
    started = time.perf_counter()
    texts = list(settings.get("calibration") or [])
    if not texts:
        raise ZooError("measuring int8 sensitivity needs calibration texts (settings['calibration'])")
    step = max(1, len(texts) // SENSITIVITY_TEXTS)
    picked = texts[::step][:SENSITIVITY_TEXTS]
    info = json.loads((export / ".export.json").read_text())
    texts_in = text_feeds(export, info["inputs"], settings, picked)
    if info.get("graphs"):
        progress(f"measuring int8 sensitivity of each tower's products on {len(picked)} texts and images", None)
        feeds = {"text_model.onnx": texts_in,
                 "vision_model.onnx": list(image_feeds(export, settings["calibration_images"][:len(picked)]))}
    else:
        progress(f"measuring int8 sensitivity of each matrix product on {len(picked)} texts", None)
        feeds = {"model.onnx": texts_in}
    ranked = sorted((n for graph, f in feeds.items() for n in measure_sensitivity(export / graph, f, smooth_alphas)),
                    key=lambda n: -n.error)
    nodes = [{**n.as_dict(), "flops": n.flops, "weighted": n.weighted} for n in ranked]
    seconds = round(time.perf_counter() - started, 2)
    cached.write_text(json.dumps({"nodes": nodes, "seconds": seconds, "smooth_alphas": list(smooth_alphas)}))
    return nodes, seconds


def search_space(checkpoint: Path, settings: dict[str, Any], scratch: Path, progress: Progress,
                 recipes: list[Recipe]) -> SearchSpace:
    """The recipes given, with every matrix product ranked by sensitivity."""
    alphas = tuple(sorted(set(COMMON_SMOOTHING) | {r.smoothing for r in recipes if r.smoothing is not None}))
    nodes, seconds = sensitivity_nodes(checkpoint, settings, scratch, progress, alphas)
    return SearchSpace(recipes=recipes, nodes=nodes, seconds=seconds)


def keep_float(settings: dict[str, Any]) -> list[str]:
    """The node names this build keeps in float (the search's current candidate); none by default."""
    return list((settings.get("search") or {}).get("keep_float") or [])
