"""The event decoder: reads and decodes stored events once for every runner of a process."""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from aggregates.user import User
from prep_es.store.eventstore import PrepApplication

FEED_CHUNK_IDS = 1_000
FEED_CHUNKS_MAX = 8
"""The shared reader's chunks kept (about 8k events, ~5 MB with their decoded events per
1,000): runners of a rebuild drift apart further than that, but 24 chunks cost a
rebuild-all ~30 MB more peak memory for no throughput this machine could measure."""
NARROW_SHARE = 0.1
LEAD_WAIT_S_MAX = 0.25
"""How long a rebuilding runner about to read a chunk nobody has read waits, at most, for
rebuilding runners more than half the kept chunks behind it (then it reads anyway)."""
LEAD_PAUSE_S = 0.002
READER_STALE_S = 1.0
NARROW_SAMPLE_MIN = 5_000


class EventDecoder:
    """Reads and decodes stored events for every runner of a process, once between them.

    Runners of different projections follow the same store, at different speeds and
    with different topics. Rather than each asking the store for its own topics, they
    read through this: the store is read in chunks of ``chunk_ids`` notification ids
    (each chunk once, with the topics of every runner that reads through this decoder,
    see :meth:`follow`; a chunk is extended as the head moves on), and each runner
    keeps the events of its topics. Events are decoded once per chunk, on
    first use. The most recently used ``chunks_max`` chunks are kept (memory stays
    bounded, however long the store); a runner narrower than ``NARROW_SHARE`` of the
    events reads a chunk nobody has read yet with its own topics (the database skips
    the rest), rather than fetching everything for runners that may never come.

    Ids below a head are all committed (see :mod:`projections.runners`), so a chunk read up
    to a head is complete up to it. Events are immutable, so sharing them across
    threads is safe."""

    def __init__(
        self,
        app: PrepApplication,
        *,
        chunk_ids: int = FEED_CHUNK_IDS,
        chunks_max: int = FEED_CHUNKS_MAX,
    ) -> None:
        assert chunk_ids > 0 and chunks_max > 0
        self._app = app
        self._chunk_ids = chunk_ids
        self._chunks_max = chunks_max
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()
        self._lock = threading.Lock()
        self._topic_counts: dict[str, int] = {}
        self._counted = 0
        self._rebuilding: dict[int, tuple[int, float]] = {}
        """Per thread reading for a rebuild: the chunk it is at, and when it got there."""
        self._topics: frozenset[str] = frozenset()
        """The topics chunks are read with: those of the runners that read through this
        decoder (none yet: every topic)."""

    def follow(self, topics: frozenset[str]) -> None:
        """A runner of ``topics`` reads through this decoder: chunks are read with its
        topics too. Events no runner follows (a kitchen-day's claims, idempotency
        records) are then left in the database, and a process that runs only some of
        the projections reads only their events. Chunks read before without them are
        dropped (runners are made before they read, so this is at the start)."""
        with self._lock:
            if topics <= self._topics:
                return
            self._topics |= topics
            self._chunks.clear()

    def notifications(
        self, start: int, stop: int, limit: int, topics: frozenset[str], *, rebuilding: bool
    ) -> list[Notification]:
        """Up to ``limit`` stored events of ``topics`` with ids in (``start``, ``stop``],
        in id order; ``stop`` must not be beyond the store's head. ``rebuilding``: for a
        generation catching up from far behind, which keeps pace with the others (see
        :meth:`_keep_pace`)."""
        found: list[Notification] = []
        if not topics:
            return found
        position = start
        while position < stop and len(found) < limit:
            index = position // self._chunk_ids
            if rebuilding:
                self._keep_pace(index)
            chunk_stop = min((index + 1) * self._chunk_ids, stop)
            chunk = self._chunk(index, chunk_stop, topics)
            if chunk is None:
                # A narrow reader where nobody read yet: its own topics only, uncached.
                found += self._select(position, stop, limit - len(found), topics)
                return found
            ids, notifications = chunk.ids, chunk.notifications
            for offset in range(bisect.bisect_right(ids, position), len(ids)):
                notification = notifications[offset]
                if notification.id > chunk_stop:
                    break
                if notification.topic in topics:
                    found.append(notification)
                    if len(found) == limit:
                        break
            position = chunk_stop
        return found

    def _keep_pace(self, index: int) -> None:
        """Rebuilding runners drift apart (their work per event differs), and a runner
        too far behind finds the chunks it needs dropped: it reads and decodes them
        again. A rebuilding runner about to read a chunk nobody has read, more than half
        the kept chunks ahead of the slowest rebuilding runner, waits (boundedly) for it
        to come closer; waiting hands the slow ones the interpreter."""
        now = time.monotonic()
        self._rebuilding[threading.get_ident()] = (index, now)
        if index in self._chunks:
            return
        deadline = now + LEAD_WAIT_S_MAX
        while now < deadline:
            slowest = min(
                (at for at, seen in list(self._rebuilding.values()) if now - seen < READER_STALE_S),
                default=index,
            )
            if index - slowest <= self._chunks_max // 2:
                return
            time.sleep(LEAD_PAUSE_S)
            now = time.monotonic()

    def decode(self, notification: Notification) -> Any:
        # One lookup, atomic under the interpreter lock: called for every event a
        # runner applies, where taking the decoder's lock showed in a rebuild's profile.
        chunk = self._chunks.get((notification.id - 1) // self._chunk_ids)
        if chunk is None:
            return self._decode(notification)
        event = chunk.events.get(notification.id)
        if event is None:
            event = self._decode(notification)
            chunk.events[notification.id] = event
        return event

    def _decode(self, notification: Notification) -> Any:
        event = self._app.mapper.to_domain_event(notification)
        if type(event) is User.UserErased:
            # Events decoded before hold what the erased user wrote, in clear: decode
            # them again (their personal fields erased) if they are needed again.
            with self._lock:
                for chunk in self._chunks.values():
                    chunk.events.clear()
        return event

    def _chunk(self, index: int, stop: int, topics: frozenset[str]) -> _Chunk | None:
        """Chunk ``index`` read at least up to ``stop``; ``None`` if it was not read yet
        and ``topics`` are a narrow share of the events."""
        with self._lock:
            chunk = self._chunks.get(index)
            if chunk is None:
                if self._narrow(topics):
                    return None
                chunk = self._chunks[index] = _Chunk(index * self._chunk_ids, self._topics)
                while len(self._chunks) > self._chunks_max:
                    self._chunks.popitem(last=False)
            else:
                self._chunks.move_to_end(index)
        if chunk.read_to < stop:
            with chunk.lock:
                if chunk.read_to < stop:
                    more = self._select(chunk.read_to, stop, stop - chunk.read_to, chunk.topics)
                    self._count(more)
                    chunk.extend(more, stop)
        return chunk

    def _narrow(self, topics: frozenset[str]) -> bool:
        if self._counted < NARROW_SAMPLE_MIN:
            return False
        own = sum(self._topic_counts.get(topic, 0) for topic in topics)
        return own < NARROW_SHARE * self._counted

    def _count(self, notifications: Sequence[Notification]) -> None:
        with self._lock:
            for notification in notifications:
                topic = notification.topic
                self._topic_counts[topic] = self._topic_counts.get(topic, 0) + 1
            self._counted += len(notifications)

    def _select(
        self, start: int, stop: int, limit: int, topics: frozenset[str]
    ) -> Sequence[Notification]:
        return self._app.notifications(start, stop, limit, sorted(topics))


class _Chunk:
    """Stored events of ``topics`` (empty: every topic) with ids in (``first``,
    ``read_to``], in id order, and those of them decoded so far."""

    def __init__(self, first: int, topics: frozenset[str]) -> None:
        self.topics = topics
        self.read_to = first
        self.ids: list[int] = []
        self.notifications: list[Notification] = []
        self.events: dict[int, Any] = {}
        self.lock = threading.Lock()

    def extend(self, notifications: Sequence[Notification], read_to: int) -> None:
        # Appended before ``read_to`` moves: a reader that sees the new ``read_to``
        # sees the events below it (readers only read ids up to their own stop).
        self.notifications += notifications
        self.ids += [notification.id for notification in notifications]
        self.read_to = read_to
