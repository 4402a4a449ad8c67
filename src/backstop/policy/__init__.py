"""Policies: YAML files that say which workloads to alert on or correct, parsed to exact
bytes plus a typed :class:`Policy` (:mod:`~backstop.policy.document`) and matched against
workloads (:mod:`~backstop.policy.matching`). Pure: no I/O, no storage, no transport; the
controller and the agent both use it. It imports only the core, PyYAML and cel-python.

The names below are imported on first use (:func:`__getattr__`): the agent matches policies
with :mod:`~backstop.policy.matching` alone, and PyYAML loads only where a policy is parsed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backstop.policy.document import (
        Enforce,
        Match,
        Policy,
        PolicyAction,
        PolicyDocument,
        Severity,
        parse_policy,
    )
    from backstop.policy.errors import PolicyError
    from backstop.policy.matching import (
        CompiledPolicy,
        Verdict,
        compile_policy,
        matching_policies,
        scope_within,
    )

_HOMES = {
    **dict.fromkeys(
        ("Enforce", "Match", "Policy", "PolicyAction", "PolicyDocument", "Severity"), "document"
    ),
    "parse_policy": "document",
    "PolicyError": "errors",
    **dict.fromkeys(
        ("CompiledPolicy", "Verdict", "compile_policy", "matching_policies", "scope_within"),
        "matching",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "CompiledPolicy",
    "Enforce",
    "Match",
    "Policy",
    "PolicyAction",
    "PolicyDocument",
    "PolicyError",
    "Severity",
    "Verdict",
    "compile_policy",
    "matching_policies",
    "parse_policy",
    "scope_within",
]
