"""The Stripe payment provider: top-ups are PaymentIntents, refunds are Refunds and payouts
are Connect Transfers to a host's connected account (``acct_...``).

Each provider holds its own ``stripe.StripeClient`` (never the SDK's module-wide settings),
so two providers never share a key or an address. Every call has a timeout and a few
retries of the SDK's own; what still fails to reach Stripe, or what Stripe answers with
an error of its own (rate limit, authentication, 5xx), is a ``PaymentProviderError``
whose message names the error's kind, status and code, never a key.

Outcomes Stripe decides are results, not errors:

    create_payment   succeeded → succeeded; processing → processing; canceled → canceled;
                     declined (requires_payment_method, CardError) → failed with the
                     decline code: Stripe's ``decline_code`` when it says more than
                     ``generic_decline`` (``insufficient_funds``), else its ``code``
                     (``card_declined``); requires_action → failed
                     ``authentication_required`` (Prep ES has no 3-D Secure step; the
                     PaymentIntent is left to expire, no money moves). A payment method
                     Stripe does not know, or cannot use, makes no PaymentIntent: failed
                     ``payment_method_unknown`` with the reference ``""``.
    refund_payment   succeeded → paid; pending/requires_action → pending; failed → failed;
                     canceled → canceled. Stripe refusing the refund (already refunded,
                     more than the payment, a failed payment) makes no Refund: failed
                     with Stripe's code (``refund_refused`` when it gives none), ``""``.
    send_payout      a Transfer made → pending (its ``transfer.created`` notification
                     says paid); refused → failed with Stripe's code, reference ``""``.

Notifications (``read_notification``) are checked with the SDK's ``WebhookSignature``, then
read by ``prep_es.payments.stripe_notifications``, which says how each event type maps.
Refusals: ``signature_missing`` (no ``stripe-signature`` header), ``invalid_signature`` (no
v1 signature matches the payload with the webhook secret, or the header is malformed or
longer than ``signatures.SIGNATURE_HEADER_LENGTH_MAX``), ``stale_signature`` (signed more
than the tolerance before or after ``now``), and the reader's ``malformed_notification``
(signed, but not a JSON event).

Stripe emulators without Connect answer ``/v1/accounts`` and ``/v1/transfers`` with a bare
404 (not Stripe's JSON error, which Stripe itself always sends): there,
``check_payout_destination`` checks the destination's form only and ``transfers_since``
lists refunds only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import stripe

from aggregates.payment_provider import (
    CURRENCY,
    NotificationRejected,
    PaymentProviderError,
    PaymentStatus,
    PayoutDestinationRefused,
    ProviderNotification,
    ProviderPayment,
    ProviderTransfer,
    TransferMethod,
    TransferStatus,
)
from prep_es.payments.signatures import SIGNATURE_HEADER_LENGTH_MAX
from prep_es.payments.stripe_notifications import (
    PROVIDER_NAME,
    REFUND_STATUSES,
    failure_code_of,
    read_event,
    signature_timestamp_s,
    text_or_none,
    time_of,
    uuid_or_none,
)
from prep_es.store.settings import STRIPE_TEST_KEY_PREFIXES, Settings

SIGNATURE_HEADER: Final = "stripe-signature"
REQUEST_TIMEOUT_S: Final = 20.0
"""A call that has not answered by then is a ``PaymentProviderError`` (after the retries)."""
NETWORK_RETRIES_MAX: Final = 2
"""The SDK retries connection errors, 409s and 5xxs, with the same idempotency key."""
LIST_PAGE_SIZE: Final = 100
"""Stripe's largest page: reconciliation lists in as few calls as it may."""

PAYOUT_DESTINATION_PATTERN: Final = re.compile(r"acct_[A-Za-z0-9]+")


class StripeProvider:
    """Stripe, through its own client: ``api_base`` points it elsewhere (an emulator)."""

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        *,
        api_base: str | None,
        tolerance_s: int,
    ) -> None:
        assert tolerance_s > 0, tolerance_s
        self._secret_key = secret_key
        self._webhook_secret = webhook_secret
        self._tolerance_s = tolerance_s
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=NETWORK_RETRIES_MAX,
            http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_S),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeProvider:
        if settings.stripe_secret_key is None or settings.stripe_webhook_secret is None:
            msg = "Stripe needs PREP_ES_STRIPE_SECRET_KEY and PREP_ES_STRIPE_WEBHOOK_SECRET"
            raise ValueError(msg)
        return cls(
            settings.stripe_secret_key.get_secret_value(),
            settings.stripe_webhook_secret.get_secret_value(),
            api_base=settings.stripe_api_base,
            tolerance_s=settings.webhook_tolerance_s,
        )

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    @property
    def test_mode(self) -> bool:
        return self._secret_key.startswith(STRIPE_TEST_KEY_PREFIXES)

    def create_payment(
        self, top_up_id: UUID, amount_cents: int, payment_method: str
    ) -> ProviderPayment:
        try:
            intent = self._client.v1.payment_intents.create(
                params={
                    "amount": amount_cents,
                    "currency": CURRENCY,
                    "payment_method": payment_method,
                    "payment_method_types": ["card"],
                    "confirm": True,
                    "metadata": {"top_up_id": str(top_up_id)},
                },
                options={"idempotency_key": f"prep-es-top-up-{top_up_id}"},
            )
        except stripe.CardError as error:
            return self._declined_payment(top_up_id, amount_cents, error)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404 or error.param == "payment_method":
                return _failed_payment(top_up_id, amount_cents, "payment_method_unknown")
            raise _provider_error(error) from None
        except stripe.StripeError as error:
            raise _provider_error(error) from None
        return _payment_of(intent)

    def _declined_payment(
        self, top_up_id: UUID, amount_cents: int, error: stripe.CardError
    ) -> ProviderPayment:
        """The declined PaymentIntent, found through the error: Stripe puts it there,
        some emulators only its charge."""
        details = error.error
        failure_code = failure_code_of(
            text_or_none(getattr(details, "code", None)) or error.code,
            text_or_none(getattr(details, "decline_code", None)),
        )
        try:
            intent_id = _id_of(getattr(details, "payment_intent", None))
            charge_id = text_or_none(getattr(details, "charge", None))
            if intent_id is None and charge_id is not None:
                charge = self._client.v1.charges.retrieve(charge_id)
                intent_id = _id_of(getattr(charge, "payment_intent", None))
            if intent_id is not None:
                declined = _payment_of(self._client.v1.payment_intents.retrieve(intent_id))
                return declined if declined.failure_code else _with_failure(declined, failure_code)
        except stripe.StripeError:
            pass  # the decline stands; only its reference is lost
        return _failed_payment(top_up_id, amount_cents, failure_code)

    def find_payment(self, reference: str) -> ProviderPayment | None:
        try:
            intent = self._client.v1.payment_intents.retrieve(reference)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                return None
            raise _provider_error(error) from None
        except stripe.StripeError as error:
            raise _provider_error(error) from None
        return _payment_of(intent)

    def refund_payment(
        self, payout_id: UUID, payment_reference: str, amount_cents: int
    ) -> ProviderTransfer:
        try:
            refund = self._client.v1.refunds.create(
                params={
                    "payment_intent": payment_reference,
                    "amount": amount_cents,
                    "metadata": {"payout_id": str(payout_id)},
                },
                options={"idempotency_key": f"prep-es-refund-{payout_id}"},
            )
        except stripe.InvalidRequestError as error:
            return _refused_transfer(payout_id, TransferMethod.REFUND, amount_cents, error)
        except stripe.StripeError as error:
            raise _provider_error(error) from None
        return _transfer_of_refund(refund)

    def send_payout(self, payout_id: UUID, destination: str, amount_cents: int) -> ProviderTransfer:
        try:
            transfer = self._client.v1.transfers.create(
                params={
                    "amount": amount_cents,
                    "currency": CURRENCY,
                    "destination": destination,
                    "metadata": {"payout_id": str(payout_id)},
                },
                options={"idempotency_key": f"prep-es-payout-{payout_id}"},
            )
        except stripe.InvalidRequestError as error:
            return _refused_transfer(payout_id, TransferMethod.PAYOUT, amount_cents, error)
        except stripe.StripeError as error:
            raise _provider_error(error) from None
        return ProviderTransfer(
            reference=transfer.id,
            payout_id=payout_id,
            method=TransferMethod.PAYOUT,
            amount_cents=transfer.amount,
            currency=transfer.currency,
            status=TransferStatus.PENDING,
            created_at=time_of(transfer.created),
        )

    def check_payout_destination(self, destination: str) -> None:
        if not PAYOUT_DESTINATION_PATTERN.fullmatch(destination):
            msg = "a Stripe payout destination is a connected account id: acct_ and letters"
            raise PayoutDestinationRefused(msg, field="destination")
        try:
            account = self._client.v1.accounts.retrieve(destination)
        except (stripe.InvalidRequestError, stripe.PermissionError):
            msg = f"Stripe knows no connected account {destination} of this platform"
            raise PayoutDestinationRefused(msg, field="destination") from None
        except stripe.APIError as error:
            if _lacks_endpoint(error):
                return
            raise _provider_error(error) from None
        except stripe.StripeError as error:
            raise _provider_error(error) from None
        capabilities = getattr(account, "capabilities", None)
        if getattr(capabilities, "transfers", None) != "active":
            msg = f"the connected account {destination} cannot receive transfers yet"
            raise PayoutDestinationRefused(msg, field="destination")

    def read_notification(
        self, payload: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderNotification:
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise NotificationRejected(f"no {SIGNATURE_HEADER} header", code="signature_missing")
        if len(header) > SIGNATURE_HEADER_LENGTH_MAX:
            raise NotificationRejected("the signature header is too long", code="invalid_signature")
        try:
            text = payload.decode("utf-8")
            # The SDK checks only the signature here: the age is checked against ``now``.
            stripe.WebhookSignature.verify_header(text, header, self._webhook_secret)
        except (UnicodeDecodeError, stripe.SignatureVerificationError):
            raise NotificationRejected(
                "no signature matches the notification", code="invalid_signature"
            ) from None
        signed_at_s = signature_timestamp_s(header)
        if abs(now.timestamp() - signed_at_s) > self._tolerance_s:
            raise NotificationRejected(
                f"signed more than {self._tolerance_s} s from now", code="stale_signature"
            )
        return read_event(text)

    def payments_since(self, since: datetime | None) -> Iterator[ProviderPayment]:
        params = _list_params(since)
        try:
            for intent in self._client.v1.payment_intents.list(
                params=params  # type: ignore[arg-type]
            ).auto_paging_iter():
                yield _payment_of(intent)
        except stripe.StripeError as error:
            raise _provider_error(error) from None

    def transfers_since(self, since: datetime | None) -> Iterator[ProviderTransfer]:
        params = _list_params(since)
        try:
            for refund in self._client.v1.refunds.list(
                params=params  # type: ignore[arg-type]
            ).auto_paging_iter():
                yield _transfer_of_refund(refund)
            for transfer in self._client.v1.transfers.list(
                params=params  # type: ignore[arg-type]
            ).auto_paging_iter():
                yield _transfer_of_transfer(transfer)
        except stripe.APIError as error:
            if not _lacks_endpoint(error):
                raise _provider_error(error) from None
        except stripe.StripeError as error:
            raise _provider_error(error) from None


def _provider_error(error: stripe.StripeError) -> PaymentProviderError:
    """What went wrong, without Stripe's message (an authentication error's names part
    of the key)."""
    parts = [f"Stripe could not be asked: {type(error).__name__}"]
    if error.http_status is not None:
        parts.append(f"HTTP {error.http_status}")
    if error.code:
        parts.append(f"code {error.code}")
    if error.request_id:
        parts.append(f"request {error.request_id}")
    return PaymentProviderError(", ".join(parts))


def _lacks_endpoint(error: stripe.APIError) -> bool:
    """A bare 404: the server has no such route (Stripe's own 404s are JSON errors)."""
    return error.http_status == 404 and error.error is None


def _with_failure(payment: ProviderPayment, failure_code: str) -> ProviderPayment:
    return ProviderPayment(
        reference=payment.reference,
        top_up_id=payment.top_up_id,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
        status=payment.status,
        created_at=payment.created_at,
        failure_code=failure_code,
    )


def _payment_of(intent: stripe.PaymentIntent) -> ProviderPayment:
    """Optional fields are read with ``getattr``: the SDK's objects hold what the
    answer held, and an emulator leaves out some of what Stripe always sends."""
    error = getattr(intent, "last_payment_error", None)
    status, failure_code = _payment_status(
        intent.status,
        text_or_none(getattr(error, "code", None)),
        text_or_none(getattr(error, "decline_code", None)),
    )
    return ProviderPayment(
        reference=intent.id,
        top_up_id=_metadata_uuid(getattr(intent, "metadata", None), "top_up_id"),
        amount_cents=intent.amount,
        currency=intent.currency,
        status=status,
        created_at=time_of(intent.created),
        failure_code=failure_code,
    )


def _payment_status(
    status: str, code: str | None, decline_code: str | None
) -> tuple[PaymentStatus, str | None]:
    match status:
        case "succeeded":
            return PaymentStatus.SUCCEEDED, None
        case "processing" | "requires_confirmation" | "requires_capture":
            return PaymentStatus.PROCESSING, None
        case "canceled":
            return PaymentStatus.CANCELED, None
        case "requires_action":
            return PaymentStatus.FAILED, "authentication_required"
        case _:  # requires_payment_method: declined, or never given one
            return PaymentStatus.FAILED, failure_code_of(code, decline_code)


def _list_params(since: datetime | None) -> dict[str, Any]:
    """A list call's parameters: pages of ``LIST_PAGE_SIZE``, created since ``since``
    (Stripe counts whole seconds)."""
    params: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
    if since is not None:
        params["created"] = {"gte": math.floor(since.timestamp())}
    return params


def _failed_payment(top_up_id: UUID, amount_cents: int, failure_code: str) -> ProviderPayment:
    """A payment Stripe refused without a PaymentIntent to read (or none found)."""
    return ProviderPayment(
        reference="",
        top_up_id=top_up_id,
        amount_cents=amount_cents,
        currency=CURRENCY,
        status=PaymentStatus.FAILED,
        created_at=datetime.now(UTC),
        failure_code=failure_code,
    )


def _refused_transfer(
    payout_id: UUID, method: TransferMethod, amount_cents: int, error: stripe.StripeError
) -> ProviderTransfer:
    return ProviderTransfer(
        reference="",
        payout_id=payout_id,
        method=method,
        amount_cents=amount_cents,
        currency=CURRENCY,
        status=TransferStatus.FAILED,
        created_at=datetime.now(UTC),
        failure_code=error.code or f"{method}_refused",
    )


def _transfer_of_refund(refund: stripe.Refund) -> ProviderTransfer:
    return ProviderTransfer(
        reference=refund.id,
        payout_id=_metadata_uuid(getattr(refund, "metadata", None), "payout_id"),
        method=TransferMethod.REFUND,
        amount_cents=refund.amount,
        currency=refund.currency,
        status=REFUND_STATUSES.get(refund.status or "", TransferStatus.PENDING),
        created_at=time_of(refund.created),
        failure_code=(
            text_or_none(getattr(refund, "failure_reason", None)) or "refund_failed"
            if refund.status == "failed"
            else None
        ),
    )


def _transfer_of_transfer(transfer: stripe.Transfer) -> ProviderTransfer:
    return ProviderTransfer(
        reference=transfer.id,
        payout_id=_metadata_uuid(getattr(transfer, "metadata", None), "payout_id"),
        method=TransferMethod.PAYOUT,
        amount_cents=transfer.amount,
        currency=transfer.currency,
        status=TransferStatus.FAILED if transfer.reversed else TransferStatus.PAID,
        created_at=time_of(transfer.created),
        failure_code="transfer_reversed" if transfer.reversed else None,
    )


def _metadata_uuid(metadata: object, key: str) -> UUID | None:
    """Prep ES's id under ``key`` in an object's metadata (JSON's, or the SDK's)."""
    if isinstance(metadata, stripe.StripeObject):
        metadata = metadata.to_dict(recursive=False)
    return uuid_or_none(metadata.get(key)) if isinstance(metadata, dict) else None


def _id_of(field: object) -> str | None:
    """The id of an expandable field: an id, or the object it names."""
    if isinstance(field, str):
        return field
    found = getattr(field, "id", None)
    return found if isinstance(found, str) else None
