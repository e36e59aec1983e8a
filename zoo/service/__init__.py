"""The service layer: ``zoo serve``, an OpenAI-compatible HTTP API. ``server`` holds the routes,
``batcher`` coalesces concurrent requests into engine calls, ``jobs`` runs conversions in a worker
process, ``metrics`` exports Prometheus figures, ``deploy`` applies YAML deployments.

The top of the stack below the CLI: may import every layer, and nothing imports it but
``zoo.cli``. A new endpoint goes in ``server``.
"""
