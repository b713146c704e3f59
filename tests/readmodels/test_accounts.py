"""The accounts read model and its queries, on both backends: balances equal the
aggregates', statements run in order with running figures, the trial balance nets to
zero with the system accounts' balances derived right, and money crosses the payment
provider's clearing accounts (in, in transit, out) only as the provider confirms it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from aggregates.account import (
    PAYMENTS_IN_ACCOUNT_ID,
    PAYMENTS_OUT_ACCOUNT_ID,
    PAYOUTS_IN_TRANSIT_ACCOUNT_ID,
    PLATFORM_REVENUE_ACCOUNT_ID,
    account_id_for,
)
from aggregates.base import derived_id
from aggregates.errors import NotFound, PermissionDenied
from aggregates.payout import Payout, PayoutStatus
from aggregates.top_up import TopUpStatus
from commands.bookings import BookingAction
from commands.context import Actor
from commands.payouts import PayoutState, RequestPayout, SetPayoutDestination
from commands.top_ups import RequestTopUp
from prep_es.services.readside import open_read_side
from projections.accounts import AccountsProjection, entry_id_of
from projections.generations import request_rebuild
from queries.accounts import AccountQueries, StatementEntry
from queries.base import PageRequest, Viewer
from tests.readmodels.test_bookings import PRICE_2H_CENTS, World, live_every_ending, viewer
from tests.support import (
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    deliver_payment_notifications,
    open_test_runtime,
    store_settings,
    top_up,
)

DEPOSIT_CENTS = 1_000_000  # what the marketplaces top their customer up with
COMMISSION_BASIS_POINTS = 1000


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(store_settings(database_url))
    yield World(build_marketplace(runtime, clock, top_up_cents=DEPOSIT_CENTS), read_side)
    read_side.close()
    runtime.close()


def whole_statement(queries: AccountQueries, who: Viewer) -> list[StatementEntry]:
    """Every entry, oldest first, read page by page (pages are newest first)."""
    entries: list[StatementEntry] = []
    offset = 0
    while True:
        page = queries.entries(who, PageRequest(limit=7, offset=offset))
        entries.extend(page.items)
        offset += page.limit
        if offset >= page.total:
            assert len(entries) == page.total
            return entries[::-1]


def newest_entries(queries: AccountQueries, who: Viewer, count: int) -> list[StatementEntry]:
    return queries.entries(who, PageRequest(limit=count)).items


def aggregate_figures(market: Marketplace, actor: Actor) -> tuple[int, int, int]:
    account: Any = market.runtime.app.repository.get(account_id_for(actor.user_id))
    return account.balance_cents, account.held_cents, account.available_cents


def system_balances(queries: AccountQueries, market: Marketplace) -> dict[str, int]:
    """The balance of each system account with a movement, by name, from a trial
    balance that nets to zero."""
    trial = queries.trial_balance(viewer(market.admin))
    assert trial.total_cents == 0 == sum(line.balance_cents for line in trial.lines)
    return {line.account: line.balance_cents for line in trial.lines if line.account != "user"}


def pay_out(market: Marketplace, amount_cents: int, destination: str) -> PayoutState:
    """The host's payout to ``destination`` (set first), reserved and handed to the
    sandbox; none of its notifications delivered."""
    payouts, host = market.runtime.commands.payouts, as_actor(market.host)
    payouts.set_payout_destination(SetPayoutDestination(destination=destination), host)
    requested = payouts.request_payout(RequestPayout(amount_cents=amount_cents), host).result
    [payout] = requested.payouts
    return payout


def payout_status(market: Marketplace, payout_id: UUID) -> PayoutStatus:
    payout = market.runtime.app.repository.get(payout_id)
    assert isinstance(payout, Payout)
    return payout.status


def test_balances_and_statements_follow_the_aggregates(world: World) -> None:
    market = world.market
    story = live_every_ending(market)
    world.catch_up(AccountsProjection)
    queries = AccountQueries(world.read_side.query_database)

    for actor in (market.customer, market.host, market.admin):
        balance = queries.account(viewer(actor))
        assert balance.account_id == account_id_for(actor.user_id)
        assert balance.owner_id == actor.user_id
        figures = (balance.balance_cents, balance.held_cents, balance.available_cents)
        assert figures == aggregate_figures(market, actor)

        statement = whole_statement(queries, viewer(actor))
        running_balance = running_held = 0
        for entry in statement:
            assert entry.account_id == balance.account_id
            running_balance += entry.amount_cents
            running_held += entry.held_delta_cents
            assert (entry.balance_after_cents, entry.held_after_cents) == (
                running_balance,
                running_held,
            )
            assert entry.available_after_cents == running_balance - running_held >= 0
        assert (running_balance, running_held) == (balance.balance_cents, balance.held_cents)
        positions = [entry.position for entry in statement]
        assert positions == sorted(positions)
        assert len({entry.id for entry in statement}) == len(statement)

    customer = whole_statement(queries, viewer(market.customer))
    kinds = [entry.kind for entry in customer]
    assert kinds[0] == "top_up" and customer[0].counter_account == "payments_in"
    assert customer[0].counter_account_id == PAYMENTS_IN_ACCOUNT_ID
    assert customer[0].amount_cents == DEPOSIT_CENTS
    assert kinds.count("hold_placed") == len(story.ids)
    assert kinds.count("hold_adjusted") == 1  # the reschedule: 2 h → 3 h
    assert kinds.count("hold_released") == 4  # declined, host cancel, free cancel, expired
    captures = [entry for entry in customer if entry.kind == "hold_captured"]
    commissions = [entry for entry in customer if entry.kind == "commission"]
    # half fee, full fee, completed by the host, completed by the sweeper
    captured = [PRICE_2H_CENTS // 2, PRICE_2H_CENTS, PRICE_2H_CENTS, PRICE_2H_CENTS]
    assert sorted(-c.amount_cents for c in commissions) == sorted(
        c * COMMISSION_BASIS_POINTS // 10_000 for c in captured
    )
    assert {c.counter_account for c in commissions} == {"platform_revenue"}
    assert {c.counter_account_id for c in captures} == {account_id_for(market.host.user_id)}
    assert {c.counter_account for c in captures} == {"user"}
    assert sum(c.amount_cents for c in captures + commissions) == -sum(captured)

    host = whole_statement(queries, viewer(market.host))
    received = [entry for entry in host if entry.kind == "payment_received"]
    assert sorted(e.amount_cents for e in received) == sorted(-c.amount_cents for c in captures)
    assert {e.counter_account_id for e in received} == {account_id_for(market.customer.user_id)}
    assert {e.booking_id for e in received} == {c.booking_id for c in captures}
    assert host[-1].kind == "payout"
    assert (host[-1].amount_cents, host[-1].counter_account) == (
        -story.payout_cents,
        "payouts_in_transit",
    )


def test_statements_are_newest_first_and_paged(world: World) -> None:
    market = world.market
    for amount in (100, 200, 300):
        assert top_up(market.runtime, market.customer, amount).status == TopUpStatus.PROCESSING
    world.catch_up(AccountsProjection)
    queries = AccountQueries(world.read_side.query_database)
    customer = viewer(market.customer)

    first = queries.entries(customer, PageRequest(limit=2))
    assert (first.total, first.limit, first.offset) == (4, 2, 0)
    assert [e.amount_cents for e in first.items] == [300, 200]
    balances_after = [e.balance_after_cents for e in first.items]
    assert balances_after == [DEPOSIT_CENTS + 600, DEPOSIT_CENTS + 300]
    last = queries.entries(customer, PageRequest(limit=2, offset=2))
    assert [e.amount_cents for e in last.items] == [100, DEPOSIT_CENTS]
    beyond = queries.entries(customer, PageRequest(limit=2, offset=10))
    assert (beyond.items, beyond.total) == ([], 4)

    # Nobody else's entries: the host has none, the admin none either.
    assert queries.entries(viewer(market.host)).total == 0
    assert queries.entries(viewer(market.admin)).items == []


def test_the_trial_balance_nets_to_zero(world: World) -> None:
    market = world.market
    story = live_every_ending(market)
    deliver_payment_notifications(market.runtime)  # the story's payout ends posted
    other = market.add_customer("other@example.com", 2_500)
    world.catch_up(AccountsProjection)
    queries = AccountQueries(world.read_side.query_database)

    trial = queries.trial_balance(viewer(market.admin))
    assert trial.total_cents == 0 == sum(line.balance_cents for line in trial.lines)
    assert trial.accounts_total == len(trial.lines)
    lines = {line.account_id: line for line in trial.lines}

    payments_in = lines[PAYMENTS_IN_ACCOUNT_ID]
    assert (payments_in.account, payments_in.owner_name, payments_in.owner_id) == (
        "payments_in",
        "payments_in",
        None,
    )
    assert payments_in.balance_cents == -(DEPOSIT_CENTS + 2_500)
    in_transit = lines[PAYOUTS_IN_TRANSIT_ACCOUNT_ID]
    assert (in_transit.account, in_transit.balance_cents) == ("payouts_in_transit", 0)
    payments_out = lines[PAYMENTS_OUT_ACCOUNT_ID]
    assert (payments_out.account, payments_out.balance_cents) == (
        "payments_out",
        story.payout_cents,
    )
    revenue = lines[PLATFORM_REVENUE_ACCOUNT_ID]
    captured = PRICE_2H_CENTS // 2 + 3 * PRICE_2H_CENTS
    commissions = sum(
        c * COMMISSION_BASIS_POINTS // 10_000
        for c in (PRICE_2H_CENTS // 2, PRICE_2H_CENTS, PRICE_2H_CENTS, PRICE_2H_CENTS)
    )
    assert (revenue.account, revenue.balance_cents) == ("platform_revenue", commissions)
    # Stores written since top-ups never touch the account deposits used.
    assert [line.owner_name for line in trial.lines] == [
        "payments_in",
        "payouts_in_transit",
        "payments_out",
        "platform_revenue",
        "customer",
        "host",
        "other",
    ]

    for actor, name in ((market.customer, "customer"), (market.host, "host"), (other, "other")):
        line = lines[account_id_for(actor.user_id)]
        assert (line.account, line.owner_id, line.owner_name) == ("user", actor.user_id, name)
        assert line.balance_cents == aggregate_figures(market, actor)[0]
    assert lines[account_id_for(market.customer.user_id)].balance_cents == DEPOSIT_CENTS - captured
    assert account_id_for(market.admin.user_id) not in lines  # no movement, no line

    paged = queries.trial_balance(viewer(market.admin), PageRequest(limit=1, offset=3))
    assert [line.account for line in paged.lines] == ["platform_revenue"]
    assert (paged.accounts_total, paged.total_cents) == (trial.accounts_total, 0)
    beyond = queries.trial_balance(viewer(market.admin), PageRequest(limit=1, offset=50))
    assert (beyond.lines, beyond.accounts_total, beyond.total_cents) == ([], 7, 0)

    for actor in (market.customer, market.host):
        with pytest.raises(PermissionDenied):
            queries.trial_balance(viewer(actor))


def test_a_top_up_is_credited_only_once_the_provider_confirms_it(world: World) -> None:
    market = world.market
    runtime = market.runtime
    queries = AccountQueries(world.read_side.query_database)
    customer = viewer(market.customer)
    declined = top_up(runtime, market.customer, 700, "pm_card_chargeDeclined")
    assert declined.status == TopUpStatus.FAILED
    started = runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=2_500, payment_method="pm_card_visa"),
        as_actor(market.customer),
    ).result
    assert started.status == TopUpStatus.PROCESSING

    world.catch_up(AccountsProjection)
    assert queries.account(customer).balance_cents == DEPOSIT_CENTS
    assert queries.entries(customer).total == 1  # the marketplace's own top-up
    assert system_balances(queries, market) == {"payments_in": -DEPOSIT_CENTS}

    assert deliver_payment_notifications(runtime) > 0
    world.catch_up(AccountsProjection)
    [credited] = newest_entries(queries, customer, 1)
    assert (credited.kind, credited.amount_cents, credited.held_delta_cents) == ("top_up", 2_500, 0)
    assert (credited.counter_account, credited.counter_account_id) == (
        "payments_in",
        PAYMENTS_IN_ACCOUNT_ID,
    )
    assert (credited.balance_after_cents, credited.available_after_cents) == (
        DEPOSIT_CENTS + 2_500,
        DEPOSIT_CENTS + 2_500,
    )
    assert queries.entries(customer).total == 2
    balance = queries.account(customer)
    assert (balance.balance_cents, balance.held_cents, balance.available_cents) == (
        aggregate_figures(market, market.customer)
    )
    assert system_balances(queries, market) == {"payments_in": -(DEPOSIT_CENTS + 2_500)}


@pytest.fixture
def unhurried_world(database_url: str, unhurried_market: Marketplace) -> Iterator[World]:
    """A marketplace whose sandbox settles payments and transfers, and notifies, a
    second later: a payout in transit can be seen before it is posted or voided."""
    read_side = open_read_side(store_settings(database_url))
    yield World(unhurried_market, read_side)
    read_side.close()


def settle(market: Marketplace) -> None:
    """Past the unhurried sandbox's delay, with every notification then due delivered."""
    market.clock.advance(timedelta(seconds=2))
    assert deliver_payment_notifications(market.runtime) > 0


def earn(market: Marketplace) -> int:
    """The host's earnings from a booking completed: its price less the commission."""
    start = market.clock().replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    booking = market.request_booking(start, hours=2)
    bookings, host = market.runtime.commands.bookings, as_actor(market.host)
    bookings.confirm_booking(BookingAction(booking_id=booking.id), host)
    market.clock.advance(timedelta(days=4))
    bookings.complete_booking(BookingAction(booking_id=booking.id), host)
    earned = PRICE_2H_CENTS - PRICE_2H_CENTS * COMMISSION_BASIS_POINTS // 10_000
    assert aggregate_figures(market, market.host)[0] == earned
    return earned


def test_a_payout_leaves_at_once_and_is_posted_when_paid(unhurried_world: World) -> None:
    world, market = unhurried_world, unhurried_world.market
    earned = earn(market)
    queries = AccountQueries(world.read_side.query_database)
    host = viewer(market.host)

    payout = pay_out(market, 4_000, "bank-of-test")
    world.catch_up(AccountsProjection)
    [reserved] = newest_entries(queries, host, 1)
    assert (reserved.kind, reserved.amount_cents, reserved.held_delta_cents) == (
        "payout",
        -4_000,
        0,
    )
    assert (reserved.counter_account, reserved.counter_account_id) == (
        "payouts_in_transit",
        PAYOUTS_IN_TRANSIT_ACCOUNT_ID,
    )
    assert reserved.balance_after_cents == earned - 4_000
    assert queries.account(host).available_cents == earned - 4_000
    in_transit = system_balances(queries, market)
    assert (in_transit["payouts_in_transit"], "payments_out" in in_transit) == (4_000, False)
    entries_total = queries.entries(host).total

    settle(market)
    assert payout_status(market, payout.id) == PayoutStatus.PAID
    world.catch_up(AccountsProjection)
    posted = system_balances(queries, market)
    assert (posted["payouts_in_transit"], posted["payments_out"]) == (0, 4_000)
    assert posted["payments_in"] == in_transit["payments_in"] == -DEPOSIT_CENTS
    # Posting moves money between system accounts only: the host sees no new entry.
    assert queries.entries(host).total == entries_total
    balance = queries.account(host)
    assert (balance.balance_cents, balance.held_cents, balance.available_cents) == (
        aggregate_figures(market, market.host)
    )
    assert balance.balance_cents == earned - 4_000


def test_a_failed_payout_is_voided_back_to_the_host(unhurried_world: World) -> None:
    world, market = unhurried_world, unhurried_world.market
    earned = earn(market)
    queries = AccountQueries(world.read_side.query_database)
    host = viewer(market.host)

    payout = pay_out(market, 3_000, "fail-closed-account")
    world.catch_up(AccountsProjection)
    assert system_balances(queries, market)["payouts_in_transit"] == 3_000
    assert queries.account(host).balance_cents == earned - 3_000

    settle(market)
    assert payout_status(market, payout.id) == PayoutStatus.FAILED
    world.catch_up(AccountsProjection)
    voided, reserved = newest_entries(queries, host, 2)
    assert [(e.kind, e.amount_cents, e.counter_account) for e in (reserved, voided)] == [
        ("payout", -3_000, "payouts_in_transit"),
        ("payout_voided", 3_000, "payouts_in_transit"),
    ]
    assert (reserved.balance_after_cents, voided.balance_after_cents) == (earned - 3_000, earned)
    assert (
        queries.account(host).balance_cents == earned == aggregate_figures(market, market.host)[0]
    )
    # What was in transit came back; nothing reached payments_out.
    balances = system_balances(queries, market)
    assert (balances["payouts_in_transit"], "payments_out" in balances) == (0, False)


def test_a_withdrawal_is_refunded_to_the_cards_newest_top_up_first(
    unhurried_world: World,
) -> None:
    world, market = unhurried_world, unhurried_world.market
    runtime = market.runtime
    top_up(runtime, market.customer, 3_000)
    settle(market)
    requested = runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=5_000), as_actor(market.customer)
    ).result
    assert [refund.amount_cents for refund in requested.payouts] == [3_000, 2_000]
    assert {refund.status for refund in requested.payouts} == {PayoutStatus.PENDING}
    world.catch_up(AccountsProjection)
    queries = AccountQueries(world.read_side.query_database)
    customer = viewer(market.customer)

    second, first = newest_entries(queries, customer, 2)
    assert [(e.kind, e.amount_cents, e.counter_account) for e in (first, second)] == [
        ("refund", -3_000, "payouts_in_transit"),
        ("refund", -2_000, "payouts_in_transit"),
    ]
    assert second.balance_after_cents == DEPOSIT_CENTS + 3_000 - 5_000
    assert system_balances(queries, market) == {
        "payments_in": -(DEPOSIT_CENTS + 3_000),
        "payouts_in_transit": 5_000,
    }

    settle(market)
    assert {payout_status(market, refund.id) for refund in requested.payouts} == {PayoutStatus.PAID}
    world.catch_up(AccountsProjection)
    assert system_balances(queries, market) == {
        "payments_in": -(DEPOSIT_CENTS + 3_000),
        "payouts_in_transit": 0,
        "payments_out": 5_000,
    }
    trial = queries.trial_balance(viewer(market.admin))
    assert [line.owner_name for line in trial.lines] == [
        "payments_in",
        "payouts_in_transit",
        "payments_out",
        "customer",
    ]
    assert trial.lines[-1].balance_cents == DEPOSIT_CENTS - 2_000
    assert queries.account(customer).balance_cents == DEPOSIT_CENTS - 2_000


def test_a_rebuild_yields_the_same_rows_after_money_moved_every_way(
    unhurried_world: World,
) -> None:
    world, market = unhurried_world, unhurried_world.market
    runtime = market.runtime
    earn(market)
    top_up(runtime, market.customer, 3_000)
    top_up(runtime, market.customer, 700, "pm_card_chargeDeclined")
    pay_out(market, 4_000, "bank-of-test")
    pay_out(market, 3_000, "fail-closed-account")
    runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=5_000), as_actor(market.customer)
    )
    settle(market)
    pay_out(market, 1_000, "bank-of-test")  # left in transit
    top_up(runtime, market.customer, 900)  # left processing: never credited
    world.catch_up(AccountsProjection)
    before = world.dump(AccountsProjection)
    kinds = {row["kind"] for row in before["entries"]}
    assert {"top_up", "payout", "payout_voided", "refund", "hold_captured"} <= kinds
    queries = AccountQueries(world.read_side.query_database)
    assert system_balances(queries, market) == {
        "payments_in": -(DEPOSIT_CENTS + 3_000),
        "payouts_in_transit": 1_000,
        "payments_out": 4_000 + 5_000,
        "platform_revenue": PRICE_2H_CENTS * COMMISSION_BASIS_POINTS // 10_000,
    }

    assert request_rebuild(world.read_side.write_database, AccountsProjection) == 2
    world.catch_up(AccountsProjection)
    assert world.dump(AccountsProjection) == before


def test_an_account_not_yet_projected_is_not_found(world: World) -> None:
    queries = AccountQueries(world.read_side.query_database)
    world.catch_up(AccountsProjection)
    late = world.market.add_customer("late@example.com", 0)
    with pytest.raises(NotFound) as missing:
        queries.account(viewer(late))
    assert missing.value.code == "account_not_found"
    world.catch_up(AccountsProjection)
    assert queries.account(viewer(late)).balance_cents == 0


def test_entry_ids_are_the_derived_ids_of_their_event_and_line() -> None:
    for version in (1, 2, 10, 12_345):
        for line in (0, 1):
            account_id = uuid4()
            assert entry_id_of(account_id, version, line) == derived_id(
                "account-entry", account_id, version, line
            )
