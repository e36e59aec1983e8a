"""``zoo convert``: build targets from a revision's checkpoint, gate them, record them.

For each target, under a per-(revision, target) file lock:

1. a ready artifact is kept as is (a no-op) unless ``rebuild``;
2. the row is set to ``building`` (never served) and committed;
3. the converter writes the target into a fresh staging directory under the store; a
   quantizing converter's candidates are searched first (``zoo.conversion.search``), each built and
   judged on the validation set, and the fastest that holds the floor goes on;
4. the artifact is loaded by its real runtime and embeds the probe set, which is
   compared with the reference (``torch-fp32``); the figures go into ``fidelity``;
5. below the floor: ``rejected`` with its figures and the reason; otherwise the
   files move into the store and the row becomes ``ready`` in one step under the
   store's writer lock (so gc cannot interleave).

A process killed anywhere leaves at most a ``building`` row and staging files;
the next run (holding the lock, so it knows nobody else is building) rebuilds,
and ``zoo gc`` clears the staging. Impossible requests (unknown target, CUDA on a
CPU machine, an ISA the CPU lacks, an unsupported architecture) are refused
before anything is written.
"""

from __future__ import annotations

import errno
import itertools
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import InvalidInput, ZooError, disk_full
from ..core.floor import Floor, floor_for
from .fidelity import embed_probe, measure
from .ranges import calibrate

__all__ = ["convert", "Outcome", "read_calibration"]

log = logging.getLogger("zoo.convert")

Progress = Callable[[str, Optional[float]], None]


@dataclass
class Outcome:
    target: str
    status: str  # ready | rejected | failed | exists
    artifact_id: Optional[int] = None
    fidelity: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    seconds: float = 0.0
    size_bytes: Optional[int] = None
    provenance: dict[str, Any] = field(default_factory=dict)


def read_calibration(path: Optional[str]) -> tuple[list[str], str]:
    """Calibration texts from a file (one per line, or .jsonl) or the bundled corpus; and their source."""
    from .corpora import calibration_texts
    from ..core.textfiles import read_texts

    if path is None:
        return list(calibration_texts()), "bundled"
    texts = read_texts(path, "--calibration", keep_blank=False)
    if len(texts) < 10:
        raise InvalidInput(f"--calibration {path} has {len(texts)} texts; give at least 10 (a few hundred is best)")
    return texts, str(Path(path).resolve())


def plan(registry, name: str, targets: Sequence[str], hardware=None):
    """Resolve and validate a conversion request without writing anything."""
    from converters import converter_for, expand_targets

    from ..core.hardware import detect

    hw = hardware or detect()
    resolved = registry.resolve(name)
    reference = next((a for a in resolved.revision.artifacts if a.target == "torch-fp32"), None)
    if reference is None or reference.status.value != "ready":
        raise InvalidInput(f"model {name!r} has no ready torch-fp32 checkpoint; re-register it with --force")
    checkpoint = registry.artifact_path(reference)
    if not targets:
        raise InvalidInput("no target given; use --to TARGET (see `zoo convert --list`), --to all-cpu or --to all-cuda")
    names = [n for n in expand_targets(targets, hw, checkpoint) if n != "torch-fp32"]
    steps = []
    for n in names:
        try:
            target, conv = converter_for(n)
        except KeyError as exc:
            raise InvalidInput(str(exc.args[0])) from None
        why = conv.unavailable_reason(target, hw, checkpoint)
        if why:
            raise InvalidInput(f"cannot build {n} for {name}: {why}")
        steps.append((target, conv))
    return resolved, checkpoint, steps, hw


def convert(registry, name: str, targets: Sequence[str], *, rebuild: bool = False,
            floor: Optional[dict[str, float]] = None, calibration: Optional[str] = None,
            hardware=None, progress: Optional[Progress] = None,
            search_budget: Optional[dict[str, float]] = None,
            imports: Optional[dict[str, Path]] = None,
            done: Optional[Callable[[Outcome], None]] = None) -> list[Outcome]:
    """``search_budget``: {"attempts", "seconds"} per searched target (``zoo.conversion.search``).
    ``imports``: target name -> a graph built elsewhere, brought in and gated instead of built
    (``zoo import``). ``done`` is called with each target's outcome as soon as it has one."""
    resolved, checkpoint, steps, hw = plan(registry, name, targets, hardware)
    if imports:
        from converters.imported import ImportedConverter

        steps = [(t, ImportedConverter(imports[t.name]) if t.name in imports else c) for t, c in steps]
    progress = progress or (lambda step, frac: None)
    model = resolved.model
    gate = floor_for(model.kind, {**(model.fidelity_floor or {}), **(floor or {})})
    calib_texts, calib_source = read_calibration(calibration) if any(
        t.precision == "int8" for t, _ in steps) else ([], None)
    reference: dict[str, Any] = {}  # the reference's embeddings of each text set, computed once, on first need
    # one fp32 export and one sensitivity ranking for every target of this call
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="convert-", dir=registry.store.tmp) as work:
        for target, conv in steps:
            o = _build_one(registry, resolved, checkpoint, target, conv, gate, rebuild, calib_texts, calib_source,
                           reference, progress, hw, Path(work), search_budget)
            figures = o.fidelity or {}
            log.log(logging.INFO if o.status in ("ready", "exists") else logging.WARNING,
                    "convert %s -> %s: %s in %.1f s%s%s", name, o.target, o.status, o.seconds,
                    f", mean cosine {figures['mean_cosine']:.5f}" if "mean_cosine" in figures else "",
                    f" ({o.error})" if o.error else "")
            outcomes.append(o)
            if done is not None:
                done(o)
    return outcomes


def _reference_backend(checkpoint: Path, spec, cache: dict):
    """The reference runtime (torch-fp32 on the CPU), loaded once for every set this call reads with it."""
    if "backend" not in cache:
        from ..engine.backends import load_backend

        cache["backend"] = load_backend("torch", checkpoint, spec, device="cpu")
    return cache["backend"]


def _reference_embeddings(checkpoint: Path, spec, cache: dict, progress: Progress, which: str = "probe"):
    """The reference's embeddings of the probe set (the gate) or the validation set (the search); a reranker's:
    its scores of the generated query/document sets (``rerank_fidelity``)."""
    if which in cache:
        return cache[which]
    backend = _reference_backend(checkpoint, spec, cache)
    if spec.kind == "reranker":
        from .rerank_fidelity import pair_set, score_pairs

        pairs = pair_set(which, long_document_words=spec.max_seq_length + 64)
        progress(f"scoring the {which} pairs ({len(pairs)}) with the reference (torch-fp32)", None)
        cache[which] = (pairs, score_pairs(backend, pairs))
        return cache[which]
    from .corpora import probe_set, validation_set, with_long_texts

    # the model's whole length range: texts up to its max length join the set, and every text's token count
    # gives the per-band figures
    texts = with_long_texts(probe_set() if which == "probe" else validation_set(), backend.encoder.full_length,
                            spec.max_seq_length)
    progress(f"embedding the {which} set ({len(texts.texts)} texts) with the reference (torch-fp32)", None)
    cache[which] = (texts, embed_probe(prompted_embedder(backend, spec), texts, prompts_of(spec)))
    return cache[which]


def prompts_of(spec) -> tuple[str, str]:
    return spec.query_prompt or "", spec.document_prompt or ""


def prompted_embedder(backend, spec):
    """``embed(texts, prompt="")`` with a runtime as the engine serves it: the prompt before each text, and
    left out of the pooling where the model's Pooling module says so (``include_prompt: false``)."""
    from ..engine.backends.lean import Prepared

    def embed(texts, prompt: str = ""):
        if not prompt:
            return backend.embed(list(texts), 32)
        return backend.embed_prepared(Prepared.prompted(backend.encoder, list(texts), prompt, spec), 32)

    return embed


def _reference_images(checkpoint: Path, spec, cache: dict, progress: Progress, which: str = "probe"):
    """A multimodal model's probe images (the gate) or validation images (the search), and the
    reference's vectors of them; None for a text model."""
    if "image" not in spec.modalities:
        return None
    key = f"{which}-images"
    if key not in cache:
        from .corpora import VALIDATION_IMAGE_SEED, image_probe_set

        images = image_probe_set() if which == "probe" else image_probe_set(seed=VALIDATION_IMAGE_SEED)
        progress(f"embedding {len(images)} {which} images with the reference (torch-fp32)", None)
        cache[key] = (images, _reference_backend(checkpoint, spec, cache).embed_images(images, 16, normalize=False))
    return cache[key]


def _judge(target, out_dir: Path, result, spec, texts, reference, hardware, images=None, keep: bool = False,
           alone: bool = True):
    """Load what was built with its real runtime, embed ``texts`` (and ``images``: the probe images
    and their reference vectors, for a multimodal model), and compare with ``reference``. ``keep``:
    also return the loaded runtime and its vectors of ``texts`` (the gate calibrates with them). ``alone``: for a
    runtime whose vectors depend on the batch, also read each text alone (the gate does; the search's attempts,
    judged on the validation set with a safety margin, do not: one pass per attempt would cost ~3 s on MiniLM)."""
    from ..engine.backends import load_backend

    # judged where it will serve: a CUDA target on the GPU when there is one (torch-fp16 also runs on a CPU)
    device = "cuda" if target.device == "cuda" and hardware.cuda else "cpu"
    backend = load_backend(target.format, out_dir, spec, device=device, precision=target.precision,
                           settings=result.settings)
    if spec.kind == "reranker":  # scores of query/document pairs, judged query by query
        from .rerank_fidelity import measure_scores, score_pairs, worse_of

        scores = score_pairs(backend, texts)
        figures = measure_scores(texts, reference, scores)
        if alone and target.batch_dependent:  # each pair also scored in a batch of its own: the worse is judged
            figures = worse_of(figures, measure_scores(texts, reference, score_pairs(backend, texts, batch_size=1)))
        figures["runtime_precision"] = result.runtime_precision
        return (figures, backend, None) if keep else figures
    embedded = embed_probe(prompted_embedder(backend, spec), texts, prompts_of(spec))
    singles = None
    if alone and target.batch_dependent:  # each text also in a batch of its own: the worse reading is judged
        import numpy as np

        singles = np.concatenate([backend.embed([t], 1) for t in texts.texts])
    figures = measure(reference, embedded, texts.relevant, texts.lengths, alone=singles)
    if images is not None:
        if not hasattr(backend, "embed_images"):
            raise ZooError(f"{target.name} embeds text only; a multimodal model's artifact must embed its images too")
        from .fidelity import unit_rows

        pictures, ref = images  # cosines in float64, whatever precision the runtime normalises in
        cos = (unit_rows(backend.embed_images(pictures, 16, normalize=False)) * unit_rows(ref)).sum(axis=1)
        figures.update(probe_images=len(pictures), image_mean_cosine=float(cos.mean()),
                       image_min_cosine=float(cos.min()))
    figures["runtime_precision"] = result.runtime_precision
    return (figures, backend, embedded) if keep else figures


def _build_searched(conv, target, checkpoint, staging: Path, settings: dict, spec, gate: Floor, reference_cache,
                    progress: Progress, hardware, budget):
    """Build ``target``, searching its candidates when the converter offers any.

    Returns (out_dir, result, the search's provenance record or None)."""
    space = conv.search_space(target, checkpoint, settings, progress)
    if space is None:
        out_dir = staging / "out"
        out_dir.mkdir()
        return out_dir, conv.build(target, checkpoint, out_dir, settings, progress), None
    from .search import run_search

    texts, reference = _reference_embeddings(checkpoint, spec, reference_cache, progress, "validation")
    images = _reference_images(checkpoint, spec, reference_cache, progress, "validation")
    counter = itertools.count()

    def try_config(config):
        out_dir = staging / f"candidate-{next(counter)}"
        out_dir.mkdir()
        result = conv.build(target, checkpoint, out_dir, {**settings, "search": config}, progress)
        return _judge(target, out_dir, result, spec, texts, reference, hardware, images, alone=False), (out_dir, result)

    outcome = run_search(space, try_config, gate, budget, discard=lambda r: shutil.rmtree(r[0], ignore_errors=True),
                         progress=progress)
    out_dir, result = outcome.chosen.result
    return out_dir, result, outcome.record(space.seconds, space.nodes)


def _build_one(registry, resolved, checkpoint, target, conv, gate: Floor, rebuild: bool, calib_texts,
               calib_source, reference_cache, progress: Progress, hardware, work_dir: Path,
               search_budget) -> Outcome:
    from filelock import FileLock
    from sqlalchemy import select

    from .corpora import corpus_digest
    from ..engine.model_config import spec_of
    from ..core.provenance import library_versions
    from ..registry.schema import Artifact, ArtifactStatus

    rev, spec = resolved.revision, spec_of(resolved.model)
    lock = FileLock(str(registry.home.locks_dir / f"build-{rev.id}-{target.name}.lock"))
    with lock:
        with registry.session() as s:
            art = s.scalar(select(Artifact).where(Artifact.revision_id == rev.id, Artifact.target == target.name))
            if art is not None and art.status == ArtifactStatus.ready and not rebuild:
                return Outcome(target.name, "exists", art.id, art.fidelity, size_bytes=art.size_bytes)
            if art is None:
                art = Artifact(revision_id=rev.id, target=target.name, format=target.format,
                               precision=target.precision, variant=target.variant, provenance={})
                s.add(art)
            # we hold the lock: any row still "building" is a leftover of a killed build
            art.status, art.error, art.fidelity, art.store_digest, art.size_bytes = (
                ArtifactStatus.building, None, None, None, None)
            s.flush()
            artifact_id = art.id

        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f"build-{target.name}-", dir=registry.store.tmp))
        # calibration_state: what a converter keeps across this target's search attempts (its calibration
        # statistics, ``converters.calibration``); dropped with the target
        settings: dict[str, Any] = {"max_seq_length": spec.max_seq_length, "work_dir": str(work_dir),
                                    "scratch": str(staging), "calibration_state": {}}
        if calib_texts and target.precision == "int8":
            settings["calibration"] = calib_texts
            if "image" in spec.modalities:  # a vision tower calibrates on generated images, not the gate's
                from .corpora import CALIBRATION_IMAGE_SEED, image_probe_set

                settings["calibration_images"] = image_probe_set(96, CALIBRATION_IMAGE_SEED)
        try:
            out_dir, result, search = _build_searched(conv, target, checkpoint, staging, settings, spec, gate,
                                                      reference_cache, progress, hardware, search_budget)
            probe, ref = _reference_embeddings(checkpoint, spec, reference_cache, progress)
            images = _reference_images(checkpoint, spec, reference_cache, progress)
            progress(f"{target.name}: checking fidelity on {len(probe)} probe pairs" if spec.kind == "reranker" else
                     f"{target.name}: checking fidelity on {len(probe.texts)} probe texts"
                     + (f" and {len(images[0])} probe images" if images else ""), None)
            figures, runtime, embedded = _judge(target, out_dir, result, spec, probe, ref, hardware, images, keep=True)
            figures["floor"] = gate.as_dict()
            reason = gate.check(figures)
            ranges = None
            if reason is None and spec.kind == "embedding":  # the int8/uint8 ranges and each compact precision's cost, on the artifact's own vectors
                progress(f"{target.name}: calibrating compact precisions", None)
                ranges = calibrate(lambda xs: runtime.embed(list(xs), 32, normalize=False), spec,
                                   texts=calib_texts or None, source=calib_source,
                                   probe_vectors=(embedded.queries, embedded.passages, embedded.texts))
            del runtime
            seconds = time.perf_counter() - started
            provenance = {
                "converter": conv.name, "converter_version": conv.version, "target": target.name,
                "source_revision": rev.resolved_id, "reference_digest": next(
                    a.store_digest for a in rev.artifacts if a.target == "torch-fp32"),
                "settings": {k: v for k, v in result.settings.items()},
                **({"search": search} if search else {}),
                "runtime_precision": result.runtime_precision, "libraries": library_versions(),
                "build_seconds": round(seconds, 2), "notes": result.notes,
            }
            if "calibration" in settings:
                provenance["calibration"] = {"source": calib_source, "texts": len(calib_texts),
                                             "digest": corpus_digest(calib_texts)}
            if reason is not None:
                _finish(registry, artifact_id, ArtifactStatus.rejected, provenance, figures,
                        error=f"below the fidelity floor: {reason}")
                return Outcome(target.name, "rejected", artifact_id, figures, f"below the fidelity floor: {reason}",
                               seconds, provenance=provenance)
            with registry.store.writing():
                digest = registry.store.add_tree(out_dir, result.files, move=True)
                size = sum(e.size for e in registry.store.manifest(digest))
                _finish(registry, artifact_id, ArtifactStatus.ready, provenance, figures, digest=digest, size=size,
                        ranges=ranges)
            return Outcome(target.name, "ready", artifact_id, figures, None, seconds, size, provenance)
        except Exception as exc:
            message = _one_line(exc)
            # staging first: on a full disk it is what the build filled, and recording the failure needs room;
            # on a full disk the shared work files go too (later targets export again)
            shutil.rmtree(staging, ignore_errors=True)
            if disk_full(exc):
                message = message if "disk is full" in message else f"{message} (the disk is full)"
                for leftover in Path(work_dir).iterdir():
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            try:
                _finish(registry, artifact_id, ArtifactStatus.failed, {"converter": conv.name}, None, error=message)
            except ZooError as unrecorded:
                raise ZooError(f"{target.name}: failed ({message}), and the failure could not be recorded "
                               f"({unrecorded}); the next convert rebuilds it") from None
            return Outcome(target.name, "failed", artifact_id, None, message, time.perf_counter() - started)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _one_line(exc: Exception) -> str:
    """A build failure in one line without the machine's paths (an OSError names the file it hit)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}" + (" (the disk is full)" if exc.errno == errno.ENOSPC else "")
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return message if isinstance(exc, ZooError) else f"{type(exc).__name__}: {message}"


def _finish(registry, artifact_id: int, status, provenance, fidelity, *, error=None, digest=None, size=None,
            ranges=None):
    from ..registry.schema import Artifact

    with registry.session() as s:
        art = s.get(Artifact, artifact_id)
        art.status, art.provenance, art.fidelity, art.error = status, provenance, fidelity, error
        art.precision_ranges = ranges
        art.store_digest, art.size_bytes = digest, size
