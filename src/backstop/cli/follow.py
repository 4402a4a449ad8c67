"""``--wait`` and ``status --watch``: follow a correction until it ends or the time is up.

The watch survives the controller: when the stream breaks, the CLI reconnects (to the next
address of ``--controller a,b``, or the same one again) with a growing pause and goes on
watching until its own deadline. It says only what is true: a correction is reported
finished only when the controller says it ended; at the deadline it prints what is still
outstanding and until when delivery is tried, and the exit status is 1.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from backstop.cli import render, signed
from backstop.cli.client import ControllerClient, WatchDeadline
from backstop.core.errors import Unavailable
from backstop.core.models import CorrectionState, TargetState
from backstop.core.times import rfc3339
from backstop.wire.received import NOTHING_RECEIVED, ReceivedCorrection

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0


@dataclass(frozen=True, slots=True)
class Followed:
    correction: ReceivedCorrection
    view: signed.SignedView
    ended: bool
    """False: the deadline came first."""


def follow(
    client: ControllerClient,
    correction_id: str,
    timeout_s: float,
    *,
    narrate: bool,
    data: bytes = b"",
) -> Followed:
    """Watch until the correction ends or ``timeout_s`` passes; ``data``: the signed bytes
    when the caller has them (it just signed them)."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, TargetState] = {}
    last: ReceivedCorrection | None = None
    view: signed.SignedView | None = None
    backoff = FIRST_BACKOFF_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            if view is None:
                view = signed.view(client.get(correction_id), data)
                if narrate:
                    for line in view.warnings:
                        print(line, file=sys.stderr)
                    print(
                        f"{render.escape(correction_id)}  {view.spec.action.value}  "
                        f"scope: {render.scope_text(view.spec.scope)}",
                        flush=True,
                    )
            for c in client.watch(correction_id, left):
                backoff = FIRST_BACKOFF_S
                if narrate:
                    _narrate(c, view, seen)
                last = c
                if c.state is not None and c.state.terminal:
                    return Followed(c, view, True)
        except WatchDeadline:
            break
        except Unavailable as exc:
            why = f"lost the controller ({render.escape(exc.message)})"
        else:  # the stream ended before the correction did: a controller going away
            why = "the controller closed the watch"
        pause = min(backoff, max(0.0, deadline - time.monotonic()))
        print(f"backstop: {why}; reconnecting in {pause:.1f} s", file=sys.stderr, flush=True)
        time.sleep(pause)
        backoff = min(backoff * 2, MAX_BACKOFF_S)
        client.reconnect()
    if view is None:
        raise Unavailable(
            f"no controller answered about {correction_id} within {timeout_s:g} s; "
            f"see `backstop status {correction_id}`"
        )
    return Followed(last if last is not None else NOTHING_RECEIVED, view, False)


def _narrate(c: ReceivedCorrection, view: signed.SignedView, seen: dict[str, TargetState]) -> None:
    for t in c.targets:
        if seen.get(t.node_id) != t.state:
            seen[t.node_id] = t.state
            print(render.target_line(t, view.spec.created_at_s), flush=True)


def summary(result: Followed, timeout_s: float) -> str:
    """The last line: the final state, or what is outstanding at the deadline."""
    c = result.correction
    if result.ended:
        return f"{render.correction_state(c.state)}: {render.escape(c.message)}"
    state = render.correction_state(c.state) if c.state is not None else "unknown"
    outstanding = [t for t in c.targets if t.state != TargetState.APPLIED]
    lines = [f"not finished after {timeout_s:g} s; the correction is {state}"]
    if c.state == CorrectionState.PROPOSED:
        lines.append(f"waiting for approvals: {len(c.approvers)} of {c.approvals_required}")
    if outstanding:
        lines.append(f"outstanding: {len(outstanding)} of {len(c.targets)} target(s)")
        lines += [
            f"  {render.escape(t.node_id):<20} {t.state.value}"
            + (f"  {render.escape(t.message)}" if t.message else "")
            for t in outstanding
        ]
    lines.append(
        f"delivery is tried until {rfc3339(result.view.spec.expires_at_s)} "
        f"(the correction's expiry); see `backstop status {result.view.spec.correction_id}`"
    )
    return "\n".join(lines)


def exit_code(result: Followed) -> int:
    c = result.correction
    done = (CorrectionState.COMPLETED, CorrectionState.REVERTED)
    all_applied = all(t.state == TargetState.APPLIED for t in c.targets)
    return 0 if result.ended and c.state in done and all_applied else 1
