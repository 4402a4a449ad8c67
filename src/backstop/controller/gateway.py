"""The agent gateway: terminates each agent's long-lived ``Connect`` stream.

Per stream: the first message must be a Hello (within ``hello_timeout_s``); the node is
registered, a Welcome goes down, every unacknowledged, unexpired command stored for the node is
sent (whatever sequence the Hello names), and then reports and acks are read while commands are
written. A malformed message, or a report past a bound (``report_limits``), ends that stream
with INVALID_ARGUMENT and a message saying what was wrong; nothing from it is stored, and no
other stream is affected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from backstop.api.v1 import agent_pb2, agent_pb2_grpc
from backstop.controller import metrics, report_limits
from backstop.controller.agent_stream import (
    CLOSE,
    ReaderDone,
    StreamLink,
    read_message,
    stop_reader,
)
from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.message_limit import MessageTooLarge
from backstop.controller.node_heads import NodeHeads
from backstop.controller.node_policy_push import NodePolicyPush
from backstop.controller.refusals import RefusalLog, actor_of, peer_of
from backstop.controller.report_limits import ReportRefused, SequenceGuard
from backstop.controller.store.base import Store
from backstop.core.errors import BackstopError, InvalidInput
from backstop.core.models import Report
from backstop.core.settings import ControllerSettings
from backstop.security.tls import peer_identity_from_context
from backstop.wire import checks, convert, correction_convert

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
PING_INTERVAL_S = 5.0
REPORT_ACK_INTERVAL_S = 0.5


class AgentGateway(agent_pb2_grpc.AgentGatewayServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: Store,
        engine: CorrectionsEngine,
        settings: ControllerSettings,
        controller_id: str,
        *,
        mutual_tls: bool = False,
        refusals: RefusalLog | None = None,
        on_reports: Callable[[Sequence[Report]], None] | None = None,
    ) -> None:
        self._store = store
        self._node_policies = NodePolicyPush(store)
        self._links: dict[str, StreamLink] = {}
        self._on_reports = on_reports
        """Told of each batch of newly stored reports (policy evaluation)."""
        self._engine = engine
        self._refusals = refusals if refusals is not None else RefusalLog(engine.records.audit)
        self._settings = settings
        self._controller_id = controller_id
        self._mutual_tls = mutual_tls
        self._reports: list[tuple[StreamLink, Report]] = []
        self._report_writer: asyncio.Task[None] | None = None
        self._batches_taken = 0
        self._batches_done = 0
        self._batch_written = asyncio.Condition()

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        hello = await self._read_hello(context)
        if hello is None:
            return
        node = convert.node_from_pb(hello.node)
        refusal, reason = self._identity_problem(context, node.node_id)
        if refusal:
            metrics.STREAM_ERRORS.labels(reason="identity").inc()
            self._refuse(context, refusal, reason, node.node_id)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            return
        before = self._store.get_node(node.node_id)
        stored = self._store.last_report_sequence(node.node_id)
        away_s = time.time() - before.last_seen_s if before is not None else 0.0
        link = StreamLink(node.node_id, SequenceGuard(stored, away_s))
        self._store.upsert_node(node, time.time(), self._controller_id)
        link.heads = NodeHeads(self._store, node.node_id, before)
        link.heads.note(
            convert.audit_head_from_pb(hello.witnessed_audit_head),
            convert.audit_head_from_pb(hello.journal_head),
        )
        self._engine.attach(link)
        log.info(
            "agent connected",
            extra={"node": node.node_id, "peer": context.peer(), "gpus": len(node.gpus)},
        )
        reader: asyncio.Task[str] | None = None
        try:
            await context.write(
                agent_pb2.ControllerMessage(
                    welcome=agent_pb2.Welcome(
                        controller_id=self._controller_id,
                        report_interval_s=self._settings.report_interval_s,
                        protocol_version=PROTOCOL_VERSION,
                        last_report_sequence=stored,
                    )
                )
            )
            self._engine.redeliver(node.node_id)
            self._links[node.node_id] = link
            policies = self._node_policies.current()
            if self._node_policies.digest(policies) != hello.node_policies:
                link.send_policies(policies)
            link.stored_report = link.acked_report = stored
            reader = asyncio.create_task(self._read_loop(context, node.node_id, link))
            error = await self._write_loop(context, link, reader)
            # The stream's reports are through the store before its status goes out, so a
            # client that saw the end may read what was stored.
            await self.reports_written()
            if error:
                metrics.STREAM_ERRORS.labels(reason="invalid_message").inc()
                await context.abort(link.error_code, error)
        finally:
            if reader is not None:
                await stop_reader(reader)
            if self._links.get(node.node_id) is link:
                del self._links[node.node_id]
            if self._engine.detach(link):
                self._store.set_connected(node.node_id, False, time.time(), self._controller_id)
                log.info("agent disconnected", extra={"node": node.node_id})

    def push_policies(self) -> None:
        """Send every connected agent the node policies in force now, when they changed."""
        current = self._node_policies.current()
        pushed = self._node_policies.changed(current)
        if pushed:
            for link in list(self._links.values()):
                link.send_policies(current)

    def _identity_problem(self, context: Any, node_id: str) -> tuple[str, str]:
        """With mutual TLS, a stream may only speak for the node its certificate names.
        The refusal's class and reason, or two empty strings."""
        if not self._mutual_tls:
            return "", ""
        peer = peer_identity_from_context(context)
        if peer is None or peer.role != "agent":
            return (
                "not_an_agent_certificate",
                "an agent certificate is required (backstop agent enroll)",
            )
        if peer.name != node_id:
            return "wrong_node", f"certificate is for node {peer.name!r}, not {node_id!r}"
        listed = self._engine.authz.revocation_problem(peer)
        if listed:
            return "revoked", listed
        revoked_at = self._store.revoked_before(node_id)
        if revoked_at is not None:
            issued = self._store.certificate_issued_at(peer.serial)
            if issued is None or issued <= revoked_at:
                return "revoked", f"certificate {peer.serial[:16]} of node {node_id} is revoked"
        return "", ""

    def _refuse(
        self,
        context: Any,
        refusal: str,
        reason: str,
        node_id: str = "",
        *,
        action: str = "agent.refused",
    ) -> None:
        """Audit (aggregated) a refused stream or message under the certificate's name."""
        actor = actor_of(context, node_id)
        self._refusals.refuse(
            actor,
            action,
            node_id or "-",
            refusal=refusal,
            reason=reason,
            peer=peer_of(context),
        )

    async def _read_hello(self, context: Any) -> agent_pb2.Hello | None:
        try:
            first = await asyncio.wait_for(read_message(context), self._settings.hello_timeout_s)
        except InvalidInput as exc:
            too_large = isinstance(exc, MessageTooLarge)  # audited where it was measured
            metrics.STREAM_ERRORS.labels(reason="oversized" if too_large else "undecodable").inc()
            if not too_large:
                self._refuse(context, "undecodable", exc.message)
            code = (
                grpc.StatusCode.RESOURCE_EXHAUSTED
                if too_large
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            await context.abort(code, exc.message)
            return None
        except TimeoutError:
            metrics.STREAM_ERRORS.labels(reason="no_hello").inc()
            reason = f"no Hello within {self._settings.hello_timeout_s:g} s"
            self._refuse(context, "no_hello", reason)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, reason)
            return None
        if first is grpc.aio.EOF:
            return None
        if not first.HasField("hello"):
            metrics.STREAM_ERRORS.labels(reason="no_hello").inc()
            reason = "the first message of a stream must be a Hello"
            self._refuse(context, "no_hello", reason)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
            return None
        try:
            convert.node_from_pb(first.hello.node)
            checks.counter(first.hello.last_command_sequence, "last_command_sequence")
            convert.audit_head_from_pb(first.hello.witnessed_audit_head)
            convert.audit_head_from_pb(first.hello.journal_head)
        except InvalidInput as exc:
            metrics.STREAM_ERRORS.labels(reason="invalid_hello").inc()
            reason = f"invalid Hello: {exc.message}"
            self._refuse(context, "invalid_message", reason, first.hello.node.node_id[:128])
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
            return None
        hello: agent_pb2.Hello = first.hello
        return hello

    async def _write_loop(self, context: Any, link: StreamLink, reader: asyncio.Task[str]) -> str:
        """Write queued messages until the reader ends; return the reader's error, if any.

        Between messages: a ReportAck when more reports were stored (at most every
        ``REPORT_ACK_INTERVAL_S``), and a Ping when the stream was quiet for ``PING_INTERVAL_S``.
        The reader posts a ``ReaderDone`` into the same queue, so only the queue is awaited.
        """
        reader.add_done_callback(lambda task: link.queue.put_nowait(ReaderDone(task)))
        last_ping = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(link.queue.get(), REPORT_ACK_INTERVAL_S)
            except TimeoutError:
                message = None
            if isinstance(message, ReaderDone):
                return message.error()
            if link.stored_report > link.acked_report:
                link.acked_report = link.stored_report
                await context.write(
                    agent_pb2.ControllerMessage(
                        report_ack=agent_pb2.ReportAck(sequence=link.acked_report)
                    )
                )
            if message is None:
                if time.monotonic() - last_ping >= PING_INTERVAL_S:
                    last_ping = time.monotonic()
                    await context.write(
                        agent_pb2.ControllerMessage(ping=agent_pb2.Ping(sent_at_s=time.time()))
                    )
                continue
            if message is CLOSE:
                await context.abort(grpc.StatusCode.ABORTED, link.close_reason)
            await context.write(message)

    async def _read_loop(self, context: Any, node_id: str, link: StreamLink) -> str:
        """Handle reports and acks; return an error text for a malformed message, else ''."""
        while True:
            try:
                message = await read_message(context)
            except MessageTooLarge as exc:  # audited where it was measured
                link.error_code = grpc.StatusCode.RESOURCE_EXHAUSTED
                return exc.message
            except InvalidInput as exc:
                self._refuse(context, "undecodable", exc.message, node_id)
                return exc.message
            if message is grpc.aio.EOF:
                return ""
            try:
                self._handle(node_id, message, link)
            except InvalidInput as exc:
                log.warning(
                    "invalid message from agent", extra={"node": node_id, "error": exc.message}
                )
                error = f"invalid {message.WhichOneof('body') or 'empty'} message: {exc.message}"
                if isinstance(exc, ReportRefused):
                    self._refuse(context, exc.bound, error, node_id, action="report.refused")
                else:
                    self._refuse(context, "invalid_message", error, node_id)
                return error
            except BackstopError:
                log.exception("could not handle agent message", extra={"node": node_id})

    def _queue_report(self, link: StreamLink, report: Report) -> None:
        """Queue a report; the writer stores what has gathered in one transaction."""
        self._reports.append((link, report))
        if self._report_writer is None or self._report_writer.done():
            self._report_writer = asyncio.get_running_loop().create_task(self._write_reports())

    async def _write_reports(self) -> None:
        """Store queued reports a batch at a time, in a worker thread.

        The event loop keeps reading streams while a batch is written, and what arrives
        meanwhile becomes the next batch. Only one batch is in flight, so one node's reports
        are stored in sequence order.
        """
        while self._reports:
            batch, self._reports = self._reports, []
            self._batches_taken += 1
            try:
                results = await asyncio.to_thread(self._store_reports, batch)
            except Exception:  # the agents keep unconfirmed reports and send them again
                log.exception("could not store a batch of reports", extra={"reports": len(batch)})
                results = [None] * len(batch)
            finally:
                self._batches_done += 1
                async with self._batch_written:
                    self._batch_written.notify_all()
            fresh = []
            for (link, report), stored in zip(batch, results, strict=True):
                if stored is None:
                    continue  # not stored: never confirm it, so the agent keeps and resends it
                if stored:
                    metrics.REPORTS.inc()
                    fresh.append(report)
                else:
                    metrics.REPORTS_DUPLICATE.inc()
                link.stored_report = max(link.stored_report, report.sequence)
            if fresh and self._on_reports is not None:
                try:
                    self._on_reports(fresh)
                except Exception:  # a failing evaluation never stops the reports
                    log.exception("judging the reports against the policies failed")

    async def reports_written(self) -> None:
        """Wait until every report queued so far has been through the store (stored, a
        repeat, or refused), without waiting for reports that arrive later."""
        target = self._batches_taken + (1 if self._reports else 0)
        async with self._batch_written:
            await self._batch_written.wait_for(lambda: self._batches_done >= target)

    def _store_reports(self, batch: list[tuple[StreamLink, Report]]) -> list[bool | None]:
        try:
            return self._store.record_reports([r for _, r in batch], time.time())
        except BackstopError:
            pass
        # one report must not keep the others out: store them one by one
        results: list[bool | None] = []
        for _, report in batch:
            try:
                results.extend(self._store.record_reports([report], time.time()))
            except BackstopError as exc:
                log.warning(
                    "report not stored; the agent will resend it",
                    extra={"node": report.node_id, "error": exc.message},
                )
                results.append(None)
        return results

    def _handle(self, node_id: str, message: agent_pb2.AgentMessage, link: StreamLink) -> None:
        kind = message.WhichOneof("body")
        if kind == "report":
            report_limits.check(message.report, link.guard)
            report = convert.report_from_pb(message.report, node_id, decode_gpus=False)
            if link.heads is not None:
                link.heads.note(report.witnessed_audit_head, report.journal_head)
            self._queue_report(link, report)
        elif kind == "ack":
            self._engine.progress.queue_ack(node_id, correction_convert.ack_from_pb(message.ack))
        elif kind == "hello":
            raise InvalidInput("Hello may only be the first message of a stream")
        else:
            raise InvalidInput("message has no body")
