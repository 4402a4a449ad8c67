"""What the controller tells every agent about the policies it must enforce itself.

The set is the active versions whose policy says ``enforce: node`` and corrects, each with
the signatures over its exact bytes, and the signed deletions, from the last week, of such
policies (an agent lifts what it enforced for a policy only on such a deletion; its own
corrections last at most a week). It is sent after the Welcome when it differs from what the
agent says it keeps (a digest in its Hello), and whenever the policies in force change.
Which versions say ``enforce: node`` is read once per digest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backstop.controller.store.base import Store
from backstop.core.errors import BackstopError
from backstop.core.models import PolicyAuthority
from backstop.core.policies import PolicyState, PolicyVersion, digest_of, set_digest
from backstop.policy.document import Enforce, parse_policy
from backstop.security.command_check import MAX_TTL_S

NodePolicySet = tuple[list[PolicyAuthority], list[PolicyAuthority]]


class NodePolicyPush:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._on_nodes: dict[str, bool] = {}
        self._last = ("", "")

    def changed(self, policies: NodePolicySet) -> bool:
        """Whether ``policies`` differ from the set this was last asked about (then noted)."""
        now = (self.digest(policies), set_digest(digest_of(a.document) for a in policies[1]))
        if now == self._last:
            return False
        self._last = now
        return True

    def current(self) -> NodePolicySet:
        """(the policies agents enforce, the deletions that end such policies)."""
        enforce: list[PolicyAuthority] = []
        deletions: list[PolicyAuthority] = []
        since = self._clock() - MAX_TTL_S
        previous: dict[str, PolicyVersion] = {}
        for v in self._store.list_policy_versions():  # by name, then version
            if v.deletes:
                ended = previous.get(v.name)
                if (
                    v.state is PolicyState.ACTIVE
                    and v.applied_s >= since
                    and ended is not None
                    and self._enforced_on_nodes(ended)
                ):
                    deletions.append(PolicyAuthority(v.document, v.signatures))
            elif v.state in (PolicyState.ACTIVE, PolicyState.SUPERSEDED):
                previous[v.name] = v
                if v.state is PolicyState.ACTIVE and self._enforced_on_nodes(v):
                    enforce.append(PolicyAuthority(v.document, v.signatures))
        return enforce, deletions

    @staticmethod
    def digest(policies: NodePolicySet) -> str:
        """The digest an agent keeping exactly ``policies`` says in its Hello."""
        return set_digest(digest_of(a.document) for a in policies[0])

    def _enforced_on_nodes(self, version: PolicyVersion) -> bool:
        known = self._on_nodes.get(version.digest)
        if known is None:
            try:
                policy = parse_policy(version.document, version.name).policy
                known = policy.enforce is Enforce.NODE and policy.corrects
            except BackstopError:
                known = False
            self._on_nodes[version.digest] = known
        return known
