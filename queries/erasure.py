"""What the read models know that an erasure must look at and the write model cannot
list by itself: a host's kitchens and their active bookings, and a person's top-ups not
yet settled (see ``commands.erasure``). Leads only: the erasure decides on each
aggregate, read in its own transaction."""

from __future__ import annotations

from uuid import UUID

from aggregates.booking import ACTIVE_STATUSES
from aggregates.erasure import PENDING_TOP_UP_STATUSES
from commands.erasure import LEADS_MAX, ErasureLeads
from projections.bookings import BookingsProjection
from projections.database import ReadDatabase, uuid_from_row, uuid_parameter
from projections.kitchens import KitchensProjection
from projections.payments import PaymentsProjection

KITCHENS = KitchensProjection.view("kitchens")
BOOKINGS = BookingsProjection.view("bookings")
TOP_UPS = PaymentsProjection.view("top_ups")
LEAD_PROJECTIONS = (KitchensProjection.name, BookingsProjection.name, PaymentsProjection.name)
"""The read models :meth:`ErasureLeadQueries.leads` reads."""


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


class ErasureLeadQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def leads(self, user_id: UUID) -> ErasureLeads:
        """``user_id``'s kitchens (every status, at most ``LEADS_MAX`` + 1), the active
        bookings of those kitchens and their top-ups still pending (at most
        ``LEADS_MAX`` each), from one snapshot of each read model."""
        person = uuid_parameter(self._database.dialect, user_id)
        active = [status.value for status in ACTIVE_STATUSES]
        pending = sorted(status.value for status in PENDING_TOP_UP_STATUSES)
        with self._database.reading() as sql:
            kitchens = sql.fetchall(
                f"SELECT id FROM {KITCHENS} WHERE host_id = %s ORDER BY id LIMIT %s",
                (person, LEADS_MAX + 1),
            )
            bookings = sql.fetchall(
                f"SELECT id FROM {BOOKINGS} WHERE host_id = %s "
                f"AND status IN ({_placeholders(len(active))}) ORDER BY start_time, id LIMIT %s",
                (person, *active, LEADS_MAX),
            )
            top_ups = sql.fetchall(
                f"SELECT id FROM {TOP_UPS} WHERE owner_id = %s "
                f"AND status IN ({_placeholders(len(pending))}) ORDER BY requested_at, id "
                "LIMIT %s",
                (person, *pending, LEADS_MAX),
            )
        return ErasureLeads(
            kitchen_ids=[uuid_from_row(row["id"]) for row in kitchens],
            hosted_booking_ids=[uuid_from_row(row["id"]) for row in bookings],
            top_up_ids=[uuid_from_row(row["id"]) for row in top_ups],
        )
