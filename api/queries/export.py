"""``GET /users/me/export``: everything Prep ES holds about the caller, as one JSON
document (GDPR art. 15 and 20), written out while it is read (see ``queries.export``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import CurrentUser, ExportedReadModels, ExportQueriesDep, ServicesDep
from api.queries.accounts import AccountOut, StatementEntryOut
from api.queries.admin.audit import AuditEntryOut
from api.queries.bookings import BookingDetailOut, HostedBookingOut
from api.queries.kitchens.schemas import OwnedKitchenOut
from api.queries.params import query_responses
from api.queries.payments import PayoutSummaryOut, TopUpSummaryOut
from queries.audit import EntryAboutPerson, OwnAuditEntry
from queries.export import PersonalDataExport
from queries.users import UserProfile

router = APIRouter(prefix="/users", tags=["users"])

EXPORT_FORMAT: Final = "prep-es.user-export.v1"
CHUNK_BYTES: Final = 64 * 1024
"""The body is sent in pieces of about this size."""


class OwnAuditEntryOut(AuditEntryOut):
    """An audit entry of something the caller did."""

    withheld_fields: list[str] = Field(
        description="Personal fields of someone else in the payload: left out (null), as theirs.",
        examples=[[]],
    )

    @classmethod
    def of_own(cls, entry: OwnAuditEntry) -> OwnAuditEntryOut:
        return cls(**entry.model_dump())


class EntryAboutMeOut(OwnAuditEntryOut):
    """An audit entry of an event of the caller's own user or account, whoever caused it."""

    actor_withheld: bool = Field(
        description="Someone else caused it (an admin, a host completing a booking): "
        "`actor_id`, `request_id` and `correlation_id` are null and `actor_role` says "
        "who they were.",
        examples=[False],
    )

    @classmethod
    def of_about(cls, entry: EntryAboutPerson) -> EntryAboutMeOut:
        return cls(**entry.model_dump())


class _ExportHeadOut(BaseModel):
    """What an export starts with, before its lists."""

    format: Literal["prep-es.user-export.v1"] = Field(
        description="This document's shape and its version."
    )
    exported_at: datetime
    position: int = Field(
        description="Every read model the export was read from had reached at least this "
        "event store position (as `X-Prep-Position`)."
    )
    user: UserProfile
    account: AccountOut | None = Field(description="Null until the account is opened.")


class UserExportOut(_ExportHeadOut):
    """Everything Prep ES holds about the caller. Every list is complete and oldest
    first; each row is as it was when read. Only the caller's own data: what someone
    else wrote (a customer's notes, a host's reason to decline, another person's field in
    an audit entry) is left out, and who else changed the caller's user or account is
    shown by role only."""

    account_entries: list[StatementEntryOut] = Field(description="The whole statement.")
    top_ups: list[TopUpSummaryOut]
    payouts: list[PayoutSummaryOut] = Field(description="Payouts and refunds to the card.")
    bookings_made: list[BookingDetailOut] = Field(
        description="Bookings the caller made as a customer. `reason` is theirs only: a "
        "reason a host or an admin gave is left out (null)."
    )
    bookings_hosted: list[HostedBookingOut] = Field(
        description="Bookings of the caller's kitchens."
    )
    kitchens: list[OwnedKitchenOut] = Field(description="Kitchens the caller hosts, in any status.")
    audit_entries: list[OwnAuditEntryOut] = Field(
        description="Every event the caller caused (they are its actor)."
    )
    entries_about_me: list[EntryAboutMeOut] = Field(
        description="Every event of the caller's own user and account, whoever caused it: "
        "the registration with the email and name first given, every name, email, "
        "password (its hash redacted), role and active change, every token revoked, "
        "every movement of the account. Those the caller caused are in `audit_entries` too."
    )


def _sections(
    export: PersonalDataExport,
) -> tuple[tuple[str, Iterator[Any], Callable[[Any], BaseModel]], ...]:
    """The lists of an export, in :class:`UserExportOut`'s order, each with the response
    model of one of its items."""
    return (
        ("account_entries", export.account_entries, StatementEntryOut.of),
        ("top_ups", export.top_ups, TopUpSummaryOut.of),
        ("payouts", export.payouts, PayoutSummaryOut.of),
        ("bookings_made", export.bookings_made, BookingDetailOut.of_detail),
        ("bookings_hosted", export.bookings_hosted, HostedBookingOut.of_hosted),
        ("kitchens", export.kitchens, OwnedKitchenOut.of_owned),
        ("audit_entries", export.audit_entries, OwnAuditEntryOut.of_own),
        ("entries_about_me", export.entries_about_me, EntryAboutMeOut.of_about),
    )


_LIST_NAMES: Final = tuple(
    name for name in UserExportOut.model_fields if name not in _ExportHeadOut.model_fields
)


def export_json(
    export: PersonalDataExport, *, exported_at: datetime, position: int
) -> Iterator[bytes]:
    """The JSON of a :class:`UserExportOut`, in pieces of about :data:`CHUNK_BYTES`,
    each item serialized by its response model as it is read."""
    sections = _sections(export)
    assert tuple(name for name, _, _ in sections) == _LIST_NAMES, _LIST_NAMES
    head = _ExportHeadOut(
        format=EXPORT_FORMAT,
        exported_at=exported_at,
        position=position,
        user=export.user,
        account=None if export.account is None else AccountOut.of(export.account),
    )
    buffer = bytearray(head.model_dump_json().encode())
    assert buffer.endswith(b"}")
    del buffer[-1]
    for name, items, item_out in sections:
        buffer += b',"%s":[' % name.encode()
        separator = b""
        for item in items:
            buffer += separator + item_out(item).model_dump_json().encode()
            separator = b","
            if len(buffer) >= CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
        buffer += b"]"
    buffer += b"}"
    yield bytes(buffer)


def export_filename(user_id: object, exported_at: datetime) -> str:
    return f"prep-es-export-{user_id}-{exported_at.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"


_RESPONSES = query_responses(401, 404, 422, 503)
_RESPONSES[200] = {
    **_RESPONSES[200],
    "model": UserExportOut,
    "description": "The export, as a JSON download.",
    "headers": {
        **_RESPONSES[200]["headers"],
        "Content-Disposition": {
            "description": "`attachment`, with a file name naming the user and the moment.",
            "schema": {"type": "string"},
        },
    },
}


@router.get(
    "/me/export",
    summary="Everything held about me",
    description="Everything Prep ES holds about the caller, as one JSON document to keep "
    "or take elsewhere: profile, account and its whole statement, top-ups, payouts, the "
    "bookings they made and those of their kitchens, the kitchens they host with their "
    "certificates, and every audit entry of what they did. Complete, not paged: it is "
    "written out as it is read, each list oldest first. Only the caller's own data: what "
    "someone else wrote is left out. Send `X-Prep-Min-Position` to include a change just "
    "made. An erased user's token is refused (401).",
    response_class=StreamingResponse,
    responses=_RESPONSES,
)
def export_me(
    user: CurrentUser,
    export: ExportQueriesDep,
    services: ServicesDep,
    read: ExportedReadModels,
) -> StreamingResponse:
    exported = export.export(user.viewer, catch_up=services.catch_up_users)
    exported_at = services.clock()
    return read.stream(
        export_json(exported, exported_at=exported_at, position=read.position),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{export_filename(user.id, exported_at)}"'
        },
    )
