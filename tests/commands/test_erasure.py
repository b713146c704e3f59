"""Erasure through the command handlers: what blocks it, what it records, what it frees
and destroys, and what a crash between its commit and the key's destruction leaves."""

from __future__ import annotations

import multiprocessing
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from aggregates.account import Account, account_id_for
from aggregates.erasure import HOST_ERASED_REASON
from aggregates.errors import (
    ActorNotAdmitted,
    ErasureBlocked,
    InvalidRequest,
    KitchenNotBookable,
    NotFound,
    PermissionDenied,
    StateConflict,
)
from aggregates.kitchen import Kitchen
from aggregates.user import EmailClaim, User
from commands.bookings import (
    BookingAction,
    BookingState,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
)
from commands.context import Actor, CommandContext
from commands.erasure import SELF_ERASURE_REASON, EraseMe, EraseUser, ErasureState
from commands.kitchens import KitchenAction
from commands.payouts import RequestPayout
from commands.processor import Executed
from commands.profile import ChangeProfile
from commands.top_ups import RequestTopUp
from commands.users import RegisterUser, UpdateUser
from prep_es.services.readside import ReadSide
from tests.commands.concurrent_booking import race
from tests.commands.erasing_worker import erase_and_die_before_the_key_goes
from tests.commands.erasure_leads import CaughtUpLeads
from tests.support import (
    PASSWORD,
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    create_user,
    deliver_payment_notifications,
    open_test_runtime,
)

SLOT = START_OF_TESTS + timedelta(days=5)
REASON = "Asked to be forgotten, ticket 4711"


@pytest.fixture
def leads(market: Marketplace, read_side: ReadSide) -> CaughtUpLeads:
    return CaughtUpLeads(market.runtime.app, read_side)


def erase_me(
    market: Marketplace, actor: Actor, leads: CaughtUpLeads, password: str = PASSWORD
) -> Executed[ErasureState]:
    return market.runtime.commands.erasure.erase_me(
        EraseMe(password=password), as_actor(actor), leads
    )


def erase_user(
    market: Marketplace,
    user: Actor,
    leads: CaughtUpLeads,
    *,
    force: bool = False,
    by: Actor | None = None,
    key: str | None = None,
) -> Executed[ErasureState]:
    return market.runtime.commands.erasure.erase_user(
        EraseUser(user_id=user.user_id, reason=REASON, force=force),
        as_actor(by or market.admin, key),
        leads,
    )


def stored(market: Marketplace, aggregate_id: UUID) -> Any:
    return market.runtime.app.repository.get(aggregate_id)


def events_of(market: Marketplace, aggregate_id: UUID) -> list[Any]:
    return list(market.runtime.app.events.get(aggregate_id))


def blockers_of(call: Callable[[], object]) -> list[dict[str, str]]:
    with pytest.raises(ErasureBlocked) as raised:
        call()
    assert raised.value.code == "erasure_blocked"
    return raised.value.blockers


def claim_of(market: Marketplace, email: str) -> EmailClaim:
    claim = stored(
        market, EmailClaim.create_id(email_digest=market.runtime.app.email_digest(email))
    )
    assert isinstance(claim, EmailClaim)
    return claim


def test_a_user_with_nothing_open_is_erased_forgotten_and_their_email_freed(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    person = create_user(market.runtime, "customer", "ana@example.com")

    erased = erase_me(market, person, leads)

    assert erased.result.id == person.user_id and not erased.result.forced
    assert erased.result.blockers == [] and erased.result.kitchens_withdrawn == []
    user = stored(market, person.user_id)
    assert isinstance(user, User) and user.erased
    assert (user.email, user.full_name, user.password_hash) == (None, None, None)
    last = events_of(market, person.user_id)[-1]
    assert isinstance(last, User.UserErased)
    assert (last.reason, last.forced) == (SELF_ERASURE_REASON, False)
    assert market.runtime.app.personal_data_destroyed(person.user_id)
    # Everything personal ever written about them reads as erased.
    registered = events_of(market, person.user_id)[0]
    assert isinstance(registered, User.UserRegistered)
    assert (registered.email, registered.full_name) == (None, None)
    assert claim_of(market, "ana@example.com").user_id is None
    # The email is anyone's again: a new user, a new id.
    again = market.runtime.commands.users.register_user(
        RegisterUser(email="ANA@example.com", password=PASSWORD, full_name="Ana", role="host"),
        CommandContext(actor=None),
    ).result
    assert again.id != person.user_id and again.email == "ana@example.com"
    assert claim_of(market, "ana@example.com").user_id == again.id


def test_an_erased_user_can_do_nothing_more(market: Marketplace, leads: CaughtUpLeads) -> None:
    person = create_user(market.runtime, "customer", "gone@example.com")
    erase_me(market, person, leads)
    with pytest.raises(ActorNotAdmitted) as refused:
        market.runtime.commands.profile.change_profile(
            ChangeProfile(full_name="Back"), as_actor(person)
        )
    assert refused.value.code == "user_erased"
    with pytest.raises(ActorNotAdmitted):
        erase_me(market, person, leads)
    # Admins find nobody to change or erase.
    with pytest.raises(NotFound) as not_found:
        market.runtime.commands.users.update_user(
            UpdateUser(user_id=person.user_id, active=True), as_actor(market.admin)
        )
    assert not_found.value.code == "user_not_found"
    with pytest.raises(NotFound):
        erase_user(market, person, leads)


def test_a_wrong_password_erases_nothing(market: Marketplace, leads: CaughtUpLeads) -> None:
    person = create_user(market.runtime, "customer", "keep@example.com")
    with pytest.raises(PermissionDenied) as wrong:
        erase_me(market, person, leads, password="not the password")
    assert wrong.value.code == "wrong_password"
    assert not stored(market, person.user_id).erased
    assert not market.runtime.app.personal_data_destroyed(person.user_id)


def test_money_on_the_account_blocks_the_erasure(market: Marketplace, leads: CaughtUpLeads) -> None:
    assert blockers_of(lambda: erase_me(market, market.customer, leads)) == [
        {"kind": "balance", "available": "10000.00", "held": "0.00"}
    ]
    assert not stored(market, market.customer.user_id).erased
    assert claim_of(market, "customer@example.com").user_id == market.customer.user_id


def test_a_booking_blocks_its_customer_and_its_host(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    customer = market.add_customer("booker@example.com", 100_00)
    booking = market.request_booking(SLOT, customer=customer)

    assert blockers_of(lambda: erase_me(market, customer, leads)) == [
        {"kind": "balance", "available": "0.00", "held": "100.00"},
        {"kind": "booking", "id": str(booking.id), "as": "customer", "status": "pending"},
    ]
    assert blockers_of(lambda: erase_user(market, market.host, leads)) == [
        {"kind": "booking", "id": str(booking.id), "as": "host", "status": "pending"},
    ]

    market.runtime.commands.bookings.decline_booking(
        DeclineBooking(booking_id=booking.id), as_actor(market.host)
    )
    assert blockers_of(lambda: erase_me(market, customer, leads)) == [
        {"kind": "balance", "available": "100.00", "held": "0.00"}
    ]
    erased = erase_user(market, market.host, leads)
    assert erased.result.kitchens_withdrawn == [market.kitchen_id]


def test_a_top_up_the_provider_has_not_settled_blocks(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    customer = create_user(market.runtime, "customer", "paying@example.com")
    started = market.runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=25_00, payment_method="pm_card_visa"), as_actor(customer)
    ).result

    assert blockers_of(lambda: erase_me(market, customer, leads)) == [
        {"kind": "top_up", "id": str(started.id), "amount": "25.00", "status": "processing"}
    ]
    deliver_payment_notifications(market.runtime)
    assert blockers_of(lambda: erase_me(market, customer, leads)) == [
        {"kind": "balance", "available": "25.00", "held": "0.00"}
    ]


def test_a_withdrawal_on_its_way_blocks_until_it_is_paid(
    unhurried_market: Marketplace, read_side: ReadSide
) -> None:
    market = unhurried_market
    leads = CaughtUpLeads(market.runtime.app, read_side)
    requested = market.runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=10_000_00), as_actor(market.customer)
    ).result
    (refund,) = requested.payouts

    assert blockers_of(lambda: erase_me(market, market.customer, leads)) == [
        {"kind": "withdrawal", "id": str(refund.id), "amount": "10000.00"}
    ]
    market.clock.advance(timedelta(seconds=2))
    deliver_payment_notifications(market.runtime)
    assert not erase_me(market, market.customer, leads).result.forced


def request_booking_with_notes(market: Marketplace, start: datetime) -> BookingState:
    return market.runtime.commands.bookings.request_booking(
        RequestBooking(
            kitchen_id=market.kitchen_id,
            start_time=start,
            end_time=start + timedelta(hours=2),
            guests=2,
            notes="Allergic to nuts",
        ),
        as_actor(market.customer),
    ).result


def test_an_admin_forces_past_the_blockers_and_the_money_stays(
    market: Marketplace, leads: CaughtUpLeads, database_url: str
) -> None:
    booking = request_booking_with_notes(market, SLOT)
    later = request_booking_with_notes(market, SLOT + timedelta(days=1))
    account_before = stored(market, account_id_for(market.customer.user_id))
    assert isinstance(account_before, Account)

    erased = erase_user(market, market.customer, leads, force=True).result

    assert erased.forced
    assert erased.blockers == [
        {"kind": "balance", "available": "9800.00", "held": "200.00"},
        {"kind": "booking", "id": str(booking.id), "as": "customer", "status": "pending"},
        {"kind": "booking", "id": str(later.id), "as": "customer", "status": "pending"},
    ]
    last = events_of(market, market.customer.user_id)[-1]
    assert isinstance(last, User.UserErased)
    assert (last.reason, last.forced) == (REASON, True)
    assert last.metadata.actor_id == market.admin.user_id
    account = stored(market, account_id_for(market.customer.user_id))
    assert (account.balance_cents, account.held_cents) == (
        account_before.balance_cents,
        account_before.held_cents,
    )
    # A process that never saw the notes settles the bookings: the host declines one,
    # time expires the other; each releases the erased customer's hold.
    restarted = open_test_runtime(database_url, market.clock)
    try:
        declined = restarted.commands.bookings.decline_booking(
            DeclineBooking(booking_id=booking.id), as_actor(market.host)
        ).result
        assert (declined.status, declined.notes) == ("declined", None)
        market.clock.advance(SLOT + timedelta(days=1, minutes=1) - market.clock())
        report = restarted.commands.sweeper.sweep()
        assert report.expired_booking_ids == [later.id] and report.failed == []
    finally:
        restarted.close()
    assert stored(market, account_id_for(market.customer.user_id)).held_cents == 0


def test_a_forced_erasure_of_a_host_takes_their_kitchens_off_the_market(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    booking = market.request_booking(SLOT)

    erased = erase_user(market, market.host, leads, force=True).result

    assert erased.kitchens_withdrawn == [market.kitchen_id]
    kitchen = stored(market, market.kitchen_id)
    assert isinstance(kitchen, Kitchen)
    assert (kitchen.status, kitchen.status_reason) == ("suspended", HOST_ERASED_REASON)
    with pytest.raises(KitchenNotBookable):
        market.request_booking(SLOT + timedelta(days=1))
    # The booking made before stays as it was, for its customer to cancel.
    cancelled = market.runtime.commands.bookings.cancel_booking(
        CancelBooking(booking_id=booking.id), as_actor(market.customer)
    ).result
    assert cancelled.status == "cancelled"
    # No admin can put it back on the market: its host is gone.
    kitchens = market.runtime.commands.kitchens
    with pytest.raises(StateConflict) as refused:
        kitchens.reinstate_kitchen(
            KitchenAction(kitchen_id=market.kitchen_id), as_actor(market.admin)
        )
    assert refused.value.code == "host_erased"
    assert stored(market, market.kitchen_id).status == "suspended"


def test_only_an_admin_erases_another_user_and_says_why(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    person = create_user(market.runtime, "customer", "target@example.com")
    with pytest.raises(PermissionDenied):
        erase_user(market, person, leads, by=market.customer)
    for reason in ("", "   ", "x" * 1001):
        with pytest.raises(InvalidRequest) as invalid:
            market.runtime.commands.erasure.erase_user(
                EraseUser(user_id=person.user_id, reason=reason),
                as_actor(market.admin),
                leads,
            )
        assert invalid.value.code == "invalid_reason"
    assert not stored(market, person.user_id).erased
    with pytest.raises(NotFound):
        market.runtime.commands.erasure.erase_user(
            EraseUser(user_id=UUID(int=12345), reason=REASON), as_actor(market.admin), leads
        )


def test_an_admin_is_erased_by_another_admin_only(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    with pytest.raises(PermissionDenied) as by_themselves:
        erase_me(market, market.admin, leads)
    assert by_themselves.value.code == "admin_self_erasure"
    with pytest.raises(PermissionDenied) as own_route:
        erase_user(market, market.admin, leads)
    assert own_route.value.code == "admin_self_erasure"
    other = create_user(market.runtime, "admin", "other-admin@example.com")
    assert erase_user(market, market.admin, leads, by=other).result.id == market.admin.user_id


def test_an_erasure_under_one_idempotency_key_is_done_once(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    person = create_user(market.runtime, "customer", "twice@example.com")
    first = erase_user(market, person, leads, key="erase-1")
    again = erase_user(market, person, leads, key="erase-1")
    assert again.replayed and again.result == first.result and again.position == first.position


def test_a_crash_between_the_commit_and_the_key_leaves_the_key_to_the_sweeper(
    market: Marketplace, database_url: str
) -> None:
    person = create_user(market.runtime, "customer", "crash@example.com")
    worker = multiprocessing.get_context("spawn").Process(
        target=erase_and_die_before_the_key_goes,
        args=(database_url, str(person.user_id), market.clock().isoformat()),
    )
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == -signal.SIGKILL

    assert stored(market, person.user_id).erased  # committed
    assert not market.runtime.app.personal_data_destroyed(person.user_id)

    # The next process to start sweeps: it destroys the key, once.
    restarted = open_test_runtime(database_url, market.clock)
    try:
        assert restarted.commands.sweeper.sweep().erased_user_ids == [person.user_id]
        assert restarted.app.personal_data_destroyed(person.user_id)
        assert restarted.commands.sweeper.sweep().erased_user_ids == []
    finally:
        restarted.close()
    # A sweeper that was running all along finds the erasure too; the key is gone already.
    assert market.runtime.commands.sweeper.sweep().erased_user_ids == []
    registered = events_of(market, person.user_id)[0]
    assert registered.email is None


# --- races (PostgreSQL, real threads) ------------------------------------------------


@pytest.fixture
def busy_market(fresh_postgres_url: str) -> Iterator[Marketplace]:
    clock = MutableClock()
    runtime = open_test_runtime(fresh_postgres_url, clock, postgres_pool_size=12)
    yield build_marketplace(runtime, clock, top_up_cents=0)
    runtime.close()


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(5))
def test_an_erasure_and_a_top_up_at_once_never_leave_money_on_its_way_to_nobody(
    busy_market: Marketplace, read_side: ReadSide, attempt: int
) -> None:
    market = busy_market
    person = create_user(market.runtime, "customer", f"racer{attempt}@example.com")
    leads = CaughtUpLeads(market.runtime.app, read_side)

    outcomes = race(
        [
            lambda: erase_me(market, person, leads),
            lambda: market.runtime.commands.top_ups.start_top_up(
                RequestTopUp(amount_cents=10_00, payment_method="pm_card_visa"),
                as_actor(person),
            ),
        ]
    )

    erased = stored(market, person.user_id).erased
    assert Counter(outcomes) in (
        Counter(["ok", "user_erased"]),  # the erasure first: the top-up is refused
        Counter(["ok", "erasure_blocked"]),  # the top-up first: it blocks the erasure
    )
    assert erased == (outcomes[0] == "ok")
    account = stored(market, account_id_for(person.user_id))
    assert account.top_ups_on(market.clock().date()) == (0 if erased else 1)


def test_a_confirmed_booking_blocks_its_host_too(market: Marketplace, leads: CaughtUpLeads) -> None:
    booking = market.request_booking(SLOT)
    market.runtime.commands.bookings.confirm_booking(
        BookingAction(booking_id=booking.id), as_actor(market.host)
    )
    assert blockers_of(lambda: erase_user(market, market.host, leads)) == [
        {"kind": "booking", "id": str(booking.id), "as": "host", "status": "confirmed"}
    ]
