"""Prep ES write side: command handlers, idempotency, concurrency retries.

:class:`Commands` gathers the handlers of each resource over one event store."""

from __future__ import annotations

from dataclasses import dataclass

from aggregates.jurisdictions import JurisdictionCatalog
from commands.accounts import AccountCommands
from commands.bookings import BookingCommands
from commands.clock import Clock
from commands.kitchens import KitchenCommands
from commands.processor import CommandProcessor
from commands.store import CommandStore
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
        store: CommandStore,
        *,
        jurisdictions: JurisdictionCatalog,
        clock: Clock,
        passwords: PasswordHashing,
        conflict_retries_max: int,
        commission_basis_points: int,
    ) -> Commands:
        processor = CommandProcessor(store, conflict_retries_max=conflict_retries_max)
        return cls(
            processor=processor,
            users=UserCommands(processor, passwords, clock),
            kitchens=KitchenCommands(processor, jurisdictions, clock),
            bookings=BookingCommands(
                processor, jurisdictions, clock, commission_basis_points=commission_basis_points
            ),
            accounts=AccountCommands(processor),
            sweeper=Sweeper(
                processor,
                jurisdictions,
                clock,
                EventStoreAgenda(store),
                commission_basis_points=commission_basis_points,
            ),
        )
