"""Prep ES write side: command handlers, idempotency, concurrency retries.

:class:`Commands` gathers the handlers of each resource over one event store."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.application import Application

from aggregates.jurisdictions import JurisdictionCatalog
from commands.accounts import AccountCommands
from commands.bookings import BookingCommands
from commands.handling import Clock, CommandProcessor
from commands.kitchens import KitchenCommands
from commands.sweeper import EventStoreAgenda, Sweeper
from commands.users import PasswordHashing, UserCommands


@dataclass(frozen=True)
class Commands:
    processor: CommandProcessor
    users: UserCommands
    kitchens: KitchenCommands
    bookings: BookingCommands
    accounts: AccountCommands
    sweeper: Sweeper

    @classmethod
    def build(
        cls,
        app: Application[UUID],
        *,
        jurisdictions: JurisdictionCatalog,
        clock: Clock,
        passwords: PasswordHashing,
        conflict_retries_max: int,
        commission_basis_points: int,
    ) -> Commands:
        processor = CommandProcessor(app, conflict_retries_max=conflict_retries_max)
        bookings = BookingCommands(
            processor, jurisdictions, clock, commission_basis_points=commission_basis_points
        )
        return cls(
            processor=processor,
            users=UserCommands(processor, passwords, clock),
            kitchens=KitchenCommands(processor, jurisdictions, clock),
            bookings=bookings,
            accounts=AccountCommands(processor),
            sweeper=Sweeper(processor, bookings, jurisdictions, clock, EventStoreAgenda(app)),
        )
