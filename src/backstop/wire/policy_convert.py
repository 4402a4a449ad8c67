"""Policy versions and policy test results between their records and the control API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backstop.api.v1 import control_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import Workload
from backstop.core.policies import PolicyState, PolicyVersion
from backstop.wire.checks import text
from backstop.wire.convert import workload_to_pb
from backstop.wire.correction_convert import signature_to_pb, signatures_from_pb
from backstop.wire.received import ReceivedWorkload, received_workload

_STATES = {s: getattr(control_pb2, f"POLICY_STATE_{s.name}") for s in PolicyState}
_FROM_PB = {number: state for state, number in _STATES.items()}


Reasons = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReceivedPolicyTest:
    """What a policy file would match now: each workload with the fields that matched it."""

    digest: str
    checked: int
    matches: tuple[tuple[ReceivedWorkload, Reasons], ...]


def version_to_pb(v: PolicyVersion, message: str = "") -> control_pb2.PolicyVersion:
    return control_pb2.PolicyVersion(
        name=v.name,
        version=v.version,
        document=v.document,
        digest=v.digest,
        action=v.action,
        state=_STATES[v.state],
        applied_by=v.applied_by,
        applied_at_s=v.applied_s,
        ended_at_s=v.ended_s or 0.0,
        signatures=[signature_to_pb(s) for s in v.signatures],
        approval=v.approval,
        message=message,
    )


def version_from_pb(msg: control_pb2.PolicyVersion) -> PolicyVersion:
    state = _FROM_PB.get(msg.state)
    if state is None:
        raise InvalidInput(f"the controller sent a policy in an unknown state ({msg.state})")
    return PolicyVersion(
        name=text(msg.name, "policy name", 253),
        version=msg.version,
        document=bytes(msg.document),
        digest=text(msg.digest, "digest", 64),
        action=text(msg.action, "action", 32),
        state=state,
        applied_by=text(msg.applied_by, "applied by", 256),
        applied_s=msg.applied_at_s,
        ended_s=msg.ended_at_s or None,
        signatures=signatures_from_pb(msg.signatures),
        approval=text(msg.approval, "approval", 1024),
    )


def test_to_pb(
    digest: str, checked: int, matches: Sequence[tuple[Workload, Reasons]]
) -> control_pb2.TestPolicyResponse:
    return control_pb2.TestPolicyResponse(
        digest=digest,
        workloads_checked=checked,
        matches=[
            control_pb2.PolicyMatch(workload=workload_to_pb(w), reasons=list(reasons))
            for w, reasons in matches
        ],
    )


def test_from_pb(msg: control_pb2.TestPolicyResponse) -> ReceivedPolicyTest:
    return ReceivedPolicyTest(
        digest=text(msg.digest, "digest", 64),
        checked=msg.workloads_checked,
        matches=tuple(
            (received_workload(m.workload), tuple(text(r, "reason", 1024) for r in m.reasons))
            for m in msg.matches
        ),
    )


def versions_from_pb(msgs: Sequence[control_pb2.PolicyVersion]) -> list[PolicyVersion]:
    return [version_from_pb(m) for m in msgs]
