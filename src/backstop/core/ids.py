"""Identifiers: sortable correction, alert and incident ids, and stable workload ids."""

from __future__ import annotations

import hashlib
import secrets
import time


def new_correction_id() -> str:
    """``cor-`` + 11 hex digits of milliseconds + 8 random hex digits: unique and sortable."""
    return f"cor-{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def new_alert_id() -> str:
    """``alr-`` + 11 hex digits of milliseconds + 8 random hex digits: unique and sortable."""
    return f"alr-{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def new_incident_id() -> str:
    """``inc-`` + 11 hex digits of milliseconds + 8 random hex digits: unique and sortable."""
    return f"inc-{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def policy_incident_id(policy_digest: str) -> str:
    """The incident a policy version with ``incident: auto`` opens: the same id on every
    replica and every match of that version."""
    return "inc-" + hashlib.sha256(f"incident:{policy_digest}".encode()).hexdigest()[:19]


def workload_id(node_id: str, root_pid: int, root_start_time: float, container_id: str = "") -> str:
    """Stable id of a workload: its container, or its root process incarnation on a node."""
    basis = (
        f"ctr:{container_id}" if container_id else f"pid:{node_id}:{root_pid}:{root_start_time:.2f}"
    )
    return "wl-" + hashlib.sha256(basis.encode()).hexdigest()[:12]
