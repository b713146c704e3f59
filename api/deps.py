"""Every dependency of the routes, each named once as an ``Annotated`` alias.

Authentication is a chain: ``CurrentUser`` verifies the bearer token, then checks the
user as the write model has them on every request (``commands.admission``: this
process's copy where a follower keeps it current, else one read of the store), so a
deactivated user, one whose role changed since the token was issued, a token logged out
and every token issued before a password change are refused at once — by queries as by
commands. Role requirements build on it (``CustomerUser``, ``AdminUser``,
``AnalystOrAdmin``, …, or ``require_roles(...)``).

Read-your-writes for query routes: depend on ``read_model("bookings")`` (or one of the
aliases such as ``BookingsReadModel``). It waits, when the request carries
``X-Prep-Min-Position: N``, until that read model has applied position N (at most
``settings.min_position_wait_s``, then 503 with ``Retry-After``; a position beyond the
event store's head is refused at once, 422), and sets
``X-Prep-Position`` on the response to how far the read model has got::

    @router.get("/bookings/{booking_id}")
    def get_booking(
        booking_id: UUID, user: CurrentUser, bookings: BookingQueriesDep,
        _: BookingsReadModel,
    ) -> BookingDetail:
        return bookings.get(user.viewer, booking_id)

A route that returns a ``Response`` itself (CSV, JSON written by orjson) builds it with
``consistency.response``, which sets ``X-Prep-Position``: FastAPI does not merge
dependency headers into it.

Dependencies that never block are ``async def``: FastAPI runs a ``def`` dependency in a
worker thread, and that trip cost more than the work of any of them. Those that may
block (the user lookup, a read-your-writes wait, a position read from the database)
hand just that part to a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date
from typing import Annotated, Final
from uuid import UUID

from fastapi import Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, Field
from starlette.concurrency import run_in_threadpool

from aggregates.errors import PermissionDenied
from aggregates.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX
from api.problems import READ_POSITION_STATE
from api.schemas import MIN_POSITION_HEADER, POSITION_HEADER
from commands.bookings import BookingCommands
from commands.context import Actor, CommandContext
from commands.kitchens import KitchenCommands
from commands.payouts import PayoutCommands
from commands.top_ups import TopUpCommands
from commands.users import UserCommands
from prep_es.services.auth import TokenClaims, Unauthenticated
from prep_es.services.container import Services
from prep_es.services.logs import accept_request_id, request_id
from prep_es.store.settings import Settings
from queries.accounts import AccountQueries
from queries.analytics import AnalyticsQueries
from queries.audit import AuditQueries
from queries.base import OFFSET_MAX, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PageRequest, Viewer
from queries.bookings import BookingQueries
from queries.compliance import ComplianceQueries
from queries.consistency import ReadPositions
from queries.export import EXPORTED_READ_MODELS, ExportQueries
from queries.kitchen_cache import CachedKitchenQueries, PublishedPages
from queries.kitchens import KitchenQueries
from queries.payments import PaymentQueries
from queries.timetravel import TimeTravelQueries
from queries.users import UserQueries

IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
POSITION_MAX: Final = 2**63 - 1

# --- the process's services ----------------------------------------------------------


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

# Command services (the write model).


async def get_user_commands(services: ServicesDep) -> UserCommands:
    return services.commands.users


async def get_kitchen_commands(services: ServicesDep) -> KitchenCommands:
    return services.commands.kitchens


async def get_booking_commands(services: ServicesDep) -> BookingCommands:
    return services.commands.bookings


async def get_top_up_commands(services: ServicesDep) -> TopUpCommands:
    return services.commands.top_ups


async def get_payout_commands(services: ServicesDep) -> PayoutCommands:
    return services.commands.payouts


UserCommandsDep = Annotated[UserCommands, Depends(get_user_commands)]
KitchenCommandsDep = Annotated[KitchenCommands, Depends(get_kitchen_commands)]
BookingCommandsDep = Annotated[BookingCommands, Depends(get_booking_commands)]
TopUpCommandsDep = Annotated[TopUpCommands, Depends(get_top_up_commands)]
PayoutCommandsDep = Annotated[PayoutCommands, Depends(get_payout_commands)]

# Query services (read models only).


async def get_user_queries(services: ServicesDep) -> UserQueries:
    return services.users


async def get_kitchen_queries(services: ServicesDep) -> CachedKitchenQueries:
    return services.kitchens


async def get_kitchen_pages(services: ServicesDep) -> PublishedPages | None:
    return services.kitchen_pages


async def get_booking_queries(services: ServicesDep) -> BookingQueries:
    return services.bookings


async def get_account_queries(services: ServicesDep) -> AccountQueries:
    return services.accounts


async def get_payment_queries(services: ServicesDep) -> PaymentQueries:
    return services.payments


async def get_analytics_queries(services: ServicesDep) -> AnalyticsQueries:
    return services.analytics


async def get_audit_queries(services: ServicesDep) -> AuditQueries:
    return services.audit


async def get_export_queries(services: ServicesDep) -> ExportQueries:
    return services.export


async def get_compliance_queries(services: ServicesDep) -> ComplianceQueries:
    return services.compliance


async def get_timetravel_queries(services: ServicesDep) -> TimeTravelQueries:
    return services.timetravel


async def get_read_positions(services: ServicesDep) -> ReadPositions:
    return services.read_positions


UserQueriesDep = Annotated[UserQueries, Depends(get_user_queries)]
KitchenQueriesDep = Annotated[CachedKitchenQueries, Depends(get_kitchen_queries)]
KitchenPagesDep = Annotated[PublishedPages | None, Depends(get_kitchen_pages)]
BookingQueriesDep = Annotated[BookingQueries, Depends(get_booking_queries)]
AccountQueriesDep = Annotated[AccountQueries, Depends(get_account_queries)]
PaymentQueriesDep = Annotated[PaymentQueries, Depends(get_payment_queries)]
AnalyticsQueriesDep = Annotated[AnalyticsQueries, Depends(get_analytics_queries)]
AuditQueriesDep = Annotated[AuditQueries, Depends(get_audit_queries)]
ExportQueriesDep = Annotated[ExportQueries, Depends(get_export_queries)]
ComplianceQueriesDep = Annotated[ComplianceQueries, Depends(get_compliance_queries)]
TimeTravelQueriesDep = Annotated[TimeTravelQueries, Depends(get_timetravel_queries)]
ReadPositionsDep = Annotated[ReadPositions, Depends(get_read_positions)]


async def get_kitchen_moderation(services: ServicesDep) -> KitchenQueries:
    """Moderation lists differ by status and are for admins: never cached."""
    return services.kitchens_uncached


KitchenModerationDep = Annotated[KitchenQueries, Depends(get_kitchen_moderation)]


async def today_utc(services: ServicesDep) -> date:
    """Today's date in UTC, by the services' clock."""
    return services.clock().astimezone(UTC).date()


TodayUtc = Annotated[date, Depends(today_utc)]

# --- request headers -----------------------------------------------------------------

PLAIN_POSITION: Final = re.compile(r"0|[1-9][0-9]{0,18}")
"""An event store position as a response gives it: ASCII digits, no sign, no ``_``
separators, no leading zeros, other scripts' digits or whitespace (which ``int()`` would
all take)."""


def _plain_position(value: object) -> object:
    if isinstance(value, str) and not PLAIN_POSITION.fullmatch(value):
        msg = "must be a position as a response gives it: ASCII digits, no sign or leading zeros"
        raise ValueError(msg)
    return value


MinPosition = Annotated[
    int | None,
    BeforeValidator(_plain_position),
    Header(
        alias=MIN_POSITION_HEADER,
        ge=0,
        le=POSITION_MAX,
        description="Wait until the read model has applied this event store position (the "
        "`position` of a command response) before answering; 503 `read_model_behind` if "
        "it does not in time (or 503 `too_many_waiters` at once while the process holds "
        "as many waits as it allows). A position beyond the event store's head was never "
        "answered by a command: 422 `min_position_ahead_of_store` at once.",
    ),
]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Makes a retry safe: the same key with the same body returns the "
        "original result (same id, same status) without doing anything again; the same "
        "key with a different body is refused (422 `idempotency_key_reused`). Keys are "
        "scoped to the caller and the operation. A key is made of `A-Z a-z 0-9 . _ ~ : + "
        "/ = -` (422 `invalid_idempotency_key` otherwise): it shows as the correlation id "
        "of the events the command stores.",
    ),
]

# --- authentication ------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An access token from `POST /api/v1/auth/login`.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class AuthenticatedUser:
    """The user behind a request, as the write model has them now, and the token they
    sent (its ``jti``, issue time and expiry: a logout names it)."""

    id: UUID
    role: str
    token_id: str
    token_issued_at_us: int
    token_expires_at_s: int

    @property
    def viewer(self) -> Viewer:
        """For query services."""
        return Viewer(user_id=self.id, role=self.role)

    @property
    def actor(self) -> Actor:
        """For command handlers (and the per-request check)."""
        return Actor(
            user_id=self.id,
            role=self.role,
            token_id=self.token_id,
            token_issued_at_us=self.token_issued_at_us,
        )


def _claimed(claims: TokenClaims) -> AuthenticatedUser:
    return AuthenticatedUser(
        id=claims.sub,
        role=claims.role,
        token_id=claims.jti,
        token_issued_at_us=claims.iat_us,
        token_expires_at_s=claims.exp,
    )


def _admit_from_store(services: Services, user: AuthenticatedUser) -> AuthenticatedUser:
    if not services.admission.check(user.actor):
        raise Unauthenticated("the access token's user is unknown", code="invalid_token")
    return user


async def authenticated(
    services: Services, token: str, min_position: int | None = None
) -> AuthenticatedUser:
    """The user behind access ``token`` (a bearer token, or the console's session
    cookie). The token is checked on the event loop (CPU only; see
    ``TokenService.verify``); the user too when this process has a followed copy of them
    and no position is asked for, else in the threadpool (one read of the store: a
    client naming a position may have just changed their user through another process,
    which this one may hear of a moment later). A user who may no longer act is refused
    (``ActorNotAdmitted``, 401)."""
    user = _claimed(services.tokens.verify(token))
    if not min_position and services.admission.check_known(user.actor):
        return user
    return await run_in_threadpool(_admit_from_store, services, user)


async def current_user(
    services: ServicesDep, credentials: BearerCredentials, min_position: MinPosition = None
) -> AuthenticatedUser:
    if credentials is None:
        raise Unauthenticated(
            "this needs an access token: Authorization: Bearer <token>", code="not_authenticated"
        )
    return await authenticated(services, credentials.credentials, min_position)


async def optional_user(
    services: ServicesDep, credentials: BearerCredentials, min_position: MinPosition = None
) -> AuthenticatedUser | None:
    """Anonymous callers are welcome; a token, if sent, must still be valid."""
    if credentials is None:
        return None
    return await authenticated(services, credentials.credentials, min_position)


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]
OptionalUser = Annotated[AuthenticatedUser | None, Depends(optional_user)]


def require_roles(*roles: str) -> Callable[[AuthenticatedUser], Awaitable[AuthenticatedUser]]:
    """A dependency admitting signed-in users with one of ``roles`` (403 otherwise)."""
    assert roles

    async def dependency(user: CurrentUser) -> AuthenticatedUser:
        if user.role not in roles:
            raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
        return user

    return dependency


CustomerUser = Annotated[AuthenticatedUser, Depends(require_roles("customer"))]
HostUser = Annotated[AuthenticatedUser, Depends(require_roles("host"))]
AdminUser = Annotated[AuthenticatedUser, Depends(require_roles("admin"))]
AnalystUser = Annotated[AuthenticatedUser, Depends(require_roles("analyst"))]
AnalystOrAdmin = Annotated[AuthenticatedUser, Depends(require_roles("analyst", "admin"))]
HostOrAdmin = Annotated[AuthenticatedUser, Depends(require_roles("host", "admin"))]
AnalystAdminOrHost = Annotated[
    AuthenticatedUser, Depends(require_roles("analyst", "admin", "host"))
]

# --- commands ------------------------------------------------------------------------


async def current_request_id(request: Request) -> str:
    """The id the request middleware gave this request."""
    return request_id.get() or accept_request_id(request.headers.get("x-request-id"))


RequestId = Annotated[str, Depends(current_request_id)]


async def command_context(
    user: CurrentUser, request_id_: RequestId, idempotency_key: IdempotencyKey = None
) -> CommandContext:
    """Who runs the command, for which request, under which idempotency key."""
    return CommandContext(actor=user.actor, request_id=request_id_, idempotency_key=idempotency_key)


async def anonymous_command_context(
    request_id_: RequestId, idempotency_key: IdempotencyKey = None
) -> CommandContext:
    """For public commands (registration)."""
    return CommandContext(actor=None, request_id=request_id_, idempotency_key=idempotency_key)


Command = Annotated[CommandContext, Depends(command_context)]
AnonymousCommand = Annotated[CommandContext, Depends(anonymous_command_context)]

# --- queries -------------------------------------------------------------------------


class PageQuery(BaseModel):
    """A page as a list route's query string asks for it."""

    limit: int = Field(
        default=PAGE_SIZE_DEFAULT, ge=1, le=PAGE_SIZE_MAX, description="Items per page (1–100)."
    )
    offset: int = Field(default=0, ge=0, le=OFFSET_MAX, description="Items to skip.")

    def page(self) -> PageRequest:
        return PageRequest(limit=self.limit, offset=self.offset)


async def page_params(query: Annotated[PageQuery, Query()]) -> PageRequest:
    return query.page()


PageParams = Annotated[PageRequest, Depends(page_params)]


@dataclass(frozen=True)
class ReadConsistency:
    """What a query may rely on: the client's minimum position (0 if none) and the
    position the read model(s) had reached when the query started."""

    min_position: int
    position: int

    def response(
        self, content: bytes | str, media_type: str, headers: dict[str, str] | None = None
    ) -> Response:
        """A route's own response, with the read model's position (a returned
        ``Response`` does not take the headers dependencies set)."""
        return Response(
            content,
            media_type=media_type,
            headers={POSITION_HEADER: str(self.position), **(headers or {})},
        )

    def stream(
        self, chunks: Iterator[bytes], media_type: str, headers: dict[str, str] | None = None
    ) -> StreamingResponse:
        """A route's own response written while it is read (see :meth:`response`). The
        status and headers go first: what fails after them cuts the body short, which
        its reader sees (a JSON document left unclosed), and is logged."""
        return StreamingResponse(
            chunks,
            media_type=media_type,
            headers={POSITION_HEADER: str(self.position), **(headers or {})},
        )


def read_model(*names: str) -> Callable[..., Awaitable[ReadConsistency]]:
    """A dependency for a query route reading the projections ``names``: waits for
    ``X-Prep-Min-Position`` on each and sets ``X-Prep-Position`` (the lowest of their
    positions) on the response."""
    assert names

    def reached(services: Services, min_position: int | None) -> int:
        positions = services.read_positions
        if min_position:
            for name in names:
                positions.wait_for(name, min_position, services.settings.min_position_wait_s)
        return min(positions.position(name) for name in names)

    async def dependency(
        services: ServicesDep,
        request: Request,
        response: Response,
        min_position: MinPosition = None,
    ) -> ReadConsistency:
        # Where announcements keep the positions in memory (and the client's minimum is
        # reached), nothing blocks: no trip to a worker thread, no round trip.
        announced = [services.read_positions.announced(name) for name in names]
        known = [position for position in announced if position is not None]
        if len(known) == len(names) and min(known) >= (min_position or 0):
            position = min(known)
        else:
            position = await run_in_threadpool(reached, services, min_position)
        response.headers[POSITION_HEADER] = str(position)
        # A problem answering this query (404, 403, 422) says the position too.
        setattr(request.state, READ_POSITION_STATE, position)
        return ReadConsistency(min_position=min_position or 0, position=position)

    return dependency


AuditReadModel = Annotated[ReadConsistency, Depends(read_model("audit"))]
BookingsReadModel = Annotated[ReadConsistency, Depends(read_model("bookings"))]
AccountsReadModel = Annotated[ReadConsistency, Depends(read_model("accounts"))]
PaymentsReadModel = Annotated[ReadConsistency, Depends(read_model("payments"))]
AnalyticsReadModel = Annotated[ReadConsistency, Depends(read_model("analytics"))]
KitchensReadModel = Annotated[ReadConsistency, Depends(read_model("kitchens"))]
ComplianceReadModel = Annotated[ReadConsistency, Depends(read_model("compliance"))]
UsersReadModel = Annotated[ReadConsistency, Depends(read_model("users"))]
ExportedReadModels = Annotated[ReadConsistency, Depends(read_model(*EXPORTED_READ_MODELS))]

BookingParticipant = Annotated[
    AuthenticatedUser, Depends(require_roles("customer", "host", "admin"))
]
"""Roles that take part in bookings (customer: own; host: their kitchens'; admin: all)."""


def event_store_read(
    services: ServicesDep, request: Request, response: Response
) -> ReadConsistency:
    """For the few admin queries that read the event store itself (an aggregate's
    history): it is never behind, so ``X-Prep-Min-Position`` needs no wait, and
    ``X-Prep-Position`` is the store's latest position."""
    position = services.runtime.app.position()
    response.headers[POSITION_HEADER] = str(position)
    setattr(request.state, READ_POSITION_STATE, position)
    return ReadConsistency(min_position=0, position=position)


EventStoreRead = Annotated[ReadConsistency, Depends(event_store_read)]
