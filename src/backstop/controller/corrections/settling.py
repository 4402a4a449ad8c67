"""How a correction settles: what its targets' outcomes add up to, and what it says meanwhile.

A target's outcome is final once it is applied, failed or refused (``TargetState.terminal``).
An unreachable target is not: delivery is tried until the correction expires, and a late ack
still counts. So a correction is

- ``dispatched`` while any target has no final outcome and it has not expired; its message says
  which nodes are outstanding and until when delivery is tried (RFC 3339, UTC);
- ``failed`` once every target is final and one failed or was refused, or when its scope names
  workloads (selector, model hashes, workload ids) and not one workload was acted on anywhere
  ("scope matched no workload on 2 node(s); nothing was paused"): that is not success;
- ``completed`` once every target is final otherwise (a node-level scope, all or node ids, with
  no workloads on it is still a success: the correction stays in force there);
- ``expired`` (terminal) when its expiry passes with targets still undelivered; those targets
  stay unreachable and the message names them.

Pure functions; the engine (``corrections``) stores and audits what they decide.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from backstop.core.models import (
    Action,
    Correction,
    CorrectionState,
    TargetResult,
    TargetState,
)
from backstop.core.times import rfc3339

SHOWN_NODES = 5
"""At most this many outstanding nodes are named in a message (then "and N more")."""
_UNSUCCESSFUL = (TargetState.FAILED, TargetState.REFUSED)
_DONE = {
    Action.OBSERVE: "observed",
    Action.THROTTLE: "throttled",
    Action.PAUSE: "paused",
    Action.RESUME: "resumed",
    Action.TERMINATE: "terminated",
    Action.SHUTDOWN: "shut down",
}


def acted_on(correction: Correction) -> bool:
    """Whether the correction did anything anywhere: a workload outcome ``applied``, or, for a
    node-level scope, a target applied (it holds the node even with no workload on it)."""
    workloads = any(o.outcome == "applied" for t in correction.targets for o in t.outcomes)
    if workloads or correction.spec.scope.names_workloads:
        return workloads
    return any(t.state is TargetState.APPLIED for t in correction.targets)


def summary(states: Iterable[TargetState]) -> str:
    """``2 applied, 1 unreachable``."""
    counts = Counter(states)
    return ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items()))


def _named(nodes: list[str]) -> str:
    shown = ", ".join(sorted(nodes)[:SHOWN_NODES])
    return shown + (f" and {len(nodes) - SHOWN_NODES} more" if len(nodes) > SHOWN_NODES else "")


def outstanding(states: Mapping[str, TargetState], expires_at_s: float) -> str:
    """The message of a correction still being delivered."""
    waiting = [n for n, s in states.items() if not s.terminal]
    return (
        f"{summary(states.values())}; waiting for {_named(waiting)} "
        f"(delivery tried until {rfc3339(expires_at_s)})"
    )


def final_outcome(correction: Correction) -> tuple[CorrectionState, str]:
    """The settled state and message of a correction whose targets are all final."""
    spec = correction.spec
    done = _DONE[spec.action]
    judged = spec.action is not Action.RESUME and spec.scope.names_workloads
    if not correction.targets:
        if judged:
            text = f"scope matched no workload (no nodes); nothing was {done}"
            return CorrectionState.FAILED, text
        return CorrectionState.COMPLETED, "no nodes in scope; nothing to do"
    text = summary(t.state for t in correction.targets)
    if any(t.state in _UNSUCCESSFUL for t in correction.targets):
        return CorrectionState.FAILED, text
    if judged and not acted_on(correction):
        return CorrectionState.FAILED, (
            f"scope matched no workload on {len(correction.targets)} node(s); nothing was {done}"
        )
    return CorrectionState.COMPLETED, text


def undelivered(targets: Iterable[TargetResult]) -> list[str]:
    """Nodes without a final outcome."""
    return sorted(t.node_id for t in targets if not t.state.terminal)


def expiry_message(correction: Correction, nodes: list[str]) -> str:
    """The message of a correction that expired with ``nodes`` undelivered."""
    expired = rfc3339(correction.spec.expires_at_s)
    if correction.state is CorrectionState.PROPOSED:
        return f"expired at {expired} while waiting for approvals; nothing was sent"
    final = [t.state for t in correction.targets if t.state.terminal]
    text = f"expired at {expired}: {len(nodes)} node(s) never acknowledged ({_named(nodes)})"
    return text + (f"; {summary(final)}" if final else "")
