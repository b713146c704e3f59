"""Kitchens: creation, listing edits, moderation lifecycle, certificates, bookability."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from aggregates.base import DomainEvent
from aggregates.errors import InvalidRequest, InvalidStateTransition, KitchenNotBookable, NotFound
from aggregates.kitchen import Kitchen
from aggregates.policies import BookingWindow
from tests.domain.scenario import (
    DOCUMENT_SHA256,
    HOST_ID,
    KITCHEN_FIELDS,
    LA,
    SF,
    attach,
    certificate_id,
    compliant_kitchen,
    given,
    kitchen_created,
    new_kitchen,
    refused,
    state_of,
    then,
    then_nothing,
    window,
)

REASON = "photos do not match the address"


def test_create_records_a_draft_with_normalized_fields() -> None:
    kitchen = new_kitchen(
        name="  Test Kitchen ", amenities=["Oven", " walk-in fridge", "oven", "  "]
    )
    then(
        kitchen,
        (
            Kitchen.KitchenCreated,
            {
                "host_id": HOST_ID,
                "name": "Test Kitchen",
                "description": "A clean commercial kitchen",
                "city": "Los Angeles",
                "jurisdiction": "los_angeles",
                "address": "1 Main St",
                "hourly_rate_cents": 5000,
                "capacity": 10,
                "amenities": ["oven", "walk-in fridge"],
                "instant_book": False,
            },
        ),
    )
    assert kitchen.status == "draft"
    assert kitchen.certificates == {}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"capacity": 0}, "invalid_capacity"),
        ({"capacity": 51}, "invalid_capacity"),
        ({"hourly_rate_cents": 0}, "invalid_hourly_rate"),
        ({"hourly_rate_cents": -100}, "invalid_hourly_rate"),
        ({"hourly_rate_cents": 100_000_01}, "invalid_hourly_rate"),
        ({"name": ""}, "invalid_name"),
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 201}, "invalid_name"),
        ({"city": ""}, "invalid_city"),
        ({"address": ""}, "invalid_address"),
        ({"description": "x" * 5001}, "invalid_description"),
        ({"amenities": [f"a{i}" for i in range(51)]}, "invalid_amenities"),
        ({"amenities": ["x" * 61]}, "invalid_amenities"),
    ],
)
def test_create_validation(overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        new_kitchen(**overrides)
    assert type(raised.value) is InvalidRequest
    assert raised.value.code == code


@pytest.mark.parametrize(
    "overrides",
    [
        {"capacity": 1},
        {"capacity": 50},
        {"hourly_rate_cents": 1},
        {"hourly_rate_cents": 100_000_00},
        {"description": ""},
        {"amenities": [f"a{i}" for i in range(50)]},
        {"amenities": ["x" * 60]},
    ],
)
def test_create_accepts_its_limits(overrides: dict[str, Any]) -> None:
    assert new_kitchen(**overrides).status == "draft"


# --- listing edits --------------------------------------------------------------------


def test_update_emits_only_changed_fields() -> None:
    kitchen = given(*kitchen_created())
    kitchen.update(
        name="Test Kitchen",
        hourly_rate_cents=6000,
        capacity=10,
        amenities=["OVEN", "walk-in fridge"],
        instant_book=True,
    )
    then(kitchen, (Kitchen.KitchenUpdated, {"hourly_rate_cents": 6000, "instant_book": True}))
    assert kitchen.hourly_rate_cents == 6000
    assert kitchen.instant_book is True


def test_update_with_nothing_changed_records_nothing() -> None:
    kitchen = given(*kitchen_created())
    kitchen.update(
        **{k: v for k, v in KITCHEN_FIELDS.items() if k not in ("host_id", "jurisdiction")}
    )
    then_nothing(kitchen)
    kitchen.update()
    then_nothing(kitchen)


def test_update_can_turn_instant_book_off_and_clear_the_description() -> None:
    history = kitchen_created(instant_book=True)
    kitchen = given(*history)
    kitchen.update(instant_book=False, description="")
    updated = then(kitchen, (Kitchen.KitchenUpdated, {"instant_book": False, "description": ""}))
    replayed = given(*history, *updated)
    assert replayed.instant_book is False
    assert replayed.description == ""


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"name": " "}, "invalid_name"),
        ({"capacity": 51}, "invalid_capacity"),
        ({"hourly_rate_cents": 0}, "invalid_hourly_rate"),
        ({"amenities": ["x" * 61]}, "invalid_amenities"),
        ({"city": ""}, "invalid_city"),
        ({"address": "x" * 501}, "invalid_address"),
    ],
)
def test_update_validation(changes: dict[str, Any], code: str) -> None:
    kitchen = given(*kitchen_created())
    with refused(kitchen, InvalidRequest, code):
        kitchen.update(**changes)


# --- moderation lifecycle -------------------------------------------------------------


def history_to(status: str) -> list[DomainEvent]:
    kitchen = new_kitchen()
    if status != "draft":
        kitchen.submit_for_review()
    if status in ("published", "suspended"):
        kitchen.approve()
    if status == "suspended":
        kitchen.suspend(REASON)
    if status == "rejected":
        kitchen.reject(REASON)
    events: list[DomainEvent] = kitchen.collect_events()  # type: ignore[assignment]
    assert given(*events).status == status
    return events


Action = Callable[[Kitchen], None]
ACTIONS: dict[str, Action] = {
    "submit": lambda k: k.submit_for_review(),
    "approve": lambda k: k.approve(),
    "reject": lambda k: k.reject(REASON),
    "suspend": lambda k: k.suspend(REASON),
    "reinstate": lambda k: k.reinstate(),
}
ALLOWED: dict[tuple[str, str], tuple[type[DomainEvent], dict[str, Any], str, str | None]] = {
    ("draft", "submit"): (Kitchen.KitchenSubmittedForReview, {}, "pending_review", None),
    ("rejected", "submit"): (Kitchen.KitchenSubmittedForReview, {}, "pending_review", None),
    ("pending_review", "approve"): (Kitchen.KitchenApproved, {}, "published", None),
    ("pending_review", "reject"): (
        Kitchen.KitchenRejected,
        {"reason": REASON},
        "rejected",
        REASON,
    ),
    ("published", "suspend"): (
        Kitchen.KitchenSuspended,
        {"reason": REASON},
        "suspended",
        REASON,
    ),
    ("suspended", "reinstate"): (Kitchen.KitchenReinstated, {}, "published", None),
}
STATUSES = ("draft", "pending_review", "published", "rejected", "suspended")


@pytest.mark.parametrize(("status", "action"), sorted(ALLOWED))
def test_allowed_transitions(status: str, action: str) -> None:
    kitchen = given(*history_to(status))
    ACTIONS[action](kitchen)
    event_class, fields, new_status, reason = ALLOWED[(status, action)]
    then(kitchen, (event_class, fields))
    assert kitchen.status == new_status
    assert kitchen.status_reason == reason


@pytest.mark.parametrize(
    ("status", "action"),
    [(s, a) for s in STATUSES for a in ACTIONS if (s, a) not in ALLOWED],
)
def test_every_other_transition_is_refused(status: str, action: str) -> None:
    kitchen = given(*history_to(status))
    with refused(kitchen, InvalidStateTransition, "invalid_state_transition"):
        ACTIONS[action](kitchen)
    assert kitchen.status == status


def test_full_lifecycle_and_resubmission_after_rejection() -> None:
    kitchen = new_kitchen()
    kitchen.submit_for_review()
    kitchen.reject("  blurry photos  ")
    kitchen.update(name="Better Kitchen")
    kitchen.submit_for_review()
    kitchen.approve()
    kitchen.suspend("health complaint")
    kitchen.reinstate()
    then(
        kitchen,
        (Kitchen.KitchenCreated, kitchen_created_fields()),
        (Kitchen.KitchenSubmittedForReview, {}),
        (Kitchen.KitchenRejected, {"reason": "blurry photos"}),
        (Kitchen.KitchenUpdated, {"name": "Better Kitchen"}),
        (Kitchen.KitchenSubmittedForReview, {}),
        (Kitchen.KitchenApproved, {}),
        (Kitchen.KitchenSuspended, {"reason": "health complaint"}),
        (Kitchen.KitchenReinstated, {}),
    )
    assert kitchen.status == "published"
    assert kitchen.status_reason is None


def kitchen_created_fields() -> dict[str, Any]:
    created = kitchen_created()[0]
    return created.model_dump(
        exclude={"originator_id", "originator_version", "timestamp", "metadata", "originator_topic"}
    )


@pytest.mark.parametrize(
    ("status", "action"), [("pending_review", "reject"), ("published", "suspend")]
)
@pytest.mark.parametrize("reason", ["", "   ", "x" * 1001])
def test_reject_and_suspend_need_a_reason(status: str, action: str, reason: str) -> None:
    kitchen = given(*history_to(status))
    with refused(kitchen, InvalidRequest, "invalid_reason"):
        getattr(kitchen, action)(reason)


# --- edits of an approved kitchen ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "material"),
    [
        ({"address": "2 Harbor Way"}, ["address"]),
        ({"city": "Pasadena"}, ["city"]),
        ({"capacity": 40}, ["capacity"]),
        ({"capacity": 2, "name": "Smaller Kitchen"}, ["capacity"]),
        ({"address": "2 Harbor Way", "city": "Pasadena"}, ["address", "city"]),
    ],
)
def test_a_material_edit_sends_a_published_kitchen_back_to_review(
    changes: dict[str, Any], material: list[str]
) -> None:
    history = compliant_kitchen()
    kitchen = given(*history)
    kitchen.update(**changes)
    recorded = then(
        kitchen,
        (Kitchen.KitchenUpdated, {**changes, "changed_since_approval": sorted(changes)}),
        (Kitchen.KitchenSentBackForReview, {"material_fields": material}),
    )
    assert kitchen.status == "pending_review"
    assert kitchen.changed_since_approval == sorted(changes)
    with pytest.raises(KitchenNotBookable):
        kitchen.check_bookable(window(datetime(2030, 1, 14, 17, tzinfo=UTC), 2), LA)
    replayed = given(*history, *recorded)
    assert state_of(replayed) == state_of(kitchen)
    # The admin reviews it again: approved, it is published and its changes accepted.
    kitchen.approve()
    then(kitchen, (Kitchen.KitchenApproved, {}))
    assert (kitchen.status, kitchen.changed_since_approval) == ("published", [])


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Renamed Kitchen"},
        {"description": "Now with a pastry station"},
        {"amenities": ["oven", "proofer"]},
        {"hourly_rate_cents": 9000},
        {"instant_book": True},
    ],
)
def test_a_descriptive_edit_stays_live_and_is_kept_as_changed_since_approval(
    changes: dict[str, Any],
) -> None:
    kitchen = given(*compliant_kitchen())
    kitchen.update(**changes)
    then(kitchen, (Kitchen.KitchenUpdated, {**changes, "changed_since_approval": sorted(changes)}))
    assert kitchen.status == "published"
    assert kitchen.changed_since_approval == sorted(changes)
    kitchen.check_bookable(window(datetime(2030, 1, 14, 17, tzinfo=UTC), 2), LA)


def test_changes_since_approval_accumulate_until_an_admin_accepts_them() -> None:
    kitchen = given(*compliant_kitchen())
    kitchen.update(name="Renamed Kitchen")
    kitchen.update(description="New words", name="Renamed Again")
    assert kitchen.changed_since_approval == ["description", "name"]
    kitchen.update(capacity=3)
    assert (kitchen.status, kitchen.changed_since_approval) == (
        "pending_review",
        ["capacity", "description", "name"],
    )
    kitchen.update(address="9 Elm St")  # under review already: stays pending_review
    kitchen.collect_events()
    assert kitchen.status == "pending_review"
    assert kitchen.changed_since_approval == ["address", "capacity", "description", "name"]
    kitchen.reject(REASON)
    kitchen.update(capacity=4)
    kitchen.submit_for_review()
    assert kitchen.changed_since_approval == ["address", "capacity", "description", "name"]
    kitchen.approve()
    assert (kitchen.status, kitchen.changed_since_approval) == ("published", [])


def test_approving_a_published_kitchen_accepts_its_descriptive_edits() -> None:
    kitchen = given(*compliant_kitchen())
    kitchen.update(name="Renamed Kitchen")
    kitchen.collect_events()
    kitchen.approve()
    then(kitchen, (Kitchen.KitchenApproved, {}))
    assert (kitchen.status, kitchen.changed_since_approval) == ("published", [])
    # Nothing left to accept: approving again is the transition it always was not.
    with refused(kitchen, InvalidStateTransition, "invalid_state_transition"):
        kitchen.approve()


def test_descriptive_edits_of_a_suspended_kitchen_are_kept_until_it_is_reinstated() -> None:
    kitchen = given(*history_to("suspended"))
    kitchen.update(name="Renamed Kitchen")
    then(
        kitchen,
        (
            Kitchen.KitchenUpdated,
            {"name": "Renamed Kitchen", "changed_since_approval": ["name"]},
        ),
    )
    assert kitchen.status == "suspended"
    kitchen.reinstate()
    then(kitchen, (Kitchen.KitchenReinstated, {}))
    assert (kitchen.status, kitchen.changed_since_approval) == ("published", [])


def test_reinstating_a_kitchen_edited_materially_while_suspended_sends_it_to_review() -> None:
    """Else a suspension would be a way round review: edit the address while
    suspended, and the reinstatement publishes it unseen."""
    kitchen = given(*history_to("suspended"))
    kitchen.update(address="666 Shady Ln", capacity=50, name="Renamed Kitchen")
    assert kitchen.status == "suspended"
    kitchen.collect_events()
    kitchen.reinstate()
    then(kitchen, (Kitchen.KitchenSentBackForReview, {"material_fields": ["address", "capacity"]}))
    assert (kitchen.status, kitchen.status_reason) == ("pending_review", None)
    assert kitchen.changed_since_approval == ["address", "capacity", "name"]
    kitchen.approve()
    assert (kitchen.status, kitchen.address, kitchen.changed_since_approval) == (
        "published",
        "666 Shady Ln",
        [],
    )


def test_a_reinstatement_recorded_after_a_material_edit_replays_as_published() -> None:
    """Histories recorded before such reinstatements went to review keep their outcome."""
    history = history_to("suspended")
    kitchen = given(*history)
    kitchen.update(address="2 Harbor Way")
    edited = kitchen.collect_events()
    recorded_then = Kitchen.KitchenReinstated(
        originator_id=history[0].originator_id,
        originator_version=len(history) + len(edited) + 1,
        timestamp=datetime(2030, 1, 8, tzinfo=UTC),
    )
    replayed = given(*history, *edited, recorded_then)
    assert (replayed.status, replayed.address, replayed.changed_since_approval) == (
        "published",
        "2 Harbor Way",
        [],
    )


@pytest.mark.parametrize("status", ["draft", "pending_review", "rejected"])
def test_edits_of_a_kitchen_never_approved_are_not_tracked(status: str) -> None:
    kitchen = given(*history_to(status))
    kitchen.update(address="2 Harbor Way", name="Renamed Kitchen")
    then(kitchen, (Kitchen.KitchenUpdated, {"address": "2 Harbor Way", "name": "Renamed Kitchen"}))
    assert (kitchen.status, kitchen.changed_since_approval) == (status, [])


def test_an_edit_recorded_before_edits_were_kept_replays_unchanged() -> None:
    history = compliant_kitchen()
    recorded_then = Kitchen.KitchenUpdated(
        originator_id=history[0].originator_id,
        originator_version=len(history) + 1,
        timestamp=datetime(2030, 1, 7, tzinfo=UTC),
        address="2 Harbor Way",
    )
    kitchen = given(*history, recorded_then)
    assert (kitchen.status, kitchen.address, kitchen.changed_since_approval) == (
        "published",
        "2 Harbor Way",
        [],
    )


# --- certificates ---------------------------------------------------------------------


CERTIFICATE: dict[str, Any] = {
    "certificate_id": certificate_id("health_permit"),
    "kind": "health_permit",
    "number": " HP-1 ",
    "issued_on": date(2029, 1, 1),
    "expires_on": date(2030, 1, 10),
    "document_sha256": " " + DOCUMENT_SHA256.upper() + " ",
}


def with_certificate(status: str = "pending") -> tuple[list[DomainEvent], UUID]:
    kitchen = new_kitchen()
    kitchen.attach_certificate(**CERTIFICATE)
    identifier = CERTIFICATE["certificate_id"]
    if status == "verified":
        kitchen.verify_certificate(identifier)
    if status == "rejected":
        kitchen.reject_certificate(identifier, "illegible")
    if status == "expired":
        kitchen.verify_certificate(identifier)
        kitchen.lapse_expired_certificates(datetime(2031, 1, 1, tzinfo=UTC), LA)
    events: list[DomainEvent] = kitchen.collect_events()  # type: ignore[assignment]
    assert given(*events).certificates[identifier].status == status
    return events, identifier


def test_attach_certificate_normalizes_and_is_pending() -> None:
    kitchen = given(*kitchen_created())
    kitchen.attach_certificate(**CERTIFICATE)
    then(
        kitchen,
        (
            Kitchen.CertificateAttached,
            {
                **CERTIFICATE,
                "number": "HP-1",
                "document_sha256": DOCUMENT_SHA256,
            },
        ),
    )
    certificate = kitchen.certificates[CERTIFICATE["certificate_id"]]
    assert certificate.status == "pending"
    assert certificate.document_sha256 == DOCUMENT_SHA256


def test_a_certificate_may_expire_on_its_issue_day() -> None:
    kitchen = given(*kitchen_created())
    kitchen.attach_certificate(**{**CERTIFICATE, "expires_on": CERTIFICATE["issued_on"]})
    assert len(kitchen.collect_events()) == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"kind": "pizza_license"}, "invalid_certificate_kind"),
        ({"kind": "Health_Permit"}, "invalid_certificate_kind"),
        ({"expires_on": date(2028, 12, 31)}, "invalid_certificate_dates"),
        ({"document_sha256": "ab" * 31}, "invalid_document_sha256"),
        ({"document_sha256": "ab" * 33}, "invalid_document_sha256"),
        ({"document_sha256": "zz" * 32}, "invalid_document_sha256"),
        ({"number": "  "}, "invalid_number"),
        ({"number": "x" * 101}, "invalid_number"),
    ],
)
def test_attach_certificate_validation(overrides: dict[str, Any], code: str) -> None:
    kitchen = given(*kitchen_created())
    with refused(kitchen, InvalidRequest, code):
        kitchen.attach_certificate(**{**CERTIFICATE, **overrides})
    assert kitchen.certificates == {}


def test_verify_a_pending_certificate() -> None:
    events, identifier = with_certificate("pending")
    kitchen = given(*events)
    kitchen.verify_certificate(identifier)
    then(kitchen, (Kitchen.CertificateVerified, {"certificate_id": identifier}))
    assert kitchen.certificates[identifier].status == "verified"


def test_reject_a_pending_certificate() -> None:
    events, identifier = with_certificate("pending")
    kitchen = given(*events)
    kitchen.reject_certificate(identifier, " illegible scan ")
    then(
        kitchen,
        (Kitchen.CertificateRejected, {"certificate_id": identifier, "reason": "illegible scan"}),
    )
    assert kitchen.certificates[identifier].status == "rejected"
    assert kitchen.certificates[identifier].rejection_reason == "illegible scan"


def test_reject_a_certificate_needs_a_reason() -> None:
    events, identifier = with_certificate("pending")
    kitchen = given(*events)
    with refused(kitchen, InvalidRequest, "invalid_reason"):
        kitchen.reject_certificate(identifier, " ")


@pytest.mark.parametrize("status", ["verified", "rejected", "expired"])
@pytest.mark.parametrize("action", ["verify", "reject"])
def test_verify_and_reject_only_from_pending(status: str, action: str) -> None:
    events, identifier = with_certificate(status)
    kitchen = given(*events)
    with refused(kitchen, InvalidStateTransition, "invalid_state_transition"):
        if action == "verify":
            kitchen.verify_certificate(identifier)
        else:
            kitchen.reject_certificate(identifier, "illegible")


@pytest.mark.parametrize("action", ["verify", "reject"])
def test_unknown_certificate_is_not_found(action: str) -> None:
    events, _ = with_certificate("pending")
    kitchen = given(*events)
    with refused(kitchen, NotFound, "certificate_not_found"):
        if action == "verify":
            kitchen.verify_certificate(UUID(int=999))
        else:
            kitchen.reject_certificate(UUID(int=999), "illegible")


# --- expiry and compliance ------------------------------------------------------------

EXPIRES_ON = date(2030, 1, 10)
END_OF_EXPIRY_DAY = datetime(2030, 1, 11, 8, 0, tzinfo=UTC)  # 2030-01-11 00:00 Los Angeles
NOW_AFTER_EXPIRY = datetime(2030, 2, 1, tzinfo=UTC)


def test_compliance_is_none_when_every_required_certificate_is_verified() -> None:
    kitchen = given(*compliant_kitchen(LA, EXPIRES_ON))
    assert kitchen.compliance_problem(LA, END_OF_EXPIRY_DAY - timedelta(hours=1)) is None


def test_expiry_is_inclusive_through_the_end_of_the_local_day() -> None:
    kitchen = given(*compliant_kitchen(LA, EXPIRES_ON))
    # 2030-01-11 07:59:59Z is 23:59:59 on 2030-01-10 in Los Angeles: still valid, though
    # already the next day in UTC.
    assert kitchen.compliance_problem(LA, END_OF_EXPIRY_DAY - timedelta(seconds=1)) is None
    assert kitchen.compliance_problem(LA, datetime(2030, 1, 11, 0, 30, tzinfo=UTC)) is None
    # A window ending exactly at local midnight (exclusive end) is still covered.
    assert kitchen.compliance_problem(LA, END_OF_EXPIRY_DAY) is None
    assert (
        kitchen.compliance_problem(LA, END_OF_EXPIRY_DAY + timedelta(seconds=1))
        == "certificate_expired"
    )


def test_a_missing_kind_is_certificate_missing() -> None:
    kitchen = given(*compliant_kitchen(LA))
    assert kitchen.compliance_problem(SF, END_OF_EXPIRY_DAY) == "certificate_missing"


@pytest.mark.parametrize("status", ["pending", "rejected"])
def test_an_unverified_certificate_is_missing(status: str) -> None:
    kitchen = new_kitchen()
    for kind in sorted(LA.required_certificates - {"health_permit"}):
        kitchen.verify_certificate(attach(kitchen, kind))
    identifier = attach(kitchen, "health_permit")
    if status == "rejected":
        kitchen.reject_certificate(identifier, "illegible")
    assert kitchen.compliance_problem(LA, END_OF_EXPIRY_DAY) == "certificate_missing"


def test_a_lapsed_certificate_is_expired_and_a_valid_one_of_the_kind_covers_it() -> None:
    kitchen = given(*compliant_kitchen(LA, EXPIRES_ON))
    assert kitchen.lapse_expired_certificates(END_OF_EXPIRY_DAY, LA)
    assert kitchen.compliance_problem(LA, NOW_AFTER_EXPIRY) == "certificate_expired"
    kitchen.verify_certificate(attach(kitchen, "health_permit", date(2031, 1, 1)))
    assert kitchen.compliance_problem(LA, NOW_AFTER_EXPIRY) == "certificate_expired"
    for kind in sorted(LA.required_certificates - {"health_permit"}):
        kitchen.verify_certificate(attach(kitchen, kind, date(2031, 1, 1)))
    assert kitchen.compliance_problem(LA, NOW_AFTER_EXPIRY) is None


def test_lapse_expired_certificates_is_idempotent() -> None:
    history = compliant_kitchen(LA, EXPIRES_ON)
    kitchen = given(*history)
    assert kitchen.lapse_expired_certificates(END_OF_EXPIRY_DAY - timedelta(seconds=1), LA) == []
    then_nothing(kitchen)

    lapsed = kitchen.lapse_expired_certificates(END_OF_EXPIRY_DAY, LA)
    identifiers = [
        c.certificate_id
        for c in kitchen.certificates.values()
        if c.kind in LA.required_certificates
    ]
    assert sorted(lapsed) == sorted(identifiers)
    events = then(
        kitchen,
        *((Kitchen.CertificateLapsed, {"certificate_id": identifier}) for identifier in lapsed),
    )
    assert all(c.status == "expired" for c in kitchen.certificates.values())

    kitchen = given(*history, *events)
    assert kitchen.lapse_expired_certificates(END_OF_EXPIRY_DAY + timedelta(days=30), LA) == []
    then_nothing(kitchen)


def test_pending_certificates_do_not_lapse() -> None:
    events, _ = with_certificate("pending")
    kitchen = given(*events)
    assert kitchen.lapse_expired_certificates(NOW_AFTER_EXPIRY, LA) == []
    then_nothing(kitchen)


# --- bookability ----------------------------------------------------------------------

MONDAY_9AM = datetime(2030, 1, 14, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", ["draft", "pending_review", "rejected", "suspended"])
def test_only_published_kitchens_are_bookable(status: str) -> None:
    kitchen = given(*history_to(status))
    with refused(kitchen, KitchenNotBookable, "kitchen_not_bookable"):
        kitchen.check_bookable(window(MONDAY_9AM, 2), LA)


def test_unpublished_compliant_kitchen_is_not_bookable() -> None:
    kitchen = given(*compliant_kitchen(LA, published=False))
    with refused(kitchen, KitchenNotBookable, "kitchen_not_bookable"):
        kitchen.check_bookable(window(MONDAY_9AM, 2), LA)


def test_published_compliant_kitchen_in_hours_is_bookable() -> None:
    kitchen = given(*compliant_kitchen(LA))
    kitchen.check_bookable(window(MONDAY_9AM, 2), LA)
    then_nothing(kitchen)


def test_published_without_certificates_is_certificate_missing() -> None:
    kitchen = given(*history_to("published"))
    with refused(kitchen, KitchenNotBookable, "certificate_missing"):
        kitchen.check_bookable(window(MONDAY_9AM, 2), LA)


def test_a_certificate_expiring_before_the_window_ends_is_certificate_expired() -> None:
    kitchen = given(*compliant_kitchen(LA, date(2030, 1, 13)))
    with refused(kitchen, KitchenNotBookable, "certificate_expired"):
        kitchen.check_bookable(window(MONDAY_9AM, 2), LA)
    kitchen = given(*compliant_kitchen(LA, date(2030, 1, 14)))
    kitchen.check_bookable(window(MONDAY_9AM, 2), LA)


def test_outside_operating_hours_is_not_bookable() -> None:
    kitchen = given(*compliant_kitchen(LA))
    four_am = MONDAY_9AM - timedelta(hours=5)
    with refused(kitchen, KitchenNotBookable, "outside_operating_hours"):
        kitchen.check_bookable(BookingWindow(start=four_am, end=four_am + timedelta(hours=2)), LA)


def test_san_francisco_needs_food_handler() -> None:
    kitchen = given(*compliant_kitchen(SF))
    assert kitchen.jurisdiction == "san_francisco"
    kitchen.check_bookable(window(MONDAY_9AM, 2, SF), SF)
    history = compliant_kitchen(LA)  # only LA's four kinds
    created = history[0]
    sf_created = type(created)(**{**created.model_dump(), "jurisdiction": "san_francisco"})
    kitchen = given(sf_created, *history[1:])
    with refused(kitchen, KitchenNotBookable, "certificate_missing"):
        kitchen.check_bookable(window(MONDAY_9AM, 2, SF), SF)
