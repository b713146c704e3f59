"""Kitchens: the listing, its moderation status and compliance, and the booked intervals
that answer "which kitchens are free for this window" — the read model behind search.

Tables (per generation; queries read them through the ``kitchens_<table>`` views):

- ``kitchens``: one row per kitchen, with ``changed_since_approval`` (the fields its
  host edited since an admin last approved it, for the moderation queue) and
  ``compliant_through``: the last date on which
  every certificate kind its jurisdiction requires is verified and unexpired (the
  minimum over required kinds of the latest ``expires_on`` of a verified certificate of
  that kind; NULL while a kind is missing). ``seq`` (the position of ``KitchenCreated``)
  is a stable integer key for the full-text table and the ``newest`` order.
- ``amenities``: ``(kitchen_id, amenity)``, indexed by amenity, for "has all of these".
- ``certificates``: what a kitchen's compliance is computed from and shown with.
- ``booked``: the pending and confirmed bookings of each kitchen (a booking leaves it
  when it is declined, cancelled, expired or completed), keyed by booking id.
- ``booked_spans``: the interval index over ``booked``, keyed by ``booked.seq``: on
  PostgreSQL a ``tstzrange`` under a GiST index, with the booking's kitchen beside it so
  "which kitchens are booked in this window" is one index scan, no join; on SQLite an
  R*Tree of epoch minutes (a superset: queries confirm against ``booked``'s exact
  times).
- ``search``: full text of name, description, city and amenities: a ``tsvector`` under a
  GIN index on PostgreSQL; an FTS5 table (rowid = ``kitchens.seq``) on SQLite.

Search reads published kitchens through covering indexes (PostgreSQL: one by city,
one by name, each holding every column a search filters or sorts on), so a search
and its ``total`` are index-only scans that never touch the rows outside the page.

Longer than most modules (about 670 lines) because it is one read model: the six
tables are written by the same events, in the same batch, and only make sense together.

Compliance depends on the jurisdiction rules (which kinds are required). The rules are
data the projection is built with (``jurisdictions``, by default the packaged file), so
a rebuild gives the same rows; a change of the rules needs a rebuild to reach old rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

import orjson

from aggregates.booking import Booking
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.kitchen import Kitchen
from prep_es.store.jurisdiction_rules import packaged_jurisdictions
from projections.base import Projection, fold
from projections.database import Dialect, Sql, uuid_from_row

TEXT_SEARCH_CONFIG = "english"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SPAN_MINUTE_MIN = -(2**31)
SPAN_MINUTE_MAX = 2**31 - 1
"""R*Tree ``rtree_i32`` coordinates are 32-bit: minutes reach far past any booking."""

PUBLISHED = "published"

BookedRow = tuple[int, Any, datetime | None, datetime | None]
"""A booking's ``booked`` row in a batch: (seq, kitchen id as stored, start, end); no
times while only the stored row's key is known."""


@dataclass
class BookedBatch:
    """The ``booked`` rows a batch's booking events change."""

    stored: dict[UUID, tuple[int, Any]]
    """``(seq, kitchen_id)`` of the stored rows of the bookings the batch touches."""
    current: dict[UUID, BookedRow | None] = field(default_factory=dict)
    """The batch's outcome per booking; ``None`` once it left ``booked``."""
    removed_ids: list[UUID] = field(default_factory=list)
    removed_seqs: list[int] = field(default_factory=list)
    """The stored rows (and spans, by seq) that go."""

    def row(self, booking_id: UUID) -> BookedRow | None:
        if booking_id in self.current:
            return self.current[booking_id]
        if booking_id in self.stored:
            seq, kitchen_id = self.stored[booking_id]
            return (seq, kitchen_id, None, None)
        return None


def floor_minute(moment: datetime) -> int:
    """Whole minutes since the epoch, rounded down, clamped to the span index's range."""
    return max(SPAN_MINUTE_MIN, min(SPAN_MINUTE_MAX, (moment - EPOCH) // MINUTE))


def ceil_minute(moment: datetime) -> int:
    return max(SPAN_MINUTE_MIN, min(SPAN_MINUTE_MAX, -((EPOCH - moment) // MINUTE)))


def as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


class KitchensProjection(Projection):
    name: ClassVar[str] = "kitchens"
    version: ClassVar[int] = 4
    """2: ``booked_spans`` holds the kitchen (PostgreSQL); covering search indexes.
    3: the interval index covers the kitchen too. 4: ``changed_since_approval``."""
    tables: ClassVar[tuple[str, ...]] = (
        "kitchens",
        "amenities",
        "certificates",
        "booked",
        "booked_spans",
        "search",
    )
    jurisdictions: ClassVar[JurisdictionCatalog] = packaged_jurisdictions()

    @classmethod
    def with_jurisdictions(cls, catalog: JurisdictionCatalog) -> type[KitchensProjection]:
        """This projection computing compliance with ``catalog`` instead of the packaged
        rules (for a deployment that configures its own jurisdictions file)."""
        return type(cls.__name__, (cls,), {"jurisdictions": catalog})

    def __init__(self, generation: int, dialect: Dialect) -> None:
        super().__init__(generation, dialect)
        self._jurisdictions: dict[UUID, str] = {}

    # --- tables ------------------------------------------------------------------

    def create_tables(self, sql: Sql) -> None:
        kitchens = self.table("kitchens")
        sql.execute(
            f"CREATE TABLE {kitchens} ("
            f"id {self.column('id')} PRIMARY KEY, "
            f"seq {self.column('int')} NOT NULL UNIQUE, "
            f"host_id {self.column('id')} NOT NULL, "
            "name text NOT NULL, name_key text NOT NULL, description text NOT NULL, "
            "city text NOT NULL, city_key text NOT NULL, jurisdiction text NOT NULL, "
            "address text NOT NULL, "
            f"hourly_rate_cents {self.column('money')} NOT NULL, "
            f"capacity {self.column('int')} NOT NULL, "
            f"amenities {self.column('json')} NOT NULL, "
            f"instant_book {self.column('bool')} NOT NULL, "
            "status text NOT NULL, status_reason text, "
            f"changed_since_approval {self.column('json')} NOT NULL, "
            f"compliant_through {self.column('date')}, "
            f"created_at {self.column('time')} NOT NULL, "
            f"status_changed_at {self.column('time')} NOT NULL, "
            f"updated_at {self.column('time')} NOT NULL, "
            f"version {self.column('int')} NOT NULL)"
        )
        sql.execute(
            f"CREATE INDEX {kitchens}_bookable ON {kitchens} "
            "(status, jurisdiction, compliant_through)"
        )
        sql.execute(f"CREATE INDEX {kitchens}_city ON {kitchens} (city_key)")
        sql.execute(f"CREATE INDEX {kitchens}_rate ON {kitchens} (hourly_rate_cents)")
        sql.execute(f"CREATE INDEX {kitchens}_host ON {kitchens} (host_id)")
        sql.execute(f"CREATE INDEX {kitchens}_moderation ON {kitchens} (status, status_changed_at)")

        amenities = self.table("amenities")
        sql.execute(
            f"CREATE TABLE {amenities} (kitchen_id {self.column('id')} NOT NULL, "
            "amenity text NOT NULL, PRIMARY KEY (kitchen_id, amenity))"
        )
        sql.execute(f"CREATE INDEX {amenities}_amenity ON {amenities} (amenity, kitchen_id)")

        certificates = self.table("certificates")
        sql.execute(
            f"CREATE TABLE {certificates} (id {self.column('id')} PRIMARY KEY, "
            f"kitchen_id {self.column('id')} NOT NULL, kind text NOT NULL, "
            f"number text NOT NULL, issued_on {self.column('date')} NOT NULL, "
            f"expires_on {self.column('date')} NOT NULL, status text NOT NULL, "
            f"attached_at {self.column('time')} NOT NULL)"
        )
        sql.execute(f"CREATE INDEX {certificates}_kitchen ON {certificates} (kitchen_id, kind)")

        booked = self.table("booked")
        sql.execute(
            f"CREATE TABLE {booked} (booking_id {self.column('id')} PRIMARY KEY, "
            f"seq {self.column('int')} NOT NULL UNIQUE, "
            f"kitchen_id {self.column('id')} NOT NULL, "
            f"start_time {self.column('time')} NOT NULL, "
            f"end_time {self.column('time')} NOT NULL)"
        )

        spans = self.table("booked_spans")
        search = self.table("search")
        if self.dialect == "postgresql":
            sql.execute(
                f"CREATE TABLE {spans} (id bigint PRIMARY KEY, kitchen_id uuid NOT NULL, "
                "during tstzrange NOT NULL)"
            )
            sql.execute(
                f"CREATE TABLE {search} (kitchen_id uuid PRIMARY KEY, document tsvector NOT NULL)"
            )
            sql.execute(f"CREATE INDEX {search}_document ON {search} USING gin (document)")
        else:
            sql.execute(
                f"CREATE VIRTUAL TABLE {spans} USING rtree_i32(id, start_minute, end_minute)"
            )
            sql.execute(
                f"CREATE VIRTUAL TABLE {search} USING fts5("
                "kitchen_id UNINDEXED, body, tokenize = 'porter unicode61')"
            )

    def create_indexes(self, sql: Sql) -> None:
        """Search (published kitchens only, PostgreSQL): by city or over every city, in
        name order, with what the filters and the rate sorts read INCLUDEd, so that a
        page and its total are index-only scans. "published" is a literal here and in
        the queries, so that their prepared (generic) plans can use these indexes. Also
        the booked intervals by kitchen and, on PostgreSQL, by time (the availability
        index): only queries read them, so a rebuild builds them once over its rows."""
        booked = self.table("booked")
        sql.execute(f"CREATE INDEX {booked}_kitchen ON {booked} (kitchen_id, start_time)")
        if self.dialect != "postgresql":
            return
        spans = self.table("booked_spans")
        # The kitchen INCLUDEd: "which kitchens are booked then" is index-only.
        sql.execute(
            f"CREATE INDEX {spans}_during ON {spans} USING gist (during) INCLUDE (kitchen_id)"
        )
        kitchens = self.table("kitchens")
        covered = "jurisdiction, compliant_through, capacity, hourly_rate_cents, seq"
        sql.execute(
            f"CREATE INDEX {kitchens}_search_city ON {kitchens} "
            f'(city_key, name_key COLLATE "C", id) INCLUDE ({covered}) '
            f"WHERE status = '{PUBLISHED}'"
        )
        sql.execute(
            f"CREATE INDEX {kitchens}_search_name ON {kitchens} "
            f'(name_key COLLATE "C", id) INCLUDE (city_key, {covered}) '
            f"WHERE status = '{PUBLISHED}'"
        )

    # --- listing -----------------------------------------------------------------

    @fold(Kitchen.KitchenCreated)
    def _created(self, event: Kitchen.KitchenCreated, position: int, sql: Sql) -> None:
        recorded_at = self.time_value(event.timestamp)
        kitchen_id = self.id_value(event.originator_id)
        self._jurisdictions[event.originator_id] = event.jurisdiction
        sql.execute(
            f"INSERT INTO {self.table('kitchens')} (id, seq, host_id, name, name_key, "
            "description, city, city_key, jurisdiction, address, hourly_rate_cents, "
            "capacity, amenities, instant_book, status, status_reason, "
            "changed_since_approval, compliant_through, created_at, status_changed_at, "
            "updated_at, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, NULL, %s, NULL, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                kitchen_id,
                position,
                self.id_value(event.host_id),
                event.name,
                name_key(event.name),
                event.description,
                event.city,
                city_key(event.city),
                event.jurisdiction,
                event.address,
                event.hourly_rate_cents,
                event.capacity,
                self.json_value(event.amenities),
                event.instant_book,
                "draft",
                self.json_value([]),
                recorded_at,
                recorded_at,
                recorded_at,
                event.originator_version,
            ),
        )
        self._replace_amenities(sql, event.originator_id, event.amenities)
        self._refresh_search(sql, event.originator_id)
        self._kitchen_changed(event.originator_id)

    def _kitchen_changed(self, kitchen_id: UUID) -> None:
        """Query-cache dependencies: this kitchen's detail, and every search."""
        self.changed.update((f"kitchen:{kitchen_id}", self.name))

    @fold(Kitchen.KitchenUpdated)
    def _updated(self, event: Kitchen.KitchenUpdated, position: int, sql: Sql) -> None:
        changes: dict[str, Any] = {}
        if event.name is not None:
            changes["name"] = event.name
            changes["name_key"] = name_key(event.name)
        if event.description is not None:
            changes["description"] = event.description
        if event.city is not None:
            changes["city"] = event.city
            changes["city_key"] = city_key(event.city)
        if event.address is not None:
            changes["address"] = event.address
        if event.hourly_rate_cents is not None:
            changes["hourly_rate_cents"] = event.hourly_rate_cents
        if event.capacity is not None:
            changes["capacity"] = event.capacity
        if event.amenities is not None:
            changes["amenities"] = self.json_value(event.amenities)
        if event.instant_book is not None:
            changes["instant_book"] = event.instant_book
        if event.changed_since_approval is not None:
            changes["changed_since_approval"] = self.json_value(event.changed_since_approval)
        self._update_kitchen(sql, event, **changes)
        if event.amenities is not None:
            self._replace_amenities(sql, event.originator_id, event.amenities)
        if changes.keys() & {"name", "description", "city", "amenities"}:
            self._refresh_search(sql, event.originator_id)

    def _update_kitchen(self, sql: Sql, event: Kitchen.Event, **changes: Any) -> None:
        self._kitchen_changed(event.originator_id)
        changes["updated_at"] = self.time_value(event.timestamp)
        changes["version"] = event.originator_version
        assignments = ", ".join(f"{column} = %s" for column in changes)
        sql.execute(
            f"UPDATE {self.table('kitchens')} SET {assignments} WHERE id = %s",
            (*changes.values(), self.id_value(event.originator_id)),
        )

    def _replace_amenities(self, sql: Sql, kitchen_id: UUID, amenities: list[str]) -> None:
        table = self.table("amenities")
        sql.execute(f"DELETE FROM {table} WHERE kitchen_id = %s", (self.id_value(kitchen_id),))
        sql.executemany(
            f"INSERT INTO {table} (kitchen_id, amenity) VALUES (%s, %s) "
            "ON CONFLICT (kitchen_id, amenity) DO NOTHING",
            [(self.id_value(kitchen_id), amenity) for amenity in sorted(set(amenities))],
        )

    def _refresh_search(self, sql: Sql, kitchen_id: UUID) -> None:
        search = self.table("search")
        if self.dialect == "postgresql":
            # The name weighs most; city and amenities next; the description least.
            # Computed from the stored row by the server: no round trip.
            sql.execute(
                f"INSERT INTO {search} (kitchen_id, document) SELECT id, "
                f"setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', name), 'A') || "
                f"setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', city || ' ' || "
                "array_to_string(ARRAY(SELECT amenity FROM "
                "jsonb_array_elements_text(amenities) WITH ORDINALITY AS a(amenity, n) "
                "ORDER BY n), ' ')), 'B') || "
                f"setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', description), 'C') "
                f"FROM {self.table('kitchens')} WHERE id = %s "
                "ON CONFLICT (kitchen_id) DO UPDATE SET document = excluded.document",
                (kitchen_id,),
            )
            return
        row = sql.fetchone(
            f"SELECT seq, name, description, city, amenities FROM {self.table('kitchens')} "
            "WHERE id = %s",
            (self.id_value(kitchen_id),),
        )
        assert row is not None, kitchen_id
        amenities = row["amenities"]
        if isinstance(amenities, str):
            amenities = orjson.loads(amenities)
        body = "\n".join([row["name"], row["city"], *amenities, row["description"]])
        sql.execute(f"DELETE FROM {search} WHERE rowid = %s", (row["seq"],))
        sql.execute(
            f"INSERT INTO {search} (rowid, kitchen_id, body) VALUES (%s, %s, %s)",
            (row["seq"], str(kitchen_id), body),
        )

    # --- moderation --------------------------------------------------------------

    def _status_changed(
        self, sql: Sql, event: Kitchen.Event, status: str, reason: str | None, **changes: Any
    ) -> None:
        self._update_kitchen(
            sql,
            event,
            status=status,
            status_reason=reason,
            status_changed_at=self.time_value(event.timestamp),
            **changes,
        )

    @fold(Kitchen.KitchenSubmittedForReview)
    def _submitted(self, event: Kitchen.KitchenSubmittedForReview, position: int, sql: Sql) -> None:
        self._status_changed(sql, event, "pending_review", None)

    @fold(Kitchen.KitchenSentBackForReview)
    def _sent_back(self, event: Kitchen.KitchenSentBackForReview, position: int, sql: Sql) -> None:
        self._status_changed(sql, event, "pending_review", None)

    @fold(Kitchen.KitchenApproved)
    def _approved(self, event: Kitchen.KitchenApproved, position: int, sql: Sql) -> None:
        self._status_changed(
            sql, event, PUBLISHED, None, changed_since_approval=self.json_value([])
        )

    @fold(Kitchen.KitchenRejected)
    def _rejected(self, event: Kitchen.KitchenRejected, position: int, sql: Sql) -> None:
        self._status_changed(sql, event, "rejected", event.reason)

    @fold(Kitchen.KitchenSuspended)
    def _suspended(self, event: Kitchen.KitchenSuspended, position: int, sql: Sql) -> None:
        self._status_changed(sql, event, "suspended", event.reason)

    @fold(Kitchen.KitchenReinstated)
    def _reinstated(self, event: Kitchen.KitchenReinstated, position: int, sql: Sql) -> None:
        self._status_changed(
            sql, event, PUBLISHED, None, changed_since_approval=self.json_value([])
        )

    # --- certificates and compliance ---------------------------------------------

    @fold(Kitchen.CertificateAttached)
    def _certificate_attached(
        self, event: Kitchen.CertificateAttached, position: int, sql: Sql
    ) -> None:
        sql.execute(
            f"INSERT INTO {self.table('certificates')} (id, kitchen_id, kind, number, "
            "issued_on, expires_on, status, attached_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.certificate_id),
                self.id_value(event.originator_id),
                event.kind,
                event.number,
                self.date_value(event.issued_on),
                self.date_value(event.expires_on),
                "pending",
                self.time_value(event.timestamp),
            ),
        )
        self._update_kitchen(sql, event)

    @fold(Kitchen.CertificateVerified)
    def _certificate_verified(
        self, event: Kitchen.CertificateVerified, position: int, sql: Sql
    ) -> None:
        self._certificate_status(sql, event, event.certificate_id, "verified")

    @fold(Kitchen.CertificateRejected)
    def _certificate_rejected(
        self, event: Kitchen.CertificateRejected, position: int, sql: Sql
    ) -> None:
        self._certificate_status(sql, event, event.certificate_id, "rejected")

    @fold(Kitchen.CertificateLapsed)
    def _certificate_lapsed(
        self, event: Kitchen.CertificateLapsed, position: int, sql: Sql
    ) -> None:
        self._certificate_status(sql, event, event.certificate_id, "expired")

    def _jurisdiction(self, sql: Sql, kitchen_id: UUID) -> str | None:
        """A kitchen's jurisdiction never changes: kept once known, asked of the table
        only for kitchens created before this process started following them."""
        if kitchen_id not in self._jurisdictions:
            jurisdiction = sql.scalar(
                f"SELECT jurisdiction FROM {self.table('kitchens')} WHERE id = %s",
                (self.id_value(kitchen_id),),
            )
            if jurisdiction is None:
                return None
            self._jurisdictions[kitchen_id] = jurisdiction
        return self._jurisdictions[kitchen_id]

    def _certificate_status(
        self, sql: Sql, event: Kitchen.Event, certificate_id: UUID, status: str
    ) -> None:
        sql.execute(
            f"UPDATE {self.table('certificates')} SET status = %s WHERE id = %s",
            (status, self.id_value(certificate_id)),
        )
        jurisdiction = self._jurisdiction(sql, event.originator_id)
        required = (
            self.jurisdictions.get(jurisdiction).required_certificates
            if jurisdiction is not None and jurisdiction in self.jurisdictions
            else frozenset()
        )
        if self.dialect != "postgresql" or not required:
            self._update_kitchen(
                sql, event, compliant_through=self._compliant_through(sql, event.originator_id)
            )
            return
        # The same computation by the server, without a round trip: the minimum over
        # required kinds of their latest verified expiry, NULL while a kind is missing.
        self._kitchen_changed(event.originator_id)
        sql.execute(
            f"UPDATE {self.table('kitchens')} SET compliant_through = ("
            "SELECT CASE WHEN count(*) = %s THEN min(latest) END FROM ("
            f"SELECT max(expires_on) AS latest FROM {self.table('certificates')} "
            "WHERE kitchen_id = %s AND status = %s AND kind = ANY(%s::text[]) "
            "GROUP BY kind) AS kinds), updated_at = %s, version = %s WHERE id = %s",
            (
                len(required),
                event.originator_id,
                "verified",
                sorted(required),
                self.time_value(event.timestamp),
                event.originator_version,
                event.originator_id,
            ),
        )

    def _compliant_through(self, sql: Sql, kitchen_id: UUID) -> date | str | None:
        """The last date every required kind is covered by a verified certificate."""
        jurisdiction = self._jurisdiction(sql, kitchen_id)
        if jurisdiction not in self.jurisdictions:
            return None
        assert jurisdiction is not None
        rows = sql.fetchall(
            f"SELECT kind, max(expires_on) AS expires_on FROM {self.table('certificates')} "
            "WHERE kitchen_id = %s AND status = %s GROUP BY kind",
            (self.id_value(kitchen_id), "verified"),
        )
        latest = {row["kind"]: as_date(row["expires_on"]) for row in rows}
        required = self.jurisdictions.get(jurisdiction).required_certificates
        if not required <= latest.keys():
            return None
        return self.date_value(min(latest[kind] for kind in required))

    # --- booked intervals --------------------------------------------------------
    #
    # Booking events are batched folds: they run at the end of the batch over the
    # ``booked`` rows of the bookings the batch touches (loaded in one query, for the
    # bookings not requested in the batch itself), and each booking's final row and
    # span is written once: no per-event statement, no per-event round trip.

    def load_batch(self, sql: Sql, events: Sequence[Any]) -> BookedBatch:
        requested = {
            event.originator_id for event in events if isinstance(event, Booking.BookingRequested)
        }
        unknown = sorted({event.originator_id for event in events} - requested)
        rows = self.load_rows(
            sql, "booked", ("booking_id", "seq", "kitchen_id"), "booking_id", unknown
        )
        return BookedBatch(
            stored={
                uuid_from_row(row["booking_id"]): (int(row["seq"]), row["kitchen_id"])
                for row in rows
            }
        )

    @fold(Booking.BookingRequested, batched=True)
    def _booking_requested(
        self, event: Booking.BookingRequested, position: int, batch: BookedBatch
    ) -> None:
        assert event.status in ("pending", "confirmed"), event.status
        booking_id, kitchen_id = event.originator_id, self.id_value(event.kitchen_id)
        row = batch.row(booking_id)
        if row is None:
            batch.current[booking_id] = (position, kitchen_id, event.start_time, event.end_time)
        elif row[2] is None:
            # Already stored (an event applied again): only its span is redone.
            batch.current[booking_id] = (row[0], row[1], event.start_time, event.end_time)
        self._booked_changed(kitchen_id)

    @fold(Booking.BookingRescheduled, batched=True)
    def _booking_rescheduled(
        self, event: Booking.BookingRescheduled, position: int, batch: BookedBatch
    ) -> None:
        booking_id = event.originator_id
        row = batch.row(booking_id)
        assert row is not None, f"rescheduled booking {booking_id} is not active"
        batch.current[booking_id] = (row[0], row[1], event.start_time, event.end_time)
        self._booked_changed(row[1])

    @fold(
        Booking.BookingDeclined,
        Booking.BookingCancelled,
        Booking.BookingExpired,
        Booking.BookingCompleted,
        batched=True,
    )
    def _booking_ended(self, event: Booking.Event, position: int, batch: BookedBatch) -> None:
        """A booking that is no longer pending or confirmed frees its interval."""
        booking_id = event.originator_id
        row = batch.row(booking_id)
        if row is None:
            return
        self._booked_changed(row[1])
        batch.current[booking_id] = None
        if booking_id in batch.stored:
            batch.removed_ids.append(booking_id)
            batch.removed_seqs.append(row[0])

    def _booked_changed(self, kitchen_id: Any) -> None:
        """Query-cache dependency: every search; and a hint naming the kitchen, for a
        search index to re-read its booked intervals alone (``booked_hint``)."""
        self.changed.add(self.name)
        self.hints.add(booked_hint(kitchen_id))

    def write_batch(self, sql: Sql, batch: BookedBatch) -> None:
        kept = [
            (booking_id, row)
            for booking_id, row in batch.current.items()
            if row is not None and row[2] is not None
        ]
        self._delete_booked(sql, batch.removed_ids, batch.removed_seqs)
        if not kept:
            return
        self.insert_rows(
            sql,
            "booked",
            (
                ("booking_id", "id"),
                ("seq", "int"),
                ("kitchen_id", "id"),
                ("start_time", "time"),
                ("end_time", "time"),
            ),
            [
                (
                    self.id_value(booking_id),
                    seq,
                    kitchen_id,
                    self.time_value(start),
                    self.time_value(end),
                )
                for booking_id, (seq, kitchen_id, start, end) in kept
                if start is not None and end is not None
            ],
            on_conflict="ON CONFLICT (booking_id) DO UPDATE SET "
            "start_time = excluded.start_time, end_time = excluded.end_time",
        )
        spans = self.table("booked_spans")
        if self.dialect == "postgresql":
            seqs, kitchen_ids, starts, ends = [], [], [], []
            for _, (seq, kitchen_id, start, end) in kept:
                seqs.append(seq)
                kitchen_ids.append(kitchen_id)
                starts.append(start)
                ends.append(end)
            sql.execute(
                f"INSERT INTO {spans} (id, kitchen_id, during) "
                "SELECT id, k, tstzrange(s, e, '[)') FROM unnest(%b::bigint[], %b::uuid[], "
                "%b::timestamptz[], %b::timestamptz[]) AS t(id, k, s, e) "
                "ON CONFLICT (id) DO UPDATE SET during = excluded.during",
                (seqs, kitchen_ids, starts, ends),
            )
        else:
            sql.executemany(f"DELETE FROM {spans} WHERE id = %s", [(row[0],) for _, row in kept])
            sql.executemany(
                f"INSERT INTO {spans} (id, start_minute, end_minute) VALUES (%s, %s, %s)",
                [
                    (seq, floor_minute(start), ceil_minute(end))
                    for _, (seq, _, start, end) in kept
                    if start is not None and end is not None
                ],
            )

    def _delete_booked(self, sql: Sql, booking_ids: list[UUID], seqs: list[int]) -> None:
        if not booking_ids:
            return
        spans, booked = self.table("booked_spans"), self.table("booked")
        if self.dialect == "postgresql":
            sql.execute(f"DELETE FROM {spans} WHERE id = ANY(%s::bigint[])", (seqs,))
            sql.execute(f"DELETE FROM {booked} WHERE booking_id = ANY(%s::uuid[])", (booking_ids,))
        else:
            sql.executemany(f"DELETE FROM {spans} WHERE id = %s", [(seq,) for seq in seqs])
            sql.executemany(
                f"DELETE FROM {booked} WHERE booking_id = %s",
                [(str(booking_id),) for booking_id in booking_ids],
            )


BOOKED_HINT_PREFIX = "booked:"


def booked_hint(kitchen_id: Any) -> str:
    """The hint that a kitchen's booked intervals changed (its id as stored: a UUID on
    PostgreSQL, its text on SQLite)."""
    return f"{BOOKED_HINT_PREFIX}{kitchen_id}"


def name_key(name: str) -> str:
    """Names sort case-insensitively, by code point on both engines."""
    return name.casefold()


def city_key(city: str) -> str:
    """Cities match case-insensitively and exactly."""
    return city.strip().casefold()
