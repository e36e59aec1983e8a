"""Converters: one module per target format, one shared interface (``converters.base``).

The ``torch-fp32`` target is the registered checkpoint itself; it is stored at
registration and is the reference every other target is checked against.
"""

from .base import BuildResult, Converter, Target

__all__ = ["BuildResult", "Converter", "Target", "CHECKPOINT"]

CHECKPOINT = Target(name="torch-fp32", format="torch", precision="fp32", device="any",
                    extras=("torch",), description="the registered checkpoint, as fetched")
