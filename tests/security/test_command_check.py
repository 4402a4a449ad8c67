"""The check every receiver makes (node agent, operator, cloud agent): signed times bounded,
``reverts`` only on a resume, and a resume held to the quorum of what it undoes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backstop.core.models import Action, Command, CorrectionSpec, Scope, SignatureRecord
from backstop.security.command_check import NOTHING_HERE, UNKNOWN, CommandCheck, most_guarded
from backstop.security.identities import TrustPolicyFile
from backstop.security.keys import OperatorKey, generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.correction_convert import spec_bytes

NOW = 1_700_000_000.0
PEOPLE = {"alice": "operator", "bob": "approver", "carol": "approver"}


def spec(
    action: Action, *, reverts: str = "", created: float = NOW, ttl: float = 60.0
) -> CorrectionSpec:
    return CorrectionSpec(
        correction_id="cor-0190aa55bb0012345678",
        action=action,
        scope=Scope(all=True),
        reason="unsafe",
        issuer="alice",
        created_at_s=created,
        expires_at_s=created + ttl,
        reverts=reverts,
    )


@pytest.fixture
def keys() -> dict[str, OperatorKey]:
    return {name: generate_key() for name in PEOPLE}


@pytest.fixture
def check(tmp_path: Path, keys: dict[str, OperatorKey]) -> CommandCheck:
    people = [{"name": n, "role": r, "keys": [keys[n].public_text()]} for n, r in PEOPLE.items()]
    policy = {"people": people, "quorum": {"shutdown": 2, "pause": 0}}
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(policy))
    return CommandCheck(TrustPolicyFile(path), clock=lambda: NOW)


def signed(keys: dict[str, OperatorKey], s: CorrectionSpec, *people: str) -> Command:
    data = spec_bytes(s)
    records: list[SignatureRecord] = [
        sign_correction(
            keys[p], data, signer=p, role="issuer" if p == "alice" else "approver", signed_at_s=NOW
        )
        for p in people
    ]
    return Command(1, s, data, tuple(records))


@pytest.mark.parametrize(
    ("command_spec", "reason"),
    [
        pytest.param(spec(Action.PAUSE, ttl=7 * 86400 + 1), "at most 7 days", id="too-long"),
        pytest.param(spec(Action.PAUSE, created=NOW + 301), "in the future", id="from-the-future"),
        pytest.param(
            spec(Action.OBSERVE, reverts="cor-x"), "observe cannot revert", id="observe-reverts"
        ),
        pytest.param(
            spec(Action.PAUSE, reverts="cor-x"), "pause cannot revert", id="pause-reverts"
        ),
        pytest.param(spec(Action.RESUME), "must name the correction", id="resume-reverts-nothing"),
    ],
)
def test_malformed_whoever_signed_it(
    check: CommandCheck,
    keys: dict[str, OperatorKey],
    command_spec: CorrectionSpec,
    reason: str,
) -> None:
    problem = check.problem(signed(keys, command_spec, "alice", "bob", "carol"))
    assert reason in problem


def test_a_resume_needs_the_quorum_of_the_action_it_undoes(
    check: CommandCheck, keys: dict[str, OperatorKey]
) -> None:
    resume = spec(Action.RESUME, reverts="cor-x")
    alone = signed(keys, resume, "alice")
    assert check.problem(alone, reverts_action="pause") == ""
    assert check.problem(alone, reverts_action=NOTHING_HERE) == ""
    assert "resume needs 2 approvals" in check.problem(alone, reverts_action="shutdown")
    # a receiver that cannot know what it undoes asks for the most any undo needs
    assert "resume needs 2 approvals" in check.problem(alone, reverts_action=UNKNOWN)
    assert "resume needs 2 approvals" in check.problem(alone)
    approved = signed(keys, resume, "alice", "bob", "carol")
    assert check.problem(approved, reverts_action=UNKNOWN) == ""


def test_resume_quorum_in_the_policy_overrides_the_undone_actions(
    tmp_path: Path, keys: dict[str, OperatorKey]
) -> None:
    people = [{"name": n, "role": r, "keys": [keys[n].public_text()]} for n, r in PEOPLE.items()]
    path = tmp_path / "trust.json"
    path.write_text(
        json.dumps({"people": people, "quorum": {"pause": 0}, "resume_quorum": {"pause": 1}})
    )
    policy = TrustPolicyFile(path)
    check = CommandCheck(policy, clock=lambda: NOW)
    alone = signed(keys, spec(Action.RESUME, reverts="cor-x"), "alice")
    assert "resume needs 1 approvals" in check.problem(alone, reverts_action="pause")
    needs = policy.current().required_resume_approvals
    assert needs(most_guarded(policy.current())) == max(needs(a.value) for a in Action) == 1
