"""Given events, when one method, then events — for pure aggregates, no database.

``given(*events)`` folds recorded events into a fresh aggregate with ``event.mutate``;
``then(aggregate, (EventClass, {fields}), ...)`` builds the expected events (so pydantic
validates their fields) and compares them with ``collect_events()`` by type and fields,
ignoring ``timestamp`` and ``metadata``; ``refused(aggregate, ErrorClass, code)`` expects a
named ``DomainError`` and nothing pending.

The builders below record setup histories by calling the aggregates' own constructors
and verbs, then ``collect_events()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import NAMESPACE_OID, UUID, uuid5

import pytest
from eventsourcing.domain import BaseAggregate

from aggregates.account import Account
from aggregates.base import AggregateCreated, DomainEvent
from aggregates.booking import Booking
from aggregates.errors import DomainError
from aggregates.jurisdictions import JurisdictionCatalog, JurisdictionRules
from aggregates.kitchen import Kitchen
from aggregates.policies import BookingWindow, booking_window
from prep_es.store.jurisdiction_rules import packaged_jurisdictions

A = TypeVar("A", bound=BaseAggregate[UUID])
Expected = tuple[type[DomainEvent], dict[str, Any]]

# A Monday; 17:00 UTC is 09:00 in Los Angeles (winter), inside every default jurisdiction's hours.
NOW = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)
BOOKING_START = NOW + timedelta(days=7)  # Monday 2030-01-14, 09:00 Los Angeles
HOST_ID = UUID(int=1)
CUSTOMER_ID = UUID(int=2)
KITCHEN_ID = UUID(int=3)
DOCUMENT_SHA256 = "ab" * 32
RATE_CENTS = 5000
CERTIFICATES_EXPIRE_ON = date(2031, 12, 31)


def load_packaged_catalog() -> JurisdictionCatalog:
    return packaged_jurisdictions()


CATALOG = load_packaged_catalog()
LA = CATALOG.get("los_angeles")
SF = CATALOG.get("san_francisco")


# --- given / then / refused --------------------------------------------------------------


def given(*events: Any) -> Any:
    """A fresh aggregate folded from ``events``, nothing pending."""
    assert events, "an aggregate's history starts with its created event"
    aggregate: Any = None
    for recorded in events:
        aggregate = recorded.mutate(aggregate)
    assert aggregate.pending_events == []
    return aggregate


def comparable(events: Sequence[DomainEvent]) -> list[tuple[type[DomainEvent], dict[str, Any]]]:
    """Events as (type, fields) without ``timestamp`` and ``metadata``."""
    return [
        (type(recorded), recorded.model_dump(exclude={"timestamp", "metadata"}))
        for recorded in events
    ]


def then(aggregate: BaseAggregate[UUID], *expected: Expected) -> list[DomainEvent]:
    """Assert that the pending events of ``aggregate`` are exactly ``expected`` (numbered
    on from the aggregate's last saved version) and return them, now collected."""
    pending: list[DomainEvent] = aggregate.collect_events()  # type: ignore[assignment]
    first_version = aggregate.version - len(pending) + 1
    built: list[DomainEvent] = []
    for offset, (event_class, fields) in enumerate(expected):
        extra: dict[str, Any] = {}
        if issubclass(event_class, AggregateCreated) and "originator_topic" not in fields:
            extra["originator_topic"] = type(aggregate).TOPIC  # type: ignore[attr-defined]
        built.append(
            event_class(
                originator_id=aggregate.id,
                originator_version=first_version + offset,
                timestamp=NOW,
                **extra,
                **fields,
            )
        )
    assert comparable(pending) == comparable(built)
    return pending


def then_nothing(aggregate: BaseAggregate[UUID]) -> None:
    assert aggregate.collect_events() == []


@contextmanager
def refused(
    aggregate: BaseAggregate[UUID], error_class: type[DomainError], code: str
) -> Iterator[None]:
    """The block raises exactly ``error_class`` with ``code`` and records nothing."""
    aggregate.collect_events()
    version = aggregate.version
    with pytest.raises(error_class) as raised:
        yield
    assert type(raised.value) is error_class
    assert raised.value.code == code
    assert aggregate.pending_events == []
    assert aggregate.version == version


@contextmanager
def raises_code(error_class: type[DomainError], code: str) -> Iterator[None]:
    """For pure policies: exactly ``error_class`` with ``code``."""
    with pytest.raises(error_class) as raised:
        yield
    assert type(raised.value) is error_class
    assert raised.value.code == code


def state_of(aggregate: BaseAggregate[UUID]) -> dict[str, Any]:
    """Everything an aggregate holds except its pending events, for replay comparisons."""
    state = {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}
    if "certificates" in state:
        state["certificates"] = {
            key: (type(certificate), vars(certificate))
            for key, certificate in state["certificates"].items()
        }
    return state


# --- builders ----------------------------------------------------------------------------


def window(start: datetime, hours: float, rules: JurisdictionRules = LA) -> BookingWindow:
    return booking_window(start, start + timedelta(hours=hours), now=NOW, rules=rules)


def certificate_id(kind: str, number: int = 1) -> UUID:
    return uuid5(NAMESPACE_OID, f"certificate:{kind}:{number}")


KITCHEN_FIELDS: dict[str, Any] = {
    "host_id": HOST_ID,
    "name": "Test Kitchen",
    "description": "A clean commercial kitchen",
    "city": "Los Angeles",
    "jurisdiction": LA,
    "address": "1 Main St",
    "hourly_rate_cents": RATE_CENTS,
    "capacity": 10,
    "amenities": ["walk-in fridge", "Oven"],
    "instant_book": False,
}


def new_kitchen(**overrides: Any) -> Kitchen:
    return Kitchen.create(**{**KITCHEN_FIELDS, **overrides})


def kitchen_created(**overrides: Any) -> list[DomainEvent]:
    return new_kitchen(**overrides).collect_events()  # type: ignore[return-value]


def attach(kitchen: Kitchen, kind: str, expires_on: date = CERTIFICATES_EXPIRE_ON) -> UUID:
    identifier = certificate_id(kind, len(kitchen.certificates) + 1)
    kitchen.attach_certificate(
        certificate_id=identifier,
        kind=kind,
        number=f"{kind}-1",
        issued_on=date(2029, 1, 1),
        expires_on=expires_on,
        document_sha256=DOCUMENT_SHA256,
    )
    return identifier


def compliant_kitchen(
    rules: JurisdictionRules = LA,
    expires_on: date = CERTIFICATES_EXPIRE_ON,
    *,
    published: bool = True,
    **overrides: Any,
) -> list[DomainEvent]:
    """A kitchen with every certificate ``rules`` requires, verified; published unless
    told otherwise."""
    kitchen = new_kitchen(jurisdiction=rules, **overrides)
    for kind in sorted(rules.required_certificates):
        kitchen.verify_certificate(attach(kitchen, kind, expires_on))
    if published:
        kitchen.submit_for_review()
        kitchen.approve()
    return kitchen.collect_events()  # type: ignore[return-value]


def booking_requested(
    start: datetime = BOOKING_START,
    hours: float = 2,
    *,
    rate_cents: int = RATE_CENTS,
    instant_book: bool = False,
) -> list[DomainEvent]:
    booking = Booking.request(
        kitchen_id=KITCHEN_ID,
        host_id=HOST_ID,
        customer_id=CUSTOMER_ID,
        window=window(start, hours),
        guests=2,
        notes="",
        hourly_rate_cents=rate_cents,
        instant_book=instant_book,
    )
    return booking.collect_events()  # type: ignore[return-value]


def confirmed_booking(**kwargs: Any) -> list[DomainEvent]:
    history = booking_requested(**kwargs)
    booking = given(*history)
    booking.confirm(NOW)
    return [*history, *booking.collect_events()]


def funded_account(cents: int = 100_00, owner_id: UUID = CUSTOMER_ID) -> list[DomainEvent]:
    account = Account(owner_id=owner_id)
    account.credit_top_up(uuid5(NAMESPACE_OID, "top-up"), cents, "pi_funding")
    return account.collect_events()  # type: ignore[return-value]
