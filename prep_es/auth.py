"""Authentication: JWT access tokens, password logins and their rate limit.

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
    LoginRateLimited    too many failed logins for one email from one client (HTTP 429)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Final, Protocol
from uuid import UUID, uuid4

import jwt
import redis
from pydantic import BaseModel, Field, StrictInt, ValidationError

from aggregates.user import ROLES
from prep_es.settings import Settings, SqliteLocation
from queries.users import UserQueries

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
LOGIN_WINDOW_S: Final = 60
LOGIN_LIMITER_KEYS_MAX: Final = 100_000
"""Emails × clients remembered per process; the oldest windows go first beyond it."""
REDIS_TIMEOUT_S: Final = 0.25
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


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


class LoginRateLimited(Exception):
    """Too many failed logins for one email from one client; try after
    ``retry_after_s`` seconds."""

    code: ClassVar[str] = "too_many_login_attempts"

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = max(1, retry_after_s)
        self.detail = f"too many failed logins; try again in {self.retry_after_s} s"
        super().__init__(self.detail)


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
    """The secret in ``path``, created atomically if absent: concurrent workers all end
    up with the one that was linked first."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{uuid4().hex}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(DEV_SECRET_BYTES))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    secret = path.read_text().strip()
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
        issued_at_us = microseconds(self._clock())
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


def microseconds(moment: datetime) -> int:
    """``moment`` in whole microseconds since the epoch (exact: no float rounding)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


# --- login rate limit ------------------------------------------------------------------


class LoginLimiter(ABC):
    """Counts failed logins per key (email and client) in windows of
    :data:`LOGIN_WINDOW_S` seconds opened by a key's first failure."""

    def __init__(self, failures_max: int) -> None:
        assert failures_max >= 1
        self.failures_max = failures_max

    @abstractmethod
    def blocked_for(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or ``None`` if it may now."""

    @abstractmethod
    def record_failure(self, key: str) -> None: ...

    @abstractmethod
    def reset(self, key: str) -> None:
        """A successful login clears the key's failures."""


def login_key(email: str, client: str) -> str:
    """Emails are case-insensitive; the key is hashed so no address is stored as is."""
    material = f"{email.strip().lower()}\x00{client}".encode()
    return hashlib.sha256(material).hexdigest()


class MemoryLoginLimiter(LoginLimiter):
    """Per process, bounded."""

    def __init__(
        self,
        failures_max: int,
        *,
        keys_max: int = LOGIN_LIMITER_KEYS_MAX,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(failures_max)
        self._keys_max = keys_max
        self._monotonic = monotonic
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked_for(self, key: str) -> int | None:
        now = self._monotonic()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return None
            ends_at, failures = window
            if ends_at <= now:
                del self._windows[key]
                return None
            if failures < self.failures_max:
                return None
            return max(1, int(ends_at - now + 0.999))

    def record_failure(self, key: str) -> None:
        now = self._monotonic()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                self._windows[key] = (now + LOGIN_WINDOW_S, 1)
                self._windows.move_to_end(key)
            else:
                self._windows[key] = (window[0], window[1] + 1)
            while len(self._windows) > self._keys_max:
                self._windows.popitem(last=False)

    def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)


class RedisLoginLimiter(LoginLimiter):
    """Shared by every process through Redis. While Redis cannot be reached, counts
    per process instead (logged once per outage)."""

    KEY_PREFIX: ClassVar[str] = "prep_es:login_failures:"

    def __init__(self, url: str, failures_max: int) -> None:
        super().__init__(failures_max)
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._fallback = MemoryLoginLimiter(failures_max)
        self._failing = False
        self._lock = threading.Lock()

    def _failed(self, error: redis.RedisError) -> None:
        with self._lock:
            if not self._failing:
                self._failing = True
                logger.warning(
                    "login rate limit: Redis unavailable, counting per process: %s", error
                )

    def _succeeded(self) -> None:
        if self._failing:
            with self._lock:
                if self._failing:
                    self._failing = False
                    logger.info("login rate limit: Redis available again")

    def blocked_for(self, key: str) -> int | None:
        name = self.KEY_PREFIX + key
        try:
            pipeline = self._client.pipeline()
            pipeline.get(name)
            pipeline.ttl(name)
            failures, ttl_s = pipeline.execute()
        except redis.RedisError as error:
            self._failed(error)
            return self._fallback.blocked_for(key)
        self._succeeded()
        if failures is None or int(failures) < self.failures_max:
            return self._fallback.blocked_for(key)
        return max(1, int(ttl_s)) if int(ttl_s) > 0 else LOGIN_WINDOW_S

    def record_failure(self, key: str) -> None:
        name = self.KEY_PREFIX + key
        try:
            pipeline = self._client.pipeline()
            pipeline.incr(name)
            pipeline.expire(name, LOGIN_WINDOW_S, nx=True)
            pipeline.execute()
        except redis.RedisError as error:
            self._failed(error)
            self._fallback.record_failure(key)
            return
        self._succeeded()

    def reset(self, key: str) -> None:
        self._fallback.reset(key)
        try:
            self._client.delete(self.KEY_PREFIX + key)
        except redis.RedisError as error:
            self._failed(error)
            return
        self._succeeded()

    def close(self) -> None:
        self._client.close()


def open_login_limiter(settings: Settings) -> LoginLimiter:
    if settings.redis_url is None:
        return MemoryLoginLimiter(settings.login_failures_max)
    return RedisLoginLimiter(settings.redis_url, settings.login_failures_max)


# --- login -----------------------------------------------------------------------------


class PasswordVerifying(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...


@dataclass
class Login:
    """Checks an email and password against the users read model and issues a token.
    An email the read model does not know may have just been registered: the login then
    waits for the read model to catch up with the event store (``catch_up_users``) and
    looks again, so a client can log in right after registering."""

    users: UserQueries
    passwords: PasswordVerifying
    tokens: TokenService
    limiter: LoginLimiter
    catch_up_users: Callable[[], None]
    _unknown_user_hash: str | None = None

    def log_in(self, email: str, password: str, *, client: str) -> AccessToken:
        key = login_key(email, client)
        retry_after_s = self.limiter.blocked_for(key)
        if retry_after_s is not None:
            raise LoginRateLimited(retry_after_s)
        credentials = self.users.credentials_by_email(email)
        if credentials is None:
            self.catch_up_users()
            credentials = self.users.credentials_by_email(email)
        # An unknown email costs a hash check too, so timing does not tell emails apart.
        password_hash = self._dummy_hash() if credentials is None else credentials.password_hash
        if not self.passwords.verify(password_hash, password) or credentials is None:
            self.limiter.record_failure(key)
            raise Unauthenticated("wrong email or password", code="invalid_credentials")
        if not credentials.active:
            raise Unauthenticated("this user is deactivated", code="user_inactive")
        self.limiter.reset(key)
        return self.tokens.issue(credentials.id, credentials.role)

    def _dummy_hash(self) -> str:
        if self._unknown_user_hash is None:
            self._unknown_user_hash = self.passwords.hash(secrets.token_urlsafe(16))
        return self._unknown_user_hash
