"""Bookings: one row per booking, as customers, hosts and admins list and read them.

Rows follow the booking's own events; a small ``kitchens`` table (name, city,
jurisdiction — none of which are on booking events) is kept from the kitchen's events
so that queries can show where a booking is without asking the event store.

Every write is keyed by the booking (or kitchen) and guarded by the aggregate version:
an event already applied changes nothing when a batch is retried.
"""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any, ClassVar

from aggregates.booking import Booking
from aggregates.kitchen import Kitchen
from projections.base import Projection
from projections.database import Sql


class BookingsProjection(Projection):
    name: ClassVar[str] = "bookings"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("bookings", "kitchens")
    event_types: ClassVar[tuple[type[Any], ...]] = (
        Kitchen.KitchenCreated,
        Kitchen.KitchenUpdated,
        Booking.BookingRequested,
        Booking.BookingConfirmed,
        Booking.BookingDeclined,
        Booking.BookingCancelled,
        Booking.BookingRescheduled,
        Booking.BookingCompleted,
        Booking.BookingExpired,
    )

    def create_tables(self, sql: Sql) -> None:
        bookings = self.table("bookings")
        kitchens = self.table("kitchens")
        identifier, time, money, number = (
            self.column("id"), self.column("time"), self.column("money"), self.column("int")
        )
        sql.execute(
            f"CREATE TABLE {bookings} ("
            f"id {identifier} PRIMARY KEY, "
            f"kitchen_id {identifier} NOT NULL, "
            f"host_id {identifier} NOT NULL, "
            f"customer_id {identifier} NOT NULL, "
            f"start_time {time} NOT NULL, "
            f"end_time {time} NOT NULL, "
            f"guests {number} NOT NULL, "
            "notes text NOT NULL, "
            f"hourly_rate_cents {money} NOT NULL, "
            f"price_cents {money} NOT NULL, "
            "status text NOT NULL, "
            f"captured_cents {money} NOT NULL, "
            f"released_cents {money} NOT NULL, "
            "cancelled_by_role text, "
            "reason text, "
            f"completed_automatically {self.column('bool')}, "
            f"requested_at {time} NOT NULL, "
            f"updated_at {time} NOT NULL, "
            f"version {number} NOT NULL, "
            f"position {number} NOT NULL)"
        )
        for index, columns in (
            ("customer", "customer_id, start_time, id"),
            ("kitchen", "kitchen_id, start_time, id"),
            ("host", "host_id, start_time, id"),
            ("status", "status, start_time, id"),
            ("start", "start_time, id"),
        ):
            sql.execute(f"CREATE INDEX {bookings}_{index} ON {bookings} ({columns})")
        sql.execute(
            f"CREATE TABLE {kitchens} ("
            f"id {identifier} PRIMARY KEY, "
            f"host_id {identifier} NOT NULL, "
            "name text NOT NULL, "
            "city text NOT NULL, "
            "jurisdiction text NOT NULL, "
            f"version {number} NOT NULL, "
            f"position {number} NOT NULL)"
        )

    @singledispatchmethod
    def apply(self, event: Any, position: int, sql: Sql) -> None:
        """Only the registered event types are asked for; anything else is a bug."""
        raise AssertionError(f"{self.name} does not follow {type(event).__name__}")

    # --- kitchens -------------------------------------------------------------------

    @apply.register
    def _kitchen_created(self, event: Kitchen.KitchenCreated, position: int, sql: Sql) -> None:
        sql.execute(
            f"INSERT INTO {self.table('kitchens')} (id, host_id, name, city, jurisdiction, "
            "version, position) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.host_id),
                event.name,
                event.city,
                event.jurisdiction,
                event.originator_version,
                position,
            ),
        )

    @apply.register
    def _kitchen_updated(self, event: Kitchen.KitchenUpdated, position: int, sql: Sql) -> None:
        if event.name is None and event.city is None:
            return
        sql.execute(
            f"UPDATE {self.table('kitchens')} SET name = COALESCE(%s, name), "
            "city = COALESCE(%s, city), version = %s, position = %s "
            "WHERE id = %s AND version < %s",
            (
                event.name,
                event.city,
                event.originator_version,
                position,
                self.id_value(event.originator_id),
                event.originator_version,
            ),
        )

    # --- bookings -------------------------------------------------------------------

    @apply.register
    def _requested(self, event: Booking.BookingRequested, position: int, sql: Sql) -> None:
        sql.execute(
            f"INSERT INTO {self.table('bookings')} (id, kitchen_id, host_id, customer_id, "
            "start_time, end_time, guests, notes, hourly_rate_cents, price_cents, status, "
            "captured_cents, released_cents, cancelled_by_role, reason, "
            "completed_automatically, requested_at, updated_at, version, position) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, NULL, NULL, NULL, "
            "%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.kitchen_id),
                self.id_value(event.host_id),
                self.id_value(event.customer_id),
                self.time_value(event.start_time),
                self.time_value(event.end_time),
                event.guests,
                event.notes,
                event.hourly_rate_cents,
                event.price_cents,
                event.status,
                self.time_value(event.timestamp),
                self.time_value(event.timestamp),
                event.originator_version,
                position,
            ),
        )

    def _update(
        self, event: Booking.Event, position: int, sql: Sql, assignments: str,
        values: tuple[Any, ...],
    ) -> None:
        """Apply ``assignments`` (``column = %s, ...`` over ``values``) to the booking,
        once: a version already applied matches no row."""
        sql.execute(
            f"UPDATE {self.table('bookings')} SET {assignments}, updated_at = %s, "
            "version = %s, position = %s WHERE id = %s AND version < %s",
            (
                *values,
                self.time_value(event.timestamp),
                event.originator_version,
                position,
                self.id_value(event.originator_id),
                event.originator_version,
            ),
        )

    @apply.register
    def _confirmed(self, event: Booking.BookingConfirmed, position: int, sql: Sql) -> None:
        self._update(event, position, sql, "status = %s", ("confirmed",))

    @apply.register
    def _declined(self, event: Booking.BookingDeclined, position: int, sql: Sql) -> None:
        self._update(
            event, position, sql,
            "status = %s, reason = %s, captured_cents = 0, released_cents = price_cents",
            ("declined", event.reason),
        )

    @apply.register
    def _cancelled(self, event: Booking.BookingCancelled, position: int, sql: Sql) -> None:
        self._update(
            event, position, sql,
            "status = %s, cancelled_by_role = %s, reason = %s, captured_cents = %s, "
            "released_cents = %s",
            (
                "cancelled",
                event.cancelled_by_role,
                event.reason,
                event.captured_cents,
                event.released_cents,
            ),
        )

    @apply.register
    def _rescheduled(self, event: Booking.BookingRescheduled, position: int, sql: Sql) -> None:
        self._update(
            event, position, sql,
            "start_time = %s, end_time = %s, price_cents = %s",
            (
                self.time_value(event.start_time),
                self.time_value(event.end_time),
                event.price_cents,
            ),
        )

    @apply.register
    def _completed(self, event: Booking.BookingCompleted, position: int, sql: Sql) -> None:
        self._update(
            event, position, sql,
            "status = %s, completed_automatically = %s, captured_cents = price_cents, "
            "released_cents = 0",
            ("completed", event.automatically),
        )

    @apply.register
    def _expired(self, event: Booking.BookingExpired, position: int, sql: Sql) -> None:
        self._update(
            event, position, sql,
            "status = %s, captured_cents = 0, released_cents = price_cents",
            ("expired",),
        )
