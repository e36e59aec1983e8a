"""The build layer: converts a registered checkpoint into artifacts and gates each one.
``pipeline`` runs converters (the top-level ``converters`` package, one module per format) and
records the outcome; ``fidelity`` measures an artifact against its reference; ``corpora`` holds
the bundled probe, calibration and benchmark texts.

May import the registry, engine, store and core layers. A new converter goes in ``converters/``.
"""
