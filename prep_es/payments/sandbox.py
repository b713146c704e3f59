"""The sandbox payment provider: Prep ES's embedded default, in test mode.

No money moves. It answers like a card processor — Stripe's test payment method ids
(``prep_es.payments.sandbox_payment_methods``), idempotent calls, payments and transfers
that settle a little later — and sends signed, Stripe-shaped notifications through an
outbox (``prep_es.payments.sandbox_outbox``), as unruly as a real provider's when
``sandbox_unruly_deliveries`` is on: some twice, a payment's ``processing`` sometimes
after its ``succeeded``. Its state lives in the event store's database (tables
``sandbox_*``), so every process on one database shares one sandbox and one signing
secret. A payment's or a transfer's status is computed from the clock when read.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Final, Literal, Protocol
from uuid import UUID

from aggregates.payment_provider import (
    CURRENCY,
    PaymentStatus,
    PayoutDestinationRefused,
    ProviderNotification,
    ProviderPayment,
    ProviderTransfer,
    TransferMethod,
    TransferStatus,
)
from prep_es.payments.sandbox_notifications import (
    PROVIDER_NAME,
    new_event_id,
    payment_event,
    read_event,
    refund_event,
    transfer_event,
)
from prep_es.payments.sandbox_outbox import Deliver, SandboxOutbox
from prep_es.payments.sandbox_payment_methods import (
    TEST_PAYMENT_METHODS,
    UNKNOWN_PAYMENT_METHOD,
    SandboxPaymentMethod,
)
from prep_es.payments.sandbox_storage import Row, SandboxDatabase, Statements, open_sandbox_database
from prep_es.payments.signatures import sign, verify
from prep_es.store.settings import PostgresLocation, Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "prep-sandbox-signature"
PAYMENT_REFERENCE_PREFIX: Final = "pi_sandbox_"
REFUND_REFERENCE_PREFIX: Final = "re_sandbox_"
PAYOUT_REFERENCE_PREFIX: Final = "tr_sandbox_"
PAYMENT_METHOD_LENGTH_MAX: Final = 255
PAYOUT_DESTINATION_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,100}")
FAILING_DESTINATION_PREFIX: Final = "fail"
"""A payout destination starting with it takes the payout, which then fails
(``account_closed``): a way to try what a failed payout does."""
DUPLICATE_PROBABILITY: Final = 1 / 3
DUPLICATE_LATENESS_S_MIN: Final = 0.05
DUPLICATE_LATENESS_S_SPREAD: Final = 0.45
OUT_OF_ORDER_PROBABILITY: Final = 0.5
OUT_OF_ORDER_LATENESS_S_MAX: Final = 0.2


_PAYMENT_COLUMNS: Final = (
    "reference, top_up_id, amount_cents, outcome, failure_code, created_at, settles_at"
)
_TRANSFER_COLUMNS: Final = (
    "reference, payout_id, method, amount_cents, outcome, failure_code, created_at, settles_at"
)


class _TransferNotification(Protocol):
    """``refund_event`` or ``transfer_event``, its counterpart given."""

    def __call__(
        self,
        event_id: str,
        status: TransferStatus,
        created_s: float,
        *,
        reference: str,
        payout_id: UUID,
        amount_cents: int,
        failure_code: str | None,
    ) -> bytes: ...


class SandboxProvider:
    """The sandbox, as a :class:`~aggregates.payment_provider.PaymentProvider`, plus what
    tests and the CLI need: :meth:`notification_headers`, :meth:`start_delivering`,
    :meth:`deliver_due`, :meth:`undelivered_count` and :meth:`close`. Thread-safe."""

    def __init__(
        self,
        database: SandboxDatabase,
        settings: Settings,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self._database = database
        self._clock = clock
        self._rng = rng
        self._notification_delay_s = settings.sandbox_notification_delay_s
        self._settle_delay_s = settings.sandbox_settle_delay_s
        self._unruly = settings.sandbox_unruly_deliveries
        self._tolerance_s = settings.webhook_tolerance_s
        self._secret = database.signing_secret()
        self._outbox = SandboxOutbox(database, clock, self.notification_headers)

    @classmethod
    def open(
        cls,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        rng: random.Random | None = None,
    ) -> SandboxProvider:
        """The sandbox of ``settings.database`` (its tables made if missing)."""
        database = open_sandbox_database(settings.database)
        try:
            provider = cls(database, settings, clock, rng or random.Random())
        except BaseException:
            database.close()
            raise
        if isinstance(settings.database, PostgresLocation):
            # A shared deployment on the sandbox lets anyone top up with a test card.
            logger.warning(
                "sandbox payment provider (test mode) on PostgreSQL: test cards credit "
                "real accounts; set PREP_ES_PAYMENTS_PROVIDER=stripe and "
                "PREP_ES_ENV=production for a deployment that takes real money",
                extra={"provider": PROVIDER_NAME, "test_mode": True},
            )
        else:
            logger.info(
                "sandbox payment provider (test mode): no real money moves",
                extra={"provider": PROVIDER_NAME, "test_mode": True},
            )
        return provider

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    @property
    def test_mode(self) -> bool:
        return True

    def create_payment(
        self, top_up_id: UUID, amount_cents: int, payment_method: str
    ) -> ProviderPayment:
        assert amount_cents > 0, amount_cents
        now_s = self._now_s()
        method = TEST_PAYMENT_METHODS.get(payment_method, UNKNOWN_PAYMENT_METHOD)
        reference = PAYMENT_REFERENCE_PREFIX + secrets.token_hex(12)
        settles_s = now_s + (self._settle_delay_s if method.settles_after_delay else 0.0)
        with self._database.transaction() as statements:
            inserted = statements.execute(
                f"INSERT INTO sandbox_payments ({_PAYMENT_COLUMNS}, payment_method) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (top_up_id) DO NOTHING "
                "RETURNING reference",
                (
                    reference,
                    str(top_up_id),
                    amount_cents,
                    method.outcome.value,
                    method.failure_code,
                    now_s,
                    settles_s,
                    payment_method[:PAYMENT_METHOD_LENGTH_MAX],
                ),
            )
            if inserted:
                self._schedule_payment_notifications(
                    statements, reference, top_up_id, amount_cents, method, now_s, settles_s
                )
            rows = statements.execute(
                f"SELECT {_PAYMENT_COLUMNS} FROM sandbox_payments WHERE top_up_id = ?",
                (str(top_up_id),),
            )
        if inserted:
            self._outbox.wake()
        return self._payment_of(rows[0], now_s)

    def find_payment(self, reference: str) -> ProviderPayment | None:
        now_s = self._now_s()
        with self._database.transaction() as statements:
            rows = statements.execute(
                f"SELECT {_PAYMENT_COLUMNS} FROM sandbox_payments WHERE reference = ?",
                (reference,),
            )
        return self._payment_of(rows[0], now_s) if rows else None

    def refund_payment(
        self, payout_id: UUID, payment_reference: str, amount_cents: int
    ) -> ProviderTransfer:
        """A refund that fails at once (``charge_not_found``: no such payment;
        ``charge_not_refundable``: it has not succeeded; ``amount_too_large``: more than
        is left of it), or one pending until ``sandbox_notification_delay_s`` later."""
        assert amount_cents > 0, amount_cents
        now_s = self._now_s()
        with self._database.transaction() as statements:
            existing = self._transfer_rows(statements, payout_id)
            if existing:
                return self._transfer_of(existing[0], now_s)
            failure_code = self._refund_refusal(statements, payment_reference, amount_cents, now_s)
            outcome = TransferStatus.PAID if failure_code is None else TransferStatus.FAILED
            settles_s = now_s + (self._notification_delay_s if failure_code is None else 0.0)
            inserted = self._insert_transfer(
                statements,
                reference=REFUND_REFERENCE_PREFIX + secrets.token_hex(12),
                payout_id=payout_id,
                method=TransferMethod.REFUND,
                amount_cents=amount_cents,
                outcome=outcome,
                failure_code=failure_code,
                now_s=now_s,
                settles_s=settles_s,
                counterpart=("payment_reference", payment_reference),
                notification=partial(refund_event, payment_reference=payment_reference),
            )
            rows = self._transfer_rows(statements, payout_id)
        if inserted:
            self._outbox.wake()
        return self._transfer_of(rows[0], now_s)

    def send_payout(self, payout_id: UUID, destination: str, amount_cents: int) -> ProviderTransfer:
        """A payout pending until ``sandbox_notification_delay_s`` later, then paid — or
        failed (``account_closed``) if ``destination`` starts with ``fail``."""
        assert amount_cents > 0, amount_cents
        self.check_payout_destination(destination)
        now_s = self._now_s()
        failing = destination.startswith(FAILING_DESTINATION_PREFIX)
        outcome = TransferStatus.FAILED if failing else TransferStatus.PAID
        failure_code = "account_closed" if failing else None
        settles_s = now_s + self._notification_delay_s
        with self._database.transaction() as statements:
            inserted = self._insert_transfer(
                statements,
                reference=PAYOUT_REFERENCE_PREFIX + secrets.token_hex(12),
                payout_id=payout_id,
                method=TransferMethod.PAYOUT,
                amount_cents=amount_cents,
                outcome=outcome,
                failure_code=failure_code,
                now_s=now_s,
                settles_s=settles_s,
                counterpart=("destination", destination),
                notification=partial(transfer_event, destination=destination),
            )
            rows = self._transfer_rows(statements, payout_id)
        if inserted:
            self._outbox.wake()
        return self._transfer_of(rows[0], now_s)

    def check_payout_destination(self, destination: str) -> None:
        if not PAYOUT_DESTINATION_PATTERN.fullmatch(destination):
            raise PayoutDestinationRefused(
                "a sandbox payout destination is 1 to 100 letters, digits, '_', '.' or '-'",
                field="destination",
            )

    def read_notification(
        self, payload: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderNotification:
        header = next(
            (value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER), None
        )
        verify(payload, header, self._secret, now, self._tolerance_s)
        return read_event(payload)

    def payments_since(self, since: datetime | None) -> list[ProviderPayment]:
        now_s = self._now_s()
        with self._database.transaction() as statements:
            rows = statements.execute(
                f"SELECT {_PAYMENT_COLUMNS} FROM sandbox_payments WHERE created_at >= ? "
                "ORDER BY created_at, reference",
                (_since_s(since),),
            )
        return [self._payment_of(row, now_s) for row in rows]

    def transfers_since(self, since: datetime | None) -> list[ProviderTransfer]:
        now_s = self._now_s()
        with self._database.transaction() as statements:
            rows = statements.execute(
                f"SELECT {_TRANSFER_COLUMNS} FROM sandbox_transfers WHERE created_at >= ? "
                "ORDER BY created_at, reference",
                (_since_s(since),),
            )
        return [self._transfer_of(row, now_s) for row in rows]

    def notification_headers(self, payload: bytes) -> dict[str, str]:
        """The headers that sign ``payload`` now, as a delivered notification has them."""
        return {SIGNATURE_HEADER: sign(payload, self._secret, int(self._now_s()))}

    def start_delivering(self, deliver: Deliver) -> None:
        """Deliver due notifications to ``deliver`` from a daemon thread until
        :meth:`close`; a delivery that raises is tried again later."""
        self._outbox.start(deliver)

    def deliver_due(self, deliver: Deliver) -> int:
        """Deliver every notification due now, in this thread; the number delivered."""
        return self._outbox.deliver_due(deliver)

    def undelivered_count(self) -> int:
        return self._outbox.undelivered_count()

    def close(self) -> None:
        self._outbox.stop()
        self._database.close()

    def _now_s(self) -> float:
        now = self._clock()
        assert now.tzinfo is not None, "the sandbox's clock must tell an aware time"
        return now.timestamp()

    def _enqueue(
        self, statements: Statements, event_id: str, payload: bytes, fact_s: float
    ) -> None:
        """Schedule a notification of a fact of ``fact_s``; unruly, sometimes twice."""
        due_s = fact_s + self._notification_delay_s
        self._outbox.enqueue(statements, event_id, payload, due_s)
        if self._unruly and self._rng.random() < DUPLICATE_PROBABILITY:
            lateness_s = DUPLICATE_LATENESS_S_MIN + self._rng.random() * DUPLICATE_LATENESS_S_SPREAD
            self._outbox.enqueue(statements, event_id, payload, due_s + lateness_s)

    def _schedule_payment_notifications(
        self,
        statements: Statements,
        reference: str,
        top_up_id: UUID,
        amount_cents: int,
        method: SandboxPaymentMethod,
        now_s: float,
        settles_s: float,
    ) -> None:
        steps = [(method.outcome, settles_s)]
        if method.settles_after_delay:
            processing_s = now_s
            if self._unruly and self._rng.random() < OUT_OF_ORDER_PROBABILITY:
                # Told late: due after the success it came before.
                processing_s = settles_s + self._rng.random() * OUT_OF_ORDER_LATENESS_S_MAX
            steps.insert(0, (PaymentStatus.PROCESSING, processing_s))
        for status, fact_s in steps:
            event_id = new_event_id()
            payload = payment_event(
                event_id,
                status,
                # The processing event says when it happened, however late it is told.
                now_s if status is PaymentStatus.PROCESSING else fact_s,
                reference=reference,
                top_up_id=top_up_id,
                amount_cents=amount_cents,
                failure_code=method.failure_code if status is PaymentStatus.FAILED else None,
            )
            self._enqueue(statements, event_id, payload, fact_s)

    def _insert_transfer(
        self,
        statements: Statements,
        *,
        reference: str,
        payout_id: UUID,
        method: TransferMethod,
        amount_cents: int,
        outcome: TransferStatus,
        failure_code: str | None,
        now_s: float,
        settles_s: float,
        counterpart: tuple[Literal["payment_reference", "destination"], str],
        notification: _TransferNotification,
    ) -> bool:
        """Record a transfer that comes to ``outcome`` at ``settles_s``, with its
        counterpart (a refund's payment, a payout's destination), and schedule its
        notifications, unless its payout has a transfer already; whether it was recorded."""
        column, value = counterpart
        inserted = statements.execute(
            f"INSERT INTO sandbox_transfers ({_TRANSFER_COLUMNS}, {column}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payout_id) DO NOTHING "
            "RETURNING reference",
            (
                reference,
                str(payout_id),
                method.value,
                amount_cents,
                outcome.value,
                failure_code,
                now_s,
                settles_s,
                value,
            ),
        )
        if not inserted:
            return False
        for status, created_s in self._transfer_steps(outcome, now_s, settles_s):
            event_id = new_event_id()
            payload = notification(
                event_id,
                status,
                created_s,
                reference=reference,
                payout_id=payout_id,
                amount_cents=amount_cents,
                failure_code=failure_code if status is TransferStatus.FAILED else None,
            )
            self._enqueue(statements, event_id, payload, created_s)
        return True

    @staticmethod
    def _transfer_steps(
        outcome: TransferStatus, now_s: float, settles_s: float
    ) -> list[tuple[TransferStatus, float]]:
        """The statuses a transfer's notifications tell, with when each happened."""
        if settles_s <= now_s and outcome is TransferStatus.FAILED:
            return [(outcome, now_s)]  # refused at once: nothing was ever pending
        return [(TransferStatus.PENDING, now_s), (outcome, settles_s)]

    def _refund_refusal(
        self, statements: Statements, payment_reference: str, amount_cents: int, now_s: float
    ) -> str | None:
        rows = statements.execute(
            f"SELECT {_PAYMENT_COLUMNS} FROM sandbox_payments WHERE reference = ?"
            + self._database.lock_rows,
            (payment_reference,),
        )
        if not rows:
            return "charge_not_found"
        payment = self._payment_of(rows[0], now_s)
        if payment.status is not PaymentStatus.SUCCEEDED:
            return "charge_not_refundable"
        refunded = statements.execute(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM sandbox_transfers "
            "WHERE payment_reference = ? AND outcome <> ?",
            (payment_reference, TransferStatus.FAILED.value),
        )
        if int(refunded[0][0]) + amount_cents > payment.amount_cents:
            return "amount_too_large"
        return None

    @staticmethod
    def _transfer_rows(statements: Statements, payout_id: UUID) -> list[Row]:
        return statements.execute(
            f"SELECT {_TRANSFER_COLUMNS} FROM sandbox_transfers WHERE payout_id = ?",
            (str(payout_id),),
        )

    @staticmethod
    def _payment_of(row: Row, now_s: float) -> ProviderPayment:
        reference, top_up_id, amount_cents, outcome, failure_code, created_s, settles_s = row
        settled = settles_s <= now_s
        return ProviderPayment(
            reference=reference,
            top_up_id=UUID(top_up_id),
            amount_cents=int(amount_cents),
            currency=CURRENCY,
            status=PaymentStatus(outcome) if settled else PaymentStatus.PROCESSING,
            created_at=_datetime_of(created_s),
            failure_code=failure_code if settled else None,
        )

    @staticmethod
    def _transfer_of(row: Row, now_s: float) -> ProviderTransfer:
        reference, payout_id, method, amount_cents, outcome, failure_code, created_s, settles_s = (
            row
        )
        settled = settles_s <= now_s
        return ProviderTransfer(
            reference=reference,
            payout_id=UUID(payout_id),
            method=TransferMethod(method),
            amount_cents=int(amount_cents),
            currency=CURRENCY,
            status=TransferStatus(outcome) if settled else TransferStatus.PENDING,
            created_at=_datetime_of(created_s),
            failure_code=failure_code if settled else None,
        )


def _since_s(since: datetime | None) -> float:
    return 0.0 if since is None else since.timestamp()


def _datetime_of(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)
