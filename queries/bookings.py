"""Booking queries over the ``bookings`` read model.

Who sees what is written into each query's WHERE clause:

- a customer: the bookings they made;
- a host: the bookings of their kitchens;
- an admin: every booking;
- anyone else (an analyst): none — reading one is refused (403), listing is refused.

A booking that exists but is not the viewer's is 403 on ``get`` and simply absent
from ``list``; one that does not exist is 404 (``booking_not_found``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from aggregates.booking import BOOKING_STATUSES
from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from projections.bookings import BookingsProjection
from projections.database import ReadDatabase, Row, uuid_from_row, uuid_parameter
from queries.base import BATCH_ROWS, BatchRow, Page, PageRequest, Viewer, keyset_rows

BOOKINGS = BookingsProjection.view("bookings")
KITCHENS = BookingsProjection.view("kitchens")
ROLES_LISTING_BOOKINGS = ("customer", "host", "admin")


class BookingSummary(BaseModel):
    """A booking as lists show it."""

    id: UUID
    kitchen_id: UUID
    kitchen_name: str | None
    city: str | None
    host_id: UUID
    customer_id: UUID
    start_time: datetime
    end_time: datetime
    guests: int
    price_cents: int
    status: str
    captured_cents: int
    released_cents: int
    updated_at: datetime


class BookingDetail(BookingSummary):
    """Everything the read model knows of one booking. ``captured_cents`` and
    ``released_cents`` are how its hold ended (both 0 while pending or confirmed)."""

    jurisdiction: str | None
    notes: str | None
    """None once the customer was erased."""
    hourly_rate_cents: int
    cancelled_by_role: str | None
    reason: str | None
    """Why it was declined or cancelled, if the actor said (None once they were erased)."""
    completed_automatically: bool | None
    requested_at: datetime
    version: int
    position: int
    """The event-store position of the booking's last event."""


class HostedBooking(BookingSummary):
    """A booking of one of a host's kitchens as the host's own record: everything but
    what the customer wrote (their notes; their reason, had they cancelled), which is
    theirs. ``reason``: the host's own, if they declined or cancelled and said why."""

    jurisdiction: str | None
    hourly_rate_cents: int
    cancelled_by_role: str | None
    reason: str | None
    completed_automatically: bool | None
    requested_at: datetime
    version: int
    position: int


_SUMMARY_COLUMNS = (
    "b.id, b.kitchen_id, k.name AS kitchen_name, k.city, b.host_id, b.customer_id, "
    "b.start_time, b.end_time, b.guests, b.price_cents, b.status, b.captured_cents, "
    "b.released_cents, b.updated_at"
)
_DETAIL_COLUMNS = (
    f"{_SUMMARY_COLUMNS}, k.jurisdiction, b.notes, b.hourly_rate_cents, "
    "b.cancelled_by_role, b.reason, b.reason_author_id, b.completed_automatically, "
    "b.requested_at, b.version, "
    "b.position"
)
_FROM = f"{BOOKINGS} b LEFT JOIN {KITCHENS} k ON k.id = b.kitchen_id"


def _visibility(viewer: Viewer) -> tuple[str, tuple[Any, ...]]:
    """The WHERE condition (and its parameters) matching the bookings ``viewer`` sees."""
    if viewer.role == "admin":
        return "TRUE", ()
    if viewer.role == "customer":
        return "b.customer_id = %s", (viewer.user_id,)
    if viewer.role == "host":
        return "b.host_id = %s", (viewer.user_id,)
    return "FALSE", ()


class BookingQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def _params(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            uuid_parameter(self._database.dialect, value) if isinstance(value, UUID) else value
            for value in values
        )

    def get(self, viewer: Viewer, booking_id: UUID) -> BookingDetail:
        """One booking: its customer, its kitchen's host or an admin; 403 for other
        users, 404 (``booking_not_found``) if there is no such booking."""
        visible, params = _visibility(viewer)
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT {_DETAIL_COLUMNS} FROM {_FROM} WHERE b.id = %s AND {visible}",
                self._params((booking_id, *params)),
            )
            if row is None:
                exists = sql.fetchone(
                    f"SELECT 1 AS found FROM {BOOKINGS} WHERE id = %s",
                    self._params((booking_id,)),
                )
        if row is not None:
            return BookingDetail.model_validate(row)
        if exists is None:
            raise NotFound(f"no booking {booking_id}", code="booking_not_found")
        raise PermissionDenied("you do not take part in this booking")

    def list(
        self,
        viewer: Viewer,
        status: str | None = None,
        kitchen_id: UUID | None = None,
        page: PageRequest | None = None,
    ) -> Page[BookingSummary]:
        """The bookings ``viewer`` sees (customer: own; host: their kitchens'; admin:
        all), by start time then id. Analysts are refused (403); an unknown ``status``
        is ``invalid_status`` (422)."""
        page = page or PageRequest()
        if viewer.role not in ROLES_LISTING_BOOKINGS:
            raise PermissionDenied(f"a {viewer.role} does not list bookings")
        if status is not None and status not in BOOKING_STATUSES:
            raise InvalidRequest(
                f"status is one of {', '.join(BOOKING_STATUSES)}", code="invalid_status"
            )
        visible, params = _visibility(viewer)
        conditions = [visible]
        if status is not None:
            conditions.append("b.status = %s")
            params = (*params, status)
        if kitchen_id is not None:
            conditions.append("b.kitchen_id = %s")
            params = (*params, kitchen_id)
        where = " AND ".join(conditions)
        with self._database.reading() as sql:
            # The total comes with the page, from the same snapshot.
            rows = sql.fetchall(
                f"SELECT {_SUMMARY_COLUMNS}, count(*) OVER () AS total FROM {_FROM} "
                f"WHERE {where} ORDER BY b.start_time, b.id LIMIT %s OFFSET %s",
                self._params((*params, page.limit, page.offset)),
            )
            if rows:
                total = int(rows[0]["total"])
            elif page.offset:  # past the end: the count alone
                total = int(
                    sql.scalar(f"SELECT count(*) FROM {_FROM} WHERE {where}", self._params(params))
                )
            else:
                total = 0
        return Page[BookingSummary](
            items=[BookingSummary.model_validate(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def every_booking_made(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[BookingDetail]:
        """Every booking the viewer made as a customer (whatever their role now), oldest
        request first, read ``batch_rows`` at a time. ``reason`` is theirs only: one a
        host or an admin gave, declining or cancelling, is left out (``None``)."""
        for row in self._every("b.customer_id", viewer, batch_rows):
            yield BookingDetail.model_validate({**row, "reason": _own_reason(row, viewer)})

    def every_booking_hosted(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[HostedBooking]:
        """Every booking of the viewer's kitchens (whatever their role now), oldest
        request first, read ``batch_rows`` at a time, as :class:`HostedBooking` shows
        them: without the customer's words."""
        for row in self._every("b.host_id", viewer, batch_rows):
            yield HostedBooking.model_validate({**row, "reason": _own_reason(row, viewer)})

    def _every(self, party: str, viewer: Viewer, batch_rows: int) -> Iterator[Row]:
        """Every booking whose ``party`` column is the viewer, by request time and id
        (neither ever changes: see :func:`queries.base.keyset_batches`)."""

        def batch(after: BatchRow | None) -> list[Row]:
            following, params = "", []
            if after is not None:
                following = "AND (b.requested_at, b.id) > (%s, %s) "
                params = [after["requested_at"], after["id"]]
            with self._database.reading() as sql:
                return sql.fetchall(
                    f"SELECT {_DETAIL_COLUMNS} FROM {_FROM} WHERE {party} = %s {following}"
                    "ORDER BY b.requested_at, b.id LIMIT %s",
                    (*self._params((viewer.user_id,)), *params, batch_rows),
                )

        return keyset_rows(batch, batch_rows)


def _own_reason(row: Row, viewer: Viewer) -> str | None:
    """The booking's reason if the viewer gave it (who declined or cancelled)."""
    author = row["reason_author_id"]
    if author is None or uuid_from_row(author) != viewer.user_id:
        return None
    reason: str | None = row["reason"]
    return reason
