"""Which event fields hold personal data, and whose.

A field declared ``Personal[str]`` (or ``Personal[str] | None``, or ``Personal[dict[...]]``)
holds data about one person, its *subject*: the store encrypts it with that person's data
key, and erasing the person destroys the key. The subject of an event's personal fields is
named once per event class by ``PERSONAL_SUBJECT``:

- ``"actor"`` (the default): whoever caused the event (``metadata.actor_id``), as for the
  reason a host types when declining a booking;
- the name of one of the event's own ``UUID`` fields (``"customer_id"``), or
  ``"originator_id"`` when the aggregate is the person (``User``).

An event whose subject is absent (no actor, say a sweep) falls back to its aggregate's id.

A field may be about several people at once (a command's stored answer naming both the
host who declined and the customer's notes): ``PERSONAL_JOINT_SUBJECTS`` names a
``list[UUID]`` field of further subjects, and the field is sealed so that it opens only
while every one of them still has a key.

Once the key is gone, a personal field reads as ``None`` whatever its declared type, and
the event lists it in ``erased_fields``: readers of events that may be erased (projections
rebuilding, the audit trail) check that list, never the ciphertext.

Snapshots hold an aggregate's attributes, not its events' fields: an aggregate with
personal attributes lists them in ``PERSONAL_ATTRIBUTES`` and names the attribute holding
their subject in ``PERSONAL_SUBJECT_ATTRIBUTE``.

Every other event field that can hold text is listed in :data:`NOT_PERSONAL` with the
reason it is not personal (a test fails on a text field that is in neither), and
:func:`inventory_markdown` renders the whole inventory as a table.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Final, Literal, TypeVar, Union

from pydantic import BaseModel, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core.core_schema import ValidationInfo

from aggregates.base import EventMetadata

ERASED_CONTEXT: Final = {"erased": True}
"""The validation context under which a personal field may be ``None`` though its type
says otherwise: the store validates an event whose key is gone with it."""

ACTOR_SUBJECT: Final = "actor"
ORIGINATOR_SUBJECT: Final = "originator_id"


@dataclass(frozen=True)
class PersonalData:
    """The mark of a personal field (see the module's docstring)."""


def _erased_or_valid(
    value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    if value is None and info.context is not None and info.context.get("erased"):
        return None
    return handler(value)


T = TypeVar("T")

if typing.TYPE_CHECKING:
    Personal = Annotated[T, PersonalData()]
else:

    class Personal:
        """``Personal[str]``: ``str``, marked personal (see the module's docstring)."""

        def __class_getitem__(cls, item: Any) -> Any:
            return Annotated[item, PersonalData(), WrapValidator(_erased_or_valid)]


def _is_personal(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return any(isinstance(mark, PersonalData) for mark in annotation.__metadata__)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_is_personal(member) for member in typing.get_args(annotation))
    return False


@cache
def personal_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The names of ``model``'s personal fields, in declaration order."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if any(isinstance(mark, PersonalData) for mark in field.metadata)
        or _is_personal(field.annotation)
    )


def personal_joint_subjects_field(model: type[BaseModel]) -> str | None:
    """The name of the ``list[UUID]`` field naming further subjects, if any."""
    joint: str | None = getattr(model, "PERSONAL_JOINT_SUBJECTS", None)
    assert joint is None or joint in model.model_fields, (model, joint)
    return joint


def personal_subject_field(model: type[BaseModel]) -> str:
    """The name of the field whose value is the subject of ``model``'s personal fields
    (``"actor"`` for ``metadata.actor_id``)."""
    subject: str = getattr(model, "PERSONAL_SUBJECT", ACTOR_SUBJECT)
    assert subject in (ACTOR_SUBJECT, ORIGINATOR_SUBJECT) or subject in model.model_fields, (
        model,
        subject,
    )
    return subject


# --- the inventory ----------------------------------------------------------------------

_LISTING: Final = "a licensed business's public listing"
_LISTING_FIELDS: Final = "names of a listing's fields"
_ADMIN_LISTING: Final = "an admin's decision on a listing, kept for the audit"
_ADMIN_CERTIFICATE: Final = "an admin's decision on a certificate, kept for the audit"
_PROVIDER_REFERENCE: Final = "a payment provider's reference: no personal data"
_PROVIDER: Final = "a payment provider's name"
_CODE: Final = "a code"
_CLIENT_TOKEN: Final = (
    "a request's id or Idempotency-Key: a token with no '@' nor space (docs/http.md)"
)
_HOLDER: Final = "a keyed hash of the holder's id: ties no erased user to the email"
_STATUS: Final = "a status code"
_FAILURE: Final = "a provider's failure code"

NOT_PERSONAL: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "metadata.actor_role": "a role code",
        "metadata.request_id": _CLIENT_TOKEN,
        "metadata.correlation_id": _CLIENT_TOKEN,
        "Account.PayoutDestinationSet.destination": (
            "a payment provider's account id (acct_...): no personal data"
        ),
        "Account.TopUpCredited.payment_reference": _PROVIDER_REFERENCE,
        "Account.TopUpStarted.day": "a UTC date, the daily top-up limit's",
        "Booking.BookingCancelled.cancelled_by_role": "a role code",
        "Booking.BookingRequested.status": _STATUS,
        "EmailClaim.EmailClaimed.email_digest": (
            "a keyed hash of the email: no email can be found or checked from it "
            "without the server's secret"
        ),
        "EmailClaim.EmailClaimed.holder": _HOLDER,
        "EmailClaim.EmailReleased.holder": _HOLDER,
        "EmailClaim.EmailReclaimed.holder": _HOLDER,
        "IdempotencyRecord.IdempotencyKeyRecorded.scope": (
            "a keyed hash of the caller's or email claim's id and the command"
        ),
        "IdempotencyRecord.IdempotencyKeyRecorded.key": (
            "a keyed hash of the Idempotency-Key a client program chose"
        ),
        "IdempotencyRecord.IdempotencyKeyRecorded.request_hash": "a hash of the request",
        "Kitchen.CertificateAttached.kind": "a certificate kind code",
        "Kitchen.CertificateAttached.number": (
            "a licensed business's certificate number, shown with its listing"
        ),
        "Kitchen.CertificateAttached.document_sha256": "a hash of the document",
        "Kitchen.CertificateRejected.reason": _ADMIN_CERTIFICATE,
        "Kitchen.KitchenCreated.name": _LISTING,
        "Kitchen.KitchenCreated.description": _LISTING,
        "Kitchen.KitchenCreated.city": _LISTING,
        "Kitchen.KitchenCreated.jurisdiction": "a jurisdiction code",
        "Kitchen.KitchenCreated.address": _LISTING,
        "Kitchen.KitchenCreated.amenities": _LISTING,
        "Kitchen.KitchenRejected.reason": _ADMIN_LISTING,
        "Kitchen.KitchenSentBackForReview.material_fields": _LISTING_FIELDS,
        "Kitchen.KitchenSuspended.reason": _ADMIN_LISTING,
        "Kitchen.KitchenUpdated.name": _LISTING,
        "Kitchen.KitchenUpdated.description": _LISTING,
        "Kitchen.KitchenUpdated.city": _LISTING,
        "Kitchen.KitchenUpdated.address": _LISTING,
        "Kitchen.KitchenUpdated.amenities": _LISTING,
        "Kitchen.KitchenUpdated.changed_since_approval": _LISTING_FIELDS,
        "PaymentNotification.PaymentNotificationReceived.provider": _PROVIDER,
        "PaymentNotification.PaymentNotificationReceived.event_id": (
            "a payment provider's event id"
        ),
        "PaymentNotification.PaymentNotificationReceived.event_type": (
            "a payment provider's event type code"
        ),
        "PaymentNotification.PaymentNotificationReceived.subject": (
            "what the notification is about (a top-up, a payout): a code"
        ),
        "PaymentNotification.PaymentNotificationReceived.reference": _PROVIDER_REFERENCE,
        "PaymentNotification.PaymentNotificationReceived.status": _STATUS,
        "PaymentNotification.PaymentNotificationReceived.currency": "a currency code",
        "PaymentNotification.PaymentNotificationReceived.failure_code": _FAILURE,
        "PaymentNotification.PaymentNotificationReceived.outcome": _CODE,
        "Payout.PayoutFailed.transfer_reference": _PROVIDER_REFERENCE,
        "Payout.PayoutFailed.status": _STATUS,
        "Payout.PayoutFailed.failure_code": _FAILURE,
        "Payout.PayoutPaid.transfer_reference": _PROVIDER_REFERENCE,
        "Payout.PayoutRequested.method": _CODE,
        "Payout.PayoutRequested.destination": (
            "a payment provider's account id (acct_...): no personal data"
        ),
        "Payout.PayoutRequested.payment_reference": _PROVIDER_REFERENCE,
        "Payout.PayoutRequested.provider": _PROVIDER,
        "Payout.PayoutSubmitted.transfer_reference": _PROVIDER_REFERENCE,
        "TopUp.TopUpFailed.payment_reference": _PROVIDER_REFERENCE,
        "TopUp.TopUpFailed.status": _STATUS,
        "TopUp.TopUpFailed.failure_code": _FAILURE,
        "TopUp.TopUpProcessing.payment_reference": _PROVIDER_REFERENCE,
        "TopUp.TopUpRequested.payment_method": (
            "a payment provider's payment method id (pm_...), never a card number"
        ),
        "TopUp.TopUpRequested.provider": _PROVIDER,
        "TopUp.TopUpSucceeded.payment_reference": _PROVIDER_REFERENCE,
        "User.TokenRevoked.token_id": "a token's random id",
        "User.UserErased.reason": (
            "why the person was forgotten: kept for the audit, which outlives their key"
        ),
        "User.UserRegistered.role": "a role code",
        "User.UserRoleChanged.role": "a role code",
    }
)
"""Every event field that can hold text (``str``, ``str | None``, ``list[str]``, a
``dict``) and is not :data:`Personal`, keyed ``"Topic.field"`` (``"metadata.field"`` for
the metadata every event carries), with why it is not personal."""

_ENVELOPE_FIELDS: Final = frozenset(
    {
        "originator_id",
        "originator_version",
        "originator_topic",
        "timestamp",
        "metadata",
        "erased_fields",
    }
)
"""What every event carries beside its own fields (the metadata is inventoried once)."""


@dataclass(frozen=True)
class InventoryEntry:
    """One event field that can hold text: personal (and whose), or why not."""

    event: str
    """The event's topic, or ``"metadata"``."""
    field: str
    personal: bool
    explanation: str
    """Whose it is, if personal; else why it is not (from :data:`NOT_PERSONAL`, or
    ``""`` for a field listed nowhere)."""

    @property
    def key(self) -> str:
        return f"{self.event}.{self.field}"


def event_classes(aggregate_classes: Iterable[type[Any]]) -> list[type[BaseModel]]:
    """The event classes declared in ``aggregate_classes`` (those with a topic), in the
    order of the aggregates and then of their topics."""
    found: list[type[BaseModel]] = []
    for aggregate_class in aggregate_classes:
        declared = {
            _topic(value): value
            for value in vars(aggregate_class).values()
            if isinstance(value, type) and issubclass(value, BaseModel) and _topic(value)
        }
        found += [declared[topic] for topic in sorted(declared)]
    return found


def _topic(event_class: type[BaseModel]) -> str:
    topic = getattr(event_class, "TOPIC", "")
    return topic if isinstance(topic, str) else ""


def text_fields(model: type[BaseModel]) -> list[str]:
    """The names of ``model``'s own fields that can hold text (see :data:`NOT_PERSONAL`),
    a nested model's as ``field.name``."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        if name in _ENVELOPE_FIELDS:
            continue
        if _holds_text(field.annotation):
            names.append(name)
        names += [
            f"{name}.{inner}"
            for nested in _models_in(field.annotation)
            for inner in text_fields(nested)
        ]
    return names


def _holds_text(annotation: Any) -> bool:
    if annotation is str or annotation is Any:
        return True
    if isinstance(annotation, type):
        # A bare container may hold anything; a str enum is text.
        return issubclass(annotation, str) or annotation in (dict, list, tuple, set, frozenset)
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _holds_text(typing.get_args(annotation)[0])
    if origin is Literal:
        return any(isinstance(value, str) for value in typing.get_args(annotation))
    return any(_holds_text(argument) for argument in typing.get_args(annotation))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type):
        return [annotation] if issubclass(annotation, BaseModel) else []
    return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]


def _subject_of(event_class: type[BaseModel]) -> str:
    subject = personal_subject_field(event_class)
    if subject == ACTOR_SUBJECT:
        return "subject: whoever caused the event (metadata.actor_id)"
    if subject == ORIGINATOR_SUBJECT:
        return "subject: the aggregate's own person"
    return f"subject: {subject}"


def inventory(aggregate_classes: Iterable[type[Any]]) -> list[InventoryEntry]:
    """Every text field of every event of ``aggregate_classes`` (and of their metadata),
    personal or not."""
    entries = [
        InventoryEntry("metadata", name, False, NOT_PERSONAL.get(f"metadata.{name}", ""))
        for name in text_fields(EventMetadata)
    ]
    for event_class in event_classes(aggregate_classes):
        topic = _topic(event_class)
        personal = personal_fields(event_class)
        for name in text_fields(event_class):
            if name in personal:
                entries.append(InventoryEntry(topic, name, True, _subject_of(event_class)))
            else:
                entries.append(
                    InventoryEntry(topic, name, False, NOT_PERSONAL.get(f"{topic}.{name}", ""))
                )
    return entries


def inventory_markdown(aggregate_classes: Iterable[type[Any]]) -> str:
    """The inventory as a Markdown table: event, field, personal?, whose or why not."""
    lines = [
        "| Event | Field | Personal | Subject, or why not personal |",
        "|---|---|---|---|",
    ]
    for entry in inventory(aggregate_classes):
        personal = "yes" if entry.personal else "no"
        explanation = entry.explanation.replace("|", "\\|") or "**not inventoried**"
        lines.append(f"| `{entry.event}` | `{entry.field}` | {personal} | {explanation} |")
    return "\n".join(lines) + "\n"
