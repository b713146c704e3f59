"""What every action shares: its form's fields read within bounds, the page it goes
back to (with that page's filters), the context its command runs in, and the redirect
that says what it did; :class:`AdminAction` puts them together for an admin's form."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Final, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from aggregates.errors import InvalidRequest
from api.console.rendering import DONE_MESSAGES
from api.console.session import CheckedForm, ConsoleAdmin, form_text, outcome_proof
from api.deps import AuthenticatedUser, RequestId
from api.schemas import REASON_LENGTH_BOUND, holds_nul
from commands.context import CommandContext
from commands.processor import Executed
from prep_es.services.container import Services

RETURN_QUERY_FIELD: Final = "back"
RETURN_QUERY_LENGTH_MAX: Final = 1000

CommandT = TypeVar("CommandT")
ResultT = TypeVar("ResultT", bound=BaseModel)


def bounded_text(form: FormData, name: str, length_max: int) -> str:
    """The form's text field ``name``: at most ``length_max`` characters and no NUL
    (which PostgreSQL text cannot store: recorded in an event, it would stop the
    projections copying it), as the API's request bodies are; the command checks the
    rest."""
    text = form_text(form, name)
    if len(text) > length_max:
        msg = f"{name} is at most {length_max} characters"
        raise InvalidRequest(msg, code=f"{name}_too_long", field=name)
    if holds_nul(text):
        msg = f"{name} must not contain NUL characters"
        raise InvalidRequest(msg, code=f"invalid_{name}", field=name)
    return text


def reason_of(form: FormData) -> str:
    """The form's ``reason``: at most :data:`REASON_LENGTH_BOUND` characters (the
    command checks the rest, as for the API)."""
    return bounded_text(form, "reason", REASON_LENGTH_BOUND)


def back_to(path: str, form: FormData, filters: Collection[str]) -> str:
    """``path`` with the filters the form's page was showing (its hidden
    :data:`RETURN_QUERY_FIELD`), so that the browser comes back to the same list. Only
    the names in ``filters`` are kept, each once; the page checks their values as it
    checks any request's."""
    query = form_text(form, RETURN_QUERY_FIELD)
    if not query or len(query) > RETURN_QUERY_LENGTH_MAX:
        return path
    kept: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in filters:
            kept[name] = value
    return f"{path}?{urlencode(kept)}" if kept else path


def done(
    request: Request, user: AuthenticatedUser, path: str, what: str, position: int | None
) -> RedirectResponse:
    """To ``path``, which says what was done (``what``, a key of ``DONE_MESSAGES``) once
    its read models reach ``position`` (see ``api.console.rendering``)."""
    assert what in DONE_MESSAGES, what
    services: Services = request.app.state.services
    query = {"done": what, "proof": outcome_proof(services, user, what, position)}
    if position is not None:
        query["position"] = str(position)
    separator = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{separator}{urlencode(query)}", status_code=303)


def command_context(user: AuthenticatedUser, request_id: str) -> CommandContext:
    """Who runs the command, for which request. No idempotency key: each form acts on
    the aggregate as it is, so one posted twice is refused (approving a published
    kitchen: 409) or changes nothing (deactivating a deactivated user, signing out a
    revoked session) the second time."""
    return CommandContext(actor=user.actor, request_id=request_id)


@dataclass(frozen=True)
class AdminAction:
    """An admin's form, its token checked: runs a command for them, then sends the
    browser back to the page it came from, saying what was done."""

    request: Request
    admin: AuthenticatedUser
    form: FormData
    request_id: str

    async def run(
        self,
        handler: Callable[[CommandT, CommandContext], Executed[ResultT]],
        command: CommandT,
    ) -> Executed[ResultT]:
        context = command_context(self.admin, self.request_id)
        return await run_in_threadpool(handler, command, context)

    def done(
        self, path: str, filters: Collection[str], what: str, position: int | None
    ) -> RedirectResponse:
        """Back to ``path`` with the ``filters`` it was showing (see :func:`back_to`)."""
        return done(self.request, self.admin, back_to(path, self.form, filters), what, position)


async def admin_action(
    request: Request, admin: ConsoleAdmin, form: CheckedForm, request_id: RequestId
) -> AdminAction:
    return AdminAction(request=request, admin=admin, form=form, request_id=request_id)


AdminActionDep = Annotated[AdminAction, Depends(admin_action)]
