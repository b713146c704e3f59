"""Hypothesis profiles for the property tests, and fresh event stores on each backend.

``default`` explores more; ``ci`` (loaded when ``CI=true``) is bounded so the whole
folder runs in well under three minutes on two cores across both backends.
``HYPOTHESIS_PROFILE`` picks a profile by name (e.g. ``HYPOTHESIS_PROFILE=ci`` locally).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Store set-up (a PostgreSQL database per example) is not data generation; do not let
# the health check count it.
_SUPPRESSED = [HealthCheck.too_slow]

settings.register_profile(
    "default",
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "ci",
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
    database=None,
    print_blob=True,
)


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _is_ci() else "default"))


@dataclass(frozen=True)
class StoreFactory:
    """Makes an empty event store per call (``create``) and disposes of it (``dispose``)."""

    backend: str
    create: Callable[[], str]
    dispose: Callable[[str], None]


def _sqlite_factory(directory: Path) -> StoreFactory:
    numbers = itertools.count()

    def create() -> str:
        return f"sqlite:///{directory / f'store-{next(numbers)}.db'}"

    def dispose(url: str) -> None:
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

    return StoreFactory(backend="sqlite", create=create, dispose=dispose)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of empty stores on each backend in turn (one per hypothesis example:
    a new SQLite file, or a new PostgreSQL database dropped when the example ends)."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        return StoreFactory(
            backend="postgres", create=server.create_database, dispose=server.drop_database
        )
    return _sqlite_factory(tmp_path)
