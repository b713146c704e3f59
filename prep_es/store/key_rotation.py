"""Rotation of the master key, and what an operator checks of the key table.

A rotation rewraps every data key with the new master key, in one transaction, and
touches no event: events are sealed with the data keys, which do not change, so every
process keeps the keys it has cached, and reads on through the rotation.

**With the master key in the environment** (``PREP_ES_MASTER_KEY``, as PostgreSQL
requires): the operator restarts every process with ``PREP_ES_MASTER_KEY`` = the new
key and ``PREP_ES_PREVIOUS_MASTER_KEY`` = the old one (they read data keys wrapped by
either, and wrap new ones with the new key), runs ``prep-es keys rotate``
(:func:`rotate_in_place`), and once it reports every data key under the new key,
restarts them without ``PREP_ES_PREVIOUS_MASTER_KEY``.

**Embedded, with the key in ``<db>.master-key``** (:func:`rotate_embedded`): the
command makes the new key itself, with every process of the database stopped:

1. the new key is written to ``<db>.master-key.next`` (0600, on disk before anything
   is rewrapped with it);
2. every data key is rewrapped with it, in one transaction;
3. the old key is written to ``<db>.master-key.previous`` and the new one renamed over
   ``<db>.master-key``.

Stopped anywhere, the command run again finishes the same rotation (a ``.next`` file is
a rotation under way), and a process started meanwhile reads keys wrapped by either
(see ``prep_es.store.eventstore.master_key_ring``). The old key is left in
``.previous`` because backups of the database taken before the rotation need it: the
operator moves it to where those backups are kept, away from the database (the next
rotation refuses to start while it is still there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

from aggregates.user import User
from prep_es.store.eventstore import (
    PrepApplication,
    application_env,
    check_migrated,
    master_key_path,
    master_key_ring,
    open_application,
)
from prep_es.store.personal_keys import (
    KeyCounts,
    KeyRing,
    MasterKey,
    next_master_key_path,
    previous_master_key_path,
    read_master_key_file,
    replace_master_key_file,
    sync_directory,
)
from prep_es.store.settings import Settings, SqliteLocation

ERASURE_TOPIC: Final = User.UserErased.TOPIC
ERASURES_BATCH_SIZE: Final = 1000


class RotationRefused(Exception):
    """The rotation cannot run as configured (the message says what to change)."""


@dataclass(frozen=True)
class Rotation:
    """A rotation done: how many data keys it rewrapped, and with which key."""

    rewrapped: int
    data_keys: int
    master_key_id: str
    replaced_key_id: str | None
    """The master key rotated out, if any was named."""
    previous_key_path: Path | None = None
    """Embedded: where the old master key was left (for backups taken before)."""
    master_key_path: Path | None = None
    """Embedded: where the new master key is."""


def uses_key_file(settings: Settings) -> bool:
    """Whether ``settings``' master key is the embedded key file (no master key in the
    environment): a rotation then makes the new key itself."""
    return (
        settings.master_key is None
        and settings.previous_master_key is None
        and isinstance(settings.database, SqliteLocation)
        and not settings.database.is_memory
    )


def rotate_in_place(settings: Settings) -> Rotation:
    """Rewrap every data key not yet wrapped by ``PREP_ES_MASTER_KEY`` (unwrapping with
    ``PREP_ES_PREVIOUS_MASTER_KEY``)."""
    app = open_application(settings)
    try:
        ring = app.data_keys.key_ring
        _refuse_unknown_keys(app.data_keys.counts(), ring)
        rewrapped = app.data_keys.rewrap_all()
        data_keys = app.data_keys.counts().data_keys
    finally:
        app.close()
    return Rotation(
        rewrapped=rewrapped,
        data_keys=data_keys,
        master_key_id=ring.current.key_id,
        replaced_key_id=None if ring.previous is None else ring.previous.key_id,
    )


def rotate_embedded(settings: Settings) -> Rotation:
    """Make a new master key for the embedded database, rewrap every data key with it,
    and put it in place of the old one (see the module's docstring). Every process of
    the database must be stopped (the caller checks what it can)."""
    location = settings.database
    assert isinstance(location, SqliteLocation) and not location.is_memory, location
    path = master_key_path(location)
    current = read_master_key_file(path)
    if current is None:
        raise RotationRefused(
            f"there is no master key at {path}: it is made when the database is first "
            "opened, and nothing is encrypted yet"
        )
    next_path = next_master_key_path(path)
    previous_path = previous_master_key_path(path)
    new = read_master_key_file(next_path)  # a rotation stopped half-way goes on
    if new is None:
        if previous_path.exists():
            raise RotationRefused(
                f"{previous_path} still holds the master key an earlier rotation replaced: "
                "move it to where the backups taken before that rotation are kept (it "
                "opens them), then rotate"
            )
        new = MasterKey.generate()
        replace_master_key_file(next_path, new)
    ring = KeyRing(current=new, previous=current)
    app = PrepApplication(env=application_env(settings))
    try:
        check_migrated(app)
        app.open_personal_data(ring)
        _refuse_unknown_keys(app.data_keys.counts(), ring)
        rewrapped = app.data_keys.rewrap_all()
        data_keys = app.data_keys.counts().data_keys
    finally:
        app.close()
    replace_master_key_file(previous_path, current)
    os.replace(next_path, path)
    sync_directory(path.parent)
    return Rotation(
        rewrapped=rewrapped,
        data_keys=data_keys,
        master_key_id=new.key_id,
        replaced_key_id=current.key_id,
        previous_key_path=previous_path,
        master_key_path=path,
    )


def _refuse_unknown_keys(counts: KeyCounts, ring: KeyRing) -> None:
    known = {ring.current.key_id} | ({ring.previous.key_id} if ring.previous else set())
    unknown = sorted(set(counts.wrapped_by) - known)
    if unknown:
        raise RotationRefused(
            f"{sum(counts.wrapped_by[key_id] for key_id in unknown)} data key(s) are wrapped "
            f"by master key(s) {', '.join(unknown)}, neither the current ({ring.current.key_id}) "
            "nor the previous one: set PREP_ES_PREVIOUS_MASTER_KEY to the key they were "
            "wrapped with, and rotate again"
        )


@dataclass(frozen=True)
class KeyStatus:
    """What ``prep-es keys status`` reports."""

    counts: KeyCounts
    current_key_id: str
    previous_key_id: str | None
    erased_users: int
    """Users whose ``UserErased`` event is stored."""
    erased_users_holding_keys: list[UUID]
    """Of them, those whose data key exists all the same (an old backup of the key table
    restored): their erasure must be applied again."""

    def label(self, key_id: str) -> str:
        if key_id == self.current_key_id:
            return "current"
        if key_id == self.previous_key_id:
            return "previous"
        return "unknown"


def open_for_keys(settings: Settings) -> PrepApplication:
    """The store, with its key ring but without checking that the master key opens the
    data keys: the key table is inspected even when it does not."""
    app = PrepApplication(env=application_env(settings))
    try:
        check_migrated(app)
        app.open_personal_data(master_key_ring(settings))
    except BaseException:
        app.close()
        raise
    return app


def key_status(app: PrepApplication) -> KeyStatus:
    keys = app.data_keys
    erased = list(erased_users(app))
    ring = keys.key_ring
    return KeyStatus(
        counts=keys.counts(),
        current_key_id=ring.current.key_id,
        previous_key_id=None if ring.previous is None else ring.previous.key_id,
        erased_users=len(erased),
        erased_users_holding_keys=[user for user in erased if keys.holds_key(user)],
    )


def reapply_erasures(app: PrepApplication) -> list[UUID]:
    """Destroy again the data key of every erased user who holds one (after an old
    backup of the key table was restored); the users whose key was destroyed now."""
    destroyed = []
    for user in erased_users(app):
        if app.data_keys.holds_key(user):
            app.destroy_personal_data(user)
            destroyed.append(user)
    return destroyed


def erased_users(app: PrepApplication) -> Iterator[UUID]:
    """Every user whose ``UserErased`` event is stored (a scan of the events table)."""
    position = 0
    while True:
        batch = app.notifications(position, None, ERASURES_BATCH_SIZE, [ERASURE_TOPIC])
        if not batch:
            return
        for notification in batch:
            user = notification.originator_id
            yield user if isinstance(user, UUID) else UUID(str(user))
        position = batch[-1].id
