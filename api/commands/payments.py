"""The payment provider's notifications: the one way money enters the ledger.

Public (the provider calls it) and trusted only once the provider's adapter verified the
signature over the raw body: a bad, missing or stale signature, or a notification for
another provider than the one configured, is a 400 and records nothing. A verified one is
recorded, with what it changed, in one command before the 2xx (see
``commands.payment_notifications``); a duplicate is answered 200 and changes nothing, so
the provider stops retrying it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from aggregates.payment_notification import NotificationOutcome
from api.deps import RequestId, ServicesDep
from api.schemas import PositionField, problems, record_position

router = APIRouter(prefix="/payments", tags=["payments"])

ProviderName = Annotated[str, Path(max_length=32, description="`sandbox` or `stripe`.")]


class NotificationReceived(BaseModel):
    id: UUID
    outcome: NotificationOutcome
    duplicate: bool
    position: PositionField


@router.post(
    "/webhooks/{provider}",
    summary="Receive a payment provider's notification",
    description="Public; called by the payment provider, signed. Verifies the signature "
    "over the raw body (400 `signature_missing`, `invalid_signature`, `stale_signature`, "
    "`malformed_notification`, `wrong_provider`; nothing is recorded), then records the "
    "notification and applies it — a top-up credited, a payout posted or voided — before "
    "answering 200. The same event delivered again is answered 200 with `duplicate` and "
    "changes nothing.",
    responses=problems(400, 422),
)
async def receive_notification(
    provider: ProviderName,
    request: Request,
    services: ServicesDep,
    request_id: RequestId,
    response: Response,
) -> NotificationReceived:
    payload = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    executed = await run_in_threadpool(
        services.runtime.receive_notification, provider, payload, headers, request_id
    )
    receipt = executed.result
    return NotificationReceived(
        id=receipt.id,
        outcome=receipt.outcome,
        duplicate=receipt.duplicate,
        position=record_position(response, executed.position),
    )
