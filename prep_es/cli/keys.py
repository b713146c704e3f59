"""``prep-es keys``: the master key and the per-person data keys it wraps.

``generate`` prints a new master key; ``rotate`` rewraps every data key with the current
master key (embedded, with its key in a file: with a new one it makes); ``status`` counts
the data keys by the master key wrapping them, the erased ones, and the erased users
whose key exists again; ``reapply-erasures`` destroys those keys again. See
``prep_es.store.key_rotation``.
"""

from __future__ import annotations

import argparse

from prep_es.cli.terminal import EXIT_FAILED, EXIT_OK, UsageError, print_json
from prep_es.services.container import SWEEPER_LOCK_NAME
from prep_es.services.readside import configured_projections, lock_factory
from prep_es.store.key_rotation import (
    KeyStatus,
    Rotation,
    key_status,
    open_for_keys,
    reapply_erasures,
    rotate_embedded,
    rotate_in_place,
    uses_key_file,
)
from prep_es.store.personal_keys import MasterKey
from prep_es.store.settings import Settings


def run_keys_generate(arguments: argparse.Namespace, settings: Settings) -> int:
    print(MasterKey.generate().encoded())
    return EXIT_OK


def run_keys_rotate(arguments: argparse.Namespace, settings: Settings) -> int:
    if uses_key_file(settings):
        _refuse_while_in_use(settings)
        rotation = rotate_embedded(settings)
    else:
        rotation = rotate_in_place(settings)
    if arguments.json:
        print_json(
            {
                "rewrapped": rotation.rewrapped,
                "data_keys": rotation.data_keys,
                "master_key_id": rotation.master_key_id,
                "replaced_key_id": rotation.replaced_key_id,
                "master_key_path": _path(rotation.master_key_path),
                "previous_key_path": _path(rotation.previous_key_path),
            }
        )
    else:
        print("\n".join(describe_rotation(rotation)))
    return EXIT_OK


def describe_rotation(rotation: Rotation) -> list[str]:
    lines = [
        f"rewrapped {rotation.rewrapped} data key(s): all {rotation.data_keys} are wrapped "
        f"by master key {rotation.master_key_id} now"
    ]
    if rotation.master_key_path is not None:
        lines += [
            f"the new master key is in {rotation.master_key_path}: back it up now, apart "
            "from the database's backups",
            f"the old master key ({rotation.replaced_key_id}) is in "
            f"{rotation.previous_key_path}: backups of the database taken before now need "
            "it. Move it to where those backups are kept, away from the database (the "
            "next rotation waits until it is gone), and destroy it with the last of them.",
        ]
    elif rotation.replaced_key_id is not None:
        lines.append(
            f"master key {rotation.replaced_key_id} wraps none of them any more: restart "
            "every process without PREP_ES_PREVIOUS_MASTER_KEY. Keep that key with the "
            "backups taken before now (they need it) and destroy it with the last of them."
        )
    return lines


def run_keys_status(arguments: argparse.Namespace, settings: Settings) -> int:
    app = open_for_keys(settings)
    try:
        status = key_status(app)
    finally:
        app.close()
    if arguments.json:
        print_json(
            {
                "data_keys": status.counts.data_keys,
                "erased": status.counts.erased,
                "wrapped_by": [
                    {"master_key_id": key_id, "data_keys": count, "key": status.label(key_id)}
                    for key_id, count in status.counts.wrapped_by.items()
                ],
                "current_master_key_id": status.current_key_id,
                "previous_master_key_id": status.previous_key_id,
                "erased_users": status.erased_users,
                "erased_users_holding_keys": [
                    str(user) for user in status.erased_users_holding_keys
                ],
            }
        )
    else:
        print("\n".join(describe_status(status)))
    healthy = not status.erased_users_holding_keys and all(
        status.label(key_id) != "unknown" for key_id in status.counts.wrapped_by
    )
    return EXIT_OK if healthy else EXIT_FAILED


def describe_status(status: KeyStatus) -> list[str]:
    previous = "" if status.previous_key_id is None else f", previous {status.previous_key_id}"
    lines = [
        f"master keys: current {status.current_key_id}{previous}",
        f"data keys: {status.counts.data_keys}",
    ]
    for key_id, count in status.counts.wrapped_by.items():
        lines.append(f"  wrapped by {key_id} ({status.label(key_id)}): {count}")
    lines.append(f"erased (keys destroyed): {status.counts.erased}")
    lines.append(f"erased users: {status.erased_users}")
    holding = status.erased_users_holding_keys
    if holding:
        lines.append(
            f"erased users whose data key exists again: {len(holding)} (a backup of the key "
            "table older than their erasure was restored): run `prep-es keys "
            "reapply-erasures`"
        )
    if any(status.label(key_id) == "unknown" for key_id in status.counts.wrapped_by):
        lines.append(
            "some data keys are wrapped by a master key this process does not have: set "
            "PREP_ES_PREVIOUS_MASTER_KEY to it and run `prep-es keys rotate`"
        )
    return lines


def run_keys_reapply_erasures(arguments: argparse.Namespace, settings: Settings) -> int:
    app = open_for_keys(settings)
    try:
        destroyed = reapply_erasures(app)
    finally:
        app.close()
    if arguments.json:
        print_json({"destroyed": [str(user) for user in destroyed]})
    else:
        print(f"destroyed the data key of {len(destroyed)} erased user(s) again")
        for user in destroyed:
            print(f"  {user}")
    return EXIT_OK


def _refuse_while_in_use(settings: Settings) -> None:
    """An embedded rotation needs every process of the database stopped: one still
    running would go on wrapping new data keys with the old master key, which the
    database forgets. The processes that run projectors or the sweeper hold a lock
    beside the database; those found are named (an API server started with
    ``--no-projector`` holds none: stop it too)."""
    make_lock = lock_factory(settings.database)
    names = [projection.name for projection in configured_projections(settings)]
    for name in [*names, SWEEPER_LOCK_NAME]:
        lock = make_lock(name)
        if not lock.try_acquire():
            raise UsageError(
                f"a process is running on this database (it holds the {name} lock): stop "
                "every prep-es process using it, then rotate"
            )
        lock.release()


def _path(path: object) -> str | None:
    return None if path is None else str(path)
