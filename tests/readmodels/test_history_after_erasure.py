"""The audit trail, admin time travel and replay after a user is erased, on both
backends: what was personal about them reads ``null`` and says it was erased, every
version still replays, nothing shows ciphertext, and nothing shows what they were
called, their email or what they wrote — while other people's words stay readable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest

from commands.bookings import CancelBooking, DeclineBooking, RequestBooking
from commands.context import Actor, CommandContext
from commands.users import ChangePassword, CreateUser
from prep_es.cli.replay import describe_replay
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.personal_cipher import ENVELOPE_KEY, PersonalDataCipher
from prep_es.store.redaction import REDACTED
from prep_es.store.replay import replay_aggregate
from projections.audit import AuditProjection
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from queries.audit import AuditEntry, AuditQueries
from queries.base import PageRequest, Viewer
from queries.timetravel import TimeTravelQueries
from tests.erasing import erase_user
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    open_test_runtime,
    store_settings,
    top_up,
)

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
EMAIL = "erin.forgotten@example.com"
FULL_NAME = "Erin Quillfeather"
PASSWORD = "a long enough password"
NOTES = "Gate code 4471K, ask for Erin's pallet"
CANCEL_REASON = "Erin caught the flu"
DECLINE_REASON = "The hood is being serviced that day"
ERIN_SECRETS = (EMAIL, FULL_NAME, NOTES, CANCEL_REASON, "Quillfeather", "4471K")


@dataclass
class ErasedWorld:
    market: Marketplace
    read_side: ReadSide
    erin: Actor
    cancelled_booking: UUID
    declined_booking: UUID

    @property
    def admin(self) -> Viewer:
        return Viewer(self.market.admin.user_id, "admin")

    @property
    def audit(self) -> AuditQueries:
        app = self.market.runtime.app
        return AuditQueries(self.read_side.query_database, PersonalDataCipher(app.data_keys))

    @property
    def time_travel(self) -> TimeTravelQueries:
        return TimeTravelQueries(self.market.runtime.app)

    def project_audit(self) -> None:
        app = self.market.runtime.app
        ProjectionRunner(AuditProjection, app, self.read_side.write_database).catch_up()

    def all_entries(self, **filters: Any) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        after: int | None = None
        while True:
            page = self.audit.entries(self.admin, after_position=after, limit=100, **filters)
            entries += page.items
            if page.next_after_position is None:
                return entries
            after = page.next_after_position


@pytest.fixture
def world(database_url: str) -> Iterator[ErasedWorld]:
    """Erin registered, changed her password, had one booking cancelled (her reason)
    and one declined (the host's reason), all in the audit trail; then she was erased
    and the trail caught up with that too."""
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(store_settings(database_url))
    market = build_marketplace(runtime, clock)
    users, bookings = runtime.commands.users, runtime.commands.bookings
    created = users.create_user(
        CreateUser(email=EMAIL, password=PASSWORD, full_name=FULL_NAME, role="customer"),
        CommandContext(actor=None),
    ).result
    erin = Actor(user_id=created.id, role="customer")
    users.change_password(
        ChangePassword(current_password=PASSWORD, new_password=PASSWORD + "!"), as_actor(erin)
    )
    top_up(runtime, erin, 100_000)
    cancelled, declined = (
        bookings.request_booking(
            RequestBooking(
                kitchen_id=market.kitchen_id,
                start_time=START_OF_TESTS + days * DAY,
                end_time=START_OF_TESTS + days * DAY + 2 * HOUR,
                guests=2,
                notes=NOTES,
            ),
            as_actor(erin, f"booking-{days}"),
        ).result
        for days in (1, 2)
    )
    bookings.cancel_booking(
        CancelBooking(booking_id=cancelled.id, reason=CANCEL_REASON), as_actor(erin)
    )
    bookings.decline_booking(
        DeclineBooking(booking_id=declined.id, reason=DECLINE_REASON), as_actor(market.host)
    )
    market.request_booking(START_OF_TESTS + 3 * DAY, idempotency_key="another-customer")
    ensure_ready(read_side.write_database, AuditProjection)
    world = ErasedWorld(market, read_side, erin, cancelled.id, declined.id)
    world.project_audit()
    erase_user(runtime.app, erin.user_id, at=clock())
    world.project_audit()
    yield world
    read_side.close()
    runtime.close()


def _shows_nothing_of_erin(shown: object) -> None:
    text = orjson.dumps(shown, default=str).decode()
    for secret in ERIN_SECRETS:
        for form in (secret, secret.lower(), json.dumps(secret)[1:-1]):
            assert form not in text, (form, text)
    assert ENVELOPE_KEY not in text, text


def test_audit_entries_of_her_events_read_null_and_say_erased(world: ErasedWorld) -> None:
    erin_id = world.erin.user_id
    trail = world.all_entries()
    assert [e.position for e in trail] == list(range(1, world.market.runtime.app.position() + 1))
    _shows_nothing_of_erin([entry.model_dump(mode="json") for entry in trail])

    mine = world.all_entries(aggregate_id=erin_id)
    assert [e.event_type for e in mine] == [
        "User.UserRegistered",
        "User.PasswordChanged",
        "User.UserErased",
    ]
    registered, password_changed, erased = mine
    assert (registered.erased, registered.erased_fields) == (True, ["email", "full_name"])
    assert registered.payload["email"] is None and registered.payload["full_name"] is None
    assert registered.payload["password_hash"] == REDACTED
    assert registered.payload["role"] == "customer"
    # A secret is "***" whether erased or not, and never named.
    assert password_changed.payload["password_hash"] == REDACTED
    assert (password_changed.erased, password_changed.erased_fields) == (False, [])
    assert (erased.erased, erased.payload["reason"]) == (False, "asked to be forgotten")

    cancelled = world.all_entries(aggregate_id=world.cancelled_booking)
    assert [(e.event_type, e.erased, e.erased_fields) for e in cancelled] == [
        ("Booking.BookingRequested", True, ["notes"]),
        ("Booking.BookingCancelled", True, ["reason"]),
    ]
    assert cancelled[0].payload["notes"] is None
    assert cancelled[0].payload["price_cents"] > 0
    assert cancelled[1].payload["reason"] is None
    # The host's words are the host's: not erased with her.
    declined = world.all_entries(aggregate_id=world.declined_booking)
    assert [(e.event_type, e.erased) for e in declined] == [
        ("Booking.BookingRequested", True),
        ("Booking.BookingDeclined", False),
    ]
    assert declined[1].payload["reason"] == DECLINE_REASON
    # Her idempotency records' results were about her too.
    results = world.all_entries(event_type="IdempotencyRecord.IdempotencyKeyRecorded")
    hers = [e for e in results if e.actor_id == erin_id]
    assert hers and all(e.erased_fields == ["result"] for e in hers)
    assert all(e.payload["result"] is None for e in hers)
    others = [e for e in results if e.actor_id != erin_id]
    assert others and all(not e.erased and e.payload["result"] for e in others)


def test_every_version_of_her_user_and_booking_replays_with_nulls(world: ErasedWorld) -> None:
    travel, admin = world.time_travel, world.admin
    erin_id = world.erin.user_id
    stream = travel.events(admin, erin_id, PageRequest()).items
    assert [(e.type, e.erased, e.erased_fields) for e in stream] == [
        ("User.UserRegistered", True, ["email", "full_name"]),
        ("User.PasswordChanged", False, []),
        ("User.UserErased", False, []),
    ]
    for version in (1, 2, 3):
        state = travel.state(admin, erin_id, version=version)
        assert (state.state["email"], state.state["full_name"]) == (None, None)
        assert state.state["password_hash"] == REDACTED
        assert (state.erased, state.erased_fields) == (True, ["email", "full_name"])
        assert state.state["erased"] is (version == 3)
        _shows_nothing_of_erin(state.model_dump(mode="json"))
    as_of = travel.state(admin, erin_id, as_of=stream[0].timestamp)
    assert (as_of.version, as_of.state["email"]) == (1, None)

    booking_stream = travel.events(admin, world.cancelled_booking, PageRequest()).items
    assert [e.erased_fields for e in booking_stream] == [["notes"], ["reason"]]
    for version in (1, 2):
        state = travel.state(admin, world.cancelled_booking, version=version)
        assert state.state["notes"] is None
        assert (state.erased, state.erased_fields) == (True, ["notes"])
        assert state.state["customer_id"] == str(erin_id)
    _shows_nothing_of_erin([e.model_dump(mode="json") for e in [*stream, *booking_stream]])
    # Another person's history is untouched.
    host_state = travel.state(admin, world.market.host.user_id, version=1)
    assert host_state.state["email"] == "host@example.com"
    assert (host_state.erased, host_state.erased_fields) == (False, [])


def test_replay_prints_her_history_with_nulls(world: ErasedWorld) -> None:
    app = world.market.runtime.app
    for aggregate_id in (world.erin.user_id, world.cancelled_booking, world.declined_booking):
        replayed = replay_aggregate(app, aggregate_id)
        assert replayed.erased
        text = "\n".join(describe_replay(replayed))
        _shows_nothing_of_erin([replayed.model_dump(mode="json"), text])
        assert "erased: " in text
    user = replay_aggregate(app, world.erin.user_id)
    registered = user.events[0]
    assert (registered.topic, registered.erased_fields) == (
        "User.UserRegistered",
        ["email", "full_name"],
    )
    assert "      erased: email, full_name" in describe_replay(user)
