"""Bundled text data (sentences for the probe, calibration and benchmark sets); no code."""
