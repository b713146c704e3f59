"""The in-memory search index against a brute-force filter over the same kitchens and
bookings: enough kitchens that thresholds fall between checkpoints, windows on and off
whole hours, every order, deep pages. (Against the SQL search and the aggregates:
``tests/readmodels/test_kitchens.py``; over HTTP: ``tests/api/test_query_kitchens.py``.)"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.jurisdictions import JurisdictionCatalog
from prep_es.store.jurisdiction_rules import packaged_jurisdictions
from projections.announcements import EVERYTHING_CHANGED
from projections.kitchens import city_key
from queries.base import PageRequest
from queries.kitchen_index import (
    BUILD_INTERVAL_S_MIN,
    CHECKPOINTS,
    IndexedKitchen,
    LiveSearchIndex,
    SearchIndex,
    epoch_us,
)
from queries.kitchens import KitchenFilters, compliance_needed
from tests.support import listing_matches, search_filters
from tests.waiting import wait_until

KITCHENS = 3 * CHECKPOINTS + 17
DAY = datetime(2030, 3, 4, tzinfo=UTC)
NOW = datetime(2030, 3, 1, 18, tzinfo=UTC)
CITIES = ("Los Angeles", "los angeles", "Pasadena", "San Francisco")
AMENITIES = ("oven", "hood", "mixer", "walk-in fridge")


def make_world(seed: int) -> tuple[list[IndexedKitchen], list[tuple[UUID, list[int], list[int]]]]:
    randomness = random.Random(seed)
    kitchens = []
    for number in range(KITCHENS):
        city = randomness.choice(CITIES)
        through = randomness.choice([None, date(2030, 3, 2), date(2030, 3, 4), date(2031, 1, 1)])
        kitchen_id = UUID(int=randomness.getrandbits(128))
        kitchens.append(
            IndexedKitchen(
                id=kitchen_id,
                seq=number + 1,
                # Few names: ties are ordered by id.
                name_key=f"kitchen {randomness.randrange(40)}",
                city_key=city_key(city),
                jurisdiction="san_francisco" if city == "San Francisco" else "los_angeles",
                hourly_rate_cents=randomness.randrange(20, 60) * 250,
                capacity=randomness.randrange(1, 31),
                amenities=tuple(sorted(randomness.sample(AMENITIES, randomness.randrange(4)))),
                compliant_through=through,
                document=str(kitchen_id).encode(),
            )
        )
    booked = []
    for kitchen in kitchens:
        starts, ends = [], []
        for _ in range(randomness.randrange(4)):
            start = DAY + timedelta(minutes=15 * randomness.randrange(4 * 30))
            starts.append(epoch_us(start))
            ends.append(epoch_us(start + timedelta(minutes=15 * randomness.randrange(1, 20))))
        booked.append((kitchen.id, starts, ends))
    return kitchens, booked


KITCHEN_LIST, BOOKED = make_world(5)
KITCHEN_LIST.sort(key=lambda kitchen: (kitchen.name_key, kitchen.id.int))  # as the index takes them
INDEX = SearchIndex(7, KITCHEN_LIST, BOOKED)
JURISDICTIONS: JurisdictionCatalog = packaged_jurisdictions()


Booked = list[tuple[UUID, list[int], list[int]]]


def brute_force(filters: KitchenFilters, now: datetime, booked_now: Booked = BOOKED) -> list[UUID]:
    needed = dict(compliance_needed(filters, JURISDICTIONS, now))
    booked = {kitchen_id: list(zip(s, e, strict=True)) for kitchen_id, s, e in booked_now}
    window = filters.window
    found = []
    for kitchen in KITCHEN_LIST:
        through = needed.get(kitchen.jurisdiction)
        if through is None or kitchen.compliant_through is None:
            continue
        if kitchen.compliant_through < through:
            continue
        if not listing_matches(
            filters,
            city=kitchen.city_key,
            rate_cents=kitchen.hourly_rate_cents,
            capacity=kitchen.capacity,
            amenities=list(kitchen.amenities),
        ):
            continue
        if window is not None:
            start, end = epoch_us(window[0]), epoch_us(window[1])
            if any(s < end and e > start for s, e in booked.get(kitchen.id, ())):
                continue
        found.append(kitchen)
    orders = {
        "name": lambda k: (k.name_key, k.id.int),
        "rate_asc": lambda k: (k.hourly_rate_cents, k.name_key, k.id.int),
        "rate_desc": lambda k: (-k.hourly_rate_cents, k.name_key, k.id.int),
        "newest": lambda k: -k.seq,
    }
    found.sort(key=orders[filters.sort])
    return [k.id for k in found]


def indexed(
    filters: KitchenFilters, page: PageRequest, now: datetime, index: SearchIndex = INDEX
) -> tuple[list[UUID], int]:
    answer = index.search(filters, page, JURISDICTIONS, now)
    assert answer is not None
    documents, total = answer
    return [UUID(document.decode()) for document in documents], total


@settings(max_examples=300, deadline=None, database=None)
@given(
    filters=search_filters(
        city=st.sampled_from([None, "", "LOS ANGELES", " pasadena ", "San Francisco", "Oakland"]),
        jurisdiction=st.sampled_from([None, "los_angeles", "san_francisco"]),
        min_rate=st.one_of(st.none(), st.integers(4000, 16000)),
        max_rate=st.one_of(st.none(), st.integers(4000, 16000)),
        capacity=st.one_of(st.none(), st.integers(1, 31)),
        amenities=st.lists(st.sampled_from([*AMENITIES, "Oven ", "sauna"]), max_size=2),
        start=st.one_of(
            st.none(),
            st.integers(-24 * 60, 30 * 60).map(lambda minutes: DAY + timedelta(minutes=minutes)),
        ),
        minutes=st.sampled_from([1, 15, 30, 60, 90, 180, 24 * 60]),
    ),
    now=st.sampled_from([NOW, datetime(2030, 3, 3, 9, tzinfo=UTC)]),
    offset=st.sampled_from([0, 7, 300]),
    limit=st.sampled_from([1, 20, 100]),
)
def test_the_index_finds_what_a_brute_force_finds(
    filters: KitchenFilters, now: datetime, offset: int, limit: int
) -> None:
    expected = brute_force(filters, now)
    page = PageRequest(limit=limit, offset=offset)
    assert indexed(filters, page, now) == (expected[offset : offset + limit], len(expected))


def test_text_search_and_unknown_jurisdictions_are_left_to_the_database() -> None:
    page = PageRequest()
    assert INDEX.search(KitchenFilters(q="oven"), page, JURISDICTIONS, NOW) is None
    assert INDEX.search(KitchenFilters(q=" "), page, JURISDICTIONS, NOW) is not None
    assert INDEX.search(KitchenFilters(jurisdiction="atlantis"), page, JURISDICTIONS, NOW) is None


def test_an_empty_index_finds_nothing() -> None:
    empty = SearchIndex(0, [], [])
    assert empty.search(KitchenFilters(), PageRequest(), JURISDICTIONS, NOW) == ([], 0)


def rebooked(randomness: random.Random, count: int) -> dict[UUID, tuple[list[int], list[int]]]:
    """New bookings for ``count`` kitchens (some of them none at all)."""
    changed = {}
    for kitchen in randomness.sample(KITCHEN_LIST, count):
        starts = [
            epoch_us(DAY + timedelta(minutes=15 * randomness.randrange(4 * 30)))
            for _ in range(randomness.randrange(3))
        ]
        ends = [start + 15 * 60_000_000 * randomness.randrange(1, 20) for start in starts]
        changed[kitchen.id] = (starts, ends)
    return changed


def with_changes(changed: dict[UUID, tuple[list[int], list[int]]]) -> Booked:
    rest = [booked for booked in BOOKED if booked[0] not in changed]
    return rest + [(kitchen_id, *times) for kitchen_id, times in changed.items()]


WINDOWS = [
    (DAY + timedelta(hours=hour, minutes=minute), timedelta(minutes=length))
    for hour in range(-2, 31, 3)
    for minute in (0, 35)
    for length in (20, 60, 150)
]


@pytest.mark.parametrize("seed", range(8))
def test_an_index_with_changed_bookings_equals_one_built_with_them(seed: int) -> None:
    changed = rebooked(random.Random(seed), count=1 + 20 * seed)
    unknown = {UUID(int=seed): ([epoch_us(DAY)], [epoch_us(DAY) + 1])}  # not published
    updated = INDEX.with_booked(8, changed | unknown)
    fresh = SearchIndex(8, KITCHEN_LIST, with_changes(changed))
    assert updated.position == 8 and INDEX.position == 7
    page = PageRequest(limit=100)
    for start, length in WINDOWS:
        filters = KitchenFilters(available_from=start, available_to=start + length)
        expected = brute_force(filters, NOW, with_changes(changed))
        assert indexed(filters, page, NOW, updated) == (expected[:100], len(expected))
        assert indexed(filters, page, NOW, fresh) == (expected[:100], len(expected))
        before = brute_force(filters, NOW)  # the index it came from is unchanged
        assert indexed(filters, page, NOW) == (before[:100], len(before))


class Loads:
    """Builds indexes of the test world at the positions it is told, and reads its
    bookings, counting both."""

    def __init__(self) -> None:
        self.position = 10
        self.builds = 0
        self.built = threading.Event()
        self.booked = {kitchen_id: (starts, ends) for kitchen_id, starts, ends in BOOKED}
        self.reads: list[set[UUID]] = []

    def __call__(self) -> SearchIndex:
        self.builds += 1
        booked = [(kitchen_id, *times) for kitchen_id, times in self.booked.items()]
        index = SearchIndex(self.position, KITCHEN_LIST, booked)
        self.built.set()
        return index

    def load_booked(self, kitchen_ids: Iterable[UUID]) -> dict[UUID, tuple[Sequence[int], ...]]:
        wanted = set(kitchen_ids)
        self.reads.append(wanted)
        return {kitchen_id: self.booked.get(kitchen_id, ([], [])) for kitchen_id in wanted}


def live(
    load: Callable[[], SearchIndex],
    position: Callable[[], int | None],
    *,
    load_booked: Callable[[Iterable[UUID]], dict[UUID, Any]],
    build_interval_s_min: float = 0.0,
) -> LiveSearchIndex:
    return LiveSearchIndex(
        load,
        load_booked=load_booked,
        position=position,
        jurisdictions=JURISDICTIONS,
        clock=lambda: NOW,
        build_interval_s_min=build_interval_s_min,
    )


def live_over(loads: Loads, reached: list[int | None]) -> LiveSearchIndex:
    """The live index over the test world, at the position ``reached`` holds."""
    return live(loads, lambda: reached[0], load_booked=loads.load_booked)


def wait_for_build(index: LiveSearchIndex, loads: Loads) -> None:
    """Searches (each may start a build, once the pause after the last is over) until
    a build ended and the index it loaded is in place."""

    def built() -> bool:
        if loads.built.is_set():
            return True
        index.search(KitchenFilters(), PageRequest(), 0)
        return False

    wait_until(built, 10, "a build of the index")
    loads.built.clear()
    # The build thread puts what it loaded in place.
    wait_until(lambda: index.builds >= loads.builds, 10, "the index built in place")


def test_the_live_index_answers_while_no_change_is_announced_after_it() -> None:
    loads = Loads()
    reached: list[int | None] = [10]
    index = live_over(loads, reached)
    filters, page = KitchenFilters(), PageRequest()
    assert index.search(filters, page, 0) is None  # not built yet: starts building
    wait_for_build(index, loads)
    answer = index.search(filters, page, 0)
    assert answer is not None and answer[1:] == (len(brute_force(filters, NOW)), 10)
    # The read model went on without touching kitchens: the answer holds there too.
    reached[0] = 12
    index.changed(["bookings:x", "users"], 11)
    assert index.search(filters, page, 12) is not None
    assert index.search(filters, page, 12)[2] == 12  # type: ignore[index]
    # A client ahead of what this process knows: the route waits for the read model.
    assert index.search(filters, page, 13) is None
    reached[0] = None  # not listening now: nothing is known without the database
    assert index.search(filters, page, 0) is None
    reached[0] = 12
    assert loads.builds == 1
    # A change to kitchens after the index's position: stale, rebuilt in the background.
    loads.position = 12
    index.changed(["kitchen:x", "kitchens"], 11)
    assert index.search(filters, page, 0) is None
    wait_for_build(index, loads)
    assert index.search(filters, page, 0) is not None
    loads.position = 13
    index.changed([EVERYTHING_CHANGED], 13)
    assert index.search(filters, page, 0) is None
    wait_for_build(index, loads)
    assert index.search(filters, page, 0) is not None
    assert loads.builds == 3


def until_answered(index: LiveSearchIndex, filters: KitchenFilters) -> tuple[Any, ...]:
    answer = wait_until(
        lambda: index.search(filters, PageRequest(limit=100), 0), 10, "an answer from the index"
    )
    assert answer is not None
    return answer


def test_bookings_refresh_only_their_kitchens() -> None:
    loads = Loads()
    reached: list[int | None] = [10]
    index = live_over(loads, reached)
    start = DAY + timedelta(hours=4)
    filters = KitchenFilters(available_from=start, available_to=start + timedelta(hours=2))
    until_answered(index, filters)
    # Two kitchens booked, one freed, in two batches; announced with hints.
    changed = rebooked(random.Random(3), count=3)
    loads.booked.update(changed)
    first, second, third = changed
    index.changed(["kitchens", f"booked:{first}", f"booked:{second}"], 11)
    index.changed(["kitchens", f"booked:{third}"], 12)
    reached[0] = 12
    documents, total, position = until_answered(index, filters)
    expected = brute_force(filters, NOW, with_changes(changed))
    assert ([UUID(d.decode()) for d in documents], total) == (expected[:100], len(expected))
    assert position == 12
    assert (loads.builds, index.builds, index.refreshes) == (1, 1, 1)
    assert loads.reads == [{first, second, third}]
    # A change to a kitchen itself, a switch, or a hint that is no id: built again.
    for announced in (
        ["kitchen:x", "kitchens", f"booked:{first}"],
        ["kitchens"],
        ["kitchens", "booked:?"],
    ):
        loads.position += 5
        index.changed(announced, loads.position)
        until_answered(index, filters)
    assert (loads.builds, index.refreshes) == (4, 1)


def test_a_refresh_overtaken_by_another_change_gives_way_to_a_build() -> None:
    loads = Loads()
    index = live_over(loads, [100])
    until_answered(index, KitchenFilters())
    kitchen_id = KITCHEN_LIST[0].id

    def read_while_a_kitchen_changes(kitchen_ids: Iterable[UUID]) -> dict[UUID, Any]:
        loads.position = 13
        index.changed([f"kitchen:{kitchen_id}", "kitchens"], 12)
        return loads.load_booked(kitchen_ids)

    index._load_booked = read_while_a_kitchen_changes  # type: ignore[method-assign]
    index.changed(["kitchens", f"booked:{kitchen_id}"], 11)
    until_answered(index, KitchenFilters())
    # The refresh's index would have claimed position 11 without the change at 12.
    assert index.refreshes == 0 and loads.builds == 2
    assert index.search(KitchenFilters(), PageRequest(), 0)[2] == 100  # type: ignore[index]
    assert index._index is not None and index._index.position == 13


def test_a_failed_build_leaves_searches_to_the_database() -> None:
    def failing() -> SearchIndex:
        raise RuntimeError("database gone")

    index = live(
        failing,
        lambda: 1,
        load_booked=Loads().load_booked,
        build_interval_s_min=BUILD_INTERVAL_S_MIN,
    )
    for _ in range(3):
        assert index.search(KitchenFilters(), PageRequest(), 0) is None


@pytest.mark.parametrize("build_s", [0.0, 0.05])
def test_builds_pause_at_least_ten_times_their_length(build_s: float) -> None:
    started: list[float] = []

    def slow() -> SearchIndex:
        started.append(time.monotonic())
        time.sleep(build_s)  # a build this long: what the pause after it is measured by
        return SearchIndex(0, [], [])

    index = live(slow, lambda: 1, load_booked=Loads().load_booked, build_interval_s_min=0.01)

    def built_thrice() -> bool:
        """A change and a search (which may start a build), then whether three builds
        have started."""
        index.changed(["kitchens"], len(started) + 1)
        index.search(KitchenFilters(), PageRequest(), 0)
        return len(started) >= 3

    # A change and a search every millisecond: only the pause spaces the builds.
    wait_until(built_thrice, 30, "three builds", check_interval_s_max=0.001)
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert min(gaps) >= max(0.01, 10 * build_s) * 0.9


@pytest.mark.parametrize("start_minute", [0, 5, 20, 45, 59])
@pytest.mark.parametrize("end_minute", [0, 10, 30, 55])
@pytest.mark.parametrize("hours", [0, 1, 3])
def test_windows_off_whole_hours_compare_each_booking_there(
    start_minute: int, end_minute: int, hours: int
) -> None:
    start = DAY + timedelta(hours=5, minutes=start_minute)
    end = DAY + timedelta(hours=6 + hours, minutes=end_minute)
    filters = KitchenFilters(available_from=start, available_to=end)
    expected = brute_force(filters, NOW)
    assert indexed(filters, PageRequest(limit=100, offset=0), NOW) == (
        expected[:100],
        len(expected),
    )
