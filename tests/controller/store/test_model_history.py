"""Model history in the store, on every backend: a sighting per workload holding a model,
first and last seen, written at most once a minute however often reports come."""

from __future__ import annotations

import dataclasses

from backstop.controller.store import Store
from backstop.core.models import Fingerprint, IdentifiedModel, Report, Workload
from tests.controller.conftest import node

LLAMA = IdentifiedModel(
    model_id="a1" * 32,
    structure_id="b2" * 32,
    architecture="LlamaForCausalLM",
    parameters=8_000_000_000,
    formats=("safetensors",),
    size_class="8B",
    valid=True,
)
QWEN = dataclasses.replace(LLAMA, model_id="c3" * 32, architecture="Qwen2ForCausalLM")


def _serving(wid: str, node_id: str, model: IdentifiedModel | None) -> Workload:
    return Workload(wid, node_id, 100, (100,), Fingerprint(model=model))


def test_sightings_keep_first_and_last_seen_per_workload(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    store.upsert_node(node("n2"), 1.0)
    store.record_report(Report("n1", 1, 10.0, (), (_serving("wl-a", "n1", LLAMA),)), 10.0)
    store.record_report(Report("n2", 1, 20.0, (), (_serving("wl-b", "n2", LLAMA),)), 20.0)
    store.record_report(Report("n1", 2, 30.0, (), (_serving("wl-a", "n1", LLAMA),)), 30.0)
    store.record_report(Report("n1", 3, 100.0, (), (_serving("wl-c", "n1", QWEN),)), 100.0)
    store.record_report(Report("n2", 2, 100.0, (), (_serving("wl-b", "n2", LLAMA),)), 100.0)
    seen = store.list_model_sightings("a1a1a1a1a1a1")
    assert [(s.workload_id, s.node_id, s.first_seen_s, s.last_seen_s) for s in seen] == [
        ("wl-a", "n1", 10.0, 10.0),  # its report at 30 s came within the minute: not written
        ("wl-b", "n2", 20.0, 100.0),
    ]
    assert seen[0].model == LLAMA
    assert [s.workload_id for s in store.list_model_sightings()] == ["wl-a", "wl-b", "wl-c"]


def test_workloads_without_an_identified_model_leave_no_sighting(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    unidentified = dataclasses.replace(LLAMA, model_id="", valid=False, invalid_reason="bad")
    workloads = (_serving("wl-a", "n1", None), _serving("wl-b", "n1", unidentified))
    store.record_report(Report("n1", 1, 10.0, (), workloads), 10.0)
    assert store.list_model_sightings() == []


def test_old_sightings_are_pruned(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    store.record_report(Report("n1", 1, 10.0, (), (_serving("wl-a", "n1", LLAMA),)), 10.0)
    store.record_report(Report("n1", 2, 500.0, (), (_serving("wl-c", "n1", QWEN),)), 500.0)
    assert store.prune_model_sightings(100.0) == 1
    assert [s.workload_id for s in store.list_model_sightings()] == ["wl-c"]
