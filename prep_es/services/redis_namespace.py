"""Which deployment a Redis key belongs to.

Several deployments may share one Redis database (one ``PREP_ES_REDIS_URL``). Every
key a process writes there starts with ``prep_es:<namespace>:``, so one deployment's
cached kitchens, change marks and login counts are never another's. The namespace
names the event store: every process of a deployment (API replicas reading different
replicas, ``prep-es project``) shares it because they share the primary database, and
two deployments differ because their primaries do.

- PostgreSQL: the server's ``system_identifier`` (fixed when the cluster was created,
  the same on its physical replicas) and the database name, read once at start — not
  the host name, which two processes may spell differently for the same server.
- SQLite: the database file's absolute path.

``PREP_ES_REDIS_NAMESPACE`` overrides it (say, to keep a cache across a move to a new
cluster, or to separate two deployments that somehow share one database).
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

import psycopg

from prep_es.store.settings import DatabaseLocation, PostgresLocation, Settings

NAMESPACE_HEX_DIGITS: Final = 16
CONNECT_TIMEOUT_S: Final = 10


def redis_namespace(settings: Settings) -> str:
    """The namespace of every Redis key of this deployment (connects to a PostgreSQL
    primary once: call it at start, never per request)."""
    if settings.redis_namespace is not None:
        return settings.redis_namespace
    return _digest(event_store_identity(settings.database))


def event_store_identity(location: DatabaseLocation) -> str:
    """What tells this event store apart from every other, without credentials."""
    if isinstance(location, PostgresLocation):
        with psycopg.connect(
            location.conninfo(), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        ) as connection:
            row = connection.execute(
                "SELECT system_identifier::text, current_database() FROM pg_control_system()"
            ).fetchone()
        assert row is not None
        system_identifier, dbname = row
        return f"postgresql:{system_identifier}:{dbname}"
    if location.is_memory:
        return f"sqlite:{location.path}"
    return f"sqlite:{os.path.realpath(location.path)}"


def _digest(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:NAMESPACE_HEX_DIGITS]
