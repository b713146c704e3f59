"""What idempotency records keep of people: answers sealed for everyone they name, and
request fingerprints keyed with the store's secret. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from uuid import UUID

import orjson
import pytest

from aggregates.errors import IdempotencyKeyReused
from aggregates.idempotency import IdempotencyRecord, key_message
from commands.bookings import DeclineBooking, RequestBooking
from commands.processor import request_body
from tests.support import START_OF_TESTS, Marketplace, as_actor

IN_A_WEEK = START_OF_TESTS + timedelta(days=7)
NOTES = "Bring the gluten-free flour for Ørjan's allergy"


def decline_with_key(market: Marketplace, key: str) -> IdempotencyRecord:
    bookings = market.runtime.commands.bookings
    booking = bookings.request_booking(
        RequestBooking(
            kitchen_id=market.kitchen_id,
            start_time=IN_A_WEEK,
            end_time=IN_A_WEEK + timedelta(hours=2),
            guests=2,
            notes=NOTES,
        ),
        as_actor(market.customer),
    ).result
    declined = bookings.decline_booking(
        DeclineBooking(booking_id=booking.id, reason="closed that day"),
        as_actor(market.host, key),
    )
    assert declined.result.notes == NOTES
    record_ids = [
        UUID(str(notification.originator_id))
        for notification in market.runtime.app.notifications(0, None, 10_000)
        if notification.topic == "IdempotencyRecord.IdempotencyKeyRecorded"
    ]
    found: list[object] = [market.runtime.app.repository.get(rid) for rid in record_ids]
    key_digest = market.runtime.app.keyed_digest(key_message(key))
    (record,) = [r for r in found if isinstance(r, IdempotencyRecord) and r.key == key_digest]
    return record


def test_a_hosts_answer_naming_a_customer_is_forgotten_with_the_customer(
    market: Marketplace,
) -> None:
    record = decline_with_key(market, "decline-1")
    assert record.subject_id == market.host.user_id
    assert record.joint_subject_ids == [market.customer.user_id]
    assert record.result is not None and record.result["notes"] == NOTES

    market.runtime.app.destroy_personal_data(market.customer.user_id)

    (event,) = market.runtime.app.events.get(record.id)
    assert isinstance(event, IdempotencyRecord.IdempotencyKeyRecorded)
    assert event.result is None
    assert event.erased_fields == {"result"}
    with pytest.raises(IdempotencyKeyReused, match="erased"):
        market.runtime.commands.bookings.decline_booking(
            DeclineBooking(booking_id=record.result["id"], reason="closed that day"),
            as_actor(market.host, "decline-1"),
        )


def test_a_fingerprint_cannot_be_recomputed_without_the_stores_secret(
    market: Marketplace,
) -> None:
    record = decline_with_key(market, "decline-2")
    assert record.result is not None
    body = request_body(
        "decline_booking", DeclineBooking(booking_id=record.result["id"], reason="closed that day")
    )
    assert record.request_hash != hashlib.sha256(body).hexdigest()
    assert record.request_hash == market.runtime.app.keyed_digest(hashlib.sha256(body).digest())
    stored = [
        notification.state
        for notification in market.runtime.app.notifications(0, None, 10_000)
        if notification.originator_id == record.id
    ]
    assert NOTES.encode() not in stored[0]
    assert orjson.loads(stored[0])["result"]["joint"] == [str(market.customer.user_id)]


def test_the_stores_own_cache_of_loaded_aggregates_forgets_the_erased(
    market: Marketplace,
) -> None:
    record = decline_with_key(market, "decline-3")
    assert record.result is not None
    booking_id = UUID(str(record.result["id"]))
    app = market.runtime.app
    assert app.repository.get(booking_id).notes == NOTES  # now in the library's cache

    app.destroy_personal_data(market.customer.user_id)

    assert app.repository.get(booking_id).notes is None
