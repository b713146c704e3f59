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
  rules packaged with Prep ES (``prep_es/store/jurisdictions.toml``), loaded once per
  process, so a rebuild computes the same numbers. A kitchen in a jurisdiction that
  file does not know has no occupancy (its days are UTC days).
- **daily revenue**: captures by the UTC day of the ``HoldCaptured`` event's
  timestamp and the kitchen's city at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import Any, ClassVar
from uuid import UUID

from aggregates.account import Account
from aggregates.booking import Booking
from aggregates.jurisdictions import JurisdictionCatalog, JurisdictionRules
from aggregates.kitchen import Kitchen
from prep_es.store.jurisdiction_rules import packaged_jurisdictions
from projections.base import Projection, fold
from projections.database import Sql, uuid_from_row

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


STATUS_OF_EVENT: dict[type[Any], str] = {
    Booking.BookingConfirmed: "confirmed",
    Booking.BookingDeclined: "declined",
    Booking.BookingCancelled: "cancelled",
    Booking.BookingCompleted: "completed",
    Booking.BookingExpired: "expired",
}
"""The status each of the other booking events moves a booking to."""


class AnalyticsProjection(Projection):
    name: ClassVar[str] = "analytics"
    version: ClassVar[int] = 2
    """2: the bookings' captures indexed by day, for revenue by jurisdiction."""
    tables: ClassVar[tuple[str, ...]] = ("kitchens", "bookings", "daily_revenue")
    jurisdictions: ClassVar[JurisdictionCatalog] = packaged_jurisdictions()

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
            f"CREATE TABLE {daily} ("
            f"day {c('date')} NOT NULL, city text NOT NULL, "
            f"week_start {c('date')} NOT NULL, month_start {c('date')} NOT NULL, "
            f"captures {c('int')} NOT NULL, gmv_cents {c('money')} NOT NULL, "
            f"host_revenue_cents {c('money')} NOT NULL, "
            f"platform_revenue_cents {c('money')} NOT NULL, PRIMARY KEY (day, city))"
        )

    def create_indexes(self, sql: Sql) -> None:
        bookings = self.table("bookings")
        # Revenue of one jurisdiction sums the captures of a range of days: without this
        # it read every booking ever made (21 ms for the last 30 days among 100k bookings
        # on PostgreSQL, 1.5 ms with it). It holds what that sum reads (the kitchen, to
        # join its jurisdiction, and the amounts), and only captured bookings.
        sql.execute(
            f"CREATE INDEX {bookings}_captured_on ON {bookings} "
            "(captured_on, kitchen_id, captured_cents, commission_cents) "
            "WHERE captured_on IS NOT NULL"
        )

    # --- applying a batch --------------------------------------------------------------
    #
    # Every fold is batched: the batch's events are applied in order to in-memory rows
    # (the bookings and kitchens they touch, read in two queries); each kitchen's
    # statistics move by the difference between its bookings' rows before and after
    # (the same as the fold of its booking rows), and each changed row is written once.

    def load_batch(self, sql: Sql, events: Sequence[Any]) -> _Batch:
        batch = _Batch(self)
        booking_ids: set[UUID] = set()
        kitchen_ids: set[UUID] = set()
        for event in events:
            if isinstance(event, Kitchen.Event):
                kitchen_ids.add(event.originator_id)
            elif isinstance(event, Account.HoldCaptured):
                booking_ids.add(event.hold_id)
            else:
                booking_ids.add(event.originator_id)
                if isinstance(event, Booking.BookingRequested):
                    kitchen_ids.add(event.kitchen_id)
        batch.load(sql, booking_ids, kitchen_ids)
        return batch

    def write_batch(self, sql: Sql, batch: _Batch) -> None:
        if batch.changed:
            # One cache dependency for every analytics answer: rankings and series
            # move with any kitchen's numbers.
            self.changed.add(self.name)
        batch.write(sql)
        for kitchen_id in sorted(batch.refold):
            self._recompute_kitchen(sql, kitchen_id)

    @fold(Kitchen.KitchenCreated, batched=True)
    def _kitchen_created(self, event: Kitchen.KitchenCreated, position: int, batch: _Batch) -> None:
        if event.originator_id in batch.kitchens:
            return
        kitchen: Record = {name: 0 for name, kind in KITCHEN_COLUMNS if kind in ("int", "money")}
        kitchen.update(
            kitchen_id=self.id_value(event.originator_id),
            host_id=self.id_value(event.host_id),
            name=event.name,
            city=event.city,
            jurisdiction=event.jurisdiction,
            average_price_cents=None,
            occupancy_first_day=None,
            occupancy_last_day=None,
            available_minutes=None,
        )
        batch.kitchens[event.originator_id] = kitchen
        batch.kitchen_changed(event.originator_id)

    @fold(Kitchen.KitchenUpdated, batched=True)
    def _kitchen_updated(self, event: Kitchen.KitchenUpdated, position: int, batch: _Batch) -> None:
        found = batch.kitchens.get(event.originator_id)
        if found is None or (event.name is None and event.city is None):
            return
        if event.name is not None:
            found["name"] = event.name
        if event.city is not None:
            found["city"] = event.city
        batch.kitchen_changed(event.originator_id)

    @fold(Booking.BookingRequested, batched=True)
    def _requested(self, event: Booking.BookingRequested, position: int, batch: _Batch) -> None:
        owner = batch.kitchen(event.kitchen_id)
        local_day = self.local_day(str(owner["jurisdiction"]), event.start_time)
        if event.originator_id in batch.bookings:
            return
        booking: Record = {
            "booking_id": self.id_value(event.originator_id),
            "kitchen_id": self.id_value(event.kitchen_id),
            "start_time": self.time_value(event.start_time),
            "end_time": self.time_value(event.end_time),
            "local_day": local_day,
            "minutes": _minutes(event.start_time, event.end_time),
            "price_cents": event.price_cents,
            "status": event.status,
            "captured_cents": 0,
            "payee_cents": 0,
            "commission_cents": 0,
            "captured_at": None,
            "captured_on": None,
            "capture_city": None,
        }
        batch.bookings[event.originator_id] = booking
        batch.count(event.originator_id, booking, +1)

    @fold(Booking.BookingRescheduled, batched=True)
    def _rescheduled(self, event: Booking.BookingRescheduled, position: int, batch: _Batch) -> None:
        booking = batch.booking(event.originator_id)
        owner = batch.kitchen(uuid_from_row(booking["kitchen_id"]))
        batch.change(
            event.originator_id,
            start_time=self.time_value(event.start_time),
            end_time=self.time_value(event.end_time),
            local_day=self.local_day(str(owner["jurisdiction"]), event.start_time),
            minutes=_minutes(event.start_time, event.end_time),
            price_cents=event.price_cents,
        )

    @fold(Account.HoldCaptured, batched=True)
    def _captured(self, event: Account.HoldCaptured, position: int, batch: _Batch) -> None:
        # Every hold is a booking's (its id is the booking id): the capture is that
        # booking's revenue, in the city its kitchen is in now.
        captured = batch.bookings.get(event.hold_id)
        assert captured is not None, f"hold {event.hold_id} captured for an unknown booking"
        owner = batch.kitchen(uuid_from_row(captured["kitchen_id"]))
        batch.change(
            event.hold_id,
            captured_cents=event.captured_cents,
            payee_cents=event.payee_cents,
            commission_cents=event.commission_cents,
            captured_at=self.time_value(event.timestamp),
            captured_on=event.timestamp.astimezone(UTC).date(),
            capture_city=owner["city"],
        )

    @fold(*STATUS_OF_EVENT, batched=True)
    def _status_changed(self, event: Booking.Event, position: int, batch: _Batch) -> None:
        batch.change(event.originator_id, status=STATUS_OF_EVENT[type(event)])

    # --- recomputing -----------------------------------------------------------------

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

    @classmethod
    def _rules(cls, jurisdiction: str) -> JurisdictionRules | None:
        return cls.jurisdictions.get(jurisdiction) if jurisdiction in cls.jurisdictions else None

    @classmethod
    def local_day(cls, jurisdiction: str, start_time: datetime) -> date:
        rules = cls._rules(jurisdiction)
        zone = UTC if rules is None else rules.zone
        return start_time.astimezone(zone).date()

    @classmethod
    def available_minutes(
        cls, jurisdiction: str, first_day: date | None, last_day: date | None
    ) -> int | None:
        rules = cls._rules(jurisdiction)
        if first_day is None or last_day is None or rules is None:
            return None
        days = (last_day - first_day).days + 1
        return days * (rules.closes_at_minute - rules.opens_at_minute)


KITCHEN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kitchen_id", "id"),
    ("host_id", "id"),
    ("name", "text"),
    ("city", "text"),
    ("jurisdiction", "text"),
    ("total_bookings", "int"),
    *((f"{status}_bookings", "int") for status in BOOKING_STATUSES),
    ("booked_minutes", "int"),
    ("completed_price_cents", "money"),
    ("average_price_cents", "money"),
    ("gmv_cents", "money"),
    ("host_revenue_cents", "money"),
    ("platform_revenue_cents", "money"),
    ("occupancy_first_day", "date"),
    ("occupancy_last_day", "date"),
    ("available_minutes", "int"),
)
BOOKING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("booking_id", "id"),
    ("kitchen_id", "id"),
    ("start_time", "time"),
    ("end_time", "time"),
    ("local_day", "date"),
    ("minutes", "int"),
    ("price_cents", "money"),
    ("status", "text"),
    ("captured_cents", "money"),
    ("payee_cents", "money"),
    ("commission_cents", "money"),
    ("captured_at", "time"),
    ("captured_on", "date"),
    ("capture_city", "text"),
)
DAILY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("day", "date"),
    ("city", "text"),
    ("week_start", "date"),
    ("month_start", "date"),
    ("captures", "int"),
    ("gmv_cents", "money"),
    ("host_revenue_cents", "money"),
    ("platform_revenue_cents", "money"),
)
DATE_COLUMNS = frozenset({"occupancy_first_day", "occupancy_last_day", "local_day", "captured_on"})
"""Kept as ``date`` in memory whatever the engine (ISO text on SQLite)."""

Record = dict[str, Any]


class _Batch:
    """One batch's rows in memory: loaded, changed event by event, written once."""

    def __init__(self, projection: AnalyticsProjection) -> None:
        self.projection = projection
        self.bookings: dict[UUID, Record] = {}
        self.kitchens: dict[UUID, Record] = {}
        self.changed_bookings: set[UUID] = set()
        self.changed_kitchens: set[UUID] = set()
        self.daily: dict[tuple[date, str], list[int]] = {}
        """(day, city) -> change of captures, GMV, host and platform revenue."""
        self.refold: set[UUID] = set()
        """Kitchens whose first/last completed day may have moved back (a completed
        booking changed): recomputed from their booking rows after the writes."""
        self.changed = False

    # --- reading -------------------------------------------------------------------

    def load(self, sql: Sql, booking_ids: set[UUID], kitchen_ids: set[UUID]) -> None:
        for row in self._select(sql, "bookings", BOOKING_COLUMNS, "booking_id", booking_ids):
            self.bookings[uuid_from_row(row["booking_id"])] = row
        kitchen_ids |= {uuid_from_row(row["kitchen_id"]) for row in self.bookings.values()}
        for row in self._select(sql, "kitchens", KITCHEN_COLUMNS, "kitchen_id", kitchen_ids):
            self.kitchens[uuid_from_row(row["kitchen_id"])] = row

    def _select(
        self,
        sql: Sql,
        table: str,
        columns: tuple[tuple[str, str], ...],
        key: str,
        ids: set[UUID],
    ) -> list[Record]:
        rows = self.projection.load_rows(sql, table, [name for name, _ in columns], key, ids)
        for row in rows:
            for name in DATE_COLUMNS.intersection(row):
                if row[name] is not None:
                    row[name] = as_date(row[name])
        return rows

    # --- changing -------------------------------------------------------------------

    def booking(self, booking_id: UUID) -> Record:
        booking = self.bookings.get(booking_id)
        assert booking is not None, f"event of an unknown booking {booking_id}"
        return booking

    def kitchen(self, kitchen_id: UUID) -> Record:
        kitchen = self.kitchens.get(kitchen_id)
        assert kitchen is not None, f"booking of an unknown kitchen {kitchen_id}"
        return kitchen

    def change(self, booking_id: UUID, **values: Any) -> None:
        booking = self.booking(booking_id)
        completed_on = booking["local_day"] if booking["status"] == "completed" else None
        self.count(booking_id, booking, -1)
        booking.update(values)
        self.count(booking_id, booking, +1)
        if completed_on is not None and (
            booking["status"] != "completed" or booking["local_day"] != completed_on
        ):
            # A completed day went away: the first/last day may move back.
            self.refold.add(uuid_from_row(booking["kitchen_id"]))

    def kitchen_changed(self, kitchen_id: UUID) -> None:
        self.changed_kitchens.add(kitchen_id)
        self.changed = True

    def count(self, booking_id: UUID, booking: Record, sign: int) -> None:
        """Add (``sign`` +1) or take away (−1) the booking's share of its kitchen's
        statistics and of its capture day's revenue."""
        kitchen_id = uuid_from_row(booking["kitchen_id"])
        kitchen = self.kitchen(kitchen_id)
        status = booking["status"]
        assert status in BOOKING_STATUSES, status
        kitchen["total_bookings"] += sign
        kitchen[f"{status}_bookings"] += sign
        if status == "completed":
            kitchen["booked_minutes"] += sign * booking["minutes"]
            kitchen["completed_price_cents"] += sign * booking["price_cents"]
            day: date = booking["local_day"]
            if sign > 0:  # taking a day away is change's (it may refold)
                first, last = kitchen["occupancy_first_day"], kitchen["occupancy_last_day"]
                kitchen["occupancy_first_day"] = day if first is None else min(first, day)
                kitchen["occupancy_last_day"] = day if last is None else max(last, day)
        kitchen["gmv_cents"] += sign * booking["captured_cents"]
        kitchen["host_revenue_cents"] += sign * booking["payee_cents"]
        kitchen["platform_revenue_cents"] += sign * booking["commission_cents"]
        if booking["captured_on"] is not None:
            key = (booking["captured_on"], str(booking["capture_city"]))
            totals = self.daily.setdefault(key, [0, 0, 0, 0])
            totals[0] += sign
            totals[1] += sign * booking["captured_cents"]
            totals[2] += sign * booking["payee_cents"]
            totals[3] += sign * booking["commission_cents"]
        self.changed_bookings.add(booking_id)
        self.kitchen_changed(kitchen_id)

    # --- writing ---------------------------------------------------------------------

    def write(self, sql: Sql) -> None:
        p = self.projection
        for kitchen_id in self.changed_kitchens:
            kitchen = self.kitchens[kitchen_id]
            completed = kitchen["completed_bookings"]
            kitchen["average_price_cents"] = (
                half_up_division(kitchen["completed_price_cents"], completed) if completed else None
            )
            kitchen["available_minutes"] = p.available_minutes(
                str(kitchen["jurisdiction"]),
                kitchen["occupancy_first_day"],
                kitchen["occupancy_last_day"],
            )
        self._upsert(
            sql, "kitchens", KITCHEN_COLUMNS, "kitchen_id", self.kitchens, self.changed_kitchens
        )
        self._upsert(
            sql, "bookings", BOOKING_COLUMNS, "booking_id", self.bookings, self.changed_bookings
        )
        daily_table = p.table("daily_revenue")
        sums = ", ".join(
            f"{name} = {daily_table}.{name} + excluded.{name}"
            for name in ("captures", "gmv_cents", "host_revenue_cents", "platform_revenue_cents")
        )
        p.insert_rows(
            sql,
            "daily_revenue",
            DAILY_COLUMNS,
            [
                (
                    p.date_value(day),
                    city,
                    p.date_value(week_start(day)),
                    p.date_value(month_start(day)),
                    *totals,
                )
                for (day, city), totals in sorted(self.daily.items())
                if any(totals)
            ],
            on_conflict=f"ON CONFLICT (day, city) DO UPDATE SET {sums}",
        )

    def _upsert(
        self,
        sql: Sql,
        table: str,
        columns: tuple[tuple[str, str], ...],
        key: str,
        records: dict[UUID, Record],
        changed: set[UUID],
    ) -> None:
        p = self.projection
        names = [name for name, _ in columns]
        dates = [name for name, kind in columns if kind == "date"]
        rows = []
        # In id order (by the ids' integers: comparing UUIDs runs Python code).
        for record_id in sorted(changed, key=attrgetter("int")):
            record = records[record_id]
            for name in dates:
                if record[name] is not None:
                    record = {**record, name: p.date_value(record[name])}
            rows.append([record[name] for name in names])
        p.upsert_rows(sql, table, columns, key, rows)


def _minutes(start: datetime, end: datetime) -> int:
    seconds = int((end - start).total_seconds())
    assert seconds > 0 and seconds % SECONDS_PER_MINUTE == 0, (start, end)
    return seconds // SECONDS_PER_MINUTE
