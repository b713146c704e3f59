"""The sandbox's outbox: unruly deliveries, retries, and the delivery thread."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from aggregates.payment_provider import ProviderNotification
from prep_es.payments.sandbox import SandboxProvider
from prep_es.payments.sandbox_outbox import retry_delay_s
from prep_es.store.settings import Settings
from tests.payments.test_sandbox import Inbox, open_sandbox
from tests.support import MutableClock
from tests.waiting import wait_until

WAIT_S = 30


def test_unruly_deliveries_repeat_some_notifications_and_reorder_some_payments(
    database_url: str,
) -> None:
    clock = MutableClock()
    sandbox = open_sandbox(database_url, clock, seed=7, sandbox_unruly_deliveries=True)
    try:
        inbox = Inbox(sandbox, clock)
        top_up_ids = [uuid4() for _ in range(20)]
        for top_up_id in top_up_ids:
            sandbox.create_payment(top_up_id, 1000, "pm_sandbox_succeeds_after_delay")

        clock.advance(timedelta(minutes=1))
        delivered = sandbox.deliver_due(inbox)

        assert delivered == len(inbox.notifications) > 2 * len(top_up_ids)
        assert sandbox.undelivered_count() == 0
        repeats = Counter(n.event_id for n in inbox.notifications)
        assert max(repeats.values()) == 2
        assert {n.event_id for n in inbox.notifications if repeats[n.event_id] == 2}
        orders = {tuple(dict.fromkeys(inbox.statuses_of(top_up_id))) for top_up_id in top_up_ids}
        assert orders == {("processing", "succeeded"), ("succeeded", "processing")}
    finally:
        sandbox.close()


def test_orderly_deliveries_send_each_notification_once_in_order(database_url: str) -> None:
    clock = MutableClock()
    sandbox = open_sandbox(database_url, clock, sandbox_unruly_deliveries=False)
    try:
        inbox = Inbox(sandbox, clock)
        top_up_ids = [uuid4() for _ in range(10)]
        for top_up_id in top_up_ids:
            sandbox.create_payment(top_up_id, 1000, "pm_sandbox_succeeds_after_delay")

        clock.advance(timedelta(minutes=1))

        assert sandbox.deliver_due(inbox) == 2 * len(top_up_ids)
        for top_up_id in top_up_ids:
            assert inbox.statuses_of(top_up_id) == ["processing", "succeeded"]
    finally:
        sandbox.close()


class FailingFirst:
    """Refuses the first ``failures`` deliveries, then hands them to ``receive``."""

    def __init__(self, failures: int, receive: Callable[[bytes, Mapping[str, str]], None]) -> None:
        self.failures = failures
        self.receive = receive
        self.tries = 0
        self.lock = threading.Lock()

    def __call__(self, payload: bytes, headers: Mapping[str, str]) -> None:
        with self.lock:
            self.tries += 1
            if self.tries <= self.failures:
                raise ConnectionError("the webhook endpoint is down")
        self.receive(payload, headers)


def test_a_failed_delivery_is_tried_again_later_until_it_succeeds(database_url: str) -> None:
    clock = MutableClock()
    sandbox = open_sandbox(database_url, clock)
    try:
        inbox = Inbox(sandbox, clock)
        deliver = FailingFirst(3, inbox)
        top_up_id = uuid4()
        sandbox.create_payment(top_up_id, 1000, "pm_card_visa")
        clock.advance(timedelta(seconds=1))

        for attempt in range(1, 4):
            assert sandbox.deliver_due(deliver) == 0
            assert sandbox.deliver_due(deliver) == 0, "tried again before its retry delay"
            clock.advance(timedelta(seconds=retry_delay_s(attempt)))
        assert sandbox.deliver_due(deliver) == 1

        assert deliver.tries == 4
        assert inbox.statuses_of(top_up_id) == ["succeeded"]
        assert sandbox.undelivered_count() == 0
    finally:
        sandbox.close()


def test_retry_delays_grow_to_a_cap() -> None:
    delays = [retry_delay_s(attempts) for attempts in range(1, 40)]

    assert delays == sorted(delays)
    assert delays[0] == 0.1
    assert delays[-1] == 30.0


def wall_clock() -> datetime:
    return datetime.now(UTC)


def test_the_delivery_thread_delivers_and_retries(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        sandbox_notification_delay_s=0,
        sandbox_unruly_deliveries=False,
    )
    sandbox = SandboxProvider.open(settings, wall_clock, rng=random.Random(1))
    received: list[ProviderNotification] = []

    def receive(payload: bytes, headers: Mapping[str, str]) -> None:
        received.append(sandbox.read_notification(payload, headers, wall_clock()))

    try:
        top_up_id = uuid4()
        sandbox.start_delivering(FailingFirst(2, receive))
        sandbox.create_payment(top_up_id, 1000, "pm_card_visa")
        sandbox.send_payout(uuid4(), "acct_host", 500)

        wait_until(lambda: len(received) == 3, WAIT_S, "three notifications delivered")
        assert sandbox.undelivered_count() == 0
        assert [n.status for n in received if n.subject_id == top_up_id] == ["succeeded"]
    finally:
        sandbox.close()


def test_an_in_memory_database_holds_a_private_sandbox() -> None:
    clock = MutableClock()
    sandbox = open_sandbox("sqlite:///:memory:", clock)
    other = open_sandbox("sqlite:///:memory:", clock)
    try:
        payment = sandbox.create_payment(uuid4(), 1000, "pm_card_visa")

        assert sandbox.find_payment(payment.reference) == payment
        assert other.find_payment(payment.reference) is None
    finally:
        sandbox.close()
        other.close()


def test_two_deliverers_on_one_database_share_the_outbox(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        sandbox_notification_delay_s=0,
        sandbox_unruly_deliveries=False,
    )
    first = SandboxProvider.open(settings, wall_clock, rng=random.Random(1))
    second = SandboxProvider.open(settings, wall_clock, rng=random.Random(2))
    received: list[ProviderNotification] = []
    lock = threading.Lock()

    def receive(payload: bytes, headers: Mapping[str, str]) -> None:
        notification = first.read_notification(payload, headers, wall_clock())
        with lock:
            received.append(notification)

    try:
        first.start_delivering(receive)
        second.start_delivering(receive)
        for index in range(30):
            (first if index % 2 else second).create_payment(uuid4(), 1000, "pm_card_visa")

        wait_until(lambda: first.undelivered_count() == 0, WAIT_S, "the outbox emptied")
        assert len(received) == 30
        assert len({n.event_id for n in received}) == 30
    finally:
        first.close()
        second.close()
