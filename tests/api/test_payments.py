"""Money through the payment provider over HTTP, on each backend: top-ups credited only
once the provider's notification confirms them, payouts and withdrawals reserved at once
and settled by the provider, and the audit's ways of creating money closed.

The sandbox's notifications go over the webhook route only when a test posts them
(``tests.api.payments``); the flows behind the routes are tested in
``tests/commands/test_payments.py``. Windows are placed relative to the module's clock,
which tests move forward only, by whole days.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.api.conftest import API, User, assert_problem
from tests.api.payments import (
    RACERS,
    TOP_UP_CENTS_MAX,
    PaymentsApi,
    balance,
    open_payments_api,
    race,
)


@pytest.fixture(scope="module")
def payments(module_database_url: str) -> Iterator[PaymentsApi]:
    with open_payments_api(module_database_url) as opened:
        yield opened


# --- top-ups --------------------------------------------------------------------------


def test_a_top_up_is_processing_until_its_notification_credits_it(
    payments: PaymentsApi,
) -> None:
    customer = payments.api.register("customer")
    response = payments.top_up(customer, "25.00")
    assert response.status_code == 202, response.text
    started = response.json()
    assert int(response.headers["X-Prep-Position"]) == started["position"]
    assert started["status"] == "processing"
    assert started["test_mode"] is True
    assert (started["amount"], started["payment_method"]) == ("25.00", "pm_card_visa")
    assert started["provider"] == "sandbox" and started["failure_code"] is None
    assert started["payment_reference"].startswith("pi_sandbox_")

    path = f"/accounts/me/top-ups/{started['id']}"
    assert balance(payments, customer, started["position"]) == "0.00"
    waiting = payments.read(path, customer, started["position"])
    assert (waiting["status"], waiting["credited"]) == ("processing", False)
    assert payments.account_of(customer).balance_cents == 0

    delivered = payments.deliver()
    assert delivered > started["position"]
    assert balance(payments, customer, delivered) == "25.00"
    confirmed = payments.read(path, customer, delivered)
    assert (confirmed["status"], confirmed["credited"]) == ("succeeded", True)
    [entry] = payments.read("/accounts/me/entries", customer, delivered)["items"]
    assert (entry["kind"], entry["amount"], entry["counter_account"]) == (
        "top_up",
        "25.00",
        "payments_in",
    )
    assert payments.account_of(customer).balance_cents == 2500


@pytest.mark.parametrize(
    ("payment_method", "failure_code"),
    [
        ("pm_card_chargeDeclined", "card_declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
        ("pm_card_no_such_card", "payment_method_unknown"),
    ],
)
def test_a_declined_card_fails_the_top_up_and_credits_nothing(
    payments: PaymentsApi, payment_method: str, failure_code: str
) -> None:
    customer = payments.api.register("customer")
    declined = payments.api.ok(payments.top_up(customer, "40.00", payment_method), 202)
    assert (declined["status"], declined["failure_code"]) == ("failed", failure_code)
    assert declined["test_mode"] is True
    delivered = payments.deliver()
    assert balance(payments, customer, delivered) == "0.00"
    seen = payments.read(f"/accounts/me/top-ups/{declined['id']}", customer, delivered)
    assert (seen["status"], seen["failure_code"], seen["credited"]) == (
        "failed",
        failure_code,
        False,
    )


def test_a_top_up_retried_with_its_idempotency_key_pays_once(payments: PaymentsApi) -> None:
    customer = payments.api.register("customer")
    key = {"Idempotency-Key": f"top-up-{uuid4()}"}
    first = payments.api.ok(payments.top_up(customer, "12.34", headers=key), 202)
    again = payments.api.ok(payments.top_up(customer, "12.34", headers=key), 202)
    assert again["id"] == first["id"]
    assert again["status"] == "processing"
    delivered = payments.deliver()
    # A retry after the confirmation: the same top-up, as it stands now.
    late = payments.api.ok(payments.top_up(customer, "12.34", headers=key), 202)
    assert (late["id"], late["status"]) == (first["id"], "succeeded")
    assert payments.deliver() == 0
    assert balance(payments, customer, delivered) == "12.34"
    assert payments.account_of(customer).balance_cents == 1234
    assert payments.sandbox_payments_of(UUID(first["id"])) == 1
    reused = payments.top_up(customer, "99.00", headers=key)
    assert_problem(reused, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": "10.00", "payment_method": "4242424242424242"}, "invalid_payment_method"),
        ({"amount": "10.00", "payment_method": "4242 4242 4242 4242"}, "invalid_payment_method"),
        ({"amount": "10.00", "payment_method": "card_visa"}, "invalid_payment_method"),
        ({"amount": "10.00", "payment_method": ""}, "validation_error"),
        ({"amount": "10.00", "payment_method": "pm_" + "a" * 253}, "validation_error"),
        ({"amount": "10.00"}, "validation_error"),
        ({"payment_method": "pm_card_visa"}, "validation_error"),
        ({"amount": "0.00", "payment_method": "pm_card_visa"}, "invalid_amount"),
        ({"amount": "0", "payment_method": "pm_card_visa"}, "invalid_amount"),
        ({"amount": "-5.00", "payment_method": "pm_card_visa"}, "validation_error"),
        ({"amount": "1.001", "payment_method": "pm_card_visa"}, "validation_error"),
        ({"amount": 10, "payment_method": "pm_card_visa"}, "validation_error"),
        ({"amount": "1e3", "payment_method": "pm_card_visa"}, "validation_error"),
        ({"amount": "12345678901234.00", "payment_method": "pm_card_visa"}, "validation_error"),
        ({"amount": "9999999999.99", "payment_method": "pm_card_visa"}, "invalid_amount"),
        ({"amount": "10000.01", "payment_method": "pm_card_visa"}, "top_up_limit_exceeded"),
        ({"amount": "10.00", "payment_method": "pm_card_visa", "to": "x"}, "validation_error"),
    ],
)
def test_a_top_up_of_the_wrong_shape_is_422_and_records_nothing(
    payments: PaymentsApi, body: dict[str, Any], code: str
) -> None:
    customer = payments.api.register("customer")
    position = payments.position()
    problem = assert_problem(
        payments.api.post("/accounts/me/top-ups", customer, json=body), 422, code
    )
    assert "4242" not in problem["detail"]  # a card number is never echoed back
    assert payments.position() == position
    assert payments.capture() == []


def test_the_largest_top_up_is_taken(payments: PaymentsApi) -> None:
    customer = payments.api.register("customer")
    largest = f"{TOP_UP_CENTS_MAX // 100}.00"
    assert payments.api.ok(payments.top_up(customer, largest), 202)["status"] == "processing"
    assert balance(payments, customer, payments.deliver()) == largest


def test_top_ups_beyond_the_days_limit_are_422_declined_ones_too(
    payments: PaymentsApi,
) -> None:
    customer = payments.api.register("customer")
    for _ in range(2):
        payments.api.ok(payments.top_up(customer, "10000.00"), 202)
    declined = payments.api.ok(payments.top_up(customer, "4000.00", "pm_card_chargeDeclined"), 202)
    assert declined["status"] == "failed"
    assert_problem(payments.top_up(customer, "1000.01"), 422, "daily_top_up_limit_exceeded")
    assert payments.api.ok(payments.top_up(customer, "1000.00"), 202)["status"] == "processing"
    assert_problem(payments.top_up(customer, "0.01"), 422, "daily_top_up_limit_exceeded")
    assert balance(payments, customer, payments.deliver()) == "21000.00"

    payments.api.clock.advance(timedelta(days=1))  # a new UTC day
    customer = payments.api.log_in(customer.email)
    assert payments.api.ok(payments.top_up(customer, "10000.00"), 202)["status"] == "processing"


@pytest.mark.parametrize("role", ["host", "admin", "analyst"])
def test_only_customers_top_up(payments: PaymentsApi, role: str) -> None:
    user = payments.api.user_with_role(role)
    position = payments.position()
    assert_problem(payments.top_up(user, "10.00"), 403, "forbidden")
    assert payments.position() == position


def test_a_top_up_needs_a_token(payments: PaymentsApi) -> None:
    response = payments.api.post(
        "/accounts/me/top-ups", json={"amount": "10.00", "payment_method": "pm_card_visa"}
    )
    assert_problem(response, 401, "not_authenticated")


# --- the audit's reproductions ---------------------------------------------------------


def test_deposits_are_gone_and_create_no_money(payments: PaymentsApi) -> None:
    customer = payments.customer("50.00")
    position = payments.position()
    for _ in range(2):
        response = payments.api.post(
            "/accounts/me/deposits", customer, json={"amount": "100000000.00"}
        )
        problem = assert_problem(response, 410, "deposits_removed")
        assert "top-ups" in problem["detail"]
        assert "/accounts/me/top-ups" in response.headers["Link"]
    assert payments.position() == position
    assert balance(payments, customer, position) == "50.00"
    assert payments.account_of(customer).balance_cents == 5000


def test_a_host_can_no_longer_deposit_then_pay_out(payments: PaymentsApi) -> None:
    host = payments.api.register("host")
    deposit = payments.api.post("/accounts/me/deposits", host, json={"amount": "1000.00"})
    assert_problem(deposit, 410, "deposits_removed")
    payout = {"amount": "1000.00"}
    assert_problem(
        payments.api.post("/accounts/me/payouts", host, json=payout),
        409,
        "payout_destination_missing",
    )
    payments.api.ok(
        payments.put("/accounts/me/payout-destination", host, json={"destination": "bank-of-test"})
    )
    assert_problem(
        payments.api.post("/accounts/me/payouts", host, json=payout), 402, "insufficient_funds"
    )
    assert payments.capture() == []
    assert payments.account_of(host).balance_cents == 0


# --- payouts --------------------------------------------------------------------------


def host_with_earnings(payments: PaymentsApi) -> tuple[User, int]:
    """A host paid for one completed booking (the clock moves two days), and the position
    of its completion."""
    api = payments.api
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = payments.customer("500.00")
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=1)},
        ),
        201,
    )
    api.ok(api.post(f"/bookings/{booking['id']}/confirm", host))
    api.clock.advance(timedelta(days=2))
    host = api.log_in(host.email)
    completed = api.ok(api.post(f"/bookings/{booking['id']}/complete", host))
    assert payments.account_of(host).balance_cents > 0
    return host, completed["position"]


def set_destination(payments: PaymentsApi, host: User, destination: str) -> dict[str, Any]:
    response = payments.put(
        "/accounts/me/payout-destination", host, json={"destination": destination}
    )
    return payments.api.ok(response)


def test_a_payout_is_reserved_at_once_then_paid(payments: PaymentsApi) -> None:
    host, earned_at = host_with_earnings(payments)
    earned = payments.read("/accounts/me", host, earned_at)["balance"]
    assert earned == "90.00"  # two hours at 50.00, less the 10 % commission
    account = set_destination(payments, host, "bank-of-test")
    assert (account["payout_destination"], account["balance"]) == ("bank-of-test", "90.00")

    response = payments.api.post("/accounts/me/payouts", host, json={"amount": "60.00"})
    assert response.status_code == 201, response.text
    requested = response.json()
    [payout] = requested["payouts"]
    assert (payout["status"], payout["method"], payout["amount"]) == ("pending", "payout", "60.00")
    assert payout["destination"] == "bank-of-test"
    assert payout["transfer_reference"].startswith("tr_sandbox_")
    assert (requested["account"]["balance"], requested["account"]["available"]) == (
        "30.00",
        "30.00",
    )
    assert balance(payments, host, requested["position"]) == "30.00"
    path = f"/accounts/me/payouts/{payout['id']}"
    assert payments.read(path, host, requested["position"])["status"] == "pending"

    delivered = payments.deliver()
    paid = payments.read(path, host, delivered)
    assert (paid["status"], paid["failure_code"]) == ("paid", None)
    assert balance(payments, host, delivered) == "30.00"
    assert_problem(
        payments.api.post("/accounts/me/payouts", host, json={"amount": "30.01"}),
        402,
        "insufficient_funds",
    )


def test_a_payout_that_fails_comes_back_to_the_host(payments: PaymentsApi) -> None:
    host, _ = host_with_earnings(payments)
    set_destination(payments, host, "fail-closed-account")
    requested = payments.api.ok(
        payments.api.post("/accounts/me/payouts", host, json={"amount": "90.00"}), 201
    )
    [payout] = requested["payouts"]
    assert payout["status"] == "pending"
    assert balance(payments, host, requested["position"]) == "0.00"
    delivered = payments.deliver()
    failed = payments.read(f"/accounts/me/payouts/{payout['id']}", host, delivered)
    assert (failed["status"], failed["failure_code"]) == ("failed", "account_closed")
    assert balance(payments, host, delivered) == "90.00"
    kinds = [
        entry["kind"] for entry in payments.read("/accounts/me/entries", host, delivered)["items"]
    ]
    assert kinds[:2] == ["payout_voided", "payout"]


def test_a_host_with_a_destination_and_no_earnings_gets_402(payments: PaymentsApi) -> None:
    host = payments.api.register("host")
    set_destination(payments, host, "bank-of-test")
    assert_problem(
        payments.api.post("/accounts/me/payouts", host, json={"amount": "0.01"}),
        402,
        "insufficient_funds",
    )


def test_who_may_pay_out_and_withdraw(payments: PaymentsApi) -> None:
    customer = payments.customer("20.00")
    host = payments.api.register("host")
    amount = {"amount": "1.00"}
    assert_problem(
        payments.api.post("/accounts/me/payouts", customer, json=amount), 403, "forbidden"
    )
    assert_problem(
        payments.put("/accounts/me/payout-destination", customer, json={"destination": "mine"}),
        403,
        "forbidden",
    )
    assert_problem(
        payments.api.post("/accounts/me/withdrawals", host, json=amount), 403, "forbidden"
    )
    assert_problem(payments.api.post("/accounts/me/payouts", json=amount), 401, "not_authenticated")
    assert_problem(
        payments.api.post("/accounts/me/withdrawals", json=amount), 401, "not_authenticated"
    )
    assert_problem(
        payments.put("/accounts/me/payout-destination", json={"destination": "mine"}),
        401,
        "not_authenticated",
    )


@pytest.mark.parametrize(
    ("destination", "code"),
    [
        ("", "validation_error"),
        ("two words", "payout_destination_invalid"),
        ("x" * 101, "validation_error"),
    ],
)
def test_a_payout_destination_the_provider_refuses_is_422(
    payments: PaymentsApi, destination: str, code: str
) -> None:
    host = payments.api.register("host")
    response = payments.put(
        "/accounts/me/payout-destination", host, json={"destination": destination}
    )
    assert_problem(response, 422, code)


# --- withdrawals ----------------------------------------------------------------------


def test_a_withdrawal_refunds_the_newest_top_ups_first(payments: PaymentsApi) -> None:
    customer = payments.customer("30.00", "20.00")
    top_ups = payments.read("/accounts/me/top-ups", customer, payments.position())["items"]
    newer, older = (top_up["id"] for top_up in top_ups)
    response = payments.api.post("/accounts/me/withdrawals", customer, json={"amount": "35.00"})
    assert response.status_code == 201, response.text
    requested = response.json()
    refunds = [
        (refund["method"], refund["top_up_id"], refund["amount"], refund["status"])
        for refund in requested["payouts"]
    ]
    assert refunds == [
        ("refund", newer, "20.00", "pending"),
        ("refund", older, "15.00", "pending"),
    ]
    assert requested["account"]["balance"] == "15.00"
    assert balance(payments, customer, requested["position"]) == "15.00"
    delivered = payments.deliver()
    for refund in requested["payouts"]:
        seen = payments.read(f"/accounts/me/payouts/{refund['id']}", customer, delivered)
        assert seen["status"] == "paid"
    assert balance(payments, customer, delivered) == "15.00"
    assert_problem(
        payments.api.post("/accounts/me/withdrawals", customer, json={"amount": "15.01"}),
        402,
        "insufficient_funds",
    )


def test_racing_withdrawals_never_reserve_more_than_the_balance(payments: PaymentsApi) -> None:
    customer = payments.customer("30.00", "20.00")
    withdraw_all = {"amount": "50.00"}
    answers = race(
        [
            lambda: payments.api.post("/accounts/me/withdrawals", customer, json=withdraw_all)
            for _ in range(RACERS)
        ]
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 402, 409}, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code == 402:
            assert_problem(answer, 402, "insufficient_funds")
        elif answer.status_code == 409:
            assert_problem(answer, 409, "concurrency_conflict")
    [granted] = [answer.json() for answer in answers if answer.status_code == 201]
    assert sum(int(refund["amount"].replace(".", "")) for refund in granted["payouts"]) == 5000
    account = payments.account_of(customer)
    assert (account.balance_cents, account.available_cents) == (0, 0)
    delivered = payments.deliver()
    assert balance(payments, customer, delivered) == "0.00"


# --- the document ---------------------------------------------------------------------


def test_the_openapi_document_lists_the_payment_routes(payments: PaymentsApi) -> None:
    paths = payments.api.client.get("/openapi.json").json()["paths"]
    expected = {
        ("post", "/accounts/me/top-ups", "202"),
        ("put", "/accounts/me/payout-destination", "200"),
        ("post", "/accounts/me/payouts", "201"),
        ("post", "/accounts/me/withdrawals", "201"),
        ("post", "/accounts/me/deposits", "410"),
        ("post", "/payments/webhooks/{provider}", "200"),
        ("get", "/accounts/me/top-ups", "200"),
        ("get", "/accounts/me/top-ups/{top_up_id}", "200"),
        ("get", "/accounts/me/payouts", "200"),
        ("get", "/accounts/me/payouts/{payout_id}", "200"),
    }
    for method, path, status in expected:
        operation = paths[API + path][method]
        assert operation["summary"] and operation["description"], (method, path)
        assert status in operation["responses"], (method, path)
    webhook = paths[f"{API}/payments/webhooks/{{provider}}"]["post"]
    assert "security" not in webhook or webhook["security"] == []  # public: the provider calls it
    assert "400" in webhook["responses"]
    assert paths[f"{API}/accounts/me/deposits"]["post"].get("deprecated") is True


def test_test_mode_is_said_in_answers_and_readiness(payments: PaymentsApi) -> None:
    api = payments.api
    host = api.register("host")
    api.ok(
        api.client.put(
            f"{API}/accounts/me/payout-destination",
            headers=host.headers,
            json={"destination": "bank-of-test"},
        )
    )
    refused = api.post("/accounts/me/payouts", host, json={"amount": "1.00"})
    assert_problem(refused, 402, "insufficient_funds")
    customer = api.customer("20.00")
    top_up = api.ok(
        api.post(
            "/accounts/me/top-ups",
            customer,
            json={"amount": "5.00", "payment_method": "pm_card_visa"},
        ),
        202,
    )
    assert top_up["test_mode"] is True and top_up["provider"] == "sandbox"
    ready = api.client.get("/readyz").json()
    assert ready["test_mode"] is True
    [check] = [check for check in ready["checks"] if check["name"] == "payments"]
    assert "TEST MODE" in check["detail"]
