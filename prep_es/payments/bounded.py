"""A payment provider asked by at most a few requests of a process at a time.

Each call to a provider holds the request's worker thread until the provider answers:
a slow provider (Stripe taking its full timeout) would otherwise hold every thread of
the process, and the bookings, searches and logins that never ask the provider would
wait with them. At most ``calls_max`` calls run at once; a request that cannot start one
within ``wait_s`` is refused at once (503 ``payment_provider_busy``, to be retried with
the same idempotency key).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from aggregates.payment_provider import (
    PaymentProvider,
    PaymentProviderError,
    ProviderNotification,
    ProviderPayment,
    ProviderTransfer,
)

T = TypeVar("T")


class BoundedPaymentProvider:
    """``provider`` with its calls bounded (see the module's docstring). Reading a
    notification asks nothing of the provider and is not bounded; nor are reconciliation's
    lists, which an admin asks for one at a time."""

    def __init__(self, provider: PaymentProvider, *, calls_max: int, wait_s: float) -> None:
        assert calls_max >= 1 and wait_s >= 0
        self._provider = provider
        self._turns = threading.BoundedSemaphore(calls_max)
        self._wait_s = wait_s

    @property
    def name(self) -> str:
        return self._provider.name

    @property
    def test_mode(self) -> bool:
        return self._provider.test_mode

    def _call(self, call: Callable[[], T]) -> T:
        if not self._turns.acquire(timeout=self._wait_s):
            raise PaymentProviderError(
                "too many requests are waiting for the payment provider; try again",
                code="payment_provider_busy",
            )
        try:
            return call()
        finally:
            self._turns.release()

    def create_payment(
        self, top_up_id: UUID, amount_cents: int, payment_method: str
    ) -> ProviderPayment:
        return self._call(
            lambda: self._provider.create_payment(top_up_id, amount_cents, payment_method)
        )

    def find_payment(self, reference: str) -> ProviderPayment | None:
        return self._call(lambda: self._provider.find_payment(reference))

    def refund_payment(
        self, payout_id: UUID, payment_reference: str, amount_cents: int
    ) -> ProviderTransfer:
        return self._call(
            lambda: self._provider.refund_payment(payout_id, payment_reference, amount_cents)
        )

    def send_payout(self, payout_id: UUID, destination: str, amount_cents: int) -> ProviderTransfer:
        return self._call(lambda: self._provider.send_payout(payout_id, destination, amount_cents))

    def check_payout_destination(self, destination: str) -> None:
        self._call(lambda: self._provider.check_payout_destination(destination))

    def read_notification(
        self, payload: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderNotification:
        return self._provider.read_notification(payload, headers, now)

    def payments_since(self, since: datetime | None) -> Iterable[ProviderPayment]:
        return self._provider.payments_since(since)

    def transfers_since(self, since: datetime | None) -> Iterable[ProviderTransfer]:
        return self._provider.transfers_since(since)
