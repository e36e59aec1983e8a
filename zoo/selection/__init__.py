"""The selection layer: which artifact serves on this machine, by measurement. ``select`` decides
from figures, ``benchmark`` measures them (``zoo bench``), ``figures`` reads them, ``optimize``
builds and measures every candidate, and ``loader`` resolves a name to a ready model
(``zoo.load``).

May import the build, registry, engine, store and core layers.
"""
