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

import orjson
import pytest

from aggregates.account import Account, account_id_for
from aggregates.booking import Booking
from aggregates.erasure import (
    BOOKING_CUSTOMER_ERASED_REASON,
    BOOKING_HOST_ERASED_REASON,
    HOST_ERASED_REASON,
)
from aggregates.errors import (
    ActorNotAdmitted,
    ErasureBlocked,
    IdempotencyKeyReused,
    InvalidRequest,
    InvalidStateTransition,
    KitchenNotBookable,
    NotFound,
    PermissionDenied,
    StateConflict,
)
from aggregates.idempotency import IdempotencyRecord
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
from commands.erasure import (
    SELF_ERASURE_REASON,
    EraseMe,
    EraseUser,
    ErasureLeadReader,
    ErasureState,
)
from commands.kitchens import KitchenAction
from commands.payouts import RequestPayout
from commands.processor import Executed
from commands.profile import ChangeProfile
from commands.sweeper import AUTO_COMPLETE_AFTER
from commands.top_ups import RequestTopUp
from commands.users import RegisterUser, UpdateUser
from prep_es.services.readside import ReadSide
from projections.accounts import AccountsProjection
from projections.bookings import BookingsProjection
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from queries.accounts import AccountQueries
from queries.base import PageRequest, Viewer
from queries.bookings import BookingDetail, BookingQueries
from tests.commands.concurrent_booking import race
from tests.commands.erasing_worker import erase_and_die_before_the_key_goes
from tests.commands.erasure_leads import CaughtUpLeads
from tests.support import (
    PASSWORD,
    START_OF_TESTS,
    LeadsAsTheyAre,
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
    leads: ErasureLeadReader,
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


def account_figures(market: Marketplace, actor: Actor) -> tuple[int, int]:
    """The balance and the held money of ``actor``'s account, as stored."""
    account = stored(market, account_id_for(actor.user_id))
    assert isinstance(account, Account)
    return account.balance_cents, account.held_cents


def trial_balance_total(read_side: ReadSide, market: Marketplace) -> int:
    """What every account's balance sums to, from the accounts read model caught up."""
    ensure_ready(read_side.write_database, AccountsProjection)
    ProjectionRunner(AccountsProjection, market.runtime.app, read_side.write_database).catch_up()
    queries = AccountQueries(read_side.query_database)
    admin = Viewer(user_id=market.admin.user_id, role="admin")
    trial = queries.trial_balance(admin, PageRequest(limit=100))
    assert trial.accounts_total <= 100
    assert sum(line.balance_cents for line in trial.lines) == trial.total_cents
    return trial.total_cents


def booking_as_seen_by(
    read_side: ReadSide, market: Marketplace, actor: Actor, booking_id: UUID
) -> BookingDetail:
    """``booking_id`` as ``actor`` reads it, from the bookings read model caught up."""
    ensure_ready(read_side.write_database, BookingsProjection)
    ProjectionRunner(BookingsProjection, market.runtime.app, read_side.write_database).catch_up()
    viewer = Viewer(user_id=actor.user_id, role=actor.role)
    return BookingQueries(read_side.query_database).get(viewer, booking_id)


def stored(market: Marketplace, aggregate_id: UUID) -> Any:
    return market.runtime.app.repository.get(aggregate_id)


def events_of(market: Marketplace, aggregate_id: UUID) -> list[Any]:
    return list(market.runtime.app.events.get(aggregate_id))


def blockers_of(call: Callable[[], object]) -> list[dict[str, str]]:
    with pytest.raises(ErasureBlocked) as raised:
        call()
    assert raised.value.code == "erasure_blocked"
    return raised.value.blockers


def holder_digest(market: Marketplace, user_id: UUID) -> str:
    return market.runtime.app.keyed_digest(EmailClaim.holder_message(user_id))


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
    assert claim_of(market, "ana@example.com").holder is None
    # The email is anyone's again: a new user, a new id.
    again = market.runtime.commands.users.register_user(
        RegisterUser(email="ANA@example.com", password=PASSWORD, full_name="Ana", role="host"),
        CommandContext(actor=None),
    ).result
    assert again.id != person.user_id and again.email == "ana@example.com"
    assert claim_of(market, "ana@example.com").held_by(holder_digest(market, again.id))


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
    assert claim_of(market, "customer@example.com").held_by(
        holder_digest(market, market.customer.user_id)
    )


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


def test_a_forced_erasure_of_a_customer_cancels_their_bookings_and_releases_the_holds(
    market: Marketplace, leads: CaughtUpLeads, read_side: ReadSide, database_url: str
) -> None:
    booking = request_booking_with_notes(market, SLOT)
    later = request_booking_with_notes(market, SLOT + timedelta(days=1))
    market.runtime.commands.bookings.confirm_booking(
        BookingAction(booking_id=later.id), as_actor(market.host)
    )
    customer_before = account_figures(market, market.customer)
    host_before = account_figures(market, market.host)
    assert customer_before[1] == 200_00

    erased = erase_user(market, market.customer, leads, force=True).result

    assert erased.forced
    assert erased.blockers == [
        {"kind": "balance", "available": "9800.00", "held": "200.00"},
        {"kind": "booking", "id": str(booking.id), "as": "customer", "status": "pending"},
        {"kind": "booking", "id": str(later.id), "as": "customer", "status": "confirmed"},
    ]
    assert erased.bookings_settled == [
        {"id": str(booking.id), "as": "customer", "was": "pending", "released": "100.00"},
        {"id": str(later.id), "as": "customer", "was": "confirmed", "released": "100.00"},
    ]
    last = events_of(market, market.customer.user_id)[-1]
    assert isinstance(last, User.UserErased)
    assert (last.reason, last.forced) == (REASON, True)
    assert last.metadata.actor_id == market.admin.user_id
    # The holds are released once, in full; the money stays on the erased account.
    balance, held = customer_before[0], 0
    assert account_figures(market, market.customer) == (balance, held)
    assert account_figures(market, market.host) == host_before
    for settled in (booking, later):
        cancelled = events_of(market, settled.id)[-1]
        assert isinstance(cancelled, Booking.BookingCancelled)
        assert (cancelled.cancelled_by_role, cancelled.captured_cents) == ("admin", 0)
        assert cancelled.released_cents == 100_00
        assert cancelled.reason == BOOKING_CUSTOMER_ERASED_REASON
    # The host reads each booking as cancelled by an admin, the notes gone.
    host_view = booking_as_seen_by(read_side, market, market.host, later.id)
    assert (host_view.status, host_view.cancelled_by_role) == ("cancelled", "admin")
    assert host_view.released_cents == 100_00 and host_view.notes is None
    assert trial_balance_total(read_side, market) == 0
    # A process that never saw the notes finds nothing left to settle.
    restarted = open_test_runtime(database_url, market.clock)
    try:
        with pytest.raises(InvalidStateTransition):
            restarted.commands.bookings.decline_booking(
                DeclineBooking(booking_id=booking.id), as_actor(market.host)
            )
        market.clock.advance(SLOT + timedelta(days=3) - market.clock())
        report = restarted.commands.sweeper.sweep()
        assert (report.expired_booking_ids, report.completed_booking_ids) == ([], [])
        assert report.failed == []
    finally:
        restarted.close()
    assert account_figures(market, market.customer) == (balance, held)


def test_a_forced_erasure_of_a_host_cancels_the_bookings_at_their_kitchens(
    market: Marketplace, leads: CaughtUpLeads, read_side: ReadSide
) -> None:
    other = market.add_customer("other@example.com", 500_00)
    pending = market.request_booking(SLOT, customer=other)
    confirmed = market.request_booking(SLOT + timedelta(days=1), hours=3)
    market.runtime.commands.bookings.confirm_booking(
        BookingAction(booking_id=confirmed.id), as_actor(market.host)
    )
    before = {
        actor.user_id: account_figures(market, actor)
        for actor in (market.customer, other, market.host)
    }

    erased = erase_user(market, market.host, leads, force=True).result

    assert erased.bookings_settled == [
        {"id": str(pending.id), "as": "host", "was": "pending", "released": "100.00"},
        {"id": str(confirmed.id), "as": "host", "was": "confirmed", "released": "150.00"},
    ]
    assert erased.kitchens_withdrawn == [market.kitchen_id]
    for customer in (market.customer, other):
        balance, _ = before[customer.user_id]
        assert account_figures(market, customer) == (balance, 0)
    assert account_figures(market, market.host) == before[market.host.user_id]
    for settled in (pending, confirmed):
        cancelled = events_of(market, settled.id)[-1]
        assert isinstance(cancelled, Booking.BookingCancelled)
        assert (cancelled.cancelled_by_role, cancelled.reason) == (
            "admin",
            BOOKING_HOST_ERASED_REASON,
        )
        assert (cancelled.captured_cents, cancelled.released_cents) == (0, settled.price_cents)
    # Its customer reads it cancelled; nothing is left for them to cancel.
    seen = booking_as_seen_by(read_side, market, market.customer, confirmed.id)
    assert (seen.status, seen.cancelled_by_role) == ("cancelled", "admin")
    with pytest.raises(StateConflict) as refused:
        market.runtime.commands.bookings.cancel_booking(
            CancelBooking(booking_id=confirmed.id), as_actor(market.customer)
        )
    assert refused.value.code == "already_cancelled"
    # Long after their ends, the sweeper completes (and captures) nothing.
    market.clock.advance(timedelta(days=5))
    report = market.runtime.commands.sweeper.sweep()
    assert report.completed_booking_ids == [] and report.expired_booking_ids == []
    assert report.cancelled_booking_ids == [] and report.failed == []
    assert account_figures(market, market.host) == before[market.host.user_id]
    assert trial_balance_total(read_side, market) == 0


def test_the_sweeper_cancels_a_booking_an_erasure_of_its_host_missed(
    market: Marketplace, leads: CaughtUpLeads, read_side: ReadSide
) -> None:
    leads.leads(market.host.user_id, position=0)  # the read models know the kitchen
    missed = market.request_booking(SLOT)
    market.runtime.commands.bookings.confirm_booking(
        BookingAction(booking_id=missed.id), as_actor(market.host)
    )
    customer_before = account_figures(market, market.customer)
    host_before = account_figures(market, market.host)
    # Asked before the booking reached the read models, as in the moment between the
    # erasure's wait for them and its commit.
    behind = LeadsAsTheyAre(read_side.query_database)

    erased = erase_user(market, market.host, behind, force=True).result

    assert erased.bookings_settled == [] and erased.kitchens_withdrawn == [market.kitchen_id]
    market.clock.advance(SLOT + timedelta(hours=2) + AUTO_COMPLETE_AFTER - market.clock())
    report = market.runtime.commands.sweeper.sweep()
    assert report.cancelled_booking_ids == [missed.id]
    assert report.completed_booking_ids == [] and report.failed == []
    cancelled = events_of(market, missed.id)[-1]
    assert isinstance(cancelled, Booking.BookingCancelled)
    assert (cancelled.cancelled_by_role, cancelled.released_cents) == ("system", 100_00)
    assert account_figures(market, market.customer) == (customer_before[0], 0)
    assert account_figures(market, market.host) == host_before
    assert market.runtime.commands.sweeper.sweep().cancelled_booking_ids == []
    assert trial_balance_total(read_side, market) == 0


def test_a_forced_erasure_of_a_host_takes_their_kitchens_off_the_market(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    erased = erase_user(market, market.host, leads, force=True).result

    assert erased.kitchens_withdrawn == [market.kitchen_id]
    kitchen = stored(market, market.kitchen_id)
    assert isinstance(kitchen, Kitchen)
    assert (kitchen.status, kitchen.status_reason) == ("suspended", HOST_ERASED_REASON)
    with pytest.raises(KitchenNotBookable):
        market.request_booking(SLOT + timedelta(days=1))
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


def test_an_erased_user_is_not_tied_to_whoever_registers_their_email_next(
    market: Marketplace, leads: CaughtUpLeads
) -> None:
    """Once A is erased and B registers A's email, B's email is readable: nothing stored
    may tie A to it. The email's claim does not name its holders, and the registrations'
    idempotency records keep neither the claim's id nor the clients' keys, not even as
    the plain values their ids would be derived from (a key also shows as the
    correlation id of the events its command stored)."""
    app = market.runtime.app

    def register(email: str, key: str) -> UUID:
        return market.runtime.commands.users.register_user(
            RegisterUser(email=email, password=PASSWORD, full_name="Ana", role="customer"),
            CommandContext(actor=None, idempotency_key=key),
        ).result.id

    first = register("ana@example.com", "signup-ana-1")
    erase_me(market, Actor(user_id=first, role="customer"), leads)
    second = register("ANA@example.com", "signup-ana-2")

    claim_id = EmailClaim.create_id(email_digest=app.email_digest("ana@example.com"))
    assert claim_of(market, "ana@example.com").held_by(holder_digest(market, second))
    rows = list(app.notifications(0, None, 10_000))
    claim_rows = [row.state for row in rows if row.originator_id == claim_id]
    record_rows = [
        row for row in rows if row.topic == IdempotencyRecord.IdempotencyKeyRecorded.TOPIC
    ]
    assert len(claim_rows) == 3 and len(record_rows) == 2
    for user_id in (first, second):
        for spelling in (str(user_id), user_id.hex, str(user_id).upper()):
            assert all(spelling.encode() not in state for state in claim_rows), spelling
    for row in record_rows:
        # Its metadata shows the key as the correlation id, readable; what the record
        # itself keeps of it and of its scope is not.
        payload = orjson.dumps({**orjson.loads(row.state), "metadata": None})
        for plain in (b"signup-ana-", str(claim_id).encode(), b"anonymous:"):
            assert plain not in payload, plain
        for key in ("signup-ana-1", "signup-ana-2"):
            plain_scope = f"anonymous:{claim_id}:register_user"
            assert row.originator_id != IdempotencyRecord.create_id(scope=plain_scope, key=key)
    # The keys still do their work: a retry of either registration is recognised.
    assert register("ana@example.com", "signup-ana-2") == second
    with pytest.raises(IdempotencyKeyReused, match="erased"):
        register("ana@example.com", "signup-ana-1")
