"""``prep-es users create``, ``replay`` and configuration errors, run in-process on both
backends; and the installed console script, run as a real process."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from aggregates.account import account_id_for
from commands.top_ups import RequestTopUp
from tests.cli.running import RunCli, isolate_environment
from tests.erasing import erase_user
from tests.support import (
    MutableClock,
    as_actor,
    create_user,
    deliver_payment_notifications,
    open_test_runtime,
)

PASSWORD = "a long enough password"


def create_user_json(cli: RunCli, email: str, role: str = "admin") -> dict[str, Any]:
    ran = cli("users", "create", "--email", email, "--password", PASSWORD, "--role", role, "--json")
    assert ran.code == 0, ran.err
    created: dict[str, Any] = json.loads(ran.out)
    return created


# --- users create ----------------------------------------------------------------------


def test_users_create_prints_the_new_user(cli: RunCli) -> None:
    ran = cli(
        "users",
        "create",
        "--email",
        "Ops@Example.com",
        "--password",
        PASSWORD,
        "--role",
        "admin",
        "--full-name",
        "Olive Ops",
    )

    assert ran.code == 0, ran.err
    assert ran.err == ""
    assert ran.out.startswith("created user ")
    user_id = UUID(ran.out.split()[2])
    assert "email:     ops@example.com" in ran.out
    assert "role:      admin" in ran.out
    assert "full name: Olive Ops" in ran.out
    assert str(account_id_for(user_id)) in ran.out
    assert PASSWORD not in ran.out


def test_users_create_json_and_password_from_stdin(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))

    ran = cli(
        "users",
        "create",
        "--email",
        "host@example.com",
        "--password",
        "-",
        "--role",
        "host",
        "--json",
    )

    assert ran.code == 0, ran.err
    created = json.loads(ran.out)
    assert created["email"] == "host@example.com"
    assert created["role"] == "host"
    assert created["full_name"] == "host"
    assert created["position"] >= 1
    UUID(created["id"])


def test_users_create_refuses_a_taken_email_case_insensitively(cli: RunCli) -> None:
    create_user_json(cli, "taken@example.com")

    ran = cli(
        "users",
        "create",
        "--email",
        "TAKEN@example.com",
        "--password",
        PASSWORD,
        "--role",
        "customer",
    )

    assert ran.code == 1
    assert ran.out == ""
    assert ran.err.startswith("error: email_taken: ")
    assert "Traceback" not in ran.err


def test_users_create_domain_rules_exit_1(cli: RunCli) -> None:
    short = cli(
        "users", "create", "--email", "a@example.com", "--password", "short", "--role", "admin"
    )
    bad_role = cli(
        "users", "create", "--email", "a@example.com", "--password", PASSWORD, "--role", "owner"
    )

    assert (short.code, short.err.split(":")[1].strip()) == (1, "password_too_short")
    assert (bad_role.code, bad_role.err.split(":")[1].strip()) == (1, "invalid_role")


def test_usage_errors_exit_2(cli: RunCli) -> None:
    assert cli().code == 2
    assert cli("users").code == 2
    assert cli("users", "create", "--email", "a@example.com").code == 2
    assert cli("no-such-command").code == 2
    assert cli("--help").code == 0


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PREP_ES_DATABASE_URL", "mysql://root:hunter2@db/prep", "PREP_ES_DATABASE_URL"),
        ("PREP_ES_DATABSE_URL", "sqlite:///x.db", "PREP_ES_DATABSE_URL"),
        ("PREP_ES_CONFLICT_RETRIES_MAX", "-1", "PREP_ES_CONFLICT_RETRIES_MAX"),
    ],
)
def test_bad_configuration_prints_the_settings_error_and_exits_2(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)

    ran = cli("sweep")

    assert ran.code == 2
    assert ran.err.startswith("invalid configuration:")
    assert named in ran.err
    assert "hunter2" not in ran.err
    assert "Traceback" not in ran.err


# --- replay ----------------------------------------------------------------------------


def test_replay_prints_history_with_actor_metadata_and_redacts_the_password_hash(
    cli: RunCli,
) -> None:
    user = create_user_json(cli, "replayed@example.com")

    ran = cli("replay", user["id"], "--json")

    assert ran.code == 0, ran.err
    replayed = json.loads(ran.out)
    assert replayed["aggregate_type"] == "User"
    assert (replayed["version"], replayed["latest_version"]) == (1, 1)
    [registered] = replayed["events"]
    assert registered["topic"] == "User.UserRegistered"
    assert registered["version"] == 1
    assert registered["actor_id"] is None  # an operator at a terminal, not a user
    assert registered["request_id"].startswith("cli-")
    assert registered["correlation_id"] == registered["request_id"]
    assert registered["payload"]["email"] == "replayed@example.com"
    assert registered["payload"]["password_hash"] == "***"
    assert replayed["state"]["password_hash"] == "***"
    assert replayed["state"]["role"] == "admin"
    assert replayed["state"]["id"] == user["id"]
    assert "argon2" not in ran.out

    human = cli("replay", user["id"])
    assert human.code == 0, human.err
    assert "User.UserRegistered" in human.out
    assert "password_hash: ***" in human.out
    assert "argon2" not in human.out


def test_replay_of_an_erased_user_prints_nulls_and_names_them(
    cli: RunCli, database_url: str
) -> None:
    user = create_user_json(cli, "forgotten.operator@example.com")
    runtime = open_test_runtime(database_url, MutableClock())
    try:
        erase_user(runtime.app, UUID(user["id"]), at=runtime.clock())
    finally:
        runtime.close()

    ran = cli("replay", user["id"], "--json")

    assert ran.code == 0, ran.err
    replayed = json.loads(ran.out)
    registered, erased = replayed["events"]
    assert (registered["topic"], erased["topic"]) == ("User.UserRegistered", "User.UserErased")
    assert registered["payload"]["email"] is None
    assert registered["payload"]["password_hash"] == "***"
    assert (registered["erased"], registered["erased_fields"]) == (True, ["email", "full_name"])
    assert (erased["erased"], erased["erased_fields"]) == (False, [])
    assert replayed["state"]["email"] is None and replayed["state"]["erased"] is True
    assert (replayed["erased"], replayed["erased_fields"]) == (True, ["email", "full_name"])
    for version in ("1", "2"):
        at_version = cli("replay", user["id"], "--version", version)
        assert at_version.code == 0, at_version.err
        assert "      erased: email, full_name" in at_version.out
        assert "  erased: email, full_name" in at_version.out
    for shown in (ran.out, at_version.out):
        assert "forgotten.operator" not in shown and "personal_v1" not in shown


def _funded_account(database_url: str) -> tuple[UUID, UUID]:
    """A customer (created and topped up through the handlers and the sandbox) and
    their account id."""
    runtime = open_test_runtime(database_url, MutableClock())
    try:
        customer = create_user(runtime, "customer", f"{uuid4().hex[:8]}@example.com")
        runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=12_345, payment_method="pm_card_visa"),
            as_actor(customer, idempotency_key="fund-1"),
        )
        deliver_payment_notifications(runtime)
    finally:
        runtime.close()
    return customer.user_id, account_id_for(customer.user_id)


def test_replay_at_a_version_and_as_of_a_moment(cli: RunCli, database_url: str) -> None:
    customer_id, account_id = _funded_account(database_url)

    full = json.loads(cli("replay", str(account_id), "--json").out)
    opened, started, credited = full["events"]
    assert (opened["topic"], started["topic"], credited["topic"]) == (
        "Account.AccountOpened",
        "Account.TopUpStarted",
        "Account.TopUpCredited",
    )
    assert started["actor_id"] == str(customer_id)
    assert started["actor_role"] == "customer"
    assert started["correlation_id"] == "fund-1"
    assert started["request_id"] != "fund-1"
    assert started["payload"]["amount_cents"] == 12_345
    assert credited["actor_role"] == "system"  # the provider's notification
    assert credited["payload"]["amount_cents"] == 12_345
    assert full["state"]["balance_cents"] == 12_345

    at_version_1 = json.loads(cli("replay", str(account_id), "--version", "1", "--json").out)
    assert (at_version_1["version"], at_version_1["latest_version"]) == (1, 3)
    assert [event["version"] for event in at_version_1["events"]] == [1]
    assert at_version_1["state"]["balance_cents"] == 0
    assert at_version_1["state"]["version"] == 1

    # As of the moment the account opened: before the credit. As of the credit: after.
    before = cli("replay", str(account_id), "--as-of", opened["timestamp"], "--json")
    after = cli("replay", str(account_id), "--as-of", credited["timestamp"], "--json")
    assert before.code == after.code == 0, (before.err, after.err)
    assert json.loads(before.out)["state"]["balance_cents"] == 0
    assert json.loads(after.out)["state"]["balance_cents"] == 12_345
    assert json.loads(after.out)["as_of"] == credited["timestamp"]

    # The same moment written with another offset is the same instant.
    credited_at = datetime.fromisoformat(credited["timestamp"])
    pacific = credited_at.astimezone(timezone(timedelta(hours=-8))).isoformat()
    shifted = json.loads(cli("replay", str(account_id), "--as-of", pacific, "--json").out)
    assert shifted["version"] == 3

    # A date means 00:00 UTC that day: long before, and long after, the account.
    too_early = cli("replay", str(account_id), "--as-of", "2000-01-01")
    far_later = cli("replay", str(account_id), "--as-of", "2999-01-01")
    assert too_early.code == 1
    assert too_early.err.startswith("error: not_found: ")
    assert far_later.code == 0
    assert "State at version 3:" in far_later.out


def test_replay_refuses_naive_times_and_bad_arguments_with_exit_2(cli: RunCli) -> None:
    user = create_user_json(cli, "naive@example.com")

    naive = cli("replay", user["id"], "--as-of", "2030-01-07T09:00:00")
    garbage = cli("replay", user["id"], "--as-of", "yesterday")
    both = cli("replay", user["id"], "--version", "1", "--as-of", "2030-01-07")
    zero = cli("replay", user["id"], "--version", "0")
    not_uuid = cli("replay", "not-a-uuid")

    for ran in (naive, garbage, both, zero, not_uuid):
        assert ran.code == 2, ran
        assert ran.out == ""
        assert "Traceback" not in ran.err
    assert "no UTC offset" in naive.err


def test_replay_unknown_aggregate_or_version_exits_1(cli: RunCli) -> None:
    user = create_user_json(cli, "versions@example.com")
    unknown = str(uuid4())

    missing = cli("replay", unknown)
    beyond = cli("replay", user["id"], "--version", "2")

    assert missing.code == 1
    assert missing.err == f"error: not_found: aggregate {unknown} not found\n"
    assert beyond.code == 1
    assert beyond.err.startswith("error: version_out_of_range: ")


# --- the installed console script ------------------------------------------------------


def _console_script() -> list[str]:
    found = shutil.which("prep-es") or shutil.which(
        "prep-es", path=str(Path(sys.executable).parent)
    )
    return [found] if found else [sys.executable, "-m", "prep_es.cli"]


def test_console_script_creates_a_user(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_environment(monkeypatch, sqlite_url)
    command = [
        *_console_script(),
        "users",
        "create",
        "--email",
        "script@example.com",
        "--password",
        "-",
        "--role",
        "analyst",
        "--json",
    ]

    first, again = (
        subprocess.run(
            command,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=60,
            check=False,
        )
        for _ in range(2)
    )

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["role"] == "analyst"
    assert again.returncode == 1
    assert again.stderr.startswith("error: email_taken: ")
    assert "Traceback" not in again.stderr
