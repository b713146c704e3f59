"""Builds recorders exactly as the application does, for eventsourcing's contract suites."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from prep_es.eventstore import APPLICATION_NAME, application_env
from prep_es.settings import Settings


def construct_env(database_url: str) -> Environment:
    """The environment :func:`prep_es.eventstore.open_application` gives eventsourcing."""
    return Environment(APPLICATION_NAME, application_env(Settings(database_url=database_url)))


def construct_factory(database_url: str) -> InfrastructureFactory[Any]:
    """The infrastructure factory exactly as the application configures it."""
    return InfrastructureFactory.construct(construct_env(database_url))
