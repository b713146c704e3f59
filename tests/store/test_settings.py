"""Settings: defaults, parsing, and errors that name the variable but never its value."""

from __future__ import annotations

import base64
import secrets

import pytest
from pydantic import SecretStr, ValidationError

from prep_es.store.settings import (
    JWT_SECRET_ENTROPY_BITS_MIN,
    PostgresLocation,
    Settings,
    SettingsError,
    SqliteLocation,
    load_settings,
    new_element_count,
    parse_database_url,
    secret_entropy_bits,
)
from tests.support import TEST_MASTER_KEY

SECRET_32_BYTES = "settings-secret-Pz5Kd9Wm2Tq7Lx4B"
POSTGRES_URL = "postgresql://prep@127.0.0.1/prep"


def test_defaults_are_embedded_and_need_no_environment() -> None:
    settings = load_settings({})

    assert settings == Settings()
    assert settings.database == SqliteLocation(path="./prep_es.db")
    assert not settings.is_postgres
    assert settings.commission_basis_points == 1000
    assert settings.conflict_retries_max == 8
    assert settings.require_production_secret() is None


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            "PREP_ES_DATABASE_URL": "postgresql://prep:p%40ss@db.internal:6543/ledger",
            "PREP_ES_ACCESS_TOKEN_TTL": "600",
            "PREP_ES_JWT_SECRET": SECRET_32_BYTES,
            "PREP_ES_MASTER_KEY": TEST_MASTER_KEY,
            "PREP_ES_REDIS_URL": "redis://127.0.0.1:6379/0",
            "PREP_ES_ADMIN_EMAIL": "admin@prep.example",
            "PREP_ES_ADMIN_PASSWORD": "correct horse",
            "PREP_ES_READ_DATABASE_URL": "",
            "UNRELATED": "ignored",
        }
    )

    assert settings.database == PostgresLocation(
        host="db.internal", port=6543, user="prep", password="p@ss", dbname="ledger"
    )
    assert settings.access_token_ttl == 600
    assert settings.read_database_url is None
    assert settings.require_production_secret() == SecretStr(SECRET_32_BYTES)
    assert settings.master_key == SecretStr(TEST_MASTER_KEY)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./prep_es.db", SqliteLocation("./prep_es.db")),
        ("sqlite:////var/lib/prep/prep_es.db", SqliteLocation("/var/lib/prep/prep_es.db")),
        (
            "postgresql://root@127.0.0.1/test",
            PostgresLocation(host="127.0.0.1", port=5432, user="root", password="", dbname="test"),
        ),
    ],
)
def test_database_urls(url: str, expected: object) -> None:
    assert parse_database_url(url) == expected


def test_memory_sqlite_becomes_a_named_shared_database() -> None:
    first = parse_database_url("sqlite:///:memory:")
    second = parse_database_url("sqlite:///:memory:")

    assert isinstance(first, SqliteLocation)
    assert first.is_memory
    assert "cache=shared" in first.path
    assert first != second


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user@host/db",
        "sqlite://host/prep_es.db",
        "sqlite:///",
        "postgresql://host/db",
        "postgresql://user@host/",
        "postgresql://user@host:99999/db",
        "postgresql://user@host/db?sslmode=require",
    ],
)
def test_bad_database_url_names_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="PREP_ES_DATABASE_URL must be"):
        load_settings({"PREP_ES_DATABASE_URL": url})

    with pytest.raises(ValidationError, match="PREP_ES_DATABASE_URL must be"):
        Settings(database_url=url)


def test_errors_list_every_bad_variable_without_echoing_values() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "PREP_ES_DATABASE_URL": "mysql://user:hunter2@host/db",
                "PREP_ES_ACCESS_TOKEN_TTL": "soon",
                "PREP_ES_COMMISSION_BASIS_POINTS": "20000",
            }
        )

    message = str(caught.value)
    assert "PREP_ES_DATABASE_URL" in message
    assert "PREP_ES_ACCESS_TOKEN_TTL" in message
    assert "PREP_ES_COMMISSION_BASIS_POINTS" in message
    assert "hunter2" not in message
    assert "soon" not in message


def test_unknown_prefixed_variables_are_refused() -> None:
    with pytest.raises(SettingsError, match="PREP_ES_DATABSE_URL"):
        load_settings({"PREP_ES_DATABSE_URL": "postgresql://u@h/db"})


def test_admin_email_and_password_come_together() -> None:
    with pytest.raises(SettingsError, match="PREP_ES_ADMIN_EMAIL and PREP_ES_ADMIN_PASSWORD"):
        load_settings({"PREP_ES_ADMIN_EMAIL": "admin@prep.example"})


def test_postgres_mode_requires_a_long_secret_only_when_serving() -> None:
    postgres = "postgresql://prep@127.0.0.1/prep"
    settings = Settings(database_url=postgres)  # CLI commands work without a secret

    with pytest.raises(SettingsError, match="PREP_ES_JWT_SECRET is required"):
        settings.require_production_secret()

    short = Settings(database_url=postgres, jwt_secret=SecretStr("too short"))
    with pytest.raises(SettingsError, match="at least 32 bytes") as caught:
        short.require_production_secret()
    assert "too short" not in str(caught.value)


@pytest.mark.parametrize(
    "secret",
    [
        " " * 40,
        "x" * 64,
        "ab" * 32,
        "test-secret-" + "x" * 60,
        "serve-test-secret-" + "s" * 32,
        # A part repeated (the estimate counts one period), a run of characters (one
        # step repeated), or both.
        "Password1Password1Password1Password1",
        "abcdefghabcdefghabcdefghabcdefgh",
        "0123456789012345678901234567890123",
        "abcdefgh12345678abcdefgh12345678",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "a1b2c3d4e5f6g7h8i9j0a1b2c3d4e5f6g7h8i9j0",
        # A part repeated nearly: the repeats are found wherever they fall, not only
        # as an exact period.
        "Password1" * 4 + "!",
        "Password1" * 4 + "X",
        "changeme-changeme-changeme-changeme-1",
        "mysecretmysecretmysecretmysecret2024",
        "correcthorse" * 3 + "!",
        "2024" + "mysecret" * 4,
        "Password1" * 2 + "!" + "Password1" * 2,
    ],
)
def test_a_predictable_secret_of_any_length_is_refused_in_either_mode(secret: str) -> None:
    for database_url in ("sqlite:///./prep.db", "postgresql://prep@127.0.0.1/prep"):
        settings = Settings(database_url=database_url, jwt_secret=SecretStr(secret))
        with pytest.raises(SettingsError, match="too predictable") as caught:
            settings.require_production_secret()
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "secret",
    [
        "9de114fee6d37463c5ad5b8e87dbc3a1",  # openssl rand -hex 16
        "wnZwPT-p_JOEzsmcIEPGWDftONU8ojQk1v2lGm9xYcE",  # secrets.token_urlsafe(32)
        "operations-test-secret-of-at-least-32-bytes",
        "dec833c44af1eedae17f0bfa7f63553dad397e42788c5130f95d3fb096190b16",  # rand -hex 32
        "Wptgl1ZQrqfVzPyT129gMJ41BDvhcr/ozzOkI4RwJpHnbCvrTjQSlPoaLDVlt5Ng",  # rand -base64 48
    ],
)
def test_a_random_or_well_mixed_secret_is_accepted(secret: str) -> None:
    settings = Settings(database_url="postgresql://prep@127.0.0.1/prep", jwt_secret=secret)
    assert settings.require_production_secret() == SecretStr(secret)


def test_fresh_random_secrets_score_far_above_the_floor() -> None:
    """However the bytes fall: the lowest of many fresh secrets keeps a wide margin."""
    fresh = [
        generate()
        for generate in (
            lambda: secrets.token_hex(32),
            lambda: base64.b64encode(secrets.token_bytes(48)).decode(),
            lambda: secrets.token_urlsafe(48),
            lambda: secrets.token_urlsafe(32),
        )
        for _ in range(500)
    ]
    assert min(map(secret_entropy_bits, fresh)) > 1.5 * JWT_SECRET_ENTROPY_BITS_MIN


@pytest.mark.parametrize(
    ("sequence", "new"),
    [
        ("", 0),
        ("a", 1),
        ("aaaa", 1),  # the earlier copy may run into the repeat
        ("abab", 4),  # repeats shorter than 3 count
        ("abcab", 5),
        ("abcabc", 3),
        ("abcabcab", 3),
        ("abcd", 4),
        ("abcXabcY", 5),
        ("xyzabcdefabcdefQ", 10),
    ],
)
def test_characters_said_earlier_are_not_new(sequence: str, new: int) -> None:
    assert new_element_count(sequence) == new


def test_only_the_first_characters_of_a_long_secret_are_estimated() -> None:
    """The parse is quadratic: a secret of any length costs no more than its start."""
    start = secrets.token_urlsafe(256)[:256]
    assert secret_entropy_bits(start + "x" * 100_000) == secret_entropy_bits(start)


def test_constructing_settings_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREP_ES_DATABASE_URL", "postgresql://prep@elsewhere/prep")
    monkeypatch.setenv("PREP_ES_MASTER_KEY", TEST_MASTER_KEY)

    assert Settings().database_url == "sqlite:///./prep_es.db"
    assert Settings().master_key is None
    assert load_settings().database_url == "postgresql://prep@elsewhere/prep"


def test_the_sandbox_is_the_default_provider_and_refused_in_production() -> None:
    assert load_settings({}).payments_provider == "sandbox"
    with pytest.raises(SettingsError, match="refused with PREP_ES_ENV=production"):
        load_settings({"PREP_ES_ENV": "production"})
    with pytest.raises(SettingsError, match="PREP_ES_STRIPE_SECRET_KEY"):
        load_settings({"PREP_ES_PAYMENTS_PROVIDER": "stripe"})
    stripe = load_settings(
        {
            "PREP_ES_ENV": "production",
            "PREP_ES_PAYMENTS_PROVIDER": "stripe",
            "PREP_ES_STRIPE_SECRET_KEY": "sk_live_example",
            "PREP_ES_STRIPE_WEBHOOK_SECRET": "whsec_example",
        }
    )
    assert stripe.payments_provider == "stripe"


def test_a_top_up_limit_above_the_daily_limit_is_refused() -> None:
    with pytest.raises(SettingsError, match="PREP_ES_TOP_UP_CENTS_MAX"):
        load_settings(
            {"PREP_ES_TOP_UP_CENTS_MAX": "500000", "PREP_ES_TOP_UP_DAILY_CENTS_MAX": "1000"}
        )


# --- the master key ------------------------------------------------------------------


def test_postgres_mode_refuses_to_start_without_a_master_key() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PREP_ES_DATABASE_URL": POSTGRES_URL})
    message = str(caught.value)
    assert "PREP_ES_MASTER_KEY is required" in message
    assert "openssl rand -base64 32" in message

    settings = load_settings(
        {"PREP_ES_DATABASE_URL": POSTGRES_URL, "PREP_ES_MASTER_KEY": TEST_MASTER_KEY}
    )
    assert settings.master_key == SecretStr(TEST_MASTER_KEY)


def test_embedded_mode_needs_no_master_key() -> None:
    """It keeps a generated one beside the database file."""
    assert load_settings({}).master_key is None


@pytest.mark.parametrize(
    "key",
    [
        base64.b64encode(bytes(range(200, 232))).decode(),  # standard alphabet, padded
        base64.urlsafe_b64encode(bytes(range(200, 232))).decode().rstrip("="),  # URL-safe
        f"  {TEST_MASTER_KEY}\n",  # as read from a file
    ],
)
def test_a_master_key_is_32_bytes_in_either_base64_alphabet(key: str) -> None:
    for name in ("PREP_ES_MASTER_KEY", "PREP_ES_PREVIOUS_MASTER_KEY"):
        assert load_settings({name: key, "PREP_ES_DATABASE_URL": "sqlite:///x.db"}) is not None


@pytest.mark.parametrize(
    "key",
    [
        base64.b64encode(secrets.token_bytes(31)).decode(),
        base64.b64encode(secrets.token_bytes(33)).decode(),
        base64.b64encode(secrets.token_bytes(64)).decode(),
        "correct horse battery staple, but not base64 at all!",
        TEST_MASTER_KEY + "!",
        TEST_MASTER_KEY[:-5],
        secrets.token_hex(32),  # 64 hex digits: 48 bytes read as base64
    ],
)
def test_a_malformed_master_key_is_refused_without_echoing_it(key: str) -> None:
    for name in ("PREP_ES_MASTER_KEY", "PREP_ES_PREVIOUS_MASTER_KEY"):
        with pytest.raises(SettingsError) as caught:
            load_settings({"PREP_ES_MASTER_KEY": TEST_MASTER_KEY} | {name: key})
        message = str(caught.value)
        assert f"{name} must be 32 random bytes in base64" in message
        assert key.strip() not in message
        with pytest.raises(ValidationError, match=name):
            Settings.model_validate({name.removeprefix("PREP_ES_").lower(): key})
