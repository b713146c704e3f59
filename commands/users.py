"""User commands: registration, admin-made users, role and active changes, a user's
password change and logout (all but a reactivation revoke tokens: see
``User.check_acts_as``), rehashed passwords."""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aggregates.account import Account
from aggregates.errors import IdempotencyKeyReused, PermissionDenied
from aggregates.user import EmailClaim, User, check_password, normalize_email
from commands.clock import Clock
from commands.context import CommandContext, require_role
from commands.processor import CommandProcessor, Executed
from commands.store import CommandStore
from commands.unit_of_work import UnitOfWork


class PasswordHashing(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...


class RegisterUser(BaseModel):
    """A customer or host signs up."""

    model_config = ConfigDict(frozen=True)

    email: str
    password: str
    full_name: str
    role: Literal["customer", "host"]


class CreateUser(BaseModel):
    """An operator creates a user of any role (CLI, admin bootstrap)."""

    model_config = ConfigDict(frozen=True)

    email: str
    password: str
    full_name: str
    role: str


class UpdateUser(BaseModel):
    """An admin changes a user's role or active flag."""

    model_config = ConfigDict(frozen=True)

    user_id: UUID
    role: str | None = None
    active: bool | None = None


class ChangePassword(BaseModel):
    """A signed-in user replaces their password, proving they know the current one."""

    model_config = ConfigDict(frozen=True)

    current_password: str
    new_password: str


class LogOut(BaseModel):
    """A signed-in user ends the session of the token they sent."""

    model_config = ConfigDict(frozen=True)

    token_id: str
    issued_at_us: int
    expires_at_s: int


class RecordPasswordRehash(BaseModel):
    """A login found the user's password hashed with older parameters and hashed it
    again: store the new hash, if ``replaced_hash`` is still the user's."""

    model_config = ConfigDict(frozen=True)

    user_id: UUID
    replaced_hash: str
    password_hash: str


class UserState(BaseModel):
    PERSONAL_SUBJECTS: ClassVar[tuple[str, ...]] = ("id",)
    """Whose personal data this holds: see ``commands.processor``."""

    id: UUID
    email: str
    full_name: str
    role: str
    active: bool
    account_id: UUID
    version: int

    @classmethod
    def of(cls, user: User) -> UserState:
        details = user.details()
        return cls(
            id=user.id,
            email=details.email,
            full_name=details.full_name,
            role=user.role,
            active=user.active,
            account_id=Account.create_id(owner_id=user.id),
            version=user.version,
        )


class CurrentPassword:
    """A current password a user entered again to prove it is them, checked against the
    write model's hash: the hash the next login checks. Kept across the runs of a
    command's ``decide`` (a refusal on a known copy is decided again on fresh state, a
    write conflict retried), which would otherwise each verify it again on the same few
    hashing threads. Wrong guesses are limited by the caller
    (``prep_es.services.auth.CurrentPasswordLimit``)."""

    def __init__(self, passwords: PasswordHashing, password: str) -> None:
        self._passwords = passwords
        self._password = password
        self._verified: dict[str, bool] = {}

    def check(self, password_hash: str) -> None:
        """``PermissionDenied`` (``wrong_password``) unless it is the password hashed."""
        if password_hash not in self._verified:
            self._verified[password_hash] = self._passwords.verify(password_hash, self._password)
        if not self._verified[password_hash]:
            raise PermissionDenied("the current password is wrong", code="wrong_password")


class UserCommands:
    def __init__(
        self,
        processor: CommandProcessor,
        passwords: PasswordHashing,
        clock: Clock,
        store: CommandStore,
    ) -> None:
        self._store = store
        self._processor = processor
        self._passwords = passwords
        self._clock = clock

    def register_user(self, command: RegisterUser, context: CommandContext) -> Executed[UserState]:
        return self._create("register_user", command, context)

    def create_user(self, command: CreateUser, context: CommandContext) -> Executed[UserState]:
        """No actor check: only operators with database access (CLI) reach this."""
        return self._create("create_user", command, context)

    def _create(
        self, command_name: str, command: RegisterUser | CreateUser, context: CommandContext
    ) -> Executed[UserState]:
        check_password(command.password, email=command.email, full_name=command.full_name)
        normalized = normalize_email(command.email)
        password_hash = self._passwords.hash(command.password)

        digest = self._store.email_digest(normalized)

        def decide(unit: UnitOfWork) -> UserState:
            claim = unit.find(EmailClaim, EmailClaim.create_id(email_digest=digest))
            if claim is not None:
                claim.check_free(normalized)
            user = User.register(
                email=normalized,
                full_name=command.full_name,
                role=command.role,
                password_hash=password_hash,
            )
            holder = self._store.keyed_digest(EmailClaim.holder_message(user.id))
            if claim is None:
                claim = EmailClaim(email_digest=digest, holder=holder)
            else:
                claim.reclaim(holder, normalized)
            unit.add(user, claim, Account(owner_id=user.id))
            return UserState.of(user)

        def check_same_password(unit: UnitOfWork, registered: UserState) -> None:
            # The request hash leaves the password out (it is stored): a retry gets the
            # user only with the password they were registered with.
            user = unit.find(User, registered.id)
            if (
                user is None
                or user.erased
                or not self._passwords.verify(user.details().password_hash, command.password)
            ):
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")

        return self._processor.execute(
            command_name,
            context,
            # Hashed as registered: a retry spelling the email in another case (or
            # fullwidth) is the same request, as it registers the same user.
            command.model_copy(update={"email": normalized}),
            UserState,
            decide,
            # Whoever registers an email owns the keys sent with it: another client's
            # key under another email is another key.
            anonymous_scope=str(EmailClaim.create_id(email_digest=digest)),
            check_replay=check_same_password,
        )

    def update_user(self, command: UpdateUser, context: CommandContext) -> Executed[UserState]:
        admin = require_role(context, "admin")
        demotes = command.active is False or command.role not in (None, "admin")
        if command.user_id == admin.user_id and demotes:
            # Else the last admin could lock everyone out: the bootstrap admin is only
            # created when absent.
            raise PermissionDenied(
                "admins cannot deactivate or demote their own account; another admin can"
            )

        def decide(unit: UnitOfWork) -> UserState:
            user = unit.get(User, command.user_id, not_found_code="user_not_found")
            user.check_not_erased()
            if command.role is not None:
                user.change_role(command.role, at=self._clock())
            if command.active is not None:
                user.set_active(command.active, at=self._clock())
            return UserState.of(user)

        return self._processor.execute("update_user", context, command, UserState, decide)

    def change_password(
        self, command: ChangePassword, context: CommandContext
    ) -> Executed[UserState]:
        """Every token of the user issued until now stops working (this one too: the
        client signs in again with the new password). The current password is checked
        before the new one is hashed, so a wrong guess costs one hashing turn, not two;
        wrong guesses are limited by the caller (``prep_es.services.auth.CurrentPasswordLimit``)."""
        actor = context.actor
        if actor is None:
            raise PermissionDenied("changing a password needs a signed-in user")
        check_password(command.new_password, field="new_password")
        current = CurrentPassword(self._passwords, command.current_password)
        new_hashes: list[str] = []  # hashed once, whatever the attempts of ``decide``

        def decide(unit: UnitOfWork) -> UserState:
            user = unit.get(User, actor.user_id, not_found_code="user_not_found")
            details = user.details()
            current.check(details.password_hash)
            # Again with what the user is known by, which only the write model holds.
            check_password(
                command.new_password,
                email=details.email,
                full_name=details.full_name,
                field="new_password",
            )
            if not new_hashes:
                new_hashes.append(self._passwords.hash(command.new_password))
            user.change_password(new_hashes[0], at=self._clock())
            return UserState.of(user)

        return self._processor.execute("change_password", context, command, UserState, decide)

    def log_out(self, command: LogOut, context: CommandContext) -> Executed[UserState]:
        """The token stops working; the user's other tokens do not."""
        actor = context.actor
        if actor is None:
            raise PermissionDenied("logging out needs a signed-in user")

        def decide(unit: UnitOfWork) -> UserState:
            user = unit.get(User, actor.user_id, not_found_code="user_not_found")
            user.revoke_token(
                command.token_id,
                issued_at_us=command.issued_at_us,
                expires_at_s=command.expires_at_s,
                at=self._clock(),
            )
            return UserState.of(user)

        return self._processor.execute("log_out", context, command, UserState, decide)

    def record_password_rehash(
        self, command: RecordPasswordRehash, context: CommandContext
    ) -> Executed[UserState]:
        """No actor check: only the login, which has just checked the password, sends it."""

        def decide(unit: UnitOfWork) -> UserState:
            user = unit.get(User, command.user_id, not_found_code="user_not_found")
            user.rehash_password(command.replaced_hash, command.password_hash)
            return UserState.of(user)

        return self._processor.execute(
            "record_password_rehash", context, command, UserState, decide
        )
