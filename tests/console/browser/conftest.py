"""The console in a real browser: Debian's ``chromium``, driven by Playwright, against a
real ``prep-es serve`` on each backend (see :mod:`tests.console.browser.world`).

One browser and one server per backend serve the whole package; admin and analyst pages
are signed in once per backend and reused. Playwright's own browser downloads are never
used: without ``chromium`` on the ``PATH`` these tests are skipped, loudly, except under
``CI=true``, where that is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.api.conftest import REDIS_URL, redis_reachable
from tests.conftest import PostgresServer
from tests.console.browser.world import (
    ADMIN_EMAIL,
    ANALYST_EMAIL,
    PASSWORD,
    ConsoleWorld,
    open_world,
    stop_world,
)

REPOSITORY: Final = Path(__file__).resolve().parents[3]
SCREENSHOTS: Final = REPOSITORY / "build" / "screenshots"
"""Where the tests write each page's screenshots (``build/`` is ignored by git)."""

CHROMIUM_ARGUMENTS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
)
"""Headless, offline and quiet: nothing phones home, nothing is fetched but the console."""

WIDTHS: Final[dict[str, ViewportSize]] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
"""The viewports every page is looked at in (CSS pixels)."""

ACTION_TIMEOUT_MS: Final = 20_000
"""Playwright's wait for an element or a navigation (a loaded 2-core machine is slow)."""

_skipped_reasons: list[str] = []


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Skip the browser tests, loudly; under CI a failure."""
    if _is_ci():
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    _skipped_reasons.append(reason)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in dict.fromkeys(_skipped_reasons):
        terminalreporter.write_sep("!", "console browser tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(reason, red=True)
        terminalreporter.write_line(
            "Install Debian's chromium (apt-get install chromium) to run them.", red=True
        )


@pytest.fixture(scope="package")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        _unavailable("chromium is not installed: the console's browser tests need it")
    assert path is not None
    return path


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Browser]:
    """One headless Chromium for the package."""
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, args=list(CHROMIUM_ARGUMENTS), headless=True
        )
        yield launched
        launched.close()


@pytest.fixture(
    scope="package", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, chromium_path: str
) -> Iterator[ConsoleWorld]:
    """The demo served by ``prep-es serve`` on each backend in turn: embedded SQLite,
    then PostgreSQL + Redis on a fresh database (not started without a browser to
    drive it)."""
    workdir = tmp_path_factory.mktemp(f"console-{request.param}")
    if request.param == "sqlite":
        world = open_world("sqlite", f"sqlite:///{workdir / 'prep_es.db'}", workdir)
        yield world
        stop_world(world)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    if not redis_reachable(REDIS_URL):
        if _is_ci():
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI=true)", pytrace=False)
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}: PostgreSQL+Redis browser tests skipped")
    database_url = server.create_database()
    try:
        world = open_world("postgres", database_url, workdir, PREP_ES_REDIS_URL=REDIS_URL)
        yield world
        stop_world(world)
    finally:
        server.drop_database(database_url)


def new_context(browser: Browser, world: ConsoleWorld) -> BrowserContext:
    """A browser profile of its own (cookies, storage) on ``world``'s server."""
    context = browser.new_context(base_url=world.url, viewport=WIDTHS["desktop"])
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


def posted(path: str) -> Callable[[Response], bool]:
    """Whether an answer is the one to a form posted to ``path`` (for ``expect_response``)."""
    return lambda response: (
        response.request.method == "POST" and response.url.endswith(f"/console{path}")
    )


def sign_in(page: Page, email: str, password: str = PASSWORD) -> Response:
    """Through the sign-in form, as a person would; the form's answer."""
    page.goto("/console/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_response(posted("/sign-in")) as answer:
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return answer.value


@pytest.fixture
def context(browser: Browser, world: ConsoleWorld) -> Iterator[BrowserContext]:
    """A fresh browser profile for one test."""
    fresh = new_context(browser, world)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def _signed_in_page(browser: Browser, world: ConsoleWorld, email: str) -> Iterator[Page]:
    context = new_context(browser, world)
    signed_in = context.new_page()
    answer = sign_in(signed_in, email)
    assert answer.status == 303, (email, answer.status)
    yield signed_in
    context.close()


@pytest.fixture(scope="package")
def admin_page(browser: Browser, world: ConsoleWorld) -> Iterator[Page]:
    """The demo's admin, signed in once per backend; tests navigate it where they need."""
    yield from _signed_in_page(browser, world, ADMIN_EMAIL)


@pytest.fixture(scope="package")
def analyst_page(browser: Browser, world: ConsoleWorld) -> Iterator[Page]:
    """The demo's analyst, signed in once per backend."""
    yield from _signed_in_page(browser, world, ANALYST_EMAIL)
