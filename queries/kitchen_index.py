"""The search of bookable kitchens answered from memory: a per-process index of the
published kitchens and their booked intervals, as the kitchens read model held them at
one position, kept while no change to the read model is announced since.

Why: a search's exact ``total`` makes the database count every match (about a
millisecond of PostgreSQL time per search over 10k kitchens), and searches are rarely
alike, so no cache of answers helps. Here every filter is a set of kitchens held as the
bits of a Python integer (bit ``i`` is the ``i``-th kitchen in name order): a search is a
few ANDs over 10k-bit integers, its total a ``bit_count()``, its page the first set bits
in the order asked for. Each kitchen's JSON is made once, when the index is built.

- Thresholds (rate, capacity, compliant through) keep a mask of every prefix of the
  kitchens sorted by the value, at a few hundred checkpoints; a bound is a checkpoint
  plus the kitchens between it and the bound.
- Booked intervals: per hour (UTC) the kitchens with a booking overlapping it, and each
  kitchen's bookings. A window's whole hours are ORed; in an hour it covers only in part
  the bookings of the kitchens booked then are compared with the window exactly.
- Text search (``q``) is not indexed here: such a search goes to the database.

Freshness follows the rule of the query cache (``queries.cache``): the index records the
read model's position read *before* its rows, so a change landing while it loads can only
make it look older. It answers while no change to kitchens (any kitchen, booking, or
everything) is announced after that position and the read model has reached what the
client asks for; otherwise the search goes to the database. Bookings are announced with
hints naming their kitchens: while nothing else changed, only those kitchens' intervals
are read again (a refresh: one query, a copy of the hours they touch, ~2 ms for ten
kitchens), and the index holds at the last such announcement. Any other change makes it
stale: it is built again in the background (one build at a time). However often the
read model changes, builds and refreshes each take at most a tenth of a CPU. It is
built at the first search, not at start, so a process that never searches never holds
it. It serves only where announcements reach the process (PostgreSQL, not a replica);
elsewhere every search is SQL.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final
from uuid import UUID

from aggregates.jurisdictions import JurisdictionCatalog
from projections.announcements import EVERYTHING_CHANGED
from projections.database import ReadDatabase, Row
from projections.kitchens import BOOKED_HINT_PREFIX, PUBLISHED, KitchensProjection, city_key
from queries.base import PageRequest
from queries.consistency import read_position
from queries.kitchens import (
    BOOKED,
    KITCHENS,
    SUMMARY_COLUMNS,
    KitchenFilters,
    KitchenSummary,
    compliance_needed,
)

logger = logging.getLogger(__name__)

HOUR_US: Final = 3_600_000_000
CHECKPOINTS: Final = 256
"""Prefix masks kept per threshold: memory ``CHECKPOINTS × kitchens / 8`` bytes, and at
most ``kitchens / CHECKPOINTS`` bits set by hand per bound."""
PAGE_ROWS: Final = 1_000
BUILD_INTERVAL_S_MIN: Final = 1.0
BUILD_SHARE_MAX: Final = 0.1
"""A build starts at least ``BUILD_INTERVAL_S_MIN`` and ten builds' time after the last
ended, a refresh ten refreshes' time after the last: however often the read model
changes, keeping the index takes at most a tenth of a CPU for each."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RenderKitchen = Callable[[KitchenSummary], bytes]
"""A kitchen's JSON as search answers show it (the API's)."""


def epoch_us(instant: datetime) -> int:
    """Microseconds since 1970 (UTC), exactly."""
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def mask_of(bits: Iterable[int], size: int) -> int:
    """The integer with ``bits`` set (each below ``size``)."""
    buffer = bytearray((size + 7) // 8)
    for bit in bits:
        buffer[bit >> 3] |= 1 << (bit & 7)
    return int.from_bytes(buffer, "little")


_NO_SPANS: Final = array("q")


def _members(mask: int) -> Iterator[int]:
    """The bits set in ``mask``."""
    for number, byte in enumerate(mask.to_bytes((mask.bit_length() + 7) // 8, "little")):
        rest = byte
        while rest:
            low = rest & -rest
            yield number * 8 + low.bit_length() - 1
            rest ^= low


def _spans(starts: Sequence[int], ends: Sequence[int]) -> array[int]:
    """Bookings' starts and ends, one after the other."""
    spans = array("q")
    for start, end in zip(starts, ends, strict=True):
        spans.extend((start, end))
    return spans


def _hours_of(spans: array[int]) -> set[int]:
    """The hours (UTC, counted from 1970) that bookings ``spans`` overlap."""
    return {
        hour
        for i in range(0, len(spans), 2)
        for hour in range(spans[i] // HOUR_US, (spans[i + 1] - 1) // HOUR_US + 1)
    }


def _order(size: int, key: Callable[[int], int]) -> array[int]:
    """The bits ``0 … size - 1`` sorted by ``key``, ties in bit (name) order."""
    return array("i", sorted(range(size), key=key))


class _Thresholds:
    """Masks of the kitchens whose value is at most, or at least, a bound."""

    def __init__(self, pairs: Iterable[tuple[int, int]], size: int) -> None:
        """``pairs``: ``(value, bit)`` of the kitchens that have a value."""
        ordered = sorted(pairs)
        self._size = size
        self._values = array("q", (value for value, _ in ordered))
        self._bits = array("i", (bit for _, bit in ordered))
        self._step = max(1, -(-len(ordered) // CHECKPOINTS))
        buffer = bytearray((size + 7) // 8)
        self._checkpoints = [0]
        for count, bit in enumerate(self._bits, 1):
            buffer[bit >> 3] |= 1 << (bit & 7)
            if count % self._step == 0:
                self._checkpoints.append(int.from_bytes(buffer, "little"))
        self._all = int.from_bytes(buffer, "little")

    def _first(self, count: int) -> int:
        """The mask of the ``count`` kitchens with the lowest values."""
        checkpoint = count // self._step
        rest = self._bits[checkpoint * self._step : count]
        mask = self._checkpoints[checkpoint]
        return mask | mask_of(rest, self._size) if rest else mask

    def at_most(self, bound: int) -> int:
        return self._first(bisect_right(self._values, bound))

    def at_least(self, bound: int) -> int:
        return self._all ^ self._first(bisect_left(self._values, bound))


@dataclass(frozen=True, slots=True)
class IndexedKitchen:
    """What the index keeps of a published kitchen."""

    id: UUID
    seq: int
    name_key: str
    city_key: str
    jurisdiction: str
    hourly_rate_cents: int
    capacity: int
    amenities: tuple[str, ...]
    compliant_through: date | None
    document: bytes
    """Its JSON in a search answer."""


class SearchIndex:
    """Published kitchens and their booked intervals at ``position``; immutable."""

    def __init__(
        self,
        position: int,
        kitchens: Iterable[IndexedKitchen],
        booked: Iterable[tuple[UUID, Sequence[int], Sequence[int]]],
    ) -> None:
        """``kitchens`` in name order (``name_key``, then id); ``booked``: per kitchen,
        the starts and ends of its pending and confirmed bookings, in microseconds since
        1970 (kitchens not in ``kitchens`` are left out). Both are read once, as they
        come: a build holds little more than the index."""
        self.position = position
        # The kitchens' JSON end to end, and where each starts: a few large blocks,
        # not 10k small objects pinning the allocator's pages the build used.
        documents = bytearray()
        self._document_starts = array("q", [0])
        self._bit_of: dict[int, int] = {}
        """The bit of each kitchen, by its id's integer."""
        rates, capacities, seqs = array("q"), array("q"), array("q")
        by_city: dict[str, list[int]] = {}
        by_amenity: dict[str, list[int]] = {}
        compliant: dict[str, list[tuple[int, int]]] = {}
        previous: tuple[str, int] | None = None
        for bit, kitchen in enumerate(kitchens):
            order = (kitchen.name_key, kitchen.id.int)
            assert previous is None or previous < order, "kitchens come in name order"
            previous = order
            documents += kitchen.document
            self._document_starts.append(len(documents))
            self._bit_of[kitchen.id.int] = bit
            rates.append(kitchen.hourly_rate_cents)
            capacities.append(kitchen.capacity)
            seqs.append(kitchen.seq)
            by_city.setdefault(kitchen.city_key, []).append(bit)
            for amenity in kitchen.amenities:
                by_amenity.setdefault(amenity, []).append(bit)
            if kitchen.compliant_through is not None:
                compliant.setdefault(kitchen.jurisdiction, []).append(
                    (kitchen.compliant_through.toordinal(), bit)
                )
        self._documents = bytes(documents)
        del documents
        size = self.size = len(self._document_starts) - 1
        self._all = mask_of(range(size), size)
        self._orders: dict[str, Sequence[int]] = {
            "name": range(size),
            "rate_asc": _order(size, rates.__getitem__),
            "rate_desc": _order(size, lambda bit: -rates[bit]),
            "newest": _order(size, lambda bit: -seqs[bit]),
        }
        self._by_city = {key: mask_of(bits, size) for key, bits in by_city.items()}
        self._by_amenity = {key: mask_of(bits, size) for key, bits in by_amenity.items()}
        self._rate = _Thresholds(zip(rates, range(size), strict=True), size)
        self._capacity = _Thresholds(zip(capacities, range(size), strict=True), size)
        self._compliant = {code: _Thresholds(pairs, size) for code, pairs in compliant.items()}
        self._index_booked(booked)

    def _index_booked(self, booked: Iterable[tuple[UUID, Sequence[int], Sequence[int]]]) -> None:
        self._spans: dict[int, array[int]] = {}
        """Per kitchen (bit) with bookings: their starts and ends, one after the other."""
        in_hour: dict[int, list[int]] = {}
        for kitchen_id, starts, ends in booked:
            bit = self._bit_of.get(kitchen_id.int)
            if bit is None:
                continue
            spans = self._spans[bit] = _spans(starts, ends)
            for hour in _hours_of(spans):
                in_hour.setdefault(hour, []).append(bit)
        self._hour_masks = {hour: mask_of(bits, self.size) for hour, bits in in_hour.items()}
        """Per hour (UTC) with bookings: the kitchens booked in it."""
        self._hours = sorted(in_hour)

    def with_booked(
        self, position: int, booked: dict[UUID, tuple[Sequence[int], Sequence[int]]]
    ) -> SearchIndex:
        """This index at ``position``, where only the booked intervals of the kitchens
        ``booked`` names changed since (to the starts and ends given; none: a kitchen
        without bookings). Shares what did not change; this index stays as it was."""
        changes = {
            bit: _spans(*spans)
            for kitchen_id, spans in booked.items()
            if (bit := self._bit_of.get(kitchen_id.int)) is not None
        }
        updated = copy.copy(self)
        updated.position = position
        updated._spans = dict(self._spans)
        updated._hour_masks = hour_masks = dict(self._hour_masks)
        left: dict[int, int] = {}  # hour → the kitchens no longer booked in it
        joined: dict[int, int] = {}  # hour → the kitchens booked in it now
        for bit, spans in changes.items():
            before = _hours_of(self._spans.get(bit, _NO_SPANS))
            now = _hours_of(spans)
            for hour in before - now:
                left[hour] = left.get(hour, 0) | 1 << bit
            for hour in now - before:
                joined[hour] = joined.get(hour, 0) | 1 << bit
            if spans:
                updated._spans[bit] = spans
            else:
                updated._spans.pop(bit, None)
        for hour in left.keys() | joined.keys():
            mask = hour_masks.get(hour, 0) & ~left.get(hour, 0) | joined.get(hour, 0)
            if mask:
                hour_masks[hour] = mask
            else:
                hour_masks.pop(hour, None)
        updated._hours = sorted(hour_masks)
        return updated

    def _booked_during(self, start: int, end: int) -> int:
        """The kitchens with a booking overlapping ``[start, end)`` (microseconds)."""
        booked = 0
        partly: list[int] = []
        first = bisect_left(self._hours, start // HOUR_US)
        last = bisect_right(self._hours, (end - 1) // HOUR_US)
        for hour in self._hours[first:last]:
            if start <= hour * HOUR_US and (hour + 1) * HOUR_US <= end:
                booked |= self._hour_masks[hour]
                continue
            for bit in _members(self._hour_masks[hour]):
                spans = self._spans[bit]
                if any(spans[i] < end and spans[i + 1] > start for i in range(0, len(spans), 2)):
                    partly.append(bit)
        return booked | mask_of(partly, self.size) if partly else booked

    def search(
        self,
        filters: KitchenFilters,
        page: PageRequest,
        jurisdictions: JurisdictionCatalog,
        now: datetime,
    ) -> tuple[list[bytes], int] | None:
        """The page's kitchens (their JSON) and the total, as ``KitchenQueries.search``
        finds them; ``None`` for a search this index does not answer (text, or an
        unknown jurisdiction)."""
        if filters.words():
            return None
        if filters.jurisdiction is not None and filters.jurisdiction not in jurisdictions:
            return None
        compliant = 0
        for code, through in compliance_needed(filters, jurisdictions, now):
            thresholds = self._compliant.get(code)
            if thresholds is not None:
                compliant |= thresholds.at_least(through.toordinal())
        found = compliant
        if found and filters.city is not None and filters.city.strip():
            found &= self._by_city.get(city_key(filters.city), 0)
        if found and filters.min_rate_cents is not None:
            found &= self._rate.at_least(filters.min_rate_cents)
        if found and filters.max_rate_cents is not None:
            found &= self._rate.at_most(filters.max_rate_cents)
        if found and filters.capacity is not None:
            found &= self._capacity.at_least(filters.capacity)
        for amenity in filters.amenity_keys():
            found &= self._by_amenity.get(amenity, 0)
        window = filters.window
        if found and window is not None:
            found &= ~self._booked_during(epoch_us(window[0]), epoch_us(window[1]))
        total = found.bit_count()
        return self._page(found, total, filters.sort, page), total

    def _page(self, found: int, total: int, sort: str, page: PageRequest) -> list[bytes]:
        wanted = min(total - page.offset, page.limit)
        if wanted <= 0:
            return []
        members = found.to_bytes((self.size + 7) // 8, "little")
        skip = page.offset
        documents: list[bytes] = []
        for bit in self._orders[sort]:
            if members[bit >> 3] >> (bit & 7) & 1:
                if skip:
                    skip -= 1
                    continue
                start, end = self._document_starts[bit], self._document_starts[bit + 1]
                documents.append(self._documents[start:end])
                if len(documents) == wanted:
                    break
        return documents


def load_search_index(database: ReadDatabase, render: RenderKitchen) -> SearchIndex:
    """The index of the kitchens read model as it is now (PostgreSQL). Its position is
    read first: a change committed while the rows are read is announced after it. Rows
    are read a page at a time, so that a build holds little more than the index."""
    with database.reading() as sql:
        position = read_position(sql, KitchensProjection.name)
    # In name order ("C": by code point, as Python compares strings), a page at a time.
    kitchens = (
        _indexed_kitchen(row, render)
        for rows in _pages(
            database,
            f"SELECT {SUMMARY_COLUMNS}, k.seq, k.name_key, k.city_key FROM {KITCHENS} k "
            f"WHERE k.status = '{PUBLISHED}' AND (k.name_key COLLATE \"C\", k.id) > (%s, %s) "
            'ORDER BY k.name_key COLLATE "C", k.id LIMIT %s',
            ("name_key", "id"),
        )
        for row in rows
    )
    # Per kitchen, its bookings' times as exact integers: a page of kitchens at a time.
    booked = (
        (row["id"], row["starts"], row["ends"])
        for rows in _pages(
            database,
            f"{_BOOKED_TIMES} WHERE kitchen_id > %s GROUP BY kitchen_id "
            "ORDER BY kitchen_id LIMIT %s",
            ("id",),
        )
        for row in rows
    )
    return SearchIndex(position, kitchens, booked)


def load_booked(
    database: ReadDatabase, kitchen_ids: Iterable[UUID]
) -> dict[UUID, tuple[Sequence[int], Sequence[int]]]:
    """The starts and ends of the pending and confirmed bookings of each of
    ``kitchen_ids`` now (none for a kitchen without)."""
    wanted = list(kitchen_ids)
    with database.reading() as sql:
        rows = sql.fetchall(
            f"{_BOOKED_TIMES} WHERE kitchen_id = ANY(%s) GROUP BY kitchen_id", (wanted,)
        )
    found = {row["id"]: (row["starts"], row["ends"]) for row in rows}
    return {kitchen_id: found.get(kitchen_id, ((), ())) for kitchen_id in wanted}


_BOOKED_TIMES: Final = (
    "SELECT kitchen_id AS id, "
    "array_agg(floor(extract(epoch FROM start_time) * 1000000)::int8) AS starts, "
    f"array_agg(floor(extract(epoch FROM end_time) * 1000000)::int8) AS ends FROM {BOOKED}"
)
"""Per kitchen, its bookings' times as exact integers (microseconds since 1970)."""


def _pages(database: ReadDatabase, statement: str, key: tuple[str, ...]) -> Iterator[list[Row]]:
    """The rows of ``statement`` (``WHERE … > (%s, …) ORDER BY … LIMIT %s``, ordered by
    the columns ``key``), a page at a time."""
    after: tuple[Any, ...] = ("", UUID(int=0))[-len(key) :]
    while True:
        with database.reading() as sql:
            rows = sql.fetchall(statement, (*after, PAGE_ROWS))
        yield rows
        if len(rows) < PAGE_ROWS:
            return
        after = tuple(rows[-1][column] for column in key)


def _indexed_kitchen(row: Row, render: RenderKitchen) -> IndexedKitchen:
    # Typed by PostgreSQL, trusted as the SQL search trusts it (extra columns ignored).
    summary = KitchenSummary.model_construct(**row)
    return IndexedKitchen(
        id=row["id"],
        seq=int(row["seq"]),
        name_key=row["name_key"],
        city_key=row["city_key"],
        jurisdiction=row["jurisdiction"],
        hourly_rate_cents=int(row["hourly_rate_cents"]),
        capacity=int(row["capacity"]),
        amenities=tuple(row["amenities"]),
        compliant_through=row["compliant_through"],
        document=render(summary),  # copied into the index's one block of JSON
    )


class LiveSearchIndex:
    """The process's search index, answered from while it holds (see the module's
    docstring); thread-safe. Pass :meth:`changed` to the change announcements, with
    their hints."""

    def __init__(
        self,
        load: Callable[[], SearchIndex],
        *,
        load_booked: Callable[[Iterable[UUID]], dict[UUID, tuple[Sequence[int], Sequence[int]]]],
        position: Callable[[], int | None],
        jurisdictions: JurisdictionCatalog,
        clock: Callable[[], datetime],
        build_interval_s_min: float = BUILD_INTERVAL_S_MIN,
    ) -> None:
        """``load``: the whole index now; ``load_booked``: the booked intervals of some
        kitchens now; ``position``: how far the kitchens read model has got, if this
        process knows it without asking the database."""
        self._load = load
        self._load_booked = load_booked
        self._position = position
        self._jurisdictions = jurisdictions
        self._clock = clock
        self._build_interval_s_min = build_interval_s_min
        self._index: SearchIndex | None = None
        self._changed_at = 0
        """The last position at which kitchens changed otherwise than by bookings."""
        self._booked_changed: set[UUID] = set()
        self._booked_changed_at = 0
        """The last position at which the kitchens ``_booked_changed`` were booked."""
        self._building = False
        self._refreshing = False
        self._next_build_at = 0.0
        self._next_refresh_at = 0.0
        self._lock = threading.Lock()
        self.builds = 0
        self.refreshes = 0

    def changed(self, dependencies: list[str], position: int) -> None:
        """A change announcement. Searches depend on ``kitchens`` (every change to a
        kitchen or a booking) and on everything. When all that changed is bookings,
        hinted kitchen by kitchen, only those kitchens' intervals are read again;
        anything else makes the index stale."""
        name = KitchensProjection.name
        if name not in dependencies and EVERYTHING_CHANGED not in dependencies:
            return
        hints = [d for d in dependencies if d.startswith(BOOKED_HINT_PREFIX)]
        if not hints or set(dependencies) - set(hints) != {name}:  # not bookings alone
            with self._lock:
                self._changed_at = max(self._changed_at, position)
            return
        if self._index is None and not self._building:
            return  # the next build reads these bookings anyway
        try:
            hinted = {UUID(hint[len(BOOKED_HINT_PREFIX) :]) for hint in hints}
        except ValueError:
            hinted = set()
        with self._lock:
            if not hinted:  # a hint that names no kitchen
                self._changed_at = max(self._changed_at, position)
            else:
                self._booked_changed |= hinted
                self._booked_changed_at = max(self._booked_changed_at, position)

    def search(
        self, filters: KitchenFilters, page: PageRequest, min_position: int
    ) -> tuple[list[bytes], int, int] | None:
        """The page's kitchens, the total and the read model's position, if the index
        holds for a client at ``min_position`` and answers such a search; else ``None``
        (and a stale or missing index starts building, or catching up on bookings)."""
        reached = self._position()
        index = self._index
        if index is None or index.position < self._changed_at:
            self._start_build(stale=index)
            return None
        if index.position < self._booked_changed_at:
            self._start_refresh()
            return None
        if reached is None or reached < min_position:
            return None
        found = index.search(filters, page, self._jurisdictions, self._clock())
        if found is None:
            return None
        documents, total = found
        return documents, total, max(reached, index.position)

    def _start_build(self, *, stale: SearchIndex | None) -> None:
        with self._lock:
            if self._index is stale:
                self._index = None  # never used again: its memory goes before a build's
            if self._building or time.monotonic() < self._next_build_at:
                return
            self._building = True
        threading.Thread(target=self._build, name="prep-es-search-index", daemon=True).start()

    def _build(self) -> None:
        started = time.monotonic()
        try:
            index = self._load()
        except Exception:
            logger.exception("building the search index failed; searches use the database")
            index = None
        ended = time.monotonic()
        pause_s = max(self._build_interval_s_min, (ended - started) / BUILD_SHARE_MAX)
        with self._lock:
            if index is not None:
                self._index = index
                self.builds += 1
                if self._booked_changed_at <= index.position:
                    self._booked_changed.clear()  # all read by the build
            self._building = False
            self._next_build_at = ended + pause_s

    def _start_refresh(self) -> None:
        with self._lock:
            if self._refreshing or self._building or time.monotonic() < self._next_refresh_at:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, name="prep-es-search-index", daemon=True).start()

    def _refresh(self) -> None:
        """Read again the intervals of the kitchens booked since the index's position:
        the index then holds at the last position they were announced at (a change to
        any other kitchen's bookings would have been announced, and is not)."""
        started = time.monotonic()
        with self._lock:
            index, kitchens = self._index, self._booked_changed
            self._booked_changed, at = set(), self._booked_changed_at
        updated = None
        try:
            if index is not None:
                updated = index.with_booked(at, self._load_booked(kitchens))
        except Exception:
            logger.exception("reading booked intervals failed; searches use the database")
        with self._lock:
            # Kept only if nothing but bookings changed meanwhile, and no build replaced
            # the index: else the position it claims would cover changes it lacks.
            if (
                updated is not None
                and index is not None
                and self._index is index
                and (self._changed_at <= index.position)
            ):
                self._index = updated
                self.refreshes += 1
            else:  # to be read again, by the next refresh or a whole build
                self._booked_changed |= kitchens
            self._refreshing = False
            ended = time.monotonic()
            self._next_refresh_at = ended + (ended - started) / BUILD_SHARE_MAX
