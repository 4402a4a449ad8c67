"""What a model server says about its own work: tokens per second, requests in flight and
waiting, and the model name it serves. The agent reads it from the server's metrics endpoint
(:mod:`backstop.agent.serving`); it is reported per workload beside the fingerprint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServingStats:
    """One workload's serving telemetry over the last interval; ``None`` where its server
    does not say (Triton counts inferences, not tokens; Ollama lists models only)."""

    server: str
    """vllm | tgi | sglang | triton | ollama"""
    port: int
    model_name: str = ""
    generated_tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    inferences_per_s: float | None = None
    sampled_at_s: float = 0.0
