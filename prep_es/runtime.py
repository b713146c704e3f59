"""Wiring: from Settings to an open event store and its command handlers."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aggregates.jurisdictions import JurisdictionCatalog
from commands import Commands
from commands.handling import Clock
from commands.users import PasswordHashing
from prep_es.eventstore import PrepApplication, open_application
from prep_es.passwords import Argon2Passwords
from prep_es.settings import Settings


def system_clock() -> datetime:
    return datetime.now(UTC)


def load_jurisdictions(path: Path) -> JurisdictionCatalog:
    with path.open("rb") as file:
        return JurisdictionCatalog.from_mapping(tomllib.load(file))


@dataclass(frozen=True)
class Runtime:
    """An open event store and everything that writes to it."""

    settings: Settings
    app: PrepApplication
    jurisdictions: JurisdictionCatalog
    commands: Commands

    def close(self) -> None:
        self.app.close()


def open_runtime(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    passwords: PasswordHashing | None = None,
) -> Runtime:
    app = open_application(settings)
    jurisdictions = load_jurisdictions(settings.jurisdictions_path)
    commands = Commands.build(
        app,
        jurisdictions=jurisdictions,
        clock=clock,
        passwords=passwords or Argon2Passwords(),
        conflict_retries_max=settings.conflict_retries_max,
        commission_basis_points=settings.commission_basis_points,
    )
    return Runtime(settings=settings, app=app, jurisdictions=jurisdictions, commands=commands)
