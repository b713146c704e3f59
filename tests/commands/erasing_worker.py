"""A worker process that erases a user and dies (SIGKILL) once the erasure has
committed, before the user's data key is destroyed: what a crash between the two
leaves behind."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from typing import Any
from uuid import UUID

from commands.context import Actor, CommandContext
from commands.erasure import EraseMe
from prep_es.services.readside import open_read_side
from prep_es.store.settings import Settings
from tests.commands.erasure_leads import CaughtUpLeads
from tests.support import PASSWORD, MutableClock, open_test_runtime


def erase_and_die_before_the_key_goes(database_url: str, user_id: str, now: str) -> None:
    runtime = open_test_runtime(database_url, MutableClock(datetime.fromisoformat(now)))
    read_side = open_read_side(Settings(database_url=database_url))
    app: Any = runtime.app

    def die(*_: Any, **__: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    app.destroy_personal_data = die
    runtime.commands.erasure.erase_me(
        EraseMe(password=PASSWORD),
        CommandContext(actor=Actor(user_id=UUID(user_id), role="customer")),
        CaughtUpLeads(runtime.app, read_side),
    )
    raise AssertionError("the worker should have died before destroying the key")
