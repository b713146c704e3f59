"""Bookings: one row per booking, as customers, hosts and admins list and read them.

Rows follow the booking's own events; a small ``kitchens`` table (name, city,
jurisdiction — none of which are on booking events) is kept from the kitchen's events
so that queries can show where a booking is without asking the event store.

Every write is keyed by the booking (or kitchen) and guarded by the aggregate version:
an event already applied changes nothing when a batch is retried.

What a person typed is theirs: a booking's ``notes`` its customer's, a decline's or
cancellation's ``reason`` whoever gave it (``reason_author_id``). When a user is erased
both are blanked (NULL) wherever they are the erased user's; money, times and statuses
stay. Their events read with those fields erased (``None``), so a rebuild writes NULL
where the erasure left NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

from aggregates.booking import Booking, BookingStatus
from aggregates.kitchen import Kitchen
from aggregates.policies import HoldSplit, captured_in_full, released_in_full
from aggregates.user import User
from projections.base import Projection, fold
from projections.database import Sql, uuid_from_row


class BookingsProjection(Projection):
    name: ClassVar[str] = "bookings"
    version: ClassVar[int] = 2
    """2: who gave each reason (``reason_author_id``); notes and reasons blanked when
    their author is erased."""
    tables: ClassVar[tuple[str, ...]] = ("bookings", "kitchens")

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
            "notes text, "
            f"hourly_rate_cents {money} NOT NULL, "
            f"price_cents {money} NOT NULL, "
            "status text NOT NULL, "
            f"captured_cents {money} NOT NULL, "
            f"released_cents {money} NOT NULL, "
            "cancelled_by_role text, "
            "reason text, "
            f"reason_author_id {identifier}, "
            f"completed_automatically {self.column('bool')}, "
            f"requested_at {time} NOT NULL, "
            f"updated_at {time} NOT NULL, "
            f"version {number} NOT NULL, "
            f"position {number} NOT NULL)"
        )
        # An erasure finds the erased user's notes and reasons by these.
        sql.execute(f"CREATE INDEX {bookings}_customer ON {bookings} (customer_id, start_time, id)")
        sql.execute(
            f"CREATE INDEX {bookings}_reason_author ON {bookings} (reason_author_id) "
            "WHERE reason_author_id IS NOT NULL"
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
            ("kitchen", "kitchen_id, start_time, id"),
            ("host", "host_id, start_time, id"),
            ("status", "status, start_time, id"),
            ("start", "start_time, id"),
        ):
            sql.execute(f"CREATE INDEX {bookings}_{index} ON {bookings} ({columns})")

    # --- kitchens -------------------------------------------------------------------

    @fold(Kitchen.KitchenCreated)
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

    @fold(Kitchen.KitchenUpdated)
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
    # Booking events are batched folds: they run at the end of the batch over the rows
    # they touch (loaded in one query, for bookings not requested in the batch), and
    # each changed row is then written once, by one upsert for the whole batch. How a
    # booking's end splits its hold is the domain's rule (``aggregates.policies``).

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
        ("reason_author_id", "id"),
        ("completed_automatically", "bool"),
        ("requested_at", "time"),
        ("updated_at", "time"),
        ("version", "int"),
        ("position", "int"),
    )

    def load_batch(self, sql: Sql, events: Sequence[Any]) -> BookingRows:
        requested = {
            event.originator_id for event in events if isinstance(event, Booking.BookingRequested)
        }
        unknown = list(
            {event.originator_id for event in events if isinstance(event, Booking.Event)}
            - requested
        )
        names = [name for name, _ in self.COLUMNS]
        rows = self.load_rows(sql, "bookings", names, "id", unknown)
        return BookingRows({uuid_from_row(row["id"]): dict(row) for row in rows})

    def write_batch(self, sql: Sql, batch: BookingRows) -> None:
        if batch.changed:
            names = [name for name, _ in self.COLUMNS]
            self.upsert_rows(
                sql,
                "bookings",
                self.COLUMNS,
                "id",
                [[batch.rows[booking_id][name] for name in names] for booking_id in batch.changed],
            )
        bookings = self.table("bookings")
        for user_id in batch.erased:
            # After the batch's rows: they may come from events decoded before the
            # erasure destroyed their key. (Nothing the user typed comes after it.)
            erased = self.id_value(user_id)
            sql.execute(
                f"UPDATE {bookings} SET notes = NULL WHERE customer_id = %s AND notes IS NOT NULL",
                (erased,),
            )
            sql.execute(
                f"UPDATE {bookings} SET reason = NULL "
                "WHERE reason_author_id = %s AND reason IS NOT NULL",
                (erased,),
            )

    @fold(Booking.BookingRequested, batched=True)
    def _requested(
        self, event: Booking.BookingRequested, position: int, batch: BookingRows
    ) -> None:
        booking_id = event.originator_id
        if booking_id in batch.rows:
            return
        recorded_at = self.time_value(event.timestamp)
        batch.rows[booking_id] = {
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
            "reason_author_id": None,
            "completed_automatically": None,
            "requested_at": recorded_at,
            "updated_at": recorded_at,
            "version": event.originator_version,
            "position": position,
        }
        batch.changed[booking_id] = None

    @fold(Booking.BookingConfirmed, batched=True)
    def _confirmed(
        self, event: Booking.BookingConfirmed, position: int, batch: BookingRows
    ) -> None:
        if (row := batch.unapplied(event)) is not None:
            self._update(batch, event, position, row, status=BookingStatus.CONFIRMED)

    @fold(Booking.BookingDeclined, batched=True)
    def _declined(self, event: Booking.BookingDeclined, position: int, batch: BookingRows) -> None:
        if (row := batch.unapplied(event)) is not None:
            split = released_in_full(row["price_cents"])
            self._update(
                batch,
                event,
                position,
                row,
                status=BookingStatus.DECLINED,
                **self._reason(event, event.reason),
                **_money(split),
            )

    @fold(Booking.BookingCancelled, batched=True)
    def _cancelled(
        self, event: Booking.BookingCancelled, position: int, batch: BookingRows
    ) -> None:
        if (row := batch.unapplied(event)) is not None:
            self._update(
                batch,
                event,
                position,
                row,
                status=BookingStatus.CANCELLED,
                cancelled_by_role=event.cancelled_by_role,
                **self._reason(event, event.reason),
                captured_cents=event.captured_cents,
                released_cents=event.released_cents,
            )

    @fold(Booking.BookingRescheduled, batched=True)
    def _rescheduled(
        self, event: Booking.BookingRescheduled, position: int, batch: BookingRows
    ) -> None:
        if (row := batch.unapplied(event)) is not None:
            self._update(
                batch,
                event,
                position,
                row,
                start_time=self.time_value(event.start_time),
                end_time=self.time_value(event.end_time),
                price_cents=event.price_cents,
            )

    @fold(Booking.BookingCompleted, batched=True)
    def _completed(
        self, event: Booking.BookingCompleted, position: int, batch: BookingRows
    ) -> None:
        if (row := batch.unapplied(event)) is not None:
            split = captured_in_full(row["price_cents"])
            self._update(
                batch,
                event,
                position,
                row,
                status=BookingStatus.COMPLETED,
                completed_automatically=event.automatically,
                **_money(split),
            )

    @fold(Booking.BookingExpired, batched=True)
    def _expired(self, event: Booking.BookingExpired, position: int, batch: BookingRows) -> None:
        if (row := batch.unapplied(event)) is not None:
            split = released_in_full(row["price_cents"])
            self._update(batch, event, position, row, status=BookingStatus.EXPIRED, **_money(split))

    @fold(User.UserErased, batched=True)
    def _user_erased(self, event: User.UserErased, position: int, batch: BookingRows) -> None:
        """:meth:`write_batch` blanks what the user typed, once the batch's rows are
        written."""
        batch.erased.append(event.originator_id)

    def _reason(self, event: Booking.Event, reason: str | None) -> dict[str, Any]:
        """The reason's columns: the reason, and who declined or cancelled, who would
        have typed it (kept with no reason too: a reason erased with its author reads
        as none, and a rebuild must write the row the erasure left)."""
        author = event.metadata.actor_id
        return {
            "reason": reason,
            "reason_author_id": None if author is None else self.id_value(author),
        }

    def _update(
        self,
        batch: BookingRows,
        event: Booking.Event,
        position: int,
        row: dict[str, Any],
        **values: Any,
    ) -> None:
        row.update(
            values,
            updated_at=self.time_value(event.timestamp),
            version=event.originator_version,
            position=position,
        )
        batch.changed[event.originator_id] = None


@dataclass
class BookingRows:
    """The ``bookings`` rows a batch's booking events change, by booking id."""

    rows: dict[UUID, dict[str, Any]]
    changed: dict[UUID, None] = field(default_factory=dict)
    """The bookings whose rows changed, in the order they first did."""
    erased: list[UUID] = field(default_factory=list)
    """The users the batch erased."""

    def unapplied(self, event: Booking.Event) -> dict[str, Any] | None:
        """The row ``event`` changes; ``None`` if its version was already applied (or
        the booking was never requested): it then changes nothing."""
        row = self.rows.get(event.originator_id)
        if row is None or row["version"] >= event.originator_version:
            return None
        return row


def _money(split: HoldSplit) -> dict[str, int]:
    return {"captured_cents": split.captured_cents, "released_cents": split.released_cents}
