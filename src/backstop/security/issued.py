"""The CA's ledger of issued certificates: which serial was issued to whom.

Kept beside the CA key (``issued.jsonl``, one JSON object per line, appended and fsynced), so
the holder of the CA key can revoke "every certificate of node-a" (see
:mod:`backstop.security.crl`) without the controller's database. Written by
``backstop pki issue`` and by the controller's enrolment service, which signs node
certificates with the CA kept in its TLS directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from backstop.core.errors import InvalidInput
from backstop.security.peers import peer_identity

log = logging.getLogger(__name__)

LEDGER_FILE: Final = "issued.jsonl"
"""File name of the ledger inside a CA directory."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """One line of the ledger."""

    serial: int
    name: str
    role: str
    issued_at_s: float
    not_after_s: float


def record_issued(ca_dir: Path, cert_pem: bytes) -> None:
    """Append a certificate just issued by the CA in ``ca_dir`` to its ledger."""
    identity = peer_identity(cert_pem)
    line = json.dumps(
        {
            "serial": identity.serial,
            "name": identity.name,
            "role": identity.role,
            "issued_at_s": time.time(),
            "not_after_s": identity.not_after.timestamp(),
        },
        sort_keys=True,
    )
    path = ca_dir / LEDGER_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidInput(f"cannot record the issued certificate in {path}: {exc}") from exc


def issued_to(ca_dir: Path, name: str, role: str) -> list[IssuedCertificate]:
    """Every certificate the ledger in ``ca_dir`` records for ``name`` acting as ``role``."""
    return [c for c in read_ledger(ca_dir) if c.name == name and c.role == role]


def read_ledger(ca_dir: Path) -> list[IssuedCertificate]:
    """The ledger's entries (none when it does not exist); a damaged line is an error."""
    path = ca_dir / LEDGER_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            entries.append(
                IssuedCertificate(
                    serial=int(raw["serial"], 16),
                    name=str(raw["name"]),
                    role=str(raw["role"]),
                    issued_at_s=float(raw["issued_at_s"]),
                    not_after_s=float(raw["not_after_s"]),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path} line {number} is not a ledger entry") from exc
    return entries
