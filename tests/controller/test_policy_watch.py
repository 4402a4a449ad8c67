"""Policy evaluation at the controller, on every backend: a match raises one alert per policy
and workload and starts one correction, issued by the policy and carrying it to the agent;
an unchanged workload is not judged again; past its limit a policy's correction is held."""

from __future__ import annotations

import dataclasses

from backstop.controller.authz import Caller
from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.policy_book import PolicyBook
from backstop.controller.policy_watch import PolicyWatch
from backstop.controller.store import Store
from backstop.core.alerts import AlertSpec
from backstop.core.models import (
    CorrectionState,
    Fingerprint,
    IdentifiedModel,
    Report,
    Scope,
    Workload,
)
from backstop.security.identities import Role
from tests.controller.conftest import Clock, RecordingLink

MODEL = IdentifiedModel(model_id="ab" * 32, architecture="LlamaForCausalLM", valid=True)
ADMIN = Caller("ann", Role.ADMIN, authenticated=False)


def _policy(action: str, limit: int = 10) -> bytes:
    return (
        f"name: watch-{action}\nmatch:\n  model_id: abababababababab\naction: {action}\n"
        f"max_targets_per_hour: {limit}\n"
    ).encode()


def _workload(wid: str, node_id: str = "n1", model: IdentifiedModel | None = MODEL) -> Workload:
    return Workload(wid, node_id, 100, (100,), Fingerprint(model=model))


class Watched:
    def __init__(self, store: Store, engine: CorrectionsEngine, clock: Clock) -> None:
        self.alerts: list[AlertSpec] = []
        self.judged = 0
        self.watch = PolicyWatch(store, engine.policy_starts, self._raise, clock=clock)
        self.book = PolicyBook(
            store, engine.authz, engine.records.audit, clock, on_change=self.watch.changed
        )
        self.sequence = 0
        self.clock = clock

    def _raise(self, spec: AlertSpec) -> None:
        self.alerts.append(spec)

    def report(self, *workloads: Workload, node_id: str = "n1") -> None:
        self.sequence += 1
        self.watch.observe([Report(node_id, self.sequence, self.clock.now, (), workloads)])


def test_a_match_alerts_and_starts_one_correction_carrying_its_policy(
    store: Store, engine: CorrectionsEngine, clock: Clock
) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    watched = Watched(store, engine, clock)
    version = watched.book.apply(_policy("pause"), (), ADMIN, "watch.yaml")
    watched.report(_workload("wl-1"), _workload("wl-2", model=None))
    watched.report(_workload("wl-1"), _workload("wl-2", model=None))  # unchanged: not again

    assert [a.dedup_key for a in watched.alerts] == ["watch-pause/wl-1"]
    (correction,) = store.list_corrections()
    spec = correction.spec
    assert (spec.issuer, spec.policy_digest) == ("policy:watch-pause", version.digest)
    assert spec.scope == Scope(node_ids=("n1",), workload_ids=("wl-1",))
    assert correction.state is CorrectionState.DISPATCHED
    assert [authority.document for authority in link.authorities] == [version.document]

    moved = dataclasses.replace(_workload("wl-1"), labels={"team": "x"})
    watched.report(moved)  # judged again (its labels changed): same alert, same correction
    assert len(watched.alerts) == 2
    assert len(store.list_corrections()) == 1


def test_an_alert_policy_starts_nothing_and_a_deleted_one_judges_no_more(
    store: Store, engine: CorrectionsEngine, clock: Clock
) -> None:
    watched = Watched(store, engine, clock)
    applied = watched.book.apply(_policy("alert"), (), ADMIN, "watch.yaml")
    watched.report(_workload("wl-1"))
    assert len(watched.alerts) == 1
    assert store.list_corrections() == []
    watched.book.delete(applied.name, applied.digest, (), ADMIN)
    watched.report(_workload("wl-3"))
    assert len(watched.alerts) == 1


def test_past_its_limit_a_policy_correction_is_held(
    store: Store, engine: CorrectionsEngine, clock: Clock
) -> None:
    watched = Watched(store, engine, clock)
    watched.book.apply(_policy("pause", limit=2), (), ADMIN, "watch.yaml")
    watched.report(*(_workload(f"wl-{i}") for i in range(3)))
    states = sorted(c.state.value for c in store.list_corrections())
    assert states == ["dispatched", "dispatched", "proposed"]
    held = next(c for c in store.list_corrections() if c.state is CorrectionState.PROPOSED)
    assert "max_targets_per_hour 2" in held.message
    released = engine.approve(held.spec.correction_id, None, ADMIN)
    assert released.state is not CorrectionState.PROPOSED
    clock.now += 3601  # an hour later the limit has room again
    watched.report(_workload("wl-9"))
    assert (
        store.get_correction(
            next(
                c.spec.correction_id
                for c in store.list_corrections()
                if "wl-9" in c.spec.scope.workload_ids
            )
        ).state
        is not CorrectionState.PROPOSED
    )
