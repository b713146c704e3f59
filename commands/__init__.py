"""Prep ES write side: command handlers, idempotency, concurrency retries.

:class:`Commands` gathers the handlers of each resource over one event store."""

from __future__ import annotations

from dataclasses import dataclass

from aggregates.account import TopUpLimits
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.payment_provider import PaymentProvider
from commands.bookings import BookingCommands
from commands.clock import Clock
from commands.erasure import ErasureCommands
from commands.kitchens import KitchenCommands
from commands.payment_notifications import PaymentNotificationCommands
from commands.payouts import PayoutCommands
from commands.processor import CommandProcessor
from commands.profile import ProfileCommands
from commands.store import CommandStore
from commands.sweeper import EventStoreAgenda, Sweeper
from commands.top_ups import TopUpCommands
from commands.users import PasswordHashing, UserCommands


@dataclass(frozen=True)
class Commands:
    processor: CommandProcessor
    users: UserCommands
    profile: ProfileCommands
    erasure: ErasureCommands
    kitchens: KitchenCommands
    bookings: BookingCommands
    top_ups: TopUpCommands
    payouts: PayoutCommands
    payment_notifications: PaymentNotificationCommands
    sweeper: Sweeper

    @classmethod
    def build(
        cls,
        store: CommandStore,
        *,
        jurisdictions: JurisdictionCatalog,
        clock: Clock,
        passwords: PasswordHashing,
        conflict_retries_max: int,
        commission_basis_points: int,
        payments: PaymentProvider,
        top_up_limits: TopUpLimits,
    ) -> Commands:
        processor = CommandProcessor(store, conflict_retries_max=conflict_retries_max)
        top_ups = TopUpCommands(processor, payments, clock, top_up_limits)
        payouts = PayoutCommands(processor, payments, clock)
        return cls(
            processor=processor,
            users=UserCommands(processor, passwords, clock, store),
            profile=ProfileCommands(processor, passwords, store),
            erasure=ErasureCommands(processor, passwords, clock, store),
            kitchens=KitchenCommands(processor, jurisdictions, clock),
            bookings=BookingCommands(
                processor, jurisdictions, clock, commission_basis_points=commission_basis_points
            ),
            top_ups=top_ups,
            payouts=payouts,
            payment_notifications=PaymentNotificationCommands(processor),
            sweeper=Sweeper(
                processor,
                jurisdictions,
                clock,
                EventStoreAgenda(store),
                commission_basis_points=commission_basis_points,
                top_ups=top_ups,
                payouts=payouts,
            ),
        )
