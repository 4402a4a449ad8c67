"""The policy behind a correction a policy started, as its commands carry it to the agents.

A policy version never changes once stored, so each digest's document and signatures are
read once and kept. A digest the store does not hold gives no authority: the agent then
refuses the command (a policy-started correction with no policy behind it acts nowhere).
"""

from __future__ import annotations

from backstop.controller.store.base import Store
from backstop.core.models import PolicyAuthority

MAX_CACHED = 1024


class PolicyAuthorities:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, PolicyAuthority] = {}

    def of(self, digest: str) -> PolicyAuthority | None:
        """The authority of the policy version with ``digest`` (``None`` for ``""``)."""
        if not digest:
            return None
        found = self._known.get(digest)
        if found is None:
            for version in self._store.list_policy_versions():
                if version.digest == digest and not version.deletes:
                    found = PolicyAuthority(version.document, version.signatures)
            if found is None:
                return None
            if len(self._known) >= MAX_CACHED:
                self._known.clear()
            self._known[digest] = found
        return found
