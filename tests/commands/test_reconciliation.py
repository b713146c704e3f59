"""Reconciliation finds every difference between the sandbox's records and the ledger,
on both backends, and none once every notification arrived."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from commands.payouts import RequestPayout, SetPayoutDestination
from commands.top_ups import RequestTopUp
from prep_es.services.reconciliation import reconcile
from prep_es.services.runtime import Runtime
from tests.support import Marketplace, as_actor, deliver_payment_notifications


def withhold_notifications(runtime: Runtime) -> int:
    """Take what the sandbox has due without handing it over: the webhook never came."""
    withheld = []

    def drop(payload: bytes, headers: Mapping[str, str]) -> None:
        withheld.append(payload)

    sandbox = runtime.payment_provider.sandbox
    assert sandbox is not None
    sandbox.deliver_due(drop)
    return len(withheld)


def kinds(runtime: Runtime) -> list[str]:
    return [difference.kind for difference in reconcile(runtime.app, runtime.payments).differences]


def test_a_confirmed_payment_never_credited_is_found(market: Marketplace) -> None:
    runtime = market.runtime
    assert kinds(runtime) == []
    top_up = runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=4200, payment_method="pm_card_visa"), as_actor(market.customer)
    ).result
    assert withhold_notifications(runtime) == 1
    result = reconcile(runtime.app, runtime.payments)
    [difference] = result.differences
    assert (difference.kind, difference.id, difference.provider_cents) == (
        "payment_not_credited",
        top_up.id,
        4200,
    )
    assert result.provider == "sandbox" and result.test_mode


def test_a_paid_transfer_never_posted_is_found(unhurried_market: Marketplace) -> None:
    market = unhurried_market
    runtime = market.runtime
    refunds = runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=1000), as_actor(market.customer)
    ).result.payouts
    market.clock.advance(timedelta(seconds=2))
    withhold_notifications(runtime)
    assert kinds(runtime) == ["transfer_not_posted"]
    assert reconcile(runtime.app, runtime.payments).differences[0].id == refunds[0].id


def test_no_differences_once_every_notification_arrived(market: Marketplace) -> None:
    runtime = market.runtime
    runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=4200, payment_method="pm_card_visa"), as_actor(market.customer)
    )
    runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=4200, payment_method="pm_card_chargeDeclined"),
        as_actor(market.customer),
    )
    runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=1000), as_actor(market.customer)
    )
    runtime.commands.payouts.set_payout_destination(
        SetPayoutDestination(destination="fail-on-purpose"), as_actor(market.host)
    )
    deliver_payment_notifications(runtime)
    result = reconcile(runtime.app, runtime.payments)
    assert result.differences == []
    assert (result.payments_checked, result.transfers_checked) == (3, 1)
