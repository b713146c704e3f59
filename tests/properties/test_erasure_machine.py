"""The marketplace machine with people who come and go: registrations, profile changes
(name, and email with the password), self-erasures (refused while money or bookings are
open, naming what blocks them), admins' erasures (forced past the blockers, with a
reason), and the erased email registered again — among the bookings, cancellations,
top-ups, payouts and withdrawals of ``MarketplaceMachine``, whose invariants all hold
still. An erased person stays where they were (a slot of ``hosts`` or ``customers``)
until someone registers their email again, so the marketplace's rules keep picking
them: every command they try is refused (``user_erased``).

Everything a person writes holds their *token* (``zyqxwv`` and a number): their names,
emails, booking notes, and their reasons for declining or cancelling. Besides the
marketplace's invariants, after every step:

1. an erasure, refused or done, changes no money: the ledger's system balances, every
   account, every booking's price and settlement, and the trial balance of the read
   models are what they were;
2. a refused erasure names exactly what the model says is open: the account's money
   (available and held), each pending or confirmed booking the person is the customer
   or host of, a top-up the provider has not settled (and a payout or withdrawal it
   has not paid, though the sandbox here pays them at once);
3. an erased person can do nothing (the marketplace's rules, and ``erase_me``);
4. every event field that held an erased person's writing reads as ``None`` and is
   listed in ``erased_fields``, in the notification log, in the time-travel view of
   their user and of their bookings, and no decoded event, command answer or read
   model row holds their token; every living person's writing reads as it was written;
5. the raw stored events and snapshots hold no one's token (all personal data is
   sealed), and an erased person's data key is gone;
6. at teardown, the read models (caught up after each erasure and at the end) equal a
   rebuild from scratch.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, ClassVar
from uuid import UUID

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test

from aggregates.booking import Booking, BookingStatus
from aggregates.erasure import HOST_ERASED_REASON
from aggregates.errors import DomainError, ErasureBlocked
from aggregates.kitchen import Kitchen
from aggregates.policies import format_money
from aggregates.user import EmailClaim, User
from commands.bookings import CancelBooking, DeclineBooking
from commands.context import Actor, CommandContext
from commands.erasure import EraseMe, EraseUser, ErasureState
from commands.payouts import RequestPayout, SetPayoutDestination
from commands.processor import Executed
from commands.profile import ChangeProfile
from commands.top_ups import RequestTopUp
from commands.users import CreateUser, RegisterUser
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.replay import replay_aggregate
from projections import PROJECTIONS
from projections.accounts import AccountsProjection
from projections.generations import ensure_ready, request_rebuild
from projections.runners import ProjectionRunner
from queries.accounts import AccountQueries
from queries.base import PageRequest, Viewer
from tests.commands.erasure_leads import CaughtUpLeads
from tests.properties.conftest import StoreFactory
from tests.properties.ledger import NOTIFICATIONS_PAGE_SIZE, LedgerFold
from tests.properties.test_marketplace_machine import (
    CUSTOMERS_MAX,
    HOSTS,
    PAYOUT_DESTINATIONS,
    SUCCEEDING_PAYMENT_METHOD,
    KitchenFacts,
    MarketplaceMachine,
)
from tests.properties.test_read_models_replay import dump
from tests.support import (
    PASSWORD,
    as_actor,
    deliver_payment_notifications,
    publish_compliant_kitchen,
    store_settings,
)

ERASURE_EXAMPLES = {"sqlite": 25, "postgres": 8}
"""Each example ends in a rebuild of every read model; on PostgreSQL each makes and
drops two databases besides."""
ERASURE_STEPS = 50
FIRST_NAMES = ("Ada", "Bruno", "Chioma", "Dmitri", "Esperanza", "Farida", "Goran", "Hana")
WRONG_PASSWORD = "not the password at all"
BUDGETS = {
    "profile change": 4,
    "self-erasure": 5,
    "admin erasure": 2,
    "taken email": 2,
    "snapshot": 3,
}
"""How many times an example takes each kind of step at most: Hypothesis picks some
rules far more often than others, and these cheap ones would crowd out the bookings
(an admin's erasure ends a person's part in the example: a few, not every other step)."""
BOOKINGS_BEFORE_ERASURE = 2
"""Erasures wait for some bookings, to find some of them open."""
WHO = st.integers(0, HOSTS + CUSTOMERS_MAX - 1)
"""A host or customer slot (modulo how many there are)."""
TRIAL_BALANCE_PAGE = 100


def token_of(number: int) -> str:
    """What everything person ``number`` writes holds: letters no ciphertext spells by
    chance (ten of them, in any case), and the number."""
    return f"zyqxwv{number:04d}"


@dataclass
class Person:
    actor: Actor
    number: int
    email: str
    full_name: str
    erased: bool = False
    changes: int = 0
    emails: list[str] = field(default_factory=list)
    """Every email they held, the current one last."""

    def __post_init__(self) -> None:
        self.emails.append(self.email)

    @property
    def token(self) -> str:
        return token_of(self.number)

    @property
    def first_name(self) -> str:
        return FIRST_NAMES[self.number % len(FIRST_NAMES)]


@dataclass(frozen=True)
class Written:
    """A field of a stored event that held what ``author`` wrote, as first read."""

    name: str
    value: str
    author: UUID


class AuthoredLedgerFold(LedgerFold):
    """The ledger fold, noting besides, as each event is first read, which of its
    fields hold what a person of the machine wrote (a string the machine made for
    them)."""

    def __init__(self, commission_basis_points: int, authors: dict[str, UUID]) -> None:
        super().__init__(commission_basis_points)
        self.authors = authors
        self.written: dict[tuple[UUID, int], list[Written]] = {}

    def _apply(self, event: object) -> None:
        fields = [
            Written(name, value, self.authors[value])
            for name in type(event).model_fields  # type: ignore[attr-defined]
            if isinstance(value := getattr(event, name), str) and value in self.authors
        ]
        if fields:
            key = (event.originator_id, event.originator_version)  # type: ignore[attr-defined]
            self.written[key] = fields
        super()._apply(event)


@dataclass(frozen=True)
class Money:
    """Everything an erasure must leave as it was."""

    system_balances: tuple[int, ...]
    accounts: dict[UUID, tuple[int, int, int, tuple[tuple[str, int], ...]]]
    bookings: dict[UUID, tuple[Any, ...]]
    trial_balance: tuple[int, frozenset[tuple[UUID, int]]]


def strings_in(value: Any) -> Iterator[str]:
    """Every string in ``value``, at any depth (dict keys too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from strings_in(item)


def within_budget(kind: str, *, after_bookings: int = 0) -> Callable[[Any], bool]:
    """A precondition: the marketplace is open, has had ``after_bookings`` bookings,
    and the example has taken fewer than its budget of ``kind`` steps."""

    def allowed(machine: Any) -> bool:
        return (
            machine.admin is not None
            and len(machine.booking_ids) >= after_bookings
            and machine.spent[kind] < BUDGETS[kind]
        )

    return allowed


class ErasureMachine(MarketplaceMachine):
    stores: ClassVar[StoreFactory]

    def __init__(self) -> None:
        self.people: dict[UUID, Person] = {}
        self.authors: dict[str, UUID] = {}
        """Each string the machine wrote for a person, and whose it is (an email: whose
        it is now)."""
        self.numbers = itertools.count()
        self.former: list[Actor] = []
        """Erased people whose slot someone else took: their accounts still count."""
        self.retired_kitchens: list[KitchenFacts] = []
        self.erasures = 0
        self.checked_erasures = 0
        self.spent: Counter[str] = Counter()
        self.snapshot_versions: dict[UUID, int] = {}
        super().__init__()
        self.ledger = AuthoredLedgerFold(
            self.runtime.settings.commission_basis_points, self.authors
        )
        self.read_side: ReadSide = open_read_side(store_settings(self.url))
        self.leads = CaughtUpLeads(self.runtime.app, self.read_side)

    def teardown(self) -> None:
        try:
            if self.admin is not None:
                self._check_forgotten()
                self._compare_read_models_with_a_rebuild()
        finally:
            self.read_side.close()
            super().teardown()

    # --- the marketplace's hooks ---------------------------------------------------------

    @property
    def users(self) -> list[Actor]:
        return [*super().users, *self.former]

    def _make_user(self, role: str, label: str) -> Actor:
        return self._register(role)

    def _notes_of(self, customer: Actor) -> str:
        return self._write(customer, "{token} brings a pastry sheeter")

    def _reason_of(self, actor: Actor, action: str) -> str | None:
        if action == "decline":
            return self._write(actor, "{token} has the oven serviced that day")
        return self._write(actor, "{Token} has the flu")

    def _refused_outright(self, actor: Actor) -> set[str]:
        return {"user_erased"} if self.people[actor.user_id].erased else set()

    def _refused_to_reinstate(self, facts: KitchenFacts) -> set[str]:
        """An erased host's kitchen stays off the market."""
        return {"host_erased"} if self.people[facts.host.user_id].erased else set()

    def _attempt(
        self,
        action: str,
        refusals: set[str],
        call: Callable[[], Executed[Any]],
        *,
        by: Actor,
    ) -> Any:
        result = super()._attempt(action, refusals, call, by=by)
        if result is not None:
            self._check_answer(action, result)
        return result

    def _kitchen_facts(self, kitchen_id: UUID) -> KitchenFacts:
        return next(k for k in [*self.kitchens, *self.retired_kitchens] if k.id == kitchen_id)

    # --- people ------------------------------------------------------------------------

    def _write(self, actor: Actor, template: str) -> str:
        """What ``actor`` writes (from ``template``), noted as theirs."""
        token = self.people[actor.user_id].token
        text = template.format(token=token, Token=token.title())
        self.authors[text] = actor.user_id
        return text

    def _register(self, role: str, email: str | None = None) -> Actor:
        number = next(self.numbers)
        token = token_of(number)
        first = FIRST_NAMES[number % len(FIRST_NAMES)]
        email = email or f"{first.lower()}.{token}@example.com"
        full_name = f"{first} {token.title()}"
        fields = {"email": email, "password": PASSWORD, "full_name": full_name, "role": role}
        users = self.runtime.commands.users
        anonymous = CommandContext(actor=None)
        if role in ("customer", "host"):
            created = users.register_user(RegisterUser.model_validate(fields), anonymous)
        else:
            created = users.create_user(CreateUser.model_validate(fields), anonymous)
        state = created.result
        assert (state.email, state.full_name, state.role) == (email, full_name, role), state
        actor = Actor(user_id=state.id, role=role)
        self.people[state.id] = Person(actor, number, email, full_name)
        self.authors[email] = state.id
        self.authors[full_name] = state.id
        return actor

    def _slots(self) -> list[Actor]:
        return [*self.hosts, *self.customers]

    def _person_at(self, which: int) -> Person:
        slots = self._slots()
        return self.people[slots[which % len(slots)].user_id]

    def _living(self) -> list[Person]:
        return [person for person in self.people.values() if not person.erased]

    def _erased_people(self) -> list[Person]:
        return [person for person in self.people.values() if person.erased]

    def _living_emails(self) -> set[str]:
        """Every email a living person holds or held (their events keep it)."""
        return {email for person in self._living() for email in person.emails}

    def _erased_tokens_in(self, text: str) -> list[str]:
        """The erased people's tokens in ``text`` (lower-cased), once every email a
        living person held is taken out of it: one may have registered an erased
        person's email again."""
        text = text.lower()
        for email in self._living_emails():
            text = text.replace(email, "")
        return [person.token for person in self._erased_people() if person.token in text]

    def _check_answer(self, action: str, result: Any) -> None:
        """A command's answer holds nothing of an erased person."""
        dumped = result.model_dump(mode="json") if hasattr(result, "model_dump") else result
        found = self._erased_tokens_in(repr(dumped))
        assert not found, f"the answer to {action} holds what erased {found} wrote: {dumped}"

    # --- what an erasure must not change -------------------------------------------------

    def _catch_up_read_models(self) -> None:
        for projection_class in PROJECTIONS:
            ensure_ready(self.read_side.write_database, projection_class)
            ProjectionRunner(
                projection_class, self.runtime.app, self.read_side.write_database
            ).catch_up()

    def _trial_balance(self) -> tuple[int, frozenset[tuple[UUID, int]]]:
        database = self.read_side.write_database
        ensure_ready(database, AccountsProjection)
        ProjectionRunner(AccountsProjection, self.runtime.app, database).catch_up()
        assert self.admin is not None
        queries = AccountQueries(self.read_side.query_database)
        viewer = Viewer(user_id=self.admin.user_id, role="admin")
        lines: set[tuple[UUID, int]] = set()
        total = 0
        for offset in itertools.count(0, TRIAL_BALANCE_PAGE):
            page = queries.trial_balance(
                viewer, PageRequest(limit=TRIAL_BALANCE_PAGE, offset=offset)
            )
            lines |= {(line.account_id, line.balance_cents) for line in page.lines}
            total = page.total_cents
            if offset + TRIAL_BALANCE_PAGE >= page.accounts_total:
                break
        return total, frozenset(lines)

    def _money(self) -> Money:
        observation = self._observe()
        ledger = self.ledger
        return Money(
            system_balances=(
                ledger.payments_balance_cents,
                ledger.payments_in_cents,
                ledger.payouts_in_transit_cents,
                ledger.payments_out_cents,
                ledger.platform_revenue_cents,
            ),
            accounts={
                owner: (
                    account.balance_cents,
                    account.held_cents,
                    account.available_cents,
                    tuple(sorted(account.holds.items())),
                )
                for owner, account in observation.accounts.items()
            },
            bookings={
                booking.id: (
                    booking.status,
                    booking.start_time,
                    booking.end_time,
                    booking.price_cents,
                    booking.captured_cents,
                    booking.released_cents,
                    booking.customer_id,
                    booking.host_id,
                )
                for booking in observation.bookings.values()
            },
            trial_balance=self._trial_balance(),
        )

    # --- what blocks an erasure ------------------------------------------------------------

    def _open_for(self, person: Person) -> list[dict[str, str]]:
        """What the model says blocks ``person``'s erasure, money first."""
        account = self._account(person.actor.user_id)
        blockers: list[dict[str, str]] = []
        if account.balance_cents or account.held_cents:
            blockers.append(
                {
                    "kind": "balance",
                    "available": format_money(account.available_cents),
                    "held": format_money(account.held_cents),
                }
            )
        for booking in self._observe().bookings.values():
            if not booking.is_active:
                continue
            if person.actor.user_id in (booking.customer_id, booking.host_id):
                role = "customer" if booking.customer_id == person.actor.user_id else "host"
                blockers.append(
                    {
                        "kind": "booking",
                        "id": str(booking.id),
                        "as": role,
                        "status": str(booking.status),
                    }
                )
        return blockers

    @staticmethod
    def _in_order(blockers: list[dict[str, str]]) -> list[dict[str, str]]:
        """Money first, then the rest in a stable order (the handler lists holds in the
        account's order)."""
        return sorted(blockers, key=lambda b: (b["kind"] != "balance", b["kind"], b.get("id", "")))

    def _kitchens_leaving_with(self, person: Person) -> set[UUID]:
        return {
            facts.id
            for facts in [*self.kitchens, *self.retired_kitchens]
            if facts.host.user_id == person.actor.user_id
            and self._get(facts.id).status in ("published", "pending_review")
        }

    def _erase(
        self,
        action: str,
        person: Person,
        call: Callable[[], Executed[ErasureState]],
        *,
        refusal: str | None,
        blockers: list[dict[str, str]],
        force: bool = False,
    ) -> ErasureState | None:
        """Run an erasure: refused with ``refusal``; else refused naming ``blockers``
        unless ``force``; else done. No money moves either way, but for the bookings a
        forced erasure settles: each of the person's active bookings cancelled, its
        whole hold released to its customer (see :meth:`_settled`)."""
        money = self._money()
        position = self.runtime.app.position()
        leaving = self._kitchens_leaving_with(person)
        refused: DomainError | None = None
        try:
            executed = call()
        except DomainError as error:
            refused = error
        result: ErasureState | None = None
        if isinstance(refused, ErasureBlocked):
            assert refusal is None and blockers and not force, (action, refused.code, blockers)
            named = refused.blockers
            assert self._in_order(named) == self._in_order(blockers), (named, blockers)
            if blockers[0]["kind"] == "balance":
                assert named[0] == blockers[0], "money is named first"
            assert refused.blockers_total == len(blockers)
            assert self.runtime.app.position() == position, f"a refused {action} appended"
            event(f"{action}: blocked by {', '.join(sorted({b['kind'] for b in blockers}))}")
        elif refused is not None:
            assert refused.code == refusal, (action, refused.code, refused.detail, blockers)
            assert self.runtime.app.position() == position, f"a refused {action} appended"
            event(f"{action}: refused ({refused.code})")
        else:
            assert refusal is None, f"{action} erased {person.actor}, expected {refusal}"
            assert force or not blockers, f"{action} went past {blockers}"
            result = executed.result
            assert result.id == person.actor.user_id
            assert result.forced == bool(blockers), result
            assert self._in_order(result.blockers) == self._in_order(blockers), result
            assert set(result.kitchens_withdrawn) == leaving, (result, leaving)
            money = self._settled(money, person, result)
            self._erased(person, result)
            event(f"{action}: done{' (forced)' if result.forced else ''}")
            if result.bookings_settled:
                event(f"{action}: settled bookings")
        assert self._money() == money, f"{action} moved money"
        return result

    def _settled(self, money: Money, person: Person, result: ErasureState) -> Money:
        """``money`` as a forced erasure of ``person`` leaves it: every booking of theirs
        that was active (the answer lists each) cancelled, nothing captured, its whole
        hold released once to its customer; no balance, system account or trial
        balance line moves."""
        user_id = person.actor.user_id
        accounts = dict(money.accounts)
        bookings = dict(money.bookings)
        expected = []
        for booking_id, figures in money.bookings.items():
            status, start, end, price, _, _, customer_id, host_id = figures
            if status not in ("pending", "confirmed") or user_id not in (customer_id, host_id):
                continue
            expected.append(
                {
                    "id": str(booking_id),
                    "as": "customer" if customer_id == user_id else "host",
                    "was": str(status),
                    "released": format_money(price),
                }
            )
            bookings[booking_id] = (
                BookingStatus.CANCELLED,
                start,
                end,
                price,
                0,
                price,
                customer_id,
                host_id,
            )
            balance, held, available, holds = accounts[customer_id]
            assert dict(holds)[str(booking_id)] == price, (booking_id, holds)
            accounts[customer_id] = (
                balance,
                held - price,
                available + price,
                tuple(hold for hold in holds if hold[0] != str(booking_id)),
            )
        key = itemgetter("id")
        assert sorted(result.bookings_settled, key=key) == sorted(expected, key=key), (
            result.bookings_settled,
            expected,
        )
        for settled in result.bookings_settled:
            last = self.runtime.app.events.get(UUID(settled["id"]), desc=True, limit=1)
            (cancelled,) = list(last)
            assert isinstance(cancelled, Booking.BookingCancelled), cancelled
            assert cancelled.cancelled_by_role == "admin", cancelled
        return replace(money, accounts=accounts, bookings=bookings)

    def _erased(self, person: Person, result: ErasureState) -> None:
        person.erased = True
        self.erasures += 1
        app = self.runtime.app
        user_id = person.actor.user_id
        assert app.personal_data_destroyed(user_id), "the data key outlived the erasure"
        claim = app.repository.get(
            EmailClaim.create_id(email_digest=app.email_digest(person.email))
        )
        assert isinstance(claim, EmailClaim) and claim.holder is None, "the email is still held"
        for kitchen_id in result.kitchens_withdrawn:
            kitchen = self._get(kitchen_id)
            assert isinstance(kitchen, Kitchen)
            assert kitchen.status in ("suspended", "rejected"), kitchen.status
            assert kitchen.status_reason == HOST_ERASED_REASON, kitchen.status_reason

    # --- rules: people --------------------------------------------------------------------

    @rule()
    @precondition(lambda self: self.admin is not None and len(self.customers) < CUSTOMERS_MAX)
    def register_customer(self) -> None:
        self.customers.append(self._register("customer"))
        event("register")

    @rule(who=WHO, shout=st.booleans())
    @precondition(within_budget("taken email"))
    def register_a_taken_email(self, who: int, shout: bool) -> None:
        """A living person's email, in any case, is refused to anyone else."""
        self.spent["taken email"] += 1
        person = self._person_at(who)
        if person.erased:
            return
        position = self.runtime.app.position()
        email = person.email.upper() if shout else person.email
        refused: DomainError | None = None
        try:
            self.runtime.commands.users.register_user(
                RegisterUser(email=email, password=PASSWORD, full_name="Someone Else", role="host"),
                CommandContext(actor=None),
            )
        except DomainError as error:
            refused = error
        assert refused is not None, f"{email} was registered twice"
        assert refused.code == "email_taken", refused
        assert self.runtime.app.position() == position

    @rule(who=WHO)
    @precondition(lambda self: any(self.people[a.user_id].erased for a in self._slots()))
    def register_an_erased_email_again(self, who: int) -> None:
        """Someone new registers an erased person's email, in their slot (a host gets
        the slot's payout destination and the erased host's kitchens anew)."""
        erased = [a for a in self._slots() if self.people[a.user_id].erased]
        gone = erased[who % len(erased)]
        person = self.people[gone.user_id]
        newcomer = self._register(gone.role, email=person.email)
        assert newcomer.user_id != gone.user_id
        self.former.append(gone)
        if gone.role == "host":
            slot = self.hosts.index(gone)
            self.hosts[slot] = newcomer
            self.runtime.commands.payouts.set_payout_destination(
                SetPayoutDestination(destination=PAYOUT_DESTINATIONS[slot]), as_actor(newcomer)
            )
            self._reopen_kitchens(gone, newcomer)
        else:
            self.customers[self.customers.index(gone)] = newcomer
        event(f"register an erased {gone.role}'s email again")

    def _reopen_kitchens(self, gone: Actor, newcomer: Actor) -> None:
        assert self.admin is not None
        for n, facts in enumerate(self.kitchens):
            if facts.host != gone:
                continue
            kitchen_id = publish_compliant_kitchen(
                self.runtime,
                newcomer,
                self.admin,
                jurisdiction=facts.jurisdiction,
                hourly_rate_cents=facts.hourly_rate_cents,
                capacity=facts.capacity,
                instant_book=facts.instant_book,
            )
            self.retired_kitchens.append(facts)
            self.kitchens[n] = KitchenFacts(
                kitchen_id,
                facts.jurisdiction,
                facts.hourly_rate_cents,
                facts.capacity,
                facts.instant_book,
                newcomer,
            )

    @rule(who=WHO)
    @precondition(within_budget("profile change"))
    def change_name(self, who: int) -> None:
        self.spent["profile change"] += 1
        person = self._person_at(who)
        person.changes += 1
        full_name = f"{person.first_name} {person.token.title()} {person.changes}"
        state = self._attempt(
            "change name",
            set(),
            lambda: self.runtime.commands.profile.change_profile(
                ChangeProfile(full_name=full_name), as_actor(person.actor)
            ),
            by=person.actor,
        )
        if state is not None:
            assert (state.full_name, state.email) == (full_name, person.email), state
            person.full_name = full_name
            self.authors[full_name] = person.actor.user_id

    @rule(
        who=WHO,
        how=st.sampled_from(["password", "password", "no password", "wrong password", "taken"]),
    )
    @precondition(within_budget("profile change"))
    def change_email(self, who: int, how: str) -> None:
        self.spent["profile change"] += 1
        person = self._person_at(who)
        person.changes += 1
        email = f"{person.token}.{person.changes}@example.org"
        refusals = {
            "password": set(),
            "no password": {"current_password_required"},
            "wrong password": {"wrong_password"},
            "taken": {"email_taken"},
        }[how]
        if how == "taken":
            others = [p.email for p in self._living() if p is not person]
            email = others[person.changes % len(others)]
        password = {"password": PASSWORD, "taken": PASSWORD, "wrong password": WRONG_PASSWORD}
        state = self._attempt(
            f"change email ({how})",
            refusals,
            lambda: self.runtime.commands.profile.change_profile(
                ChangeProfile(email=email, current_password=password.get(how)),
                as_actor(person.actor),
            ),
            by=person.actor,
        )
        if state is not None:
            assert (state.email, state.full_name) == (email, person.full_name), state
            app = self.runtime.app
            old = app.repository.get(
                EmailClaim.create_id(email_digest=app.email_digest(person.email))
            )
            assert isinstance(old, EmailClaim) and old.holder is None, "the old email stays held"
            person.email = email
            person.emails.append(email)
            self.authors[email] = person.actor.user_id

    # --- rules: erasures ------------------------------------------------------------------

    def _erase_me(
        self,
        person: Person,
        *,
        wrong_password: bool = False,
        also_open: list[dict[str, str]] | None = None,
    ) -> ErasureState | None:
        refusal = None
        blockers: list[dict[str, str]] = []
        if person.erased:
            refusal = "user_erased"
        elif wrong_password:
            refusal = "wrong_password"
        else:
            blockers = [*self._open_for(person), *(also_open or [])]
        return self._erase(
            "erase me",
            person,
            lambda: self.runtime.commands.erasure.erase_me(
                EraseMe(password=WRONG_PASSWORD if wrong_password else PASSWORD),
                as_actor(person.actor),
                self.leads,
            ),
            refusal=refusal,
            blockers=blockers,
        )

    @rule(who=WHO, wrong_password=st.sampled_from([False, False, False, True]))
    @precondition(within_budget("self-erasure", after_bookings=BOOKINGS_BEFORE_ERASURE))
    def erase_me(self, who: int, wrong_password: bool) -> None:
        """A person asks to be forgotten: refused while anything of theirs is open."""
        self.spent["self-erasure"] += 1
        self._erase_me(self._person_at(who), wrong_password=wrong_password)

    @rule(who=WHO, before_it_arrives=st.booleans())
    @precondition(within_budget("self-erasure", after_bookings=BOOKINGS_BEFORE_ERASURE))
    def settle_up_and_erase_me(self, who: int, before_it_arrives: bool) -> None:
        """A person ends what they can of their bookings (a customer cancels those not
        started, a host declines or cancels them), takes out what is available (a
        customer back to their cards, a host to their bank) and asks to be forgotten —
        with ``before_it_arrives``, once before the provider's notifications arrive
        (what it has not paid blocks; the sandbox here pays at once, so the person may
        be erased with money still recorded in transit), then again once they have
        (a failing destination returns the money). Bookings under way still block."""
        self.spent["self-erasure"] += 1
        person = self._person_at(who)
        actor = person.actor
        if not person.erased:
            self._end_bookings_of(actor)
        available = 0 if person.erased else self._account(actor.user_id).available_cents
        if available:
            payouts = self.runtime.commands.payouts
            request = RequestPayout(amount_cents=available)
            if actor.role == "customer":
                requested = payouts.request_withdrawal(request, as_actor(actor)).result
            else:
                requested = payouts.request_payout(request, as_actor(actor)).result
            self._check_answer("settle up", requested)
            if before_it_arrives:
                kind = "withdrawal" if actor.role == "customer" else "payout"
                on_its_way = [
                    {
                        "kind": kind,
                        "id": str(payout.id),
                        "amount": format_money(payout.amount_cents),
                    }
                    for payout in requested.payouts
                    if payout.status == "pending"
                ]
                self._erase_me(person, also_open=on_its_way)
            deliver_payment_notifications(self.runtime)
        self._erase_me(person)

    def _end_bookings_of(self, actor: Actor) -> None:
        bookings = self.runtime.commands.bookings
        for booking in list(self._observe().bookings.values()):
            if not booking.is_active or booking.start_time <= self.now:
                continue
            if booking.customer_id == actor.user_id:
                action, call = (
                    "cancel by customer",
                    lambda b=booking: bookings.cancel_booking(
                        CancelBooking(booking_id=b.id, reason=self._reason_of(actor, "cancel")),
                        as_actor(actor),
                    ),
                )
            elif booking.host_id != actor.user_id:
                continue
            elif booking.status == "pending":
                action, call = (
                    "decline",
                    lambda b=booking: bookings.decline_booking(
                        DeclineBooking(booking_id=b.id, reason=self._reason_of(actor, "decline")),
                        as_actor(actor),
                    ),
                )
            else:
                action, call = (
                    "cancel by host",
                    lambda b=booking: bookings.cancel_booking(
                        CancelBooking(booking_id=b.id, reason=self._reason_of(actor, "cancel")),
                        as_actor(actor),
                    ),
                )
            self._attempt(f"{action} to leave", set(), call, by=actor)
            assert self._booking(booking.id).status in ("cancelled", "declined")

    @rule(who=WHO)
    @precondition(within_budget("self-erasure", after_bookings=BOOKINGS_BEFORE_ERASURE))
    def erase_me_while_paying(self, who: int) -> None:
        """A customer asks to be forgotten while a top-up of theirs is being paid: the
        top-up blocks it; then the payment arrives."""
        self.spent["self-erasure"] += 1
        person = self._person_at(who)
        if person.erased or person.actor.role != "customer":
            return
        started = self.runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=12_345, payment_method=SUCCEEDING_PAYMENT_METHOD),
            as_actor(person.actor),
        ).result
        top_up = {
            "kind": "top_up",
            "id": str(started.id),
            "amount": format_money(started.amount_cents),
            "status": str(started.status),
        }
        self._erase_me(person, also_open=[top_up])
        deliver_payment_notifications(self.runtime)

    @rule(who=WHO, force=st.sampled_from([True, True, False]))
    @precondition(within_budget("admin erasure", after_bookings=1))
    def erase_by_an_admin(self, who: int, force: bool) -> None:
        """An admin erases a person, saying why; forced, past whatever is open."""
        assert self.admin is not None
        person = self._person_at(who)
        self.spent["admin erasure"] += 1
        command = EraseUser(
            user_id=person.actor.user_id,
            reason=f"asked to be forgotten by letter, ticket {self.spent['admin erasure']}",
            force=force,
        )
        admin = as_actor(self.admin)
        self._erase(
            "erase by an admin",
            person,
            lambda: self.runtime.commands.erasure.erase_user(command, admin, self.leads),
            refusal="user_not_found" if person.erased else None,
            blockers=[] if person.erased else self._open_for(person),
            force=force,
        )

    @rule(who=WHO)
    @precondition(within_budget("snapshot"))
    def take_a_snapshot(self, who: int) -> None:
        """Snapshots seal the user's personal attributes, and forget them with the key."""
        self.spent["snapshot"] += 1
        user_id = self._person_at(who).actor.user_id
        version = self._get(user_id).version
        if self.snapshot_versions.get(user_id) == version:
            return
        self.runtime.app.take_snapshot(user_id)
        self.snapshot_versions[user_id] = version
        event("snapshot")

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def erased_people_stay_forgotten(self) -> None:
        """After every erasure, everything (4. and 5.); after every other step, their
        users and bookings as time travel shows them."""
        if self.admin is None:
            return
        if self.checked_erasures != self.erasures:
            self._check_forgotten()
            self.checked_erasures = self.erasures
            return
        self._check_time_travel()

    def _check_time_travel(self) -> None:
        app = self.runtime.app
        erased = {person.actor.user_id for person in self._erased_people()}
        for user_id in erased:
            replayed = replay_aggregate(app, user_id)
            state = replayed.state
            assert (state["email"], state["full_name"]) == (None, None), state
            assert replayed.erased and {"email", "full_name"} <= set(replayed.erased_fields)
            found = self._erased_tokens_in(replayed.model_dump_json())
            assert not found, f"time travel of {user_id} shows {found}"
        for booking in self._observe().bookings.values():
            if booking.customer_id in erased:
                replayed = replay_aggregate(app, booking.id)
                assert replayed.state["notes"] is None, replayed.state
                found = self._erased_tokens_in(replayed.model_dump_json())
                assert not found, f"time travel of booking {booking.id} shows {found}"

    def _check_forgotten(self) -> None:
        self._observe()  # every event read once, while its author's key was there
        self._check_time_travel()
        app = self.runtime.app
        erased = {person.actor.user_id for person in self._erased_people()}
        for user_id in erased:
            assert app.personal_data_destroyed(user_id)
        every_token = [person.token for person in self.people.values()]
        position = 0
        while True:
            notifications = app.recorder.select_notifications(
                start=position + 1, limit=NOTIFICATIONS_PAGE_SIZE
            )
            for notification in notifications:
                raw = bytes(notification.state).lower()
                for token in every_token:
                    assert token.encode() not in raw, f"event {notification.id} holds {token}"
                self._check_decoded(app.mapper.to_domain_event(notification), erased)
                position = notification.id
            if len(notifications) < NOTIFICATIONS_PAGE_SIZE:
                break
        assert app.snapshots is not None
        for user_id in self.people:
            for snapshot in app.snapshots.recorder.select_events(user_id):
                raw = bytes(snapshot.state).lower()
                for token in every_token:
                    assert token.encode() not in raw, f"a snapshot of {user_id} holds {token}"
            user = app.repository.get(user_id)
            assert isinstance(user, User)
            if user_id in erased:
                assert user.erased
                assert (user.email, user.full_name, user.password_hash) == (None, None, None)
            else:
                person = self.people[user_id]
                assert (user.email, user.full_name) == (person.email, person.full_name)
        self._catch_up_read_models()
        rows = repr([dump(self.read_side.write_database, p) for p in PROJECTIONS])
        found = self._erased_tokens_in(rows)
        assert not found, f"the read models keep what erased {found} wrote"
        for person in self._living():
            assert person.full_name in rows, f"the read models lost {person.full_name}"

    def _check_decoded(self, decoded: Any, erased: set[UUID]) -> None:
        key = (decoded.originator_id, decoded.originator_version)
        for name in decoded.erased_fields:
            assert getattr(decoded, name) is None, (key, name)
        for written in self.ledger.written.get(key, []):
            value = getattr(decoded, written.name)
            if written.author in erased:
                assert value is None, f"{type(decoded).__name__}.{written.name} reads {value!r}"
                assert written.name in decoded.erased_fields, (key, written)
            else:
                assert value == written.value, f"{type(decoded).__name__} lost {written}"
        found = self._erased_tokens_in(repr(list(strings_in(decoded.model_dump()))))
        assert not found, f"{type(decoded).__name__} {key} still reads as {found} wrote it"

    def _compare_read_models_with_a_rebuild(self) -> None:
        self._catch_up_read_models()
        scratch_url = self.stores.create()
        scratch = open_read_side(store_settings(scratch_url))
        try:
            for projection_class in PROJECTIONS:
                request_rebuild(scratch.write_database, projection_class)
                ProjectionRunner(
                    projection_class, self.runtime.app, scratch.write_database
                ).catch_up()
                incremental = dump(self.read_side.write_database, projection_class)
                rebuilt = dump(scratch.write_database, projection_class)
                assert incremental == rebuilt, f"{projection_class.name} differs from a rebuild"
        finally:
            scratch.close()
            self.stores.dispose(scratch_url)


def test_erasures_keep_every_invariant(fresh_stores: StoreFactory) -> None:
    machine = type(
        f"ErasureMachineOn{fresh_stores.backend.title()}",
        (ErasureMachine,),
        {"stores": fresh_stores},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            settings.get_profile(settings._current_profile or "default"),
            max_examples=ERASURE_EXAMPLES[fresh_stores.backend],
            stateful_step_count=ERASURE_STEPS,
        ),
    )
