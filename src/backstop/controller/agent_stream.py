"""One agent stream as the gateway drives it: its outgoing queue (:class:`StreamLink`, what
the corrections engine sends commands and node policies through), reading one message, and
ending the reader task so that how it ended is always retrieved."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from backstop.api.v1 import agent_pb2
from backstop.controller.node_heads import NodeHeads
from backstop.controller.node_policy_push import NodePolicySet
from backstop.controller.report_limits import SequenceGuard
from backstop.core.errors import InvalidInput
from backstop.core.models import AuditHead, PolicyAuthority, SignatureRecord
from backstop.wire import convert, correction_convert

log = logging.getLogger(__name__)

CLOSE = object()


async def read_message(context: Any) -> Any:
    """Read one message; bytes that are not an AgentMessage become InvalidInput."""
    try:
        return await context.read()
    except DecodeError as exc:
        raise InvalidInput("bytes on the stream are not a valid AgentMessage") from exc


class ReaderDone:
    """Posted into a stream's queue when its reader ends."""

    def __init__(self, task: asyncio.Task[str]) -> None:
        self._task = task

    def error(self) -> str:
        return reader_error(self._task)


def reader_error(task: asyncio.Task[str]) -> str:
    """What a finished reader ended with, always retrieved (never "never retrieved").

    A reader that found its RPC already over (the peer left, the server is stopping) ends
    the stream quietly; any other exception is logged as an error.
    """
    if task.cancelled():
        return ""
    exc = task.exception()
    if isinstance(exc, grpc.aio.BaseError):
        log.debug("agent stream ended under its reader", exc_info=exc)
        return ""
    if exc is not None:
        log.error("agent stream reader failed", exc_info=exc)
        return "internal error reading the stream"
    return task.result()


async def stop_reader(task: asyncio.Task[str]) -> None:
    """Cancel a stream's reader if it still runs, and retrieve how it ended.

    The writer may leave first (its write found the RPC over) while the reader has already
    failed; without this its exception would go unretrieved and be logged at exit.
    """
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    reader_error(task)


class StreamLink:
    """The outgoing side of one agent stream (implements ``corrections.AgentLink``)."""

    def __init__(self, node_id: str, guard: SequenceGuard | None = None) -> None:
        self.node_id = node_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.close_reason = ""
        self.stored_report = 0
        """Highest report sequence stored from this stream's node."""
        self.acked_report = 0
        self.heads: NodeHeads | None = None
        self.error_code = grpc.StatusCode.INVALID_ARGUMENT
        """How the stream ends when its reader returns an error."""
        self.guard = guard if guard is not None else SequenceGuard(0, 0.0)
        """The bounds on this stream's report sequences."""

    def send_command(
        self,
        sequence: int,
        spec_bytes: bytes,
        signatures: tuple[SignatureRecord, ...],
        audit_head: AuditHead,
        authority: PolicyAuthority | None = None,
    ) -> None:
        command = agent_pb2.Command(
            sequence=sequence,
            correction=correction_convert.signed_correction(spec_bytes, signatures, authority),
            audit_head=convert.audit_head_to_pb(audit_head),
        )
        self.queue.put_nowait(agent_pb2.ControllerMessage(command=command))

    def send_policies(self, policies: NodePolicySet) -> None:
        """Queue the node policies in force (and the deletions of such policies)."""
        enforce, deletions = policies
        message = agent_pb2.NodePolicies(
            enforce=[correction_convert.policy_authority_to_pb(a) for a in enforce],
            deletions=[correction_convert.policy_authority_to_pb(a) for a in deletions],
        )
        self.queue.put_nowait(agent_pb2.ControllerMessage(policies=message))

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self.queue.put_nowait(CLOSE)
