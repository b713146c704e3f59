"""Keeps this process's known copies of aggregates current when other processes write.

A command's first attempt starts from the copies this process last loaded or committed
(``prep_es.store.known_copies.KnownAggregates``); a commit refuses a decision made on a stale
copy, and the command decides again on fresh state. Where several processes serve
commands, a copy goes stale whenever another one writes the aggregate — a customer's
account, say, when their requests reach both API workers — and every such command paid
for a refused append and a second attempt (a third of the bookings in the HTTP
benchmark). So each process follows the event store: woken by the append notification,
it reads the events stored since and applies those of aggregates it has a copy of (only
those are decoded); a copy the events do not follow on from is forgotten, and the next
command reads that aggregate from the store. Applying beats forgetting: reading an
account back costs its snapshot and up to a hundred events.

It narrows the window; it does not close it: a write this process has not heard of yet
is still caught by the commit's check.

A user's erasure (``User.UserErased``) drops every copy: copies may hold what the
erased user wrote (a booking's notes), which nothing may keep once they are forgotten;
and this process's cached data key of the user, so that what was sealed with it reads as
erased here as soon as it does where the erasure was made.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Final
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification
from psycopg.sql import SQL, Identifier

from aggregates.user import User
from prep_es.store.eventstore import PrepApplication
from prep_es.store.known_copies import KnownAggregates
from prep_es.store.postgres_recorders import AppendOnlyPostgresApplicationRecorder

logger = logging.getLogger(__name__)

ERASED_TOPIC: Final = User.UserErased.TOPIC
BATCH_SIZE: Final = 1000
WAKE_INTERVAL_S: Final = 0.5
"""Longest wait for a notification before reading anyway (and noticing ``close``)."""
RETRY_INTERVAL_S: Final = 1.0


class KnownCopiesFollower:
    """Applies stored events to the known copies they overtake, from a thread of its
    own. It listens on a connection of its own to ``conninfo`` (the event store's
    database; not one of its pool, which commands need) and reads the events through
    the store."""

    def __init__(self, app: PrepApplication, known: KnownAggregates, conninfo: str) -> None:
        recorder = app.recorder
        assert isinstance(recorder, AppendOnlyPostgresApplicationRecorder)
        self._app = app
        self._conninfo = conninfo
        self._known = known
        self._position = app.position()
        self._listen = SQL("LISTEN {channel}").format(channel=Identifier(recorder.channel_name))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prep-es-known-copies", daemon=True)

    @property
    def position(self) -> int:
        """The notification id up to which copies have been checked."""
        return self._position

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop following (waits for the thread)."""
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except Exception:
                # Copies are only an optimisation: while this is down, stale ones are
                # still refused at commit.
                logger.exception("following the event store failed; trying again")
                self._stopping.wait(RETRY_INTERVAL_S)

    def _follow(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as connection:
            connection.execute(self._listen)  # before reading: no append goes unheard
            while not self._stopping.is_set():
                while self._catch_up() == BATCH_SIZE:
                    pass
                for _ in connection.notifies(timeout=WAKE_INTERVAL_S, stop_after=1):
                    pass

    def _catch_up(self) -> int:
        """Bring the copies up to date with one batch of stored events; how many
        there were."""
        stored = self._app.notifications(self._position, None, BATCH_SIZE)
        erased = [
            notification.originator_id
            for notification in stored
            if notification.topic == ERASED_TOPIC
        ]
        for user_id in erased:
            assert isinstance(user_id, UUID)  # PostgreSQL's uuid column
            self._app.data_keys.forget_erased(user_id)
        if erased:
            self._known.forget_all()
        by_aggregate: dict[UUID, list[Notification]] = {}
        for notification in stored:
            aggregate_id = notification.originator_id
            assert isinstance(aggregate_id, UUID)  # PostgreSQL's uuid column
            by_aggregate.setdefault(aggregate_id, []).append(notification)
        decode = self._app.mapper.to_domain_event
        for aggregate_id, events in by_aggregate.items():
            self._known.advance(
                aggregate_id,
                events[0].originator_version,
                events[-1].originator_version,
                partial(map, decode, events),
            )
        if stored:
            self._position = stored[-1].id
        return len(stored)
