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
from uuid import UUID

from aggregates.booking import Booking, BookingStatus
from aggregates.kitchen import Kitchen
from projections.base import Projection
from projections.database import Dialect, Sql


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
            self.column("id"),
            self.column("time"),
            self.column("money"),
            self.column("int"),
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

    def create_indexes(self, sql: Sql) -> None:
        bookings = self.table("bookings")
        for index, columns in (
            ("customer", "customer_id, start_time, id"),
            ("kitchen", "kitchen_id, start_time, id"),
            ("host", "host_id, start_time, id"),
            ("status", "status, start_time, id"),
            ("start", "start_time, id"),
        ):
            sql.execute(f"CREATE INDEX {bookings}_{index} ON {bookings} ({columns})")

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
    #
    # Booking events are recorded in ``apply`` and replayed in ``after_batch`` over the
    # rows they touch (loaded in one query, for bookings not requested in the batch);
    # each changed row is then written once, by one upsert for the whole batch.

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("id", "id"),
        ("kitchen_id", "id"),
        ("host_id", "id"),
        ("customer_id", "id"),
        ("start_time", "time"),
        ("end_time", "time"),
        ("guests", "int"),
        ("notes", "text"),
        ("hourly_rate_cents", "money"),
        ("price_cents", "money"),
        ("status", "text"),
        ("captured_cents", "money"),
        ("released_cents", "money"),
        ("cancelled_by_role", "text"),
        ("reason", "text"),
        ("completed_automatically", "bool"),
        ("requested_at", "time"),
        ("updated_at", "time"),
        ("version", "int"),
        ("position", "int"),
    )

    def __init__(self, generation: int, dialect: Dialect) -> None:
        super().__init__(generation, dialect)
        self._pending: list[tuple[Booking.Event, int]] = []

    def before_batch(self) -> None:
        self._pending = []

    def after_batch(self, sql: Sql) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        requested = {
            event.originator_id
            for event, _ in pending
            if isinstance(event, Booking.BookingRequested)
        }
        unknown = list({event.originator_id for event, _ in pending} - requested)
        rows = self._stored_rows(sql, unknown)
        changed: dict[UUID, None] = {}
        for event, position in pending:
            if self._replay(rows, event, position):
                changed[event.originator_id] = None
        if not changed:
            return
        names = [name for name, _ in self.COLUMNS]
        self.insert_rows(
            sql,
            "bookings",
            self.COLUMNS,
            [[rows[booking_id][name] for name in names] for booking_id in changed],
            on_conflict="ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in names[1:]),
        )

    def _stored_rows(self, sql: Sql, booking_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
        if not booking_ids:
            return {}
        bookings = self.table("bookings")
        columns = ", ".join(name for name, _ in self.COLUMNS)
        if self.dialect == "postgresql":
            found = sql.fetchall(
                f"SELECT {columns} FROM {bookings} WHERE id = ANY(%s::uuid[])", (booking_ids,)
            )
        else:
            found = []
            for start in range(0, len(booking_ids), 500):
                chunk = booking_ids[start : start + 500]
                found += sql.fetchall(
                    f"SELECT {columns} FROM {bookings} WHERE id IN "
                    f"({', '.join(['%s'] * len(chunk))})",
                    [str(booking_id) for booking_id in chunk],
                )
        return {UUID(str(row["id"])): dict(row) for row in found}

    def _replay(
        self, rows: dict[UUID, dict[str, Any]], event: Booking.Event, position: int
    ) -> bool:
        """Apply ``event`` to its row in ``rows``; whether the row changed. An event whose
        version was already applied (or of a booking never requested) changes nothing."""
        booking_id = event.originator_id
        if isinstance(event, Booking.BookingRequested):
            if booking_id in rows:
                return False
            recorded_at = self.time_value(event.timestamp)
            rows[booking_id] = {
                "id": self.id_value(booking_id),
                "kitchen_id": self.id_value(event.kitchen_id),
                "host_id": self.id_value(event.host_id),
                "customer_id": self.id_value(event.customer_id),
                "start_time": self.time_value(event.start_time),
                "end_time": self.time_value(event.end_time),
                "guests": event.guests,
                "notes": event.notes,
                "hourly_rate_cents": event.hourly_rate_cents,
                "price_cents": event.price_cents,
                "status": event.status,
                "captured_cents": 0,
                "released_cents": 0,
                "cancelled_by_role": None,
                "reason": None,
                "completed_automatically": None,
                "requested_at": recorded_at,
                "updated_at": recorded_at,
                "version": event.originator_version,
                "position": position,
            }
            return True
        row = rows.get(booking_id)
        if row is None or row["version"] >= event.originator_version:
            return False
        if isinstance(event, Booking.BookingConfirmed):
            row["status"] = BookingStatus.CONFIRMED
        elif isinstance(event, Booking.BookingDeclined):
            row.update(
                status=BookingStatus.DECLINED,
                reason=event.reason,
                captured_cents=0,
                released_cents=row["price_cents"],
            )
        elif isinstance(event, Booking.BookingCancelled):
            row.update(
                status=BookingStatus.CANCELLED,
                cancelled_by_role=event.cancelled_by_role,
                reason=event.reason,
                captured_cents=event.captured_cents,
                released_cents=event.released_cents,
            )
        elif isinstance(event, Booking.BookingRescheduled):
            row.update(
                start_time=self.time_value(event.start_time),
                end_time=self.time_value(event.end_time),
                price_cents=event.price_cents,
            )
        elif isinstance(event, Booking.BookingCompleted):
            row.update(
                status=BookingStatus.COMPLETED,
                completed_automatically=event.automatically,
                captured_cents=row["price_cents"],
                released_cents=0,
            )
        elif isinstance(event, Booking.BookingExpired):
            row.update(
                status=BookingStatus.EXPIRED, captured_cents=0, released_cents=row["price_cents"]
            )
        else:
            raise AssertionError(f"{self.name} does not follow {type(event).__name__}")
        row.update(
            updated_at=self.time_value(event.timestamp),
            version=event.originator_version,
            position=position,
        )
        return True

    def _defer(self, event: Booking.Event, position: int) -> None:
        self._pending.append((event, position))

    @apply.register
    def _requested(self, event: Booking.BookingRequested, position: int, sql: Sql) -> None:
        self._defer(event, position)

    @apply.register
    def _confirmed(self, event: Booking.BookingConfirmed, position: int, sql: Sql) -> None:
        self._defer(event, position)

    @apply.register
    def _declined(self, event: Booking.BookingDeclined, position: int, sql: Sql) -> None:
        self._defer(event, position)

    @apply.register
    def _cancelled(self, event: Booking.BookingCancelled, position: int, sql: Sql) -> None:
        self._defer(event, position)

    @apply.register
    def _rescheduled(self, event: Booking.BookingRescheduled, position: int, sql: Sql) -> None:
        self._defer(event, position)

    @apply.register
    def _completed(self, event: Booking.BookingCompleted, position: int, sql: Sql) -> None:
        self._defer(event, position)

    @apply.register
    def _expired(self, event: Booking.BookingExpired, position: int, sql: Sql) -> None:
        self._defer(event, position)
