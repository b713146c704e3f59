"""Compliance (certificates, expiring soon) and users read models, on both backends,
built through the command handlers and checked against the aggregates."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.kitchen import Kitchen
from aggregates.user import User
from commands.context import Actor
from commands.kitchens import AttachCertificate, UpdateKitchen
from commands.users import UpdateUser
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.services.runtime import Runtime
from projections.base import Projection
from projections.compliance import ComplianceProjection
from projections.database import ReadDatabase
from projections.generations import ensure_ready, generations, request_rebuild
from projections.runners import ProjectionRunner
from projections.users import UsersProjection
from queries.base import PageRequest, Viewer
from queries.compliance import ComplianceQueries
from queries.users import UserCredentials, UserProfile, UserQueries
from tests.readmodels.test_kitchens import KitchenSpec, make_kitchen
from tests.support import (
    DOCUMENT_SHA256,
    PASSWORD,
    MutableClock,
    as_actor,
    create_user,
    open_test_runtime,
    store_settings,
)

TODAY = date(2030, 1, 23)
PROJECTIONS: tuple[type[Projection], ...] = (ComplianceProjection, UsersProjection)


@dataclass
class World:
    runtime: Runtime
    read_side: ReadSide
    admin: Actor
    host: Actor
    customer: Actor
    analyst: Actor
    user_ids: list[UUID]
    kitchen_ids: dict[str, UUID]

    @property
    def database(self) -> ReadDatabase:
        return self.read_side.query_database

    @property
    def admin_viewer(self) -> Viewer:
        return Viewer(self.admin.user_id, "admin")

    def non_admins(self) -> list[Viewer]:
        return [
            Viewer(actor.user_id, actor.role) for actor in (self.host, self.customer, self.analyst)
        ]

    def catch_up(self) -> None:
        for projection in PROJECTIONS:
            ensure_ready(self.read_side.write_database, projection)
            ProjectionRunner(
                projection, self.runtime.app, self.read_side.write_database, batch_size=40
            ).catch_up()

    def kitchens(self) -> list[Kitchen]:
        return [self.runtime.app.repository.get(i) for i in self.kitchen_ids.values()]

    def users(self) -> list[User]:
        return [self.runtime.app.repository.get(i) for i in self.user_ids]


def build_world(url: str) -> World:
    clock = MutableClock()
    runtime = open_test_runtime(url, clock)
    admin = create_user(runtime, "admin", "admin@example.com")
    host = create_user(runtime, "host", "Host@Example.com")
    customer = create_user(runtime, "customer", "customer@example.com")
    analyst = create_user(runtime, "analyst", "analyst@example.com")
    leaving = create_user(runtime, "customer", "leaving@example.com")
    promoted = create_user(runtime, "customer", "promoted@example.com")
    returning = create_user(runtime, "host", "returning@example.com")
    users = runtime.commands.users
    users.update_user(UpdateUser(user_id=leaving.user_id, active=False), as_actor(admin))
    users.update_user(UpdateUser(user_id=promoted.user_id, role="host"), as_actor(admin))
    users.update_user(UpdateUser(user_id=returning.user_id, active=False), as_actor(admin))
    users.update_user(UpdateUser(user_id=returning.user_id, active=True), as_actor(admin))

    specs = [
        KitchenSpec(
            "Soon Kitchen",
            expiries={"health_permit": (date(2030, 1, 30),), "fire_inspection": (TODAY,)},
        ),
        KitchenSpec(
            "Lapsed Kitchen",
            expiries={"business_license": (date(2030, 1, 10),)},
            rejected=("fire_inspection",),
        ),
        KitchenSpec(
            "Later Kitchen",
            jurisdiction="san_francisco",
            city="San Francisco",
            status="suspended",
            expiries={"food_handler": (date(2030, 3, 1),), "health_permit": (date(2030, 2, 22),)},
        ),
        KitchenSpec("Draft Kitchen", status="draft"),
    ]
    kitchen_ids = {spec.name: make_kitchen(runtime, host, admin, spec) for spec in specs}
    runtime.commands.kitchens.update_kitchen(
        UpdateKitchen(kitchen_id=kitchen_ids["Soon Kitchen"], name="Soon Kitchen (renamed)"),
        as_actor(host),
    )
    runtime.commands.kitchens.attach_certificate(
        _pending_certificate(kitchen_ids["Draft Kitchen"]), as_actor(host)
    )
    clock.now = datetime(2030, 1, 12, 9, tzinfo=UTC)
    assert len(runtime.commands.sweeper.sweep().lapsed_certificate_ids) == 1
    read_side = open_read_side(store_settings(url))
    world = World(
        runtime=runtime,
        read_side=read_side,
        admin=admin,
        host=host,
        customer=customer,
        analyst=analyst,
        user_ids=[
            a.user_id for a in (admin, host, customer, analyst, leaving, promoted, returning)
        ],
        kitchen_ids=kitchen_ids,
    )
    world.catch_up()
    return world


def _pending_certificate(kitchen_id: UUID) -> AttachCertificate:
    return AttachCertificate(
        kitchen_id=kitchen_id,
        kind="food_handler",
        number="FH-9",
        issued_on=date(2029, 6, 1),
        expires_on=date(2030, 6, 1),
        document_sha256=DOCUMENT_SHA256,
    )


@pytest.fixture(scope="module")
def world(module_database_url: str) -> Iterator[World]:
    built = build_world(module_database_url)
    yield built
    built.read_side.close()
    built.runtime.close()


# --- certificates --------------------------------------------------------------------


def test_certificates_equal_the_aggregates(world: World) -> None:
    page = ComplianceQueries(world.database).certificates(
        world.admin_viewer, page=PageRequest(limit=100)
    )
    expected = {
        certificate.certificate_id: (kitchen, certificate)
        for kitchen in world.kitchens()
        for certificate in kitchen.certificates.values()
    }
    assert page.total == len(expected) == len(page.items)
    attached = [record.attached_at for record in page.items]
    assert attached == sorted(attached)
    for record in page.items:
        kitchen, certificate = expected[record.id]
        assert (record.kitchen.id, record.kitchen.name, record.kitchen.status) == (
            kitchen.id,
            kitchen.name,
            kitchen.status,
        )
        assert record.kitchen.jurisdiction == kitchen.jurisdiction
        assert record.host_id == kitchen.host_id == world.host.user_id
        assert (
            record.kind,
            record.number,
            record.issued_on,
            record.expires_on,
            record.status,
            record.rejection_reason,
            record.document_sha256,
        ) == (
            certificate.kind,
            certificate.number,
            certificate.issued_on,
            certificate.expires_on,
            certificate.status,
            certificate.rejection_reason,
            certificate.document_sha256,
        )
        assert (record.reviewed_at is None) == (certificate.status == "pending")


@pytest.mark.parametrize("status", ["pending", "verified", "rejected", "expired"])
def test_certificates_by_status(world: World, status: str) -> None:
    page = ComplianceQueries(world.database).certificates(
        world.admin_viewer, status=status, page=PageRequest(limit=100)
    )
    expected = sorted(
        c.certificate_id
        for k in world.kitchens()
        for c in k.certificates.values()
        if c.status == status
    )
    assert sorted(r.id for r in page.items) == expected
    assert page.total == len(expected) > 0


def test_certificates_page(world: World) -> None:
    queries = ComplianceQueries(world.database)
    everything = queries.certificates(world.admin_viewer, page=PageRequest(limit=100)).items
    second = queries.certificates(world.admin_viewer, page=PageRequest(limit=3, offset=3))
    assert second.items == everything[3:6]
    assert (second.total, second.limit, second.offset) == (len(everything), 3, 3)


def test_expiring_certificates_with_the_kitchens_affected(world: World) -> None:
    queries = ComplianceQueries(world.database)
    soon = queries.expiring(world.admin_viewer, today=TODAY, within_days=7)
    assert [(c.kind, c.expires_on, c.days_left, c.kitchen.name) for c in soon.items] == [
        ("fire_inspection", TODAY, 0, "Soon Kitchen (renamed)"),
        ("health_permit", date(2030, 1, 30), 7, "Soon Kitchen (renamed)"),
    ]
    assert soon.total == 2
    month = queries.expiring(world.admin_viewer, today=TODAY)
    assert [(c.kind, c.kitchen.name, c.kitchen.status) for c in month.items] == [
        ("fire_inspection", "Soon Kitchen (renamed)", "published"),
        ("health_permit", "Soon Kitchen (renamed)", "published"),
        ("health_permit", "Later Kitchen", "suspended"),
    ]
    later = queries.expiring(world.admin_viewer, today=date(2030, 1, 31), within_days=1)
    assert [(c.kind, c.days_left) for c in later.items] == [
        ("fire_inspection", -8),
        ("health_permit", -1),
    ]


def brute_force_expiring(world: World, today: date, within_days: int) -> list[UUID]:
    horizon = today + timedelta(days=within_days)
    found = [
        c
        for k in world.kitchens()
        for c in k.certificates.values()
        if c.status == "verified" and c.expires_on <= horizon
    ]
    found.sort(key=lambda c: (c.expires_on, str(c.certificate_id)))
    return [c.certificate_id for c in found]


@pytest.mark.parametrize("today", [date(2029, 12, 1), TODAY, date(2030, 2, 25), date(2031, 6, 1)])
@pytest.mark.parametrize("within_days", [1, 30, 365])
def test_expiring_equals_the_brute_force(world: World, today: date, within_days: int) -> None:
    page = ComplianceQueries(world.database).expiring(
        world.admin_viewer, today=today, within_days=within_days, page=PageRequest(limit=100)
    )
    expected = brute_force_expiring(world, today, within_days)
    assert ([c.id for c in page.items], page.total) == (expected, len(expected))


@pytest.mark.parametrize("within_days", [0, -1, 366])
def test_expiring_horizon_is_bounded(world: World, within_days: int) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ComplianceQueries(world.database).expiring(
            world.admin_viewer, today=TODAY, within_days=within_days
        )
    assert raised.value.code == "invalid_within_days"


def test_compliance_is_for_admins(world: World) -> None:
    queries = ComplianceQueries(world.database)
    for viewer in world.non_admins():
        with pytest.raises(PermissionDenied):
            queries.certificates(viewer)
        with pytest.raises(PermissionDenied):
            queries.expiring(viewer, today=TODAY)
    with pytest.raises(InvalidRequest) as raised:
        queries.certificates(world.admin_viewer, status="lost")
    assert raised.value.code == "invalid_status"


# --- users ---------------------------------------------------------------------------


def test_each_user_sees_their_profile(world: World) -> None:
    queries = UserQueries(world.database)
    for user in world.users():
        profile = queries.me(Viewer(user.id, user.role), catch_up=lambda: None)
        assert (profile.id, profile.email, profile.full_name, profile.role, profile.active) == (
            user.id,
            user.email,
            user.full_name,
            user.role,
            user.active,
        )
    assert "password_hash" not in UserProfile.model_fields
    with pytest.raises(NotFound) as raised:
        queries.me(Viewer(uuid4(), "customer"), catch_up=lambda: None)
    assert raised.value.code == "user_not_found"


def test_login_credentials_carry_id_role_and_active(world: World) -> None:
    queries = UserQueries(world.database)
    for user in world.users():
        found = queries.credentials_by_email(user.email.upper())
        assert found is not None
        assert (found.id, found.role, found.active) == (user.id, user.role, user.active)
    assert queries.credentials_by_email(f"{uuid4().hex}@example.com") is None
    roles = {u.email: (u.role, u.active) for u in world.users()}
    assert roles["leaving@example.com"] == ("customer", False)
    assert roles["promoted@example.com"] == ("host", True)
    assert roles["returning@example.com"] == ("host", True)


def test_credentials_by_email_in_any_case(world: World) -> None:
    queries = UserQueries(world.database)
    credentials = queries.credentials_by_email("  HOST@example.COM ")
    assert isinstance(credentials, UserCredentials)
    assert (credentials.id, credentials.email, credentials.role, credentials.active) == (
        world.host.user_id,
        "host@example.com",
        "host",
        True,
    )
    assert Argon2Passwords.cheap_for_tests().verify(credentials.password_hash, PASSWORD)
    assert queries.credentials_by_email("nobody@example.com") is None
    assert queries.credentials_by_email("") is None
    assert queries.credentials_by_email("x" * 300 + "@example.com") is None


def test_admins_list_users(world: World) -> None:
    queries = UserQueries(world.database)
    everyone = queries.list(world.admin_viewer, page=PageRequest(limit=100))
    assert [u.id for u in everyone.items] == world.user_ids
    assert everyone.total == len(world.user_ids)
    hosts = queries.list(world.admin_viewer, role="host")
    assert [u.email for u in hosts.items] == [
        "host@example.com",
        "promoted@example.com",
        "returning@example.com",
    ]
    inactive = queries.list(world.admin_viewer, active=False)
    assert [u.email for u in inactive.items] == ["leaving@example.com"]
    active_customers = queries.list(world.admin_viewer, role="customer", active=True)
    assert [u.email for u in active_customers.items] == ["customer@example.com"]
    second = queries.list(world.admin_viewer, page=PageRequest(limit=2, offset=2))
    assert (second.items, second.total) == (everyone.items[2:4], len(world.user_ids))


def test_listing_users_is_for_admins(world: World) -> None:
    queries = UserQueries(world.database)
    for viewer in world.non_admins():
        with pytest.raises(PermissionDenied):
            queries.list(viewer)
    with pytest.raises(InvalidRequest) as raised:
        queries.list(world.admin_viewer, role="superuser")
    assert raised.value.code == "invalid_role"


def test_emails_are_unique_in_any_case(world: World) -> None:
    with world.database.reading() as sql:
        [state] = [g for g in generations(sql, UsersProjection.name) if g.active]
    table = UsersProjection(state.generation, world.database.dialect).table("users")
    with (
        pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)),
        world.read_side.write_database.transaction() as sql,
    ):
        sql.execute(
            f"INSERT INTO {table} (id, email, full_name, role, active, password_hash, erased, "
            "registered_at, updated_at, version) SELECT %s, upper(email), full_name, role, "
            f"active, password_hash, erased, registered_at, updated_at, version FROM {table} "
            "WHERE email = %s",
            (str(uuid4()), "admin@example.com"),
        )


# --- rebuild -------------------------------------------------------------------------


def all_rows(database: ReadDatabase) -> dict[str, list[dict[str, Any]]]:
    rows = {}
    with database.reading() as sql:
        for projection in PROJECTIONS:
            for table in projection.tables:
                view = projection.view(table)
                found = sql.fetchall(f"SELECT * FROM {view}")
                rows[view] = sorted(found, key=lambda row: repr(sorted(row.items())))
    return rows


def test_a_rebuild_produces_identical_rows(world: World) -> None:
    before = all_rows(world.database)
    assert all(before.values())
    for projection in PROJECTIONS:
        request_rebuild(world.read_side.write_database, projection)
    world.catch_up()
    assert all_rows(world.database) == before
