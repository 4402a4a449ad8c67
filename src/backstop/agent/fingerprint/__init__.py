"""Workload fingerprints: weights hashes, framework, redacted command line, behaviour."""
