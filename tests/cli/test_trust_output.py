"""``-o json|yaml`` of ``pki init | issue | revoke --dir`` and ``keys new``: what each made,
as data a script can use, checked against the files themselves."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from backstop.core.times import rfc3339
from backstop.security.keys import key_id_of, load_private, load_public
from tests.support.secure import backstop


def _as_json(*args: str) -> dict[str, object]:
    data = json.loads(backstop(*args, "-o", "json").stdout)
    assert isinstance(data, dict)
    assert data["apiVersion"] == "backstop.io/v1"
    return data


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_init_and_issue_print_what_they_wrote(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    made = _as_json("pki", "init", "--dir", str(ca_dir))
    ca = _certificate(ca_dir / "ca.crt")
    assert made["kind"] == "CertificateAuthority"
    assert (made["certificate"], made["key"]) == (str(ca_dir / "ca.crt"), str(ca_dir / "ca.key"))
    assert made["serial"] == format(ca.serial_number, "x")
    assert made["fingerprint_sha256"] == ca.fingerprint(hashes.SHA256()).hex()
    assert made["not_after"] == rfc3339(ca.not_valid_after_utc.timestamp())

    out = tmp_path / "ctl"
    text = backstop(
        "pki", "issue", "--dir", str(ca_dir), "--name", "ctl", "--role", "controller",
        "--dns", "ctl.example", "--ip", "10.0.0.5", "--out", str(out), "-o", "yaml",
    ).stdout  # fmt: skip
    issued = yaml.safe_load(text)
    cert = _certificate(out / "controller.crt")
    assert issued["kind"] == "Certificate"
    assert (issued["common_name"], issued["role"]) == ("ctl", "controller")
    assert issued["serial"] == format(cert.serial_number, "x")
    assert issued["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert (issued["dns_names"], issued["ip_addresses"]) == (["ctl.example"], ["10.0.0.5"])
    assert issued["files"] == {
        "certificate": str(out / "controller.crt"),
        "key": str(out / "controller.key"),
        "ca": str(out / "ca.crt"),
    }
    table = backstop(
        "pki", "issue", "--dir", str(ca_dir), "--name", "n1", "--role", "agent",
        "--out", str(tmp_path / "n1"),
    ).stdout  # fmt: skip
    serial = format(_certificate(tmp_path / "n1" / "node.crt").serial_number, "x")
    assert table.startswith(f"agent certificate for n1: {tmp_path / 'n1' / 'node.crt'}, ")
    assert f"serial {serial}" in table


def _ca_with_agent_n1(tmp_path: Path) -> Path:
    ca_dir = tmp_path / "ca"
    backstop("pki", "init", "--dir", str(ca_dir))
    backstop(
        "pki", "issue", "--dir", str(ca_dir), "--name", "n1", "--role", "agent",
        "--out", str(tmp_path / "n1"),
    )  # fmt: skip
    return ca_dir


def test_pki_revoke_at_the_ca_lists_the_serials_it_added(tmp_path: Path) -> None:
    ca_dir = _ca_with_agent_n1(tmp_path)
    serial = format(_certificate(tmp_path / "n1" / "node.crt").serial_number, "x")
    revoked = _as_json("pki", "revoke", "--dir", str(ca_dir), "--node", "n1", "--reason", "lost")
    assert revoked == {
        "apiVersion": "backstop.io/v1",
        "kind": "RevocationList",
        "crl": str(ca_dir / "crl.pem"),
        "added": [serial],
        "listed": 1,
        "number": 1,
    }
    again = _as_json("pki", "revoke", "--dir", str(ca_dir), "--serial", serial, "--reason", "x")
    assert (again["added"], again["listed"], again["number"]) == ([], 1, 2)  # already listed


def test_keys_new_prints_the_key_and_the_trust_policy_entry(tmp_path: Path) -> None:
    path = tmp_path / "ann.pem"
    made = _as_json("keys", "new", "--out", str(path), "--name", "ann", "--role", "approver")
    key = load_private(path)
    assert made["kind"] == "OperatorKey"
    assert made["key_id"] == key.key_id
    assert (made["private_key"], made["public_key"]) == (str(path), f"{path}.pub")
    assert made["public"] == key.public_text()
    assert key_id_of(load_public(Path(f"{path}.pub"))) == key.key_id
    assert made["trust_policy_person"] == {
        "name": "ann",
        "role": "approver",
        "keys": [key.public_text()],
    }


def test_strings_from_the_command_line_are_escaped_in_the_text(tmp_path: Path) -> None:
    ca_dir = _ca_with_agent_n1(tmp_path)
    text = backstop(
        "pki", "revoke", "--dir", str(ca_dir), "--node", "n1", "--reason", "gone\x1b[2J"
    ).stdout
    assert "\x1b" not in text
    assert "gone" in text
