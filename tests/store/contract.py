"""Builds recorders exactly as the application does, for eventsourcing's contract suites."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from prep_es.store.eventstore import APPLICATION_NAME, application_env
from prep_es.store.settings import Settings


def construct_env(database_url: str) -> Environment:
    """The environment :func:`prep_es.store.eventstore.open_application` gives eventsourcing."""
    return Environment(APPLICATION_NAME, application_env(Settings(database_url=database_url)))


def construct_factory(database_url: str) -> InfrastructureFactory[Any]:
    """The infrastructure factory exactly as the application configures it."""
    return InfrastructureFactory.construct(construct_env(database_url))


@contextmanager
def threads_joined_before_closing(timeout_s: float = 10.0) -> Iterator[None]:
    """Join the threads a test started before its store is closed. Some of the
    library's contract tests stop their reader threads without joining them; closing
    the connections under a thread still reading crashes the interpreter."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:
            thread.join(timeout=timeout_s)
