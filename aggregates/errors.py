"""Domain errors: what a user asked for that the rules refuse.

Each error carries a stable machine ``code``; the HTTP layer maps the class to a
status in one table. Programmer errors are ``assert``-ed, never raised from here.

    DomainError
    ├── InvalidRequest            the request breaks a rule of shape or range (422)
    │   └── IdempotencyKeyReused  same key, different request
    ├── NotFound                  no such thing, or not visible to the actor (404)
    ├── PermissionDenied          the actor may not do this to this thing (403)
    ├── InsufficientFunds         not enough available money (402)
    └── StateConflict             the current state refuses the change (409)
        ├── BookingConflict       the slot overlaps another booking
        ├── KitchenNotBookable    not published / not compliant / outside hours
        ├── InvalidStateTransition
        ├── EmailTaken
        ├── ErasureBlocked        money or bookings of the person still open
        ├── HoldNotPending        a hold settled twice
        └── ConcurrencyConflict   retries exhausted against concurrent writers
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar


class DomainError(Exception):
    """Base of every refusal the domain can give. ``code`` is stable for clients."""

    default_code: ClassVar[str] = "domain_error"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.field = field
        """The request field the refusal is about, where it is about one."""


class InvalidRequest(DomainError):
    """The request breaks a rule of shape or range (dates, guests, amounts)."""

    default_code = "invalid_request"


class IdempotencyKeyReused(InvalidRequest):
    """An idempotency key came back with a different request."""

    default_code = "idempotency_key_reused"


class NotFound(DomainError):
    """The thing does not exist, or is not visible to the actor."""

    default_code = "not_found"


class PermissionDenied(DomainError):
    """The actor's role or ownership does not allow this."""

    default_code = "forbidden"


class ActorNotAdmitted(DomainError):
    """The user issuing the command may no longer act as they claim: deactivated
    (``user_inactive``), their role changed (``role_changed``), or the token they act
    with was revoked (``token_revoked``: logged out, or the password changed)."""

    default_code = "user_inactive"


class InsufficientFunds(DomainError):
    """The account's available balance does not cover the amount."""

    default_code = "insufficient_funds"


class StateConflict(DomainError):
    """The aggregate's current state refuses the change."""

    default_code = "state_conflict"


class BookingConflict(StateConflict):
    """The requested window overlaps a pending or confirmed booking of the kitchen."""

    default_code = "booking_conflict"


class KitchenNotBookable(StateConflict):
    """The kitchen cannot take this booking; ``code`` says why
    (``kitchen_not_bookable``, ``certificate_missing``, ``certificate_expired``,
    ``outside_operating_hours``)."""

    default_code = "kitchen_not_bookable"


class InvalidStateTransition(StateConflict):
    """The lifecycle does not allow this step from the current status."""

    default_code = "invalid_state_transition"


class EmailTaken(StateConflict):
    """Another user registered this email (case-insensitive)."""

    default_code = "email_taken"


class ErasureBlocked(StateConflict):
    """The person cannot be erased yet: money or bookings of theirs are still open.
    ``blockers`` describes each (at most a page of them; ``blockers_total`` counts all):
    see ``aggregates.erasure``."""

    default_code = "erasure_blocked"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        blockers: Sequence[Mapping[str, str]] = (),
        blockers_total: int | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        self.blockers = [dict(blocker) for blocker in blockers]
        self.blockers_total = len(self.blockers) if blockers_total is None else blockers_total


class HoldNotPending(StateConflict):
    """The hold was already captured or released, or never placed."""

    default_code = "hold_not_pending"


class ConcurrencyConflict(StateConflict):
    """Concurrent writers kept changing the same aggregates; retries ran out."""

    default_code = "concurrency_conflict"
