"""Rectification: a user changes their full name, and their email with their password
entered again; emails stay unique, case-insensitively, through their claims."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from uuid import UUID

import pytest

from aggregates.errors import EmailTaken, InvalidRequest, PermissionDenied
from aggregates.user import EmailClaim, User
from commands.context import Actor, CommandContext
from commands.profile import ChangeProfile
from commands.users import RegisterUser
from tests.commands.concurrent_booking import race
from tests.support import (
    PASSWORD,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    create_user,
    open_test_runtime,
)


def user_of(market: Marketplace, actor: Actor) -> User:
    user = market.runtime.app.repository.get(actor.user_id)
    assert isinstance(user, User)
    return user


def holder(market: Marketplace, user_id: UUID) -> str:
    """How a claim names ``user_id``."""
    return market.runtime.app.keyed_digest(EmailClaim.holder_message(user_id))


def claim_holder(market: Marketplace, email: str) -> object:
    """Who holds ``email``'s claim, as the claim names them (``None``: released), or
    ``"unclaimed"``."""
    claim_id = EmailClaim.create_id(email_digest=market.runtime.app.email_digest(email))
    if claim_id not in market.runtime.app.repository:
        return "unclaimed"
    claim = market.runtime.app.repository.get(claim_id)
    assert isinstance(claim, EmailClaim)
    return claim.holder


def register(market: Marketplace, email: str) -> object:
    return market.runtime.commands.users.register_user(
        RegisterUser(email=email, password=PASSWORD, full_name="Someone Else", role="customer"),
        CommandContext(actor=None),
    ).result.id


def change(market: Marketplace, actor: Actor, **fields: object) -> User:
    market.runtime.commands.profile.change_profile(ChangeProfile(**fields), as_actor(actor))
    return user_of(market, actor)


def test_a_full_name_changes_without_a_password(market: Marketplace) -> None:
    version = user_of(market, market.customer).version
    user = change(market, market.customer, full_name="  Ana María López ")
    assert user.full_name == "Ana María López"
    assert user.version == version + 1
    # The same name again changes nothing.
    assert change(market, market.customer, full_name="Ana María López").version == version + 1


@pytest.mark.parametrize("full_name", ["", "   ", "x" * 201])
def test_a_full_name_the_rules_refuse_is_422(market: Marketplace, full_name: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        change(market, market.customer, full_name=full_name)
    assert raised.value.code == "invalid_full_name"


def test_an_email_changes_with_the_current_password_and_frees_the_old_one(
    market: Marketplace,
) -> None:
    user = change(market, market.customer, email="Ana.New@Example.COM", current_password=PASSWORD)
    assert user.email == "ana.new@example.com"
    assert claim_holder(market, "ana.new@example.com") == holder(market, market.customer.user_id)
    assert claim_holder(market, "customer@example.com") is None
    # The old email is anyone's now; the new one is taken, in any case.
    assert register(market, "Customer@example.com") != market.customer.user_id
    with pytest.raises(EmailTaken):
        register(market, "ANA.NEW@example.com")


def test_an_email_change_needs_the_current_password(market: Marketplace) -> None:
    with pytest.raises(InvalidRequest) as missing:
        change(market, market.customer, email="other@example.com")
    assert (missing.value.code, missing.value.field) == (
        "current_password_required",
        "current_password",
    )
    with pytest.raises(PermissionDenied) as wrong:
        change(market, market.customer, email="other@example.com", current_password="nope" * 4)
    assert wrong.value.code == "wrong_password"
    # A wrong password sent with a name alone is refused too; nothing changed.
    with pytest.raises(PermissionDenied):
        change(market, market.customer, full_name="Renamed", current_password="nope" * 4)
    user = user_of(market, market.customer)
    assert (user.email, user.full_name) == ("customer@example.com", "customer")
    assert claim_holder(market, "other@example.com") == "unclaimed"


def test_the_same_email_in_another_case_is_no_change(market: Marketplace) -> None:
    version = user_of(market, market.customer).version
    user = change(market, market.customer, email=" CUSTOMER@example.com")
    assert user.version == version and user.email == "customer@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "x" * 250 + "@example.com"])
def test_an_email_the_registration_refuses_is_refused(market: Marketplace, email: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        change(market, market.customer, email=email, current_password=PASSWORD)
    assert raised.value.code == "invalid_email"


def test_another_users_email_is_taken_in_any_case(market: Marketplace) -> None:
    with pytest.raises(EmailTaken):
        change(market, market.customer, email="HOST@example.com", current_password=PASSWORD)
    assert claim_holder(market, "host@example.com") == holder(market, market.host.user_id)
    assert user_of(market, market.customer).email == "customer@example.com"


def test_an_email_given_up_can_be_taken_back(market: Marketplace) -> None:
    change(market, market.customer, email="interim@example.com", current_password=PASSWORD)
    change(market, market.customer, email="customer@example.com", current_password=PASSWORD)
    assert claim_holder(market, "customer@example.com") == holder(market, market.customer.user_id)
    assert claim_holder(market, "interim@example.com") is None


def test_the_same_change_under_one_idempotency_key_is_done_once(market: Marketplace) -> None:
    command = ChangeProfile(email="keyed@example.com", current_password=PASSWORD)
    profile = market.runtime.commands.profile
    first = profile.change_profile(command, as_actor(market.customer, "profile-1"))
    again = profile.change_profile(command, as_actor(market.customer, "profile-1"))
    assert again.replayed and again.result == first.result
    assert again.position == first.position


def test_a_signed_out_caller_is_refused(market: Marketplace) -> None:
    with pytest.raises(PermissionDenied):
        market.runtime.commands.profile.change_profile(
            ChangeProfile(full_name="Nobody"), CommandContext(actor=None)
        )


# --- races (PostgreSQL, real threads) ------------------------------------------------


@pytest.fixture
def busy_market(fresh_postgres_url: str) -> Iterator[Marketplace]:
    clock = MutableClock()
    runtime = open_test_runtime(fresh_postgres_url, clock, postgres_pool_size=12)
    yield build_marketplace(runtime, clock, top_up_cents=0)
    runtime.close()


@pytest.mark.postgres
def test_one_email_wanted_by_changes_and_registrations_at_once_goes_to_one(
    busy_market: Marketplace,
) -> None:
    market = busy_market
    emails = {f"c{n}@example.com": None for n in range(4)}
    changers = {email: create_user(market.runtime, "customer", email) for email in emails}

    def change_to_wanted(actor: Actor) -> Callable[[], object]:
        return lambda: market.runtime.commands.profile.change_profile(
            ChangeProfile(email="Wanted@example.com", current_password=PASSWORD), as_actor(actor)
        )

    def register_wanted(n: int) -> Callable[[], object]:
        return lambda: register(market, f"wanted@EXAMPLE.com{' ' * n}")

    outcomes = race(
        [
            *(change_to_wanted(actor) for actor in changers.values()),
            *(register_wanted(n) for n in range(4)),
        ]
    )

    assert Counter(outcomes) == {"ok": 1, "email_taken": 7}
    winner = claim_holder(market, "wanted@example.com")
    assert winner not in (None, "unclaimed")
    for email, actor in changers.items():
        won = holder(market, actor.user_id) == winner
        assert user_of(market, actor).email == ("wanted@example.com" if won else email)
        assert claim_holder(market, email) == (None if won else holder(market, actor.user_id))
