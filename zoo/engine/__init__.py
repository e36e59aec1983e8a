"""The engine layer: turns texts into vectors with one artifact. The model object users hold
(``model``), the runtimes behind one interface (``backends``), cost-based batch planning
(``batching``), what a checkpoint folder says about pooling and limits (``model_config``),
similarity helpers, and the persistent vector cache (``cache``).

May import the store and core layers; never the registry, build, selection or service.
A new runtime goes in ``backends/``, a new cache backend in ``cache/``.
"""
