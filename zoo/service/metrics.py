"""Prometheus metrics of one service instance (its own registry, so apps in one process never collide)."""

from __future__ import annotations

from ..errors import require

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self):
        prom = require("prometheus_client", "serve")
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("zoo_requests_total", "HTTP requests by endpoint and status code",
                                     ["endpoint", "status"], registry=r)
        self.latency = prom.Histogram("zoo_request_seconds", "Request latency by endpoint", ["endpoint"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = prom.Counter("zoo_inputs_total", "Texts embedded (requested) by model", ["model"], registry=r)
        self.tokens = prom.Counter("zoo_tokens_total", "Tokens of embedded texts by model", ["model"], registry=r)
        self.batch_size = prom.Histogram("zoo_batch_size", "Rows per dynamic batch", ["model"],
                                         buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = prom.Histogram("zoo_batch_seconds", "Engine time per dynamic batch", ["model"],
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = prom.Gauge("zoo_queue_depth", "Texts waiting or in flight, by model", ["model"], registry=r)
        self.cache_hits = prom.Counter("zoo_cache_hits_total", "Vectors served from the cache", ["model"], registry=r)
        self.cache_misses = prom.Counter("zoo_cache_misses_total", "Vectors computed", ["model"], registry=r)
        self.rejected = prom.Counter("zoo_rejected_total", "Requests refused because the queue was full",
                                     ["model"], registry=r)
        # the process (RSS, CPU seconds, open files, start time: process_*, from /proc) and the
        # platform (python_info), as prometheus_client's default registry has them; and the build
        prom.ProcessCollector(registry=r)
        prom.PlatformCollector(registry=r)
        prom.Info("zoo_build", "The zoo release serving, and its runtimes' versions", registry=r).info(_build_info())

    def render(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST


def _build_info() -> dict[str, str]:
    """zoo's version and the installed runtimes' versions (read from package metadata: no import)."""
    from importlib import metadata

    import zoo

    info = {"version": zoo.__version__}
    for package in ("onnxruntime", "onnxruntime-gpu", "openvino", "torch", "sentence-transformers",
                    "llama-cpp-python"):
        try:
            info[package.replace("-", "_")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return info
