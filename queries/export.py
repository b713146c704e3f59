"""Everything Prep ES holds about one person, for that person (GDPR art. 15 and 20):
their profile, their account and its whole statement, their top-ups and payouts, the
bookings they made and those of their kitchens, the kitchens they host with their
certificates, every audit entry of what they did, and every audit entry of their own
user and account, whoever caused it: their registration with the email and name they
first gave, each later change, what an admin did to them.

Complete, not capped: each list is read lazily, a batch of rows at a time (see
:func:`queries.base.keyset_batches`), so that an export of any size is written out while
it is read, in bounded memory and without one long transaction. Each row is as it was
when its batch was read; every read model behind the export had reached at least the
position the query started at.

Only the caller's own data is in it. Rows are found by the caller's id (as customer, as
host, as owner, as actor, as the user or account an event is of), and what someone
else wrote about the caller is left out: a customer's notes in a host's export, a host's
reason to decline in a customer's, a personal field of another person in an audit entry
(named in its ``withheld_fields``), who else it was that changed the caller's user or
account (by role only: ``actor_withheld``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from queries.accounts import AccountBalance, AccountQueries, StatementEntry
from queries.audit import AuditQueries, EntryAboutPerson, OwnAuditEntry
from queries.base import Viewer
from queries.bookings import BookingDetail, BookingQueries, HostedBooking
from queries.kitchens import KitchenQueries, OwnedKitchen
from queries.payments import PaymentQueries, PayoutSummary, TopUpSummary
from queries.users import UserProfile, UserQueries

T = TypeVar("T")

EXPORTED_READ_MODELS = ("users", "accounts", "payments", "bookings", "kitchens", "audit")
"""The read models an export reads."""


@dataclass(frozen=True)
class PersonalDataExport:
    """One person's export: the profile and account read at once, every list read
    as it is iterated (once)."""

    user: UserProfile
    account: AccountBalance | None
    account_entries: Iterator[StatementEntry]
    """Oldest first, as every list here."""
    top_ups: Iterator[TopUpSummary]
    payouts: Iterator[PayoutSummary]
    bookings_made: Iterator[BookingDetail]
    bookings_hosted: Iterator[HostedBooking]
    kitchens: Iterator[OwnedKitchen]
    audit_entries: Iterator[OwnAuditEntry]
    entries_about_me: Iterator[EntryAboutPerson]


class ExportQueries:
    def __init__(
        self,
        *,
        users: UserQueries,
        accounts: AccountQueries,
        payments: PaymentQueries,
        bookings: BookingQueries,
        kitchens: KitchenQueries,
        audit: AuditQueries,
    ) -> None:
        self._users = users
        self._accounts = accounts
        self._payments = payments
        self._bookings = bookings
        self._kitchens = kitchens
        self._audit = audit

    def export(self, viewer: Viewer, *, catch_up: Callable[[], None]) -> PersonalDataExport:
        """The viewer's export, whatever their role. Their profile (404
        ``user_not_found`` as :meth:`UserQueries.me` says), account and the first batch
        of each list are read now, the rest of the lists as they are iterated."""
        return PersonalDataExport(
            user=self._users.me(viewer, catch_up=catch_up),
            account=self._accounts.find_account(viewer),
            account_entries=_started(self._accounts.every_entry(viewer)),
            top_ups=_started(self._payments.every_top_up(viewer)),
            payouts=_started(self._payments.every_payout(viewer)),
            bookings_made=_started(self._bookings.every_booking_made(viewer)),
            bookings_hosted=_started(self._bookings.every_booking_hosted(viewer)),
            kitchens=_started(self._kitchens.every_kitchen_owned(viewer)),
            audit_entries=_started(self._audit.every_entry_caused_by(viewer)),
            entries_about_me=_started(self._audit.every_entry_about(viewer)),
        )


def _started(items: Iterator[T]) -> Iterator[T]:
    """``items``, its first batch read now: what fails on every read (a read model not
    built yet) fails here, while the answer can still be a problem, not a body cut
    short."""
    first = list(itertools.islice(items, 1))
    return itertools.chain(first, items)
