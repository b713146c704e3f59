"""Booking commands over HTTP: a customer requests, reschedules or cancels a booking;
the kitchen's host confirms, declines, cancels or completes it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, Field

from aggregates.booking import BookingStatus
from api.commands.execution import execute
from api.deps import BookingCommandsDep, Command
from api.schemas import (
    REASON_LENGTH_BOUND,
    Instant,
    MoneyOut,
    PositionField,
    RefundOut,
    RequestBody,
    money,
    problems,
)
from commands.bookings import (
    BookingAction,
    BookingState,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
    RescheduleBooking,
)

router = APIRouter(prefix="/bookings", tags=["bookings"])

BookingId = Annotated[UUID, Path(description="The booking's id.")]

NOTES_LENGTH_BOUND = 10_000


class BookingOut(BaseModel):
    """A booking as the write model has it after the command."""

    id: UUID
    kitchen_id: UUID
    host_id: UUID
    customer_id: UUID
    start_time: datetime
    end_time: datetime
    guests: int
    notes: str | None = Field(description="The customer's notes; null once they are erased.")
    hourly_rate: MoneyOut = Field(description="The kitchen's rate when the booking was requested.")
    price: MoneyOut = Field(description="hourly_rate × hours, held on the customer's account.")
    status: BookingStatus = Field(
        description="pending, confirmed, declined, cancelled, expired or completed",
        examples=["pending"],
    )
    refund: RefundOut | None = Field(
        description="Once the booking is over (declined, cancelled, expired, completed): "
        "how much of the hold was released and captured; null while active."
    )
    version: int = Field(description="The booking aggregate's version.")
    position: PositionField

    @classmethod
    def of(cls, state: BookingState, position: int) -> BookingOut:
        fields = state.model_dump(exclude={"hourly_rate_cents", "price_cents", "refund"})
        refund = (
            None
            if state.refund is None
            else RefundOut.of(state.refund.released_cents, state.refund.captured_cents)
        )
        return cls(
            **fields,
            hourly_rate=money(state.hourly_rate_cents),
            price=money(state.price_cents),
            refund=refund,
            position=position,
        )


class RequestBookingBody(RequestBody):
    kitchen_id: UUID
    start_time: Instant = Field(
        description="RFC 3339 with an offset, in the future, on a 15-minute boundary.",
        examples=["2030-01-07T17:00:00Z"],
    )
    end_time: Instant = Field(
        description="At least an hour after start_time, within the jurisdiction's maximum.",
        examples=["2030-01-07T20:00:00Z"],
    )
    guests: int = Field(description="1–50, at most the kitchen's capacity.", examples=[4])
    notes: str = Field(default="", max_length=NOTES_LENGTH_BOUND, description="≤ 1000 chars.")


class ReasonBody(RequestBody):
    reason: str | None = Field(
        default=None, max_length=REASON_LENGTH_BOUND, examples=["Plans changed"]
    )


class RescheduleBody(RequestBody):
    start_time: Instant = Field(examples=["2030-01-08T17:00:00Z"])
    end_time: Instant = Field(examples=["2030-01-08T20:00:00Z"])


@router.post(
    "",
    status_code=201,
    summary="Request a booking",
    description="Customers only. Holds the price (the kitchen's hourly rate × hours) on "
    "the customer's account: 402 if the available balance cannot cover it. The booking "
    "is `confirmed` at once if the kitchen is instant-book, else `pending` until the host "
    "confirms or declines (or it expires at its start). 409 when the slot overlaps "
    "another booking (`booking_conflict`) or the kitchen cannot take it "
    "(`kitchen_not_bookable`, `certificate_missing`, `certificate_expired`, "
    "`outside_operating_hours`).",
    responses=problems(401, 402, 403, 404, 409, 422),
)
async def request_booking(
    body: RequestBookingBody, bookings: BookingCommandsDep, context: Command, response: Response
) -> BookingOut:
    return await execute(
        bookings.request_booking,
        RequestBooking(**body.model_dump()),
        context,
        response,
        BookingOut.of,
    )


@router.post(
    "/{booking_id}/confirm",
    summary="Confirm a booking",
    description="The kitchen's host confirms a `pending` booking before it starts.",
    responses=problems(401, 403, 404, 409),
)
async def confirm_booking(
    booking_id: BookingId, bookings: BookingCommandsDep, context: Command, response: Response
) -> BookingOut:
    return await execute(
        bookings.confirm_booking,
        BookingAction(booking_id=booking_id),
        context,
        response,
        BookingOut.of,
    )


@router.post(
    "/{booking_id}/decline",
    summary="Decline a booking",
    description="The kitchen's host declines a `pending` booking; the whole hold is "
    "released to the customer.",
    responses=problems(401, 403, 404, 409, 422),
)
async def decline_booking(
    booking_id: BookingId,
    bookings: BookingCommandsDep,
    context: Command,
    response: Response,
    body: Annotated[ReasonBody | None, Body()] = None,
) -> BookingOut:
    reason = None if body is None else body.reason
    return await execute(
        bookings.decline_booking,
        DeclineBooking(booking_id=booking_id, reason=reason),
        context,
        response,
        BookingOut.of,
    )


@router.patch(
    "/{booking_id}/cancel",
    summary="Cancel a booking",
    description="Its customer or the kitchen's host cancels a pending or confirmed "
    "booking before it starts. A host's cancellation releases the whole hold. A "
    "customer's: 48 h or more before the start, all released; 24–48 h, half captured for "
    "the host; under 24 h, all captured. `refund` says how it went. 409 if it was "
    "cancelled already (`already_cancelled`) or has started.",
    responses=problems(401, 403, 404, 409, 422),
)
async def cancel_booking(
    booking_id: BookingId,
    bookings: BookingCommandsDep,
    context: Command,
    response: Response,
    body: Annotated[ReasonBody | None, Body()] = None,
) -> BookingOut:
    reason = None if body is None else body.reason
    return await execute(
        bookings.cancel_booking,
        CancelBooking(booking_id=booking_id, reason=reason),
        context,
        response,
        BookingOut.of,
    )


@router.patch(
    "/{booking_id}/reschedule",
    summary="Reschedule a booking",
    description="Its customer moves a pending or confirmed booking, before it starts, to "
    "a new window; the same checks as a new booking apply. The new window is priced at "
    "the booking's original rate and the hold adjusted (402 if the difference cannot be "
    "held).",
    responses=problems(401, 402, 403, 404, 409, 422),
)
async def reschedule_booking(
    booking_id: BookingId,
    body: RescheduleBody,
    bookings: BookingCommandsDep,
    context: Command,
    response: Response,
) -> BookingOut:
    return await execute(
        bookings.reschedule_booking,
        RescheduleBooking(booking_id=booking_id, **body.model_dump()),
        context,
        response,
        BookingOut.of,
    )


@router.post(
    "/{booking_id}/complete",
    summary="Complete a booking",
    description="The kitchen's host or an admin completes a confirmed booking after its "
    "end: the hold is captured, the host paid less the platform commission. (Confirmed "
    "bookings nobody completes are completed automatically 24 h after their end.)",
    responses=problems(401, 403, 404, 409),
)
async def complete_booking(
    booking_id: BookingId, bookings: BookingCommandsDep, context: Command, response: Response
) -> BookingOut:
    return await execute(
        bookings.complete_booking,
        BookingAction(booking_id=booking_id),
        context,
        response,
        BookingOut.of,
    )
