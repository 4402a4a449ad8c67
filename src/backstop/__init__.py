"""Backstop: compute-level oversight and correction of deployed AI models."""

__version__ = "0.1.0"
