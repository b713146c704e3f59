"""An erased person leaves nothing readable behind, and nothing else changes.

One person registers (with an Idempotency-Key), renames themselves often enough for a
snapshot, changes email, tops up, books with notes, cancels with a reason of their own,
has a booking declined with the host's reason and one completed, is refunded part of
their balance and fails a login. Then they are erased. On each backend, with Redis:

- a dump of the whole database (``pg_dump``; the SQLite file with its ``-wal`` and
  every file beside it), and every key and value in the deployment's Redis namespace,
  hold none of their emails, names, notes or reason, in any encoding tried
  (:func:`encodings`);
- the trial balance and every booking's money are what they were; the erased user's
  account is named "erased user", their notes and reason are gone, the host's reason
  stays;
- a rebuild of every projection ends with the read models the erasure left;
- and their email can be registered again.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import unicodedata
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
import redis

from aggregates.base import PREP_NAMESPACE
from aggregates.booking import Booking
from aggregates.errors import NotFound
from aggregates.user import User
from commands.bookings import BookingAction, CancelBooking, DeclineBooking, RequestBooking
from commands.context import Actor, CommandContext
from commands.payouts import RequestPayout
from commands.profile import ChangeProfile
from commands.users import CreateUser
from prep_es.services.auth import Unauthenticated
from prep_es.services.container import Services, open_services
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.runtime import open_runtime
from prep_es.store.settings import PostgresLocation, Settings, SqliteLocation
from projections.database import uuid_parameter
from projections.decoding import EventDecoder
from projections.generations import ensure_ready, request_rebuild
from projections.runners import ProjectionRunner
from queries.base import ERASED_USER_NAME, PageRequest, Viewer
from queries.kitchens import KitchenFilters
from tests.properties.test_read_models_replay import dump
from tests.support import (
    PASSWORD,
    TEST_PAYMENT_SETTINGS,
    LeadsAsTheyAre,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    erase_user,
    settle_payment_notifications,
    top_up,
)
from tests.waiting import wait_until

REDIS_URL = os.environ.get("TEST_API_REDIS_URL", "redis://127.0.0.1:6379/12")
JWT_SECRET = "test-secret-erasure-6Xq2vR9tLm4pZ8wK3nB7cF1hJ5dG0sYa"
TEST_MASTER_KEY = "cHJlcC1lcyB0ZXN0czogbm90IGEgc2VjcmV0IGtleSE="
RENAMES = 52
"""Enough full-name changes for the user to be snapshotted (every 50 versions)."""
CLIENT = "203.0.113.7"


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def redis_or_skip() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError as error:
        if is_ci():
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI=true): {error}")
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}: the erasure dump tests need it")
    return REDIS_URL


def pg_dump_or_skip() -> str:
    """``pg_dump``, the newest installed (it must not be older than the server)."""
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_dump"),
        key=lambda path: int(re.sub(r"\D", "", Path(path).parent.parent.name) or 0),
    )
    found = installed[-1] if installed else shutil.which("pg_dump")
    if found is None:
        if is_ci():
            pytest.fail("pg_dump is not installed (CI=true): install postgresql-client")
        pytest.skip("PG_DUMP NOT FOUND: the PostgreSQL dump of an erasure is not checked")
    return found


# --- what must not be found --------------------------------------------------------


def _letters(count: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(count))


@dataclass(frozen=True)
class Person:
    """What one person is known by and wrote, each made unique to this run."""

    token: str
    first_name: str
    full_name: str
    first_email: str
    email: str
    notes: tuple[str, ...]
    reason: str

    @classmethod
    def make(cls) -> Person:
        token = _letters(12)
        return cls(
            token=token,
            first_name=f"Zoë Þórsdóttir {token}",
            full_name=f"Ærin Ñúñez-Ångström {token}",
            first_email=f"zoe.{token}@example.com",
            email=f"aerin.{_letters(12)}@example.org",
            notes=tuple(f"Ünïqué notes {index} «{_letters(12)}»" for index in range(3)),
            reason=f"Raison très personnelle: {_letters(12)}",
        )

    def texts(self) -> list[str]:
        return [
            self.token,
            self.first_name,
            self.full_name,
            self.first_email,
            self.email,
            *self.notes,
            self.reason,
        ]

    def emails(self) -> list[str]:
        return [self.first_email, self.email]


def _base64_fragments(data: bytes) -> Iterator[bytes]:
    """What the base64 of ``data`` looks like inside the base64 of anything holding
    it, at each of the three alignments: the characters made of ``data``'s bits only."""
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + data)
            start = -(-4 * offset // 3)
            end = 8 * (offset + len(data)) // 6
            yield encoded[start:end]


def encodings(person: Person) -> dict[bytes, str]:
    """Every form tried of what the person is known by and wrote, each named."""
    found: dict[bytes, str] = {}

    def add(form: str | bytes, name: str) -> None:
        raw = form.encode() if isinstance(form, str) else form
        assert len(raw) >= 8, (name, raw)  # short forms would match by chance
        found.setdefault(raw, name)

    for text in person.texts():
        for case, cased in (
            ("plain", text),
            ("lower", text.lower()),
            ("upper", text.upper()),
            ("casefold", text.casefold()),
            ("NFD", unicodedata.normalize("NFD", text)),
        ):
            add(cased, f"{case} {text!r}")
            add(json.dumps(cased)[1:-1], f"JSON-escaped {case} {text!r}")
            add(urllib.parse.quote(cased), f"URL-quoted {case} {text!r}")
            add(cased.encode().hex(), f"hex of {case} {text!r}")
            add(cased.encode("utf-16-le"), f"UTF-16 of {case} {text!r}")
            for fragment in _base64_fragments(cased.encode()):
                add(fragment, f"base64 of {case} {text!r}")
    for email in person.emails():
        for hashed, name in (
            (hashlib.sha256(email.encode()).hexdigest(), "sha256"),
            (hashlib.sha1(email.encode()).hexdigest(), "sha1"),
            (hashlib.md5(email.encode()).hexdigest(), "md5"),
            (str(uuid5(PREP_NAMESPACE, f"email:{email}")), "uuid5 (the former claim id)"),
            (uuid5(PREP_NAMESPACE, f"email:{email}").hex, "uuid5 hex"),
            (str(uuid5(NAMESPACE_URL, email)), "uuid5 of the URL namespace"),
        ):
            add(hashed, f"{name} of {email!r}")
    return found


def leaks(blob: bytes, forms: dict[bytes, str]) -> list[str]:
    """Each form found in ``blob``, named, with what surrounds it."""
    found = []
    for form, name in forms.items():
        at = blob.find(form)
        if at >= 0:
            line_start = blob.rfind(b"\n", 0, at) + 1
            found.append(f"{name} in {blob[max(line_start, at - 160) : at + len(form) + 40]!r}")
    return sorted(found)


# --- the world ---------------------------------------------------------------------


@dataclass
class World:
    services: Services
    market: Marketplace
    person: Person
    user_id: UUID
    bookings: dict[str, UUID]
    host_reason: str
    namespace: str

    @property
    def runtime(self) -> Any:
        return self.services.runtime

    @property
    def admin(self) -> Viewer:
        return Viewer(self.market.admin.user_id, "admin")

    def erase(self) -> None:
        """An admin erases the person, past the money left on their account."""
        erase_user(self.runtime, self.user_id, self.market.admin, self.services.user_changes.leads)

    def catch_up(self) -> None:
        database = self.services.read_side.write_database
        for projection_class in self.services.projections:
            ensure_ready(database, projection_class)
            ProjectionRunner(projection_class, self.runtime.app, database).catch_up(timeout_s=60)

    def read_models(self) -> dict[str, Any]:
        database = self.services.read_side.write_database
        return {
            projection_class.name: dump(database, projection_class)
            for projection_class in self.services.projections
        }


def erasure_settings(database_url: str, namespace: str) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": JWT_SECRET,
        "redis_url": redis_or_skip(),
        "redis_namespace": namespace,
        "run_projectors": False,
        "sweep_interval_s": 3600.0,
        **TEST_PAYMENT_SETTINGS,
    }
    if database_url.startswith("postgresql"):
        values["master_key"] = TEST_MASTER_KEY
    return Settings(**values)


def rectify(world_services: Services, user_id: UUID, person: Person) -> None:
    """The person renames themselves (often enough to be snapshotted) and changes
    email."""
    profile = world_services.runtime.commands.profile
    customer = as_actor(Actor(user_id, "customer"))
    for index in range(RENAMES):
        profile.change_profile(ChangeProfile(full_name=f"{person.first_name} {index}"), customer)
    profile.change_profile(
        ChangeProfile(full_name=person.full_name, email=person.email, current_password=PASSWORD),
        customer,
    )


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    namespace = f"erasure-{secrets.token_hex(6)}"
    clock = MutableClock()
    services = open_services(
        erasure_settings(database_url, namespace),
        clock=clock,
        passwords=Argon2Passwords.cheap_for_tests(),
    )
    try:
        yield make_world(services, clock, namespace)
    finally:
        services.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"prep_es:{namespace}:*"):
            client.delete(key)
        client.close()


def make_world(services: Services, clock: MutableClock, namespace: str) -> World:
    runtime = services.runtime
    market = build_marketplace(runtime, clock)
    person = Person.make()
    user_id = runtime.commands.users.create_user(
        CreateUser(
            email=person.first_email,
            password=PASSWORD,
            full_name=person.first_name,
            role="customer",
        ),
        CommandContext(actor=None, idempotency_key=f"register-{secrets.token_hex(8)}"),
    ).result.id
    rectify(services, user_id, person)
    snapshots = runtime.app.snapshots
    assert snapshots is not None and list(snapshots.get(user_id)), "the user was snapshotted"
    customer = Actor(user_id, "customer")
    top_up(runtime, customer, 100_000)
    settle_payment_notifications(runtime)
    host = as_actor(market.host)
    commands = runtime.commands.bookings
    bookings: dict[str, UUID] = {}
    start = clock.now + timedelta(days=2)
    for index, name in enumerate(("cancelled", "declined", "completed")):
        bookings[name] = commands.request_booking(
            RequestBooking(
                kitchen_id=market.kitchen_id,
                start_time=start + timedelta(hours=3 * index),
                end_time=start + timedelta(hours=3 * index + 2),
                guests=2,
                notes=person.notes[index],
            ),
            as_actor(customer),
        ).result.id
    host_reason = f"The host's own reason {person.token[::-1]}"
    commands.confirm_booking(BookingAction(booking_id=bookings["cancelled"]), host)
    commands.cancel_booking(
        CancelBooking(booking_id=bookings["cancelled"], reason=person.reason), as_actor(customer)
    )
    commands.decline_booking(
        DeclineBooking(booking_id=bookings["declined"], reason=host_reason), host
    )
    commands.confirm_booking(BookingAction(booking_id=bookings["completed"]), host)
    clock.advance(timedelta(days=3))
    commands.complete_booking(BookingAction(booking_id=bookings["completed"]), host)
    runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=20_000), as_actor(customer)
    )
    settle_payment_notifications(runtime)
    world = World(services, market, person, user_id, bookings, host_reason, namespace)
    world.catch_up()
    with pytest.raises(Unauthenticated):
        services.login.log_in(person.email, "not the password at all", client=CLIENT)
    services.login.log_in(person.email, PASSWORD, client="198.51.100.3")
    services.kitchens.search(KitchenFilters(), PageRequest())
    world.catch_up()
    return world


# --- what an erasure keeps -----------------------------------------------------------


def money(world: World) -> tuple[dict[UUID, int], dict[UUID, tuple[Any, ...]]]:
    balance = world.services.accounts.trial_balance(world.admin, PageRequest(limit=100))
    assert balance.accounts_total <= 100 and balance.total_cents == 0
    bookings = {
        booking_id: (
            detail.price_cents,
            detail.hourly_rate_cents,
            detail.captured_cents,
            detail.released_cents,
            detail.status,
            detail.start_time,
            detail.end_time,
        )
        for booking_id in world.bookings.values()
        for detail in [world.services.bookings.get(world.admin, booking_id)]
    }
    return {line.account_id: line.balance_cents for line in balance.lines}, bookings


def test_an_erasure_keeps_the_money_and_forgets_the_person(world: World) -> None:
    services, person = world.services, world.person
    before = money(world)
    for index, (name, booking_id) in enumerate(world.bookings.items()):
        detail = services.bookings.get(world.admin, booking_id)
        assert detail.notes == person.notes[index]
        assert detail.reason == {"cancelled": person.reason, "declined": world.host_reason}.get(
            name
        )
    known = world.runtime.commands.processor.known
    assert any(
        isinstance(copy, Booking) and copy.notes in person.notes
        for copy in map(known.get, world.bookings.values())
    )
    world.erase()
    # The users read model does not know yet; a login goes by the write model.
    assert services.users.credentials_by_email(person.email) is not None
    assert services.login.users.credentials_by_email(person.email) is None
    world.catch_up()

    assert money(world) == before
    [line] = [
        line
        for line in services.accounts.trial_balance(world.admin, PageRequest(limit=100)).lines
        if line.owner_id == world.user_id
    ]
    assert line.owner_name == ERASED_USER_NAME and line.balance_cents > 0
    for name, booking_id in world.bookings.items():
        detail = services.bookings.get(world.admin, booking_id)
        assert detail.notes is None
        assert detail.reason == (world.host_reason if name == "declined" else None)
    listed = {user.id: user for user in services.users.list(world.admin, page=None).items}
    erased = listed[world.user_id]
    assert (erased.email, erased.full_name, erased.erased, erased.active) == (
        None,
        ERASED_USER_NAME,
        True,
        False,
    )
    assert not listed[world.market.host.user_id].erased
    assert services.users.credentials_by_email(person.email) is None
    with pytest.raises(NotFound):
        services.users.me(Viewer(world.user_id, "customer"), catch_up=lambda: None)
    with pytest.raises(Unauthenticated):
        services.login.log_in(person.email, PASSWORD, client=CLIENT)
    for booking_id in world.bookings.values():
        copy = known.get(booking_id)
        assert copy is None or (isinstance(copy, Booking) and copy.notes is None)

    # A rebuild of every projection ends with the read models the erasure left.
    live = world.read_models()
    database = services.read_side.write_database
    for projection_class in services.projections:
        request_rebuild(database, projection_class)
    world.catch_up()
    assert world.read_models() == live


def test_events_decoded_before_an_erasure_are_decoded_again(world: World) -> None:
    """A process's runners share decoded events: those decoded before an erasure hold
    the person's data in clear, and are dropped once the erasure is decoded."""
    app = world.runtime.app
    decoder = EventDecoder(app)
    topics = frozenset({User.UserRegistered.TOPIC, User.UserErased.TOPIC})

    def registration() -> User.UserRegistered:
        [found] = [
            event
            for notification in decoder.notifications(
                0, app.position(), 10_000, topics, rebuilding=False
            )
            for event in [decoder.decode(notification)]
            if event.originator_id == world.user_id and isinstance(event, User.UserRegistered)
        ]
        return found

    assert registration().email == world.person.first_email
    world.erase()
    registration()  # the cached one, then the erasure
    again = registration()
    assert again.email is None and again.full_name is None
    assert {"email", "full_name"} <= again.erased_fields


def test_other_processes_drop_their_copies_at_an_erasure(world: World) -> None:
    """Where a follower keeps this process's known copies current (PostgreSQL), an
    erasure made by another process drops them: they may hold what the person wrote."""
    if world.services.known_copies is None:
        pytest.skip("no follower of other processes' writes on SQLite: nothing to drop")
    known = world.runtime.commands.processor.known
    booking_id = world.bookings["completed"]
    copy = known.get(booking_id)
    assert isinstance(copy, Booking) and copy.notes == world.person.notes[2]
    other = open_runtime(
        world.services.settings, clock=MutableClock(), passwords=Argon2Passwords.cheap_for_tests()
    )
    try:
        erase_user(
            other,
            world.user_id,
            world.market.admin,
            LeadsAsTheyAre(world.services.read_side.query_database),
        )
    finally:
        other.close()
    wait_until(lambda: booking_id not in known, 10.0, "the known copies dropped")


def wrapped_key(world: World) -> bytes:
    """The person's data key as stored (wrapped by the master key)."""
    database = world.services.read_side.write_database
    with database.reading() as sql:
        wrapped = sql.scalar(
            "SELECT wrapped_key FROM personal_data_keys WHERE subject_id = %s",
            (uuid_parameter(database.dialect, world.user_id),),
        )
    assert isinstance(wrapped, bytes) and len(wrapped) >= 32, wrapped
    return wrapped


def test_an_erasure_leaves_nothing_of_the_person_in_any_store(world: World) -> None:
    forms = encodings(world.person)
    wrapped = wrapped_key(world)
    forms |= {wrapped: "the destroyed data key", wrapped.hex().encode(): "its hex"}
    forms |= dict.fromkeys(_base64_fragments(wrapped), "its base64")
    # The forms are found where they are: before the erasure, in the read models.
    found = leaks_in(everything_stored(world), forms)
    assert f"plain {world.person.full_name!r}" in found, found
    assert ": the destroyed data key in" in found or ": its hex in" in found, found
    world.erase()
    world.catch_up()
    for projection_class in world.services.projections:
        request_rebuild(world.services.read_side.write_database, projection_class)
    world.catch_up()

    leaked = leaks_in(everything_stored(world), forms)
    assert not leaked, leaked
    redis_dump = redis_namespace_dump(world.namespace)
    assert b"attempts:" in redis_dump and b"entry:kitchens" in redis_dump, redis_dump[:500]
    leaked = leaks_in({"Redis": redis_dump}, forms)
    assert not leaked, leaked

    # The email may be registered again, by anyone.
    again = world.runtime.commands.users.create_user(
        CreateUser(
            email=world.person.email, password=PASSWORD, full_name="Someone Else", role="host"
        ),
        CommandContext(actor=None),
    ).result
    assert again.id != world.user_id and again.email == world.person.email


def everything_stored(world: World) -> dict[str, bytes]:
    """The whole database as a dump would hand it over, by where it is: ``pg_dump``'s
    output, or every file of the embedded store (the database, its WAL and every file
    beside it)."""
    location = world.services.settings.database
    if isinstance(location, PostgresLocation):
        dumped = subprocess.run(
            [pg_dump_or_skip(), "--no-owner", "--dbname", location.conninfo()],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return {"pg_dump": dumped.stdout}
    assert isinstance(location, SqliteLocation) and not location.is_memory
    database = Path(location.path)
    files = sorted(database.parent.glob(f"{database.name}*"))
    assert database in files, files
    return {path.name: path.read_bytes() for path in files if path.is_file()}


def leaks_in(stored: dict[str, bytes], forms: dict[bytes, str]) -> str:
    """Every form found anywhere in ``stored``, one a line with where; empty if none."""
    return "\n".join(
        f"{where}: {leak}" for where, blob in stored.items() for leak in leaks(blob, forms)
    )


def redis_namespace_dump(namespace: str) -> bytes:
    """Every key of the namespace and every value under it."""
    client: Any = redis.Redis.from_url(REDIS_URL)
    parts: list[bytes] = []
    try:
        for key in client.scan_iter(match=f"prep_es:{namespace}:*", count=500):
            parts.append(key)
            kind = client.type(key)
            if kind == b"string":
                parts.append(client.get(key) or b"")
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
            elif kind in (b"list",):
                parts += client.lrange(key, 0, -1)
            elif kind in (b"set",):
                parts += sorted(client.smembers(key))
            elif kind in (b"zset",):
                parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            else:
                raise AssertionError(f"a Redis {kind!r} under {key!r} that this test cannot read")
    finally:
        client.close()
    return b"\n".join(parts)
