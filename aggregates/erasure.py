"""What an erasure decides besides the user: what blocks it, and the kitchens it takes
off the market.

Erasing a person forgets who they are (see ``User.erase``); their money and bookings
stay in the ledger by id. While money is still on its way to or from them, or a booking
still waits on them, nobody could settle it with them any more, so the erasure is
refused (``ErasureBlocked``, naming each blocker) until it is settled — unless an admin
forces it, with a reason. The blockers:

    balance     money left on the account, available or held
    booking     a booking pending or confirmed, the person its customer or its host
    payout      a host's payout the provider has not yet paid or failed
    withdrawal  a customer's refund to their card, likewise
    top_up      a top-up whose payment the provider has neither confirmed nor refused

A host's kitchens leave the market with their host, forced or not: a published kitchen
is suspended and one under review rejected, each with :data:`HOST_ERASED_REASON`, so
that nobody books (or approves) a kitchen whose host can no longer answer.

A forced erasure settles the person's active bookings (:func:`settle_bookings`): each
is cancelled by the admin (whatever its window) and its whole hold released to its
customer, as a host's cancellation does — nobody could confirm, cancel or be paid for
it any more. A customer pays no fee: the platform decided. Money that remains on the
erased person's account (their balance, the holds just released included) stays in the
ledger under the account's id: it is the operator's to refund through the payment
provider before erasing, or to account for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

from aggregates.account import Account
from aggregates.booking import Booking
from aggregates.booking_decisions import BookingParties, cancel_for_erasure
from aggregates.errors import ErasureBlocked
from aggregates.kitchen import Kitchen
from aggregates.payment_provider import TransferMethod
from aggregates.payout import Payout
from aggregates.policies import format_money
from aggregates.top_up import PENDING_STATUSES, TopUp

HOST_ERASED_REASON: Final = "its host's account was erased"
BOOKING_HOST_ERASED_REASON: Final = "the host's account was erased"
BOOKING_CUSTOMER_ERASED_REASON: Final = "the customer's account was erased"
BLOCKERS_LISTED_MAX: Final = 50
"""Blockers an answer names; the rest are only counted (a host may have many bookings)."""
PENDING_TOP_UP_STATUSES: Final = PENDING_STATUSES

BlockerKind = Literal["balance", "booking", "payout", "withdrawal", "top_up"]


@dataclass(frozen=True)
class ErasureBlocker:
    """One thing still open. ``described`` is what a refusal says of it: plain values,
    money as decimal strings (``"12.00"``)."""

    kind: BlockerKind
    described: dict[str, str]


def balance_blocker(account: Account) -> ErasureBlocker | None:
    if account.balance_cents == 0 and account.held_cents == 0:
        return None
    return ErasureBlocker(
        "balance",
        {
            "kind": "balance",
            "available": format_money(account.available_cents),
            "held": format_money(account.held_cents),
        },
    )


def _part_in(booking: Booking, person_id: UUID) -> Literal["customer", "host"] | None:
    """The part ``person_id`` takes in ``booking`` while it is active."""
    if not booking.is_active:
        return None
    if booking.customer_id == person_id:
        return "customer"
    if booking.host_id == person_id:
        return "host"
    return None


def booking_blocker(booking: Booking, person_id: UUID) -> ErasureBlocker | None:
    """``booking``, if it is still active and ``person_id`` takes part in it."""
    role = _part_in(booking, person_id)
    if role is None:
        return None
    return ErasureBlocker(
        "booking",
        {"kind": "booking", "id": str(booking.id), "as": role, "status": booking.status.value},
    )


def payout_blocker(payout: Payout) -> ErasureBlocker | None:
    if not payout.is_pending:
        return None
    kind: BlockerKind = "payout" if payout.method == TransferMethod.PAYOUT else "withdrawal"
    return ErasureBlocker(
        kind,
        {"kind": kind, "id": str(payout.id), "amount": format_money(payout.amount_cents)},
    )


def top_up_blocker(top_up: TopUp) -> ErasureBlocker | None:
    if top_up.status not in PENDING_TOP_UP_STATUSES:
        return None
    return ErasureBlocker(
        "top_up",
        {
            "kind": "top_up",
            "id": str(top_up.id),
            "amount": format_money(top_up.amount_cents),
            "status": top_up.status.value,
        },
    )


def check_erasable(blockers: Sequence[ErasureBlocker], *, forced: bool) -> None:
    """Refuse the erasure (``ErasureBlocked``) while anything blocks it, unless forced."""
    if not blockers or forced:
        return
    kinds = sorted({blocker.kind for blocker in blockers})
    raise ErasureBlocked(
        f"{len(blockers)} thing(s) still open ({', '.join(kinds)}): settle them first, "
        "or an admin may force the erasure with a reason",
        blockers=[blocker.described for blocker in blockers[:BLOCKERS_LISTED_MAX]],
        blockers_total=len(blockers),
    )


def withdraw_kitchens(kitchens: Iterable[Kitchen], host_id: UUID) -> list[UUID]:
    """Take the erased host's kitchens off the market: a published one is suspended,
    one under review rejected; the others (draft, rejected, suspended) only an admin or
    their host — who is gone — could bring back. The ids of those changed."""
    withdrawn = []
    for kitchen in kitchens:
        assert kitchen.host_id == host_id, (kitchen.id, kitchen.host_id, host_id)
        if kitchen.status == "published":
            kitchen.suspend(HOST_ERASED_REASON)
        elif kitchen.status == "pending_review":
            kitchen.reject(HOST_ERASED_REASON)
        else:
            continue
        withdrawn.append(kitchen.id)
    return withdrawn


def settle_bookings(
    bookings: Iterable[Booking], person_id: UUID, *, parties: BookingParties
) -> list[dict[str, str]]:
    """Cancel each of ``bookings`` still active that ``person_id`` (being erased by
    force) takes part in, releasing its whole hold to its customer (see the module's
    docstring); how each was settled, described as a blocker is (``id``, ``as``, the
    status it ``was`` in, the money ``released``)."""
    settled = []
    for booking in bookings:
        role = _part_in(booking, person_id)
        if role is None:
            continue
        was = booking.status.value
        reason = BOOKING_HOST_ERASED_REASON if role == "host" else BOOKING_CUSTOMER_ERASED_REASON
        cancel_for_erasure(booking, by_role="admin", reason=reason, parties=parties)
        settled.append(
            {
                "id": str(booking.id),
                "as": role,
                "was": was,
                "released": format_money(booking.released_cents),
            }
        )
    return settled
