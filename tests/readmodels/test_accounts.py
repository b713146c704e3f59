"""The accounts read model and its queries, on both backends: balances equal the
aggregates', statements run in order with running figures, and the trial balance
nets to zero with the system accounts' balances derived right."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from commands.accounts import DepositFunds

from aggregates.account import PAYMENTS_ACCOUNT_ID, PLATFORM_REVENUE_ACCOUNT_ID, account_id_for
from aggregates.base import derived_id
from aggregates.errors import NotFound, PermissionDenied
from commands.context import Actor
from prep_es.services.readside import open_read_side
from prep_es.store.settings import Settings
from projections.accounts import AccountsProjection, entry_id_of
from queries.accounts import AccountQueries, StatementEntry
from queries.base import PageRequest, Viewer
from tests.readmodels.test_bookings import PRICE_2H_CENTS, World, live_every_ending, viewer
from tests.support import MutableClock, as_actor, build_marketplace, open_test_runtime

DEPOSIT_CENTS = 1_000_000  # build_marketplace's deposit for its customer
COMMISSION_BASIS_POINTS = 1000


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(Settings(database_url=database_url))
    yield World(build_marketplace(runtime, clock, deposit_cents=DEPOSIT_CENTS), read_side)
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


def aggregate_figures(world: World, actor: Actor) -> tuple[int, int, int]:
    account: Any = world.market.runtime.app.repository.get(account_id_for(actor.user_id))
    return account.balance_cents, account.held_cents, account.available_cents


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
        assert figures == aggregate_figures(world, actor)

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
    assert kinds[0] == "deposit" and customer[0].counter_account == "payments"
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
    assert (host[-1].amount_cents, host[-1].counter_account) == (-story.payout_cents, "payments")


def test_statements_are_newest_first_and_paged(world: World) -> None:
    market = world.market
    for amount in (100, 200, 300):
        market.runtime.commands.accounts.deposit_funds(
            DepositFunds(amount_cents=amount), as_actor(market.customer)
        )
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
    other = market.add_customer("other@example.com", 2_500)
    world.catch_up(AccountsProjection)
    queries = AccountQueries(world.read_side.query_database)

    trial = queries.trial_balance(viewer(market.admin))
    assert trial.total_cents == 0 == sum(line.balance_cents for line in trial.lines)
    assert trial.accounts_total == len(trial.lines)
    lines = {line.account_id: line for line in trial.lines}

    deposits = DEPOSIT_CENTS + 2_500
    payments = lines[PAYMENTS_ACCOUNT_ID]
    assert (payments.account, payments.owner_name, payments.owner_id) == (
        "payments",
        "payments",
        None,
    )
    assert payments.balance_cents == -deposits + story.payout_cents
    revenue = lines[PLATFORM_REVENUE_ACCOUNT_ID]
    captured = PRICE_2H_CENTS // 2 + 3 * PRICE_2H_CENTS
    commissions = sum(
        c * COMMISSION_BASIS_POINTS // 10_000
        for c in (PRICE_2H_CENTS // 2, PRICE_2H_CENTS, PRICE_2H_CENTS, PRICE_2H_CENTS)
    )
    assert (revenue.account, revenue.balance_cents) == ("platform_revenue", commissions)
    assert [line.owner_name for line in trial.lines] == [
        "payments",
        "platform_revenue",
        "customer",
        "host",
        "other",
    ]

    for actor, name in ((market.customer, "customer"), (market.host, "host"), (other, "other")):
        line = lines[account_id_for(actor.user_id)]
        assert (line.account, line.owner_id, line.owner_name) == ("user", actor.user_id, name)
        assert line.balance_cents == aggregate_figures(world, actor)[0]
    assert lines[account_id_for(market.customer.user_id)].balance_cents == DEPOSIT_CENTS - captured
    assert account_id_for(market.admin.user_id) not in lines  # no movement, no line

    paged = queries.trial_balance(viewer(market.admin), PageRequest(limit=1, offset=1))
    assert [line.account for line in paged.lines] == ["platform_revenue"]
    assert (paged.accounts_total, paged.total_cents) == (trial.accounts_total, 0)
    beyond = queries.trial_balance(viewer(market.admin), PageRequest(limit=1, offset=50))
    assert (beyond.lines, beyond.accounts_total, beyond.total_cents) == ([], 5, 0)

    for actor in (market.customer, market.host):
        with pytest.raises(PermissionDenied):
            queries.trial_balance(viewer(actor))


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
