"""The sandbox's outbox: notifications waiting for their time, delivered at least once.

Each notification is a row of ``sandbox_outbox``, written in the same transaction as the
payment or transfer it tells of, with the time it is due. A deliverer claims due rows
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several processes share one outbox; SQLite:
its write transaction) by pushing their due time a lease ahead, delivers them outside
the transaction, then marks them delivered. A delivery that raises is tried again later,
each time after a longer wait, up to :data:`RETRY_DELAY_S_MAX`; a process that dies
between claim and mark leaves the row to be delivered again once the lease runs out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final
from uuid import uuid4

from prep_es.payments.sandbox_storage import SandboxDatabase, Statements

logger = logging.getLogger(__name__)

Deliver = Callable[[bytes, Mapping[str, str]], object]
"""Hands one notification (its payload and its signed headers) to whoever receives it;
raising means it was not received."""

POLL_INTERVAL_S: Final = 0.5
CLAIM_BATCH_SIZE: Final = 100
CLAIM_LEASE_S: Final = 60.0
"""How long a claimed row stays with its deliverer before another may deliver it."""
RETRY_DELAY_S_FIRST: Final = 0.1
RETRY_DELAY_S_MAX: Final = 30.0
DELIVER_DUE_BATCHES_MAX: Final = 100
"""Batches one :meth:`SandboxOutbox.deliver_due` call claims at most."""
STOP_WAIT_S: Final = 10.0


def retry_delay_s(attempts: int) -> float:
    """The wait before the next try of a notification tried ``attempts`` times."""
    doublings = min(max(attempts - 1, 0), 32)
    return float(min(RETRY_DELAY_S_FIRST * 2**doublings, RETRY_DELAY_S_MAX))


class SandboxOutbox:
    """The outbox of one database, and this process's deliverer of it."""

    def __init__(
        self,
        database: SandboxDatabase,
        clock: Callable[[], datetime],
        signed_headers: Callable[[bytes], dict[str, str]],
    ) -> None:
        self._database = database
        self._clock = clock
        self._signed_headers = signed_headers
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def enqueue(self, statements: Statements, event_id: str, payload: bytes, due_s: float) -> None:
        """Add a notification due at ``due_s`` (unix seconds) in the caller's transaction;
        call :meth:`wake` once it is committed."""
        statements.execute(
            "INSERT INTO sandbox_outbox (id, event_id, payload, due_at) VALUES (?, ?, ?, ?)",
            (uuid4().hex, event_id, payload, due_s),
        )

    def wake(self) -> None:
        """Tell this process's deliverer to look for due notifications now."""
        self._wake.set()

    def undelivered_count(self) -> int:
        with self._database.transaction() as statements:
            rows = statements.execute(
                "SELECT COUNT(*) FROM sandbox_outbox WHERE delivered_at IS NULL"
            )
        return int(rows[0][0])

    def deliver_due(self, deliver: Deliver) -> int:
        """Deliver every notification due now; the number delivered."""
        delivered = 0
        for _ in range(DELIVER_DUE_BATCHES_MAX):
            claimed, delivered_now = self._deliver_batch(deliver)
            delivered += delivered_now
            if claimed < CLAIM_BATCH_SIZE:
                break
        return delivered

    def start(self, deliver: Deliver) -> None:
        """Deliver in a daemon thread until :meth:`stop`."""
        assert self._thread is None, "the sandbox is already delivering"
        self._thread = threading.Thread(
            target=self._deliver_until_stopped,
            args=(deliver,),
            name="sandbox-notifications",
            daemon=True,
        )
        self._thread.start()
        logger.info("sandbox (test mode): delivering notifications", extra={"provider": "sandbox"})

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            self._thread = None

    def _deliver_until_stopped(self, deliver: Deliver) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed, _ = self._deliver_batch(deliver)
            except Exception:
                logger.exception(
                    "sandbox (test mode): could not read the notification outbox",
                    extra={"provider": "sandbox"},
                )
                claimed = 0
            if claimed == 0:
                self._wake.wait(POLL_INTERVAL_S)

    def _deliver_batch(self, deliver: Deliver) -> tuple[int, int]:
        """Claim the notifications due now (one batch) and deliver them: how many were
        claimed, how many delivered."""
        claimed = self._claim(self._clock().timestamp())
        delivered = 0
        for outbox_id, event_id, payload, attempts in claimed:
            if self._stopping.is_set():
                break  # unmarked rows go again once their lease runs out
            try:
                deliver(payload, self._signed_headers(payload))
            except Exception:
                wait_s = retry_delay_s(attempts)
                logger.warning(
                    "sandbox (test mode): notification %s not delivered (try %d), "
                    "trying again in %.1f s",
                    event_id,
                    attempts,
                    wait_s,
                    exc_info=True,
                    extra={"provider": "sandbox", "event_id": event_id, "attempts": attempts},
                )
                self._reschedule(outbox_id, self._clock().timestamp() + wait_s)
            else:
                self._mark_delivered(outbox_id)
                delivered += 1
        return len(claimed), delivered

    def _claim(self, now_s: float) -> list[tuple[str, str, bytes, int]]:
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._database.dialect == "postgresql" else ""
        with self._database.transaction() as statements:
            rows = statements.execute(
                "SELECT id, event_id, payload, attempts FROM sandbox_outbox "
                "WHERE delivered_at IS NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?"
                + skip_locked,
                (now_s, CLAIM_BATCH_SIZE),
            )
            for row in rows:
                statements.execute(
                    "UPDATE sandbox_outbox SET due_at = ?, attempts = attempts + 1 WHERE id = ?",
                    (now_s + CLAIM_LEASE_S, row[0]),
                )
        return [(row[0], row[1], bytes(row[2]), row[3] + 1) for row in rows]

    def _reschedule(self, outbox_id: str, due_s: float) -> None:
        with self._database.transaction() as statements:
            statements.execute(
                "UPDATE sandbox_outbox SET due_at = ? WHERE id = ? AND delivered_at IS NULL",
                (due_s, outbox_id),
            )

    def _mark_delivered(self, outbox_id: str) -> None:
        with self._database.transaction() as statements:
            statements.execute(
                "UPDATE sandbox_outbox SET delivered_at = ? WHERE id = ?",
                (self._clock().timestamp(), outbox_id),
            )
