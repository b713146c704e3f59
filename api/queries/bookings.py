"""Booking queries over HTTP: the bookings a user takes part in, and one booking.

Who sees what (SPEC §4): a customer their own bookings, a host the bookings of their
kitchens, an admin every booking; analysts none (403). A booking that exists but is
not the caller's is 403; one that does not exist is 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from aggregates.booking import ACTIVE_STATUSES, BookingStatus
from api.deps import BookingParticipant, BookingQueriesDep, BookingsReadModel, PageParams
from api.queries.params import query_responses
from api.schemas import MoneyOut, PageOut, RefundOut, money
from queries.bookings import BookingDetail, BookingSummary, HostedBooking

router = APIRouter(prefix="/bookings", tags=["bookings"])

BookingId = Annotated[UUID, Path(description="The booking's id.")]


class BookingSummaryOut(BaseModel):
    """A booking as lists show it."""

    id: UUID
    kitchen_id: UUID
    kitchen_name: str | None = Field(examples=["Sunset Commissary"])
    city: str | None = Field(examples=["Los Angeles"])
    host_id: UUID = Field(description="The kitchen's host.")
    customer_id: UUID = Field(description="Who booked.")
    start_time: datetime = Field(examples=["2030-01-08T17:00:00Z"])
    end_time: datetime = Field(examples=["2030-01-08T19:00:00Z"])
    guests: int = Field(examples=[4])
    price: MoneyOut = Field(description="hourly_rate × hours, held on the customer's account.")
    status: BookingStatus = Field(examples=["confirmed"])
    refund: RefundOut | None = Field(
        description="Once the booking is over (declined, cancelled, expired, completed): "
        "how much of the hold was released and captured; null while active."
    )
    updated_at: datetime

    @classmethod
    def of(cls, booking: BookingSummary) -> BookingSummaryOut:
        return cls(**_fields(cls, booking))


class BookingDetailOut(BookingSummaryOut):
    """Everything the bookings read model knows of one booking."""

    jurisdiction: str | None = Field(examples=["los_angeles"])
    notes: str | None = Field(
        description="What the customer wrote; null once the customer was erased.",
        examples=["Two pallets of produce arriving at 9"],
    )
    hourly_rate: MoneyOut = Field(
        description="The rate fixed when the booking was requested (a reschedule keeps it)."
    )
    cancelled_by_role: str | None = Field(
        description="customer or host, once cancelled; admin when an admin's forced "
        "erasure of its host or customer cancelled it, system when the sweeper did (its "
        "host erased).",
        examples=[None],
    )
    reason: str | None = Field(
        description="Why it was declined or cancelled, if the actor said; null once the "
        "actor was erased.",
        examples=[None],
    )
    completed_automatically: bool | None = Field(
        description="Completed by the sweeper 24 h after its end (true) or by a person "
        "(false); null until completed."
    )
    requested_at: datetime
    version: int = Field(description="The booking aggregate's version.")
    position: int = Field(description="The event store position of its last event.")

    @classmethod
    def of_detail(cls, booking: BookingDetail) -> BookingDetailOut:
        return cls(**_fields(cls, booking))


class HostedBookingOut(BookingSummaryOut):
    """A booking of one of the caller's kitchens, as the host's own record: without
    what the customer wrote."""

    jurisdiction: str | None = Field(examples=["los_angeles"])
    hourly_rate: MoneyOut
    cancelled_by_role: str | None = Field(examples=[None])
    reason: str | None = Field(
        description="Why the host declined or cancelled it, if they said; the "
        "customer's reason to cancel is theirs, and left out.",
        examples=[None],
    )
    completed_automatically: bool | None
    requested_at: datetime
    version: int
    position: int

    @classmethod
    def of_hosted(cls, booking: HostedBooking) -> HostedBookingOut:
        return cls(**_fields(cls, booking))


def _fields(model: type[BaseModel], booking: BookingSummary) -> dict[str, object]:
    fields = booking.model_dump()
    for name in ("price", "hourly_rate"):
        if f"{name}_cents" in fields:
            fields[name] = money(fields.pop(f"{name}_cents"))
    fields["refund"] = (
        None
        if booking.status in ACTIVE_STATUSES
        else RefundOut.of(booking.released_cents, booking.captured_cents)
    )
    return {name: value for name, value in fields.items() if name in model.model_fields}


class BookingPage(PageOut[BookingSummaryOut]):
    pass


@router.get(
    "",
    summary="List bookings",
    description="The bookings the caller takes part in: a customer's own, a host's "
    "kitchens', every booking for an admin (analysts: 403). Ordered by start time. "
    "Filter by `status` and `kitchen_id`.",
    responses=query_responses(401, 403, 422, 503),
)
def list_bookings(
    user: BookingParticipant,
    bookings: BookingQueriesDep,
    _: BookingsReadModel,
    page: PageParams,
    status: Annotated[BookingStatus | None, Query(description="Only this status.")] = None,
    kitchen_id: Annotated[UUID | None, Query(description="Only this kitchen's.")] = None,
) -> BookingPage:
    return BookingPage.of(
        bookings.list(user.viewer, status=status, kitchen_id=kitchen_id, page=page),
        BookingSummaryOut.of,
    )


@router.get(
    "/{booking_id}",
    summary="Get a booking",
    description="One booking, for its customer, its kitchen's host and admins; 403 for "
    "anyone else, 404 if there is no such booking.",
    responses=query_responses(401, 403, 404, 422, 503),
)
def get_booking(
    booking_id: BookingId,
    user: BookingParticipant,
    bookings: BookingQueriesDep,
    _: BookingsReadModel,
) -> BookingDetailOut:
    return BookingDetailOut.of_detail(bookings.get(user.viewer, booking_id))
