"""A per-process cache (no Redis) whose process does not run the kitchens projection:
another process's runner changes a kitchen, and this process must stop serving what it
cached before. On PostgreSQL the runner's announcement (NOTIFY in its batch's
transaction) reaches the cache; on SQLite, where nothing can be announced, entries older
than the read model's current position are not trusted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from commands.kitchens import UpdateKitchen
from prep_es.services.container import open_query_cache
from prep_es.services.readside import ReadSide
from prep_es.store.jurisdiction_rules import packaged_jurisdictions
from projections.generations import ensure_ready
from projections.kitchens import KitchensProjection
from projections.runners import ProjectionRunner
from queries.cache import MemoryQueryCache
from queries.consistency import ReadPositions
from queries.kitchen_cache import CachedKitchenQueries
from queries.kitchens import KitchenFilters, KitchenQueries
from tests.support import Marketplace, as_actor, store_settings
from tests.waiting import wait_until

ANNOUNCEMENT_WAIT_S = 5.0


@pytest.fixture
def positions(database_url: str, read_side: ReadSide) -> Iterator[ReadPositions]:
    positions = ReadPositions(read_side.query_database)
    yield positions
    positions.close()


def test_changes_made_by_another_process_reach_a_per_process_cache(
    database_url: str, market: Marketplace, read_side: ReadSide, positions: ReadPositions
) -> None:
    cache = open_query_cache(store_settings(database_url), positions)
    assert isinstance(cache, MemoryQueryCache)
    positions.start()
    kitchens = CachedKitchenQueries(
        KitchenQueries(
            read_side.query_database, jurisdictions=packaged_jurisdictions(), clock=market.clock
        ),
        cache,
        position=lambda: positions.position(KitchensProjection.name),
        clock=market.clock,
    )
    # The other process: its runner tells no cache of this one's directly.
    ensure_ready(read_side.write_database, KitchensProjection)
    runner = ProjectionRunner(KitchensProjection, market.runtime.app, read_side.write_database)
    runner.catch_up()
    name_before = kitchens.get(None, market.kitchen_id)[0].name
    assert kitchens.search(KitchenFilters(city="Los Angeles")).items[0].name == name_before

    market.runtime.commands.kitchens.update_kitchen(
        UpdateKitchen(kitchen_id=market.kitchen_id, name="Renamed Elsewhere"),
        as_actor(market.host),
    )
    runner.catch_up()

    # The announcement travels through the database server.
    wait_until(
        lambda: kitchens.get(None, market.kitchen_id)[0].name != name_before,
        ANNOUNCEMENT_WAIT_S,
        "the rename announced",
    )
    assert kitchens.get(None, market.kitchen_id)[0].name == "Renamed Elsewhere"
    assert kitchens.search(KitchenFilters(city="Los Angeles")).items[0].name == (
        "Renamed Elsewhere"
    )


def test_bookings_are_announced_with_hints_only_hint_listeners_hear(
    market: Marketplace, read_side: ReadSide, positions: ReadPositions
) -> None:
    if not positions.hears_changes:
        pytest.skip("SQLite announces nothing: no hints to hear")
    plain: list[str] = []
    hinted: list[str] = []
    positions.follow_changes(lambda changed, _: plain.extend(changed))
    positions.follow_changes(lambda changed, _: hinted.extend(changed), with_hints=True)
    positions.start()
    ensure_ready(read_side.write_database, KitchensProjection)
    runner = ProjectionRunner(KitchensProjection, market.runtime.app, read_side.write_database)
    runner.catch_up()
    market.request_booking(market.clock() + timedelta(days=3))
    runner.catch_up()
    hint = f"booked:{market.kitchen_id}"
    wait_until(lambda: hint in hinted, ANNOUNCEMENT_WAIT_S, "the booking announced")
    assert hint in hinted and "kitchens" in hinted
    assert "kitchens" in plain
    assert not [changed for changed in plain if changed.startswith("booked:")]
