"""Policy versions in the store, on every backend: numbered per policy, the exact bytes kept,
one active version at a time, signatures added to proposals only."""

from __future__ import annotations

import pytest

from backstop.controller.store import Store
from backstop.core.errors import BackstopError, Conflict, NotFound
from backstop.core.models import SignatureRecord
from backstop.core.policies import DELETE, PolicyState, PolicyVersion, digest_of

DOC = b"name: watch\n# a comment the bytes keep\nmatch: {model_id: 0123456789ab}\naction: pause\n"


def _version(
    document: bytes, state: PolicyState, at: float, action: str = "pause"
) -> PolicyVersion:
    sig = SignatureRecord("k1", "alice", "issuer", b"\x01" * 64, at)
    return PolicyVersion(
        "watch", 0, document, digest_of(document), action, state, "alice", at, signatures=(sig,)
    )


def _states(store: Store) -> list[tuple[int, PolicyState, float | None]]:
    return [(v.version, v.state, v.ended_s) for v in store.list_policy_versions("watch")]


def test_versions_are_numbered_and_keep_their_bytes(store: Store) -> None:
    assert store.add_policy_version(_version(DOC, PolicyState.ACTIVE, 10.0)) == 1
    edited = DOC + b"severity: critical\n"
    assert store.add_policy_version(_version(edited, PolicyState.ACTIVE, 20.0)) == 2
    first, second = store.list_policy_versions("watch")
    assert (first.document, first.digest) == (DOC, digest_of(DOC))
    assert second.document == edited
    assert first.signatures[0].signature == b"\x01" * 64
    assert _states(store) == [(1, PolicyState.SUPERSEDED, 20.0), (2, PolicyState.ACTIVE, None)]
    assert [v.version for v in store.list_policy_versions(states=[PolicyState.ACTIVE])] == [2]


def test_a_proposal_waits_for_signatures_then_supersedes(store: Store) -> None:
    store.add_policy_version(_version(DOC, PolicyState.ACTIVE, 10.0))
    store.add_policy_version(_version(DOC + b"#2\n", PolicyState.PROPOSED, 20.0))
    store.add_policy_version(_version(DOC + b"#3\n", PolicyState.PROPOSED, 30.0))
    store.add_policy_version(_version(DOC + b"#4\n", PolicyState.PROPOSED, 35.0))
    approval = SignatureRecord("k2", "bob", "approver", b"\x02" * 64, 40.0)
    store.add_policy_signature("watch", 3, approval)
    with pytest.raises(BackstopError):
        store.add_policy_signature("watch", 3, approval)  # one signature per key
    store.activate_policy_version("watch", 3, 50.0)
    assert _states(store) == [
        (1, PolicyState.SUPERSEDED, 50.0),
        (2, PolicyState.WITHDRAWN, 50.0),  # each proposal was made against version 1
        (3, PolicyState.ACTIVE, None),
        (4, PolicyState.WITHDRAWN, 50.0),
    ]
    assert [s.signer for s in store.list_policy_versions("watch")[2].signatures] == ["alice", "bob"]
    with pytest.raises(Conflict):
        store.activate_policy_version("watch", 3, 60.0)
    with pytest.raises(Conflict):
        store.add_policy_signature("watch", 1, approval)
    with pytest.raises(NotFound):
        store.add_policy_signature("watch", 9, approval)


def test_a_deletion_is_a_version_too(store: Store) -> None:
    store.add_policy_version(_version(DOC, PolicyState.ACTIVE, 10.0))
    store.add_policy_version(_version(b"statement", PolicyState.ACTIVE, 20.0, action=DELETE))
    versions = store.list_policy_versions("watch")
    assert [(v.action, v.state) for v in versions] == [
        ("pause", PolicyState.SUPERSEDED),
        (DELETE, PolicyState.ACTIVE),
    ]
    assert versions[1].deletes
    assert store.list_policy_versions("other") == []
