"""The operator's own check of controller commands: expired or unsigned ones are refused."""

from __future__ import annotations

import json
from pathlib import Path

from backstop.core.models import Action, Command, CorrectionSpec, Scope, SignatureRecord
from backstop.security.command_check import CommandCheck
from backstop.security.identities import TrustPolicyFile
from backstop.security.keys import generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.correction_convert import spec_bytes

NOW = 1_700_000_000.0


def command(expires_at_s: float = NOW + 60, action: Action = Action.SHUTDOWN) -> Command:
    spec = CorrectionSpec(
        correction_id="cor-0190aa55bb0012345678",
        action=action,
        scope=Scope(all=True),
        reason="unsafe",
        issuer="alice",
        created_at_s=NOW - 1,
        expires_at_s=expires_at_s,
    )
    return Command(sequence=1, spec=spec, spec_bytes=spec_bytes(spec))


def test_an_expired_command_is_refused() -> None:
    check = CommandCheck(None, clock=lambda: NOW)
    assert check.problem(command(expires_at_s=NOW - 30)) == "expired 30 s ago"
    assert check.problem(command()) == ""


def test_with_a_trust_policy_only_a_command_signed_to_its_quorum_acts(tmp_path: Path) -> None:
    keys = {name: generate_key() for name in ("alice", "bob")}
    policy = tmp_path / "trust.json"
    policy.write_text(
        json.dumps(
            {
                "people": [
                    {"name": "alice", "role": "operator", "keys": [keys["alice"].public_text()]},
                    {"name": "bob", "role": "approver", "keys": [keys["bob"].public_text()]},
                ],
                "quorum": {"shutdown": 1},
            }
        )
    )
    check = CommandCheck(TrustPolicyFile(policy), clock=lambda: NOW)
    unsigned = command()
    assert check.problem(unsigned) == "no issuer signature by alice"

    def sign(person: str, role: str) -> SignatureRecord:
        return sign_correction(
            keys[person], unsigned.spec_bytes, signer=person, role=role, signed_at_s=NOW
        )

    issuer_only = Command(1, unsigned.spec, unsigned.spec_bytes, (sign("alice", "issuer"),))
    assert check.problem(issuer_only) == (
        "shutdown needs 1 approvals from distinct approvers, has none"
    )
    approved = Command(
        1,
        unsigned.spec,
        unsigned.spec_bytes,
        (sign("alice", "issuer"), sign("bob", "approver")),
    )
    assert check.problem(approved) == ""
