"""Server reflection on the control port: on by default, off with the setting, and admitted
like a viewer's control call (mutual TLS, a person in the trust policy)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from backstop.controller.server import ControllerServer
from backstop.core.settings import ControllerSettings
from backstop.security.tls import channel_credentials
from tests.support.secure import SecureSetup, backstop


async def _services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request]), timeout=10):
        return sorted(s.name for s in response.list_services_response.service)
    raise AssertionError("no reflection response")


async def _symbol(channel: grpc.aio.Channel, symbol: str) -> list[bytes]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    async for response in stub.ServerReflectionInfo(iter([request]), timeout=10):
        return list(response.file_descriptor_response.file_descriptor_proto)
    raise AssertionError("no reflection response")


def _open_mode(tmp_path: Path, **kw: bool) -> ControllerSettings:
    return ControllerSettings(
        listen="127.0.0.1:0", insecure=True, store_url=f"sqlite:///{tmp_path}/d", **kw
    )


def test_reflection_lists_the_services_and_their_schema(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[bytes]]:
        server = ControllerServer(_open_mode(tmp_path))
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await _services(channel), await _symbol(
                    channel, "backstop.v1.ControlService"
                )
        finally:
            await server.stop(0)

    services, files = asyncio.run(scenario())
    assert services == [
        "backstop.v1.AgentGateway",
        "backstop.v1.ControlService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    assert files
    assert any(b"ListNodes" in f for f in files)


def test_no_reflection_when_turned_off(tmp_path: Path) -> None:
    async def scenario() -> grpc.StatusCode:
        server = ControllerServer(_open_mode(tmp_path, reflection=False))
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await _services(channel)
                return caught.value.code()
        finally:
            await server.stop(0)

    assert asyncio.run(scenario()) == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_needs_what_a_control_call_needs(tmp_path: Path) -> None:
    setup = SecureSetup(tmp_path, {}).create({"vera": "viewer"})
    agent_tls = tmp_path / "agent-tls"
    backstop(
        "pki", "issue", "--dir", str(setup.ca_dir), "--name", "n1", "--role", "agent",
        "--out", str(agent_tls),
    )  # fmt: skip
    vera = setup.people["vera"].tls_dir
    settings = ControllerSettings(
        listen="127.0.0.1:0",
        store_url=f"sqlite:///{tmp_path}/d",
        tls_dir=setup.controller_tls,
        trust_policy=setup.policy,
    )

    async def outcome(creds: grpc.ChannelCredentials) -> object:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            try:
                return await _services(channel)
            except grpc.aio.AioRpcError as exc:
                return exc.code()

    async def scenario() -> list[object]:
        nonlocal port
        server = ControllerServer(settings)
        port = await server.start()
        try:
            return [
                await outcome(channel_credentials(vera / "ca.crt")),  # no client certificate
                await outcome(channel_credentials(*(agent_tls / n for n in AGENT_FILES))),
                await outcome(channel_credentials(*(vera / n for n in CLIENT_FILES))),
            ]
        finally:
            await server.stop(0)

    port = 0
    no_cert, agent, viewer = asyncio.run(scenario())
    assert no_cert == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    assert agent == grpc.StatusCode.PERMISSION_DENIED
    assert isinstance(viewer, list)
    assert "backstop.v1.ControlService" in viewer


CLIENT_FILES = ("ca.crt", "client.crt", "client.key")
AGENT_FILES = ("ca.crt", "node.crt", "node.key")
