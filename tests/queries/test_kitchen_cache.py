"""Kitchen detail and search through the cache, with the real read model and runner:
projector changes invalidate, and no client gets an answer older than it asked for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from commands.kitchens import UpdateKitchen
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.jurisdiction_rules import packaged_jurisdictions
from projections.bookings import BookingsProjection
from projections.generations import ensure_ready, generations
from projections.kitchens import KitchensProjection
from projections.runners import ProjectionRunner
from queries.base import Viewer
from queries.cache import QueryCache
from queries.kitchen_cache import CachedKitchenQueries
from queries.kitchens import KitchenFilters, KitchenQueries
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    open_test_runtime,
    store_settings,
)


class CountingQueries(KitchenQueries):
    calls = 0

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().search(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().get(*args, **kwargs)


@pytest.fixture
def setup(sqlite_url: str, cache: QueryCache) -> Iterator[tuple[Marketplace, ReadSide, QueryCache]]:
    clock = MutableClock()
    runtime = open_test_runtime(sqlite_url, clock)
    market = build_marketplace(runtime, clock)
    side = open_read_side(store_settings(sqlite_url))
    yield market, side, cache
    side.close()
    runtime.close()


def project(market: Marketplace, side: ReadSide, cache: QueryCache) -> None:
    for projection in (KitchensProjection, BookingsProjection):
        ensure_ready(side.write_database, projection)
        ProjectionRunner(
            projection, market.runtime.app, side.write_database, on_changes=cache.mark_changed
        ).catch_up()


def kitchens_position(side: ReadSide) -> int:
    with side.query_database.reading() as sql:
        return next(g.position for g in generations(sql, "kitchens") if g.active)


def test_detail_and_search_are_served_from_the_cache_until_a_change(
    setup: tuple[Marketplace, ReadSide, QueryCache],
) -> None:
    market, side, cache = setup
    project(market, side, cache)
    queries = CountingQueries(
        side.query_database, jurisdictions=packaged_jurisdictions(), clock=market.clock
    )
    cached = CachedKitchenQueries(
        queries, cache, position=lambda: kitchens_position(side), clock=market.clock
    )

    first, holds_from = cached.get(None, market.kitchen_id)
    assert holds_from == kitchens_position(side)
    customer = Viewer(user_id=market.customer.user_id, role="customer")
    assert cached.get(customer, market.kitchen_id) == (first, holds_from)
    found = cached.search(KitchenFilters(city="Los Angeles"))
    assert cached.search(KitchenFilters(city="Los Angeles")) == found
    assert queries.calls == 2

    market.runtime.commands.kitchens.update_kitchen(
        UpdateKitchen(kitchen_id=market.kitchen_id, name="Renamed Kitchen"),
        as_actor(market.host),
    )
    project(market, side, cache)

    renamed, holds_from = cached.get(None, market.kitchen_id)
    assert (renamed.name, holds_from) == ("Renamed Kitchen", kitchens_position(side))
    assert cached.search(KitchenFilters(city="Los Angeles")).items[0].name == "Renamed Kitchen"
    assert queries.calls == 4


def test_a_client_ahead_of_the_cache_goes_to_the_database(
    setup: tuple[Marketplace, ReadSide, QueryCache],
) -> None:
    market, side, cache = setup
    project(market, side, cache)
    queries = CountingQueries(
        side.query_database, jurisdictions=packaged_jurisdictions(), clock=market.clock
    )
    cached = CachedKitchenQueries(
        queries, cache, position=lambda: kitchens_position(side), clock=market.clock
    )
    cached.get(None, market.kitchen_id)
    built_at = kitchens_position(side)

    cached.get(None, market.kitchen_id, min_position=built_at)
    assert queries.calls == 1
    cached.get(None, market.kitchen_id, min_position=built_at + 1)
    assert queries.calls == 2


def test_a_booking_invalidates_availability_searches(
    setup: tuple[Marketplace, ReadSide, QueryCache],
) -> None:
    market, side, cache = setup
    project(market, side, cache)
    cached = CachedKitchenQueries(
        KitchenQueries(
            side.query_database, jurisdictions=packaged_jurisdictions(), clock=market.clock
        ),
        cache,
        position=lambda: kitchens_position(side),
        clock=market.clock,
    )
    start = START_OF_TESTS + timedelta(days=3)
    window = KitchenFilters(available_from=start, available_to=start + timedelta(hours=2))
    assert cached.search(window).total == 1

    market.request_booking(start)
    project(market, side, cache)

    assert cached.search(window).total == 0
