"""Roles, the trust policy file (and its errors), lookups, and reloading on change."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from backstop.core.errors import InvalidInput
from backstop.security.identities import (
    DEFAULT_QUORUM,
    Person,
    Role,
    TrustPolicy,
    TrustPolicyFile,
)
from backstop.security.keys import generate_key, key_id_of


def test_roles_are_ordered_by_power_not_alphabet() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    assert not Role.APPROVER < Role.OPERATOR  # alphabetically it would be
    assert Role.ADMIN.at_least(Role.APPROVER)
    assert Role.APPROVER.at_least("approver")
    assert not Role.OPERATOR.at_least(Role.APPROVER)
    assert sorted(Role, reverse=True) == [Role.ADMIN, Role.APPROVER, Role.OPERATOR, Role.VIEWER]
    with pytest.raises(ValueError, match="superuser"):
        Role.ADMIN.at_least("superuser")


def _doc(**people_roles: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    keys = {name: generate_key().public_raw() for name in people_roles}
    doc = {
        "people": [
            {"name": name, "role": role, "keys": [base64.b64encode(keys[name]).decode()]}
            for name, role in people_roles.items()
        ],
    }
    return doc, keys


def test_policy_lookups() -> None:
    doc, keys = _doc(alice="operator", bob="approver")
    doc["quorum"] = {"terminate": 2}
    policy = TrustPolicy.from_dict(doc)

    alice = policy.person("alice")
    assert alice is not None
    assert alice.role is Role.OPERATOR
    assert alice.key_ids == (key_id_of(keys["alice"]),)
    assert alice.public_keys == (keys["alice"],)
    assert policy.person("nobody") is None

    bob_key = key_id_of(keys["bob"])
    owner = policy.owner_of(bob_key)
    assert owner is not None
    assert owner.name == "bob"
    assert policy.public_key(bob_key) == keys["bob"]
    assert policy.owner_of("0" * 16) is None

    assert policy.required_approvals("terminate") == 2
    assert policy.required_approvals("shutdown") == 1  # the default still applies
    assert policy.required_approvals("pause") == 0
    assert [p.name for p in policy.approvers()] == ["bob"]


def test_default_quorum_is_the_two_person_rule_for_severe_actions() -> None:
    policy = TrustPolicy.from_dict({"people": []})
    assert dict(policy.quorum) == dict(DEFAULT_QUORUM) == {"terminate": 1, "shutdown": 1}
    for action in ("observe", "throttle", "pause", "resume"):
        assert policy.required_approvals(action) == 0


def test_pem_keys_are_accepted_in_the_file() -> None:
    from cryptography.hazmat.primitives import serialization

    key = generate_key()
    pem = (
        key.private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    policy = TrustPolicy.from_dict({"people": [{"name": "a", "role": "admin", "keys": [pem]}]})
    assert policy.public_key(key.key_id) == key.public_raw()


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    doc, _ = _doc(alice="operator", bob="approver", carol="admin", vic="viewer")
    doc["quorum"] = {"shutdown": 2, "pause": 1}
    policy = TrustPolicy.from_dict(doc)
    path = tmp_path / "trust.json"
    policy.dump(path)
    assert TrustPolicy.load(path) == policy
    written = json.loads(path.read_text())
    assert written["people"] == doc["people"]
    assert written["quorum"] == {"pause": 1, "shutdown": 2, "terminate": 1}


def test_policy_built_in_code_matches_the_file_form() -> None:
    raw = generate_key().public_raw()
    built = TrustPolicy(people=(Person.with_keys("alice", "operator", [raw]),))
    parsed = TrustPolicy.from_json(built.to_json())
    assert parsed == built


def _people(*entries: object) -> dict[str, Any]:
    return {"people": list(entries)}


KEY_A = base64.b64encode(generate_key().public_raw()).decode()
KEY_B = base64.b64encode(generate_key().public_raw()).decode()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object"),
        ({"people": {}}, "'people' must be a list"),
        ({"people": [], "admins": []}, r"unknown field\(s\) 'admins'"),
        (_people("alice"), r"people\[0\]: expected an object"),
        (_people({"role": "operator"}), "'name' must be a non-empty string"),
        (_people({"name": " ", "role": "operator"}), "'name' must be a non-empty string"),
        (
            _people({"name": "alice", "role": "root", "keys": []}),
            r"people\[0\] \(alice\): unknown role 'root' \(known: viewer, operator, approver, ad",
        ),
        (_people({"name": "alice", "role": "operator", "keys": KEY_A}), "must be a list"),
        (
            _people({"name": "alice", "role": "operator", "keys": ["%%%"]}),
            r"\(alice\): keys\[0\]: public key '%%%' is neither base64 nor a PEM block",
        ),
        (
            _people({"name": "alice", "role": "operator", "keys": ["AAAA"]}),
            "decodes to 3 bytes",
        ),
        (
            _people({"name": "alice", "role": "operator", "keys": [KEY_A], "email": "a@x"}),
            r"unknown field\(s\) 'email'",
        ),
        (
            _people(
                {"name": "alice", "role": "operator", "keys": [KEY_A]},
                {"name": "bob", "role": "approver", "keys": [KEY_B, KEY_A]},
            ),
            "is listed for 'bob' also for 'alice'; a key must belong to exactly one person",
        ),
        (
            _people({"name": "alice", "role": "operator", "keys": [KEY_A, KEY_A]}),
            "is listed for 'alice' twice",
        ),
        (
            _people(
                {"name": "alice", "role": "operator", "keys": [KEY_A]},
                {"name": "alice", "role": "approver", "keys": [KEY_B]},
            ),
            "lists 'alice' twice",
        ),
        ({"quorum": {"terminate": -1}}, "quorum for terminate must be a non-negative integer"),
        ({"quorum": {"terminate": 1.5}}, "quorum for terminate must be a non-negative integer"),
        ({"quorum": {"terminate": True}}, "quorum for terminate must be a non-negative integer"),
        ({"quorum": {"termiante": 2}}, "unknown action 'termiante'"),
        ({"quorum": [2]}, "'quorum' must be an object"),
    ],
)
def test_malformed_policy_is_refused_with_a_clear_error(
    tmp_path: Path, doc: object, message: str
) -> None:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=message) as info:
        TrustPolicy.load(path)
    assert info.value.message.startswith(str(path))


def test_unparseable_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    path.write_text('{"people": [\n')
    with pytest.raises(InvalidInput, match=r"not valid JSON \(line 2"):
        TrustPolicy.load(path)
    with pytest.raises(InvalidInput, match="cannot read trust policy"):
        TrustPolicy.load(tmp_path / "absent.json")


def test_warnings_name_quorums_nobody_can_reach() -> None:
    doc, _ = _doc(alice="operator", bob="approver")
    doc["quorum"] = {"shutdown": 2}
    doc["people"].append({"name": "olga", "role": "operator", "keys": []})
    warnings = TrustPolicy.from_dict(doc).warnings()
    assert warnings == (
        "shutdown needs 2 approvals but only 1 people may approve; it can never be approved",
        "olga is an operator without keys and cannot sign",
    )


def _bump(path: Path) -> None:
    """Move the mtime on so a same-size rewrite within one clock tick is still seen."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_policy_file_reloads_on_change_and_keeps_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trust.json"
    doc, _ = _doc(alice="operator")
    TrustPolicy.from_dict(doc).dump(path)
    watched = TrustPolicyFile(path)
    first = watched.current()
    assert [p.name for p in first.people] == ["alice"]
    assert watched.current() is first  # unchanged file: no reload

    doc2, _ = _doc(alice="operator", bob="approver")
    TrustPolicy.from_dict(doc2).dump(path)  # atomic replace: a new inode
    second = watched.current()
    assert [p.name for p in second.people] == ["alice", "bob"]

    caplog.set_level(logging.ERROR, logger="backstop.security.identities")
    path.write_text('{"people": [{"name": "eve", "role": "god"}]}')
    _bump(path)
    assert watched.current() is second
    assert watched.current() is second
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # logged once per bad edit, not once per call
    assert "unknown role 'god'" in errors[0].getMessage()

    path.unlink()
    assert watched.current() is second

    doc3, _ = _doc(carol="admin")
    path.write_text(json.dumps(doc3))
    assert [p.name for p in watched.current().people] == ["carol"]


def test_policy_file_refuses_a_bad_first_load(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    path.write_text('{"quorum": {"shutdown": -2}}')
    with pytest.raises(InvalidInput, match="non-negative"):
        TrustPolicyFile(path)
