"""The model servers Backstop knows by their metric names, and what one scrape says.

Each server's counters and gauges are summed over their label sets (a server may report per
engine or per model); the served model's name comes from the label each server puts it in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from backstop.agent.serving.exposition import Sample, parse_samples


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """Which metric names a server uses for each quantity ("" where it has none)."""

    server: str
    generated_tokens: str = ""
    prompt_tokens: str = ""
    running: str = ""
    waiting: str = ""
    inferences: str = ""
    model_label: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        fields = (self.generated_tokens, self.prompt_tokens, self.running, self.waiting)
        return tuple(name for name in (*fields, self.inferences) if name)


KNOWN_SERVERS = (
    ServerMetrics(
        "vllm",
        generated_tokens="vllm:generation_tokens_total",
        prompt_tokens="vllm:prompt_tokens_total",
        running="vllm:num_requests_running",
        waiting="vllm:num_requests_waiting",
        model_label="model_name",
    ),
    ServerMetrics(
        "sglang",
        generated_tokens="sglang:generation_tokens_total",
        prompt_tokens="sglang:prompt_tokens_total",
        running="sglang:num_running_reqs",
        waiting="sglang:num_queue_reqs",
        model_label="model_name",
    ),
    ServerMetrics(
        "tgi",  # token counts are the sums of its per-request histograms
        generated_tokens="tgi_request_generated_tokens_sum",
        prompt_tokens="tgi_request_input_length_sum",
        running="tgi_batch_current_size",
        waiting="tgi_queue_size",
    ),
    ServerMetrics(
        "triton",
        waiting="nv_inference_pending_request_count",
        inferences="nv_inference_count",
        model_label="model",
    ),
)
ALL_NAMES = frozenset(name for server in KNOWN_SERVERS for name in server.names)


@dataclass(frozen=True, slots=True)
class Scrape:
    """One reading of a server: counters (running totals) and gauges (now)."""

    server: str
    model_name: str = ""
    generated_tokens_total: float | None = None
    prompt_tokens_total: float | None = None
    running: float | None = None
    waiting: float | None = None
    inferences_total: float | None = None


def read_metrics(text: str) -> Scrape | None:
    """The first known server whose metrics ``text`` carries; ``None`` when it is none."""
    samples = parse_samples(text, ALL_NAMES)
    for metrics in KNOWN_SERVERS:
        if any(name in samples for name in metrics.names):
            return _scrape(metrics, samples)
    return None


def read_ollama_ps(text: str) -> Scrape | None:
    """Ollama's ``/api/ps`` answer: the models it has loaded (``None`` if it is not one)."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    models = answer.get("models") if isinstance(answer, dict) else None
    if not isinstance(models, list):
        return None
    names = sorted({str(m.get("name", "")) for m in models if isinstance(m, dict)} - {""})
    return Scrape("ollama", model_name=",".join(names))


def _scrape(metrics: ServerMetrics, samples: dict[str, list[Sample]]) -> Scrape:
    def total(name: str) -> float | None:
        found = samples.get(name) if name else None
        return sum(s.value for s in found) if found else None

    models: set[str] = set()
    if metrics.model_label:
        for found in samples.values():
            models.update(s.labels.get(metrics.model_label, "") for s in found)
    return Scrape(
        metrics.server,
        model_name=",".join(sorted(models - {""})),
        generated_tokens_total=total(metrics.generated_tokens),
        prompt_tokens_total=total(metrics.prompt_tokens),
        running=total(metrics.running),
        waiting=total(metrics.waiting),
        inferences_total=total(metrics.inferences),
    )
