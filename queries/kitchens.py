"""Kitchen queries over the ``kitchens`` read model: public search of bookable kitchens,
one kitchen with its compliance status, and the admins' moderation list.

Bookable (SPEC §3): published, every required certificate verified and valid through
the window's end (through now without a window), and the window inside the
jurisdiction's operating hours. With a window, kitchens with a pending or confirmed
booking overlapping ``[available_from, available_to)`` are left out.

Who sees what: search and published kitchens are public; a kitchen in any other status
is visible to its host and admins only (404 ``kitchen_not_found`` for anyone else);
moderation is for admins (403).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.jurisdictions import JurisdictionCatalog, JurisdictionRules
from aggregates.kitchen import (
    AMENITIES_MAX,
    AMENITY_LENGTH_MAX,
    CAPACITY_MAX,
    CAPACITY_MIN,
    CITY_LENGTH_MAX,
    KITCHEN_STATUSES,
)
from aggregates.policies import HOURLY_RATE_CENTS_MAX
from projections.database import Dialect, ReadDatabase, Row, uuid_parameter
from projections.kitchens import (
    PUBLISHED,
    TEXT_SEARCH_CONFIG,
    KitchensProjection,
    ceil_minute,
    city_key,
    floor_minute,
)
from queries.base import BATCH_ROWS, BatchRow, Page, PageRequest, Viewer, keyset_rows

Clock = Callable[[], datetime]

KITCHENS = KitchensProjection.view("kitchens")
AMENITIES = KitchensProjection.view("amenities")
CERTIFICATES = KitchensProjection.view("certificates")
BOOKED = KitchensProjection.view("booked")
BOOKED_SPANS = KitchensProjection.view("booked_spans")
SEARCH = KitchensProjection.view("search")

SORTS = ("name", "rate_asc", "rate_desc", "newest")
SORT_DEFAULT = "name"
QUERY_LENGTH_MAX = 200
QUERY_WORDS_MAX = 20
_WORD = re.compile(r"[^\W_]+")

SUMMARY_COLUMNS = (
    "k.id, k.host_id, k.name, k.city, k.jurisdiction, k.hourly_rate_cents, k.capacity, "
    "k.amenities, k.instant_book, k.status, k.status_reason, k.compliant_through, "
    "k.created_at"
)
_DETAIL_COLUMNS = (
    f"{SUMMARY_COLUMNS}, k.description, k.address, k.status_changed_at, k.updated_at, k.version"
)


class KitchenSummary(BaseModel):
    """A kitchen as lists show it. ``compliant_through`` is the last day every
    certificate its jurisdiction requires is verified and valid (``None``: one is
    missing)."""

    id: UUID
    host_id: UUID
    name: str
    city: str
    jurisdiction: str
    hourly_rate_cents: int
    capacity: int
    amenities: list[str]
    instant_book: bool
    status: str
    status_reason: str | None
    compliant_through: date | None
    created_at: datetime


class KitchenCertificate(BaseModel):
    id: UUID
    kind: str
    number: str
    issued_on: date
    expires_on: date
    status: str


class KitchenCompliance(BaseModel):
    """Compliance now: each required kind is covered (a verified certificate valid
    now), ``expired`` (its verified certificates have run out) or ``missing`` (none
    verified)."""

    compliant: bool
    compliant_through: date | None
    required_kinds: list[str]
    missing_kinds: list[str]
    expired_kinds: list[str]
    certificates: list[KitchenCertificate]


class KitchenUnderModeration(KitchenSummary):
    """A kitchen as admins moderate it: with the fields its host edited since an admin
    last approved it (empty for a kitchen never approved)."""

    changed_since_approval: list[str]
    status_changed_at: datetime


class KitchenDetail(KitchenSummary):
    description: str
    address: str
    status_changed_at: datetime
    updated_at: datetime
    version: int
    compliance: KitchenCompliance


class OwnedKitchen(KitchenSummary):
    """A kitchen as its host's own record: every field the read model keeps, and every
    certificate attached to it, whatever its status."""

    description: str
    address: str
    status_changed_at: datetime
    updated_at: datetime
    version: int
    certificates: list[KitchenCertificate]


@dataclass(frozen=True)
class KitchenFilters:
    """Search filters, checked on construction (422 with a code naming the filter).

    ``amenities`` must all be present; ``q`` matches words of the name, description,
    city and amenities (all words, stemmed); ``available_from``/``available_to`` come
    together and ask for a bookable, unbooked window."""

    city: str | None = None
    jurisdiction: str | None = None
    min_rate_cents: int | None = None
    max_rate_cents: int | None = None
    capacity: int | None = None
    amenities: tuple[str, ...] = field(default=())
    q: str | None = None
    available_from: datetime | None = None
    available_to: datetime | None = None
    sort: str = SORT_DEFAULT

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise InvalidRequest(f"sort is one of {', '.join(SORTS)}", code="invalid_sort")
        if self.city is not None and len(self.city) > CITY_LENGTH_MAX:
            raise InvalidRequest(
                f"city has at most {CITY_LENGTH_MAX} characters", code="invalid_city"
            )
        for bound in (self.min_rate_cents, self.max_rate_cents):
            if bound is not None and not 0 <= bound <= HOURLY_RATE_CENTS_MAX:
                raise InvalidRequest(
                    "rates are between 0.00 and 100000.00", code="invalid_rate_range"
                )
        if (
            self.min_rate_cents is not None
            and self.max_rate_cents is not None
            and self.min_rate_cents > self.max_rate_cents
        ):
            raise InvalidRequest("min_rate must not exceed max_rate", code="invalid_rate_range")
        if self.capacity is not None and not CAPACITY_MIN <= self.capacity <= CAPACITY_MAX:
            raise InvalidRequest(
                f"capacity is between {CAPACITY_MIN} and {CAPACITY_MAX}",
                code="invalid_capacity",
            )
        if len(self.amenities) > AMENITIES_MAX or any(
            len(amenity.strip()) > AMENITY_LENGTH_MAX for amenity in self.amenities
        ):
            raise InvalidRequest(
                f"at most {AMENITIES_MAX} amenities of at most {AMENITY_LENGTH_MAX} characters",
                code="invalid_amenities",
            )
        if self.q is not None and (
            len(self.q) > QUERY_LENGTH_MAX or len(_WORD.findall(self.q)) > QUERY_WORDS_MAX
        ):
            raise InvalidRequest(
                f"q has at most {QUERY_LENGTH_MAX} characters and {QUERY_WORDS_MAX} words",
                code="invalid_query",
            )
        window = (self.available_from, self.available_to)
        if (window[0] is None) != (window[1] is None):
            raise InvalidRequest(
                "available_from and available_to come together", code="invalid_window"
            )
        if self.available_from is not None and self.available_to is not None:
            if self.available_from.tzinfo is None or self.available_to.tzinfo is None:
                raise InvalidRequest(
                    "available_from and available_to need a UTC offset", code="invalid_window"
                )
            if self.available_to <= self.available_from:
                raise InvalidRequest(
                    "available_to must be after available_from", code="invalid_window"
                )

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        if self.available_from is None or self.available_to is None:
            return None
        return self.available_from.astimezone(UTC), self.available_to.astimezone(UTC)

    def amenity_keys(self) -> list[str]:
        """As the write side stores amenities: trimmed, lower case, once each."""
        return sorted({a.strip().lower() for a in self.amenities if a.strip()})

    def words(self) -> list[str]:
        return _WORD.findall(self.q or "")


def last_day_needed(rules: JurisdictionRules, instant: datetime) -> date:
    """The earliest ``compliant_through`` that covers ``instant``: a certificate is
    valid through the end of its ``expires_on`` day in the jurisdiction's time zone, so
    an instant at local midnight is still covered by the day before."""
    return (instant - timedelta(microseconds=1)).astimezone(rules.zone).date()


def compliance_needed(
    filters: KitchenFilters, jurisdictions: JurisdictionCatalog, now: datetime
) -> list[tuple[str, date]]:
    """Where a search can find bookable kitchens: each jurisdiction it may look in (the
    one asked for, or every one) whose operating hours cover the window, with the
    earliest ``compliant_through`` that makes a kitchen there bookable (through the
    window's end, or through ``now`` without a window)."""
    window = filters.window
    instant = now if window is None else window[1]
    needed = []
    for code in jurisdictions.codes():
        if filters.jurisdiction is not None and code != filters.jurisdiction:
            continue
        rules = jurisdictions.get(code)
        if window is not None and not rules.is_within_operating_hours(*window):
            continue
        needed.append((code, last_day_needed(rules, instant)))
    return needed


def kitchen_compliance(
    rules: JurisdictionRules | None,
    compliant_through: date | None,
    certificates: list[KitchenCertificate],
    now: datetime,
) -> KitchenCompliance:
    """The compliance of a kitchen at ``now`` from its certificates, kind by kind."""
    if rules is None:
        return KitchenCompliance(
            compliant=False,
            compliant_through=compliant_through,
            required_kinds=[],
            missing_kinds=[],
            expired_kinds=[],
            certificates=certificates,
        )
    missing: list[str] = []
    expired: list[str] = []
    for kind in sorted(rules.required_certificates):
        of_kind = [c for c in certificates if c.kind == kind]
        verified = [c for c in of_kind if c.status == "verified"]
        if any(rules.end_of_day(c.expires_on) >= now for c in verified):
            continue
        if verified or any(c.status == "expired" for c in of_kind):
            expired.append(kind)
        else:
            missing.append(kind)
    return KitchenCompliance(
        compliant=not missing and not expired,
        compliant_through=compliant_through,
        required_kinds=sorted(rules.required_certificates),
        missing_kinds=missing,
        expired_kinds=expired,
        certificates=certificates,
    )


class KitchenQueries:
    def __init__(
        self, database: ReadDatabase, *, jurisdictions: JurisdictionCatalog, clock: Clock
    ) -> None:
        self._database = database
        self._jurisdictions = jurisdictions
        self._clock = clock

    @property
    def _dialect(self) -> Dialect:
        return self._database.dialect

    def _time(self, value: datetime) -> datetime | str:
        utc = value.astimezone(UTC)
        return utc if self._dialect == "postgresql" else utc.isoformat(timespec="microseconds")

    def _date(self, value: date) -> date | str:
        return value if self._dialect == "postgresql" else value.isoformat()

    def _summary_fields(self, row: Row) -> dict[str, Any]:
        fields = dict(row)
        if isinstance(fields["amenities"], str):
            fields["amenities"] = orjson.loads(fields["amenities"])
        return fields

    def _summary(self, row: Row) -> KitchenSummary:
        """PostgreSQL hands the read model's columns over typed (uuid, date, timestamptz,
        jsonb): such a row is trusted as it is, without validating it again (a search
        page's twenty took longer to validate than to find). SQLite's text is parsed."""
        if self._dialect == "postgresql":
            return KitchenSummary.model_construct(**row)
        return KitchenSummary.model_validate(self._summary_fields(row))

    # --- search ------------------------------------------------------------------

    def search(
        self, filters: KitchenFilters, page: PageRequest | None = None
    ) -> Page[KitchenSummary]:
        """Bookable published kitchens matching every filter (public)."""
        page = page or PageRequest()
        if filters.jurisdiction is not None:
            self._jurisdictions.get(filters.jurisdiction)  # 422 unknown_jurisdiction
        conditions, params = self._bookable(filters)
        if not conditions:
            return Page[KitchenSummary](items=[], total=0, limit=page.limit, offset=page.offset)
        where = " AND ".join(conditions)
        order = self._order(filters.sort)
        with self._database.reading() as sql:
            # The page, then the total: index-only scans over the search indexes
            # (PostgreSQL) but for the page's own rows. A page that is not full, and
            # not past the end, already says the total.
            if self._dialect == "postgresql":
                # The page's ids first (index-only, whatever the order), then their rows.
                statement = (
                    f"SELECT {SUMMARY_COLUMNS} FROM {KITCHENS} k JOIN (SELECT k.id FROM "
                    f"{KITCHENS} k WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s) "
                    f"AS page ON page.id = k.id ORDER BY {order}"
                )
            else:
                statement = (
                    f"SELECT {SUMMARY_COLUMNS} FROM {KITCHENS} k WHERE {where} "
                    f"ORDER BY {order} LIMIT %s OFFSET %s"
                )
            rows = sql.fetchall(statement, [*params, page.limit, page.offset])
            if len(rows) < page.limit and (rows or page.offset == 0):
                total = page.offset + len(rows)
            else:
                total = int(sql.scalar(f"SELECT count(*) FROM {KITCHENS} k WHERE {where}", params))
        return Page[KitchenSummary](
            items=[self._summary(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def _bookable(self, filters: KitchenFilters) -> tuple[list[str], list[Any]]:
        """The WHERE conditions of a search; none at all when nothing can match."""
        window = filters.window
        compliant: list[str] = []
        params: list[Any] = []
        for code, through in compliance_needed(filters, self._jurisdictions, self._clock()):
            compliant.append("(k.jurisdiction = %s AND k.compliant_through >= %s)")
            params += [code, self._date(through)]
        if not compliant:
            return [], []
        # A literal, as in the search indexes' predicate: prepared plans can use them.
        conditions = [f"k.status = '{PUBLISHED}'", f"({' OR '.join(compliant)})"]
        if filters.city is not None and filters.city.strip():
            conditions.append("k.city_key = %s")
            params.append(city_key(filters.city))
        if filters.min_rate_cents is not None:
            conditions.append("k.hourly_rate_cents >= %s")
            params.append(filters.min_rate_cents)
        if filters.max_rate_cents is not None:
            conditions.append("k.hourly_rate_cents <= %s")
            params.append(filters.max_rate_cents)
        if filters.capacity is not None:
            conditions.append("k.capacity >= %s")
            params.append(filters.capacity)
        for amenity in filters.amenity_keys():
            conditions.append(
                f"EXISTS (SELECT 1 FROM {AMENITIES} a WHERE a.kitchen_id = k.id AND a.amenity = %s)"
            )
            params.append(amenity)
        words = filters.words()
        if words and self._dialect == "postgresql":
            conditions.append(
                f"k.id IN (SELECT s.kitchen_id FROM {SEARCH} s WHERE s.document @@ "
                f"plainto_tsquery('{TEXT_SEARCH_CONFIG}', %s))"
            )
            params.append(" ".join(words))
        elif words:
            # Each word a quoted FTS5 string: all must match, none is an operator. The
            # column form (``s.body MATCH``) works through the view: SQLite flattens it
            # into the FTS5 table's own index (the table-name form would not).
            conditions.append(
                f"k.id IN (SELECT s.kitchen_id FROM {SEARCH} s WHERE s.body MATCH %s)"
            )
            params.append(" ".join(f'"{word}"' for word in words))
        if window is not None:
            start, end = window
            if self._dialect == "postgresql":
                conditions.append(
                    f"k.id NOT IN (SELECT s.kitchen_id FROM {BOOKED_SPANS} s "
                    "WHERE s.during && tstzrange(%s, %s, '[)'))"
                )
                params += [start, end]
            else:
                # The R*Tree narrows to whole minutes; the booked times decide.
                conditions.append(
                    f"k.id NOT IN (SELECT b.kitchen_id FROM {BOOKED_SPANS} s "
                    f"JOIN {BOOKED} b ON b.seq = s.id WHERE s.start_minute < %s "
                    "AND s.end_minute > %s AND b.start_time < %s AND b.end_time > %s)"
                )
                params += [ceil_minute(end), floor_minute(start)]
                params += [self._time(end), self._time(start)]
        return conditions, params

    def _order(self, sort: str) -> str:
        # Names order by code point on both engines (PostgreSQL's "C" collation).
        name = 'k.name_key COLLATE "C"' if self._dialect == "postgresql" else "k.name_key"
        return {
            "name": f"{name}, k.id",
            "rate_asc": f"k.hourly_rate_cents, {name}, k.id",
            "rate_desc": f"k.hourly_rate_cents DESC, {name}, k.id",
            "newest": "k.seq DESC",
        }[sort]

    # --- one kitchen -------------------------------------------------------------

    def get(self, viewer: Viewer | None, kitchen_id: UUID) -> KitchenDetail:
        """One kitchen with its compliance now. Published kitchens are public; others
        are visible to their host and admins only (404 ``kitchen_not_found``)."""
        visible = "k.status = %s"
        params: list[Any] = [uuid_parameter(self._dialect, kitchen_id), "published"]
        if viewer is not None and viewer.is_admin:
            visible = "TRUE"
            params.pop()
        elif viewer is not None:
            visible = "(k.status = %s OR k.host_id = %s)"
            params.append(uuid_parameter(self._dialect, viewer.user_id))
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT {_DETAIL_COLUMNS} FROM {KITCHENS} k WHERE k.id = %s AND {visible}",
                params,
            )
            if row is None:
                raise NotFound(f"no kitchen {kitchen_id}", code="kitchen_not_found")
            certificates = sql.fetchall(
                f"SELECT id, kind, number, issued_on, expires_on, status FROM {CERTIFICATES} "
                "WHERE kitchen_id = %s ORDER BY kind, expires_on, id",
                (uuid_parameter(self._dialect, kitchen_id),),
            )
        fields = self._summary_fields(row)
        rules = (
            self._jurisdictions.get(row["jurisdiction"])
            if row["jurisdiction"] in self._jurisdictions
            else None
        )
        summary = KitchenSummary.model_validate(fields)
        fields["compliance"] = kitchen_compliance(
            rules,
            summary.compliant_through,
            [KitchenCertificate.model_validate(c) for c in certificates],
            self._clock(),
        )
        return KitchenDetail.model_validate(fields)

    def every_kitchen_owned(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[OwnedKitchen]:
        """Every kitchen the viewer hosts, in any status, oldest first, with its
        certificates; read ``batch_rows`` kitchens at a time (by creation time and id,
        which never change: see :func:`queries.base.keyset_batches`)."""
        host = uuid_parameter(self._dialect, viewer.user_id)

        def batch(after: BatchRow | None) -> list[Row]:
            following, params = "", []
            if after is not None:
                following = "AND (k.created_at, k.id) > (%s, %s) "
                params = [after["created_at"], after["id"]]
            with self._database.reading() as sql:
                rows = sql.fetchall(
                    f"SELECT {_DETAIL_COLUMNS} FROM {KITCHENS} k WHERE k.host_id = %s "
                    f"{following}ORDER BY k.created_at, k.id LIMIT %s",
                    (host, *params, batch_rows),
                )
                ids = [row["id"] for row in rows]
                certificates = (
                    sql.fetchall(
                        "SELECT kitchen_id, id, kind, number, issued_on, expires_on, status "
                        f"FROM {CERTIFICATES} WHERE kitchen_id IN "
                        f"({', '.join(['%s'] * len(ids))}) ORDER BY kind, expires_on, id",
                        ids,
                    )
                    if ids
                    else []
                )
            attached: dict[Any, list[Row]] = {}
            for certificate in certificates:
                attached.setdefault(certificate["kitchen_id"], []).append(certificate)
            return [{**row, "certificates": attached.get(row["id"], [])} for row in rows]

        for row in keyset_rows(batch, batch_rows):
            yield OwnedKitchen.model_validate(self._summary_fields(row))

    # --- moderation --------------------------------------------------------------

    def moderation(
        self,
        viewer: Viewer,
        *,
        status: str | None = None,
        changed_since_approval: bool | None = None,
        page: PageRequest | None = None,
    ) -> Page[KitchenUnderModeration]:
        """Kitchens by lifecycle status, longest in that status first (admin only);
        ``changed_since_approval``: only those edited (or not) since their approval —
        with ``status="published"``, the live kitchens whose edits await a look."""
        page = page or PageRequest()
        if not viewer.is_admin:
            raise PermissionDenied("moderation is for admins")
        if status is not None and status not in KITCHEN_STATUSES:
            raise InvalidRequest(
                f"status is one of {', '.join(KITCHEN_STATUSES)}", code="invalid_status"
            )
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            conditions.append("k.status = %s")
            params.append(status)
        if changed_since_approval is not None:
            length = "jsonb_array_length" if self._dialect == "postgresql" else "json_array_length"
            comparison = ">" if changed_since_approval else "="
            conditions.append(f"{length}(k.changed_since_approval) {comparison} 0")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._database.reading() as sql:
            total = int(sql.scalar(f"SELECT count(*) FROM {KITCHENS} k {where}", params))
            rows = sql.fetchall(
                f"SELECT {SUMMARY_COLUMNS}, k.changed_since_approval, k.status_changed_at "
                f"FROM {KITCHENS} k {where} "
                "ORDER BY k.status_changed_at, k.id LIMIT %s OFFSET %s",
                [*params, page.limit, page.offset],
            )
        return Page[KitchenUnderModeration](
            items=[KitchenUnderModeration.model_validate(self._moderated(row)) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def _moderated(self, row: Row) -> dict[str, Any]:
        fields = self._summary_fields(row)
        if isinstance(fields["changed_since_approval"], str):
            fields["changed_since_approval"] = orjson.loads(fields["changed_since_approval"])
        return fields
