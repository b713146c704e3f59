"""Configuration: one validated :class:`Settings`, read once from ``PREP_ES_*`` variables.

:func:`load_settings` is the only place that reads the process environment. Everything
else receives a :class:`Settings` (or a value taken from it) as an argument, so tests build
``Settings(database_url=...)`` directly and never depend on the shell they run in.

Validation errors name the environment variable and never echo the rejected value
(it may be a secret)::

    SettingsError: invalid configuration:
      PREP_ES_DATABASE_URL must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DBNAME
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit
from uuid import uuid4

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from prep_es.store.jurisdiction_rules import packaged_jurisdictions_path
from prep_es.store.personal_keys import KEY_BYTES, MasterKey, MasterKeyError

ENV_PREFIX: Final = "PREP_ES_"
JWT_SECRET_BYTES_MIN: Final = 32
JWT_SECRET_DISTINCT_CHARACTERS_MIN: Final = 8
JWT_SECRET_ENTROPY_BITS_MIN: Final = 96
"""Of the estimate :func:`secret_entropy_bits` makes: a random 32-byte secret in hex or
base64 scores well above it; repeated characters, words padded out or repeated, runs
along the alphabet or the digits, far below."""
_SECRET_CHARACTERS_ESTIMATED: Final = 256
"""The characters of a secret :func:`secret_entropy_bits` looks at: a random one of
this many holds well over a thousand bits, and the parse is quadratic."""
_REPEAT_LENGTH_MIN: Final = 3
"""The shortest stretch said again that :func:`new_element_count` skips: shorter
repeats happen by chance in a random secret."""
METRICS_TOKEN_LENGTH_MIN: Final = 16
STRIPE_TEST_KEY_PREFIXES: Final = ("sk_test_", "rk_test_")
"""Stripe's keys of test mode: no real money moves."""
POSTGRES_PORT_DEFAULT: Final = 5432
MASTER_KEY_HINT: Final = "openssl rand -base64 32"
"""How to make a master key with what any machine has."""
_MASTER_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")

_SQLITE_SCHEME: Final = "sqlite"
_POSTGRES_SCHEMES: Final = frozenset({"postgresql", "postgres"})
_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
_SQLITE_URL_HINT: Final = "sqlite:///PATH"
_POSTGRES_URL_HINT: Final = "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"


class SettingsError(ValueError):
    """The configuration is invalid; the message names each offending variable."""


@dataclass(frozen=True, slots=True)
class SqliteLocation:
    """An embedded SQLite database: a file path, or a named shared in-memory database
    (``sqlite:///:memory:``) that lives while one of its connections is open."""

    path: str

    @property
    def is_memory(self) -> bool:
        return "mode=memory" in self.path


@dataclass(frozen=True, slots=True)
class PostgresLocation:
    """A PostgreSQL database, as parsed from a ``postgresql://`` URL."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def conninfo(self) -> str:
        """A libpq connection string for psycopg (values quoted, password included)."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }
        return " ".join(f"{key}={_quote_libpq(value)}" for key, value in parts.items() if value)


DatabaseLocation = SqliteLocation | PostgresLocation


def _quote_libpq(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def parse_database_url(url: str) -> DatabaseLocation:
    """Parse ``sqlite:///PATH`` or ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME``.

    ``sqlite:///./prep_es.db`` is a relative path, ``sqlite:////var/lib/prep_es.db`` an
    absolute one. ``sqlite:///:memory:`` becomes a uniquely named shared in-memory
    database, because a plain ``:memory:`` database is private to one connection and the
    event store uses a pool of them.

    Raises :class:`ValueError` with a message fit for an operator.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == _SQLITE_SCHEME:
        if parts.netloc:
            msg = f"must be {_SQLITE_URL_HINT} (three slashes, no host)"
            raise ValueError(msg)
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            msg = f"must be {_SQLITE_URL_HINT}: the file path is missing"
            raise ValueError(msg)
        if path == ":memory:":
            path = f"file:prep_es_{uuid4().hex}?mode=memory&cache=shared"
        return SqliteLocation(path=path)
    if scheme in _POSTGRES_SCHEMES:
        if parts.query:
            msg = f"must be {_POSTGRES_URL_HINT} without query parameters"
            raise ValueError(msg)
        try:
            port = parts.port or POSTGRES_PORT_DEFAULT
        except ValueError:
            msg = f"must be {_POSTGRES_URL_HINT}: the port is not a number in 1..65535"
            raise ValueError(msg) from None
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not parts.username or not dbname or "/" in dbname:
            msg = f"must be {_POSTGRES_URL_HINT}: host, user and database name are required"
            raise ValueError(msg)
        return PostgresLocation(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            dbname=dbname,
        )
    msg = f"must be {_SQLITE_URL_HINT} or {_POSTGRES_URL_HINT}"
    raise ValueError(msg)


def split_proxies(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


class Settings(BaseSettings):
    """Every knob of Prep ES. Build it directly in tests; use :func:`load_settings` in
    entry points. Constructing it never reads the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    database_url: str = "sqlite:///./prep_es.db"
    read_database_url: str | None = None
    redis_url: str | None = None
    redis_namespace: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$"
    )
    """What every Redis key of this deployment starts with after ``prep_es:``; by
    default a digest of the event store's identity (see ``prep_es.services.redis_namespace``)."""
    redis_cool_down_s: float = Field(default=5.0, gt=0, le=300)
    """After Redis fails to answer, how long every Redis user of a process skips it."""
    jwt_secret: SecretStr | None = None
    master_key: SecretStr | None = None
    """The key that wraps every person's data key (32 bytes, base64): required on
    PostgreSQL; embedded mode keeps a generated one beside the database file."""
    previous_master_key: SecretStr | None = None
    """The master key being rotated out: data keys it still wraps stay readable until
    ``prep-es keys rotate`` has rewrapped them."""
    jwt_issuer: str = Field(default="prep-es", min_length=1)
    jwt_audience: str = Field(default="prep-es-api", min_length=1)
    access_token_ttl: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    """Seconds an access token stays valid."""
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    conflict_retries_max: int = Field(default=8, ge=0, le=100)
    commission_basis_points: int = Field(default=1000, ge=0, le=10_000)
    """Platform commission on each booking, in 1/100 of a percent (1000 = 10 %)."""
    jurisdictions_file: Path | None = None
    """Jurisdiction rules (TOML); ``None`` means the defaults packaged with Prep ES."""
    postgres_pool_size: int = Field(default=10, ge=1, le=1000)
    aggregate_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    """Aggregates kept in memory per process; 0 disables the cache."""
    api_role: Literal["write", "read", "all"] = "all"
    """Which routes the API serves: command routes, query routes, or both."""
    run_projectors: bool = True
    """Whether the API process also runs the projection runners and the sweeper."""
    min_position_wait_s: float = Field(default=5.0, gt=0, le=30)
    """How long a query with ``X-Prep-Min-Position`` waits before answering 503."""
    min_position_waiters_max: int = Field(default=16, ge=1, le=1000)
    """Read-your-writes waits at a time per process (each holds a worker thread);
    beyond it a query that would wait is answered 503 at once."""
    readiness_lag_events_max: int = Field(default=10_000, ge=0)
    """``/readyz`` fails while any projection is further behind than this."""
    login_failures_max: int = Field(default=5, ge=1, le=1000)
    """Failed logins per minute per email and client address before 429; also wrong
    current passwords per minute per user at a password change."""
    login_failures_per_client_max: int = Field(default=30, ge=1, le=100_000)
    """Failed logins per minute per client address, whatever the email, before 429."""
    registrations_per_client_max: int = Field(default=10, ge=1, le=100_000)
    """Registrations per minute per client address before 429."""
    password_hashes_concurrent_max: int = Field(default=2, ge=1, le=64)
    """Password hashes and checks running at once per process; each holds 19 MiB."""
    password_hash_wait_s: float = Field(default=1.0, ge=0, le=30)
    """How long a login or registration waits for a hashing turn before a 503."""
    trusted_proxies: str = ""
    """Comma-separated addresses or networks of the proxies whose ``X-Forwarded-For``
    and ``X-Forwarded-Proto`` are believed; empty: nobody's."""
    sweep_interval_s: float = Field(default=30.0, gt=0, le=3600)
    """How often the in-process sweeper runs the time-driven transitions."""
    metrics_token: SecretStr | None = Field(default=None, min_length=METRICS_TOKEN_LENGTH_MIN)
    """When set, ``/metrics`` answers only ``Authorization: Bearer <this token>``."""
    env: Literal["development", "production"] = "development"
    """``production`` refuses what is only for trying Prep ES out (the sandbox provider)."""
    payments_provider: Literal["sandbox", "stripe"] = "sandbox"
    """Who moves the money: the in-process ``sandbox`` (test mode) or ``stripe``."""
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    """The signing secret of the Stripe webhook endpoint (``whsec_...``)."""
    stripe_api_base: str | None = None
    """Another address for Stripe's API (a local emulator); Stripe's own by default."""
    webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    """How old a notification's signed timestamp may be before it is refused as a replay."""
    top_up_cents_min: int = Field(default=50, ge=1, le=100_000)
    """The least one top-up may be, in cents (0.50 by default: Stripe's least charge in USD)."""
    top_up_cents_max: int = Field(default=1_000_000, ge=100, le=100_000_000)
    """The most one top-up may be, in cents (10,000.00 by default)."""
    top_up_daily_cents_max: int = Field(default=2_500_000, ge=100, le=1_000_000_000)
    """The most a user may try to top up in one UTC day, in cents; declined tries count."""
    top_ups_daily_max: int = Field(default=20, ge=1, le=100_000)
    """How many top-ups a user may try in one UTC day; declined tries count."""
    payment_provider_calls_max: int = Field(default=8, ge=1, le=256)
    """Calls to the payment provider running at once per process (each holds a worker
    thread until the provider answers)."""
    payment_provider_wait_s: float = Field(default=1.0, ge=0, le=30)
    """How long a request waits for a turn to ask the provider before a 503."""
    sandbox_notification_delay_s: float = Field(default=0.05, ge=0, le=60)
    """The sandbox's wait before it sends a notification (more for a late duplicate)."""
    sandbox_settle_delay_s: float = Field(default=5.0, ge=0, le=3600)
    """How long the sandbox's delayed test payment method takes to succeed."""
    sandbox_unruly_deliveries: bool = True
    """Whether the sandbox sometimes sends a notification twice and out of order, as real
    providers do."""
    sandbox_seed: int | None = None
    """Seeds the sandbox's choices of duplicates and order, to replay a run exactly; by
    default they differ each time."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only explicit arguments: load_settings() is the one reader of the environment.
        return (init_settings,)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            parse_database_url(value)
        except ValueError as error:
            msg = f"{ENV_PREFIX}DATABASE_URL {error}"
            raise ValueError(msg) from None
        return value

    @field_validator("read_database_url")
    @classmethod
    def _check_read_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            location = parse_database_url(value)
        except ValueError as error:
            msg = f"{ENV_PREFIX}READ_DATABASE_URL {error}"
            raise ValueError(msg) from None
        if not isinstance(location, PostgresLocation):
            msg = f"{ENV_PREFIX}READ_DATABASE_URL must be {_POSTGRES_URL_HINT} (a read replica)"
            raise ValueError(msg)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme.lower() not in _REDIS_SCHEMES:
            msg = f"{ENV_PREFIX}REDIS_URL must be redis://HOST:PORT/DB, rediss://... or unix://PATH"
            raise ValueError(msg)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        for entry in split_proxies(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                msg = (
                    f"{ENV_PREFIX}TRUSTED_PROXIES must be comma-separated IP addresses or "
                    "networks (10.0.0.1, 10.0.0.0/8, ::1)"
                )
                raise ValueError(msg) from None
        return value

    @field_validator("jurisdictions_file")
    @classmethod
    def _check_jurisdictions_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            msg = f"{ENV_PREFIX}JURISDICTIONS_FILE must name an existing file"
            raise ValueError(msg)
        return value

    @field_validator("master_key", "previous_master_key")
    @classmethod
    def _check_master_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            reason = master_key_format_error(
                value.get_secret_value(), ENV_PREFIX + str(info.field_name).upper()
            )
            if reason is not None:
                raise ValueError(reason)
        return value

    @field_validator("admin_email")
    @classmethod
    def _check_admin_email(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value.strip("@"):
            msg = f"{ENV_PREFIX}ADMIN_EMAIL must be an email address"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_admin_pair(self) -> Settings:
        if (self.admin_email is None) != (self.admin_password is None):
            msg = "PREP_ES_ADMIN_EMAIL and PREP_ES_ADMIN_PASSWORD must be set together"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _check_payments_provider(self) -> Settings:
        if self.payments_provider == "sandbox" and self.env == "production":
            msg = (
                "PREP_ES_PAYMENTS_PROVIDER=sandbox moves no real money and is refused with "
                "PREP_ES_ENV=production"
            )
            raise ValueError(msg)
        if self.payments_provider == "stripe" and (
            self.stripe_secret_key is None or self.stripe_webhook_secret is None
        ):
            msg = (
                "PREP_ES_PAYMENTS_PROVIDER=stripe needs PREP_ES_STRIPE_SECRET_KEY and "
                "PREP_ES_STRIPE_WEBHOOK_SECRET"
            )
            raise ValueError(msg)
        if not self.top_up_cents_min <= self.top_up_cents_max <= self.top_up_daily_cents_max:
            msg = (
                "PREP_ES_TOP_UP_CENTS_MAX must be at least PREP_ES_TOP_UP_CENTS_MIN and at "
                "most PREP_ES_TOP_UP_DAILY_CENTS_MAX"
            )
            raise ValueError(msg)
        return self

    @property
    def database(self) -> DatabaseLocation:
        """Where the event store and the read models live."""
        return parse_database_url(self.database_url)

    @property
    def read_database(self) -> DatabaseLocation:
        """Where queries read read models: the replica if one is set, else the primary."""
        if self.read_database_url is None:
            return self.database
        return parse_database_url(self.read_database_url)

    @property
    def trusted_proxy_list(self) -> list[str]:
        """The trusted proxies, one address or network each."""
        return split_proxies(self.trusted_proxies)

    @property
    def payments_test_mode(self) -> bool:
        """Whether no real money moves: the sandbox, or Stripe with a test key."""
        key = self.stripe_secret_key
        if self.payments_provider == "sandbox" or key is None:
            return True
        return key.get_secret_value().startswith(STRIPE_TEST_KEY_PREFIXES)

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.database, PostgresLocation)

    @property
    def jurisdictions_path(self) -> Path:
        """The jurisdiction rules to load: the configured file or the packaged defaults."""
        if self.jurisdictions_file is not None:
            return self.jurisdictions_file
        return packaged_jurisdictions_path()

    def require_production_secret(self) -> SecretStr | None:
        """The JWT secret, checked for a serving process.

        PostgreSQL mode is a shared deployment: it refuses to serve without a secret.
        Embedded mode returns the secret if set, else ``None`` (the server may then
        generate a development secret). A secret that is set must be strong in either
        mode (see :func:`weak_secret_reason`). CLI commands that issue no tokens (users
        create, replay, sweep, demo) do not call this.
        """
        secret = self.jwt_secret
        if secret is not None:
            reason = weak_secret_reason(secret.get_secret_value())
            if reason is not None:
                msg = f"invalid configuration:\n  {ENV_PREFIX}JWT_SECRET {reason}"
                raise SettingsError(msg)
        if secret is None and self.is_postgres:
            msg = (
                f"invalid configuration:\n  {ENV_PREFIX}JWT_SECRET is required (at least "
                f"{JWT_SECRET_BYTES_MIN} bytes) when PREP_ES_DATABASE_URL is PostgreSQL"
            )
            raise SettingsError(msg)
        return secret


def secret_entropy_bits(secret: str) -> float:
    """A rough estimate of the bits a secret holds: the Shannon entropy of its
    characters' frequencies times the number of characters that are new — not part of a
    stretch of :data:`_REPEAT_LENGTH_MIN` or more said earlier in it (see
    :func:`new_element_count`), so that a part repeated, exactly or nearly
    (``Password1Password1…!``, ``changeme-changeme-…-1``), counts once — and the lower
    of that and the same estimate for the steps between successive characters, so that
    a run such as ``0123456789…`` or ``abcdef…`` (one step said again) holds next to
    nothing. It cannot tell a random secret from a well-mixed phrase, but it does tell
    both from one character repeated, a short word padded or repeated, or a run along
    the alphabet. Only the first :data:`_SECRET_CHARACTERS_ESTIMATED` characters count,
    which keeps the quadratic parse short and is already far above the floor for a
    random secret."""
    secret = secret[:_SECRET_CHARACTERS_ESTIMATED]
    steps = [ord(after) - ord(before) for before, after in itertools.pairwise(secret)]
    return min(_new_elements_bits(secret), _new_elements_bits(steps))


def _new_elements_bits(sequence: Sequence[Hashable]) -> float:
    """The Shannon entropy per element of ``sequence`` times its new elements."""
    length = len(sequence)
    if length == 0:
        return 0.0
    counts = Counter(sequence)
    bits_per_element = -sum(count / length * math.log2(count / length) for count in counts.values())
    return bits_per_element * new_element_count(sequence)


def new_element_count(sequence: Sequence[Hashable]) -> int:
    """How many elements of ``sequence`` a greedy LZ77-style parse finds new.

    Walking the sequence, where the next :data:`_REPEAT_LENGTH_MIN` or more elements
    already occurred earlier (the earlier copy may run into them, as in ``aaaa``), the
    longest such match is skipped; otherwise the element counts as new. Quadratic-ish in
    the length, which callers bound.
    """
    length = len(sequence)
    new = 0
    index = 0
    while index < length:
        longest = 0
        if index + _REPEAT_LENGTH_MIN <= length:
            for start in range(index):
                matched = 0
                while (
                    index + matched < length
                    and sequence[start + matched] == sequence[index + matched]
                ):
                    matched += 1
                longest = max(longest, matched)
        if longest >= _REPEAT_LENGTH_MIN:
            index += longest
        else:
            new += 1
            index += 1
    return new


def master_key_format_error(text: str, name: str) -> str | None:
    """Why ``text`` is not a master key (never echoing it), or ``None``: a master key is
    :data:`~prep_es.store.personal_keys.KEY_BYTES` bytes in base64 (either alphabet)."""
    if _MASTER_KEY_PATTERN.fullmatch(text.strip()) is not None:
        try:
            MasterKey.parse(text, name=name)
        except MasterKeyError:
            pass
        else:
            return None
    return f"{name} must be {KEY_BYTES} random bytes in base64 (e.g. `{MASTER_KEY_HINT}`)"


def weak_secret_reason(secret: str) -> str | None:
    """Why ``secret`` may not sign tokens (never echoing it), or ``None``."""
    if len(secret.encode()) < JWT_SECRET_BYTES_MIN:
        return f"must be at least {JWT_SECRET_BYTES_MIN} bytes"
    if (
        len(set(secret)) < JWT_SECRET_DISTINCT_CHARACTERS_MIN
        or secret_entropy_bits(secret) < JWT_SECRET_ENTROPY_BITS_MIN
    ):
        return (
            "is too predictable (too few distinct characters, too many repeats, a part "
            "repeated, even nearly, or a run of characters): "
            "use a random secret, e.g. `openssl rand -base64 48`"
        )
    return None


def load_settings(
    environ: Mapping[str, str] | None = None, *, require_master_key: bool = True
) -> Settings:
    """Read :class:`Settings` from ``PREP_ES_*`` variables (``os.environ`` by default).

    Unknown ``PREP_ES_*`` variables are refused: a misspelt name would otherwise fall
    back silently to a default (an embedded database instead of PostgreSQL, say).
    Empty values count as unset. PostgreSQL without ``PREP_ES_MASTER_KEY`` is refused
    unless ``require_master_key`` is false (for what opens no store, such as making a
    master key).
    """
    source = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in source.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        field_name = name[len(ENV_PREFIX) :].lower()
        if field_name not in Settings.model_fields:
            unknown.append(name)
        elif value != "":
            values[field_name] = value
    if unknown:
        known = ", ".join(ENV_PREFIX + field.upper() for field in Settings.model_fields)
        msg = f"unknown variable(s) {', '.join(sorted(unknown))}; known: {known}"
        raise SettingsError(f"invalid configuration:\n  {msg}")
    try:
        settings = Settings(**values)
    except ValidationError as error:
        raise settings_error(error) from None
    if require_master_key and settings.is_postgres and settings.master_key is None:
        msg = (
            f"invalid configuration:\n  {ENV_PREFIX}MASTER_KEY is required when "
            f"{ENV_PREFIX}DATABASE_URL is PostgreSQL: {KEY_BYTES} random bytes in base64 "
            f"(e.g. `{MASTER_KEY_HINT}`), which wrap every person's data key; keep it "
            "apart from the database's backups"
        )
        raise SettingsError(msg)
    return settings


def settings_error(error: ValidationError) -> SettingsError:
    """A :class:`SettingsError` naming each variable, without echoing any value."""
    lines = []
    for detail in error.errors(include_input=False, include_url=False):
        location = detail["loc"]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if location and not message.startswith(ENV_PREFIX):
            message = f"{ENV_PREFIX}{str(location[0]).upper()}: {message}"
        lines.append(f"  {message}")
    return SettingsError("invalid configuration:\n" + "\n".join(lines))
