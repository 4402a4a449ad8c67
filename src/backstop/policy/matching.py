"""Which workloads a policy applies to: a :class:`CompiledPolicy` is built once per document
(its expression compiled when the document was parsed) and answers :meth:`~CompiledPolicy.matches`
and :meth:`~CompiledPolicy.reasons` for any workload. Field checks run first, cheapest first;
the expression runs only when every field given matched. An expression that fails or does not
give a bool is no match, never an exception. :func:`matching_policies` checks many policies
against one workload, building its expression view once. The matching rules are documented in
``docs/policies.md``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backstop.core.models import EMPTY_LABELS, Behaviour, IdentifiedModel, Workload
from backstop.core.scope import workload_namespace
from backstop.policy.cel_view import activation, workload_view

if TYPE_CHECKING:
    from backstop.policy.document import Match, Policy, PolicyDocument

Reasons = tuple[str, ...]
"""Phrases saying which fields of a policy matched a workload, for an alert."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One policy against one workload: whether it matched, which fields matched (for the
    alert), and why the expression gave no answer (``""`` when it did or there is none)."""

    matched: bool
    reasons: Reasons = ()
    error: str = ""


class _Subject:
    """One workload as the policies see it; the merged labels and the expression's view are
    computed on first use and shared by every policy checked against it."""

    __slots__ = ("_bound", "_labels", "_view", "node_labels", "workload")

    def __init__(self, workload: Workload, node_labels: Mapping[str, str]) -> None:
        self.workload = workload
        self.node_labels = node_labels
        self._labels: Mapping[str, str] | None = None
        self._view: dict[str, Any] | None = None
        self._bound: dict[str, Any] | None = None

    @property
    def labels(self) -> Mapping[str, str]:
        if self._labels is None:
            if self.node_labels:
                self._labels = {**self.node_labels, **self.workload.labels}
            else:
                self._labels = self.workload.labels
        return self._labels

    @property
    def view(self) -> dict[str, Any]:
        if self._view is None:
            self._view = workload_view(self.workload, self.labels)
        return self._view

    def bound(self) -> dict[str, Any]:
        if self._bound is None:
            self._bound = activation(self.view)
        return self._bound


class CompiledPolicy:
    """A parsed policy ready to match workloads; build one per document and keep it."""

    __slots__ = ("_checks", "document", "last_error", "policy")

    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        self.policy: Policy = document.policy
        self._checks = _field_checks(document.policy.match)
        self.last_error = ""
        """Why the expression last gave no answer (``""``: it did, or there is none)."""

    def __repr__(self) -> str:
        return f"CompiledPolicy({self.policy.name!r}, {self.document.digest[:12]})"

    def expired(self, now_s: float | None = None) -> bool:
        """Whether the policy is past its ``expires`` (then it matches nothing)."""
        until = self.policy.expires_at_s
        return until is not None and (time.time() if now_s is None else now_s) >= until

    def matches(self, workload: Workload, node_labels: Mapping[str, str] = EMPTY_LABELS) -> bool:
        """Whether the policy applies now to ``workload`` (on a node with ``node_labels``)."""
        return self.verdict(workload, node_labels).matched

    def reasons(self, workload: Workload, node_labels: Mapping[str, str] = EMPTY_LABELS) -> Reasons:
        """What matched now, one phrase per field (``()`` when the policy does not apply)."""
        return self.verdict(workload, node_labels).reasons

    def verdict(
        self,
        workload: Workload,
        node_labels: Mapping[str, str] = EMPTY_LABELS,
        *,
        now_s: float | None = None,
    ) -> Verdict:
        """The whole answer at ``now_s`` (default: now): matched, the reasons and any
        expression error."""
        return self._judge(_Subject(workload, node_labels), now_s)

    def _judge(self, subject: _Subject, now_s: float | None) -> Verdict:
        if self.expired(now_s):
            return Verdict(False)
        reasons = []
        for check in self._checks:
            said = check(subject)
            if said is None:
                return Verdict(False)
            reasons.append(said)
        program = self.policy.match.program
        if program is None:
            return Verdict(True, tuple(reasons))
        matched, error = program.judge(subject.view, subject.bound)
        self.last_error = error
        if not matched:
            return Verdict(False, error=error)
        return Verdict(True, (*reasons, f"expression {_quote(program.text, 80)} is true"))


def compile_policy(document: PolicyDocument) -> CompiledPolicy:
    """The :class:`CompiledPolicy` of a parsed document."""
    return CompiledPolicy(document)


def matching_policies(
    policies: Iterable[CompiledPolicy],
    workload: Workload,
    node_labels: Mapping[str, str] = EMPTY_LABELS,
    *,
    now_s: float | None = None,
) -> tuple[tuple[CompiledPolicy, Verdict], ...]:
    """The policies that apply to ``workload``, each with its verdict, in the order given."""
    subject = _Subject(workload, node_labels)
    now = time.time() if now_s is None else now_s
    found = []
    for policy in policies:
        verdict = policy._judge(subject, now)
        if verdict.matched:
            found.append((policy, verdict))
    return tuple(found)


def scope_within(
    policy: CompiledPolicy,
    workload: Workload,
    node_labels: Mapping[str, str] = EMPTY_LABELS,
    *,
    now_s: float | None = None,
) -> bool:
    """Whether a correction the policy started may act on ``workload``: exactly when the
    policy matches it now. An agent checks every target of a policy-started correction with
    this before acting, so such a correction never reaches beyond what its policy says."""
    return policy.verdict(workload, node_labels, now_s=now_s).matched


Check = Callable[["_Subject"], "str | None"]
"""One field's test: the phrase saying it matched, or ``None`` when it does not."""


def _field_checks(m: Match) -> tuple[Check, ...]:
    """The tests of the fields a policy gives, cheapest first (the model's after the rest)."""
    checks: list[Check] = []
    if m.node:
        checks.append(_node_check(m.node))
    if m.unattributed is not None:
        checks.append(_unattributed_check(m.unattributed))
    if m.framework:
        checks.append(_framework_check(m.framework))
    if m.behaviour is not None:
        checks.append(_behaviour_check(m.behaviour))
    if m.namespace:
        checks.append(_namespace_check(m.namespace))
    if m.labels:
        checks.append(_labels_check(m.labels))
    if m.model_id:
        checks.append(_model_check("model id", lambda model: model.model_id, m.model_id))
    if m.structure_id:
        checks.append(
            _model_check("structure id", lambda model: model.structure_id, m.structure_id)
        )
    if m.architecture:
        checks.append(_architecture_check(m.architecture))
    if m.min_parameters is not None:
        checks.append(_parameters_check(m.min_parameters))
    return tuple(checks)


def _node_check(node: str) -> Check:
    said = f"node is {_quote(node)}"
    return lambda s: said if s.workload.node_id == node else None


def _unattributed_check(wanted: bool) -> Check:
    said = "unattributed" if wanted else "attributed to a process"
    return lambda s: said if bool(s.workload.unattributed) == wanted else None


def _framework_check(framework: str) -> Check:
    said = f"framework is {_quote(framework)}"
    return lambda s: said if s.workload.fingerprint.framework.lower() == framework else None


def _behaviour_check(behaviour: Behaviour) -> Check:
    said = f"behaviour is {behaviour.value}"
    return lambda s: said if s.workload.fingerprint.behaviour is behaviour else None


def _namespace_check(namespace: str) -> Check:
    said = f"namespace is {_quote(namespace)}"
    return lambda s: said if workload_namespace(s.workload) == namespace else None


def _labels_check(wanted: Mapping[str, str]) -> Check:
    said = ", ".join(f"label {_quote(k)}={_quote(v)}" for k, v in wanted.items())
    pairs = tuple(wanted.items())

    def check(s: _Subject) -> str | None:
        labels = s.labels
        return said if all(labels.get(k) == v for k, v in pairs) else None

    return check


def _model_check(what: str, part: Callable[[IdentifiedModel], str], prefix: str) -> Check:
    def check(s: _Subject) -> str | None:
        model = s.workload.fingerprint.model
        value = part(model).lower() if model is not None else ""
        said = f"{what} {_quote(value, 16)} starts with {prefix}"
        return said if value.startswith(prefix) else None

    return check


def _architecture_check(architecture: str) -> Check:
    said = f"architecture is {_quote(architecture)}"

    def check(s: _Subject) -> str | None:
        model = s.workload.fingerprint.model
        return said if model is not None and model.architecture.lower() == architecture else None

    return check


def _parameters_check(minimum: int) -> Check:
    def check(s: _Subject) -> str | None:
        model = s.workload.fingerprint.model
        if model is None or model.parameters < minimum:
            return None
        return f"{model.parameters:,} parameters >= {minimum:,}"

    return check


def _quote(text: str, limit: int = 64) -> str:
    """Text from a file or a report, escaped for a terminal and cut to ``limit``."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(cut)
