"""Money in and out through the payment provider, on the read side, on both backends:
top-ups, payouts and refunds on the accounts' statements and double-entry ledger (every
event's lines net to zero, the trial balance lists the clearing accounts and sums to
zero), the payments read model of top-ups, payouts and notifications, and its queries
(each user sees only their own; admins the notifications).

The aggregates are driven by their own methods and saved as the command handlers save
them, one transaction per provider answer or notification, so these tests need no
provider."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import count
from typing import Any
from uuid import UUID, uuid4

import pytest

from aggregates.account import (
    PAYMENTS_IN_ACCOUNT_ID,
    PAYMENTS_OUT_ACCOUNT_ID,
    PAYOUTS_IN_TRANSIT_ACCOUNT_ID,
    Account,
    TopUpLimits,
)
from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.payment_notification import NotificationOutcome, PaymentNotification
from aggregates.payment_provider import (
    CURRENCY,
    NotificationSubject,
    PaymentStatus,
    ProviderNotification,
    ProviderPayment,
    ProviderTransfer,
    TransferMethod,
    TransferStatus,
)
from aggregates.payout import Payout
from aggregates.top_up import TopUp
from aggregates.user import User
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.eventstore import PrepApplication, open_application
from projections.accounts import AccountsProjection
from projections.base import Projection
from projections.generations import ensure_ready
from projections.payments import PaymentsProjection
from projections.runners import ProjectionRunner
from queries.accounts import AccountQueries, StatementEntry
from queries.base import PageRequest, Viewer
from queries.payments import PaymentQueries
from tests.support import store_settings

REQUESTED_AT = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)

PROVIDER = "sandbox"
TODAY = date(2030, 1, 7)
LIMITS = TopUpLimits(
    per_top_up_cents_min=1,
    per_top_up_cents_max=10_000_000,
    per_day_cents_max=100_000_000,
    per_day_count_max=1000,
)
READ_MODELS: tuple[type[Projection], ...] = (AccountsProjection, PaymentsProjection)
_references = count(1)


@dataclass(frozen=True)
class Person:
    user: User
    account: Account

    @property
    def viewer(self) -> Viewer:
        return Viewer(user_id=self.user.id, role=self.user.role)


@dataclass
class Payments:
    """An event store driven through the payment aggregates, and a read side on it."""

    app: PrepApplication
    read_side: ReadSide

    def person(self, name: str, role: str) -> Person:
        user = User(
            email=f"{name}@example.com", full_name=name, role=role, password_hash="not-used"
        )
        account = Account(owner_id=user.id)
        self.app.save(user, account)
        return Person(user, account)

    def notification(
        self,
        subject: NotificationSubject,
        subject_id: UUID,
        reference: str,
        status: str,
        amount_cents: int,
        outcome: NotificationOutcome,
        event_id: str | None = None,
    ) -> PaymentNotification:
        return PaymentNotification.received(
            ProviderNotification(
                provider=PROVIDER,
                event_id=event_id or f"evt_{next(_references)}",
                event_type=f"{subject.value}.{status}",
                occurred_at=datetime.now(UTC),
                subject=subject,
                subject_id=subject_id,
                reference=reference,
                status=status,
                amount_cents=amount_cents,
                currency=CURRENCY,
            ),
            outcome,
        )

    def top_up(
        self, person: Person, amount_cents: int, status: PaymentStatus = PaymentStatus.SUCCEEDED
    ) -> TopUp:
        """A top-up asked for, taken by the provider, then settled by a notification."""
        top_up = TopUp(
            owner_id=person.user.id,
            amount_cents=amount_cents,
            payment_method="pm_card_visa",
            provider=PROVIDER,
            requested_at=REQUESTED_AT,
        )
        person.account.start_top_up(top_up.id, amount_cents, TODAY, LIMITS)
        self.app.save(top_up, person.account)
        reference = f"pi_{next(_references)}"
        top_up.record_payment_created(
            ProviderPayment(
                reference=reference,
                top_up_id=top_up.id,
                amount_cents=amount_cents,
                currency=CURRENCY,
                status=PaymentStatus.PROCESSING,
                created_at=datetime.now(UTC),
            )
        )
        self.app.save(top_up)
        failure_code = None if status == PaymentStatus.SUCCEEDED else "card_declined"
        outcome = top_up.follow_provider(status, reference, amount_cents, CURRENCY, failure_code)
        if status == PaymentStatus.SUCCEEDED:
            person.account.credit_top_up(top_up.id, amount_cents, reference)
        notification = self.notification(
            NotificationSubject.PAYMENT, top_up.id, reference, status.value, amount_cents, outcome
        )
        self.app.save(top_up, person.account, notification)
        return top_up

    def payout(self, person: Person, amount_cents: int, destination: str) -> Payout:
        """A host's payout, reserved and submitted (pending)."""
        person.account.set_payout_destination(destination)
        payout = Payout(
            owner_id=person.user.id,
            amount_cents=amount_cents,
            method=TransferMethod.PAYOUT.value,
            destination=destination,
            top_up_id=None,
            payment_reference=None,
            provider=PROVIDER,
            requested_at=REQUESTED_AT,
        )
        person.account.reserve_payout(payout.id, amount_cents)
        self.app.save(payout, person.account)
        self._submitted(payout, TransferMethod.PAYOUT)
        return payout

    def refund(self, person: Person, amount_cents: int) -> Payout:
        """A customer's withdrawal of one refund, reserved and submitted (pending)."""
        (plan,) = person.account.plan_refunds(amount_cents)
        refund = Payout(
            owner_id=person.user.id,
            amount_cents=amount_cents,
            method=TransferMethod.REFUND.value,
            destination=None,
            top_up_id=plan.top_up_id,
            payment_reference=plan.payment_reference,
            provider=PROVIDER,
            requested_at=REQUESTED_AT,
        )
        person.account.reserve_refund(refund.id, plan)
        self.app.save(refund, person.account)
        self._submitted(refund, TransferMethod.REFUND)
        return refund

    def _submitted(self, payout: Payout, method: TransferMethod) -> None:
        settlement = payout.record_transfer_created(
            ProviderTransfer(
                reference=f"tr_{next(_references)}",
                payout_id=payout.id,
                method=method,
                amount_cents=payout.amount_cents,
                currency=CURRENCY,
                status=TransferStatus.PENDING,
                created_at=datetime.now(UTC),
            )
        )
        assert settlement is None
        self.app.save(payout)

    def settle(self, person: Person, payout: Payout, status: TransferStatus) -> None:
        """The provider's notification that ``payout`` paid, failed or was canceled."""
        assert payout.transfer_reference is not None
        outcome, settlement = payout.follow_provider(
            status,
            payout.transfer_reference,
            payout.amount_cents,
            CURRENCY,
            None if status == TransferStatus.PAID else "account_closed",
        )
        if status == TransferStatus.PAID:
            person.account.post_payout(payout.id)
        else:
            person.account.void_payout(payout.id, payout.top_up_id)
        assert settlement is not None
        notification = self.notification(
            NotificationSubject.TRANSFER,
            payout.id,
            payout.transfer_reference,
            status.value,
            payout.amount_cents,
            outcome,
        )
        self.app.save(payout, person.account, notification)

    def catch_up(self) -> None:
        for projection in READ_MODELS:
            ensure_ready(self.read_side.write_database, projection)
            ProjectionRunner(
                projection, self.app, self.read_side.write_database, batch_size=7
            ).catch_up()

    def dump(self, projection: type[Projection]) -> dict[str, list[dict[str, Any]]]:
        with self.read_side.query_database.reading() as sql:
            return {
                table: sql.fetchall(f"SELECT * FROM {projection.view(table)} ORDER BY 1, 2, 3")
                for table in projection.tables
            }

    def ledger(self) -> list[dict[str, Any]]:
        with self.read_side.query_database.reading() as sql:
            return sql.fetchall(
                "SELECT position, line, account_id, amount_cents, kind "
                f"FROM {AccountsProjection.view('ledger')} ORDER BY position, line"
            )

    def account_version(self, person: Person) -> int:
        with self.read_side.query_database.reading() as sql:
            return int(
                sql.scalar(
                    f"SELECT version FROM {AccountsProjection.view('accounts')} "
                    "WHERE account_id = %s",
                    (self.id_value(person.account.id),),
                )
            )

    def id_value(self, value: UUID) -> Any:
        return value if self.read_side.write_database.dialect == "postgresql" else str(value)


@pytest.fixture
def payments(database_url: str) -> Iterator[Payments]:
    app = open_application(store_settings(database_url))
    read_side = open_read_side(store_settings(database_url))
    yield Payments(app, read_side)
    read_side.close()
    app.close()


def statement(payments: Payments, person: Person) -> list[StatementEntry]:
    """Every entry, oldest first."""
    page = AccountQueries(payments.read_side.query_database).entries(
        person.viewer, PageRequest(limit=100)
    )
    assert page.total == len(page.items)
    return page.items[::-1]


def test_money_in_and_out_on_statements_and_the_ledger(payments: Payments) -> None:
    customer = payments.person("customer", "customer")
    host = payments.person("host", "host")
    payments.top_up(customer, 50_000)
    payments.top_up(customer, 9_999, PaymentStatus.FAILED)  # declined: no money moves
    voided_refund = payments.refund(customer, 10_000)
    payments.settle(customer, voided_refund, TransferStatus.FAILED)
    paid_refund = payments.refund(customer, 5_000)
    payments.settle(customer, paid_refund, TransferStatus.PAID)
    pending_refund = payments.refund(customer, 1_000)
    # Hosts are paid from bookings; here the host's money comes in as a top-up alike.
    payments.top_up(host, 30_000)
    paid_payout = payments.payout(host, 20_000, "acct_host")
    payments.settle(host, paid_payout, TransferStatus.PAID)
    voided_payout = payments.payout(host, 4_000, "acct_host")
    payments.settle(host, voided_payout, TransferStatus.CANCELED)
    payments.catch_up()

    in_transit = PAYOUTS_IN_TRANSIT_ACCOUNT_ID
    customer_entries = statement(payments, customer)
    assert [
        (entry.kind, entry.amount_cents, entry.balance_after_cents, entry.counter_account)
        for entry in customer_entries
    ] == [
        ("top_up", 50_000, 50_000, "payments_in"),
        ("refund", -10_000, 40_000, "payouts_in_transit"),
        ("payout_voided", 10_000, 50_000, "payouts_in_transit"),
        ("refund", -5_000, 45_000, "payouts_in_transit"),
        ("refund", -1_000, 44_000, "payouts_in_transit"),  # the paid refund posted: no entry
    ]
    assert customer_entries[0].counter_account_id == PAYMENTS_IN_ACCOUNT_ID
    assert {entry.counter_account_id for entry in customer_entries[1:]} == {in_transit}
    assert {entry.held_delta_cents for entry in customer_entries} == {0}
    host_entries = statement(payments, host)
    assert [(entry.kind, entry.amount_cents) for entry in host_entries] == [
        ("top_up", 30_000),
        ("payout", -20_000),
        ("payout", -4_000),
        ("payout_voided", 4_000),
    ]

    accounts = AccountQueries(payments.read_side.query_database)
    for person in (customer, host):
        balance = accounts.account(person.viewer)
        assert balance.balance_cents == person.account.balance_cents
        assert balance.available_cents == person.account.available_cents
        # A posted payout moves no user money, and still advances the row's version.
        assert payments.account_version(person) == person.account.version

    lines = payments.ledger()
    by_position: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        by_position.setdefault(int(line["position"]), []).append(line)
    for position_lines in by_position.values():
        assert sum(int(line["amount_cents"]) for line in position_lines) == 0
    kinds = [tuple(line["kind"] for line in group) for group in by_position.values()]
    assert kinds == [
        ("top_up", "top_up"),
        ("refund", "refund"),
        ("payout_voided", "payout_voided"),
        ("refund", "refund"),
        ("payout_posted", "payout_posted"),
        ("refund", "refund"),
        ("top_up", "top_up"),
        ("payout", "payout"),
        ("payout_posted", "payout_posted"),
        ("payout", "payout"),
        ("payout_voided", "payout_voided"),
    ]

    admin = payments.person("admin", "admin")
    trial = accounts.trial_balance(admin.viewer)
    assert trial.total_cents == 0 == sum(line.balance_cents for line in trial.lines)
    assert [(line.account, line.owner_name, line.balance_cents) for line in trial.lines] == [
        ("payments_in", "payments_in", -80_000),
        ("payouts_in_transit", "payouts_in_transit", 1_000),  # the pending refund
        ("payments_out", "payments_out", 25_000),
        ("user", "customer", 44_000),
        ("user", "host", 10_000),
    ]
    assert [line.account_id for line in trial.lines][:3] == [
        PAYMENTS_IN_ACCOUNT_ID,
        PAYOUTS_IN_TRANSIT_ACCOUNT_ID,
        PAYMENTS_OUT_ACCOUNT_ID,
    ]
    assert pending_refund.is_pending


def test_the_payments_read_model_follows_top_ups_payouts_and_notifications(
    payments: Payments,
) -> None:
    customer = payments.person("customer", "customer")
    host = payments.person("host", "host")
    admin = payments.person("admin", "admin")
    credited = payments.top_up(customer, 50_000)
    declined = payments.top_up(customer, 7_000, PaymentStatus.FAILED)
    refund = payments.refund(customer, 2_500)
    payments.top_up(host, 30_000)
    payout = payments.payout(host, 20_000, "acct_host")
    payments.settle(host, payout, TransferStatus.PAID)
    failed_payout = payments.payout(host, 1_000, "acct_host")
    payments.settle(host, failed_payout, TransferStatus.FAILED)
    # A notification that changed nothing is recorded all the same.
    assert credited.payment_reference is not None
    payments.app.save(
        payments.notification(
            NotificationSubject.PAYMENT,
            credited.id,
            credited.payment_reference,
            "succeeded",
            50_000,
            NotificationOutcome.ALREADY_KNOWN,
        )
    )
    payments.catch_up()
    queries = PaymentQueries(payments.read_side.query_database)

    top_ups = queries.top_ups(customer.viewer)
    assert [top_up.id for top_up in top_ups.items] == [declined.id, credited.id]
    assert top_ups.total == 2
    succeeded = queries.top_up(customer.viewer, credited.id)
    assert (succeeded.status, succeeded.credited, succeeded.amount_cents) == (
        "succeeded",
        True,
        50_000,
    )
    assert (succeeded.payment_method, succeeded.provider) == ("pm_card_visa", PROVIDER)
    assert succeeded.payment_reference == credited.payment_reference
    assert succeeded.owner_id == customer.user.id
    failed = queries.top_up(customer.viewer, declined.id)
    assert (failed.status, failed.credited, failed.failure_code) == (
        "failed",
        False,
        "card_declined",
    )

    (pending,) = queries.payouts(customer.viewer).items
    assert (pending.id, pending.method, pending.status, pending.amount_cents) == (
        refund.id,
        "refund",
        "pending",
        2_500,
    )
    assert (pending.top_up_id, pending.payment_reference) == (
        credited.id,
        credited.payment_reference,
    )
    assert pending.transfer_reference == refund.transfer_reference is not None
    host_payouts = queries.payouts(host.viewer)
    assert [(p.id, p.status, p.failure_code) for p in host_payouts.items] == [
        (failed_payout.id, "failed", "account_closed"),
        (payout.id, "paid", None),
    ]
    assert {p.destination for p in host_payouts.items} == {"acct_host"}
    assert queries.payout(host.viewer, payout.id).transfer_reference == payout.transfer_reference

    notifications = queries.notifications(admin.viewer)
    assert notifications.total == 6  # two top-ups, two payouts settled, one repeat
    assert [n.outcome for n in notifications.items].count("applied") == 5
    (repeat,) = queries.notifications(admin.viewer, outcome="already_known").items
    assert (repeat.subject, repeat.subject_id, repeat.amount_cents, repeat.currency) == (
        "payment",
        credited.id,
        50_000,
        CURRENCY,
    )
    assert queries.notifications(admin.viewer, outcome="amount_mismatch").total == 0
    with pytest.raises(InvalidRequest) as unknown:
        queries.notifications(admin.viewer, outcome="maybe")
    assert unknown.value.code == "invalid_outcome"
    for person in (customer, host):
        with pytest.raises(PermissionDenied):
            queries.notifications(person.viewer)


def test_nobody_sees_another_users_top_ups_or_payouts(payments: Payments) -> None:
    customer = payments.person("customer", "customer")
    other = payments.person("other", "customer")
    host = payments.person("host", "host")
    admin = payments.person("admin", "admin")
    top_up = payments.top_up(customer, 5_000)
    refund = payments.refund(customer, 1_000)
    payments.catch_up()
    queries = PaymentQueries(payments.read_side.query_database)

    for stranger in (other, host, admin):
        with pytest.raises(NotFound) as hidden:
            queries.top_up(stranger.viewer, top_up.id)
        assert hidden.value.code == "top_up_not_found"
        with pytest.raises(NotFound) as hidden:
            queries.payout(stranger.viewer, refund.id)
        assert hidden.value.code == "payout_not_found"
        assert queries.top_ups(stranger.viewer).total == 0
        assert queries.payouts(stranger.viewer).total == 0
    # One that does not exist is answered alike.
    with pytest.raises(NotFound) as missing:
        queries.top_up(customer.viewer, uuid4())
    assert missing.value.code == "top_up_not_found"
    with pytest.raises(NotFound) as missing:
        queries.payout(customer.viewer, top_up.id)  # a top-up's id is no payout's
    assert missing.value.code == "payout_not_found"


def test_top_ups_and_payouts_are_newest_first_and_paged(payments: Payments) -> None:
    customer = payments.person("customer", "customer")
    top_ups = [payments.top_up(customer, amount) for amount in (100, 200, 300, 400, 500)]
    refunds = [payments.refund(customer, amount) for amount in (50, 60, 70)]
    payments.catch_up()
    queries = PaymentQueries(payments.read_side.query_database)
    viewer = customer.viewer

    pages = [queries.top_ups(viewer, PageRequest(limit=2, offset=offset)) for offset in (0, 2, 4)]
    assert [[t.amount_cents for t in page.items] for page in pages] == [
        [500, 400],
        [300, 200],
        [100],
    ]
    assert {(page.total, page.limit) for page in pages} == {(5, 2)}
    assert [t.id for page in pages for t in page.items] == [t.id for t in reversed(top_ups)]
    beyond = queries.top_ups(viewer, PageRequest(limit=2, offset=10))
    assert (beyond.items, beyond.total, beyond.offset) == ([], 5, 10)

    first = queries.payouts(viewer, PageRequest(limit=2))
    assert [p.amount_cents for p in first.items] == [70, 60]
    assert first.total == 3
    rest = queries.payouts(viewer, PageRequest(limit=2, offset=2))
    assert [p.id for p in rest.items] == [refunds[0].id]
    assert queries.payouts(viewer, PageRequest(offset=3)).total == 3


def test_applying_every_event_again_changes_nothing(payments: Payments) -> None:
    customer = payments.person("customer", "customer")
    host = payments.person("host", "host")
    payments.top_up(customer, 50_000)
    payments.top_up(customer, 1_000, PaymentStatus.CANCELED)
    refund = payments.refund(customer, 3_000)
    payments.settle(customer, refund, TransferStatus.FAILED)
    payments.top_up(host, 10_000)
    payout = payments.payout(host, 10_000, "acct_host")
    payments.settle(host, payout, TransferStatus.PAID)
    payments.catch_up()
    before = {projection.name: payments.dump(projection) for projection in READ_MODELS}
    assert all(before[name][table] for name in before for table in before[name])

    database = payments.read_side.write_database
    for projection_class in READ_MODELS:
        projection = projection_class(1, database.dialect)
        notifications = payments.app.recorder.select_notifications(
            start=0, limit=10_000, topics=projection_class.topics()
        )
        with database.transaction() as sql:
            projection.before_batch()
            for notification in notifications:
                event = payments.app.mapper.to_domain_event(notification)
                projection.apply(event, notification.id, sql)
            projection.after_batch(sql)
        assert payments.dump(projection_class) == before[projection_class.name]
