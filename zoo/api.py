"""zoo's Python API: ``load`` a model by name, or ``choose`` its artifact without loading it.

The work is the selection layer's (``zoo.selection.loader``); this module is the stable
public name for it, as ``zoo.load`` is.
"""

from __future__ import annotations

from .selection.loader import choose, load

__all__ = ["load", "choose"]
