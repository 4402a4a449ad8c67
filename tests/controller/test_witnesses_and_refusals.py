"""Witnessed heads through a real controller, and the refusals it audits (open mode).

Raw client streams stand in for agents (they send heads that today's agent does not, and
messages no agent would); the secure, multi-process versions are in tests/security.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from backstop.api.v1 import agent_pb2, control_pb2, control_pb2_grpc, types_pb2
from backstop.controller.server import ControllerServer
from backstop.core.models import AuditHead
from tests.controller.test_gateway import (
    hello,
    list_nodes,
    open_stream,
    read_until_error,
    run_with_server,
    until,
)

W1 = types_pb2.AuditHead(seq=3, hash="a" * 64)
W2 = types_pb2.AuditHead(seq=5, hash="b" * 64)
J1 = types_pb2.AuditHead(seq=10, hash="c" * 64)


def _refusals(server: ControllerServer, action: str) -> list[Any]:
    return [e for e in server.store.list_audit() if e.action == action]


def test_heads_from_hello_and_reports_are_kept_and_listed(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        writes: list[tuple[Any, ...]] = []
        store = server.store
        record = store.record_node_heads

        def spy(*args: Any) -> None:
            writes.append(args)
            record(*args)

        store.record_node_heads = spy  # type: ignore[method-assign]
        channel, call = await open_stream(address)
        first = hello("n1")
        first.hello.witnessed_audit_head.CopyFrom(W1)
        first.hello.journal_head.CopyFrom(J1)
        await call.write(first)
        await call.read()
        (node,) = await list_nodes(address)
        assert (node.witnessed_audit_head, node.journal_head) == (W1, J1)
        for seq in (1, 2, 3):  # the same heads again: nothing to write
            report = agent_pb2.Report(sequence=seq, witnessed_audit_head=W1, journal_head=J1)
            await call.write(agent_pb2.AgentMessage(report=report))
        report = agent_pb2.Report(sequence=4, witnessed_audit_head=W2, journal_head=J1)
        await call.write(agent_pb2.AgentMessage(report=report))

        async def moved() -> bool:
            return (await list_nodes(address))[0].witnessed_audit_head == W2

        await until(moved)
        assert len(writes) == 2
        # an older head (a trimmed journal) never replaces the one kept
        old = agent_pb2.Report(sequence=5, witnessed_audit_head=W1, journal_head=J1)
        old.journal_head.seq = 2
        await call.write(agent_pb2.AgentMessage(report=old))
        await until(lambda: _stored(server, 5))
        (node,) = await list_nodes(address)
        assert (node.witnessed_audit_head, node.journal_head) == (W2, J1)
        assert len(writes) == 2
        await call.done_writing()
        await channel.close()

    run_with_server(tmp_path, scenario)


async def _stored(server: ControllerServer, sequence: int) -> bool:
    return server.store.last_report_sequence("n1") >= sequence


def test_a_malformed_head_refuses_the_hello(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        first = hello("n1")
        first.hello.journal_head.seq = 4  # an index without a hash
        await call.write(first)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "audit head" in (err.value.details() or "")
        await channel.close()
        (entry,) = _refusals(server, "agent.refused")
        assert (entry.actor, entry.details["refusal"]) == ("n1", "invalid_message")

    run_with_server(tmp_path, scenario)


def test_corrections_and_get_audit_head_return_the_head(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        await call.write(hello("n1"))
        await call.read()
        async with grpc.aio.insecure_channel(address) as ctl_channel:
            ctl = control_pb2_grpc.ControlServiceStub(ctl_channel)
            created = await ctl.CreateCorrection(
                control_pb2.CreateCorrectionRequest(
                    action=types_pb2.ACTION_PAUSE,
                    scope=types_pb2.Scope(all=True),
                    reason="test",
                    issuer="alice",
                )
            )
            head = server.store.audit_head()
            assert head.seq >= 2
            assert created.audit_head.seq >= 2
            assert created.audit_head.seq <= head.seq
            got = await ctl.GetAuditHead(control_pb2.GetAuditHeadRequest())
            assert AuditHead(got.seq, got.hash) == server.store.audit_head()
            listed = await ctl.ListCorrections(control_pb2.ListCorrectionsRequest())
            assert listed.corrections[0].audit_head.seq >= created.audit_head.seq
            read = await ctl.GetCorrection(
                control_pb2.GetCorrectionRequest(correction_id=created.spec.correction_id)
            )
            entries = {e.seq: e.hash for e in server.store.list_audit()}
            assert entries[read.audit_head.seq] == read.audit_head.hash
        await channel.close()

    run_with_server(tmp_path, scenario)


def test_repeated_bad_streams_are_audited_once_per_window(tmp_path: Path) -> None:
    attempts = 40

    async def scenario(server: ControllerServer, address: str) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            raw = channel.stream_stream(
                "/backstop.v1.AgentGateway/Connect",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            for _ in range(attempts):
                call = raw()
                await call.write(b"\xff\xfe garbage")
                with pytest.raises(grpc.aio.AioRpcError):
                    await call.read()
        entries = _refusals(server, "agent.refused")
        assert [(e.actor, e.details["refusal"], e.details["count"]) for e in entries] == [
            ("unknown", "undecodable", 1)
        ]
        assert entries[0].details["peer"].startswith("ipv")
        server.refusals.flush_all()
        entries = _refusals(server, "agent.refused")
        assert [e.details["count"] for e in entries] == [1, attempts - 1]

    run_with_server(tmp_path, scenario)


def test_oversized_messages_are_audited_on_streams_and_calls(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        limit = server.settings.max_message_bytes
        channel, call = await open_stream(address)
        await call.write(hello("big"))
        await call.read()
        huge = agent_pb2.Report(sequence=1, workloads=[types_pb2.Workload(workload_id="x" * limit)])
        await call.write(agent_pb2.AgentMessage(report=huge))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await read_until_error(call)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"over the limit of {limit} bytes" in (err.value.details() or "")
        await channel.close()
        async with grpc.aio.insecure_channel(address) as ctl_channel:
            ctl = control_pb2_grpc.ControlServiceStub(ctl_channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ctl.ListWorkloads(control_pb2.ListWorkloadsRequest(node_id="n" * limit))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the limit is the configured one; smaller calls still work
            await ctl.ListWorkloads(control_pb2.ListWorkloadsRequest())
        stream = _refusals(server, "agent.refused")
        unary = _refusals(server, "request.refused")
        assert [(e.subject, e.details["refusal"]) for e in stream] == [
            ("/backstop.v1.AgentGateway/Connect", "oversized")
        ]
        assert [(e.subject, e.details["refusal"]) for e in unary] == [
            ("/backstop.v1.ControlService/ListWorkloads", "oversized")
        ]
        assert unary[0].details["size"] > limit

    run_with_server(tmp_path, scenario)
