"""Deployments that share one Redis database never share its keys: each deployment's
keys live under the namespace of its event store, which every process of the deployment
(API replicas reading other replicas, projector processes) works out alike."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from commands.kitchens import UpdateKitchen
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.services.redis_namespace import redis_namespace
from prep_es.store.jurisdiction_rules import packaged_jurisdictions
from prep_es.store.settings import Settings
from projections.generations import ensure_ready, generations
from projections.kitchens import KitchensProjection
from projections.runners import ProjectionRunner
from queries.cache import RedisQueryCache
from queries.kitchen_cache import CachedKitchenQueries
from queries.kitchens import KitchenFilters
from tests.conftest import PostgresServer
from tests.queries.conftest import REDIS_URL, redis_available
from tests.queries.test_kitchen_cache import CountingQueries
from tests.support import (
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    open_test_runtime,
    store_settings,
    top_up,
)


@pytest.fixture
def redis_url() -> str:
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}: Redis namespace tests skipped")
    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture
def other_database_url(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A second empty store on the same backend (another deployment's)."""
    if database_url.startswith("postgresql"):
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
        yield url
        server.drop_database(url)
    else:
        yield f"sqlite:///{tmp_path / 'other.db'}"


class Deployment:
    """One deployment's event store, read side and Redis query cache."""

    def __init__(self, database_url: str, redis_url: str, *, top_ups: int = 0) -> None:
        self.settings = store_settings(database_url, redis_url=redis_url)
        clock = MutableClock()
        self.market: Marketplace = build_marketplace(open_test_runtime(database_url, clock), clock)
        for _ in range(top_ups):
            top_up(self.market.runtime, self.market.customer, 100)
        self.side: ReadSide = open_read_side(self.settings)
        self.cache = RedisQueryCache(redis_url, namespace=redis_namespace(self.settings))
        self.queries = CountingQueries(
            self.side.query_database, jurisdictions=packaged_jurisdictions(), clock=clock
        )
        self.kitchens = CachedKitchenQueries(
            self.queries, self.cache, position=self._position, clock=clock
        )

    def _position(self) -> int:
        with self.side.query_database.reading() as sql:
            return next(g.position for g in generations(sql, "kitchens") if g.active)

    def rename_kitchen(self, name: str) -> None:
        self.market.runtime.commands.kitchens.update_kitchen(
            UpdateKitchen(kitchen_id=self.market.kitchen_id, name=name),
            as_actor(self.market.host),
        )

    def project(self) -> None:
        ensure_ready(self.side.write_database, KitchensProjection)
        ProjectionRunner(
            KitchensProjection,
            self.market.runtime.app,
            self.side.write_database,
            on_changes=self.cache.mark_changed,
        ).catch_up()

    def close(self) -> None:
        self.side.close()
        self.market.runtime.close()


@pytest.fixture
def deployments(
    database_url: str, other_database_url: str, redis_url: str
) -> Iterator[tuple[Deployment, Deployment]]:
    # The first deployment's store is further ahead, so that its entries are newer than
    # any change the second one marks: only the namespace can keep them apart.
    first = Deployment(database_url, redis_url, top_ups=5)
    second = Deployment(other_database_url, redis_url)
    yield first, second
    first.close()
    second.close()


def test_a_deployment_is_never_answered_from_another_deployments_cache(
    deployments: tuple[Deployment, Deployment],
) -> None:
    first, second = deployments
    second.rename_kitchen("The Second Deployment's Kitchen")
    second.project()
    first.project()
    los_angeles = KitchenFilters(city="Los Angeles")

    assert first.kitchens.search(los_angeles).items[0].name == "Test Kitchen"
    assert first.kitchens.search(los_angeles).items[0].name == "Test Kitchen"
    assert first.queries.calls == 1  # cached for the first deployment

    found = second.kitchens.search(los_angeles).items
    assert [kitchen.name for kitchen in found] == ["The Second Deployment's Kitchen"]
    assert [kitchen.id for kitchen in found] == [second.market.kitchen_id]
    assert second.kitchens.get(None, second.market.kitchen_id)[0].name == (
        "The Second Deployment's Kitchen"
    )
    assert second.queries.calls == 2
    # ...and the second one's entries, now cached, do not answer the first either.
    assert first.kitchens.search(los_angeles).items[0].id == first.market.kitchen_id
    assert second.kitchens.search(los_angeles).items[0].id == second.market.kitchen_id
    assert (first.queries.calls, second.queries.calls) == (1, 2)


def test_processes_of_one_deployment_share_its_cache(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    deployment = Deployment(database_url, redis_url)
    try:
        deployment.project()
        los_angeles = KitchenFilters(city="Los Angeles")
        deployment.kitchens.search(los_angeles)
        # Another API process of the same deployment: it names the primary its own way
        # (and on PostgreSQL reads a replica), yet finds what the first one cached.
        replica_settings = _another_process(deployment.settings, tmp_path)
        assert redis_namespace(replica_settings) == redis_namespace(deployment.settings)
        replica_cache = RedisQueryCache(redis_url, namespace=redis_namespace(replica_settings))
        replica = CachedKitchenQueries(
            deployment.queries,
            replica_cache,
            position=lambda: 0,
            clock=deployment.market.clock,
        )
        assert replica.search(los_angeles).items[0].id == deployment.market.kitchen_id
        assert deployment.queries.calls == 1
    finally:
        deployment.close()


def _another_process(settings: Settings, tmp_path: Path) -> Settings:
    url = settings.database_url
    if url.startswith("postgresql"):
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        spelled_otherwise = urlunsplit(
            parts._replace(netloc=parts.netloc.replace("127.0.0.1", "localhost"))
        )
        return store_settings(
            spelled_otherwise,
            read_database_url=url,
            redis_url=settings.redis_url,
        )
    # The same file through another path: a link in another directory.
    path = Path(url.removeprefix("sqlite:///"))
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    link.symlink_to(path)
    return store_settings(f"sqlite:///{link}", redis_url=settings.redis_url)


def test_a_copy_of_a_store_elsewhere_is_another_deployment(tmp_path: Path) -> None:
    """A staging copy made from a backup of production's file keeps every id: only its
    place tells it apart."""
    clock = MutableClock()
    original = f"sqlite:///{tmp_path / 'production.db'}"
    open_test_runtime(original, clock).close()
    shutil.copyfile(tmp_path / "production.db", tmp_path / "staging.db")
    copy = f"sqlite:///{tmp_path / 'staging.db'}"
    assert redis_namespace(store_settings(original)) != redis_namespace(store_settings(copy))


def test_the_namespace_setting_overrides_the_derived_one(database_url: str) -> None:
    settings = store_settings(database_url, redis_namespace="shop-eu")
    assert redis_namespace(settings) == "shop-eu"
