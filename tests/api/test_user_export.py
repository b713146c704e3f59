"""``GET /users/me/export`` on both backends: a customer's and a host's exports hold
everything the other endpoints show them — profile, account and whole statement, top-ups,
payouts, bookings made and hosted, kitchens and certificates, audit entries — and what
is recorded about them whoever caused it (their registration, email changes, an admin's
deactivation, the admin by role only), and nothing of anyone else; a download, never without a
token, never for an erased user.

And, over HTTP, the admins' history after an erasure: audit trail and time travel
answer 200, with what was personal about the erased person null and marked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi.testclient import TestClient

from aggregates.user import User as UserAggregate
from api.queries.export import UserExportOut
from projections.accounts import AccountsProjection
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from projections.users import UsersProjection
from tests.api.conftest import (
    API,
    PASSWORD,
    Api,
    User,
    assert_problem,
    minted_token,
    services_of,
)
from tests.erasing import erase_user

NOTES = "Side door code 5812, ask for Ivo's crates"
OTHER_NOTES = "Bring the other customer's sheet pans"
CANCEL_REASON = "Ivo's van broke down"
DECLINE_REASON = "Deep clean scheduled that morning"


def exported(api: Api, user: User, position: int = 0) -> tuple[httpx.Response, dict[str, Any]]:
    headers = {"X-Prep-Min-Position": str(position)} if position else {}
    response = api.get("/users/me/export", user, headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    UserExportOut.model_validate(document)  # the declared schema is what is sent
    return response, document


def every_page(api: Api, path: str, user: User) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = api.ok(api.get(path, user, params={"limit": 100, "offset": len(items)}))
        items += page["items"]
        if len(items) >= page["total"]:
            return items


def every_audit_entry(api: Api, actor: UUID) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.ok(
            api.get(
                "/admin/audit",
                api.admin,
                params={"actor_id": str(actor), "after_position": after, "limit": 100},
            )
        )
        entries += page["items"]
        if page["next_after_position"] is None:
            return entries
        after = page["next_after_position"]


def book(api: Api, customer: User, kitchen: dict[str, Any], days: float, notes: str) -> str:
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={
                "kitchen_id": kitchen["id"],
                "guests": 2,
                "notes": notes,
                **api.window(days=days),
            },
        ),
        201,
    )
    return str(booking["id"])


@dataclass(frozen=True)
class Story:
    """A host's kitchen; a customer who topped up, booked it three times (one booking
    completed, one she cancelled, one the host declined) and withdrew some money; another
    customer's booking; a payout of the host's. ``position``: after all of it."""

    host: User
    kitchen: dict[str, Any]
    customer: User
    other: User
    completed: str
    cancelled: str
    declined: str
    others: str
    position: int


@pytest.fixture(scope="module")
def story(api: Api) -> Story:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = api.customer("500.00")
    other = api.customer("200.00")
    completed = book(api, customer, kitchen, 3, NOTES)
    cancelled = book(api, customer, kitchen, 4, NOTES)
    declined = book(api, customer, kitchen, 5, NOTES)
    others = book(api, other, kitchen, 6, OTHER_NOTES)
    api.ok(api.post(f"/bookings/{completed}/confirm", host))
    api.ok(api.patch(f"/bookings/{cancelled}/cancel", customer, json={"reason": CANCEL_REASON}))
    api.ok(api.post(f"/bookings/{declined}/decline", host, json={"reason": DECLINE_REASON}))
    api.clock.advance(timedelta(days=4))
    host = api.log_in(host.email)
    customer = api.log_in(customer.email)
    api.ok(api.post(f"/bookings/{completed}/complete", host))
    api.ok(api.post("/accounts/me/withdrawals", customer, json={"amount": "20.00"}), 201)
    api.ok(api.put("/accounts/me/payout-destination", host, json={"destination": "bank-of-ivo"}))
    api.ok(api.post("/accounts/me/payouts", host, json={"amount": "30.00"}), 201)
    api.settle_payments()
    position = api.services.runtime.app.position()
    return Story(host, kitchen, customer, other, completed, cancelled, declined, others, position)


def test_a_customers_export_is_a_download_of_all_she_sees(api: Api, story: Story) -> None:
    customer = story.customer
    response, mine = exported(api, customer, story.position)
    assert int(response.headers["X-Prep-Position"]) >= story.position
    assert response.headers["content-type"] == "application/json"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="prep-es-export-{customer.id}-')
    assert disposition.endswith('.json"')
    assert response.headers["cache-control"] == "no-store"

    assert mine["format"] == "prep-es.user-export.v1" and mine["position"] >= story.position
    assert mine["user"] == api.ok(api.get("/users/me", customer))
    assert mine["account"] == api.ok(api.get("/accounts/me", customer))
    assert mine["account_entries"] == every_page(api, "/accounts/me/entries", customer)[::-1]
    assert mine["top_ups"] == every_page(api, "/accounts/me/top-ups", customer)[::-1]
    assert mine["payouts"] == every_page(api, "/accounts/me/payouts", customer)[::-1]
    assert [p["method"] for p in mine["payouts"]] == ["refund"]
    made = {booking["id"]: booking for booking in mine["bookings_made"]}
    assert list(made) == [story.completed, story.cancelled, story.declined]
    for booking_id, booking in made.items():
        shown = api.ok(api.get(f"/bookings/{booking_id}", customer))
        assert booking == {**shown, "reason": booking["reason"]}
        assert booking["notes"] == NOTES
    # Her reason is hers; the host's reason to decline is the host's.
    assert (made[story.cancelled]["reason"], made[story.declined]["reason"]) == (
        CANCEL_REASON,
        None,
    )
    assert (mine["bookings_hosted"], mine["kitchens"]) == ([], [])
    trail = every_audit_entry(api, customer.id)
    assert [e["position"] for e in mine["audit_entries"]] == [e["position"] for e in trail]
    assert all(e["withheld_fields"] == [] for e in mine["audit_entries"])
    requested = [e for e in mine["audit_entries"] if e["event_type"] == "Booking.BookingRequested"]
    assert [e["payload"]["notes"] for e in requested] == [NOTES] * 3


def test_a_hosts_export_holds_their_kitchens_and_bookings_without_customers_words(
    api: Api, story: Story
) -> None:
    host = story.host
    _, theirs = exported(api, host, story.position)
    assert theirs["user"]["id"] == str(host.id) and theirs["user"]["role"] == "host"
    assert theirs["bookings_made"] == []
    hosted = {booking["id"]: booking for booking in theirs["bookings_hosted"]}
    assert list(hosted) == [story.completed, story.cancelled, story.declined, story.others]
    assert all("notes" not in booking for booking in hosted.values())
    assert (hosted[story.declined]["reason"], hosted[story.cancelled]["reason"]) == (
        DECLINE_REASON,
        None,
    )
    assert hosted[story.completed]["status"] == "completed"
    [owned] = theirs["kitchens"]
    shown_kitchen = api.ok(api.get(f"/kitchens/{story.kitchen['id']}", host))
    assert owned["id"] == story.kitchen["id"] and owned["address"] == shown_kitchen["address"]
    assert owned["status"] == "published"
    certificates = shown_kitchen["compliance"]["certificates"]
    assert owned["certificates"] == certificates and certificates
    assert theirs["payouts"] == every_page(api, "/accounts/me/payouts", host)[::-1]
    assert [p["method"] for p in theirs["payouts"]] == ["payout"]
    assert theirs["account_entries"] == every_page(api, "/accounts/me/entries", host)[::-1]
    assert {e["actor_id"] for e in theirs["audit_entries"]} == {str(host.id)}


def test_no_export_holds_anyone_elses_data(api: Api, story: Story) -> None:
    wait = {"X-Prep-Min-Position": str(story.position)}
    for holder, forbidden in (
        (story.customer, (story.other, story.host)),
        (story.host, (story.customer, story.other)),
    ):
        text = api.get("/users/me/export", holder, headers=wait).text
        for someone in forbidden:
            assert someone.email not in text
        words = (
            (OTHER_NOTES, DECLINE_REASON) if holder == story.customer else (NOTES, CANCEL_REASON)
        )
        for written in (*words, OTHER_NOTES):
            assert written not in text, (holder.role, written)
    other = api.get("/users/me/export", story.other, headers=wait).text
    for booking_id in (story.completed, story.cancelled, story.declined):
        assert booking_id not in other
    assert story.customer.email not in other and NOTES not in other


def test_an_export_holds_what_is_recorded_about_the_caller_whoever_caused_it(
    api: Api, story: Story
) -> None:
    first_email = f"first-{uuid4().hex[:10]}@example.com"
    user = api.register(email=first_email)
    emails = [first_email]
    for n in (2, 3):
        emails.append(f"email-{n}-{uuid4().hex[:10]}@example.com")
        api.ok(
            api.patch("/users/me", user, json={"email": emails[-1], "current_password": PASSWORD})
        )
    admin = api.admin
    api.ok(api.patch(f"/admin/users/{user.id}", admin, json={"active": False}))
    reactivated = api.ok(api.patch(f"/admin/users/{user.id}", admin, json={"active": True}))
    api.clock.advance(timedelta(seconds=1))  # past the deactivation's revocation
    user = api.log_in(emails[-1], min_position=reactivated["position"])

    response, document = exported(api, user, reactivated["position"])

    entries = document["entries_about_me"]
    [opened] = [e for e in entries if e["aggregate_type"] == "Account"]
    assert opened["event_type"] == "Account.AccountOpened"  # with the registration
    assert opened["payload"]["owner_id"] == str(user.id)
    about = [e for e in entries if e["aggregate_type"] == "User"]
    assert [e["position"] for e in entries] == sorted(e["position"] for e in entries)
    assert [(e["event_type"], e["aggregate_id"]) for e in about] == [
        ("User.UserRegistered", str(user.id)),
        ("User.EmailChanged", str(user.id)),
        ("User.EmailChanged", str(user.id)),
        ("User.UserDeactivated", str(user.id)),
        ("User.UserReactivated", str(user.id)),
    ]
    registered, *changes, deactivated, reactivated_entry = about
    assert registered["payload"]["email"] == first_email
    assert registered["payload"]["full_name"] == "Test User"
    assert registered["payload"]["password_hash"] == "***"
    assert [e["payload"]["email"] for e in changes] == emails[1:]
    for own in (registered, *changes):
        assert own["actor_id"] in (None, str(user.id)) and own["actor_withheld"] is False
    assert [e["actor_id"] for e in changes] == [str(user.id)] * 2
    for by_admin in (deactivated, reactivated_entry):
        assert by_admin["actor_withheld"] is True and by_admin["actor_role"] == "admin"
        assert (by_admin["actor_id"], by_admin["request_id"], by_admin["correlation_id"]) == (
            None,
            None,
            None,
        )
    # Her own email changes are what she did, too.
    assert {e["position"] for e in changes} <= {e["position"] for e in document["audit_entries"]}
    text = response.text
    assert str(admin.id) not in text and admin.email not in text
    for someone in (story.customer, story.host, story.other):
        assert str(someone.id) not in text and someone.email not in text


def test_an_export_shows_who_else_moved_money_on_the_account_by_role_only(
    api: Api, story: Story
) -> None:
    _, hers = exported(api, story.customer, story.position)
    about = hers["entries_about_me"]
    account_events = {e["event_type"] for e in about if e["aggregate_type"] == "Account"}
    assert {"Account.AccountOpened", "Account.TopUpCredited", "Account.HoldCaptured"} <= (
        account_events
    )
    [captured] = [e for e in about if e["event_type"] == "Account.HoldCaptured"]
    assert captured["actor_withheld"] is True and captured["actor_role"] == "host"
    assert captured["actor_id"] is None
    assert {e["actor_id"] for e in about} <= {None, str(story.customer.id)}
    assert [e["position"] for e in about] == sorted({e["position"] for e in about})


def test_a_new_user_exports_at_once_with_empty_lists(api: Api) -> None:
    user = api.register("customer")
    _, document = exported(api, user)
    assert document["user"]["email"] == user.email
    for name in ("account_entries", "top_ups", "payouts", "bookings_made", "kitchens"):
        assert document[name] == [], name
    about = {e["event_type"]: e for e in document["entries_about_me"]}
    assert sorted(about) == ["Account.AccountOpened", "User.UserRegistered"]
    assert about["User.UserRegistered"]["payload"]["email"] == user.email


def test_export_needs_a_valid_token_of_a_user_not_erased(api: Api) -> None:
    assert_problem(api.get("/users/me/export"), 401, "not_authenticated")
    assert_problem(
        api.get("/users/me/export", headers={"Authorization": "Bearer nonsense"}),
        401,
        "invalid_token",
    )
    user = api.customer("50.00")
    exported(api, user)
    position = erase_user(api.services.runtime.app, user.id, at=api.clock.now)
    refused = api.get("/users/me/export", user, headers={"X-Prep-Min-Position": str(position)})
    assert refused.status_code == 401, refused.text
    assert user.email not in refused.text


def test_admin_history_of_an_erased_user_answers_with_nulls(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    email = f"to.be.forgotten.{uuid4().hex[:8]}@example.com"
    full_name = "Ottilie Vanterpool"
    created = api.ok(
        api.post(
            "/auth/register",
            json={
                "email": email,
                "password": "correct horse battery",
                "full_name": full_name,
                "role": "customer",
            },
        ),
        201,
    )
    user = api.log_in(email, min_position=created["position"])
    api.top_up(user, "100.00")
    booking = book(api, user, kitchen, 3, NOTES)
    api.ok(api.patch(f"/bookings/{booking}/cancel", user, json={"reason": CANCEL_REASON}))
    position = erase_user(api.services.runtime.app, user.id, at=api.clock.now)
    admin = api.admin
    wait = {"X-Prep-Min-Position": str(position)}
    secrets = (email, full_name, "Vanterpool", NOTES, CANCEL_REASON)
    answers: list[httpx.Response] = []

    trail = api.get("/admin/audit", admin, params={"actor_id": str(user.id)}, headers=wait)
    answers.append(trail)
    entries = api.ok(trail)["items"]
    marked = {e["event_type"]: (e["erased"], e["erased_fields"]) for e in entries}
    assert marked["Booking.BookingRequested"] == (True, ["notes"])
    assert marked["Booking.BookingCancelled"] == (True, ["reason"])
    registered = api.ok(
        api.get("/admin/audit", admin, params={"aggregate_id": str(user.id)}, headers=wait)
    )["items"][0]
    assert registered["event_type"] == "User.UserRegistered"
    assert (registered["payload"]["email"], registered["erased_fields"]) == (
        None,
        ["email", "full_name"],
    )

    for aggregate_id in (user.id, booking):
        events = api.get(f"/admin/aggregates/{aggregate_id}/events", admin)
        answers.append(events)
        versions = api.ok(events)["total"]
        assert any(e["erased"] for e in api.ok(events)["items"])
        for version in range(1, versions + 1):
            state = api.get(
                f"/admin/aggregates/{aggregate_id}/state", admin, params={"version": version}
            )
            answers.append(state)
            body = api.ok(state)
            assert body["erased"] is True
            if aggregate_id == user.id:
                assert body["state"]["email"] is None and body["state"]["full_name"] is None
                assert body["erased_fields"] == ["email", "full_name"]
            else:
                assert body["state"]["notes"] is None and body["erased_fields"] == ["notes"]
    user_state = api.ok(api.get(f"/admin/aggregates/{user.id}/state", admin, params={"version": 1}))
    assert user_state["aggregate_type"] == UserAggregate.TOPIC
    for answer in answers:
        for secret in secrets:
            assert secret not in answer.text and secret.lower() not in answer.text.lower()
        assert "personal_v1" not in answer.text


def test_an_export_before_its_read_models_are_built_is_a_503_not_a_cut_body(
    serve: Callable[..., TestClient],
) -> None:
    client = serve()  # no projectors in this process
    services = services_of(client)
    registered = client.post(
        f"{API}/auth/register",
        json={
            "email": "early@example.com",
            "password": PASSWORD,
            "full_name": "Early Bird",
            "role": "customer",
        },
    )
    assert registered.status_code == 201, registered.text
    database = services.read_side.write_database
    for projection in (UsersProjection, AccountsProjection):  # not the others
        ensure_ready(database, projection)
        ProjectionRunner(projection, services.runtime.app, database).catch_up()
    token = minted_token(UUID(registered.json()["id"]), "customer")

    refused = client.get(f"{API}/users/me/export", headers={"Authorization": f"Bearer {token}"})

    assert_problem(refused, 503, "read_model_not_ready")
