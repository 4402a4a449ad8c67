"""The approval and delivery backlog the controller exports, counted by each store."""

from __future__ import annotations

from backstop.controller.store import Store
from backstop.core.models import CorrectionState, TargetState
from tests.controller.conftest import node, spec


def test_backlog_counts_proposed_corrections_and_unreachable_targets_of_open_ones(
    store: Store,
) -> None:
    for n in ("n1", "n2"):
        store.upsert_node(node(n), 1.0)
    waiting, dispatched, done = spec("cor-wait"), spec("cor-out"), spec("cor-done")
    store.create_correction(waiting, CorrectionState.PROPOSED, 1.0)
    store.create_correction(dispatched, CorrectionState.DISPATCHED, 1.0)
    store.create_correction(done, CorrectionState.DISPATCHED, 1.0)
    store.add_target("cor-out", "n1", TargetState.UNREACHABLE, 2.0)
    store.add_target("cor-out", "n2", TargetState.APPLIED, 2.0)
    store.add_target("cor-done", "n1", TargetState.UNREACHABLE, 2.0)
    store.set_correction_state("cor-done", CorrectionState.EXPIRED, "expired", 3.0, completed=True)
    assert store.correction_backlog() == (1, 1)  # an expired correction's target is not counted
