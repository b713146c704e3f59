"""Two processes' worth of command handlers on one store, each with its own memory of
aggregates: a decision made on a stale copy never commits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import uuid4

import pytest

from aggregates.account import Account, account_id_for
from aggregates.errors import ActorNotAdmitted, InsufficientFunds, KitchenNotBookable
from aggregates.user import User
from commands.bookings import BookingAction
from commands.kitchens import KitchenActionWithReason
from commands.payouts import RequestPayout
from commands.users import UpdateUser
from prep_es.services.runtime import Runtime
from prep_es.store.known_copies import KnownAggregates, replay
from prep_es.store.known_copies_follower import KnownCopiesFollower
from prep_es.store.settings import PostgresLocation
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    open_test_runtime,
    top_up,
)
from tests.waiting import wait_until

SLOT = START_OF_TESTS + timedelta(days=5)


@pytest.fixture
def two_processes(database_url: str) -> Iterator[tuple[Marketplace, Runtime]]:
    clock = MutableClock()
    first = open_test_runtime(database_url, clock)
    second = open_test_runtime(database_url, clock)
    yield build_marketplace(first, clock), second
    first.close()
    second.close()


def test_a_kitchen_suspended_elsewhere_takes_no_more_bookings(
    two_processes: tuple[Marketplace, Runtime],
) -> None:
    market, elsewhere = two_processes
    market.request_booking(SLOT)  # this process now knows the kitchen as published
    elsewhere.commands.kitchens.suspend_kitchen(
        KitchenActionWithReason(kitchen_id=market.kitchen_id, reason="failed inspection"),
        as_actor(market.admin),
    )

    with pytest.raises(KitchenNotBookable) as refused:
        market.request_booking(SLOT + timedelta(days=1))
    assert refused.value.code == "kitchen_not_bookable"


@pytest.mark.parametrize(
    ("change", "code"), [({"active": False}, "user_inactive"), ({"role": "host"}, "role_changed")]
)
def test_a_user_changed_elsewhere_issues_no_more_commands(
    two_processes: tuple[Marketplace, Runtime], change: dict[str, object], code: str
) -> None:
    """Commands check their actor against the write model (the token was checked
    against the users read model, which may be a moment behind): this process's copy of
    the user still says active customer, and the commit finds out."""
    market, elsewhere = two_processes
    market.request_booking(SLOT)  # this process now knows the customer
    elsewhere.commands.users.update_user(
        UpdateUser(user_id=market.customer.user_id, **change),  # type: ignore[arg-type]
        as_actor(market.admin),
    )

    with pytest.raises(ActorNotAdmitted) as refused:
        market.request_booking(SLOT + timedelta(days=1))
    assert refused.value.code == code


def test_money_moved_elsewhere_is_seen_before_deciding_again(
    two_processes: tuple[Marketplace, Runtime],
) -> None:
    market, elsewhere = two_processes
    payouts = market.runtime.commands.payouts
    funded = RequestPayout(amount_cents=1_000_000)  # all the customer topped up
    elsewhere.commands.payouts.request_withdrawal(funded, as_actor(market.customer))

    with pytest.raises(InsufficientFunds):
        payouts.request_withdrawal(funded, as_actor(market.customer))
    account = market.runtime.app.repository.get(account_id_for(market.customer.user_id))
    assert isinstance(account, Account)
    assert account.balance_cents == 0


def test_a_sweep_does_not_trust_a_stale_copy_to_do_nothing(
    two_processes: tuple[Marketplace, Runtime],
) -> None:
    market, elsewhere = two_processes
    booking = market.request_booking(SLOT)
    market.runtime.commands.bookings.confirm_booking(
        BookingAction(booking_id=booking.id), as_actor(market.host)
    )
    # Elsewhere, the booking is known as pending-then-confirmed too; this process's copy
    # says "confirmed, not due". Time passes beyond the auto-completion point.
    market.clock.now = SLOT + timedelta(hours=2, days=1)

    report = elsewhere.commands.sweeper.sweep()
    assert report.completed_booking_ids == [booking.id]
    again = market.runtime.commands.sweeper.sweep()
    assert again.completed_booking_ids == []


def conninfo_of(runtime: Runtime) -> str:
    location = runtime.settings.database
    assert isinstance(location, PostgresLocation)
    return location.conninfo()


def wait_until_followed(follower: KnownCopiesFollower, runtime: Runtime) -> None:
    wait_until(lambda: follower.position >= runtime.app.position(), 10, "the follower to catch up")


@pytest.mark.postgres
@pytest.mark.parametrize("following", [True, False])
def test_a_process_following_the_store_applies_what_others_write_to_its_copies(
    fresh_postgres_url: str, following: bool
) -> None:
    """With the follower, a top-up made elsewhere is applied to this process's copy of
    the account, so the next withdrawal decides on current state at once; without it, the
    withdrawal is decided on the stale copy, refused at commit and decided again (the cost
    the follower saves)."""
    clock = MutableClock()
    first = open_test_runtime(fresh_postgres_url, clock)
    second = open_test_runtime(fresh_postgres_url, clock)
    known = first.commands.processor.known
    follower = KnownCopiesFollower(first.app, known, conninfo_of(first)) if following else None
    try:
        market = build_marketplace(first, clock)  # the customer topped up 10,000.00 here
        account_id = account_id_for(market.customer.user_id)
        if follower is not None:
            follower.start()
        for _ in range(2):
            top_up(second, market.customer, 2_500)
        if follower is not None:
            wait_until_followed(follower, second)
            copy = known.get(account_id)
            assert isinstance(copy, Account)
            assert copy.balance_cents == 1_005_000
            assert copy == second.app.repository.get(account_id)

        first.commands.payouts.request_withdrawal(
            RequestPayout(amount_cents=5_000), as_actor(market.customer)
        )

        assert first.commands.processor.conflicts_total == (0 if following else 1)
        account = first.app.repository.get(account_id)
        assert isinstance(account, Account)
        assert account.balance_cents == 1_000_000
    finally:
        if follower is not None:
            follower.close()
        first.close()
        second.close()


@pytest.mark.postgres
def test_a_copy_the_stored_events_do_not_follow_on_from_is_forgotten(
    fresh_postgres_url: str,
) -> None:
    clock = MutableClock()
    first = open_test_runtime(fresh_postgres_url, clock)
    second = open_test_runtime(fresh_postgres_url, clock)
    known = first.commands.processor.known
    try:
        market = build_marketplace(first, clock)  # the customer topped up here
        account_id = account_id_for(market.customer.user_id)
        top_up(second, market.customer, 2_500)
        follower = KnownCopiesFollower(first.app, known, conninfo_of(first))  # after it
        follower.start()
        try:
            top_up(second, market.customer, 2_500)
            wait_until_followed(follower, second)
        finally:
            follower.close()
        assert known.get(account_id) is None
    finally:
        first.close()
        second.close()


def credit(account: Account, amount_cents: int) -> None:
    """A top-up the provider confirmed, credited to ``account``."""
    account.credit_top_up(uuid4(), amount_cents, f"pay_{uuid4().hex}")


def test_a_copy_takes_only_the_versions_after_its_own() -> None:
    """The follower may read versions a copy already has together with newer ones (it
    starts from where the process was when it was made): the copy takes the newer ones,
    it is not forgotten for them; versions it has not seen before them make it go."""
    account = Account(owner_id=uuid4())
    credit(account, 1_000)
    credit(account, 500)
    history = account.collect_events()
    known = KnownAggregates(size_max=10)
    known.put(replay(None, history[:2]))

    known.advance(account.id, 1, 3, lambda: iter(history))

    copy = known.get(account.id)
    assert isinstance(copy, Account)
    assert (copy.version, copy.balance_cents) == (3, 1_500)
    behind = KnownAggregates(size_max=10)
    behind.put(replay(None, history[:1]))
    behind.advance(account.id, 3, 3, lambda: iter(history[2:]))
    assert behind.get(account.id) is None


def test_a_copy_read_while_the_follower_passed_a_newer_version_is_not_kept() -> None:
    """A read of the store, then the follower passing over a newer version (there was
    no copy to apply it to), then the put of what was read: that copy would miss the
    newer version for good — authentication trusts copies — so it is not kept."""
    account = Account(owner_id=uuid4())
    credit(account, 1_000)
    history = account.collect_events()
    known = KnownAggregates(size_max=10)
    with known.reading([account.id]):
        read = replay(None, history[:1])  # what the store had when read
        known.advance(account.id, 2, 2, lambda: iter(history[1:]))  # stored meanwhile
        known.put(read)
    assert known.get(account.id) is None
    with known.reading([account.id]):
        known.put(replay(None, history))
    fresh = known.get(account.id)
    assert fresh is not None and fresh.version == 2


def test_a_copy_put_while_the_follower_decodes_takes_the_versions_after_its_own() -> None:
    account = Account(owner_id=uuid4())
    for amount_cents in (100, 200, 300):
        credit(account, amount_cents)
    history = account.collect_events()
    known = KnownAggregates(size_max=10)
    known.put(replay(None, history[:1]))

    def decode() -> Iterator[object]:
        known.put(replay(None, history[:3]))  # this process read or committed it meanwhile
        return iter(history[1:])

    known.advance(account.id, 2, 4, decode)
    copy = known.get(account.id)
    assert isinstance(copy, Account)
    assert (copy.version, copy.balance_cents) == (4, 600)


@pytest.mark.postgres
def test_a_process_following_the_store_forgets_a_data_key_erased_elsewhere(
    fresh_postgres_url: str,
) -> None:
    """Another process erases a user this process has read: once the follower hears of
    the erasure, the user's fields read as erased here too, not until the cached data
    key expires (their email, name and notes showed through time travel meanwhile)."""
    clock = MutableClock()
    first = open_test_runtime(fresh_postgres_url, clock)
    second = open_test_runtime(fresh_postgres_url, clock)
    follower = KnownCopiesFollower(first.app, first.commands.processor.known, conninfo_of(first))
    try:
        user = User.register(
            email="erased.elsewhere@example.com",
            full_name="Erased Elsewhere",
            role="customer",
            password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$not-a-real-hash",
        )
        first.app.save(user)
        assert first.app.repository.get(user.id, version=1).email == user.email
        follower.start()

        erased = second.app.repository.get(user.id)
        assert isinstance(erased, User)
        erased.erase(reason="asked to be forgotten", forced=False, at=clock())
        second.app.save(erased)
        second.app.destroy_personal_data(user.id)
        wait_until_followed(follower, second)

        registered = first.app.repository.get(user.id, version=1)
        assert isinstance(registered, User)
        assert (registered.email, registered.full_name) == (None, None)
    finally:
        follower.close()
        first.close()
        second.close()
