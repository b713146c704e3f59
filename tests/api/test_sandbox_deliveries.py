"""Every process delivers the sandbox's notifications: an API process without projectors
(the scaled shape's replicas) credits a top-up by itself, on each backend."""

from __future__ import annotations

from aggregates.account import Account, account_id_for
from commands.top_ups import RequestTopUp
from prep_es.services.container import open_services
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import JWT_SECRET
from tests.support import as_actor, create_user, store_settings
from tests.waiting import wait_until

DELIVERY_WAIT_S = 30.0


def test_an_api_process_without_projectors_delivers_them(database_url: str) -> None:
    settings = store_settings(
        database_url,
        jwt_secret=JWT_SECRET,
        run_projectors=False,
        sandbox_notification_delay_s=0,
    )
    services = open_services(settings, passwords=Argon2Passwords.cheap_for_tests())
    try:
        runtime = services.runtime
        customer = create_user(runtime, "customer", "customer@example.com")
        runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=1500, payment_method="pm_card_visa"), as_actor(customer)
        )

        def credited() -> bool:
            account: object = runtime.app.repository.get(account_id_for(customer.user_id))
            assert isinstance(account, Account)
            return account.balance_cents == 1500

        wait_until(credited, DELIVERY_WAIT_S, "the sandbox's notification to credit the top-up")
    finally:
        services.close()
