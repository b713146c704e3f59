"""Authentication: JWT access tokens, password logins and the rate limits on logins,
re-entered current passwords and registrations (counted by ``prep_es.services.attempt_limits``).

Tokens are HS256 JWTs (PyJWT) carrying ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` (the
user id), ``jti``, ``role`` and ``iat_us`` (``iat`` in microseconds: a token issued in
the same second as a password change is still told apart from the tokens it revoked).
Only the algorithms in :data:`ALGORITHMS` are accepted, so a token with ``alg: none``,
or signed with another algorithm under our secret used as a public key, is refused.
The times are integers checked against the service clock, the same clock that stamped
them: ``iat`` not in the future (beyond :data:`CLOCK_LEEWAY_S`), ``exp`` after it and
no more than the configured lifetime later, ``nbf`` (if a token has one) reached.

A token alone is never enough: each request also checks the user as the write model
has them (see ``api.deps`` and ``commands.admission``), so a deactivated user, one
whose role changed since the token was issued, a token logged out and every token
issued before a password change are refused at once.

    Unauthenticated     no token, a token we did not issue or no longer accept, wrong
                        credentials, or a user who may not sign in (HTTP 401)
    RateLimited         too many attempts in a minute (HTTP 429, ``Retry-After``)
      LoginRateLimited          failed logins for one email from one client address,
                                or for any email from one client address
      PasswordChangeRateLimited wrong current passwords (password and email changes,
                                erasing oneself) for one user, from any client
                                address
      RegistrationRateLimited   registrations from one client address
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Final, Protocol, TypeVar
from uuid import UUID, uuid4

import jwt
from pydantic import BaseModel, Field, StrictInt, ValidationError

from aggregates.errors import DomainError
from aggregates.user import ROLES, epoch_microseconds
from commands.context import CommandContext
from commands.processor import Executed
from prep_es.services.attempt_limits import (
    AttemptLimiter,
    KeyedHash,
    Quota,
    client_key,
    login_key,
    password_change_key,
)
from prep_es.services.passwords import PasswordHashingBusy
from prep_es.store.secret_files import read_or_create_secret_file
from prep_es.store.settings import Settings, SqliteLocation
from queries.users import UserCredentials, UserQueries

logger = logging.getLogger(__name__)

ALGORITHMS: Final = ("HS256",)
"""The only signing algorithms accepted; the first one signs."""
REQUIRED_CLAIMS: Final = ("iss", "aud", "exp", "iat", "sub", "jti", "role", "iat_us")
CLOCK_LEEWAY_S: Final = 30
"""How far ahead of the service clock a token's ``iat`` or ``nbf`` may be (another
process's clock may run a little ahead)."""
JTI_LENGTH_MAX: Final = 64
MICROSECONDS_PER_SECOND: Final = 1_000_000
DEV_SECRET_BYTES: Final = 64


class Unauthenticated(Exception):
    """The request does not prove who sent it. ``code`` says why:
    ``not_authenticated`` (no bearer token), ``invalid_token`` (malformed, forged,
    wrong issuer or audience, times out of bounds), ``token_expired``,
    ``token_not_yet_valid``, ``user_inactive``, ``role_changed`` (sign in again),
    ``token_revoked`` (logged out, or the password changed since),
    ``invalid_credentials`` (login)."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class RateLimited(Exception):
    """Too many attempts of one kind in a minute; try after ``retry_after_s`` seconds."""

    code: ClassVar[str]
    attempts: ClassVar[str]
    """What was attempted too often, for the message."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = max(1, retry_after_s)
        self.detail = f"too many {self.attempts}; try again in {self.retry_after_s} s"
        super().__init__(self.detail)


class LoginRateLimited(RateLimited):
    """Too many failed logins for one email from one client address, or for any email
    from one client address."""

    code: ClassVar[str] = "too_many_login_attempts"
    attempts: ClassVar[str] = "failed logins"


class PasswordChangeRateLimited(RateLimited):
    """Too many wrong current passwords for one user (see :class:`CurrentPasswordLimit`)."""

    code: ClassVar[str] = "too_many_password_attempts"
    attempts: ClassVar[str] = "wrong current passwords"


class RegistrationRateLimited(RateLimited):
    """Too many registrations from one client address."""

    code: ClassVar[str] = "too_many_registrations"
    attempts: ClassVar[str] = "registrations from this address"


# --- tokens ----------------------------------------------------------------------------


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    """Seconds the token stays valid."""


class TokenClaims(BaseModel):
    """The claims of a token we verified. Times are whole seconds since the epoch
    (``iat_us``: microseconds), never strings or fractions."""

    sub: UUID
    role: str
    jti: str = Field(min_length=1, max_length=JTI_LENGTH_MAX)
    iat: StrictInt = Field(ge=0)
    iat_us: StrictInt = Field(ge=0)
    exp: StrictInt = Field(ge=0)
    nbf: StrictInt | None = Field(default=None, ge=0)


def jwt_secret(settings: Settings) -> str:
    """The signing secret: ``PREP_ES_JWT_SECRET`` (required on PostgreSQL), else — in
    embedded mode — a development secret generated once and kept beside the SQLite
    database file (per process for an in-memory database)."""
    secret = settings.require_production_secret()
    if secret is not None:
        return secret.get_secret_value()
    location = settings.database
    assert isinstance(location, SqliteLocation)
    if location.is_memory:
        logger.warning(
            "PREP_ES_JWT_SECRET is not set: tokens are signed with a secret that lives "
            "only as long as this process"
        )
        return secrets.token_urlsafe(DEV_SECRET_BYTES)
    path = Path(f"{location.path}.jwt-secret")
    logger.warning(
        "PREP_ES_JWT_SECRET is not set: using the development secret kept in %s "
        "(set PREP_ES_JWT_SECRET for any shared deployment)",
        path,
    )
    return _read_or_create_secret(path)


def _read_or_create_secret(path: Path) -> str:
    """The secret in ``path``, made if absent (see ``read_or_create_secret_file``)."""
    secret = read_or_create_secret_file(
        path, lambda: secrets.token_urlsafe(DEV_SECRET_BYTES)
    ).strip()
    assert secret, f"{path} is empty"
    return secret


VERIFIED_TOKENS_MAX: Final = 4096
"""Tokens whose signature and claims this process has checked, remembered (see
:meth:`TokenService.verify`)."""


class TokenService:
    """Issues and verifies access tokens."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], datetime],
    ) -> None:
        assert secret and ttl_s > 0
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        self._clock = clock
        # Thread-safe, and a refused token is not remembered (exceptions are not cached).
        self._decode = functools.lru_cache(maxsize=VERIFIED_TOKENS_MAX)(self._decode_anew)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], datetime]) -> TokenService:
        return cls(
            jwt_secret(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_s=settings.access_token_ttl,
            clock=clock,
        )

    def issue(self, user_id: UUID, role: str) -> AccessToken:
        issued_at_us = epoch_microseconds(self._clock())
        issued_at = issued_at_us // MICROSECONDS_PER_SECOND
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "role": role,
            "jti": uuid4().hex,
            "iat": issued_at,
            "iat_us": issued_at_us,
            "exp": issued_at + self._ttl_s,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHMS[0])
        return AccessToken(access_token=token, expires_in=self._ttl_s)

    def derived_key(self, purpose: str) -> bytes:
        """A key of its own for ``purpose`` (the console's form tokens), derived from the
        signing secret: it changes when the secret does, and reveals nothing of it."""
        return hmac.new(self._secret.encode(), purpose.encode(), hashlib.sha256).digest()

    def verify(self, token: str) -> TokenClaims:
        """The claims of ``token`` if we issued it and it is still valid; else
        :class:`Unauthenticated`. A token whose signature and claims were checked is
        remembered (the last :data:`VERIFIED_TOKENS_MAX`, by its exact text), so a
        client's next request only has its expiry checked: decoding and checking the
        signature cost more than the rest of authentication (PyJWT checks the
        alphabet of every character in Python). CPU only: the event loop may call it."""
        claims = self._decode(token)
        now = self._clock().timestamp()
        if claims.exp <= now:
            raise Unauthenticated("the access token has expired", code="token_expired")
        if claims.iat > now + CLOCK_LEEWAY_S:
            raise Unauthenticated("the access token is not valid", code="invalid_token")
        if claims.nbf is not None and claims.nbf > now + CLOCK_LEEWAY_S:
            raise Unauthenticated("the access token is not valid yet", code="token_not_yet_valid")
        return claims

    def _decode_anew(self, token: str) -> TokenClaims:
        """The claims of ``token`` if it is ours: signature, algorithm, issuer, audience
        and the required claims checked, and the times consistent with each other
        (not yet with the clock: see :meth:`verify`)."""
        try:
            decoded = jwt.decode(
                token,
                self._secret,
                algorithms=list(ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    # Checked by ``verify`` against the service clock, which stamped them.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            claims = TokenClaims.model_validate(decoded)
        except (jwt.InvalidTokenError, ValidationError):
            raise Unauthenticated("the access token is not valid", code="invalid_token") from None
        if (
            claims.role not in ROLES
            or claims.iat_us // MICROSECONDS_PER_SECOND != claims.iat
            or not claims.iat < claims.exp <= claims.iat + self._ttl_s
        ):
            raise Unauthenticated("the access token is not valid", code="invalid_token")
        return claims


# --- registration rate limit -----------------------------------------------------------


@dataclass(frozen=True)
class RegistrationLimit:
    """At most ``per_client_max`` registrations a window from one client address:
    each hashes a password, which costs memory and CPU."""

    limiter: AttemptLimiter
    per_client_max: int
    keyed_hash: KeyedHash

    def admit(self, client: str) -> None:
        """Count a registration from ``client``, or :class:`RegistrationRateLimited`."""
        quota = Quota(client_key("register", client, self.keyed_hash), self.per_client_max)
        retry_after_s = self.limiter.reserve((quota,))
        if retry_after_s is not None:
            raise RegistrationRateLimited(retry_after_s)


# --- login -----------------------------------------------------------------------------


class PasswordVerifying(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...


class RecordRehash(Protocol):
    def __call__(self, credentials: UserCredentials, password_hash: str) -> None:
        """Store ``password_hash``, the same password hashed with today's parameters,
        in place of ``credentials.password_hash`` (through the write side)."""


@dataclass
class Login:
    """Checks an email and password against the users read model and issues a token.
    An email the read model does not know may have just been registered: the login then
    waits for the read model to catch up with the event store (``catch_up_users``) and
    looks again, so a client can log in right after registering.

    Each attempt is counted before its password is checked, under two quotas: the
    email from this client (``failures_max``) and this client whatever the email
    (``client_failures_max``, so spraying emails is limited too). A successful login
    clears the first and gives its attempt back to the second. A hash made with older
    parameters is replaced on a successful login (``record_rehash``). The quotas' keys
    are keyed hashes (``keyed_hash``): no email or address is kept as is."""

    users: UserQueries
    passwords: PasswordVerifying
    tokens: TokenService
    limiter: AttemptLimiter
    failures_max: int
    client_failures_max: int
    catch_up_users: Callable[[], None]
    record_rehash: RecordRehash
    keyed_hash: KeyedHash
    _unknown_user_hash: str | None = None

    def log_in(self, email: str, password: str, *, client: str) -> AccessToken:
        of_email = Quota(login_key(email, client, self.keyed_hash), self.failures_max)
        of_client = Quota(client_key("login", client, self.keyed_hash), self.client_failures_max)
        retry_after_s = self.limiter.reserve((of_client, of_email))
        if retry_after_s is not None:
            raise LoginRateLimited(retry_after_s)
        credentials = self.users.credentials_by_email(email)
        if credentials is None:
            self.catch_up_users()
            credentials = self.users.credentials_by_email(email)
        # An unknown email costs a hash check too, so timing does not tell emails apart.
        password_hash = self._dummy_hash() if credentials is None else credentials.password_hash
        try:
            verified = self.passwords.verify(password_hash, password)
        except PasswordHashingBusy:
            # Nothing was checked: not a guess.
            self.limiter.refund(of_email.key)
            self.limiter.refund(of_client.key)
            raise
        if not verified or credentials is None:
            raise Unauthenticated("wrong email or password", code="invalid_credentials")
        self.limiter.reset(of_email.key)
        self.limiter.refund(of_client.key)
        if not credentials.active:
            raise Unauthenticated("this user is deactivated", code="user_inactive")
        if self.passwords.needs_rehash(credentials.password_hash):
            self._rehash(credentials, password)
        return self.tokens.issue(credentials.id, credentials.role)

    def _rehash(self, credentials: UserCredentials, password: str) -> None:
        """Best effort: the login succeeds even if the new hash cannot be stored now;
        the next one tries again."""
        try:
            self.record_rehash(credentials, self.passwords.hash(password))
        except (PasswordHashingBusy, DomainError) as error:
            logger.info("password rehash of user %s postponed: %s", credentials.id, error)

    def _dummy_hash(self) -> str:
        if self._unknown_user_hash is None:
            self._unknown_user_hash = self.passwords.hash(secrets.token_urlsafe(16))
        return self._unknown_user_hash


# --- current passwords ----------------------------------------------------------------

CommandT = TypeVar("CommandT")
ResultT = TypeVar("ResultT", bound=BaseModel)
WRONG_PASSWORD: Final = "wrong_password"
"""The code of the refusal that counts as a wrong guess."""


@dataclass(frozen=True)
class CurrentPasswordLimit:
    """Wrong current passwords, wherever a signed-in user enters theirs again (a
    password change, an email change, erasing themselves), limited like failed logins:
    ``failures_max`` a window per user, every such command counted together. A token
    alone must not make the password guessable without end, and each guess holds a
    hashing turn.

    Each attempt is counted before its password is checked (see :class:`AttemptLimiter`);
    once the limit is spent, :class:`PasswordChangeRateLimited` and nothing is checked.
    An attempt refused for anything but a wrong password (hashing busy, a new password
    or email refused by the rules, an erasure blocked) is given back; so is one that
    replayed an earlier answer; a command that went through clears the count."""

    limiter: AttemptLimiter
    failures_max: int

    def run(
        self,
        handler: Callable[[CommandT, CommandContext], Executed[ResultT]],
        command: CommandT,
        context: CommandContext,
    ) -> Executed[ResultT]:
        if context.actor is None:
            return handler(command, context)  # refuses it
        key = password_change_key(context.actor.user_id)
        retry_after_s = self.limiter.reserve((Quota(key, self.failures_max),))
        if retry_after_s is not None:
            raise PasswordChangeRateLimited(retry_after_s)
        try:
            executed = handler(command, context)
        except DomainError as error:
            if error.code != WRONG_PASSWORD:
                self.limiter.refund(key)
            raise
        except PasswordHashingBusy:
            self.limiter.refund(key)
            raise
        if executed.replayed:
            # An earlier answer under the same Idempotency-Key: nothing was checked now.
            self.limiter.refund(key)
        else:
            self.limiter.reset(key)
        return executed
