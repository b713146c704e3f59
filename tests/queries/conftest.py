"""The query cache on each backend: per process, and on real Redis."""

from __future__ import annotations

import os

import pytest
import redis

from queries.cache import MemoryQueryCache, QueryCache, RedisQueryCache

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def redis_available() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False
    return True


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> QueryCache:
    if request.param == "memory":
        return MemoryQueryCache()
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}: Redis cache tests skipped")
    redis.Redis.from_url(REDIS_URL).flushdb()
    return RedisQueryCache(REDIS_URL, namespace="tests")
