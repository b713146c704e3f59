"""Users and the email index that keeps emails unique."""

from __future__ import annotations

import hmac
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, NoReturn
from uuid import UUID

import idna
from email_validator import EmailNotValidError, validate_email
from eventsourcing.domain import event
from pydantic import Field

from aggregates.base import Aggregate, AggregateCreated, EventMetadata, derived_id
from aggregates.common_passwords import common_password_cores, common_passwords, letter_core
from aggregates.errors import ActorNotAdmitted, EmailTaken, InvalidRequest, NotFound
from aggregates.keyboard_walks import characters_off_walks
from aggregates.personal import ORIGINATOR_SUBJECT, Personal
from aggregates.text import has_visible_character, is_blank

ROLES = ("customer", "host", "admin", "analyst")
SELF_REGISTRATION_ROLES = ("customer", "host")
PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 1024
EMAIL_LENGTH_MAX = 254
EMAIL_LOCAL_PART_OCTETS_MAX = 64
EAST_ASIAN_SCRIPTS: Final = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO"})
"""Scripts one name may mix with each other and with Latin (see :func:`mixes_scripts`)."""
FULL_NAME_LENGTH_MAX = 200
HOLDER_DIGEST_LABEL: Final = b"email-claim-holder:"
"""Prefixes a user id in the keyed hash that names an email claim's holder."""
SNAPSHOT_INTERVAL: Final = 50
"""Logouts and password changes add up over a user's life; a load replays at most this
many events after a snapshot."""
REVOKED_TOKENS_MAX: Final = 32
"""Logged-out tokens a user keeps listed until they expire. Beyond it, the earliest
issued are folded into ``tokens_revoked_through_us``: every token issued up to them is
refused too — at worst another of that user's old sessions ends early."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_microseconds(moment: datetime) -> int:
    """``moment`` in whole microseconds since the epoch (exact: no float rounding), the
    unit in which a token's issue time is compared with revocations."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def fold_email(email: str) -> str:
    """The form emails are compared in: NFKC (a fullwidth ``ａｎａ`` is ``ana``, as are
    other compatibility look-alikes), without surrounding whitespace, lower case, the
    domain in its ASCII (IDNA) form where it has one (``bücher.de`` is
    ``xn--bcher-kva.de``). Lookups of an email (login) fold it the same way."""
    folded = unicodedata.normalize("NFKC", email).strip().lower()
    local, at, domain = folded.rpartition("@")
    if not at or domain.isascii():
        return folded
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except (idna.IDNAError, UnicodeError):
        return folded  # not a domain: nothing is registered under it


def normalize_email(email: str) -> str:
    """The email a user is registered under, checked by ``email-validator`` (syntax
    only: no DNS lookup) after folding (see :func:`fold_email`); the email index keys on
    it, so emails are unique case-insensitively and look-alikes collide. Refused besides:
    a local part over :data:`EMAIL_LOCAL_PART_OCTETS_MAX` octets (RFC 5321), and a local
    part or domain label mixing scripts (``examplе`` with a Cyrillic ``е``: see
    :func:`mixes_scripts`). The domain is stored in its ASCII form, so a punycode
    spelling and its Unicode one are one email, and a whole-script look-alike
    (``аррӏе.com``, all Cyrillic) shows as the ``xn--`` name it is. An email holding a
    character that shows as nothing (``admin`` and a Hangul filler U+3164: see
    :func:`~aggregates.text.is_blank`) is refused, as a look-alike of the one without
    it; combining marks, which show on the letter before them, are allowed (Devanagari
    needs them)."""
    folded = fold_email(email)
    if len(folded) > EMAIL_LENGTH_MAX:
        raise InvalidRequest("email is too long", code="invalid_email", field="email")
    if any(map(is_blank, folded)):
        raise InvalidRequest(
            "email holds a character that shows as nothing (a look-alike of another address)",
            code="invalid_email",
            field="email",
        )
    try:
        checked = validate_email(folded, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidRequest(
            f"not an email address: {error}", code="invalid_email", field="email"
        ) from None
    local = checked.local_part.lower()
    if len(local.encode("utf-8")) > EMAIL_LOCAL_PART_OCTETS_MAX:
        raise InvalidRequest(
            f"the part before the @ has at most {EMAIL_LOCAL_PART_OCTETS_MAX} octets",
            code="invalid_email",
            field="email",
        )
    for part in (local, *checked.domain.split(".")):
        if mixes_scripts(part):
            raise InvalidRequest(
                f"{part!r} mixes letters of different scripts (a look-alike of another address)",
                code="invalid_email",
                field="email",
            )
    return f"{local}@{checked.ascii_domain.lower()}"


def _script(letter: str) -> str:
    """The script a letter belongs to, as the first word of its Unicode name (``LATIN``,
    ``CYRILLIC``, ``GREEK``, ``CJK``, ``HIRAGANA``, …)."""
    return unicodedata.name(letter, "UNNAMED").split(" ", 1)[0].split("-", 1)[0]


def mixes_scripts(text: str) -> bool:
    """Whether the letters of ``text`` come from more than one script — the mark of a
    homograph (``pаypal``: Latin with a Cyrillic ``а``). Digits, ``-``, ``.`` and other
    non-letters belong to none. As Unicode's "highly restrictive" profile (UTS #39)
    allows, Han, Hiragana, Katakana, Hangul and Bopomofo go together and with Latin
    (Japanese and Korean are written so)."""
    scripts = {
        _script(character) for character in text if unicodedata.category(character)[0] == "L"
    }
    east_asian = scripts & EAST_ASIAN_SCRIPTS
    others = scripts - EAST_ASIAN_SCRIPTS
    if east_asian:
        return not others <= {"LATIN"}
    return len(others) > 1


PREDICTABLE_RUNS: Final = (
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "1234567890-=",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertyuiop[]",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "!@#$%^&*()_+",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
    "zaq12wsxcde34rfvbgt56yhnmju78ik,.lo90p;/",
    "1qazxsw23edcvfr45tgbnhy67ujm,ki89ol./;p0",
)
"""Character orders a password must not merely run along (either way, wrapping round):
the digits and the alphabet (``123456789012``, ``zyxwvutsrqpo``), the keyboard's rows
one after another or each alone (``qwertyuiopas``, ``asdfghjklasd``), the shifted digit
row (``!@#$%^&*()_+``), and its columns, straight down or snaking up and down
(``1qaz2wsx3edc``, ``zaq12wsxcde3``)."""
PASSWORD_DISTINCT_CHARACTERS_MIN: Final = 5
PASSWORD_BEYOND_REPEATS_MIN: Final = 4
"""A password is nearly all one repeated part (``aaaaaaaaaaab``, ``abababababab1``) when
fewer characters than this are left outside its longest run of that part."""
PERSONAL_WORD_LENGTH_MIN: Final = 3
"""Shorter email local parts and names (``al``) are too short to tell apart from chance."""
PADDED_CORE_LENGTH_MIN: Final = 6
"""A listed password's letters this long or longer still show with a few letters added
(``password!2024x``); shorter ones (``love``) are parts of too many sound passphrases."""
PADDING_LETTERS_MAX: Final = 3
"""Letters added to a listed password's letters that still leave it guessable."""
REPEATED_LETTERS_MIN: Final = 6
"""Fewer letters repeating (``a9a`` in ``x7#a9a!2$4%8``) are chance, not a pattern."""


def check_password(
    password: str, *, email: str = "", full_name: str = "", field: str = "password"
) -> None:
    """NIST SP 800-63B: at least :data:`PASSWORD_LENGTH_MIN` characters, not counting
    whitespace at either end; not a listed common password, nor one with digits or
    symbols added or removed around it (``Password123!``); not nearly all a repeated
    part, a run along the keyboard, the alphabet or the digits, or fewer than
    :data:`PASSWORD_DISTINCT_CHARACTERS_MIN` different characters; and still
    :data:`PASSWORD_LENGTH_MIN` characters long without the user's email local part
    and full name, when given (context-specific words: an attacker who knows the user
    tries them first, so they count for nothing). Compared after NFKC and
    lower-casing, so ``ＰＡＳＳＷＯＲＤ1234`` is ``password1234``. Refusals name
    ``field``, the request field holding the password."""
    if len(password) > PASSWORD_LENGTH_MAX:
        raise InvalidRequest("password is too long", code="password_too_long", field=field)
    folded = unicodedata.normalize("NFKC", password).strip().lower()
    if len(folded) < PASSWORD_LENGTH_MIN:
        raise InvalidRequest(
            f"passwords have at least {PASSWORD_LENGTH_MIN} characters, not counting "
            "whitespace at either end",
            code="password_too_short",
            field=field,
        )
    letters = letters_only(folded)
    repeated, repeated_letters = _longest_letter_repeat(letters)
    # The listed passwords first, then the patterns, each as they stand, and only then
    # what the letters-only form reveals: a password gets the refusal that fits it best.
    if folded in common_passwords(PASSWORD_LENGTH_MIN) or (
        letter_core(folded) in common_password_cores()
    ):
        _refuse_as_common(field)
    if (
        len(set(folded)) < PASSWORD_DISTINCT_CHARACTERS_MIN
        or _nearly_all_repeats(folded)
        or _runs_along(folded)
    ):
        _refuse_as_predictable(field)
    if _a_listed_core_padded(letters) or repeated in common_password_cores():
        _refuse_as_common(field)
    if (
        characters_off_walks(folded) < PASSWORD_BEYOND_REPEATS_MIN
        or len(folded) - (repeated_letters - len(repeated)) < PASSWORD_LENGTH_MIN
    ):
        _refuse_as_predictable(field)
    beyond_personal = folded
    for word in _personal_words(email, full_name):
        beyond_personal = beyond_personal.replace(word, "")
    letters_beyond_personal = letters
    for word in _personal_letter_words(email, full_name):
        letters_beyond_personal = letters_beyond_personal.replace(word, "")
    personal_letters = len(letters) - len(letters_beyond_personal)
    if (beyond_personal != folded and len(beyond_personal.strip()) < PASSWORD_LENGTH_MIN) or (
        personal_letters and len(folded) - personal_letters < PASSWORD_LENGTH_MIN
    ):
        raise InvalidRequest(
            f"this password contains your email or your name; without them it needs "
            f"{PASSWORD_LENGTH_MIN} characters still; choose another",
            code="password_too_personal",
            field=field,
        )


def _personal_words(email: str, full_name: str) -> list[str]:
    """What an attacker who knows the user tries first: the email's local part and the
    full name, with and without its spaces — each folded as passwords are."""
    local = unicodedata.normalize("NFKC", email).strip().lower().rpartition("@")[0]
    name = " ".join(unicodedata.normalize("NFKC", full_name).lower().split())
    words = {local, name, name.replace(" ", "")}
    return sorted(
        (word for word in words if len(word) >= PERSONAL_WORD_LENGTH_MIN), key=len, reverse=True
    )


def _refuse_as_common(field: str) -> NoReturn:
    raise InvalidRequest(
        "this password is in a list of commonly used passwords, or is one with digits, "
        "symbols or a few letters added, spread through or repeated; choose another",
        code="password_too_common",
        field=field,
    )


def _refuse_as_predictable(field: str) -> NoReturn:
    raise InvalidRequest(
        "this password only repeats itself or runs along the keyboard, the alphabet or "
        "the digits; choose another",
        code="password_too_predictable",
        field=field,
    )


def letters_only(text: str) -> str:
    """``text`` with every character but its letters removed: ``password`` of
    ``P a s s w o r d 1 2``, ``p.a.s.s.w.o.r.d.1`` and ``pass1234word``. Separators,
    digits and symbols spread through a word hide it from a list, not from a guesser."""
    return "".join(character for character in text if character.isalpha())


def _a_listed_core_padded(letters: str) -> bool:
    """``letters`` is a listed password's letters (``password`` of ``P a s s w o r d 1 2``),
    or one of :data:`PADDED_CORE_LENGTH_MIN` letters or more with at most
    :data:`PADDING_LETTERS_MAX` letters before or after it (``passwordx`` of
    ``password!2024x``)."""
    cores = common_password_cores()
    if letters in cores:
        return True
    shortest = max(PADDED_CORE_LENGTH_MIN, len(letters) - PADDING_LETTERS_MAX)
    return any(
        letters[:length] in cores or letters[-length:] in cores
        for length in range(shortest, len(letters))
    )


def _longest_letter_repeat(letters: str) -> tuple[str, int]:
    """The part said at least twice in a row whose run covers the most of ``letters``
    beyond one saying of it, the run starting and ending at most
    :data:`PADDING_LETTERS_MAX` letters from their ends: (the part, how many letters its
    run covers) — (``password``, 16) of ``passwordpasswordx`` — or (``""``, 0). One
    prefix-function pass per start: the shortest period of every prefix of
    ``letters[start:]`` is read off it, so a check stays linear in the length."""
    part, covered = "", 0
    for start in range(min(PADDING_LETTERS_MAX, len(letters)) + 1):
        text = letters[start:]
        border = [0] * len(text)
        for index in range(1, len(text)):
            matched = border[index - 1]
            while matched and text[index] != text[matched]:
                matched = border[matched - 1]
            border[index] = matched + 1 if text[index] == text[matched] else matched
        for length in range(max(1, len(text) - PADDING_LETTERS_MAX), len(text) + 1):
            period = length - border[length - 1]
            long_enough = length >= REPEATED_LETTERS_MIN and 2 * period <= length
            if long_enough and length - period > covered - len(part):
                part, covered = text[:period], length
    return part, covered


def _personal_letter_words(email: str, full_name: str) -> list[str]:
    """The personal words as :func:`letters_only` sees them, so separators hide none
    (``maria_gonzalez_99``, ``annalopez2024`` for ``anna.lopez@…``): each word of the full
    name and of the email's local part, and the local part's letters whole, with each
    word also reversed (``zepol``) — those of :data:`PERSONAL_WORD_LENGTH_MIN` letters or
    more, longest first."""
    local = unicodedata.normalize("NFKC", email).strip().lower().rpartition("@")[0]
    name = unicodedata.normalize("NFKC", full_name).lower()
    words = {letters_only(local)}
    for text in (local, name):
        spaced = "".join(character if character.isalpha() else " " for character in text)
        words.update(spaced.split())
    words |= {word[::-1] for word in words}
    return sorted(
        (word for word in words if len(word) >= PERSONAL_WORD_LENGTH_MIN), key=len, reverse=True
    )


def _nearly_all_repeats(text: str) -> bool:
    """``aaaaaaaaaaab``, ``abababababab1``, ``kitchenkitchen``: a part said at least twice
    in a row covers all of ``text`` but fewer than :data:`PASSWORD_BEYOND_REPEATS_MIN`
    characters at its ends. (Only runs from near the start to near the end can, so a
    few slice comparisons per part length decide it.)"""
    slack = PASSWORD_BEYOND_REPEATS_MIN - 1
    length = len(text)
    for start in range(slack + 1):
        for end in range(max(start, length - slack + start), length + 1):
            run = text[start:end]
            for part in range(1, len(run) // 2 + 1):
                if run[part:] == run[:-part]:
                    return True
    return False


def _runs_along(text: str) -> bool:
    for run in PREDICTABLE_RUNS:
        laps = run * (len(text) // len(run) + 2)
        if text in laps or text in laps[::-1]:
            return True
    return False


def check_full_name(full_name: str) -> str:
    """``full_name`` stripped, if it is one."""
    full_name = full_name.strip()
    if not has_visible_character(full_name) or len(full_name) > FULL_NAME_LENGTH_MAX:
        raise InvalidRequest(
            f"full_name has 1 to {FULL_NAME_LENGTH_MAX} characters, some of them visible",
            code="invalid_full_name",
            field="full_name",
        )
    return full_name


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest(
            f"role must be one of {', '.join(ROLES)}, not {role!r}", code="invalid_role"
        )


@dataclass(frozen=True)
class PersonalDetails:
    email: str
    full_name: str
    password_hash: str


class User(Aggregate):
    """A person with one role. Deactivated users are refused at once."""

    TOPIC: ClassVar[str] = "User"
    PERSONAL_ATTRIBUTES: ClassVar[frozenset[str]] = frozenset(
        {"email", "full_name", "password_hash"}
    )
    PERSONAL_SUBJECT_ATTRIBUTE: ClassVar[str] = "_id"

    class Event(Aggregate.Event):
        pass

    class UserRegistered(Event, AggregateCreated):
        """v2 renamed ``name`` to ``full_name``; stored v1 events are upcast on read."""

        TOPIC: ClassVar[str] = "User.UserRegistered"
        PERSONAL_SUBJECT: ClassVar[str] = ORIGINATOR_SUBJECT
        class_version: ClassVar[int] = 2
        email: Personal[str]
        full_name: Personal[str]
        role: str
        password_hash: Personal[str]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["full_name"] = state.pop("name")

    class UserRoleChanged(Event):
        """v2 records when, by the service clock: tokens issued before then stay revoked
        after the role is changed back. Stored v1 events are upcast to their own
        timestamp."""

        TOPIC: ClassVar[str] = "User.UserRoleChanged"
        class_version: ClassVar[int] = 2
        role: str
        changed_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["changed_at"] = state["timestamp"]

    class UserDeactivated(Event):
        """v2 records when, by the service clock: tokens issued until then stay revoked
        after a reactivation. Stored v1 events are upcast to their own timestamp."""

        TOPIC: ClassVar[str] = "User.UserDeactivated"
        class_version: ClassVar[int] = 2
        deactivated_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["deactivated_at"] = state["timestamp"]

    class UserReactivated(Event):
        TOPIC: ClassVar[str] = "User.UserReactivated"

    class PasswordChanged(Event):
        """Every token issued until ``changed_at`` is revoked."""

        TOPIC: ClassVar[str] = "User.PasswordChanged"
        PERSONAL_SUBJECT: ClassVar[str] = ORIGINATOR_SUBJECT
        password_hash: Personal[str]
        changed_at: datetime

    class TokenRevoked(Event):
        """One token was logged out; listed until it would have expired."""

        TOPIC: ClassVar[str] = "User.TokenRevoked"
        token_id: str
        issued_at_us: int
        expires_at_s: int
        revoked_at: datetime

    @event(UserRegistered)
    def __init__(self, email: str, full_name: str, role: str, password_hash: str) -> None:
        self.email: str | None = email
        """None once erased, as are the full name and password hash."""
        self.full_name: str | None = full_name
        self.role = role
        self.password_hash: str | None = password_hash
        self.active = True
        self.erased = False
        self.tokens_revoked_through_us = 0
        """Every token issued up to this microsecond is refused."""
        self.revoked_tokens: dict[str, list[int]] = {}
        """Logged-out tokens issued after ``tokens_revoked_through_us``: token id →
        [issued at (µs), expires at (s)], at most :data:`REVOKED_TOKENS_MAX`."""

    @classmethod
    def register(cls, *, email: str, full_name: str, role: str, password_hash: str) -> User:
        check_role(role)
        return cls(
            email=normalize_email(email),
            full_name=check_full_name(full_name),
            role=role,
            password_hash=password_hash,
        )

    def change_role(self, role: str, *, at: datetime) -> None:
        """Revokes every token issued before ``at``, for good: changing the role back
        revives none of them. Tokens issued at ``at`` itself are kept: a sign-in right
        after the change may read the same microsecond."""
        check_role(role)
        if role != self.role:
            self._role_changed(role=role, changed_at=at)

    def set_active(self, active: bool, *, at: datetime) -> None:
        """A deactivation revokes every token issued until ``at``, for good: a
        reactivation revives none of them."""
        if active and not self.active:
            self._reactivated()
        elif not active and self.active:
            self._deactivated(deactivated_at=at)

    def change_password(self, password_hash: str, *, at: datetime) -> None:
        """Revokes every token issued until ``at``. (The handler checked the current
        password and the new one's rules.)"""
        self._password_changed(password_hash=password_hash, changed_at=at)

    def revoke_token(
        self, token_id: str, *, issued_at_us: int, expires_at_s: int, at: datetime
    ) -> None:
        """Log one token out; nothing to do if it is revoked already or has expired."""
        if self.token_revoked(token_id, issued_at_us) or expires_at_s <= at.timestamp():
            return
        self._token_revoked(
            token_id=token_id, issued_at_us=issued_at_us, expires_at_s=expires_at_s, revoked_at=at
        )

    def token_revoked(self, token_id: str, issued_at_us: int) -> bool:
        return issued_at_us <= self.tokens_revoked_through_us or token_id in self.revoked_tokens

    @event(UserRoleChanged)
    def _role_changed(self, role: str, changed_at: datetime) -> None:
        self.role = role
        self._revoke_through(epoch_microseconds(changed_at) - 1)

    @event(UserDeactivated)
    def _deactivated(self, deactivated_at: datetime) -> None:
        self.active = False
        self._revoke_through(epoch_microseconds(deactivated_at))

    @event(UserReactivated)
    def _reactivated(self) -> None:
        self.active = True

    @event(PasswordChanged)
    def _password_changed(self, password_hash: str, changed_at: datetime) -> None:
        self.password_hash = password_hash
        self._revoke_through(epoch_microseconds(changed_at))

    @event(TokenRevoked)
    def _token_revoked(
        self, token_id: str, issued_at_us: int, expires_at_s: int, revoked_at: datetime
    ) -> None:
        # State kept from the event's own fields only, so every replay keeps the same.
        now_s = revoked_at.timestamp()
        listed = {
            listed_id: times for listed_id, times in self.revoked_tokens.items() if times[1] > now_s
        }
        listed[token_id] = [issued_at_us, expires_at_s]
        self.revoked_tokens = listed
        while len(self.revoked_tokens) > REVOKED_TOKENS_MAX:
            earliest = min(self.revoked_tokens.values())
            self._revoke_through(earliest[0])

    def _revoke_through(self, issued_at_us: int) -> None:
        """Part of the events' state changes: tokens issued up to ``issued_at_us`` are
        refused, and no longer need listing one by one."""
        self.tokens_revoked_through_us = max(self.tokens_revoked_through_us, issued_at_us)
        self.revoked_tokens = {
            token_id: times
            for token_id, times in self.revoked_tokens.items()
            if times[0] > self.tokens_revoked_through_us
        }

    def check_acts_as(
        self, role: str, *, token_id: str | None = None, issued_at_us: int | None = None
    ) -> None:
        """That this user may act in ``role`` now: active, still in that role, and —
        given the token they act with — that token not revoked."""
        if self.erased:
            raise ActorNotAdmitted("this user was erased", code="user_erased")
        if not self.active:
            raise ActorNotAdmitted("this user is deactivated", code="user_inactive")
        if self.role != role:
            raise ActorNotAdmitted(
                "this user's role changed since the token was issued; sign in again",
                code="role_changed",
            )
        revoked = (
            token_id is not None
            and issued_at_us is not None
            and self.token_revoked(token_id, issued_at_us)
        )
        if revoked:
            raise ActorNotAdmitted(
                "this access token was revoked (logged out, or the password or role "
                "changed since it was issued); sign in again",
                code="token_revoked",
            )

    # --- the profile: rectification and erasure -----------------------------------------

    class FullNameChanged(Event):
        TOPIC: ClassVar[str] = "User.FullNameChanged"
        PERSONAL_SUBJECT: ClassVar[str] = ORIGINATOR_SUBJECT
        full_name: Personal[str]

    class EmailChanged(Event):
        """The email's claim moved with it (the old one released, the new one claimed)."""

        TOPIC: ClassVar[str] = "User.EmailChanged"
        PERSONAL_SUBJECT: ClassVar[str] = ORIGINATOR_SUBJECT
        email: Personal[str]

    class UserErased(Event):
        """The person was forgotten: their data key is destroyed with this event, so
        every personal field ever written about them reads as erased. Holds nothing
        personal: who asked (``metadata``), why, and whether an admin forced it past
        open bookings or money."""

        TOPIC: ClassVar[str] = "User.UserErased"
        reason: str
        forced: bool
        erased_at: datetime

    def change_full_name(self, full_name: str) -> None:
        self.check_not_erased()
        full_name = check_full_name(full_name)
        if full_name != self.full_name:
            self._full_name_changed(full_name=full_name)

    def change_email(self, email: str) -> None:
        """(The handler moved the email's claim and checked the current password.)"""
        self.check_not_erased()
        email = normalize_email(email)
        if email != self.email:
            self._email_changed(email=email)

    def erase(self, *, reason: str, forced: bool, at: datetime) -> None:
        """(The handler checked what blocks an erasure and released the email's claim;
        the store destroys the data key once this is recorded.)"""
        self.check_not_erased()
        self._erased(reason=reason, forced=forced, erased_at=at)

    def details(self) -> PersonalDetails:
        """What the user is known by; ``user_not_found`` once they are erased."""
        self.check_not_erased()
        assert self.email is not None and self.full_name is not None, self.id
        assert self.password_hash is not None, self.id
        return PersonalDetails(self.email, self.full_name, self.password_hash)

    def check_not_erased(self) -> None:
        if self.erased:
            raise NotFound(f"user {self.id} not found", code="user_not_found")

    @classmethod
    def restored_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        state.setdefault("erased", False)  # snapshots taken before erasure existed
        return state

    @event(FullNameChanged)
    def _full_name_changed(self, full_name: str) -> None:
        self.full_name = full_name

    @event(EmailChanged)
    def _email_changed(self, email: str) -> None:
        self.email = email

    @event(UserErased)
    def _erased(self, reason: str, forced: bool, erased_at: datetime) -> None:
        self.email = None
        self.full_name = None
        self.password_hash = None
        self.active = False
        self.erased = True
        self._revoke_through(epoch_microseconds(erased_at))

    # --- rehashing: the same password, stored with today's hash parameters ------------

    class PasswordRehashed(Event):
        PERSONAL_SUBJECT: ClassVar[str] = ORIGINATOR_SUBJECT
        TOPIC: ClassVar[str] = "User.PasswordRehashed"
        password_hash: Personal[str]

    def rehash_password(self, replaced_hash: str, password_hash: str) -> None:
        """Store ``password_hash`` in place of ``replaced_hash`` — unless that is no
        longer this user's hash: the password changed since the login that rehashed it,
        and the new password must not be overwritten by the old one."""
        if self.password_hash == replaced_hash and password_hash != replaced_hash:
            self._password_rehashed(password_hash=password_hash)

    @event(PasswordRehashed)
    def _password_rehashed(self, password_hash: str) -> None:
        self.password_hash = password_hash


class EmailClaim(Aggregate):
    """One per email, with an id derived from the email's keyed hash (its *digest*, made
    by the store with a server secret): two registrations of one
    email write version 1 of the same aggregate, and the event store lets only one
    commit. The email itself is not kept here, nor who holds it: a holder is named by
    the keyed hash of their user id (:meth:`holder_message`), so that once an erased
    user's email is registered again, the claim does not tie the erased id to the new
    holder's email. A claim is released when its user is erased or changes email, and
    may then be claimed again by anyone, at its next version: still one writer wins."""

    TOPIC: ClassVar[str] = "EmailClaim"

    class Event(Aggregate.Event):
        metadata: EventMetadata = Field(default_factory=EventMetadata)
        """None of the command's: its actor (the user erased, or changing email), its
        request id and its Idempotency-Key are also on that user's events, and would tie
        them to this email's next holder."""

    class EmailClaimed(Event, AggregateCreated):
        """v2 holds the email's digest instead of the email, and the holder's digest
        instead of their id. A v1 claim (its id derived from the plain email) is read
        without either: ``prep-es store migrate`` moves such claims to their keyed ids."""

        TOPIC: ClassVar[str] = "EmailClaim.EmailClaimed"
        class_version: ClassVar[int] = 2
        email_digest: str
        holder: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.pop("email")
            state.pop("user_id", None)
            state["email_digest"] = ""
            state["holder"] = ""

    class EmailReleased(Event):
        TOPIC: ClassVar[str] = "EmailClaim.EmailReleased"
        holder: str

    class EmailReclaimed(Event):
        TOPIC: ClassVar[str] = "EmailClaim.EmailReclaimed"
        holder: str

    @staticmethod
    def create_id(email_digest: str, **_: Any) -> UUID:
        return derived_id("email-digest", email_digest)

    @staticmethod
    def holder_message(user_id: UUID) -> bytes:
        """What the store's keyed hash of a holder is made of (``CommandStore.keyed_digest``
        of it names the holder): the user's id, under a label of its own, so that no other
        keyed hash the store makes can equal it."""
        return HOLDER_DIGEST_LABEL + user_id.bytes

    @event(EmailClaimed)
    def __init__(self, email_digest: str, holder: str) -> None:
        self.email_digest = email_digest
        self.holder: str | None = holder
        """The keyed hash of whose email it is; None once released."""

    def check_free(self, email: str) -> None:
        if self.holder is not None:
            raise EmailTaken(f"{email} is already registered")

    def held_by(self, holder: str) -> bool:
        return self.holder is not None and hmac.compare_digest(self.holder, holder)

    def release(self, holder: str) -> None:
        """Free the email (its holder was erased or changed email)."""
        assert self.held_by(holder), "released by its holder"
        self._released(holder=holder)

    def reclaim(self, holder: str, email: str) -> None:
        self.check_free(email)
        self._reclaimed(holder=holder)

    @event(EmailReleased)
    def _released(self, holder: str) -> None:
        self.holder = None

    @event(EmailReclaimed)
    def _reclaimed(self, holder: str) -> None:
        self.holder = holder
