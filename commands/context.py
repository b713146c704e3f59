"""Who issues a command and why: the actor, the request, the idempotency key."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from uuid import UUID, uuid4

from aggregates.base import EventMetadata, derived_id
from aggregates.errors import PermissionDenied

SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class Actor:
    """Who issues a command: a user with a role, or the system (the sweeper). A user
    acting through an access token names it (its ``jti`` and issue time), so that a
    token revoked meanwhile is refused too."""

    user_id: UUID
    role: str
    token_id: str | None = None
    token_issued_at_us: int | None = None


SYSTEM_ACTOR = Actor(user_id=derived_id("system-actor", "sweeper"), role=SYSTEM_ROLE)


@dataclass(frozen=True)
class CommandContext:
    """Why a command runs: the actor, the request it came from, and the client's
    idempotency key (also the correlation id of the events it causes)."""

    actor: Actor | None
    request_id: str = field(default_factory=lambda: uuid4().hex)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    """What ties this command's events to others' (by default the key, else the request)."""

    def metadata(self) -> EventMetadata:
        return EventMetadata(
            actor_id=None if self.actor is None else self.actor.user_id,
            actor_role=None if self.actor is None else self.actor.role,
            request_id=self.request_id,
            correlation_id=self.correlation_id or self.idempotency_key or self.request_id,
        )

    def follow_up(self) -> CommandContext:
        """The context of a command a command runs next for the same request (a payment
        submitted after its top-up was recorded): correlated with it, without its
        idempotency key, which names the first command's result alone."""
        return replace(
            self,
            idempotency_key=None,
            correlation_id=self.correlation_id or self.idempotency_key or self.request_id,
        )


def require_role(context: CommandContext, *roles: str) -> Actor:
    """The actor, if it has one of ``roles``; otherwise ``PermissionDenied``."""
    actor = context.actor
    if actor is None or actor.role not in roles:
        raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
    return actor
