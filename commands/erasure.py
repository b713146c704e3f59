"""Erasure: a person is forgotten, on their own request (their password entered again)
or an admin's (with a reason).

One transaction records ``User.UserErased``, releases the email's claim (the email can
be registered again, by anyone), takes the person's kitchens off the market and, when an
admin forces it, cancels the person's active bookings, each hold released in full (see
``aggregates.erasure``); then the person's data key is destroyed, after which nothing
personal ever written about them can be read. Should the process die between the two,
the sweeper destroys the key of every erased user whose key remains
(``commands.sweeper``); destroying a key twice changes nothing.

What blocks an erasure (``aggregates.erasure``) is decided on aggregates read in the
transaction, so a change to any of them commits first or refuses the erasure's commit:

- the account (its balance, holds and pending payouts): every booking the person made
  holds money on it, every top-up and payout writes it;
- each booking, payout, top-up and kitchen looked at.

Two things the write model cannot list by itself come from the read models
(:class:`ErasureLeadReader`): the host's kitchens and their active bookings, and the
person's top-ups not yet settled. The reader waits until the read models have applied
every event stored before it was asked, so each lead committed before then is seen; each
is then loaded and decided on here, and a forced erasure settles each active booking
here too: in the transaction that read it, so a booking changed meanwhile refuses the
commit (and is decided on again), and a crash leaves the erasure with its cancellations
or neither. Top-ups are thus exact: one started later writes the account, which refuses
the erasure's commit. A booking of one of the host's kitchens is not: one requested in
the moment between that wait and the erasure's commit writes nothing the erasure read
(the kitchen is only read by it), and is missed; so are those beyond the first
:data:`LEADS_MAX` the reader hands over. Such a booking stays active at a kitchen the
erasure suspended, with a host nobody can reach: a pending one expires at its start (its
hold released), a confirmed one may still be cancelled by its customer, or is cancelled
by the sweeper a day after its end, its hold released (``commands.sweeper``), rather
than completed into an account nobody can use. That window is accepted: it lasts as long
as one command, and closing it would make every booking request write its host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aggregates.account import account_id_for
from aggregates.booking import Booking
from aggregates.erasure import (
    BLOCKERS_LISTED_MAX,
    ErasureBlocker,
    balance_blocker,
    booking_blocker,
    check_erasable,
    payout_blocker,
    settle_bookings,
    top_up_blocker,
    withdraw_kitchens,
)
from aggregates.errors import PermissionDenied, StateConflict
from aggregates.kitchen import Kitchen
from aggregates.payout import Payout
from aggregates.schedule import KitchenSchedule
from aggregates.text import check_reason
from aggregates.top_up import TopUp
from aggregates.user import EmailClaim, PersonalDetails, User
from commands.clock import Clock
from commands.context import CommandContext, require_role
from commands.processor import CommandProcessor, Executed
from commands.store import CommandStore
from commands.unit_of_work import UnitOfWork
from commands.users import CurrentPassword, PasswordHashing

SELF_ERASURE_REASON: Final = "erased at their own request"
LEADS_MAX: Final = 200
"""Leads of one kind a reader hands over at most: bookings and top-ups beyond it would
only lengthen a refusal, which names at most ``BLOCKERS_LISTED_MAX``. Kitchens are
handed over one more, to tell a host with more than this many (refused:
``too_many_kitchens``: an admin withdraws some first) from one with exactly as many."""


class EraseMe(BaseModel):
    """A signed-in user asks to be forgotten, entering their password again."""

    model_config = ConfigDict(frozen=True)

    password: str


class EraseUser(BaseModel):
    """An admin erases a user, saying why; ``force`` goes past open money and bookings."""

    model_config = ConfigDict(frozen=True)

    user_id: UUID
    reason: str
    force: bool = False


class ErasureState(BaseModel):
    """What an erasure did. ``forced``: it went past ``blockers``, still open (the
    first ``BLOCKERS_LISTED_MAX`` of them)."""

    id: UUID
    erased_at: datetime
    forced: bool
    blockers: list[dict[str, str]]
    kitchens_withdrawn: list[UUID]
    bookings_settled: list[dict[str, str]] = []
    """The bookings a forced erasure cancelled, each hold released in full (see
    ``aggregates.erasure.settle_bookings``). Defaulted: an answer an idempotency key
    recorded before it existed reads as settling none."""


@dataclass(frozen=True)
class ErasureLeads:
    """Where the read models say a person may still have something open that the write
    model cannot list (see the module's docstring). Candidates: each is loaded and
    decided on. At most :data:`LEADS_MAX` of each."""

    kitchen_ids: Sequence[UUID]
    """Every kitchen the person hosts, whatever its status (at most one more than
    :data:`LEADS_MAX`)."""
    hosted_booking_ids: Sequence[UUID]
    """Pending and confirmed bookings of those kitchens."""
    top_up_ids: Sequence[UUID]
    """The person's top-ups the provider has not settled."""


class ErasureLeadReader(Protocol):
    def leads(self, user_id: UUID, *, position: int) -> ErasureLeads:
        """The leads of ``user_id`` from read models that have applied at least
        ``position`` (waiting for them, bounded)."""


class ErasureCommands:
    def __init__(
        self,
        processor: CommandProcessor,
        passwords: PasswordHashing,
        clock: Clock,
        store: CommandStore,
    ) -> None:
        self._processor = processor
        self._passwords = passwords
        self._clock = clock
        self._store = store

    def erase_me(
        self, command: EraseMe, context: CommandContext, leads: ErasureLeadReader
    ) -> Executed[ErasureState]:
        """403 ``wrong_password`` for a wrong password (limited by the caller:
        ``prep_es.services.auth.CurrentPasswordLimit``); 409 ``erasure_blocked``."""
        actor = context.actor
        if actor is None:
            raise PermissionDenied("erasing yourself needs a signed-in user")
        current = CurrentPassword(self._passwords, command.password)

        def check_password(details: PersonalDetails) -> None:
            current.check(details.password_hash)

        return self._erase(
            "erase_me",
            command,
            context,
            user_id=actor.user_id,
            reason=SELF_ERASURE_REASON,
            force=False,
            check_user=check_password,
            leads=leads,
        )

    def erase_user(
        self, command: EraseUser, context: CommandContext, leads: ErasureLeadReader
    ) -> Executed[ErasureState]:
        """Admins only; 404 ``user_not_found`` for a user erased already; 409
        ``erasure_blocked`` unless ``force``."""
        require_role(context, "admin")
        reason = check_reason(command.reason)
        return self._erase(
            "erase_user",
            command,
            context,
            user_id=command.user_id,
            reason=reason,
            force=command.force,
            check_user=lambda details: None,
            leads=leads,
        )

    def _erase(
        self,
        command_name: str,
        command: BaseModel,
        context: CommandContext,
        *,
        user_id: UUID,
        reason: str,
        force: bool,
        check_user: Callable[[PersonalDetails], None],
        leads: ErasureLeadReader,
    ) -> Executed[ErasureState]:
        actor = context.actor
        assert actor is not None
        if actor.user_id == user_id and actor.role == "admin":
            # Another admin can: an admin always remains, as two admins erasing each
            # other write what the other's admission read, and only one commits.
            raise PermissionDenied(
                "an admin's account is erased by another admin", code="admin_self_erasure"
            )

        def decide(unit: UnitOfWork) -> ErasureState:
            user = unit.get(User, user_id, not_found_code="user_not_found")
            details = user.details()
            check_user(details)
            account = unit.account_of(user_id)
            # Every event stored from here on is one the transaction's reads would refuse,
            # but for the bookings of the host's kitchens (see the module's docstring).
            found = leads.leads(user_id, position=self._store.position())
            if len(found.kitchen_ids) > LEADS_MAX:
                raise StateConflict(
                    f"this host has more than {LEADS_MAX} kitchens: an admin suspends or "
                    "rejects some of them first",
                    code="too_many_kitchens",
                )
            payout_ids = [UUID(payout_id) for payout_id in account.payouts_pending]
            booking_ids = list(
                dict.fromkeys([*map(UUID, account.holds), *found.hosted_booking_ids])
            )
            unit.read_ahead([*found.kitchen_ids, *booking_ids, *payout_ids, *found.top_up_ids])
            blockers = _blockers(
                unit,
                user_id,
                account_blocker=balance_blocker(account),
                booking_ids=booking_ids,
                payout_ids=payout_ids,
                top_up_ids=found.top_up_ids,
            )
            check_erasable(blockers, forced=force)
            # Forced past active bookings: each, re-checked here, is settled in this
            # transaction (see ``aggregates.erasure.settle_bookings``).
            bookings = [
                booking
                for booking in (unit.find(Booking, booking_id) for booking_id in booking_ids)
                if booking is not None and booking.is_active
            ]
            unit.read_ahead(_parties_of(bookings))
            settled = settle_bookings(bookings, user_id, parties=unit)
            kitchens = [
                kitchen
                for kitchen in (unit.find(Kitchen, kitchen_id) for kitchen_id in found.kitchen_ids)
                if kitchen is not None and kitchen.host_id == user_id
            ]
            withdrawn = withdraw_kitchens(kitchens, user_id)
            digest = self._store.email_digest(details.email)
            claim = unit.find(EmailClaim, EmailClaim.create_id(email_digest=digest))
            holder = self._store.keyed_digest(EmailClaim.holder_message(user_id))
            if claim is not None and claim.held_by(holder):
                claim.release(holder)
            erased_at = self._clock()
            user.erase(reason=reason, forced=bool(blockers), at=erased_at)
            return ErasureState(
                id=user_id,
                erased_at=erased_at,
                forced=bool(blockers),
                blockers=[blocker.described for blocker in blockers[:BLOCKERS_LISTED_MAX]],
                kitchens_withdrawn=withdrawn,
                bookings_settled=settled,
            )

        executed = self._processor.execute(command_name, context, command, ErasureState, decide)
        # After the commit (a replay included: the first answer may have been lost with
        # the key undestroyed); the sweeper does it should this process die first.
        self._store.destroy_personal_data(user_id)
        # Copies loaded until the key was gone may hold what the person wrote (another
        # process's are dropped by its follower when it hears of the erasure).
        self._processor.known.forget_all()
        return executed


def _parties_of(bookings: Sequence[Booking]) -> list[UUID]:
    """What settling ``bookings`` writes besides them: their customers' accounts and the
    kitchen-day schedules their windows claim (read ahead in one round trip)."""
    return [
        *(account_id_for(booking.customer_id) for booking in bookings),
        *(
            KitchenSchedule.create_id(kitchen_id=booking.kitchen_id, day=day)
            for booking in bookings
            for day in booking.window.days()
        ),
    ]


def _blockers(
    unit: UnitOfWork,
    user_id: UUID,
    *,
    account_blocker: ErasureBlocker | None,
    booking_ids: Sequence[UUID],
    payout_ids: Sequence[UUID],
    top_up_ids: Sequence[UUID],
) -> list[ErasureBlocker]:
    blockers = [] if account_blocker is None else [account_blocker]
    for booking_id in booking_ids:
        booking = unit.find(Booking, booking_id)
        blocker = None if booking is None else booking_blocker(booking, user_id)
        if blocker is not None:
            blockers.append(blocker)
    for payout_id in payout_ids:
        payout = unit.find(Payout, payout_id)
        blocker = None if payout is None else payout_blocker(payout)
        if blocker is not None:
            blockers.append(blocker)
    for top_up_id in top_up_ids:
        top_up = unit.find(TopUp, top_up_id)
        blocker = (
            top_up_blocker(top_up) if top_up is not None and top_up.owner_id == user_id else None
        )
        if blocker is not None:
            blockers.append(blocker)
    return blockers
