"""Demo data: a small, realistic marketplace in Los Angeles and San Francisco.

Everything goes through the command handlers, exactly as API requests would: users,
top-ups through the sandbox payment provider, kitchens and their certificates,
moderation, bookings and their whole lifecycle, a sweep, a payout and a withdrawal to a
card. Nothing writes rows directly, so the demo's history is a real history: the audit
trail, replays and projections show what a live system would.

Bookings that are over (completed, expired, cancelled) need time to pass, and the rules
refuse a booking that starts in the past. So the scenario runs on its own clock: it
starts ten days ago, moves forward as the story goes, and ends at the real present,
where it leaves pending and confirmed bookings in the coming days. (Event timestamps are
stamped by the event store when each command commits, not by this clock.)

Operating hours are local (America/Los_Angeles for both cities); every window below is
written in local time and converted, so the demo stays valid across daylight saving.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from aggregates.booking import BOOKING_STATUSES, Booking
from aggregates.errors import EmailTaken
from aggregates.kitchen import KITCHEN_STATUSES, Kitchen
from aggregates.policies import format_money
from commands.bookings import (
    BookingAction,
    BookingState,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
    RescheduleBooking,
)
from commands.context import Actor, CommandContext
from commands.kitchens import (
    AttachCertificate,
    CertificateAction,
    CreateKitchen,
    KitchenAction,
    KitchenActionWithReason,
)
from commands.payouts import RequestPayout, SetPayoutDestination
from commands.sweeper import SweepReport
from commands.top_ups import RequestTopUp
from commands.users import CreateUser, PasswordHashing
from prep_es.demo_cast import (
    CERTIFICATE_NUMBER_PREFIX,
    CITY_PREFIX,
    DEMO_KITCHENS,
    DEMO_USERS,
    KitchenSpec,
)
from prep_es.services.runtime import Runtime, open_runtime
from prep_es.store.jurisdiction_rules import load_jurisdictions
from prep_es.store.settings import Settings, SettingsError

DEMO_PASSWORD: Final = "prep-demo-kitchens"
"""The one password of every demo login (demo data only: never a real deployment)."""
DEMO_EMAIL_DOMAIN: Final = "demo.prep.example"
DEMO_ADMIN_EMAIL: Final = f"admin@{DEMO_EMAIL_DOMAIN}"
DEMO_TIMEZONE_JURISDICTION: Final = "los_angeles"
SCENARIO_DAYS_BACK: Final = 10
"""The scenario's clock starts this many local days before today."""


class DemoClock:
    """The scenario's clock: stands still until the scenario moves it, never backwards."""

    def __init__(self, now: datetime) -> None:
        assert now.tzinfo is not None
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, moment: datetime) -> None:
        assert moment >= self.now, (moment, self.now)
        self.now = moment


class DemoLogin(BaseModel):
    email: str
    role: str
    full_name: str


class DemoReport(BaseModel):
    """What the demo loaded: logins, and counts read back from the event store."""

    password: str
    logins: list[DemoLogin]
    kitchens_by_status: dict[str, int]
    bookings_by_status: dict[str, int]
    top_ups_cents: int
    """Credited: confirmed by the sandbox provider."""
    payouts_cents: int
    refunds_cents: int
    sweep: SweepReport
    position: int


def load_demo(
    settings: Settings,
    *,
    now: datetime | None = None,
    passwords: PasswordHashing | None = None,
) -> DemoReport | None:
    """Load the demo into the store ``settings`` names; ``None`` if it is already there
    (the demo admin's email is taken). ``now`` is the present the scenario ends at."""
    present = (now or datetime.now(UTC)).astimezone(UTC)
    zone = load_jurisdictions(settings.jurisdictions_path).get(DEMO_TIMEZONE_JURISDICTION).zone
    today = present.astimezone(zone).date()
    start = _local(today - timedelta(days=SCENARIO_DAYS_BACK), "07:00", zone)
    clock = DemoClock(start)
    if settings.payments_provider != "sandbox":
        msg = (
            "the demo funds its customers through the sandbox payment provider: unset "
            "PREP_ES_PAYMENTS_PROVIDER"
        )
        raise SettingsError(msg)
    runtime = open_runtime(settings, clock=clock, passwords=passwords)
    try:
        scenario = _Scenario(runtime, clock, today, zone)
        try:
            scenario.create_users()
        except EmailTaken:
            return None
        return scenario.run(present)
    finally:
        runtime.close()


def _local(day: date, clock_time: str, zone: ZoneInfo) -> datetime:
    hours, minutes = (int(part) for part in clock_time.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(UTC)


@dataclass
class _Scenario:
    runtime: Runtime
    clock: DemoClock
    today: date
    zone: ZoneInfo
    actors: dict[str, Actor] = field(default_factory=dict)
    logins: list[DemoLogin] = field(default_factory=list)
    kitchens: dict[str, UUID] = field(default_factory=dict)
    booking_ids: list[UUID] = field(default_factory=list)
    top_ups_cents: int = 0
    payouts_cents: int = 0
    refunds_cents: int = 0
    sweeps: list[SweepReport] = field(default_factory=list)

    # --- helpers -------------------------------------------------------------------

    def at(self, day_offset: int, clock_time: str) -> datetime:
        """A local time ``day_offset`` days from today, in UTC."""
        return _local(self.today + timedelta(days=day_offset), clock_time, self.zone)

    def move_to(self, day_offset: int, clock_time: str) -> None:
        self.clock.move_to(self.at(day_offset, clock_time))
        self.deliver_payment_notifications()

    def deliver_payment_notifications(self) -> None:
        """What the sandbox has sent by now reaches the webhook handling, as its delivery
        thread would hand it over in a running server."""
        sandbox = self.runtime.payment_provider.sandbox
        assert sandbox is not None
        sandbox.deliver_due(self.runtime.deliver_sandbox_notification)

    def context(self, key: str | None) -> CommandContext:
        actor = None if key is None else self.actors[key]
        return CommandContext(actor=actor, request_id=f"demo-{uuid4().hex}")

    # --- people and money -------------------------------------------------------------

    def create_users(self) -> None:
        """Users first, admin first: a taken admin email means the demo is loaded."""
        users = self.runtime.commands.users
        for key, role, full_name, local_part, _ in DEMO_USERS:
            email = f"{local_part}@{DEMO_EMAIL_DOMAIN}"
            created = users.create_user(
                CreateUser(email=email, password=DEMO_PASSWORD, full_name=full_name, role=role),
                self.context(None),
            ).result
            self.actors[key] = Actor(user_id=created.id, role=role)
            self.logins.append(DemoLogin(email=created.email, role=role, full_name=full_name))

    def top_up(self, key: str, amount_cents: int, payment_method: str = "pm_card_visa") -> None:
        self.runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=amount_cents, payment_method=payment_method),
            self.context(key),
        )
        if payment_method == "pm_card_visa":
            self.top_ups_cents += amount_cents

    def top_up_all(self) -> None:
        """Every customer tops up with the sandbox's test card; one card is declined
        first, as cards are."""
        self.top_up("hannah", 80_000, "pm_card_chargeDeclined")
        for key, _, _, _, top_up_cents in DEMO_USERS:
            if top_up_cents:
                self.top_up(key, top_up_cents)

    # --- kitchens ----------------------------------------------------------------------

    def create_kitchen(self, spec: KitchenSpec) -> UUID:
        kitchen = self.runtime.commands.kitchens.create_kitchen(
            CreateKitchen(
                name=spec.name,
                description=spec.description,
                city=spec.city,
                jurisdiction=spec.jurisdiction,
                address=spec.address,
                hourly_rate_cents=spec.hourly_rate_cents,
                capacity=spec.capacity,
                amenities=list(spec.amenities),
                instant_book=spec.instant_book,
            ),
            self.context(spec.host),
        ).result
        self.kitchens[spec.key] = kitchen.id
        return kitchen.id

    def attach_certificates(
        self, spec: KitchenSpec, kinds: Iterable[str], *, expires_in_days: int = 330
    ) -> dict[str, UUID]:
        kitchens = self.runtime.commands.kitchens
        attached = {}
        for index, kind in enumerate(sorted(kinds)):
            serial = int(hashlib.sha256(f"{spec.key}/{kind}".encode()).hexdigest()[:8], 16)
            number = (
                f"{CERTIFICATE_NUMBER_PREFIX[kind]}-{CITY_PREFIX[spec.jurisdiction]}-"
                f"{self.today.year - 1}-{serial % 90_000 + 10_000}"
            )
            certificate = kitchens.attach_certificate(
                AttachCertificate(
                    kitchen_id=self.kitchens[spec.key],
                    kind=kind,
                    number=number,
                    issued_on=self.today - timedelta(days=200 + 7 * index),
                    expires_on=self.today + timedelta(days=expires_in_days + 11 * index),
                    document_sha256=hashlib.sha256(f"{spec.name}/{kind}".encode()).hexdigest(),
                ),
                self.context(spec.host),
            ).result
            attached[kind] = certificate.id
        return attached

    def verify(self, spec: KitchenSpec, certificate_ids: Iterable[UUID]) -> None:
        for certificate_id in certificate_ids:
            self.runtime.commands.kitchens.verify_certificate(
                CertificateAction(
                    kitchen_id=self.kitchens[spec.key], certificate_id=certificate_id
                ),
                self.context("admin"),
            )

    def submit(self, spec: KitchenSpec) -> None:
        self.runtime.commands.kitchens.submit_kitchen(
            KitchenAction(kitchen_id=self.kitchens[spec.key]), self.context(spec.host)
        )

    def approve(self, spec: KitchenSpec) -> None:
        self.runtime.commands.kitchens.approve_kitchen(
            KitchenAction(kitchen_id=self.kitchens[spec.key]), self.context("admin")
        )

    def create_kitchens(self) -> None:
        """Six published and compliant, one published but missing its insurance, one
        pending review, one draft, one rejected (one is suspended later on)."""
        kitchens = self.runtime.commands.kitchens
        for spec in DEMO_KITCHENS:
            self.create_kitchen(spec)
            required = self.runtime.jurisdictions.get(spec.jurisdiction).required_certificates
            if spec.key == "venice":
                attached = self.attach_certificates(spec, required - {"liability_insurance"})
                self.verify(spec, attached.values())
                self.submit(spec)
                self.approve(spec)
            elif spec.key == "soma":
                attached = self.attach_certificates(spec, required)
                self.verify(spec, [attached["health_permit"], attached["business_license"]])
                self.submit(spec)
            elif spec.key == "outersunset":
                self.attach_certificates(spec, {"health_permit", "food_handler"})
            elif spec.key == "bayview":
                attached = self.attach_certificates(spec, required)
                self.verify(
                    spec, [id_ for kind, id_ in attached.items() if kind != "fire_inspection"]
                )
                kitchens.reject_certificate(
                    CertificateAction(
                        kitchen_id=self.kitchens[spec.key],
                        certificate_id=attached["fire_inspection"],
                        reason="The inspection report names a different street address.",
                    ),
                    self.context("admin"),
                )
                self.submit(spec)
                kitchens.reject_kitchen(
                    KitchenActionWithReason(
                        kitchen_id=self.kitchens[spec.key],
                        reason="Upload a fire inspection certificate for this address, "
                        "then resubmit.",
                    ),
                    self.context("admin"),
                )
            else:
                # Dogpatch's food handler card runs out in three weeks: the admin's
                # "expiring soon" list has something to show.
                attached = self.attach_certificates(
                    spec, required, expires_in_days=21 if spec.key == "dogpatch" else 330
                )
                self.verify(spec, attached.values())
                self.submit(spec)
                self.approve(spec)

    # --- bookings ----------------------------------------------------------------------

    def book(
        self,
        customer: str,
        kitchen: str,
        day_offset: int,
        start: str,
        hours: int,
        guests: int,
        notes: str = "",
    ) -> BookingState:
        start_time = self.at(day_offset, start)
        booking = self.runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=self.kitchens[kitchen],
                start_time=start_time,
                end_time=start_time + timedelta(hours=hours),
                guests=guests,
                notes=notes,
            ),
            self.context(customer),
        ).result
        self.booking_ids.append(booking.id)
        return booking

    def confirm(self, host: str, booking: BookingState) -> None:
        self.runtime.commands.bookings.confirm_booking(
            BookingAction(booking_id=booking.id), self.context(host)
        )

    def cancel(self, who: str, booking: BookingState, reason: str) -> BookingState:
        return self.runtime.commands.bookings.cancel_booking(
            CancelBooking(booking_id=booking.id, reason=reason), self.context(who)
        ).result

    def complete(self, host: str, booking: BookingState) -> None:
        self.runtime.commands.bookings.complete_booking(
            BookingAction(booking_id=booking.id), self.context(host)
        )

    def pay_out(self) -> None:
        """A host is paid out to their bank; a customer takes money back to the card."""
        payouts = self.runtime.commands.payouts
        payouts.set_payout_destination(
            SetPayoutDestination(destination="demo-bank-maria"), self.context("maria")
        )
        payout_cents = 30_000
        payouts.request_payout(RequestPayout(amount_cents=payout_cents), self.context("maria"))
        self.payouts_cents += payout_cents
        refund_cents = 50_000
        payouts.request_withdrawal(RequestPayout(amount_cents=refund_cents), self.context("priya"))
        self.refunds_cents += refund_cents

    def sweep(self) -> SweepReport:
        report = self.runtime.commands.sweeper.sweep()
        self.sweeps.append(report)
        return report

    def run(self, present: datetime) -> DemoReport:
        """The story, in clock order. Day offsets are local days from today."""
        self.top_up_all()
        self.create_kitchens()

        # Ten days ago: requests for the week ahead.
        self.move_to(-10, "09:00")
        koreatown = self.book("diego", "koreatown", -9, "10:00", 3, 4, "Kimchi for the market")
        sunset = self.book("priya", "sunset", -8, "10:00", 4, 3, "Weekly meal prep")
        mission = self.book("marcus", "mission", -7, "07:00", 4, 5, "Breakfast burritos, 300 units")
        arts_expiring = self.book("elena", "arts", -7, "12:00", 3, 2)
        arts_declined = self.book("hannah", "arts", -6, "09:00", 3, 4, "Wedding cake tasting")
        silverlake = self.book("samuel", "silverlake", -4, "10:00", 3, 2, "Video shoot")
        dogpatch_half = self.book("lucia", "dogpatch", -5, "08:00", 4, 6, "Pasta for a dinner")
        sunset_late = self.book("priya", "sunset", -5, "14:00", 4, 3)
        dogpatch_host = self.book("marcus", "dogpatch", -3, "13:00", 4, 8, "Corporate lunch")

        self.move_to(-10, "10:00")
        self.runtime.commands.bookings.decline_booking(
            DeclineBooking(
                booking_id=arts_declined.id,
                reason="The kitchen is closed that morning for a deep clean.",
            ),
            self.context("maria"),
        )
        self.confirm("aisha", dogpatch_half)
        self.confirm("aisha", dogpatch_host)

        # Five days' notice: the customer gets everything back.
        self.move_to(-9, "09:00")
        self.cancel("samuel", silverlake, "The shoot moved to next month.")
        self.move_to(-9, "14:00")
        self.complete("maria", koreatown)
        self.move_to(-8, "15:00")
        self.complete("maria", sunset)
        # A host cancels: the customer gets everything back.
        self.move_to(-7, "09:00")
        self.cancel("aisha", dogpatch_host, "The combi oven is out for repair that day.")
        # 28 hours' notice: half is captured. 6 hours' notice: all of it.
        self.move_to(-6, "04:00")
        self.cancel("lucia", dogpatch_half, "The dinner was postponed.")
        self.move_to(-5, "08:00")
        self.cancel("priya", sunset_late, "Supplier delivery fell through.")
        # Nobody confirmed Elena's booking before it started: it expires. Marcus's
        # booking ended more than a day ago and nobody completed it: the sweeper does.
        self.move_to(-5, "12:00")
        report = self.sweep()
        assert arts_expiring.id in report.expired_booking_ids, report
        assert mission.id in report.completed_booking_ids, report

        self.move_to(-4, "09:00")
        self.runtime.commands.kitchens.suspend_kitchen(
            KitchenActionWithReason(
                kitchen_id=self.kitchens["koreatown"],
                reason="Suspended until a follow-up health inspection is on file.",
            ),
            self.context("admin"),
        )
        self.move_to(-4, "10:00")
        self.pay_out()

        # Today: the coming days' bookings, pending and confirmed.
        self.clock.move_to(present)
        self.book("elena", "arts", 3, "09:00", 4, 3, "Holiday cookie production")
        self.book("hannah", "sunset", 2, "08:00", 4, 2)
        dogpatch_upcoming = self.book("samuel", "dogpatch", 4, "10:00", 6, 12, "Gala catering")
        self.confirm("aisha", dogpatch_upcoming)
        moved = self.book("lucia", "mission", 5, "08:00", 4, 4)
        start = self.at(6, "09:00")
        self.runtime.commands.bookings.reschedule_booking(
            RescheduleBooking(
                booking_id=moved.id, start_time=start, end_time=start + timedelta(hours=5)
            ),
            self.context("lucia"),
        )
        self.book("diego", "dogpatch", 7, "07:00", 3, 4, "Fermentation workshop")
        self.book("marcus", "mission", 9, "12:00", 8, 10, "Street-fair prep")
        self.sweep()
        self.deliver_payment_notifications()
        return self.report()

    def report(self) -> DemoReport:
        repository = self.runtime.app.repository
        kitchens: list[Kitchen] = [repository.get(i) for i in self.kitchens.values()]
        bookings: list[Booking] = [repository.get(i) for i in self.booking_ids]
        assert all(isinstance(kitchen, Kitchen) for kitchen in kitchens)
        assert all(isinstance(booking, Booking) for booking in bookings)
        kitchen_statuses = Counter(kitchen.status for kitchen in kitchens)
        booking_statuses = Counter(booking.status for booking in bookings)
        return DemoReport(
            password=DEMO_PASSWORD,
            logins=self.logins,
            kitchens_by_status={s: kitchen_statuses[s] for s in KITCHEN_STATUSES},
            bookings_by_status={s: booking_statuses[s] for s in BOOKING_STATUSES},
            top_ups_cents=self.top_ups_cents,
            payouts_cents=self.payouts_cents,
            refunds_cents=self.refunds_cents,
            sweep=SweepReport(
                expired_booking_ids=[i for r in self.sweeps for i in r.expired_booking_ids],
                completed_booking_ids=[i for r in self.sweeps for i in r.completed_booking_ids],
                lapsed_certificate_ids=[i for r in self.sweeps for i in r.lapsed_certificate_ids],
            ),
            position=self.runtime.app.position(),
        )


def describe_report(report: DemoReport) -> list[str]:
    """The demo summary as lines of text, logins last."""
    kitchens = ", ".join(f"{n} {s}" for s, n in report.kitchens_by_status.items() if n)
    bookings = ", ".join(f"{n} {s}" for s, n in report.bookings_by_status.items() if n)
    roles = Counter(login.role for login in report.logins)
    width = max(len(login.email) for login in report.logins)
    lines = [
        f"Demo data loaded (event store position {report.position}).",
        "  users:    " + ", ".join(f"{n} {role}{'s' * (n != 1)}" for role, n in roles.items()),
        f"  kitchens: {sum(report.kitchens_by_status.values())} ({kitchens})",
        f"  bookings: {sum(report.bookings_by_status.values())} ({bookings})",
        f"  money:    top-ups {format_money(report.top_ups_cents)} USD (sandbox, test "
        f"mode), payouts {format_money(report.payouts_cents)} USD, refunds to cards "
        f"{format_money(report.refunds_cents)} USD",
        f"  sweeper:  expired {len(report.sweep.expired_booking_ids)}, "
        f"auto-completed {len(report.sweep.completed_booking_ids)}",
        "",
        "The admin and the analyst can also sign in to the console, at /console.",
        f"Demo logins (every one has the password {report.password!r}):",
    ]
    lines.extend(
        f"  {login.role:<9} {login.email:<{width}}  {login.full_name}" for login in report.logins
    )
    return lines
