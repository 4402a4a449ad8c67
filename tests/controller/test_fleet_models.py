"""The fleet view worked out from workloads and history: copies, nodes, GPUs, tokens/s."""

from __future__ import annotations

import dataclasses

from backstop.controller.fleet_models import history, summarize
from backstop.core.fleet import ModelSighting
from backstop.core.models import Fingerprint, GpuUse, IdentifiedModel, Workload
from backstop.core.serving import ServingStats

LLAMA = IdentifiedModel(model_id="a1" * 32, architecture="LlamaForCausalLM", valid=True)
QWEN = IdentifiedModel(model_id="c3" * 32, architecture="Qwen2ForCausalLM", valid=True)


def _copy(
    wid: str, node_id: str, model: IdentifiedModel | None, gpu: str = "", tok: float | None = None
) -> Workload:
    gpus = (GpuUse(gpu, 2**30),) if gpu else ()
    serving = ServingStats("vllm", 8000, "llama-8b", generated_tokens_per_s=tok) if tok else None
    return Workload(wid, node_id, 1, (1,), Fingerprint(model=model, gpus=gpus), serving=serving)


def test_copies_nodes_gpus_and_tokens_are_summed_per_model() -> None:
    workloads = [
        _copy("w1", "n1", LLAMA, "GPU-1", 100.0),
        _copy("w2", "n1", LLAMA, "GPU-2", 50.5),
        _copy("w3", "n2", LLAMA, "GPU-3"),  # its server does not report tokens
        _copy("w4", "n2", QWEN, "GPU-4"),
        _copy("w5", "n2", None),
        _copy("w6", "n2", dataclasses.replace(LLAMA, model_id="", valid=False)),
    ]
    sightings = [
        ModelSighting(LLAMA, "w0", "n9", 5.0, 20.0),
        ModelSighting(LLAMA, "w1", "n1", 10.0, 90.0),
    ]
    llama, qwen = summarize(workloads, sightings)
    assert llama.model == LLAMA
    assert (llama.copies, llama.node_ids) == (3, ("n1", "n2"))
    assert llama.gpu_uuids == ("GPU-1", "GPU-2", "GPU-3")
    assert llama.gpu_memory_bytes == 3 * 2**30
    assert llama.tokens_per_second == 150.5
    assert llama.served_names == ("llama-8b",)
    assert (llama.first_seen_s, llama.last_seen_s) == (5.0, 90.0)
    assert (qwen.copies, qwen.tokens_per_second) == (1, None)  # unknown, not zero


def test_a_model_no_longer_running_keeps_its_row_with_no_copies() -> None:
    (gone,) = summarize([], [ModelSighting(QWEN, "w9", "n1", 1.0, 2.0)])
    assert (gone.copies, gone.node_ids, gone.last_seen_s) == (0, (), 2.0)


def test_history_marks_the_sightings_still_running() -> None:
    sightings = [ModelSighting(LLAMA, "w1", "n1", 1.0, 2.0), ModelSighting(LLAMA, "w0", "n1", 0, 1)]
    marked = history([_copy("w1", "n1", LLAMA)], sightings)
    assert [(s.workload_id, s.running) for s in marked] == [("w1", True), ("w0", False)]
