"""The policy watch reads the labels of the nodes a batch of reports came from, one node at
a time, not the whole fleet's node list on every batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from backstop.controller.corrections.policy_starts import PolicyStarts
from backstop.controller.policy_watch import PolicyWatch
from backstop.controller.store.base import NodeRecord, Store
from backstop.core.alerts import AlertSpec
from backstop.core.models import Fingerprint, NodeInfo, Report, Workload
from backstop.core.policies import PolicyState

DOCUMENT = b"name: zone-a\nmatch:\n  labels: {zone: a}\naction: alert\n"


@dataclass
class _Version:
    name: str = "zone-a"
    version: int = 1
    document: bytes = DOCUMENT
    deletes: bool = False


@dataclass
class _Store:
    """Nodes and one policy in force; listing every node fails the test."""

    nodes: dict[str, NodeInfo]
    asked: list[str] = field(default_factory=list)

    def list_policy_versions(self, states: tuple[PolicyState, ...]) -> list[_Version]:
        return [_Version()]

    def get_node(self, node_id: str) -> NodeRecord | None:
        self.asked.append(node_id)
        info = self.nodes.get(node_id)
        return NodeRecord(info, True, 0.0, 1) if info is not None else None

    def list_nodes(self) -> Any:
        raise AssertionError("the whole fleet's nodes were listed for one batch")


def _report(node_id: str, workload_id: str) -> Report:
    workload = Workload(workload_id, node_id, 10, (10,), Fingerprint(exe="/bin/server"))
    return Report(node_id, 1, 0.0, workloads=(workload,))


def test_labels_come_from_the_batch_nodes_only() -> None:
    nodes = {f"n{i}": NodeInfo(f"n{i}", f"n{i}", labels={"zone": "ab"[i % 2]}) for i in range(50)}
    store = _Store(nodes)
    alerts: list[AlertSpec] = []
    watch = PolicyWatch(cast(Store, store), cast(PolicyStarts, None), alerts.append)

    watch.observe([_report("n0", "w0"), _report("n1", "w1"), _report("n2", "w2")])

    assert sorted(store.asked) == ["n0", "n1", "n2"]
    assert sorted(a.workload_id for a in alerts) == ["w0", "w2"]  # zone a: n0 and n2


def test_a_report_without_workloads_reads_no_node() -> None:
    store = _Store({"n0": NodeInfo("n0", "n0", labels={"zone": "a"})})
    watch = PolicyWatch(cast(Store, store), cast(PolicyStarts, None), lambda _: None)
    watch.observe([Report("n0", 1, 0.0)])
    assert store.asked == []
