"""The query cache, per process and on real Redis — including Redis going away."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis

from queries.cache import EVERYTHING, MemoryQueryCache, QueryCache, RedisQueryCache
from tests.waiting import wait_until


def cached(cache: QueryCache, key: str, *, dependency: str, min_position: int) -> bytes | None:
    entry = cache.get(key, dependency=dependency, min_position=min_position)
    return None if entry is None else entry.value


def test_an_entry_says_the_position_it_was_built_at(cache: QueryCache) -> None:
    cache.put("kitchen:1", b"detail", position=10)
    assert cache.get("kitchen:1", dependency="kitchen:1", min_position=3) == (10, b"detail")


def test_an_entry_is_served_to_clients_at_or_behind_its_position(cache: QueryCache) -> None:
    cache.put("kitchen:1", b"detail", position=10)

    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=10) == b"detail"
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) == b"detail"
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=11) is None
    assert cached(cache, "kitchen:2", dependency="kitchen:2", min_position=0) is None


def test_a_change_to_everything_refuses_every_older_entry(cache: QueryCache) -> None:
    cache.put("kitchen:1", b"one", position=10)
    cache.put("kitchens:search", b"all", position=12)
    cache.mark_changed([EVERYTHING], 11)

    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) is None
    assert cached(cache, "kitchens:search", dependency="kitchens", min_position=0) == b"all"


def test_without_announcements_entries_older_than_the_read_model_are_not_trusted() -> None:
    read_model_position = 10
    cache = MemoryQueryCache(stale_before=lambda: read_model_position)
    cache.put("kitchen:1", b"detail", position=10)
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) == b"detail"

    read_model_position = 11  # another process's runner moved it: maybe a change
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) is None


def test_a_change_refuses_older_entries_even_ones_written_late(cache: QueryCache) -> None:
    cache.put("kitchen:1", b"old", position=10)
    cache.mark_changed(["kitchen:1"], 12)
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) is None

    # A read that started before the change finishes after it: still refused.
    cache.put("kitchen:1", b"old, written late", position=11)
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) is None

    cache.put("kitchen:1", b"new", position=12)
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) == b"new"
    # A change never moves backwards.
    cache.mark_changed(["kitchen:1"], 5)
    assert cached(cache, "kitchen:1", dependency="kitchen:1", min_position=0) == b"new"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(redis_url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(redis_url).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is needed to test Redis going away")
        pytest.skip("REDIS-SERVER NOT INSTALLED: the outage test is skipped")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: answers(url), 30, f"redis-server answering on port {port}")
    yield process, url
    process.kill()
    process.wait()


def test_redis_going_away_answers_misses_and_logs_once(
    own_redis: tuple[subprocess.Popen[bytes], str], caplog: pytest.LogCaptureFixture
) -> None:
    process, url = own_redis
    cache = RedisQueryCache(url, namespace="tests")
    cache.put("search:a", b"page", position=3)
    assert cached(cache, "search:a", dependency="kitchens", min_position=0) == b"page"

    process.kill()
    process.wait()
    with caplog.at_level(logging.WARNING, logger="queries.cache"):
        for _ in range(20):
            assert cached(cache, "search:a", dependency="kitchens", min_position=0) is None
            cache.put("search:a", b"page", position=4)
            cache.mark_changed(["kitchens"], 5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_after_an_outage_entries_from_before_it_are_not_trusted(
    own_redis: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = own_redis
    projector, server = (
        RedisQueryCache(url, namespace="tests"),
        RedisQueryCache(url, namespace="tests"),
    )
    server.put("kitchen:1", b"before", position=3)
    client = redis.Redis.from_url(url)

    # The projector cannot record a change while Redis refuses it...
    client.config_set("maxmemory", "1")
    client.config_set("maxmemory-policy", "noeviction")
    projector.mark_changed(["kitchen:1"], 7)
    client.config_set("maxmemory", "0")
    assert client.get("prep_es:tests:changed:kitchen:1") is None
    # ...so its next change, once Redis is back, invalidates everything older.
    projector.mark_changed(["kitchen:2"], 8)

    assert server.get("kitchen:1", dependency="kitchen:1", min_position=0) is None
    assert process.poll() is None
