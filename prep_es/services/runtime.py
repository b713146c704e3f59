"""Wiring: from Settings to an open event store and its command handlers."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

from aggregates.account import TopUpLimits
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.payment_provider import (
    NotificationRejected,
    PaymentProvider,
    check_notification,
)
from commands import Commands
from commands.clock import Clock
from commands.payment_notifications import NotificationReceipt
from commands.processor import Executed
from commands.users import PasswordHashing
from prep_es.payments.providers import OpenPaymentProvider, open_payment_provider
from prep_es.services.passwords import Argon2Passwords
from prep_es.store.eventstore import PrepApplication, open_application
from prep_es.store.jurisdiction_rules import load_jurisdictions
from prep_es.store.settings import Settings


def system_clock() -> datetime:
    return datetime.now(UTC)


YOUNG_GENERATION_THRESHOLD = 10_000
"""Allocations between young-generation collections (CPython's default: 700)."""


def tune_garbage_collection() -> None:
    """The collector's policy for a long-running process: call once, when started.

    - What the process made while starting (modules, models, routes, pools) lives as long
      as it does: frozen, it leaves the collector's passes, where a full pass over it
      stalled every thread for tens of milliseconds (it doubled the projectors' p99 lag).
    - Young collections run every 10,000 allocations, not 700. Decoding a batch of events
      allocates thousands of objects that reference counting frees anyway, and the
      default made the collector a quarter of a rebuild's CPU (measured: rebuilding every
      projection at once went from 23 s to 16 s). Cycles are still collected, later.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)


@dataclass(frozen=True)
class Runtime:
    """An open event store and everything that writes to it."""

    settings: Settings
    app: PrepApplication
    jurisdictions: JurisdictionCatalog
    commands: Commands
    payment_provider: OpenPaymentProvider
    """The payment provider and what must be closed of it (the sandbox's database)."""
    clock: Clock

    @property
    def payments(self) -> PaymentProvider:
        return self.payment_provider.provider

    def receive_notification(
        self, provider: str, payload: bytes, headers: Mapping[str, str], request_id: str
    ) -> Executed[NotificationReceipt]:
        """The one way a provider's notification comes in, over HTTP or from the sandbox:
        verified by the configured provider's adapter (``NotificationRejected`` for
        another provider's, or a bad or stale signature), then recorded and applied.
        ``headers`` have lower-case names."""
        configured = self.payments
        if provider != configured.name:
            raise NotificationRejected(
                "this deployment takes no notifications from that provider",
                code="wrong_provider",
            )
        notification = configured.read_notification(payload, headers, self.clock())
        check_notification(notification)
        return self.commands.payment_notifications.receive(notification, request_id)

    def deliver_sandbox_notification(self, payload: bytes, headers: Mapping[str, str]) -> None:
        """How the sandbox hands over a notification it sends (see
        ``SandboxProvider.start_delivering``)."""
        self.receive_notification("sandbox", payload, headers, uuid4().hex)

    def close(self) -> None:
        self.payment_provider.close()
        self.app.close()


def open_runtime(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    passwords: PasswordHashing | None = None,
) -> Runtime:
    app = open_application(settings)
    jurisdictions = load_jurisdictions(settings.jurisdictions_path)
    try:
        payment_provider = open_payment_provider(settings, clock)
    except BaseException:
        app.close()
        raise
    commands = Commands.build(
        app,
        jurisdictions=jurisdictions,
        clock=clock,
        passwords=passwords or Argon2Passwords(),
        conflict_retries_max=settings.conflict_retries_max,
        commission_basis_points=settings.commission_basis_points,
        payments=payment_provider.provider,
        top_up_limits=TopUpLimits(
            per_top_up_cents_min=settings.top_up_cents_min,
            per_top_up_cents_max=settings.top_up_cents_max,
            per_day_cents_max=settings.top_up_daily_cents_max,
            per_day_count_max=settings.top_ups_daily_max,
        ),
    )
    return Runtime(
        settings=settings,
        app=app,
        jurisdictions=jurisdictions,
        commands=commands,
        payment_provider=payment_provider,
        clock=clock,
    )
