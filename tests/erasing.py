"""Erasing a user in tests, through the domain as the erase command does: the user
records ``UserErased``, their email's claim is released, both are saved in one
transaction, then their data key is destroyed."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from aggregates.user import EmailClaim, User
from prep_es.store.eventstore import PrepApplication


def erase_user(
    app: PrepApplication,
    user_id: UUID,
    *,
    at: datetime,
    reason: str = "asked to be forgotten",
    forced: bool = False,
) -> int:
    """Erase ``user_id``; the event store's position after it."""
    user = app.repository.get(user_id)
    assert isinstance(user, User)
    email = user.details().email
    claim = app.repository.get(EmailClaim.create_id(email_digest=app.email_digest(email)))
    assert isinstance(claim, EmailClaim)
    user.erase(reason=reason, forced=forced, at=at)
    claim.release(app.keyed_digest(EmailClaim.holder_message(user_id)))
    app.save(user, claim)
    app.destroy_personal_data(user_id)
    return app.position()
