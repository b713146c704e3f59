"""What a login, a password change or a registration may cost, on each backend (SQLite
with the per-process limiter, PostgreSQL with the Redis one): attempts counted before
their password is checked, however parallel; limits per client address (per user for a
password change); password hashing on a bounded number of threads; hashes of older
parameters replaced at login."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from aggregates.user import User as UserAggregate
from prep_es.app import create_app
from prep_es.services.container import Services
from prep_es.services.passwords import Argon2Passwords
from prep_es.store.settings import Settings
from tests.api.conftest import (
    API,
    PASSWORD,
    USERS_WAIT_S,
    api_settings,
    assert_problem,
    minted_token,
)

GATE_TIMEOUT_S = 5.0
"""How long a held password check waits for the test to let it go: long enough for
every request of a burst to be answered or checking, bounded so that code that lets
too many checks through fails instead of hanging."""
WRONG_PASSWORD = "wrong password!"


class CountingPasswords(Argon2Passwords):
    """A real argon2 verifier (cheap parameters) that counts its checks, notes the
    threads they ran on, and holds each check until :meth:`let_go` (or the gate's
    timeout): a check that takes a while is when a burst's requests overlap."""

    def __init__(self, hasher: PasswordHasher | None = None, *, held: bool = True) -> None:
        super().__init__(hasher or PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        self.checks = 0
        self.threads: set[str] = set()
        self._held = held
        self._changed = threading.Condition()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._changed:
            self.checks += 1
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._held, timeout=GATE_TIMEOUT_S)
        return super().verify(password_hash, password)

    def let_go(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def wait_for(self, condition: Any, timeout_s: float = GATE_TIMEOUT_S) -> bool:
        with self._changed:
            return bool(self._changed.wait_for(condition, timeout=timeout_s))

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()


@dataclass
class Limits:
    app: Any
    client: TestClient
    passwords: CountingPasswords
    settings: Settings
    _closed: bool = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.__exit__(None, None, None)

    @property
    def services(self) -> Services:
        services = self.app.state.services
        assert isinstance(services, Services)
        return services

    def register(self, client: TestClient | None = None) -> str:
        email = f"limits-{uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD, "full_name": "L", "role": "customer"}
        response = (client or self.client).post(f"{API}/auth/register", json=body)
        assert response.status_code == 201, response.text
        self.services.read_positions.wait_for("users", response.json()["position"], USERS_WAIT_S)
        return email


def unique_client(app: Any) -> TestClient:
    """A client with an address of its own: Redis keeps its counts across tests and runs."""
    return TestClient(app, client=(f"2001:db8::{uuid4().hex[:4]}:{uuid4().hex[:4]}", 40000))


@pytest.fixture
def open_limits(database_url: str) -> Iterator[Any]:
    """``open_limits(passwords, **settings)``: the application on a fresh store."""
    opened: list[Limits] = []

    def open_(passwords: CountingPasswords, **overrides: Any) -> Limits:
        settings = api_settings(database_url, **overrides)
        app = create_app(settings, passwords=passwords)
        client = unique_client(app)
        client.__enter__()
        limits = Limits(app=app, client=client, passwords=passwords, settings=settings)
        opened.append(limits)
        return limits

    yield open_
    for limits in reversed(opened):
        limits.close()


class Burst:
    """Requests sent at once, each from its own thread; their answers by index. Logins,
    unless told another path (and a token)."""

    def __init__(
        self,
        client: TestClient,
        passwords: CountingPasswords,
        *,
        path: str = f"{API}/auth/login",
        token: str | None = None,
    ) -> None:
        self._client = client
        self._passwords = passwords
        self._path = path
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.answers: dict[int, httpx.Response] = {}
        self._threads: list[threading.Thread] = []

    def send(self, bodies: dict[int, dict[str, str]]) -> None:
        for index, body in bodies.items():
            thread = threading.Thread(target=self._post, args=(index, body))
            thread.start()
            self._threads.append(thread)

    def _post(self, index: int, body: dict[str, str]) -> None:
        self.answers[index] = self._client.post(self._path, json=body, headers=self._headers)
        self._passwords.notify()

    def settled(self, count: int) -> bool:
        """Whether ``count`` requests are each answered or having their password checked
        (held) — nothing more can happen until the checks are let go."""
        return self._passwords.wait_for(lambda: len(self.answers) + self._passwords.checks >= count)

    def join(self) -> Counter[int]:
        for thread in self._threads:
            thread.join()
        return Counter(answer.status_code for answer in self.answers.values())


def test_a_parallel_burst_of_wrong_passwords_checks_at_most_the_limit(open_limits: Any) -> None:
    limits: Limits = open_limits(CountingPasswords(), password_hashes_concurrent_max=64)
    email = limits.register()
    burst = Burst(limits.client, limits.passwords)
    burst.send({index: {"email": email, "password": WRONG_PASSWORD} for index in range(100)})
    burst.settled(100)
    limits.passwords.let_go()
    statuses = burst.join()
    failures_max = limits.settings.login_failures_max
    assert limits.passwords.checks == failures_max
    assert statuses == Counter({401: failures_max, 429: 100 - failures_max})
    limited = next(answer for answer in burst.answers.values() if answer.status_code == 429)
    assert_problem(limited, 429, "too_many_login_attempts")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_the_right_password_late_in_a_burst_is_refused_once_the_limit_is_spent(
    open_limits: Any,
) -> None:
    """60 logins at once, the right password at #37: the first 36 (wrong) spend the
    limit while their checks are still running, so #37 is refused without a check."""
    limits: Limits = open_limits(CountingPasswords(), password_hashes_concurrent_max=64)
    email = limits.register()
    wrong = {"email": email, "password": WRONG_PASSWORD}
    burst = Burst(limits.client, limits.passwords)
    burst.send(dict.fromkeys(range(1, 37), wrong))
    burst.settled(36)
    burst.send({37: {"email": email, "password": PASSWORD}})
    burst.settled(37)
    burst.send(dict.fromkeys(range(38, 61), wrong))
    burst.settled(60)
    limits.passwords.let_go()
    burst.join()
    assert_problem(burst.answers[37], 429, "too_many_login_attempts")
    assert limits.passwords.checks <= limits.settings.login_failures_max


def test_spraying_emails_from_one_address_is_limited(open_limits: Any) -> None:
    passwords = CountingPasswords(held=False)
    limits: Limits = open_limits(passwords, login_failures_per_client_max=10)
    statuses = []
    for _ in range(15):
        body = {"email": f"nobody-{uuid4().hex}@example.com", "password": PASSWORD}
        statuses.append(limits.client.post(f"{API}/auth/login", json=body).status_code)
    assert statuses == [401] * 10 + [429] * 5
    assert passwords.checks == 10
    # A success gives its attempt back, and another address is not affected.
    email = limits.register()
    other = unique_client(limits.app)
    assert other.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD}).is_success
    limited = limits.client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(limited, 429, "too_many_login_attempts")


def test_registrations_from_one_address_are_limited(open_limits: Any) -> None:
    limits: Limits = open_limits(CountingPasswords(held=False), registrations_per_client_max=3)
    for _ in range(3):
        limits.register()
    body = {"email": f"late-{uuid4().hex}@example.com", "password": PASSWORD}
    refused = limits.client.post(
        f"{API}/auth/register", json={**body, "full_name": "L", "role": "host"}
    )
    problem = assert_problem(refused, 429, "too_many_registrations")
    assert "registrations" in problem["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    limits.register(unique_client(limits.app))


def test_password_checks_beyond_the_cap_wait_then_answer_503(open_limits: Any) -> None:
    limits: Limits = open_limits(
        CountingPasswords(), password_hashes_concurrent_max=1, password_hash_wait_s=0.2
    )
    burst = Burst(limits.client, limits.passwords)
    burst.send({0: {"email": f"first-{uuid4().hex}@example.com", "password": PASSWORD}})
    assert limits.passwords.wait_for(lambda: limits.passwords.checks == 1)
    other = unique_client(limits.app)
    body = {"email": f"second-{uuid4().hex}@example.com", "password": PASSWORD}
    busy = other.post(f"{API}/auth/login", json=body)
    limits.passwords.let_go()
    assert burst.join() == Counter({401: 1})
    assert_problem(busy, 503, "password_hashing_busy")
    assert int(busy.headers["Retry-After"]) >= 1
    assert limits.passwords.checks == 1
    # Nothing was checked: the refused login did not spend an attempt.
    for _ in range(limits.settings.login_failures_max):
        assert_problem(other.post(f"{API}/auth/login", json=body), 401, "invalid_credentials")


def test_password_checks_run_on_the_capped_threads_only(open_limits: Any) -> None:
    """glibc keeps a hash's memory in its thread's arena: few threads, little memory."""
    passwords = CountingPasswords(held=False)
    limits: Limits = open_limits(
        passwords, password_hashes_concurrent_max=2, password_hash_wait_s=GATE_TIMEOUT_S
    )
    burst = Burst(limits.client, passwords)
    burst.send(
        {
            index: {"email": f"spray-{uuid4().hex}@example.com", "password": PASSWORD}
            for index in range(30)
        }
    )
    assert burst.join() == Counter({401: 30})
    assert passwords.checks == 30
    assert 1 <= len(passwords.threads) <= 2, passwords.threads


# --- password changes: wrong current passwords limited like failed logins -------------

NEW_PASSWORD = "a new horse battery staple"
PASSWORD_CHANGE = f"{API}/users/me/password"


def signed_in(limits: Limits) -> tuple[str, str]:
    """A new user's email and an access token of theirs, made without a login (whose
    password check would count as one)."""
    email = limits.register()
    credentials = limits.services.users.credentials_by_email(email)
    assert credentials is not None
    return email, minted_token(credentials.id, credentials.role)


def change_password(limits: Limits, token: str, current: str) -> httpx.Response:
    body = {"current_password": current, "new_password": NEW_PASSWORD}
    return limits.client.post(
        PASSWORD_CHANGE, json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_wrong_current_passwords_are_limited_like_failed_logins(open_limits: Any) -> None:
    """With a token alone, the current password is no oracle: after the limit, even
    the right one is refused unchecked until the window ends."""
    passwords = CountingPasswords(held=False)
    limits: Limits = open_limits(passwords)
    email, token = signed_in(limits)
    _, other = signed_in(limits)
    failures_max = limits.settings.login_failures_max
    for _ in range(failures_max):
        assert_problem(change_password(limits, token, WRONG_PASSWORD), 403, "wrong_password")
    assert passwords.checks == failures_max
    for current in (WRONG_PASSWORD, PASSWORD):
        limited = change_password(limits, token, current)
        assert_problem(limited, 429, "too_many_password_attempts")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert passwords.checks == failures_max  # nothing checked once the limit is spent
    # Per user: another user's change, and this user's logins, are not limited by it.
    assert change_password(limits, other, PASSWORD).status_code == 204
    login = limits.client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text


def test_a_parallel_burst_of_wrong_current_passwords_checks_at_most_the_limit(
    open_limits: Any,
) -> None:
    """Counted before the check, however parallel; and checked on the capped hashing
    threads only, like logins."""
    limits: Limits = open_limits(
        CountingPasswords(), password_hashes_concurrent_max=2, password_hash_wait_s=GATE_TIMEOUT_S
    )
    _, token = signed_in(limits)
    burst = Burst(limits.client, limits.passwords, path=PASSWORD_CHANGE, token=token)
    body = {"current_password": WRONG_PASSWORD, "new_password": NEW_PASSWORD}
    burst.send(dict.fromkeys(range(40), body))
    # The first two checks are held on the two hashing threads, the rest of the limit
    # wait for a turn: every other request is answered meanwhile.
    failures_max = limits.settings.login_failures_max
    assert limits.passwords.wait_for(
        lambda: len(burst.answers) == 40 - failures_max and limits.passwords.checks == 2
    )
    limits.passwords.let_go()
    statuses = burst.join()
    assert statuses == Counter({403: failures_max, 429: 40 - failures_max})
    assert limits.passwords.checks == failures_max
    assert limits.passwords.threads <= {"prep-es-hash_0", "prep-es-hash_1"}
    assert_problem(change_password(limits, token, PASSWORD), 429, "too_many_password_attempts")


def test_a_password_change_refused_busy_or_invalid_spends_no_attempt(open_limits: Any) -> None:
    limits: Limits = open_limits(
        CountingPasswords(), password_hashes_concurrent_max=1, password_hash_wait_s=0.2
    )
    _, token = signed_in(limits)
    burst = Burst(limits.client, limits.passwords)
    burst.send({0: {"email": f"first-{uuid4().hex}@example.com", "password": PASSWORD}})
    assert limits.passwords.wait_for(lambda: limits.passwords.checks == 1)
    failures_max = limits.settings.login_failures_max
    for _ in range(failures_max + 1):
        busy = change_password(limits, token, WRONG_PASSWORD)
        assert_problem(busy, 503, "password_hashing_busy")
    limits.passwords.let_go()
    burst.join()
    body = {"current_password": WRONG_PASSWORD, "new_password": "short"}
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(failures_max + 1):
        invalid = limits.client.post(PASSWORD_CHANGE, json=body, headers=headers)
        assert_problem(invalid, 422, "password_too_short")
    # Every attempt is still there, and then spent.
    for _ in range(failures_max):
        assert_problem(change_password(limits, token, WRONG_PASSWORD), 403, "wrong_password")
    assert_problem(change_password(limits, token, PASSWORD), 429, "too_many_password_attempts")


def test_a_hash_of_older_parameters_is_replaced_at_login(open_limits: Any) -> None:
    older = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    newer = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    before: Limits = open_limits(CountingPasswords(older, held=False))
    email = before.register()
    before.close()

    after: Limits = open_limits(CountingPasswords(newer, held=False))
    login = {"email": email, "password": PASSWORD}
    after.client.post(f"{API}/auth/login", json=login).raise_for_status()
    services = after.services
    services.read_positions.wait_for("users", services.runtime.app.position(), USERS_WAIT_S)
    credentials = services.users.credentials_by_email(email)
    assert credentials is not None
    assert "$m=2048,t=2,p=1$" in credentials.password_hash
    user = services.runtime.app.repository.get(credentials.id)
    assert user.password_hash == credentials.password_hash
    rehashes = [
        event
        for event in services.runtime.app.events.get(credentials.id)
        if isinstance(event, UserAggregate.PasswordRehashed)
    ]
    assert len(rehashes) == 1
    # Logins keep working, and do not rehash again.
    after.client.post(f"{API}/auth/login", json=login).raise_for_status()
    events = list(services.runtime.app.events.get(credentials.id))
    assert sum(isinstance(event, UserAggregate.PasswordRehashed) for event in events) == 1
