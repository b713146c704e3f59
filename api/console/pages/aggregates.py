"""An aggregate's history (admins): its timeline, its state at any version or moment,
and what that version changed. Read from the event store itself by the services of
``GET /api/v1/admin/aggregates/{id}/events`` and ``/state``, so what it shows is what
the aggregate is rebuilt from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from aggregates.errors import InvalidRequest
from api.console.params import TIME_HELP, FormText, FormTime
from api.console.rendering import render
from api.console.session import CONSOLE_PATH, ConsoleAdmin
from api.deps import AuthenticatedUser, TimeTravelQueriesDep
from prep_es.store.replay import EVENTS_PER_AGGREGATE_MAX
from queries.base import OFFSET_MAX, Page, PageRequest
from queries.state_diff import FieldChange, state_diff
from queries.timetravel import AggregateStateView, StoredEventView, TimeTravelQueries

router = APIRouter(prefix="/aggregates")

TIMELINE_PAGE_SIZE: Final = 50

AggregateId = Annotated[UUID, Path()]


@router.get("", response_class=HTMLResponse)
async def find_aggregate(
    admin: ConsoleAdmin,
    timetravel: TimeTravelQueriesDep,
    id_text: Annotated[FormText, Query(alias="id")] = None,
) -> Response:
    """The home page's "open the history" form: to the history of the id given, once
    it is known to name an aggregate (404 otherwise, 422 for what is not an id)."""
    if id_text is None:
        raise InvalidRequest(
            "give the id of a booking, kitchen, user or account", code="id_required", field="id"
        )
    try:
        aggregate_id = UUID(id_text)
    except ValueError:
        raise InvalidRequest(f"not an id: {id_text!r}", code="invalid_id", field="id") from None
    # Unknown ids are refused here, as the history page would refuse them (NotFound).
    await run_in_threadpool(timetravel.events, admin.viewer, aggregate_id, PageRequest(limit=1))
    return RedirectResponse(f"{CONSOLE_PATH}/aggregates/{aggregate_id}", status_code=303)


@dataclass(frozen=True)
class ShownChange:
    """A change as the diff table shows it: whether each side's value was erased."""

    change: FieldChange
    before_erased: bool
    after_erased: bool


@dataclass(frozen=True)
class History:
    """What an aggregate's page shows: a page of its timeline, its state at one
    version, and what that version changed."""

    timeline: Page[StoredEventView]
    state: AggregateStateView
    changes: list[ShownChange]


def _erased(view: AggregateStateView | None, change: FieldChange, value: Any) -> bool:
    return view is not None and value is None and change.path[0] in view.erased_fields


def read_history(
    timetravel: TimeTravelQueries,
    user: AuthenticatedUser,
    aggregate_id: UUID,
    version: int | None,
    as_of: datetime | None,
    offset: int | None,
) -> History:
    """The aggregate's state at ``version`` or ``as_of`` (the latest without either),
    the state before it, their difference, and the page of the timeline showing that
    version (unless ``offset`` asks for another)."""
    viewer = user.viewer
    state, previous = timetravel.state_and_previous(
        viewer, aggregate_id, version=version, as_of=as_of
    )
    changes = state_diff({} if previous is None else previous.state, state.state)
    if offset is None:
        offset = (state.version - 1) // TIMELINE_PAGE_SIZE * TIMELINE_PAGE_SIZE
    timeline = timetravel.events(
        viewer, aggregate_id, PageRequest(limit=TIMELINE_PAGE_SIZE, offset=offset)
    )
    return History(
        timeline=timeline,
        state=state,
        changes=[
            ShownChange(
                change=change,
                before_erased=_erased(previous, change, change.before),
                after_erased=_erased(state, change, change.after),
            )
            for change in changes
        ],
    )


@router.get("/{aggregate_id}", response_class=HTMLResponse)
async def aggregate_history(
    request: Request,
    aggregate_id: AggregateId,
    admin: ConsoleAdmin,
    timetravel: TimeTravelQueriesDep,
    version: Annotated[int | None, Query(ge=1, le=EVENTS_PER_AGGREGATE_MAX)] = None,
    as_of: Annotated[FormTime, Query()] = None,
    offset: Annotated[int | None, Query(ge=0, le=OFFSET_MAX)] = None,
) -> HTMLResponse:
    """The timeline, and the state at ``version`` (or as of ``as_of``, or the latest)
    with what that version changed."""
    history = await run_in_threadpool(
        read_history, timetravel, admin, aggregate_id, version, as_of, offset
    )
    return render(
        request,
        "aggregate.html",
        user=admin,
        section="audit",
        aggregate_id=aggregate_id,
        history=history,
        asked_version=version,
        as_of_text=request.query_params.get("as_of", "").strip(),
        time_help=TIME_HELP,
    )
