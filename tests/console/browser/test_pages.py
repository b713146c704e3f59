"""Every console page, at a desktop's and a phone's width, on each backend: it answers,
runs without a console error (a script or style the Content Security Policy refused
would be one), is screenshotted into ``build/screenshots/<backend>/<page>-<width>.png``,
and axe-core finds no serious or critical accessibility violation on it.

The analytics pages are found by following the analytics section's links from its
first page, so that each one it has is checked without this file naming it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import ConsoleMessage, Error, Page, Request, Response, expect

from tests.console.browser.conftest import SCREENSHOTS, WIDTHS
from tests.console.browser.world import CUSTOMER_EMAIL, PASSWORD, ConsoleWorld

AXE: Final = Axe()
BLOCKING_IMPACTS: Final = ("serious", "critical")
ANALYTICS: Final = "/console/analytics"
ANALYTICS_PAGES_MAX: Final = 12
"""A bound on the analytics pages the crawl visits (each page kind is visited once)."""
UUID_PATTERN: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class ConsolePage:
    """A page to look at: who looks, where, and the status it answers."""

    name: str
    role: str
    """``admin``, ``analyst``, or ``anonymous`` (a fresh browser)."""
    path: Callable[[ConsoleWorld], str]
    status: int = 200


PAGES: Final = (
    ConsolePage("sign-in", "anonymous", lambda world: "/console/sign-in"),
    ConsolePage("home", "admin", lambda world: "/console/"),
    ConsolePage("audit", "admin", lambda world: "/console/audit"),
    ConsolePage(
        "aggregate-version",
        "admin",
        lambda world: (
            f"/console/aggregates/{world.cancelled_booking_id}?version={world.cancel_version}"
        ),
    ),
    ConsolePage("kitchens", "admin", lambda world: "/console/moderation/kitchens"),
    ConsolePage("certificates", "admin", lambda world: "/console/moderation/certificates"),
    ConsolePage("expiring", "admin", lambda world: "/console/moderation/expiring"),
    ConsolePage("users", "admin", lambda world: "/console/users"),
    ConsolePage("operations", "admin", lambda world: "/console/operations"),
    ConsolePage("ledger", "admin", lambda world: "/console/operations/ledger"),
    ConsolePage("reconciliation", "admin", lambda world: "/console/operations/reconciliation"),
    ConsolePage("not-found", "admin", lambda world: "/console/no-such-page", status=404),
)


class PageWatch:
    """What goes wrong in a page while a test looks at it: console errors (a script or
    style the Content Security Policy refused is one), uncaught exceptions, and files the
    page asked for that failed (the page's own status is the test's to check)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []

    def _on_console(self, message: ConsoleMessage) -> None:
        # A failed load is reported below, with its URL; the page's own is expected.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console error: {message.text}")

    def _on_page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught: {error}")

    def _on_response(self, response: Response) -> None:
        if response.status >= 400 and not response.request.is_navigation_request():
            self.problems.append(f"{response.url} answered {response.status}")

    def _on_request_failed(self, request: Request) -> None:
        self.problems.append(f"{request.url} failed: {request.failure}")

    def __enter__(self) -> PageWatch:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)
        self.page.on("response", self._on_response)
        self.page.on("requestfailed", self._on_request_failed)
        return self

    def __exit__(self, *_: object) -> None:
        self.page.remove_listener("console", self._on_console)
        self.page.remove_listener("pageerror", self._on_page_error)
        self.page.remove_listener("response", self._on_response)
        self.page.remove_listener("requestfailed", self._on_request_failed)


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on ``page``: rule, impact, help, and
    each offending element."""
    violations: list[dict[str, Any]] = AXE.run(page).response["violations"]
    problems = []
    for violation in violations:
        if violation["impact"] not in BLOCKING_IMPACTS:
            continue
        lines = [
            f"{violation['id']} ({violation['impact']}): {violation['help']} "
            f"<{violation['helpUrl']}>"
        ]
        for node in violation["nodes"]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    at {' '.join(map(str, node['target']))}: {summary}")
        problems.append("\n".join(lines))
    return problems


def look_at(
    page: Page, world: ConsoleWorld, name: str, width: str, path: str, status: int = 200
) -> list[str]:
    """``page`` opened at ``path`` at ``width``, screenshotted; what is wrong with it."""
    page.set_viewport_size(WIDTHS[width])
    with PageWatch(page) as watch:
        response = page.goto(path)
        assert response is not None
        page.wait_for_load_state("load")
        problems = list(watch.problems)
    if response.status != status:
        problems.insert(0, f"answered {response.status}, not {status}")
    return problems + finish(page, world, name, width)


def finish(page: Page, world: ConsoleWorld, name: str, width: str) -> list[str]:
    """The screenshot of the page as it is, and its accessibility problems."""
    folder = SCREENSHOTS / world.backend
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
    return accessibility_problems(page)


def fail_on(problems: list[str], where: str) -> None:
    if problems:
        pytest.fail(f"{where}:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(params=list(WIDTHS))
def width(request: pytest.FixtureRequest) -> str:
    return str(request.param)


ROLE_PAGES: Final = {"admin": "admin_page", "analyst": "analyst_page", "anonymous": "page"}
"""The fixture of each role's browser page."""


@pytest.mark.parametrize("console_page", PAGES, ids=[each.name for each in PAGES])
def test_a_console_page_is_accessible_at_both_widths(
    world: ConsoleWorld,
    request: pytest.FixtureRequest,
    console_page: ConsolePage,
    width: str,
) -> None:
    page: Page = request.getfixturevalue(ROLE_PAGES[console_page.role])
    path = console_page.path(world)
    problems = look_at(page, world, console_page.name, width, path, console_page.status)
    fail_on(problems, f"{path} at the {width}'s width")


def test_the_refusal_a_customer_sees_is_accessible(
    world: ConsoleWorld, page: Page, width: str
) -> None:
    page.set_viewport_size(WIDTHS[width])
    page.goto("/console/sign-in")
    page.get_by_label("Email").fill(CUSTOMER_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    with PageWatch(page) as watch:
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("for admins and analysts")).to_be_visible()
        problems = list(watch.problems)
    fail_on(problems + finish(page, world, "refused", width), f"the refusal at the {width}'s width")


def analytics_links(page: Page) -> Iterator[str]:
    """The analytics pages ``page`` links to (paths with their query), downloads left out."""
    links: list[dict[str, Any]] = page.locator("a[href]").evaluate_all(
        """links => links.map(link => ({
            href: link.href, text: link.textContent, download: link.hasAttribute('download'),
        }))"""
    )
    origin = urlsplit(page.url)
    for link in links:
        target = urlsplit(link["href"])
        if target.netloc != origin.netloc or not target.path.startswith(ANALYTICS):
            continue
        if link["download"] or "csv" in (link["text"] or "").lower() or "csv" in link["href"]:
            continue
        yield target.path + (f"?{target.query}" if target.query else "")


def page_kind(path: str) -> str:
    """A name for the kind of page at ``path``: its path, ids and query left out."""
    kind = UUID_PATTERN.sub("id", urlsplit(path).path.removeprefix(ANALYTICS)).strip("/")
    return "analytics" + (f"-{kind.replace('/', '-')}" if kind else "")


def test_every_analytics_page_is_accessible_at_both_widths(
    world: ConsoleWorld, analyst_page: Page, width: str
) -> None:
    page = analyst_page
    to_visit = [ANALYTICS]
    visited: dict[str, str] = {}
    problems: list[str] = []
    while to_visit and len(visited) < ANALYTICS_PAGES_MAX:
        path = to_visit.pop(0)
        kind = page_kind(path)
        if kind in visited:
            continue
        visited[kind] = path
        found = look_at(page, world, kind, width, path)
        problems.extend(f"{path}: {problem}" for problem in found)
        to_visit.extend(link for link in analytics_links(page) if page_kind(link) not in visited)
    assert "analytics-revenue" in visited, f"no revenue page linked from {ANALYTICS}: {visited}"
    fail_on(problems, f"the analytics pages at the {width}'s width ({', '.join(visited)})")
