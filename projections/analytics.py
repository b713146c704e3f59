"""Analytics: per-kitchen booking statistics and a daily revenue series, for analysts.

Tables (read through the views ``analytics_kitchens``, ``analytics_bookings``,
``analytics_daily_revenue``):

``kitchens``
    One row per kitchen: its host, name, city and jurisdiction as the latest events
    say, and its statistics, recomputed from ``bookings`` whenever one of its bookings
    changes (so a statistic is always the fold of the booking rows, never a counter
    that a replayed event could move twice).
``bookings``
    One row per booking: kitchen, window, price, current status, and its capture (an
    ``Account.HoldCaptured`` whose ``hold_id`` is the booking id) with the city of the
    kitchen at the moment of the capture.
``daily_revenue``
    One row per (UTC day, city) with captures: GMV and platform revenue, and the
    Monday and first of the month the day falls in, so that weekly and monthly series
    group by a column.

Definitions (what the numbers mean):

- **total bookings**: every booking ever requested of the kitchen; the six status
  counts (pending, confirmed, completed, cancelled, declined, expired) are of the
  bookings' *current* status and add up to it.
- **booked minutes / hours**: the length of the kitchen's *completed* bookings.
- **GMV**: money captured from customers — completions and cancellation fees
  (``captured_cents``); **platform revenue**: the commission on it
  (``commission_cents``); **host revenue**: the host's share (``payee_cents``).
- **average price**: mean price of completed bookings, rounded half up to the cent.
- **occupancy**: completed booked minutes ÷ the kitchen's available minutes over its
  *occupancy period*: every local day (in the jurisdiction's time zone) from the first
  to the last day on which a completed booking starts, inclusive, times the
  jurisdiction's operating minutes per day. Bookings lie inside operating hours and
  never overlap, so it is between 0 and 1. Operating hours come from the jurisdiction
  rules packaged with Prep ES (``prep_es/jurisdictions.toml``), loaded once per
  process, so a rebuild computes the same numbers. A kitchen in a jurisdiction that
  file does not know has no occupancy (its days are UTC days).
- **daily revenue**: captures by the UTC day of the ``HoldCaptured`` event's
  timestamp and the kitchen's city at that moment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import singledispatchmethod
from typing import Any, ClassVar
from uuid import UUID

from aggregates.account import Account
from aggregates.booking import Booking
from aggregates.jurisdictions import JurisdictionCatalog, JurisdictionRules
from aggregates.kitchen import Kitchen
from projections.base import Projection, packaged_jurisdictions
from projections.database import Dialect, Sql

BOOKING_STATUSES = ("pending", "confirmed", "completed", "cancelled", "declined", "expired")
SECONDS_PER_MINUTE = 60



def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def month_start(day: date) -> date:
    return day.replace(day=1)


def half_up_division(numerator: int, denominator: int) -> int:
    assert numerator >= 0 and denominator > 0
    return (2 * numerator + denominator) // (2 * denominator)


def as_date(value: date | str) -> date:
    """A date column's value: a ``date`` on PostgreSQL, ISO text on SQLite."""
    if isinstance(value, str):
        return date.fromisoformat(value)
    assert not isinstance(value, datetime)
    return value


class AnalyticsProjection(Projection):
    name: ClassVar[str] = "analytics"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("kitchens", "bookings", "daily_revenue")
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
        Account.HoldCaptured,
    )
    jurisdictions: ClassVar[JurisdictionCatalog] = packaged_jurisdictions()

    def __init__(self, generation: int, dialect: Dialect) -> None:
        super().__init__(generation, dialect)
        # What this batch changed, recomputed once in after_batch. A failed batch may
        # leave entries behind; recomputing them again is harmless.
        self._changed_kitchens: set[UUID] = set()
        self._changed_days: set[tuple[date, str]] = set()

    def create_tables(self, sql: Sql) -> None:
        kitchens = self.table("kitchens")
        bookings = self.table("bookings")
        daily = self.table("daily_revenue")
        c = self.column
        status_counts = ", ".join(
            f"{status}_bookings {c('int')} NOT NULL DEFAULT 0" for status in BOOKING_STATUSES
        )
        sql.execute(
            f"CREATE TABLE {kitchens} ("
            f"kitchen_id {c('id')} PRIMARY KEY, host_id {c('id')} NOT NULL, "
            "name text NOT NULL, city text NOT NULL, jurisdiction text NOT NULL, "
            f"total_bookings {c('int')} NOT NULL DEFAULT 0, {status_counts}, "
            f"booked_minutes {c('int')} NOT NULL DEFAULT 0, "
            f"completed_price_cents {c('money')} NOT NULL DEFAULT 0, "
            f"average_price_cents {c('money')}, "
            f"gmv_cents {c('money')} NOT NULL DEFAULT 0, "
            f"host_revenue_cents {c('money')} NOT NULL DEFAULT 0, "
            f"platform_revenue_cents {c('money')} NOT NULL DEFAULT 0, "
            f"occupancy_first_day {c('date')}, occupancy_last_day {c('date')}, "
            f"available_minutes {c('int')})"
        )
        for column in ("gmv_cents", "total_bookings", "booked_minutes"):
            sql.execute(f"CREATE INDEX {kitchens}_{column} ON {kitchens} ({column}, kitchen_id)")
        sql.execute(f"CREATE INDEX {kitchens}_host_id ON {kitchens} (host_id)")
        sql.execute(
            f"CREATE TABLE {bookings} ("
            f"booking_id {c('id')} PRIMARY KEY, kitchen_id {c('id')} NOT NULL, "
            f"start_time {c('time')} NOT NULL, end_time {c('time')} NOT NULL, "
            f"local_day {c('date')} NOT NULL, minutes {c('int')} NOT NULL, "
            f"price_cents {c('money')} NOT NULL, status text NOT NULL, "
            f"captured_cents {c('money')} NOT NULL DEFAULT 0, "
            f"payee_cents {c('money')} NOT NULL DEFAULT 0, "
            f"commission_cents {c('money')} NOT NULL DEFAULT 0, "
            f"captured_at {c('time')}, captured_on {c('date')}, capture_city text)"
        )
        sql.execute(f"CREATE INDEX {bookings}_kitchen_id ON {bookings} (kitchen_id)")
        sql.execute(
            f"CREATE INDEX {bookings}_captured_on ON {bookings} (captured_on, capture_city)"
        )
        sql.execute(
            f"CREATE TABLE {daily} ("
            f"day {c('date')} NOT NULL, city text NOT NULL, "
            f"week_start {c('date')} NOT NULL, month_start {c('date')} NOT NULL, "
            f"captures {c('int')} NOT NULL, gmv_cents {c('money')} NOT NULL, "
            f"host_revenue_cents {c('money')} NOT NULL, "
            f"platform_revenue_cents {c('money')} NOT NULL, PRIMARY KEY (day, city))"
        )

    @singledispatchmethod
    def apply(self, event: Any, position: int, sql: Sql) -> None:
        """Only the registered event types are fetched; nothing else reaches here."""

    # --- kitchens ------------------------------------------------------------------

    @apply.register
    def _kitchen_created(self, event: Kitchen.KitchenCreated, position: int, sql: Sql) -> None:
        sql.execute(
            f"INSERT INTO {self.table('kitchens')} (kitchen_id, host_id, name, city, "
            "jurisdiction) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kitchen_id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.host_id),
                event.name,
                event.city,
                event.jurisdiction,
            ),
        )

    @apply.register
    def _kitchen_updated(self, event: Kitchen.KitchenUpdated, position: int, sql: Sql) -> None:
        if event.name is None and event.city is None:
            return
        sql.execute(
            f"UPDATE {self.table('kitchens')} SET name = COALESCE(%s, name), "
            "city = COALESCE(%s, city) WHERE kitchen_id = %s",
            (event.name, event.city, self.id_value(event.originator_id)),
        )

    # --- bookings ------------------------------------------------------------------

    @apply.register
    def _booking_requested(
        self, event: Booking.BookingRequested, position: int, sql: Sql
    ) -> None:
        sql.execute(
            f"INSERT INTO {self.table('bookings')} (booking_id, kitchen_id, start_time, "
            "end_time, local_day, minutes, price_cents, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (booking_id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.kitchen_id),
                self.time_value(event.start_time),
                self.time_value(event.end_time),
                self.date_value(self._local_day(sql, event.kitchen_id, event.start_time)),
                _minutes(event.start_time, event.end_time),
                event.price_cents,
                event.status,
            ),
        )
        self._changed_kitchens.add(event.kitchen_id)

    @apply.register
    def _booking_rescheduled(
        self, event: Booking.BookingRescheduled, position: int, sql: Sql
    ) -> None:
        kitchen_id = self._kitchen_of(sql, event.originator_id)
        sql.execute(
            f"UPDATE {self.table('bookings')} SET start_time = %s, end_time = %s, "
            "local_day = %s, minutes = %s, price_cents = %s WHERE booking_id = %s",
            (
                self.time_value(event.start_time),
                self.time_value(event.end_time),
                self.date_value(self._local_day(sql, kitchen_id, event.start_time)),
                _minutes(event.start_time, event.end_time),
                event.price_cents,
                self.id_value(event.originator_id),
            ),
        )
        self._changed_kitchens.add(kitchen_id)

    @apply.register
    def _booking_confirmed(
        self, event: Booking.BookingConfirmed, position: int, sql: Sql
    ) -> None:
        self._set_status(sql, event.originator_id, "confirmed")

    @apply.register
    def _booking_declined(self, event: Booking.BookingDeclined, position: int, sql: Sql) -> None:
        self._set_status(sql, event.originator_id, "declined")

    @apply.register
    def _booking_cancelled(
        self, event: Booking.BookingCancelled, position: int, sql: Sql
    ) -> None:
        self._set_status(sql, event.originator_id, "cancelled")

    @apply.register
    def _booking_completed(
        self, event: Booking.BookingCompleted, position: int, sql: Sql
    ) -> None:
        self._set_status(sql, event.originator_id, "completed")

    @apply.register
    def _booking_expired(self, event: Booking.BookingExpired, position: int, sql: Sql) -> None:
        self._set_status(sql, event.originator_id, "expired")

    def _set_status(self, sql: Sql, booking_id: UUID, status: str) -> None:
        assert status in BOOKING_STATUSES, status
        kitchen_id = self._kitchen_of(sql, booking_id)
        sql.execute(
            f"UPDATE {self.table('bookings')} SET status = %s WHERE booking_id = %s",
            (status, self.id_value(booking_id)),
        )
        self._changed_kitchens.add(kitchen_id)

    # --- money -----------------------------------------------------------------------

    @apply.register
    def _hold_captured(self, event: Account.HoldCaptured, position: int, sql: Sql) -> None:
        """Every hold is a booking's (its id is the booking id): the capture is that
        booking's revenue, in the city its kitchen is in now."""
        row = sql.fetchone(
            f"SELECT b.kitchen_id AS kitchen_id, k.city AS city "
            f"FROM {self.table('bookings')} b JOIN {self.table('kitchens')} k "
            "ON k.kitchen_id = b.kitchen_id WHERE b.booking_id = %s",
            (self.id_value(event.hold_id),),
        )
        assert row is not None, f"hold {event.hold_id} captured for an unknown booking"
        captured_on = event.timestamp.astimezone(UTC).date()
        sql.execute(
            f"UPDATE {self.table('bookings')} SET captured_cents = %s, payee_cents = %s, "
            "commission_cents = %s, captured_at = %s, captured_on = %s, capture_city = %s "
            "WHERE booking_id = %s",
            (
                event.captured_cents,
                event.payee_cents,
                event.commission_cents,
                self.time_value(event.timestamp),
                self.date_value(captured_on),
                row["city"],
                self.id_value(event.hold_id),
            ),
        )
        self._changed_kitchens.add(_uuid(row["kitchen_id"]))
        self._changed_days.add((captured_on, str(row["city"])))

    # --- recomputing -----------------------------------------------------------------

    def after_batch(self, sql: Sql) -> None:
        if self._changed_kitchens or self._changed_days:
            # One cache dependency for every analytics answer: rankings and series
            # move with any kitchen's numbers.
            self.changed.add(self.name)
        for kitchen_id in sorted(self._changed_kitchens):
            self._recompute_kitchen(sql, kitchen_id)
        for day, city in sorted(self._changed_days):
            self._recompute_day(sql, day, city)
        self._changed_kitchens.clear()
        self._changed_days.clear()

    def _recompute_kitchen(self, sql: Sql, kitchen_id: UUID) -> None:
        status_sums = ", ".join(
            f"SUM(CASE WHEN status = '{status}' THEN 1 ELSE 0 END) AS {status}_bookings"
            for status in BOOKING_STATUSES
        )
        row = sql.fetchone(
            f"SELECT COUNT(*) AS total_bookings, {status_sums}, "
            "SUM(CASE WHEN status = 'completed' THEN minutes ELSE 0 END) AS booked_minutes, "
            "SUM(CASE WHEN status = 'completed' THEN price_cents ELSE 0 END) "
            "AS completed_price_cents, "
            "MIN(CASE WHEN status = 'completed' THEN local_day END) AS first_day, "
            "MAX(CASE WHEN status = 'completed' THEN local_day END) AS last_day, "
            "SUM(captured_cents) AS gmv_cents, SUM(payee_cents) AS host_revenue_cents, "
            "SUM(commission_cents) AS platform_revenue_cents "
            f"FROM {self.table('bookings')} WHERE kitchen_id = %s",
            (self.id_value(kitchen_id),),
        )
        assert row is not None
        jurisdiction = sql.scalar(
            f"SELECT jurisdiction FROM {self.table('kitchens')} WHERE kitchen_id = %s",
            (self.id_value(kitchen_id),),
        )
        assert jurisdiction is not None, f"bookings of an unknown kitchen {kitchen_id}"
        counts = {f"{s}_bookings": int(row[f"{s}_bookings"] or 0) for s in BOOKING_STATUSES}
        completed = counts["completed_bookings"]
        completed_price_cents = int(row["completed_price_cents"] or 0)
        first_day = None if row["first_day"] is None else as_date(row["first_day"])
        last_day = None if row["last_day"] is None else as_date(row["last_day"])
        available_minutes = None
        rules = self._rules(str(jurisdiction))
        if first_day is not None and last_day is not None and rules is not None:
            days = (last_day - first_day).days + 1
            available_minutes = days * (rules.closes_at_minute - rules.opens_at_minute)
        assignments = ", ".join(f"{name} = %s" for name in counts)
        sql.execute(
            f"UPDATE {self.table('kitchens')} SET total_bookings = %s, {assignments}, "
            "booked_minutes = %s, completed_price_cents = %s, average_price_cents = %s, "
            "gmv_cents = %s, host_revenue_cents = %s, platform_revenue_cents = %s, "
            "occupancy_first_day = %s, occupancy_last_day = %s, available_minutes = %s "
            "WHERE kitchen_id = %s",
            (
                int(row["total_bookings"]),
                *counts.values(),
                int(row["booked_minutes"] or 0),
                completed_price_cents,
                half_up_division(completed_price_cents, completed) if completed else None,
                int(row["gmv_cents"] or 0),
                int(row["host_revenue_cents"] or 0),
                int(row["platform_revenue_cents"] or 0),
                None if first_day is None else self.date_value(first_day),
                None if last_day is None else self.date_value(last_day),
                available_minutes,
                self.id_value(kitchen_id),
            ),
        )

    def _recompute_day(self, sql: Sql, day: date, city: str) -> None:
        sql.execute(
            f"INSERT INTO {self.table('daily_revenue')} (day, city, week_start, month_start, "
            "captures, gmv_cents, host_revenue_cents, platform_revenue_cents) "
            "SELECT %s, %s, %s, %s, COUNT(*), COALESCE(SUM(captured_cents), 0), "
            "COALESCE(SUM(payee_cents), 0), COALESCE(SUM(commission_cents), 0) "
            f"FROM {self.table('bookings')} WHERE captured_on = %s AND capture_city = %s "
            "ON CONFLICT (day, city) DO UPDATE SET captures = excluded.captures, "
            "gmv_cents = excluded.gmv_cents, host_revenue_cents = excluded.host_revenue_cents, "
            "platform_revenue_cents = excluded.platform_revenue_cents",
            (
                self.date_value(day),
                city,
                self.date_value(week_start(day)),
                self.date_value(month_start(day)),
                self.date_value(day),
                city,
            ),
        )

    # --- lookups in this projection's own tables -------------------------------------

    def _kitchen_of(self, sql: Sql, booking_id: UUID) -> UUID:
        kitchen_id = sql.scalar(
            f"SELECT kitchen_id FROM {self.table('bookings')} WHERE booking_id = %s",
            (self.id_value(booking_id),),
        )
        assert kitchen_id is not None, f"event of an unknown booking {booking_id}"
        return _uuid(kitchen_id)

    def _local_day(self, sql: Sql, kitchen_id: UUID, start_time: datetime) -> date:
        jurisdiction = sql.scalar(
            f"SELECT jurisdiction FROM {self.table('kitchens')} WHERE kitchen_id = %s",
            (self.id_value(kitchen_id),),
        )
        assert jurisdiction is not None, f"booking of an unknown kitchen {kitchen_id}"
        rules = self._rules(str(jurisdiction))
        zone = UTC if rules is None else rules.zone
        return start_time.astimezone(zone).date()

    @classmethod
    def _rules(cls, jurisdiction: str) -> JurisdictionRules | None:
        return cls.jurisdictions.get(jurisdiction) if jurisdiction in cls.jurisdictions else None


def _minutes(start: datetime, end: datetime) -> int:
    seconds = int((end - start).total_seconds())
    assert seconds > 0 and seconds % SECONDS_PER_MINUTE == 0, (start, end)
    return seconds // SECONDS_PER_MINUTE


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
