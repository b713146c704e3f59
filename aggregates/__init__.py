"""Prep ES domain model: event-sourced aggregates and pure domain policies.

Nothing here does I/O or reads a clock: times, prices and ids come in as arguments.
"""

from typing import Any

from aggregates.account import SNAPSHOT_INTERVAL as ACCOUNT_SNAPSHOT_INTERVAL
from aggregates.account import Account
from aggregates.booking import Booking
from aggregates.idempotency import IdempotencyRecord
from aggregates.kitchen import SNAPSHOT_INTERVAL as KITCHEN_SNAPSHOT_INTERVAL
from aggregates.kitchen import Kitchen
from aggregates.payment_notification import PaymentNotification
from aggregates.payout import Payout
from aggregates.schedule import SNAPSHOT_INTERVAL as SCHEDULE_SNAPSHOT_INTERVAL
from aggregates.schedule import KitchenSchedule
from aggregates.top_up import TopUp
from aggregates.user import SNAPSHOT_INTERVAL as USER_SNAPSHOT_INTERVAL
from aggregates.user import EmailClaim, User

# Long-lived aggregates are snapshotted every N events, so loading one costs about the
# same after 100k events as after 100.
SNAPSHOTTING_INTERVALS: dict[type[Any], int] = {
    Account: ACCOUNT_SNAPSHOT_INTERVAL,
    Kitchen: KITCHEN_SNAPSHOT_INTERVAL,
    KitchenSchedule: SCHEDULE_SNAPSHOT_INTERVAL,
    User: USER_SNAPSHOT_INTERVAL,
}

AGGREGATE_CLASSES: tuple[type[Any], ...] = (
    Account,
    Booking,
    EmailClaim,
    IdempotencyRecord,
    Kitchen,
    KitchenSchedule,
    PaymentNotification,
    Payout,
    TopUp,
    User,
)
"""Every aggregate class of the domain."""

__all__ = [
    "AGGREGATE_CLASSES",
    "SNAPSHOTTING_INTERVALS",
    "Account",
    "Booking",
    "EmailClaim",
    "IdempotencyRecord",
    "Kitchen",
    "KitchenSchedule",
    "PaymentNotification",
    "Payout",
    "TopUp",
    "User",
]
