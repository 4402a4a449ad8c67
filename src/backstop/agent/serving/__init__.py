"""Serving telemetry read from the model servers themselves (vLLM, TGI, SGLang, Triton, Ollama).

A workload that listens on a port it owns is asked, at most once per interval, for its
Prometheus metrics (``GET /metrics``) or, for Ollama, its loaded models (``GET /api/ps``).
Every read is bounded: a connect and read timeout, a cap on the bytes read and on the lines
parsed. A tenant's server is untrusted input: what does not parse is skipped, never trusted.
"""
