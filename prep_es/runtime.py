"""Wiring: from Settings to an open event store and its command handlers."""

from __future__ import annotations

import gc
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


def freeze_startup_objects() -> None:
    """Keep what a long-running process made while starting (modules, models, routes,
    pools) out of the garbage collector's passes: it lives as long as the process, and a
    full pass over it stalls every thread for tens of milliseconds (it doubled the
    projectors' p99 lag). Call once, when started."""
    gc.collect()
    gc.freeze()


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
