"""Operations pages (admins): the projections and their lag, with any rebuild's progress
kept live; the ledger's trial balance; reconciliation with the payment provider. Each
shows what the API's admin route for it answers (``GET /api/v1/admin/projections``,
``/admin/ledger/trial-balance``, ``/admin/payments/reconciliation``), read the same way."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.console.params import Offset, blank_is_none
from api.console.rendering import (
    PAGE_HEADERS,
    Notice,
    PageRead,
    console_read,
    render,
    told_done,
)
from api.console.session import CONSOLE_PATH, HTMX_REQUEST_HEADER, ConsoleAdmin
from api.deps import AccountQueriesDep, ServicesDep
from api.queries.params import PointInTime
from prep_es.services.container import Services
from prep_es.services.reconciliation import Difference, reconcile
from projections.status import ProjectionFailure, ProjectionStatus
from queries.base import PageRequest

router = APIRouter(prefix="/operations")

OPERATIONS_PATH: Final = f"{CONSOLE_PATH}/operations"
PROJECTIONS_FRAGMENT_PATH: Final = f"{OPERATIONS_PATH}/projections"
REFRESH_EVERY_S: Final = 2
TRIAL_BALANCE_PAGE_SIZE: Final = 50
SHOWN_DIGEST_LENGTH: Final = 16
"""Hex digits of each digest in :attr:`ProjectionsView.shown`."""
PERCENT: Final = 100

STATE_WORDS: Final = {"running": "Running", "failed": "Failed", "not_started": "Not started"}


@dataclass(frozen=True)
class RebuildRow:
    """A generation being built, as the page shows it."""

    generation: int
    version: int
    state: str
    position: int
    head: int
    percent: str
    """``position / head`` in percent, one decimal: as ``progress`` in the API."""
    failure: ProjectionFailure | None


@dataclass(frozen=True)
class ProjectionRow:
    """One projection, as the page shows it: every value the row's text is made of."""

    name: str
    state: str
    state_words: str
    position: int
    head: int
    lag_events: int
    lag_seconds: str
    """The API's ``lag_seconds`` to a tenth of a second."""
    generation: int | None
    version: int | None
    code_version: int
    events_applied: int
    updated_at: datetime | None
    failure: ProjectionFailure | None
    rebuilds: tuple[RebuildRow, ...]

    @classmethod
    def of(cls, status: ProjectionStatus) -> ProjectionRow:
        return cls(
            name=status.name,
            state=status.state,
            state_words=STATE_WORDS.get(status.state, status.state.replace("_", " ")),
            position=status.position,
            head=status.head,
            lag_events=status.lag_events,
            lag_seconds=f"{status.lag_s:.1f}",
            generation=status.generation,
            version=status.version,
            code_version=status.code_version,
            events_applied=status.events_applied,
            updated_at=status.updated_at,
            failure=status.failure,
            rebuilds=tuple(
                RebuildRow(
                    generation=building.generation,
                    version=building.version,
                    state=building.state,
                    position=building.position,
                    head=status.head,
                    percent=f"{building.progress * PERCENT:.1f}",
                    failure=building.failure,
                )
                for building in status.building
            ),
        )


def summary_of(rows: Sequence[ProjectionRow]) -> str:
    """One sentence on all of them, the page's live region: what a screen reader hears
    when it changes (the table, whose lag changes at every refresh while the store is
    written, is not read out)."""
    if not rows:
        return "No projections."
    failed = [row.name for row in rows if row.state == "failed"]
    behind = [row.name for row in rows if row.lag_events > 0 and row.state != "failed"]
    rebuilding = [f"{row.name} ({rebuild.percent} %)" for row in rows for rebuild in row.rebuilds]
    parts = []
    if failed:
        parts.append(f"Failed: {', '.join(failed)}.")
    if behind:
        parts.append(f"Behind the event store: {', '.join(behind)}.")
    if not failed and not behind:
        parts.append(f"All {len(rows)} projections are caught up.")
    parts.append(f"Rebuilding: {', '.join(rebuilding)}." if rebuilding else "No rebuild under way.")
    return " ".join(parts)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:SHOWN_DIGEST_LENGTH]


@dataclass(frozen=True)
class ProjectionsView:
    rows: tuple[ProjectionRow, ...]
    summary: str
    head: int
    lowest_position: int

    @property
    def shown(self) -> str:
        """What the page shows: a digest of the table, then one of the summary. The
        browser sends it back when it asks for the table again, and is told "no change"
        (204) while it still holds."""
        return _digest(repr(self.rows)) + _digest(self.summary)

    def summary_shown(self, shown: str | None) -> bool:
        """Whether the browser that sent ``shown`` already shows this summary (so it is
        not read out again)."""
        return shown is not None and shown[SHOWN_DIGEST_LENGTH:] == _digest(self.summary)


def projections_view(services: Services) -> ProjectionsView:
    rows = tuple(ProjectionRow.of(status) for status in services.projection_statuses())
    return ProjectionsView(
        rows=rows,
        summary=summary_of(rows),
        head=max((row.head for row in rows), default=0),
        lowest_position=min((row.position for row in rows), default=0),
    )


def _table_context(view: ProjectionsView, *, new_summary: bool = False) -> dict[str, Any]:
    return {
        "view": view,
        "fragment_path": PROJECTIONS_FRAGMENT_PATH,
        "refresh_every_s": REFRESH_EVERY_S,
        "new_summary": new_summary,
    }


@router.get("", response_class=HTMLResponse)
async def projections_page(
    request: Request,
    admin: ConsoleAdmin,
    services: ServicesDep,
    done: Annotated[str | None, Query(max_length=40)] = None,
    proof: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    """Every projection: its position, the event store's head, the lag, its status and
    generation, and the progress of a rebuild; a button to rebuild each. The table is
    refreshed every few seconds while the page is open (a reload does the same).
    Like the API's route, this page does not wait for the read models: it is where one
    sees why they are behind."""
    view = await run_in_threadpool(projections_view, services)
    message = told_done(services, admin, done, proof, None)
    read = PageRead(
        position=view.lowest_position,
        notice=None if message is None else Notice(message, None, caught_up=True),
    )
    return render(
        request,
        "operations_projections.html",
        user=admin,
        section="operations",
        read=read,
        **_table_context(view),
    )


@router.get("/projections", response_class=HTMLResponse)
async def projections_fragment(
    request: Request,
    admin: ConsoleAdmin,
    services: ServicesDep,
    shown: Annotated[str | None, Query(max_length=2 * SHOWN_DIGEST_LENGTH)] = None,
) -> Response:
    """The projections table alone, for the page to swap in, with the summary for its
    live region when the browser does not show that one yet; 204 when the browser
    already shows what it would say (``shown``). A browser asking for it as a page goes
    to the page."""
    if HTMX_REQUEST_HEADER not in request.headers:
        return RedirectResponse(OPERATIONS_PATH, status_code=303)
    view = await run_in_threadpool(projections_view, services)
    if shown == view.shown:
        return Response(status_code=204, headers=PAGE_HEADERS)
    context = _table_context(view, new_summary=not view.summary_shown(shown))
    return render(request, "operations_projections_table.html", user=admin, **context)


@router.get("/ledger", response_class=HTMLResponse)
async def trial_balance_page(
    request: Request,
    admin: ConsoleAdmin,
    accounts: AccountQueriesDep,
    read: Annotated[PageRead, Depends(console_read("accounts"))],
    offset: Offset = 0,
) -> HTMLResponse:
    """Every account with a movement and its balance, and the sum of them all, which
    double entry keeps at 0.00."""
    trial = await run_in_threadpool(
        accounts.trial_balance,
        admin.viewer,
        PageRequest(limit=TRIAL_BALANCE_PAGE_SIZE, offset=offset),
    )
    return render(
        request,
        "operations_ledger.html",
        user=admin,
        section="operations",
        read=read,
        trial=trial,
        page={
            "items": trial.lines,
            "total": trial.accounts_total,
            "limit": trial.limit,
            "offset": trial.offset,
        },
    )


Since = Annotated[PointInTime | None, BeforeValidator(blank_is_none)]
"""A day (00:00 UTC), or nothing for the form's empty date field (``since=``)."""


def differences_about(differences: Sequence[Difference], subject: str) -> list[Difference]:
    return [difference for difference in differences if difference.subject == subject]


@router.get("/reconciliation", response_class=HTMLResponse)
async def reconciliation_page(
    request: Request,
    admin: ConsoleAdmin,
    services: ServicesDep,
    since: Annotated[Since, Query()] = None,
) -> HTMLResponse:
    """The payment provider's payments and transfers since ``since`` (all without it)
    against the ledger's top-ups and payouts: every difference, by side. It asks the
    provider, so it takes a moment; it is a page of its own for that."""
    result = await run_in_threadpool(
        reconcile, services.runtime.app, services.runtime.payments, since
    )
    return render(
        request,
        "operations_reconciliation.html",
        user=admin,
        section="operations",
        result=result,
        since_date="" if since is None else since.date().isoformat(),
        top_ups=differences_about(result.differences, "top_up"),
        payouts=differences_about(result.differences, "payout"),
    )
