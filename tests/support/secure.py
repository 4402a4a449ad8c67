"""A secured Backstop for end-to-end tests, set up with the real CLI as an operator would.

``backstop pki init`` makes a CA; ``pki issue`` gives the controller a server certificate and
each person a client certificate; ``keys new`` gives each person an Ed25519 key; a trust policy
maps people to roles and keys and sets the quorum. Nodes join with ``pki token`` and
``agent enroll``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from backstop.security.keys import load_public, public_path, public_to_text


def backstop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "backstop", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise AssertionError(f"backstop {' '.join(args)} failed: {result.stderr}{result.stdout}")
    return result


@dataclass
class Person:
    name: str
    role: str
    tls_dir: Path
    key: Path

    def env(self) -> dict[str, str]:
        return {
            "BACKSTOP_TLS_DIR": str(self.tls_dir),
            "BACKSTOP_KEY": str(self.key),
            "BACKSTOP_USER": self.name,
        }


@dataclass
class SecureSetup:
    root: Path
    quorum: dict[str, int]
    people: dict[str, Person] = field(default_factory=dict)

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def controller_tls(self) -> Path:
        return self.root / "controller-tls"

    @property
    def policy(self) -> Path:
        return self.root / "trust.json"

    def create(self, roles: dict[str, str]) -> SecureSetup:
        backstop("pki", "init", "--dir", str(self.ca_dir))
        backstop(
            "pki", "issue", "--dir", str(self.ca_dir), "--name", "controller",
            "--role", "controller", "--dns", "localhost", "--ip", "127.0.0.1",
            "--out", str(self.controller_tls),
        )  # fmt: skip
        shutil.copy2(self.ca_dir / "ca.key", self.controller_tls / "ca.key")
        for name, role in roles.items():
            home = self.root / "people" / name
            backstop(
                "pki", "issue", "--dir", str(self.ca_dir), "--name", name, "--role", "client",
                "--out", str(home),
            )  # fmt: skip
            backstop("keys", "new", "--out", str(home / "key.pem"), "--name", name)
            self.people[name] = Person(name, role, home, home / "key.pem")
        self.write_policy()
        return self

    def write_policy(self) -> None:
        people = [
            {
                "name": p.name,
                "role": p.role,
                "keys": [public_to_text(load_public(public_path(p.key)))],
            }
            for p in self.people.values()
        ]
        tmp = self.policy.with_suffix(".tmp")
        tmp.write_text(json.dumps({"people": people, "quorum": self.quorum}))
        tmp.replace(self.policy)

    def controller_args(self) -> list[str]:
        return [
            "--tls-dir", str(self.controller_tls),
            "--trust-policy", str(self.policy),
            "--enrol-listen", "127.0.0.1:0",
        ]  # fmt: skip

    def foreign_agent_tls(self, node_id: str, state_dir: Path) -> None:
        """Give a node a certificate from another CA (an attacker's)."""
        other = state_dir.parent / f"other-ca-{node_id}"
        backstop("pki", "init", "--dir", str(other))
        backstop(
            "pki", "issue", "--dir", str(other), "--name", node_id, "--role", "agent",
            "--out", str(state_dir / "tls"),
        )  # fmt: skip
        shutil.copy2(self.ca_dir / "ca.crt", state_dir / "tls" / "ca.crt")


def tampered_crl(pem: bytes) -> bytes:
    """The same CRL with one byte of a listed serial changed (its signature no longer fits)."""
    crl = x509.load_pem_x509_crl(pem)
    der = bytearray(crl.public_bytes(serialization.Encoding.DER))
    serial = next(iter(crl)).serial_number.to_bytes(17, "big").lstrip(b"\0")
    at = bytes(der).index(serial)
    der[at + len(serial) // 2] ^= 0x01
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN X509 CRL-----\n{body}-----END X509 CRL-----\n".encode()
