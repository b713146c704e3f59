"""A user corrects their profile (rectification): their full name, and their email once
they have entered their current password again.

An email stays unique, case-insensitively, through its claim (``EmailClaim``, its id
derived from the email's keyed digest): the new email's claim is made (or a released
one claimed again) and the old one released, in the same transaction as the change. Two
users taking one email at once — a registration and a change, or two changes — write
the same claim at the same version, and the event store lets one commit; the other is
decided again and refused (``email_taken``).

An email change revokes no token: a token names the user, not the email, and the user
has just proved who they are with their password. Sessions elsewhere carry on; a user
who fears someone else holds one changes their password, which revokes every token.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aggregates.errors import InvalidRequest, PermissionDenied
from aggregates.user import EmailClaim, User, normalize_email
from commands.context import CommandContext
from commands.processor import CommandProcessor, Executed
from commands.store import CommandStore
from commands.unit_of_work import UnitOfWork
from commands.users import CurrentPassword, PasswordHashing, UserState


class ChangeProfile(BaseModel):
    """A signed-in user changes what they are known by. Fields left ``None`` stay; an
    email change needs ``current_password``, and a current password sent is checked
    whatever changes."""

    model_config = ConfigDict(frozen=True)

    full_name: str | None = None
    email: str | None = None
    current_password: str | None = None


class ProfileCommands:
    def __init__(
        self, processor: CommandProcessor, passwords: PasswordHashing, store: CommandStore
    ) -> None:
        self._processor = processor
        self._passwords = passwords
        self._store = store

    def change_profile(
        self, command: ChangeProfile, context: CommandContext
    ) -> Executed[UserState]:
        """The user as changed. 422 for a full name or email the registration rules
        refuse, or an email change without ``current_password``; 403 ``wrong_password``;
        409 ``email_taken``. Wrong current passwords are limited by the caller
        (``prep_es.services.auth.CurrentPasswordLimit``)."""
        actor = context.actor
        if actor is None:
            raise PermissionDenied("changing a profile needs a signed-in user")
        email = None if command.email is None else normalize_email(command.email)
        email_digest = None if email is None else self._store.email_digest(email)
        current = (
            None
            if command.current_password is None
            else CurrentPassword(self._passwords, command.current_password)
        )

        def decide(unit: UnitOfWork) -> UserState:
            user = unit.get(User, actor.user_id, not_found_code="user_not_found")
            details = user.details()
            moves_email = email is not None and email != details.email
            if moves_email and current is None:
                raise InvalidRequest(
                    "changing the email needs the current password (current_password)",
                    code="current_password_required",
                    field="current_password",
                )
            if current is not None:
                current.check(details.password_hash)
            if command.full_name is not None:
                user.change_full_name(command.full_name)
            if moves_email:
                assert email is not None and email_digest is not None
                self._move_claim(unit, user.id, details.email, email, email_digest)
                user.change_email(email)
            return UserState.of(user)

        return self._processor.execute(
            "change_profile",
            context,
            # Hashed as changed: another spelling of the same email is the same request.
            command.model_copy(update={"email": email}),
            UserState,
            decide,
        )

    def _move_claim(
        self, unit: UnitOfWork, user_id: UUID, old_email: str, email: str, email_digest: str
    ) -> None:
        """Claim ``email`` for the user (``email_taken`` if someone holds it) and release
        the claim of ``old_email``."""
        holder = self._store.keyed_digest(EmailClaim.holder_message(user_id))
        claim = unit.find(EmailClaim, EmailClaim.create_id(email_digest=email_digest))
        if claim is None:
            unit.add(EmailClaim(email_digest=email_digest, holder=holder))
        else:
            claim.reclaim(holder, email)
        old_digest = self._store.email_digest(old_email)
        old_claim = unit.find(EmailClaim, EmailClaim.create_id(email_digest=old_digest))
        if old_claim is not None and old_claim.held_by(holder):
            old_claim.release(holder)
