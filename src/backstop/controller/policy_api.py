"""The policy calls of the control API: apply, approve, delete, list and test.

A mixin of :class:`~backstop.controller.control_api.ControlService`: it finds the caller
(``_identify``/``_caller``) and the :class:`~backstop.controller.policy_book.PolicyBook`
there. Every change is decided and audited by the book; listing and testing need a viewer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from backstop.api.v1 import control_pb2
from backstop.controller.policy_book import PolicyBook
from backstop.controller.rpc_errors import rpc
from backstop.controller.service_part import ServicePart
from backstop.controller.store.base import Store
from backstop.core.errors import InvalidInput
from backstop.core.models import Workload
from backstop.policy.document import parse_policy
from backstop.policy.matching import CompiledPolicy
from backstop.security.identities import Role
from backstop.wire import correction_convert, policy_convert
from backstop.wire.checks import text

MAX_DOCUMENT_BYTES = 64 * 1024
TEST_BUDGET_S = 2.0
"""The most work one ``policy test`` may cost the controller."""


class PolicyCalls(ServicePart):
    _store: Store
    _policies: PolicyBook

    @rpc
    async def ApplyPolicy(
        self, request: control_pb2.ApplyPolicyRequest, context: Any
    ) -> control_pb2.PolicyVersion:
        caller = self._caller(context, Role.VIEWER, "applying a policy", request.requested_by)
        document = _document(request.document)
        signatures = correction_convert.signatures_from_pb(request.signatures)
        source = text(request.source, "source", 256)
        version = self._policies.apply(document, signatures, caller, source)
        return policy_convert.version_to_pb(version)

    @rpc
    async def ApprovePolicy(
        self, request: control_pb2.ApprovePolicyRequest, context: Any
    ) -> control_pb2.PolicyVersion:
        caller = self._caller(context, Role.VIEWER, "approving a policy", request.requested_by)
        if not request.HasField("signature"):
            raise InvalidInput("an approval carries a signature (pass --key)")
        signature = correction_convert.signature_from_pb(request.signature)
        name = text(request.name, "policy name", 63)
        version = self._policies.approve(name, request.version, signature, caller)
        return policy_convert.version_to_pb(version)

    @rpc
    async def DeletePolicy(
        self, request: control_pb2.DeletePolicyRequest, context: Any
    ) -> control_pb2.PolicyVersion:
        caller = self._caller(context, Role.VIEWER, "deleting a policy", request.requested_by)
        signatures = correction_convert.signatures_from_pb(request.signatures)
        name = text(request.name, "policy name", 63)
        digest = text(request.digest, "digest", 64)
        version = self._policies.delete(name, digest, signatures, caller)
        return policy_convert.version_to_pb(version)

    @rpc
    async def ListPolicies(
        self, request: control_pb2.ListPoliciesRequest, context: Any
    ) -> control_pb2.ListPoliciesResponse:
        self._caller(context, Role.VIEWER, "listing policies")
        name = text(request.name, "policy name", 63)
        versions = self._policies.versions(name, request.include_ended)
        return control_pb2.ListPoliciesResponse(
            versions=[policy_convert.version_to_pb(v) for v in versions]
        )

    @rpc
    async def TestPolicy(
        self, request: control_pb2.TestPolicyRequest, context: Any
    ) -> control_pb2.TestPolicyResponse:
        # an operator's: an expression costs controller time, and whoever may test may apply
        self._caller(context, Role.OPERATOR, "testing a policy")
        source = text(request.source, "source", 256) or "policy"
        compiled = CompiledPolicy(parse_policy(_document(request.document), source))
        labels = {r.info.node_id: r.info.labels for r in self._store.list_nodes()}
        workloads = self._store.list_workloads()
        matches = await asyncio.to_thread(_judge_all, compiled, workloads, labels)
        return policy_convert.test_to_pb(compiled.document.digest, len(workloads), matches)


def _judge_all(
    compiled: CompiledPolicy,
    workloads: Sequence[Workload],
    labels: Mapping[str, Mapping[str, str]],
) -> list[tuple[Workload, tuple[str, ...]]]:
    """Every workload ``compiled`` matches, within :data:`TEST_BUDGET_S` of work."""
    started = time.monotonic()
    matches = []
    for done, w in enumerate(workloads, start=1):
        verdict = compiled.verdict(w, labels.get(w.node_id, {}))
        if verdict.matched:
            matches.append((w, verdict.reasons))
        if time.monotonic() - started > TEST_BUDGET_S:
            raise InvalidInput(
                f"the policy took over {TEST_BUDGET_S:g} s for {done} of {len(workloads)} "
                "workloads; make its expression cheaper, or put fields before it"
            )
    return matches


def _document(data: bytes) -> bytes:
    if not data:
        raise InvalidInput("the policy file is empty")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(
            f"a policy file is at most {MAX_DOCUMENT_BYTES} bytes, this one has {len(data)}"
        )
    return bytes(data)
