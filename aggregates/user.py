"""Users and the email index that keeps emails unique."""

from __future__ import annotations

import unicodedata
from typing import Any, ClassVar, Final
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.common_passwords import common_passwords
from aggregates.errors import ActorNotAdmitted, InvalidRequest

ROLES = ("customer", "host", "admin", "analyst")
SELF_REGISTRATION_ROLES = ("customer", "host")
PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 1024
EMAIL_LENGTH_MAX = 254
FULL_NAME_LENGTH_MAX = 200


def fold_email(email: str) -> str:
    """The form emails are compared in: NFKC (a fullwidth ``ａｎａ`` is ``ana``, as are
    other compatibility look-alikes), without surrounding whitespace, lower case. Lookups
    of an email (login) fold it the same way."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def normalize_email(email: str) -> str:
    """The email a user is registered under, checked by ``email-validator`` (syntax
    only: no DNS lookup) after folding (see :func:`fold_email`); the email index keys on
    it, so emails are unique case-insensitively and look-alikes collide."""
    folded = fold_email(email)
    if len(folded) > EMAIL_LENGTH_MAX:
        raise InvalidRequest("email is too long", code="invalid_email", field="email")
    try:
        checked = validate_email(folded, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidRequest(
            f"not an email address: {error}", code="invalid_email", field="email"
        ) from None
    return checked.normalized.lower()


PREDICTABLE_RUNS: Final = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm")
"""Character orders a password must not merely run along (either way, wrapping round):
``123456789012``, ``zyxwvutsrqpo``, ``qwertyuiopas``."""


def check_password(password: str) -> None:
    """NIST SP 800-63B: at least :data:`PASSWORD_LENGTH_MIN` characters, not counting
    whitespace at either end; not a listed common password, and not a repetition or a
    run of characters (compared after NFKC and lower-casing, so ``ＰＡＳＳＷＯＲＤ1234`` is
    ``password1234``)."""
    if len(password) > PASSWORD_LENGTH_MAX:
        raise InvalidRequest("password is too long", code="password_too_long", field="password")
    folded = unicodedata.normalize("NFKC", password).strip().lower()
    if len(folded) < PASSWORD_LENGTH_MIN:
        raise InvalidRequest(
            f"passwords have at least {PASSWORD_LENGTH_MIN} characters, not counting "
            "whitespace at either end",
            code="password_too_short",
            field="password",
        )
    if folded in common_passwords(PASSWORD_LENGTH_MIN):
        raise InvalidRequest(
            "this password is in a list of commonly used passwords; choose another",
            code="password_too_common",
            field="password",
        )
    if _repeats_a_part(folded) or _runs_along(folded):
        raise InvalidRequest(
            "this password only repeats characters or runs along the keyboard, the "
            "alphabet or the digits; choose another",
            code="password_too_predictable",
            field="password",
        )


def _repeats_a_part(text: str) -> bool:
    """``aaaaaaaaaaaa``, ``abcabcabcabc``: ``text`` is a shorter part said again."""
    return text in (text + text)[1:-1]


def _runs_along(text: str) -> bool:
    for run in PREDICTABLE_RUNS:
        laps = run * (len(text) // len(run) + 2)
        if text in laps or text in laps[::-1]:
            return True
    return False


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest(
            f"role must be one of {', '.join(ROLES)}, not {role!r}", code="invalid_role"
        )


class User(Aggregate):
    """A person with one role. Deactivated users are refused at once."""

    TOPIC: ClassVar[str] = "User"

    class Event(Aggregate.Event):
        pass

    class UserRegistered(Event, AggregateCreated):
        """v2 renamed ``name`` to ``full_name``; stored v1 events are upcast on read."""

        TOPIC: ClassVar[str] = "User.UserRegistered"
        class_version: ClassVar[int] = 2
        email: str
        full_name: str
        role: str
        password_hash: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["full_name"] = state.pop("name")

    class UserRoleChanged(Event):
        TOPIC: ClassVar[str] = "User.UserRoleChanged"
        role: str

    class UserDeactivated(Event):
        TOPIC: ClassVar[str] = "User.UserDeactivated"

    class UserReactivated(Event):
        TOPIC: ClassVar[str] = "User.UserReactivated"

    @event(UserRegistered)
    def __init__(self, email: str, full_name: str, role: str, password_hash: str) -> None:
        self.email = email
        self.full_name = full_name
        self.role = role
        self.password_hash = password_hash
        self.active = True

    @classmethod
    def register(cls, *, email: str, full_name: str, role: str, password_hash: str) -> User:
        check_role(role)
        full_name = full_name.strip()
        if not full_name or len(full_name) > FULL_NAME_LENGTH_MAX:
            raise InvalidRequest(
                f"full_name has 1 to {FULL_NAME_LENGTH_MAX} characters", code="invalid_full_name"
            )
        return cls(
            email=normalize_email(email),
            full_name=full_name,
            role=role,
            password_hash=password_hash,
        )

    def change_role(self, role: str) -> None:
        check_role(role)
        if role != self.role:
            self._role_changed(role=role)

    def set_active(self, active: bool) -> None:
        if active and not self.active:
            self._reactivated()
        elif not active and self.active:
            self._deactivated()

    @event(UserRoleChanged)
    def _role_changed(self, role: str) -> None:
        self.role = role

    @event(UserDeactivated)
    def _deactivated(self) -> None:
        self.active = False

    @event(UserReactivated)
    def _reactivated(self) -> None:
        self.active = True

    def check_acts_as(self, role: str) -> None:
        """That this user may act in ``role`` now: active, and still in that role."""
        if not self.active:
            raise ActorNotAdmitted("this user is deactivated", code="user_inactive")
        if self.role != role:
            raise ActorNotAdmitted(
                "this user's role changed since the token was issued; sign in again",
                code="role_changed",
            )


class EmailClaim(Aggregate):
    """One per normalized email, with a derived id: two registrations of one email
    write version 1 of the same aggregate, and the event store lets only one commit."""

    TOPIC: ClassVar[str] = "EmailClaim"

    class Event(Aggregate.Event):
        pass

    class EmailClaimed(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "EmailClaim.EmailClaimed"
        email: str
        user_id: UUID

    @staticmethod
    def create_id(email: str, **_: Any) -> UUID:
        return derived_id("email", email)

    @event(EmailClaimed)
    def __init__(self, email: str, user_id: UUID) -> None:
        self.email = email
        self.user_id = user_id
