"""NNCF post-training quantization whose calibration statistics are collected once per search.

Why: the quantization search (``zoo.conversion.search``) builds one target many times, and each
``nncf.quantize`` call ran its calibration passes afresh: on MiniLM, 13 s of each 16 s attempt.
NNCF's pipeline runs in steps (SmoothQuant; channel alignment; MinMax with bias correction), each
collecting activation statistics over the calibration set on the model the step before left.
Attempts of one recipe differ only in their ignored scope, and only the last step reads it:
SmoothQuant and channel alignment take none. So, for one recipe, the model entering the last step
and the statistics that step collects are the same for every attempt.

NNCF's own hyperparameter tuner reuses statistics this way (``Pipeline.run_step`` given a
collected ``StatisticPointsContainer``); NNCF has no such option on ``nncf.quantize`` (its
``statistics_path`` is for weight compression only). This module does it across attempts:

- a recipe's first attempt runs the steps before the last once, and collects the last step's
  statistics for its own statistic points;
- every attempt builds its own pipeline (with its ignored scope) and takes each statistic point it
  needs from that collection, matched by target point, algorithm and reducer/aggregator
  configuration. A point not collected yet (a quantizer placed where no earlier setup had one) is
  collected then, and kept for the attempts after it.

The model out of each attempt equals ``nncf.quantize``'s with the same arguments (tested on the
saved IR's bytes). Where the installed NNCF lacks these internals, ``quantize`` falls back to
``nncf.quantize`` itself: slower, never different.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from zoo.errors import require

__all__ = ["quantize"]

log = logging.getLogger(__name__)


def quantize(model, items: list[dict], *, smooth_quant: Optional[float], keep: list[str],
             state: Optional[dict] = None):
    """``model`` quantized by NNCF (transformer preset, calibrated on ``items``, ``keep`` in float).

    ``state``: a dict that lives as long as the search (one per target); statistics collected for
    one attempt are kept there for the next. None: a plain ``nncf.quantize`` call."""
    nncf = require("nncf", "openvino")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    kwargs: dict[str, Any] = dict(
        model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items),
        ignored_scope=nncf.IgnoredScope(names=keep, validate=False) if keep else None,
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1 if smooth_quant is None else smooth_quant)))
    if state is None:
        return nncf.quantize(model, nncf.Dataset(items), **kwargs)
    try:
        internals = _internals()
    except ImportError as exc:  # another NNCF: the public call, with its own passes
        log.info("NNCF internals for reusing statistics not found (%s); calling nncf.quantize", exc)
        return nncf.quantize(model, nncf.Dataset(items), **kwargs)
    return _quantize_reusing(internals, model, nncf.Dataset(items), kwargs,
                             state.setdefault(("nncf", smooth_quant), {}))


def _internals():
    from nncf.common.factory import build_graph
    from nncf.common.tensor_statistics.statistic_point import StatisticPoint, StatisticPointsContainer
    from nncf.openvino.graph.model_utils import remove_friendly_name_duplicates
    from nncf.openvino.graph.node_utils import get_number_if_op
    from nncf.openvino.quantization.backend_parameters import is_weight_compression_needed
    from nncf.openvino.rt_info import dump_parameters
    from nncf.parameters import TargetDevice
    from nncf.quantization.advanced_parameters import convert_to_dict_recursively
    from nncf.quantization.algorithms.pipeline import collect_statistics
    from nncf.quantization.algorithms.post_training.pipeline import create_ptq_pipeline
    from nncf.quantization.quantize_model import _update_advanced_quantization_parameters
    from openvino._offline_transformations import compress_quantize_weights_transformation

    return dict(build_graph=build_graph, StatisticPoint=StatisticPoint, Container=StatisticPointsContainer,
                remove_duplicates=remove_friendly_name_duplicates, if_ops=get_number_if_op,
                compress_needed=is_weight_compression_needed, dump_parameters=dump_parameters,
                target_device=TargetDevice.ANY, as_dict=convert_to_dict_recursively,
                collect_statistics=collect_statistics, create_ptq_pipeline=create_ptq_pipeline,
                update_parameters=_update_advanced_quantization_parameters,
                compress_weights=compress_quantize_weights_transformation)


def _signature(algorithm_key: str, collector) -> tuple:
    """What a tensor collector computes: its algorithm's kind (``MMQ``, ``FBC``, ...; the key's
    suffix names one instance) and its statistic branches, keyed by their reducers' and
    aggregators' configuration hashes."""
    return (algorithm_key.split("_", 1)[0], getattr(collector, "_stat_container", None),
            tuple(sorted(collector._stat_container_kwargs_map.items())))


def _collectors(container):
    """Each (target point, algorithm key, tensor collector) of a ``StatisticPointsContainer``."""
    for points in container.values():
        for point in points:
            for key, collectors in point.algorithm_to_tensor_collectors.items():
                for c in collectors:
                    yield point.target_point, key, c


def _quantize_reusing(nn: dict, model, dataset, kwargs: dict, cache: dict):
    """``native_quantize_impl`` of NNCF's OpenVINO backend, step by step, reusing ``cache``."""
    kwargs = {**kwargs, "advanced_parameters": nn["update_parameters"](kwargs["advanced_parameters"], dataset)}
    model = nn["remove_duplicates"](model)
    if nn["if_ops"](model) > 0:  # If-bodies quantize through NNCF's own path
        import nncf

        return nncf.quantize(model, dataset, **kwargs)
    pipeline = nn["create_ptq_pipeline"](mode=None, preset=None, target_device=nn["target_device"],
                                         fast_bias_correction=True, **kwargs)
    last = len(pipeline.pipeline_steps) - 1
    if "model" not in cache:  # the steps before the last take no ignored scope: run them once
        stepped, graph = model, None
        for step in range(last):
            graph = nn["build_graph"](stepped)
            points = pipeline.get_statistic_points_for_step(step, stepped, graph)
            stats = nn["collect_statistics"](points, stepped, graph, dataset)
            stepped = pipeline.run_step(step, stats, stepped, graph)
        cache["model"], cache["collected"] = stepped, {}
    stepped = cache["model"].clone()
    graph = nn["build_graph"](stepped)
    wanted = pipeline.get_statistic_points_for_step(last, stepped, graph)
    collected: dict = cache["collected"]  # (target point, signature) -> a filled tensor collector
    missing = nn["Container"]()
    for point, key, c in _collectors(wanted):
        if (point, _signature(key, c)) not in collected:
            missing.add_statistic_point(nn["StatisticPoint"](point, c, key))
    if missing:
        nn["collect_statistics"](missing, stepped, graph, dataset)
        collected.update({(point, _signature(key, c)): c for point, key, c in _collectors(missing)})
    reused = nn["Container"]()
    for point, key, c in _collectors(wanted):
        reused.add_statistic_point(nn["StatisticPoint"](point, collected[(point, _signature(key, c))], key))
    quantized = pipeline.run_step(last, reused, stepped, graph)
    if nn["compress_needed"](kwargs["advanced_parameters"]):
        nn["compress_weights"](quantized)
    nn["dump_parameters"](quantized, {
        "preset": None, "target_device": nn["target_device"].value, "subset_size": kwargs["subset_size"],
        "fast_bias_correction": True, "model_type": kwargs["model_type"], "ignored_scope": kwargs["ignored_scope"],
        "advanced_parameters": nn["as_dict"](kwargs["advanced_parameters"])})
    return quantized
