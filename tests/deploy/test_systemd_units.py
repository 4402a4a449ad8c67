"""The shipped systemd units: they parse, are ``Type=notify``, and carry their hardening.

Parsed here as systemd reads them (sections, ``Key=value``, ``\\`` continuations, repeated keys
kept in order); where ``systemd-analyze`` is installed it verifies them too, and its offline
security score must stay at or under the figure docs/operations.md gives.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "deploy" / "systemd" / "backstop-controller.service"
AGENT = ROOT / "agent" / "backstop-agent.service"

COMMON = {
    "Type": "notify",
    "NotifyAccess": "main",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
}
CONTROLLER_ONLY = {
    "DynamicUser": "yes",
    "CapabilityBoundingSet": "",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "ReadWritePaths": "/var/lib/backstop-controller",
}
AGENT_CAPABILITIES = {
    "CAP_KILL",
    "CAP_SYS_PTRACE",
    "CAP_DAC_OVERRIDE",
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
}
LIMITS = {CONTROLLER: 3.5, AGENT: 3.7}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            section = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not Key=value: {line!r}"
        assert key.strip().isidentifier(), f"{path.name}: not a key: {line!r}"
        assert section is not None, f"{path.name}: {key} outside a section"
        section.setdefault(key.strip(), []).append(value.strip())
    assert not pending, f"{path.name} ends in a continuation"
    return sections


def _service(path: Path) -> dict[str, list[str]]:
    sections = parse_unit(path)
    assert set(sections) == {"Unit", "Service", "Install"}
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    return sections["Service"]


@pytest.mark.parametrize("path", [CONTROLLER, AGENT], ids=["controller", "agent"])
def test_units_parse_and_carry_the_common_hardening(path: Path) -> None:
    service = _service(path)
    for key, value in COMMON.items():
        assert service.get(key) == [value], f"{path.name}: {key}"
    assert service["SystemCallFilter"][0] == "@system-service"
    assert "~@privileged" in service["SystemCallFilter"][1].split()
    assert int(service["WatchdogSec"][0]) > 0
    assert "--log-format json" in service["ExecStart"][0]


def test_controller_unit_runs_unprivileged() -> None:
    service = _service(CONTROLLER)
    for key, value in CONTROLLER_ONLY.items():
        assert service.get(key) == [value], key
    assert "controller serve" in service["ExecStart"][0]
    assert "/var/lib/backstop-controller/tls" in service["ExecStart"][0]


def test_agent_unit_keeps_only_the_privileges_it_documents() -> None:
    service = _service(AGENT)
    assert set(service["CapabilityBoundingSet"][0].split()) == AGENT_CAPABILITIES
    assert service["DevicePolicy"] == ["closed"]
    assert all(d.startswith("char-nvidia-") for d in service["DeviceAllow"])
    assert service["RestrictNamespaces"] == ["net"]
    docs = (ROOT / "docs" / "operations.md").read_text()
    section = docs.split("### Privileges of the agent's unit", 1)[1].split("\n## ", 1)[0]
    for capability in AGENT_CAPABILITIES:
        assert f"`{capability}`" in section, capability


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not here")
@pytest.mark.parametrize("path", [CONTROLLER, AGENT], ids=["controller", "agent"])
def test_systemd_analyze_verifies_and_scores_the_units(path: Path, tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: the same unit with one that does
    unit = tmp_path / path.name
    unit.write_text(path.read_text().replace("/usr/local/bin/backstop", "/bin/true"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert "Unknown key" not in verify.stderr
    assert "Unknown lvalue" not in verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", security.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze has no offline security score: {security.stderr}")
    assert float(found.group(1)) <= LIMITS[path]
