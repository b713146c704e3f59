"""Pages: the templates (``api/console/templates``, Jinja2, every value escaped), the
headers every console answer carries, and how a page waits for the read models an
action just changed.

Every page is ``no-store`` (it shows one user's data) and sends a Content Security
Policy that allows only the console's own files: no inline script or style, nothing
from another origin, no framing, forms posting only to the console.

Read-your-writes: an action answers with a redirect to the page that shows its effect,
adding ``?done=<what>&proof=<…>&position=<its position>``. That page waits (at most
``PREP_ES_MIN_POSITION_WAIT_S``) until the read models it reads reach the position, as
an API query sent ``X-Prep-Min-Position`` would, and says what was done. Should they
not get there in time, the page says so instead of failing: the change is stored, only
not shown yet. ``proof`` (``session.outcome_proof``) binds the notice to the session
that acted: the same link opened by anyone else, or made up, says nothing and waits
for nothing.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import Query, Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from api.console.charts import percent
from api.console.session import FORM_TOKEN_FIELD, ConsoleUser, form_token, outcome_proof
from api.console.values import grouped_cents, history_link, value_html
from api.deps import POSITION_MAX, AuthenticatedUser, ServicesDep
from api.schemas import money
from prep_es.services.container import Services
from queries.consistency import ReadModelBehind, TooManyWaiters

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

DONE_MESSAGES: Final[Mapping[str, str]] = {
    "kitchen_approved": "Kitchen approved.",
    "kitchen_rejected": "Kitchen rejected.",
    "kitchen_suspended": "Kitchen suspended.",
    "kitchen_reinstated": "Kitchen reinstated: it is published again.",
    "kitchen_sent_to_review": "Kitchen reinstated into the review queue: its address, city "
    "or capacity changed since its approval.",
    "certificate_verified": "Certificate verified.",
    "certificate_rejected": "Certificate rejected.",
    "user_deactivated": "User deactivated.",
    "user_reactivated": "User reactivated.",
    "role_changed": "Role changed.",
    "rebuild_started": "Rebuild started.",
}
"""What an action did, by the code its redirect names: a code, never text from the
request, and shown only with the acting session's proof (a link cannot make the console
say something it did not do)."""


def grouped_decimal(decimal_text: str) -> str:
    """An amount as the API writes it (``"1234.50"``), for reading: its thousands
    grouped (``1,234.50``)."""
    return f"{Decimal(decimal_text):,.2f}"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _merge_query(params: Mapping[str, str], **changes: object) -> str:
    """``params`` (a request's query parameters) with ``changes``, as a query string;
    an action's notice (``done``, ``position``) is not carried to the next page."""
    merged = {
        name: value for name, value in params.items() if name not in ("done", "proof", "position")
    }
    merged.update({name: str(value) for name, value in changes.items()})
    return urlencode(merged)


environment: Final = Environment(
    loader=PackageLoader("api.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["grouped_cents"] = grouped_cents
environment.filters["grouped_decimal"] = grouped_decimal
environment.filters["when"] = _when
environment.filters["percent"] = percent
environment.filters["merge_query"] = _merge_query
environment.globals["value"] = value_html
environment.globals["history_link"] = history_link
environment.globals["api_money"] = money
"""Cents as the API writes money (``"1234.56"``): what a ``data-value`` holds."""


@dataclass(frozen=True)
class Notice:
    """What the page says above its content: an action's outcome (``done``), or that
    the read models have not caught up with it yet."""

    message: str
    position: int | None
    caught_up: bool


@dataclass(frozen=True)
class PageRead:
    """How far the page's read models had got when it was read, and the notice of the
    action that led here, if any."""

    position: int
    notice: Notice | None


def told_done(
    services: Services,
    user: AuthenticatedUser,
    done: str | None,
    proof: str | None,
    position: int | None,
) -> str | None:
    """What an action of this session did, as its redirect says (``done``, with the
    ``proof`` that this session sent it); ``None`` for anything else."""
    message = DONE_MESSAGES.get(done or "")
    if message is None or proof is None:
        return None
    expected = outcome_proof(services, user, done or "", position)
    return message if hmac.compare_digest(proof, expected) else None


def console_read(*names: str) -> Callable[..., Awaitable[PageRead]]:
    """A dependency for a page reading the read models ``names``: waits for the
    ``position`` an action's redirect names (see the module's docstring)."""
    assert names

    def reached(services: Services, position: int | None) -> tuple[int, bool]:
        positions = services.read_positions
        caught_up = True
        if position:
            # One wait for them all: each read model gets what the last one left.
            deadline = time.monotonic() + services.settings.min_position_wait_s
            try:
                for name in names:
                    remaining_s = max(0.0, deadline - time.monotonic())
                    positions.wait_for(name, position, remaining_s)
            except (ReadModelBehind, TooManyWaiters):
                # The action is stored; the page says it does not show it yet.
                caught_up = False
        return min(positions.position(name) for name in names), caught_up

    async def dependency(
        services: ServicesDep,
        user: ConsoleUser,
        done: Annotated[str | None, Query(max_length=40)] = None,
        position: Annotated[int | None, Query(ge=0, le=POSITION_MAX)] = None,
        proof: Annotated[str | None, Query(max_length=100)] = None,
    ) -> PageRead:
        message = told_done(services, user, done, proof, position)
        reached_position, caught_up = await run_in_threadpool(
            reached, services, None if message is None else position
        )
        notice = None if message is None else Notice(message, position, caught_up)
        return PageRead(position=reached_position, notice=notice)

    return dependency


def render(
    request: Request,
    template: str,
    *,
    user: AuthenticatedUser | None,
    section: str | None = None,
    read: PageRead | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered for ``user`` (``None`` on the sign-in and error pages),
    with the console's headers; ``section`` marks the navigation's current link,
    ``read`` (from :func:`console_read`) gives the notice and the footer's position."""
    services: Services = request.app.state.services
    body = environment.get_template(template).render(
        request=request,
        user=user,
        section=section,
        read=read,
        form_token_field=FORM_TOKEN_FIELD,
        form_token=form_token(services, user) if user is not None else "",
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})
