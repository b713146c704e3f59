"""Whether a request's access token still admits its user, decided on the user as the
write model has them — for queries as for commands.

Commands check their actor inside the unit of work (``commands.processor._admit``);
queries read no aggregate, so authentication asks :class:`Admission` first. It looks
at this process's known copy of the user (``KnownAggregates``): a change this process
committed is there as soon as its command answers, and where a follower applies every
stored event to the copies (``prep_es.store.known_copies_follower``: PostgreSQL), so
is one committed by another process, a moment later. Only then is the copy trusted
without I/O; without a follower (SQLite, where other processes may share the file)
every request reads the user from the store — one read, as the users read model cost before.

A deactivation, a role change, a logout or a password change is thus seen by the next
request, not once a projector has caught up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from aggregates.base import Aggregate
from aggregates.user import User
from commands.context import Actor
from commands.store import CommandStore
from commands.unit_of_work import UnitOfWork
from prep_es.store.known_copies import KnownAggregates

TLooked = TypeVar("TLooked")


class Admission:
    """Checks actors against the write model's users. ``copies_followed``: whether a
    follower keeps this process's known copies current with every stored event."""

    def __init__(
        self, store: CommandStore, known: KnownAggregates, *, copies_followed: bool
    ) -> None:
        self._store = store
        self._known = known
        self._copies_followed = copies_followed

    def check_known(self, actor: Actor) -> bool:
        """Whether this process's copy of the user admits ``actor`` (``True``), or
        there is no copy to go by (``False``: :meth:`check` reads the user). A user who
        may no longer act is refused (``ActorNotAdmitted``). No I/O: the event loop may
        call it."""
        if not self._copies_followed:
            return False

        def admits(user: Aggregate) -> bool:
            if not isinstance(user, User):
                return False
            _check(user, actor)
            return True

        return self._known.inspect(actor.user_id, admits) is True

    def look_at(self, user_id: UUID, look: Callable[[User], TLooked]) -> TLooked | None:
        """``look`` at the user as the write model has them now (``None``: no such
        user): this process's followed copy, else read from the store."""

        def look_at_user(user: Aggregate) -> TLooked | None:
            return look(user) if isinstance(user, User) else None

        if self._copies_followed:
            looked = self._known.inspect(user_id, look_at_user)
            if looked is not None:
                return looked
        user = UnitOfWork(self._store, self._known, optimistic=False).find(User, user_id)
        return None if user is None else look(user)

    def check(self, actor: Actor) -> bool:
        """Whether the user, read from the store, admits ``actor``; ``False`` if there
        is no such user. The copy read is kept for the next request (and command)."""
        user = UnitOfWork(self._store, self._known, optimistic=False).find(User, actor.user_id)
        if user is None:
            return False
        _check(user, actor)
        return True


def _check(user: User, actor: Actor) -> None:
    user.check_acts_as(actor.role, token_id=actor.token_id, issued_at_us=actor.token_issued_at_us)
