"""Core values every layer shares, at the bottom of the layers: the hardware profile and its
fingerprint, the fidelity floor, library provenance, and reading texts from files.

Imports nothing of zoo but ``zoo.errors``; everything else may import it.
"""
