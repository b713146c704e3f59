"""Who may do what: every operation of the application (commands, queries, operations),
asked by each role — anonymous, customer, host, admin, analyst — and by the owners of
what it touches (the customer who made the booking, the host of the kitchen), against
the status SPEC §4 gives each of them. A table, checked against the OpenAPI document
so that no operation is left out of it.

Requests that change something are made, for the roles allowed to make them, on a target
of their own (a fresh draft, booking, certificate, …), so each cell says what that role
gets from a request that can succeed; refused roles share the standing targets, which a
refusal leaves untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.api.conftest import API, PASSWORD, Api, User
from tests.api.reading import head

ROLES = ("anonymous", "customer", "host", "admin", "analyst", "own_customer", "own_host")
"""``customer`` and ``host`` own nothing the request touches; ``own_customer`` made
the booking, ``own_host`` lists the kitchen."""
SIGNED_IN = ROLES[1:]


@dataclass(frozen=True)
class Req:
    path: str
    json: Any = None
    params: dict[str, Any] | None = None


@dataclass
class World:
    """The standing targets, their owners and strangers, and fresh targets on demand."""

    api: Api
    users: dict[str, User]
    kitchen: str
    """Published, not instant-book, listed by ``own_host``."""
    draft: str
    booking: str
    """Pending, made by ``own_customer`` at ``kitchen``."""
    days: itertools.count[int] = field(default_factory=lambda: itertools.count(30))

    @property
    def own_host(self) -> User:
        return self.users["own_host"]

    @property
    def own_customer(self) -> User:
        return self.users["own_customer"]

    def window(self) -> dict[str, str]:
        """A window no other booking of the matrix uses."""
        return self.api.window(days=next(self.days))

    def fresh_draft(self) -> str:
        return str(self.api.draft_kitchen(self.own_host)["id"])

    def fresh_pending_review(self) -> str:
        kitchen = self.fresh_draft()
        self.api.ok(self.api.post(f"/kitchens/{kitchen}/submit", self.own_host))
        return kitchen

    def fresh_published(self) -> str:
        return str(self.api.published_kitchen(self.own_host)["id"])

    def fresh_suspended(self) -> str:
        kitchen = self.fresh_published()
        self.api.ok(
            self.api.post(
                f"/admin/kitchens/{kitchen}/suspend", self.api.admin, json={"reason": "Audit"}
            )
        )
        return kitchen

    def fresh_certificate(self) -> str:
        return str(self.api.attach_certificate(self.own_host, self.kitchen, "food_handler")["id"])

    def fresh_booking(self, *, confirmed: bool = False) -> str:
        body = {"kitchen_id": self.kitchen, "guests": 2, **self.window()}
        booking = self.api.ok(self.api.post("/bookings", self.own_customer, json=body), 201)
        if confirmed:
            self.api.ok(self.api.post(f"/bookings/{booking['id']}/confirm", self.own_host))
        return str(booking["id"])


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    users = {
        "customer": api.customer(),
        "host": api.register("host"),
        "admin": api.admin,
        "analyst": api.user_with_role("analyst"),
        "own_customer": api.customer(),
        "own_host": api.register("host"),
    }
    # Both hosts have somewhere to be paid, so a payout gets as far as the funds check.
    destination = {"destination": "bank-of-test"}
    for host in (users["host"], users["own_host"]):
        path = f"{API}/accounts/me/payout-destination"
        api.ok(api.client.put(path, json=destination, headers=host.headers))
    kitchen = api.published_kitchen(users["own_host"])["id"]
    draft = api.draft_kitchen(users["own_host"])["id"]
    body = {"kitchen_id": kitchen, "guests": 2, **api.window(days=3)}
    booking = api.ok(api.post("/bookings", users["own_customer"], json=body), 201)["id"]
    return World(api=api, users=users, kitchen=kitchen, draft=draft, booking=booking)


# --- the table -----------------------------------------------------------------------

Make = Callable[[World, bool], Req]
"""Builds the request; ``fresh`` when the role is expected to succeed at a change."""


@dataclass(frozen=True)
class Case:
    method: str
    template: str
    expected: dict[str, int]
    make: Make
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.template}" + (f" ({self.label})" if self.label else "")


def allow(status: int, *roles: str, others: int = 403, anonymous: int = 401) -> dict[str, int]:
    """``status`` for ``roles``; ``others`` for the rest of the signed-in roles."""
    expected = {role: status if role in roles else others for role in SIGNED_IN}
    expected["anonymous"] = status if "anonymous" in roles else anonymous
    return expected


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def signed_in(status: int) -> dict[str, int]:
    return allow(status, *SIGNED_IN)


def fixed(path: str, **kwargs: Any) -> Make:
    return lambda world, fresh: Req(path, **kwargs)


def kitchen_path(suffix: str = "", *, target: str = "kitchen") -> Make:
    return lambda world, fresh: Req(f"/kitchens/{getattr(world, target)}{suffix}")


def on_fresh(build: Callable[[World], str], path: str, standing: str, **kwargs: Any) -> Make:
    """``path`` with ``{id}`` a fresh target for a role expected to succeed, else the
    standing target named ``standing``."""

    def make(world: World, fresh: bool) -> Req:
        target = build(world) if fresh else getattr(world, standing)
        return Req(path.format(id=target), **kwargs)

    return make


def certificate(action: str, **kwargs: Any) -> Make:
    def make(world: World, fresh: bool) -> Req:
        target = world.fresh_certificate() if fresh else str(uuid4())
        return Req(f"/admin/kitchens/{world.kitchen}/certificates/{target}/{action}", **kwargs)

    return make


def request_booking(world: World, fresh: bool) -> Req:
    return Req("/bookings", json={"kitchen_id": world.kitchen, "guests": 2, **world.window()})


def reschedule(world: World, fresh: bool) -> Req:
    target = world.fresh_booking() if fresh else world.booking
    return Req(f"/bookings/{target}/reschedule", json=world.window())


def complete(world: World, fresh: bool) -> Req:
    target = world.fresh_booking(confirmed=True) if fresh else world.booking
    return Req(f"/bookings/{target}/complete")


def register(world: World, fresh: bool) -> Req:
    body = {
        "email": f"matrix-{uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "full_name": "Matrix",
        "role": "customer",
    }
    return Req("/auth/register", json=body)


def erase_user(world: World, fresh: bool) -> Req:
    """A fresh registration for the admin to erase; refused roles aim at the standing
    customer, whom a refusal leaves as they are."""
    target = world.api.register("customer").id if fresh else world.users["customer"].id
    return Req(f"/admin/users/{target}/erase", json={"reason": "Asked to be forgotten"})


def admin_user(world: World, fresh: bool) -> Req:
    return Req(f"/admin/users/{world.users['customer'].id}", json={"active": True})


KITCHEN = "/api/v1/kitchens/{kitchen_id}"
BOOKING = "/api/v1/bookings/{booking_id}"
MODERATE = "/api/v1/admin/kitchens/{kitchen_id}"
CERTIFICATE = "/api/v1/admin/kitchens/{kitchen_id}/certificates/{certificate_id}"
ANALYTICS = "/api/v1/analytics"
SHARED = "shared"  # a Case label for cases other than the route's main one

CASES = [
    # --- operations and auth ---
    Case("GET", "/healthz", everyone(200), fixed("/healthz")),
    Case("GET", "/readyz", everyone(200), fixed("/readyz")),
    Case("GET", "/metrics", everyone(200), fixed("/metrics")),
    Case("POST", "/api/v1/auth/register", everyone(201), register),
    Case(
        "POST",
        "/api/v1/auth/login",
        everyone(200),
        lambda world, fresh: Req(
            "/auth/login", json={"email": world.users["customer"].email, "password": PASSWORD}
        ),
    ),
    Case("GET", "/api/v1/users/me", signed_in(200), fixed("/users/me")),
    Case("GET", "/api/v1/users/me/export", signed_in(200), fixed("/users/me/export")),
    Case("PATCH", "/api/v1/users/me", signed_in(200), fixed("/users/me", json={"full_name": "M"})),
    # The wrong password (and an admin's own account, which another admin erases):
    # refused without erasing anyone.
    Case(
        "DELETE",
        "/api/v1/users/me",
        signed_in(403),
        fixed("/users/me", json={"password": "not the password"}),
    ),
    # A logout revokes the role's token: the test signs the role in again after it.
    Case("POST", "/api/v1/auth/logout", signed_in(204), fixed("/auth/logout")),
    # The wrong current password: refused without revoking anything.
    Case(
        "POST",
        "/api/v1/users/me/password",
        signed_in(403),
        fixed(
            "/users/me/password",
            json={"current_password": "not the password", "new_password": "a new horse battery"},
        ),
    ),
    # --- kitchens ---
    Case(
        "POST",
        "/api/v1/kitchens",
        allow(201, "host", "own_host"),
        fixed(
            "/kitchens",
            json={
                "name": "Matrix Kitchen",
                "city": "Los Angeles",
                "jurisdiction": "los_angeles",
                "address": "1 Grid St",
                "hourly_rate": "20.00",
                "capacity": 4,
            },
        ),
    ),
    Case("GET", "/api/v1/kitchens", everyone(200), fixed("/kitchens")),
    Case(
        "PATCH",
        KITCHEN,
        {**allow(200, "own_host"), "host": 403},
        lambda world, fresh: Req(f"/kitchens/{world.kitchen}", json={"description": "Updated"}),
    ),
    Case("GET", KITCHEN, everyone(200), kitchen_path()),
    Case(
        "GET",
        KITCHEN,
        allow(200, "own_host", "admin", others=404, anonymous=404),
        kitchen_path(target="draft"),
        label="a draft",
    ),
    Case(
        "GET",
        KITCHEN,
        allow(404, *SIGNED_IN, "anonymous"),
        fixed(f"/kitchens/{uuid4()}"),
        label="unknown",
    ),
    Case(
        "POST",
        KITCHEN + "/submit",
        {**allow(200, "own_host"), "host": 404},
        on_fresh(World.fresh_draft, "/kitchens/{id}/submit", "draft"),
    ),
    Case(
        "POST",
        KITCHEN + "/certificates",
        {**allow(201, "own_host"), "host": 403},
        lambda world, fresh: Req(
            f"/kitchens/{world.kitchen}/certificates",
            json={
                "kind": "food_handler",
                "number": "FH-1",
                "issued_on": "2029-01-01",
                "expires_on": "2031-01-01",
                "document_sha256": "cd" * 32,
            },
        ),
    ),
    # --- bookings ---
    Case("POST", "/api/v1/bookings", allow(201, "customer", "own_customer"), request_booking),
    Case(
        "GET",
        "/api/v1/bookings",
        allow(200, "customer", "host", "admin", "own_customer", "own_host"),
        fixed("/bookings"),
    ),
    Case(
        "GET",
        BOOKING,
        allow(200, "own_customer", "own_host", "admin"),
        lambda world, fresh: Req(f"/bookings/{world.booking}"),
    ),
    Case(
        "GET",
        BOOKING,
        allow(404, "customer", "host", "admin", "own_customer", "own_host"),
        fixed(f"/bookings/{uuid4()}"),
        label="unknown",
    ),
    Case(
        "POST",
        BOOKING + "/confirm",
        allow(200, "own_host"),
        on_fresh(World.fresh_booking, "/bookings/{id}/confirm", "booking"),
    ),
    Case(
        "POST",
        BOOKING + "/decline",
        allow(200, "own_host"),
        on_fresh(World.fresh_booking, "/bookings/{id}/decline", "booking"),
    ),
    Case(
        "PATCH",
        BOOKING + "/cancel",
        allow(200, "own_customer", "own_host"),
        on_fresh(World.fresh_booking, "/bookings/{id}/cancel", "booking"),
    ),
    Case("PATCH", BOOKING + "/reschedule", allow(200, "own_customer"), reschedule),
    # Not ended yet: the roles allowed get as far as the booking's own refusal (409).
    Case("POST", BOOKING + "/complete", allow(409, "own_host", "admin"), complete),
    # --- accounts ---
    # Gone for everyone, signed in or not: money enters only through top-ups.
    Case(
        "POST",
        "/api/v1/accounts/me/deposits",
        everyone(410),
        fixed("/accounts/me/deposits", json={"amount": "1.00"}),
    ),
    Case(
        "POST",
        "/api/v1/accounts/me/top-ups",
        allow(202, "customer", "own_customer"),
        fixed("/accounts/me/top-ups", json={"amount": "1.00", "payment_method": "pm_card_visa"}),
    ),
    Case(
        "POST",
        "/api/v1/accounts/me/withdrawals",
        allow(201, "customer", "own_customer"),
        fixed("/accounts/me/withdrawals", json={"amount": "1.00"}),
    ),
    Case(
        "PUT",
        "/api/v1/accounts/me/payout-destination",
        allow(200, "host", "own_host"),
        fixed("/accounts/me/payout-destination", json={"destination": "bank-of-test"}),
    ),
    # Hosts (each with a destination) get as far as the funds check (402): nobody has
    # earned this much.
    Case(
        "POST",
        "/api/v1/accounts/me/payouts",
        allow(402, "host", "own_host"),
        fixed("/accounts/me/payouts", json={"amount": "1000000.00"}),
    ),
    Case("GET", "/api/v1/accounts/me", signed_in(200), fixed("/accounts/me")),
    Case("GET", "/api/v1/accounts/me/entries", signed_in(200), fixed("/accounts/me/entries")),
    Case("GET", "/api/v1/accounts/me/top-ups", signed_in(200), fixed("/accounts/me/top-ups")),
    Case("GET", "/api/v1/accounts/me/payouts", signed_in(200), fixed("/accounts/me/payouts")),
    # Nobody's own: a top-up or payout of another user's is answered as one that is not.
    Case(
        "GET",
        "/api/v1/accounts/me/top-ups/{top_up_id}",
        signed_in(404),
        fixed(f"/accounts/me/top-ups/{uuid4()}"),
    ),
    Case(
        "GET",
        "/api/v1/accounts/me/payouts/{payout_id}",
        signed_in(404),
        fixed(f"/accounts/me/payouts/{uuid4()}"),
    ),
    # --- payments ---
    # Public, the provider's to call: unsigned, it is refused whoever sends it.
    Case(
        "POST",
        "/api/v1/payments/webhooks/{provider}",
        everyone(400),
        fixed("/payments/webhooks/sandbox", json={"id": "evt_unsigned", "type": "x"}),
    ),
    # --- admin commands ---
    Case(
        "POST",
        MODERATE + "/approve",
        allow(200, "admin"),
        on_fresh(World.fresh_pending_review, "/admin/kitchens/{id}/approve", "draft"),
    ),
    Case(
        "POST",
        MODERATE + "/reject",
        allow(200, "admin"),
        on_fresh(
            World.fresh_pending_review,
            "/admin/kitchens/{id}/reject",
            "draft",
            json={"reason": "Photos missing"},
        ),
    ),
    Case(
        "POST",
        MODERATE + "/suspend",
        allow(200, "admin"),
        on_fresh(
            World.fresh_published, "/admin/kitchens/{id}/suspend", "kitchen", json={"reason": "x"}
        ),
    ),
    Case(
        "POST",
        MODERATE + "/reinstate",
        allow(200, "admin"),
        on_fresh(World.fresh_suspended, "/admin/kitchens/{id}/reinstate", "kitchen"),
    ),
    Case("POST", CERTIFICATE + "/verify", allow(200, "admin"), certificate("verify")),
    Case(
        "POST",
        CERTIFICATE + "/reject",
        allow(200, "admin"),
        certificate("reject", json={"reason": "Expired scan"}),
    ),
    Case(
        "POST",
        "/api/v1/admin/projections/{name}/rebuild",
        allow(202, "admin"),
        fixed("/admin/projections/audit/rebuild"),
    ),
    Case("PATCH", "/api/v1/admin/users/{user_id}", allow(200, "admin"), admin_user),
    Case("POST", "/api/v1/admin/users/{user_id}/erase", allow(200, "admin"), erase_user),
    # --- admin queries ---
    Case("GET", "/api/v1/admin/users", allow(200, "admin"), fixed("/admin/users")),
    Case(
        "GET",
        "/api/v1/admin/moderation/kitchens",
        allow(200, "admin"),
        fixed("/admin/moderation/kitchens", params={"status": "pending_review"}),
    ),
    Case(
        "GET",
        "/api/v1/admin/certificates",
        allow(200, "admin"),
        fixed("/admin/certificates", params={"status": "pending"}),
    ),
    Case(
        "GET",
        "/api/v1/admin/compliance/expiring",
        allow(200, "admin"),
        fixed("/admin/compliance/expiring", params={"within_days": 30}),
    ),
    Case(
        "GET",
        "/api/v1/admin/ledger/trial-balance",
        allow(200, "admin"),
        fixed("/admin/ledger/trial-balance"),
    ),
    Case(
        "GET",
        "/api/v1/admin/payments/notifications",
        allow(200, "admin"),
        fixed("/admin/payments/notifications", params={"outcome": "applied"}),
    ),
    Case(
        "GET",
        "/api/v1/admin/payments/reconciliation",
        allow(200, "admin"),
        fixed("/admin/payments/reconciliation"),
    ),
    Case("GET", "/api/v1/admin/audit", allow(200, "admin"), fixed("/admin/audit")),
    Case(
        "GET",
        "/api/v1/admin/aggregates/{aggregate_id}/events",
        allow(200, "admin"),
        lambda world, fresh: Req(f"/admin/aggregates/{world.kitchen}/events"),
    ),
    Case(
        "GET",
        "/api/v1/admin/aggregates/{aggregate_id}/state",
        allow(200, "admin"),
        lambda world, fresh: Req(f"/admin/aggregates/{world.booking}/state", params={"version": 1}),
    ),
    Case("GET", "/api/v1/admin/projections", allow(200, "admin"), fixed("/admin/projections")),
    # --- analytics ---
    Case(
        "GET",
        ANALYTICS + "/kitchens/{kitchen_id}/stats",
        allow(200, "analyst", "admin", "own_host"),
        lambda world, fresh: Req(f"/analytics/kitchens/{world.kitchen}/stats"),
    ),
    Case(
        "GET",
        ANALYTICS + "/kitchens/{kitchen_id}/stats",
        {**allow(404, "analyst", "admin", "own_host", "host")},
        fixed(f"/analytics/kitchens/{uuid4()}/stats"),
        label="unknown",
    ),
    Case(
        "GET", ANALYTICS + "/revenue", allow(200, "analyst", "admin"), fixed("/analytics/revenue")
    ),
    Case(
        "GET",
        ANALYTICS + "/top-kitchens",
        allow(200, "analyst", "admin"),
        fixed("/analytics/top-kitchens"),
    ),
]


def test_the_table_covers_every_operation_of_the_application(api: Api) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in api.app.openapi()["paths"].items()
        for method in operations
    }
    assert {(case.method, case.template) for case in CASES} == documented
    assert all(set(case.expected) == set(ROLES) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_role_gets_the_status_spec_gives_it(api: Api, world: World, case: Case) -> None:
    wrong = {}
    for role in ROLES:
        expected = case.expected[role]
        request = case.make(world, 200 <= expected < 300)
        headers = {"X-Prep-Min-Position": str(head(api))}
        if role != "anonymous":
            headers["Authorization"] = f"Bearer {world.users[role].token}"
        path = API + request.path if case.template.startswith(API) else request.path
        response = api.client.request(
            case.method, path, json=request.json, params=request.params, headers=headers
        )
        if case.template == API + "/auth/logout" and role != "anonymous":
            world.users[role] = api.log_in(world.users[role].email)
        if response.status_code != expected:
            wrong[role] = (expected, response.status_code, response.text[:200])
        elif expected >= 400:
            assert response.headers["content-type"] == "application/problem+json"
    assert not wrong, wrong


def test_the_standing_targets_are_untouched_by_refusals(api: Api, world: World) -> None:
    booking = api.ok(
        api.get(
            f"/bookings/{world.booking}",
            world.own_customer,
            headers={"X-Prep-Min-Position": str(head(api))},
        )
    )
    assert booking["status"] == "pending"
    assert booking["start_time"].startswith(api.window(days=3)["start_time"][:10])
    draft = api.ok(api.get(f"/kitchens/{world.draft}", world.own_host))
    assert draft["status"] == "draft"
    kitchen = api.ok(api.get(f"/kitchens/{world.kitchen}"))
    assert kitchen["status"] == "published"
    assert UUID(kitchen["id"]) == UUID(world.kitchen)
