"""The controller, agent and CLI refuse plaintext anywhere but loopback, and half-set TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backstop.agent.daemon import AgentDaemon
from backstop.cli.client import ControllerClient
from backstop.controller.server import ControllerServer
from backstop.core.errors import InvalidInput
from backstop.core.settings import AgentSettings, ControllerSettings


@pytest.mark.parametrize("listen", ["0.0.0.0:7443", "10.1.2.3:7443", "[::]:7443", "example.com:1"])
def test_controller_refuses_plaintext_off_loopback(listen: str, tmp_path: Path) -> None:
    settings = ControllerSettings(listen=listen, insecure=True, store_url=f"sqlite:///{tmp_path}/d")
    with pytest.raises(InvalidInput, match="plaintext is allowed only on loopback"):
        ControllerServer(settings)


def test_controller_requires_tls_and_trust_policy_unless_insecure(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs --tls-dir and --trust-policy"):
        ControllerServer(ControllerSettings(store_url=f"sqlite:///{tmp_path}/d"))
    with pytest.raises(InvalidInput, match=r"ca\.crt is missing"):
        ControllerServer(ControllerSettings(tls_dir=tmp_path, trust_policy=tmp_path / "t.json"))
    with pytest.raises(InvalidInput, match="cannot be combined"):
        ControllerServer(ControllerSettings(insecure=True, tls_dir=tmp_path))


def test_a_replica_id_must_be_one_printable_word(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/d"
    for bad in ("two words", "tab\there", "bell\a"):
        with pytest.raises(InvalidInput, match="must be printable, no spaces"):
            ControllerServer(ControllerSettings(insecure=True, store_url=store, controller_id=bad))

    async def name_of_a_replica() -> str:  # the gRPC server needs a running event loop
        named = ControllerServer(
            ControllerSettings(insecure=True, store_url=store, controller_id="r1")
        )
        named.store.close()
        return named.controller_id

    assert asyncio.run(name_of_a_replica()) == "r1"


def test_agent_refuses_plaintext_off_loopback_and_unenrolled_tls(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="plaintext is allowed only on loopback"):
        AgentDaemon(AgentSettings(controller="10.1.2.3:7443", insecure=True, state_dir=tmp_path))
    with pytest.raises(InvalidInput, match="enrol the node first"):
        AgentDaemon(AgentSettings(controller="ctl.example:7443", state_dir=tmp_path))


def test_cli_needs_an_identity_or_explicit_insecure_loopback() -> None:
    with pytest.raises(InvalidInput, match="no TLS identity"):
        ControllerClient("127.0.0.1:7443")
    with pytest.raises(InvalidInput, match="plaintext is allowed only on loopback"):
        ControllerClient("192.0.2.1:7443", insecure=True)
