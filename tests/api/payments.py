"""The HTTP application with a sandbox whose notifications the tests hand over.

In these modules the sandbox sends nothing by itself: its notifications fall due
``sandbox_notification_delay_s`` (a minute) after what they tell of, by the application's
clock, which tests move only on purpose. A second handle on the same sandbox (it lives
in the application's database, so every handle shares its outbox and signing secret),
on a clock :data:`COURIER_LEAD` ahead, takes the notifications due by then — as the
provider would send them — and tests post them to the webhook route themselves: once,
several times, out of order, tampered with, or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import httpx
from fastapi.testclient import TestClient

from aggregates.account import Account, account_id_for
from api.schemas import MIN_POSITION_HEADER
from prep_es.app import create_app
from prep_es.payments.sandbox import SandboxProvider
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import API, Api, User, api_settings
from tests.support import START_OF_TESTS, MutableClock

NOTIFICATION_DELAY_S: Final = 60.0
"""The sandbox's longest wait before a notification falls due (the setting's maximum)."""
COURIER_LEAD: Final = timedelta(seconds=3 * NOTIFICATION_DELAY_S)
"""How far ahead of the application the courier's clock runs: past every notification
a payment or a transfer made now schedules (a transfer's last falls due two delays
later), and within the webhook's tolerance, so what it signs is fresh."""
TOP_UP_CENTS_MAX: Final = 1_000_000
TOP_UP_DAILY_CENTS_MAX: Final = 2_500_000
RACERS: Final = 8
RACE_TIMEOUT_S: Final = 60.0

Notification = tuple[bytes, dict[str, str]]
"""A notification as the provider sends it: its payload and its signed headers."""


@dataclass
class PaymentsApi:
    """A running application, and the courier that carries its sandbox's notifications."""

    api: Api
    courier: SandboxProvider

    def capture(self) -> list[Notification]:
        """Every notification due by the courier's clock, taken from the sandbox (never
        to be sent again) without handing it over; in the order they fell due."""
        captured: list[Notification] = []

        def keep(payload: bytes, headers: Mapping[str, str]) -> None:
            captured.append((payload, dict(headers)))

        self.courier.deliver_due(keep)
        return captured

    def post_notification(
        self, payload: bytes, headers: Mapping[str, str], provider: str = "sandbox"
    ) -> httpx.Response:
        return self.api.post(
            f"/payments/webhooks/{provider}",
            content=payload,
            headers={"Content-Type": "application/json", **headers},
        )

    def deliver(self) -> int:
        """Post every notification due to the webhook route, as the provider would; the
        highest event store position their answers reached (0 for none)."""
        positions = [0]
        for payload, headers in self.capture():
            received = self.api.ok(self.post_notification(payload, headers))
            positions.append(received["position"])
        return max(positions)

    def top_up(
        self, user: User, amount: str, payment_method: str = "pm_card_visa", **kwargs: Any
    ) -> httpx.Response:
        return self.api.post(
            "/accounts/me/top-ups",
            user,
            json={"amount": amount, "payment_method": payment_method},
            **kwargs,
        )

    def customer(self, *amounts: str) -> User:
        """A new customer who topped up each of ``amounts`` with the test card, each one
        confirmed by its notification."""
        user = self.api.register("customer")
        for amount in amounts:
            self.api.ok(self.top_up(user, amount), 202)
            self.deliver()
        return user

    def put(self, path: str, user: User | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if user is not None:
            headers["Authorization"] = f"Bearer {user.token}"
        response: httpx.Response = self.api.client.put(API + path, headers=headers, **kwargs)
        return response

    def read(self, path: str, user: User, position: int) -> dict[str, Any]:
        """A query's answer once its read model reached ``position``."""
        return self.api.ok(self.api.get(path, user, headers={MIN_POSITION_HEADER: str(position)}))

    def account_of(self, user: User) -> Account:
        """The write side's account of ``user``: what the ledger holds now."""
        found: object = self.api.services.runtime.app.repository.get(account_id_for(user.id))
        assert isinstance(found, Account)
        return found

    def position(self) -> int:
        """The event store's position: it stands still while nothing is recorded."""
        return self.api.services.runtime.app.position()

    def sandbox_payments_of(self, top_up_id: UUID) -> int:
        """How many payments the sandbox holds for one top-up."""
        return sum(
            1 for payment in self.courier.payments_since(None) if payment.top_up_id == top_up_id
        )


def balance(payments: PaymentsApi, user: User, position: int) -> str:
    figures = payments.read("/accounts/me", user, position)
    assert figures["available"] == figures["balance"]  # nothing held in these tests
    balance: str = figures["balance"]
    return balance


def race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Each call in a thread of its own, all let go at once; their answers."""
    start = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait(RACE_TIMEOUT_S)
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RACE_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


@contextmanager
def open_payments_api(database_url: str) -> Iterator[PaymentsApi]:
    """The application over ``database_url`` (with its projectors, on a clock at
    :data:`~tests.support.START_OF_TESTS`), and its courier."""
    settings = api_settings(
        database_url,
        sandbox_notification_delay_s=NOTIFICATION_DELAY_S,
        top_up_cents_max=TOP_UP_CENTS_MAX,
        top_up_daily_cents_max=TOP_UP_DAILY_CENTS_MAX,
    )
    clock = MutableClock(START_OF_TESTS)

    def courier_clock() -> datetime:
        return clock() + COURIER_LEAD

    app = create_app(settings, clock=clock, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        courier = SandboxProvider.open(settings, courier_clock)
        try:
            yield PaymentsApi(
                api=Api(app=app, client=client, clock=clock, settings=settings), courier=courier
            )
        finally:
            courier.close()
