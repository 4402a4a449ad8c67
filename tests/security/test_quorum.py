"""Quorum rules: who must sign a correction, whose approvals count, and the reasons given."""

from __future__ import annotations

import dataclasses

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.models import Action, CorrectionSpec, Scope, SignatureRecord
from backstop.security.identities import Person, TrustPolicy
from backstop.security.keys import OperatorKey, generate_key
from backstop.security.quorum import (
    MAX_SIGNATURES,
    SignatureRole,
    approval_problem,
    approval_state,
    check,
    sign_correction,
)
from backstop.wire.correction_convert import spec_bytes

ROLES = {
    "alice": "operator",
    "olga": "operator",
    "bob": "approver",
    "carol": "approver",
    "dave": "admin",
    "vic": "viewer",
}
KEYS: dict[str, OperatorKey] = {name: generate_key() for name in ROLES}
BOB_SECOND_KEY = generate_key()
OUTSIDER = generate_key()


def policy(**quorum: int) -> TrustPolicy:
    people = tuple(
        Person.with_keys(
            name,
            role,
            [KEYS[name].public_raw()] + ([BOB_SECOND_KEY.public_raw()] if name == "bob" else []),
        )
        for name, role in ROLES.items()
    )
    return TrustPolicy(people=people, quorum=quorum)


def spec_for(action: Action, issuer: str = "alice", correction_id: str = "cor-1") -> bytes:
    return spec_bytes(
        CorrectionSpec(
            correction_id=correction_id,
            action=action,
            scope=Scope(all=True),
            reason="model exfiltrating weights",
            issuer=issuer,
            created_at_s=1_700_000_000.0,
            expires_at_s=1_700_003_600.0,
        ),
    )


def sig(
    data: bytes, name: str, role: str = "approver", key: OperatorKey | None = None
) -> SignatureRecord:
    return sign_correction(
        key or KEYS[name], data, signer=name, role=role, signed_at_s=1_700_000_001.0
    )


def issued(data: bytes, issuer: str = "alice") -> SignatureRecord:
    return sig(data, issuer, "issuer")


# -- corrections that may act ------------------------------------------------------------


def test_m0_needs_only_the_issuer() -> None:
    data = spec_for(Action.PAUSE)
    verdict = check(
        data, issuer="alice", action="pause", signatures=[issued(data)], policy=policy()
    )
    assert verdict.ok
    assert verdict.issuer_ok
    assert verdict.required == 0
    assert verdict.approvers == ()
    assert verdict.reason == "issuer alice signed; pause needs no approval"


def test_m1_two_person_rule() -> None:
    data = spec_for(Action.TERMINATE)
    verdict = check(
        data,
        issuer="alice",
        action=Action.TERMINATE,
        signatures=[issued(data), sig(data, "bob")],
        policy=policy(),
    )
    assert verdict.ok, verdict.reason
    assert verdict.required == 1
    assert verdict.approvers == ("bob",)
    assert verdict.reason == "issuer alice signed; 1 of 1 approvals (bob)"


def test_m2_with_two_distinct_approvers() -> None:
    data = spec_for(Action.SHUTDOWN)
    verdict = check(
        data,
        issuer="alice",
        action="shutdown",
        signatures=[issued(data), sig(data, "dave"), sig(data, "bob")],
        policy=policy(shutdown=2),
    )
    assert verdict.ok, verdict.reason
    assert verdict.approvers == ("dave", "bob")
    assert verdict.progress == "2 of 2 approvals"


def test_an_approver_may_issue_and_others_approve() -> None:
    data = spec_for(Action.TERMINATE, issuer="carol")
    verdict = check(
        data,
        issuer="carol",
        action="terminate",
        signatures=[issued(data, "carol"), sig(data, "bob")],
        policy=policy(),
    )
    assert verdict.ok, verdict.reason


def test_signatures_that_do_not_count_do_not_block_a_reached_quorum() -> None:
    data = spec_for(Action.TERMINATE)
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), sig(data, "vic"), sig(data, "bob")],
        policy=policy(),
    )
    assert verdict.ok
    assert verdict.approvers == ("bob",)
    assert verdict.reason.endswith("; vic is a viewer and may not approve (not counted)")


# -- quorum not reached ------------------------------------------------------------------


def test_terminate_with_one_approval_where_two_are_required() -> None:
    data = spec_for(Action.TERMINATE)
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), sig(data, "bob")],
        policy=policy(terminate=2),
    )
    assert not verdict.ok
    assert verdict.issuer_ok
    assert verdict.approvers == ("bob",)
    assert verdict.reason == "terminate needs 2 approvals from distinct approvers, has 1 (bob)"


def test_severe_action_without_any_approval() -> None:
    data = spec_for(Action.SHUTDOWN)
    verdict = check(
        data, issuer="alice", action="shutdown", signatures=[issued(data)], policy=policy()
    )
    assert not verdict.ok
    assert verdict.reason == "shutdown needs 1 approvals from distinct approvers, has none"


@pytest.mark.parametrize("second_key", [False, True], ids=["same key", "second key"])
def test_two_approvals_by_the_same_person_count_once(second_key: bool) -> None:
    data = spec_for(Action.TERMINATE)
    again = sig(data, "bob", key=BOB_SECOND_KEY if second_key else None)
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), sig(data, "bob"), again],
        policy=policy(terminate=2),
    )
    assert not verdict.ok
    assert verdict.approvers == ("bob",)
    assert verdict.reason == (
        "terminate needs 2 approvals from distinct approvers, has 1 (bob); "
        "bob approved twice (counted once)"
    )


@pytest.mark.parametrize(("approver", "role"), [("vic", "viewer"), ("olga", "operator")])
def test_approval_by_someone_below_approver_does_not_count(approver: str, role: str) -> None:
    data = spec_for(Action.TERMINATE)
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), sig(data, approver)],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.issuer_ok
    assert verdict.approvers == ()
    assert verdict.reason == (
        "terminate needs 1 approvals from distinct approvers, has none; "
        f"{approver} is a {role} and may not approve (not counted)"
    )


@pytest.mark.parametrize("issuer", ["alice", "dave"], ids=["operator", "admin"])
def test_the_issuer_cannot_approve_their_own_correction(issuer: str) -> None:
    data = spec_for(Action.TERMINATE, issuer=issuer)
    verdict = check(
        data,
        issuer=issuer,
        action="terminate",
        signatures=[issued(data, issuer), sig(data, issuer)],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.approvers == ()
    assert verdict.reason.endswith(
        f"; issuer {issuer} cannot approve their own correction (not counted)"
    )


# -- signatures that reject the correction outright --------------------------------------


def test_forged_signature() -> None:
    data = spec_for(Action.TERMINATE)
    bob_id = KEYS["bob"].key_id
    forged = dataclasses.replace(sig(data, "bob"), signature=OUTSIDER.sign(data))
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), forged],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.reason == f"forged or corrupted signature by key {bob_id} (bob)"
    assert verdict.issuer_ok  # the issuer's own signature was fine
    assert verdict.approvers == ()


def test_corrupted_signature() -> None:
    data = spec_for(Action.TERMINATE)
    good = sig(data, "bob")
    corrupted = dataclasses.replace(
        good, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:]
    )
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), corrupted],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.reason.startswith("forged or corrupted signature by key")


def test_signatures_of_another_correction_do_not_carry_over() -> None:
    pause = spec_for(Action.PAUSE)
    terminate = spec_for(Action.TERMINATE)
    verdict = check(
        terminate,
        issuer="alice",
        action="terminate",
        signatures=[issued(pause), sig(terminate, "bob")],
        policy=policy(),
    )
    assert not verdict.ok
    assert not verdict.issuer_ok
    assert verdict.reason == f"forged or corrupted signature by key {KEYS['alice'].key_id} (alice)"


def test_unknown_key() -> None:
    data = spec_for(Action.TERMINATE)
    stranger = sig(data, "bob", key=OUTSIDER)
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), sig(data, "carol"), stranger],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.reason == f"unknown key {OUTSIDER.key_id}"
    assert verdict.approvers == ("carol",)


def test_signer_must_be_the_key_owner() -> None:
    data = spec_for(Action.TERMINATE)
    claimed = dataclasses.replace(sig(data, "bob"), signer="carol")
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[issued(data), claimed],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.reason == (
        f"signature by key {KEYS['bob'].key_id} names signer 'carol', but the key belongs to bob"
    )


def test_only_the_issuer_may_sign_as_issuer() -> None:
    data = spec_for(Action.PAUSE)
    verdict = check(
        data,
        issuer="alice",
        action="pause",
        signatures=[issued(data), sig(data, "bob", "issuer")],
        policy=policy(),
    )
    assert not verdict.ok
    assert verdict.reason == "issuer signature by bob, but the issuer is alice"


def test_unknown_signature_role() -> None:
    data = spec_for(Action.PAUSE)
    odd = dataclasses.replace(sig(data, "bob"), role="witness")
    verdict = check(
        data, issuer="alice", action="pause", signatures=[issued(data), odd], policy=policy()
    )
    assert not verdict.ok
    assert verdict.reason == "signature by bob has unknown role 'witness'"


def test_too_many_signatures() -> None:
    data = spec_for(Action.PAUSE)
    many = [issued(data)] * (MAX_SIGNATURES + 1)
    verdict = check(data, issuer="alice", action="pause", signatures=many, policy=policy())
    assert not verdict.ok
    assert verdict.reason.startswith("too many signatures")


# -- the issuer ---------------------------------------------------------------------------


def test_issuer_who_is_a_viewer() -> None:
    data = spec_for(Action.PAUSE, issuer="vic")
    verdict = check(
        data, issuer="vic", action="pause", signatures=[issued(data, "vic")], policy=policy()
    )
    assert not verdict.ok
    assert not verdict.issuer_ok
    assert verdict.reason == "issuer vic is a viewer; issuing needs operator or above"


def test_issuer_not_in_the_policy() -> None:
    data = spec_for(Action.PAUSE, issuer="mallory")
    verdict = check(data, issuer="mallory", action="pause", signatures=[], policy=policy())
    assert not verdict.ok
    assert verdict.reason == "issuer mallory is not in the trust policy"


def test_missing_issuer_signature() -> None:
    data = spec_for(Action.TERMINATE)
    verdict = check(
        data,
        issuer="alice",
        action="terminate",
        signatures=[sig(data, "bob")],
        policy=policy(),
    )
    assert not verdict.ok
    assert not verdict.issuer_ok
    assert verdict.approvers == ("bob",)
    assert verdict.reason == "no issuer signature by alice"


# -- progress and admission of new approvals ---------------------------------------------


def test_approval_state_says_how_far_and_who_could_approve() -> None:
    data = spec_for(Action.SHUTDOWN)
    state = approval_state(
        data,
        issuer="alice",
        action="shutdown",
        signatures=[issued(data), sig(data, "bob")],
        policy=policy(shutdown=2),
    )
    assert state.missing == 1
    assert state.candidates == ("carol", "dave")
    assert state.describe() == "1 of 2 approvals (bob); waiting for 1 more from carol, dave"

    done = approval_state(
        data,
        issuer="alice",
        action="shutdown",
        signatures=[issued(data), sig(data, "bob"), sig(data, "carol")],
        policy=policy(shutdown=2),
    )
    assert done.missing == 0
    assert done.verdict.ok
    assert done.describe() == "2 of 2 approvals (bob, carol)"


def test_approval_state_without_issuer_signature() -> None:
    data = spec_for(Action.TERMINATE)
    state = approval_state(data, issuer="alice", action="terminate", signatures=[], policy=policy())
    assert state.describe() == (
        "0 of 1 approvals; waiting for 1 more from bob, carol, dave; no issuer signature by alice"
    )


def test_approval_problem_refuses_approvals_that_would_not_count() -> None:
    data = spec_for(Action.TERMINATE)
    existing = [issued(data), sig(data, "bob")]
    pol = policy(terminate=2)

    def problem(new: SignatureRecord) -> str:
        return approval_problem(data, issuer="alice", signature=new, existing=existing, policy=pol)

    assert problem(sig(data, "carol")) == ""
    assert problem(sig(data, "bob", key=BOB_SECOND_KEY)) == "bob already approved"
    assert problem(sig(data, "alice")) == "issuer alice cannot approve their own correction"
    assert problem(sig(data, "vic")) == "vic is a viewer and may not approve"
    assert problem(sig(data, "carol", "issuer")) == (
        "an approval must have role 'approver', not 'issuer'"
    )
    assert problem(sig(spec_for(Action.PAUSE), "carol")).startswith("forged or corrupted")
    assert problem(sig(data, "carol", key=OUTSIDER)) == f"unknown key {OUTSIDER.key_id}"


def test_sign_correction_refuses_an_unknown_role() -> None:
    with pytest.raises(InvalidInput, match="unknown signature role 'boss'"):
        sign_correction(KEYS["bob"], b"x", signer="bob", role="boss", signed_at_s=0.0)
    record = sign_correction(
        KEYS["bob"], b"x", signer="bob", role=SignatureRole.APPROVER, signed_at_s=5.0
    )
    assert record.role == "approver"
    assert type(record.role) is str  # converts to protobuf as a plain string
    assert record.key_id == KEYS["bob"].key_id
    assert record.signed_at_s == 5.0
