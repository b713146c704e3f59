"""Admin queries over HTTP: users, kitchens awaiting moderation, certificates and those
about to expire, the trial balance, the audit trail, an aggregate's history and its
state at a point, and the projections' progress. Admins only (403 for anyone else).

An aggregate's events and state are read from the event store itself (what the
aggregate is rebuilt from), not from a projection; every other route reads a read
model and waits for ``X-Prep-Min-Position`` on it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from aggregates.errors import InvalidRequest
from api.deps import (
    AccountQueriesDep,
    AccountsReadModel,
    AdminUser,
    AuditQueriesDep,
    AuditReadModel,
    ComplianceQueriesDep,
    ComplianceReadModel,
    EventStoreRead,
    KitchenModerationDep,
    KitchensReadModel,
    PageParams,
    ServicesDep,
    TimeTravelQueriesDep,
    TodayUtc,
    UserQueriesDep,
    UsersReadModel,
)
from api.queries.kitchens.schemas import KitchenStatus, KitchenSummaryOut
from api.queries.params import POINT_IN_TIME_HELP, PointInTime, QueryText, query_responses
from api.schemas import POSITION_HEADER, MoneyOut, PageOut, kitchen_fields_out, money
from prep_es.store.replay import EVENTS_PER_AGGREGATE_MAX
from projections.status import ProjectionStatus, projection_statuses
from queries.accounts import CounterAccount, TrialBalance
from queries.audit import AUDIT_LIMIT_MAX, EVENT_TYPE_LENGTH_MAX, AuditEntry, AuditPage
from queries.base import PAGE_SIZE_DEFAULT
from queries.compliance import (
    WITHIN_DAYS_DEFAULT,
    WITHIN_DAYS_MAX,
    WITHIN_DAYS_MIN,
    CertificateRecord,
    ExpiringCertificate,
)
from queries.kitchens import KitchenUnderModeration
from queries.timetravel import AggregateStateView, StoredEventView
from queries.users import UserProfile

router = APIRouter(prefix="/admin", tags=["admin"])

Role = Literal["customer", "host", "admin", "analyst"]
CertificateStatus = Literal["pending", "verified", "rejected", "expired"]
AggregateId = Annotated[UUID, Path(description="The aggregate's id (a user, kitchen, …).")]

# --- users ---------------------------------------------------------------------------


class UserOut(BaseModel):
    """A user as the users read model has them."""

    id: UUID
    email: str = Field(examples=["ana@example.com"])
    full_name: str = Field(examples=["Ana Lopez"])
    role: Role = Field(examples=["customer"])
    active: bool = Field(description="false: deactivated, every request refused.")
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: UserProfile) -> UserOut:
        return cls(**user.model_dump())


class UserPage(PageOut[UserOut]):
    pass


@router.get(
    "/users",
    summary="List users",
    description="Every user, oldest registration first; filter by `role` and `active`.",
    responses=query_responses(401, 403, 422, 503),
)
def list_users(
    admin: AdminUser,
    users: UserQueriesDep,
    _: UsersReadModel,
    page: PageParams,
    role: Annotated[Role | None, Query(description="Only this role.")] = None,
    active: Annotated[bool | None, Query(description="Only active (or deactivated) users.")] = None,
) -> UserPage:
    return UserPage.of(users.list(admin.viewer, role=role, active=active, page=page), UserOut.of)


# --- kitchens and certificates -------------------------------------------------------


class ModeratedKitchenOut(KitchenSummaryOut):
    """A kitchen as admins moderate it."""

    changed_since_approval: list[str] = Field(
        description="The fields its host edited since an admin last approved it (empty for "
        "a kitchen never approved, and once an admin approves it, or reinstates it unedited "
        "materially).",
        examples=[["description", "name"]],
    )
    status_changed_at: datetime

    @classmethod
    def of_moderated(cls, kitchen: KitchenUnderModeration) -> ModeratedKitchenOut:
        fields = kitchen.model_dump(
            include=set(cls.model_fields) - {"hourly_rate", "changed_since_approval"}
        )
        return cls(
            **fields,
            hourly_rate=money(kitchen.hourly_rate_cents),
            changed_since_approval=kitchen_fields_out(kitchen.changed_since_approval),
        )


class ModeratedKitchenPage(PageOut[ModeratedKitchenOut]):
    pass


@router.get(
    "/moderation/kitchens",
    summary="Kitchens by lifecycle status",
    description="Kitchens in any status — e.g. `pending_review` for those awaiting "
    "approval, among them published kitchens sent back by a material edit (address, "
    "city, capacity) — the longest in that status first. `status=published&"
    "changed_since_approval=true`: live kitchens whose hosts edited them since their "
    "approval; approving such a kitchen accepts the edits.",
    responses=query_responses(401, 403, 422, 503),
)
def moderation_queue(
    admin: AdminUser,
    kitchens: KitchenModerationDep,
    _: KitchensReadModel,
    page: PageParams,
    status: Annotated[
        KitchenStatus | None,
        Query(
            description="Only this status (all statuses if left out).", examples=["pending_review"]
        ),
    ] = None,
    changed_since_approval: Annotated[
        bool | None,
        Query(
            description="Only kitchens edited since their last approval (`true`) or not "
            "(`false`); both if left out.",
            examples=[True],
        ),
    ] = None,
) -> ModeratedKitchenPage:
    return ModeratedKitchenPage.of(
        kitchens.moderation(
            admin.viewer,
            status=status,
            changed_since_approval=changed_since_approval,
            page=page,
        ),
        ModeratedKitchenOut.of_moderated,
    )


class AffectedKitchenOut(BaseModel):
    id: UUID
    name: str = Field(examples=["Sunset Commissary"])
    status: KitchenStatus = Field(examples=["published"])
    jurisdiction: str = Field(examples=["los_angeles"])


class CertificateOut(BaseModel):
    """A certificate as admins review it, with its kitchen."""

    id: UUID
    kitchen: AffectedKitchenOut
    host_id: UUID
    kind: str = Field(examples=["health_permit"])
    number: str = Field(examples=["HP-2030-0042"])
    issued_on: date
    expires_on: date = Field(
        description="Valid through 23:59:59 of this day in the jurisdiction's time zone."
    )
    status: CertificateStatus = Field(examples=["pending"])
    rejection_reason: str | None = Field(examples=[None])
    document_sha256: str = Field(examples=["ab" * 32])
    attached_at: datetime
    reviewed_at: datetime | None

    @classmethod
    def of(cls, record: CertificateRecord) -> CertificateOut:
        return cls(**record.model_dump(include=set(cls.model_fields)))


class CertificatePage(PageOut[CertificateOut]):
    pass


@router.get(
    "/certificates",
    summary="Certificates by review status",
    description="Certificates in the order they were attached, e.g. `status=pending` "
    "for those awaiting review.",
    responses=query_responses(401, 403, 422, 503),
)
def list_certificates(
    admin: AdminUser,
    compliance: ComplianceQueriesDep,
    _: ComplianceReadModel,
    page: PageParams,
    status: Annotated[
        CertificateStatus | None,
        Query(description="Only this status (all if left out).", examples=["pending"]),
    ] = None,
) -> CertificatePage:
    return CertificatePage.of(
        compliance.certificates(admin.viewer, status=status, page=page), CertificateOut.of
    )


class ExpiringCertificateOut(CertificateOut):
    """A verified certificate whose last valid day is within the horizon."""

    days_left: int = Field(
        description="Days from today (UTC) to `expires_on`: 0 expires today; negative means "
        "its date has passed and the sweeper has not recorded the lapse yet.",
        examples=[12],
    )

    @classmethod
    def of_expiring(cls, record: ExpiringCertificate) -> ExpiringCertificateOut:
        return cls(**record.model_dump(include=set(cls.model_fields)))


class ExpiringCertificatePage(PageOut[ExpiringCertificateOut]):
    within_days: int = Field(examples=[30])


@router.get(
    "/compliance/expiring",
    summary="Certificates expiring soon",
    description="Verified certificates whose `expires_on` is at most `within_days` days "
    "from today (UTC), soonest first, each with the kitchen that stops being bookable "
    "when it lapses.",
    responses=query_responses(401, 403, 422, 503),
)
def expiring_certificates(
    admin: AdminUser,
    compliance: ComplianceQueriesDep,
    _: ComplianceReadModel,
    today: TodayUtc,
    page: PageParams,
    within_days: Annotated[
        int,
        Query(
            ge=WITHIN_DAYS_MIN,
            le=WITHIN_DAYS_MAX,
            description=f"The horizon in days ({WITHIN_DAYS_MIN}–{WITHIN_DAYS_MAX}).",
        ),
    ] = WITHIN_DAYS_DEFAULT,
) -> ExpiringCertificatePage:
    expiring = compliance.expiring(admin.viewer, today=today, within_days=within_days, page=page)
    return ExpiringCertificatePage.of(
        expiring, ExpiringCertificateOut.of_expiring, within_days=within_days
    )


# --- ledger --------------------------------------------------------------------------


class TrialBalanceLineOut(BaseModel):
    account_id: UUID
    account: CounterAccount = Field(
        description="`payments` (money in and out of the platform) and `platform_revenue` "
        "are the system accounts; `user` is a user's account.",
        examples=["user"],
    )
    owner_id: UUID | None = Field(description="The user, for a user's account.")
    owner_name: str | None = Field(examples=["Ana Lopez"])
    balance: MoneyOut = Field(examples=["250.00"])


class TrialBalanceOut(BaseModel):
    """Every account with a movement (one page of them) and the sum of all their
    balances, which double entry keeps at zero."""

    items: list[TrialBalanceLineOut] = Field(
        description="`payments`, `platform_revenue`, then user accounts by owner name."
    )
    total: int = Field(description="Accounts in all pages.", examples=[12])
    limit: int = Field(examples=[20])
    offset: int = Field(examples=[0])
    sum: MoneyOut = Field(
        description="The sum of every account's balance: always 0.00.", examples=["0.00"]
    )
    balanced: bool = Field(description="Whether `sum` is zero.")

    @classmethod
    def of(cls, trial: TrialBalance) -> TrialBalanceOut:
        return cls(
            items=[
                TrialBalanceLineOut(
                    account_id=line.account_id,
                    account=line.account,
                    owner_id=line.owner_id,
                    owner_name=line.owner_name,
                    balance=money(line.balance_cents),
                )
                for line in trial.lines
            ],
            total=trial.accounts_total,
            limit=trial.limit,
            offset=trial.offset,
            sum=money(trial.total_cents),
            balanced=trial.total_cents == 0,
        )


@router.get(
    "/ledger/trial-balance",
    summary="Trial balance",
    description="Per-account balances summed from the double-entry ledger, and their sum, "
    "which is zero (the external `payments` account is negative by what users "
    "deposited and were not paid out).",
    responses=query_responses(401, 403, 422, 503),
)
def trial_balance(
    admin: AdminUser, accounts: AccountQueriesDep, _: AccountsReadModel, page: PageParams
) -> TrialBalanceOut:
    return TrialBalanceOut.of(accounts.trial_balance(admin.viewer, page))


# --- audit and time travel -----------------------------------------------------------


class AuditEntryOut(BaseModel):
    """One event: what happened, to which aggregate, who did it and why."""

    position: int = Field(description="Its event store position.", examples=[1042])
    recorded_at: datetime
    aggregate_type: str = Field(examples=["Booking"])
    aggregate_id: UUID
    aggregate_version: int = Field(examples=[1])
    event_type: str = Field(examples=["Booking.BookingRequested"])
    actor_id: UUID | None = Field(description="Who caused it; null for the system.")
    actor_role: str | None = Field(examples=["customer"])
    request_id: str | None = Field(description="The HTTP request that caused it.")
    correlation_id: str | None = Field(description="The idempotency key, if one was sent.")
    payload: dict[str, Any] = Field(
        description="The event's fields as recorded (secrets redacted)."
    )

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(**entry.model_dump())


class AuditPageOut(BaseModel):
    """A keyset page of the audit trail, oldest first."""

    items: list[AuditEntryOut]
    limit: int = Field(examples=[20])
    next_after_position: int | None = Field(
        description="Pass as `after_position` for the next page; null on the last page.",
        examples=[1042],
    )

    @classmethod
    def of(cls, page: AuditPage) -> AuditPageOut:
        return cls(
            items=[AuditEntryOut.of(item) for item in page.items],
            limit=page.limit,
            next_after_position=page.next_after_position,
        )


@router.get(
    "/audit",
    summary="Audit trail",
    description="Every event with who (actor id and role), why (request id, idempotency "
    "key) and when, oldest first, filtered by aggregate, actor, event type (e.g. "
    "`Booking.BookingRequested`) and time (`since` and `until`, both included). Pages "
    "by keyset: pass the last page's `next_after_position` as `after_position`.",
    responses=query_responses(401, 403, 422, 503),
)
def audit_trail(
    admin: AdminUser,
    audit: AuditQueriesDep,
    _: AuditReadModel,
    aggregate_id: Annotated[UUID | None, Query(description="Only this aggregate's.")] = None,
    actor_id: Annotated[UUID | None, Query(description="Only this actor's.")] = None,
    event_type: Annotated[
        QueryText | None,
        Query(
            max_length=EVENT_TYPE_LENGTH_MAX,
            description="Only this event type.",
            examples=["Booking.BookingRequested"],
        ),
    ] = None,
    since: Annotated[PointInTime | None, Query(description=POINT_IN_TIME_HELP)] = None,
    until: Annotated[PointInTime | None, Query(description=POINT_IN_TIME_HELP)] = None,
    after_position: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="Entries after this position.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=AUDIT_LIMIT_MAX, description="Entries per page (1–100).")
    ] = PAGE_SIZE_DEFAULT,
) -> AuditPageOut:
    page = audit.entries(
        admin.viewer,
        aggregate_id=aggregate_id,
        actor_id=actor_id,
        event_type=event_type,
        since=since,
        until=until,
        after_position=after_position,
        limit=limit,
    )
    return AuditPageOut.of(page)


class StoredEventOut(BaseModel):
    """One event as stored."""

    version: int = Field(description="Its place in the aggregate's stream, from 1.")
    type: str = Field(description="The event's topic.", examples=["Booking.BookingRequested"])
    timestamp: datetime
    actor_id: UUID | None
    actor_role: str | None = Field(examples=["customer"])
    request_id: str | None
    correlation_id: str | None
    payload: dict[str, Any] = Field(description="The event's fields (secrets redacted).")

    @classmethod
    def of(cls, event: StoredEventView) -> StoredEventOut:
        return cls(**event.model_dump())


class AggregateEventsOut(BaseModel):
    aggregate_id: UUID
    items: list[StoredEventOut] = Field(
        description="Events `offset + 1` to `offset + limit` (by version), oldest first."
    )
    total: int = Field(description="How many events (the latest version).", examples=[5])
    limit: int
    offset: int


@router.get(
    "/aggregates/{aggregate_id}/events",
    summary="An aggregate's events",
    description="The raw stream of one aggregate (user, kitchen, booking, account, …) from "
    "the event store: version, type, timestamp, actor, request and correlation ids, "
    "payload (secrets redacted), a page at a time: `offset` skips that many versions. "
    "`X-Prep-Position` is the event store's position.",
    responses=query_responses(401, 403, 404, 422),
)
def aggregate_events(
    aggregate_id: AggregateId,
    admin: AdminUser,
    timetravel: TimeTravelQueriesDep,
    page: PageParams,
    _: EventStoreRead,
) -> AggregateEventsOut:
    events = timetravel.events(admin.viewer, aggregate_id, page)
    return AggregateEventsOut(
        aggregate_id=aggregate_id,
        items=[StoredEventOut.of(event) for event in events.items],
        total=events.total,
        limit=events.limit,
        offset=events.offset,
    )


class AggregateStateOut(BaseModel):
    """An aggregate's state replayed from its events up to ``version``."""

    aggregate_id: UUID
    aggregate_type: str = Field(examples=["Booking"])
    version: int = Field(description="The version the state was rebuilt at.", examples=[2])
    latest_version: int = Field(examples=[4])
    as_of: datetime | None = Field(description="The moment asked for, if any.")
    state: dict[str, Any] = Field(
        description="The aggregate's attributes at that point (secrets redacted)."
    )

    @classmethod
    def of(cls, view: AggregateStateView) -> AggregateStateOut:
        return cls(**view.model_dump())


@router.get(
    "/aggregates/{aggregate_id}/state",
    summary="An aggregate's state at a point",
    description="Replays the aggregate's events up to `version`, or up to every event "
    "recorded at or before `as_of`. Give exactly one of them (422 otherwise). 404 for "
    "an unknown aggregate or a moment before it existed; 422 (`version_out_of_range`) "
    "for a version it never reached.",
    responses=query_responses(401, 403, 404, 422),
)
def aggregate_state(
    aggregate_id: AggregateId,
    admin: AdminUser,
    timetravel: TimeTravelQueriesDep,
    _: EventStoreRead,
    version: Annotated[
        int | None,
        Query(ge=1, le=EVENTS_PER_AGGREGATE_MAX, description="Replay up to this version."),
    ] = None,
    as_of: Annotated[
        PointInTime | None,
        Query(description=f"Replay what was recorded by then. {POINT_IN_TIME_HELP}"),
    ] = None,
) -> AggregateStateOut:
    if (version is None) == (as_of is None):
        raise InvalidRequest(
            "give exactly one of version and as_of", code="version_or_as_of_required"
        )
    return AggregateStateOut.of(
        timetravel.state(admin.viewer, aggregate_id, version=version, as_of=as_of)
    )


# --- projections ---------------------------------------------------------------------


class ProjectionFailureOut(BaseModel):
    """The event a projection stopped at; it resumes from there once the cause is fixed."""

    position: int
    topic: str = Field(examples=["Booking.BookingRequested"])
    error: str


class ProjectionRebuildOut(BaseModel):
    """A generation being rebuilt from position 0 while the active one serves."""

    generation: int
    version: int = Field(description="The projection code version it is built with.")
    state: str = Field(examples=["running"])
    position: int
    lag_events: int
    events_applied: int
    progress: float = Field(description="`position / head`, 0 to 1.", examples=[0.42])
    failure: ProjectionFailureOut | None


class ProjectionOut(BaseModel):
    """One projection: where its active generation (the one queries read) is."""

    name: str = Field(examples=["bookings"])
    status: str = Field(
        description="`running`, `failed` (see `failure`) or `not_started`.",
        examples=["running"],
    )
    position: int = Field(description="The last event store position applied.")
    head: int = Field(description="The event store's latest position.")
    lag_events: int = Field(description="Events in the store after `position`.", examples=[0])
    lag_seconds: float = Field(
        description="Seconds since the first event after `position` was recorded; 0 when "
        "caught up.",
        examples=[0.0],
    )
    generation: int | None = Field(
        description="The active generation; null before a runner set the projection up."
    )
    version: int | None = Field(description="The code version that built it.")
    code_version: int = Field(description="The projection's code version now.")
    events_applied: int
    updated_at: datetime | None
    failure: ProjectionFailureOut | None
    rebuilding: list[ProjectionRebuildOut]

    @classmethod
    def of(cls, status: ProjectionStatus) -> ProjectionOut:
        return cls(
            name=status.name,
            status=status.state,
            position=status.position,
            head=status.head,
            lag_events=status.lag_events,
            lag_seconds=round(status.lag_s, 3),
            generation=status.generation,
            version=status.version,
            code_version=status.code_version,
            events_applied=status.events_applied,
            updated_at=status.updated_at,
            failure=None
            if status.failure is None
            else ProjectionFailureOut(**status.failure.model_dump()),
            rebuilding=[
                ProjectionRebuildOut(**building.model_dump()) for building in status.building
            ],
        )


class ProjectionsOut(BaseModel):
    items: list[ProjectionOut]


@router.get(
    "/projections",
    summary="Projections and their lag",
    description="Per projection: the position its read model has reached, the event store "
    "head, the lag in events and in seconds, and its status — with the failing event "
    "if one stopped it, and the progress of any rebuild. `X-Prep-Position` is the "
    "lowest position of them all; this route does not wait for `X-Prep-Min-Position` "
    "(it is how one sees why a read model is behind).",
    responses=query_responses(401, 403, 422),
)
def projections(admin: AdminUser, services: ServicesDep, response: Response) -> ProjectionsOut:
    statuses = projection_statuses(
        services.runtime.app, services.read_side.write_database, services.projections
    )
    response.headers[POSITION_HEADER] = str(min((s.position for s in statuses), default=0))
    return ProjectionsOut(items=[ProjectionOut.of(status) for status in statuses])
