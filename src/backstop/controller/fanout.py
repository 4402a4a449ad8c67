"""How controller replicas tell each other what changed.

Several replicas can share one PostgreSQL store; each agent holds its stream to one of them. A
correction created on replica A must reach agents connected to replica B, and B's
acknowledgements must move A's view of the correction (and A's watchers) along. Replicas do this
with two events on one PostgreSQL LISTEN/NOTIFY channel:

- ``dispatch <correction id>``: new commands are stored; every replica sends them to the agents
  it holds that have not had them yet.
- ``settle <correction id>``: acknowledgements were recorded; every replica re-reads the
  correction's targets and settles it (completes it once all have answered, updates watchers).

NOTIFY is delivered only to connected listeners, so the events are a fast path, not the record:
the store is. A replica whose listener reconnects re-sends every stored, unacknowledged command
to the agents it holds (``on_resync``); an agent that moves to another replica gets its
unacknowledged commands on connect; a target nobody acknowledges becomes unreachable when the
replica that dispatched it stops waiting.

A single controller on SQLite has nobody to tell: :class:`LocalFanout` does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from backstop.core.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from backstop.controller.store.postgres import PostgresStore

log = logging.getLogger(__name__)

CHANNEL = "backstop_events"
EVENTS = ("dispatch", "settle")
RETRY_S = 1.0

EventHandler = Callable[[str, str], None]
"""Called on the event loop with (event, correction id) for each event from another replica."""


class Fanout(Protocol):
    shared: bool
    """True when other replicas may share the store."""

    def publish(self, event: str, subject: str) -> None:
        """Tell the other replicas; never raises (the store stays the record)."""
        ...

    async def run(self, on_event: EventHandler, on_resync: Callable[[], None]) -> None:
        """Deliver other replicas' events until cancelled."""
        ...


class LocalFanout:
    """One replica alone: nothing to tell, nothing to hear."""

    shared = False

    def publish(self, event: str, subject: str) -> None:
        return None

    async def run(self, on_event: EventHandler, on_resync: Callable[[], None]) -> None:
        return None


class PostgresFanout:
    """Events over PostgreSQL NOTIFY on :data:`CHANNEL`, as ``REPLICA EVENT SUBJECT``."""

    shared = True

    def __init__(self, store: PostgresStore, replica_id: str) -> None:
        if not replica_id or " " in replica_id:
            raise InvalidInput(f"a replica id must be non-empty, without spaces: {replica_id!r}")
        self._store = store
        self.replica_id = replica_id

    def publish(self, event: str, subject: str) -> None:
        try:
            self._store.notify(CHANNEL, f"{self.replica_id} {event} {subject}")
        except StoreError as exc:
            log.warning(
                "could not tell the other replicas; they catch up from the store",
                extra={"event": event, "subject": subject, "error": exc.message},
            )

    async def run(self, on_event: EventHandler, on_resync: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                listener = await asyncio.to_thread(self._store.listen, CHANNEL)
            except StoreError as exc:
                log.warning("cannot listen for other replicas; retrying", extra={"error": exc})
                await asyncio.sleep(RETRY_S)
                continue
            try:
                on_resync()  # whatever was sent while nobody listened
                while True:
                    note = await asyncio.to_thread(listener.get, RETRY_S)
                    if note is None:
                        continue
                    parsed = parse(note.payload)
                    if parsed is not None and parsed[0] != self.replica_id:
                        loop.call_soon(on_event, parsed[1], parsed[2])
            except StoreError as exc:
                log.warning("lost the replica channel; listening again", extra={"error": exc})
                await asyncio.sleep(RETRY_S)
            finally:
                listener.close()


def fanout_for(store: object, replica_id: str) -> Fanout:
    """Events over PostgreSQL when the store is shared; none for a store of one replica."""
    try:
        from backstop.controller.store.postgres import PostgresStore
    except ImportError:  # psycopg not installed: no PostgreSQL store either
        return LocalFanout()
    if isinstance(store, PostgresStore):
        return PostgresFanout(store, replica_id)
    return LocalFanout()


def parse(payload: str) -> tuple[str, str, str] | None:
    """(replica, event, subject) from a payload; None (and a log line) for anything else."""
    parts = payload.split(" ")
    if len(parts) != 3 or parts[1] not in EVENTS:
        log.warning("ignored a malformed replica event", extra={"payload": payload[:200]})
        return None
    return parts[0], parts[1], parts[2]
