"""Policies: YAML files that say which workloads to alert on or correct, parsed to exact
bytes plus a typed :class:`Policy` (:mod:`~backstop.policy.document`) and matched against
workloads (:mod:`~backstop.policy.matching`). Pure: no I/O, no storage, no transport; the
controller and the agent both use it. It imports only the core, PyYAML and cel-python."""

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
