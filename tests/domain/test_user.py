"""Users: registration, roles, activation, and the v1 → v2 upcast of UserRegistered."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from aggregates.base import derived_id
from aggregates.errors import ActorNotAdmitted, EmailTaken, InvalidRequest
from aggregates.user import REVOKED_TOKENS_MAX, EmailClaim, User, check_password, normalize_email
from tests.domain.scenario import NOW, given, raises_code, refused, then, then_nothing

REGISTRATION: dict[str, Any] = {
    "email": "  Alice.Cook@Example.COM ",
    "full_name": " Alice Cook ",
    "role": "customer",
    "password_hash": "argon2id$hash",
}


def registered(**overrides: Any) -> list[Any]:
    return list(User.register(**{**REGISTRATION, **overrides}).collect_events())


def test_register_normalizes_email_and_name() -> None:
    user = User.register(**REGISTRATION)
    then(
        user,
        (
            User.UserRegistered,
            {
                "email": "alice.cook@example.com",
                "full_name": "Alice Cook",
                "role": "customer",
                "password_hash": "argon2id$hash",
            },
        ),
    )
    assert user.active


@pytest.mark.parametrize("role", ["customer", "host", "admin", "analyst"])
def test_every_role_can_be_registered(role: str) -> None:
    assert User.register(**{**REGISTRATION, "role": role}).role == role


@pytest.mark.parametrize(
    "email",
    [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice cook@example.com",
        "alice@exa@mple.com",
        "alice@.com",
        "alice@example.",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_invalid_email(email: str) -> None:
    with raises_code(InvalidRequest, "invalid_email"):
        User.register(**{**REGISTRATION, "email": email})


def test_normalize_email_is_case_insensitive() -> None:
    assert (
        normalize_email("Bob@Example.com")
        == normalize_email(" bob@EXAMPLE.COM")
        == ("bob@example.com")
    )


def test_normalize_email_folds_compatibility_look_alikes() -> None:
    assert normalize_email("ＢＯＢ@ｅｘａｍｐｌｅ.com") == "bob@example.com"


@pytest.mark.parametrize(
    ("email", "stored"),
    [
        ("ana@bücher.de", "ana@xn--bcher-kva.de"),
        ("ANA@XN--BCHER-KVA.DE", "ana@xn--bcher-kva.de"),
        ("иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai"),  # wholly Cyrillic
        ("山田@例え.jp", "山田@xn--r8jz45g.jp"),  # Han with Hiragana
        ("yamada@日本語ドメイン.jp", "yamada@xn--eckwd4c7c5976acvb2w6i.jp"),
        ("x@аррӏе.com", "x@xn--80ak6aa92e.com"),  # shown as the name it is
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ],
)
def test_an_email_is_stored_with_its_domain_in_ascii(email: str, stored: str) -> None:
    assert normalize_email(email) == stored


@pytest.mark.parametrize(
    "email",
    [
        "admin@demo.prep.examplе",
        "pаypal@example.com",
        "ana@gοοgle.com",
        "ана@пример.рфa",
        "yamada@日本пример.jp",
        "a" * 65 + "@example.com",
        "é" * 33 + "@example.com",
    ],
)
def test_a_mixed_script_or_overlong_local_part_email_is_refused(email: str) -> None:
    with raises_code(InvalidRequest, "invalid_email"):
        normalize_email(email)


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("            ", "password_too_short"),
        ("password1234", "password_too_common"),
        ("ＰＡＳＳＷＯＲＤ1234", "password_too_common"),
        ("123456789012", "password_too_predictable"),
        ("abababababab", "password_too_predictable"),
    ],
)
def test_weak_passwords(password: str, code: str) -> None:
    with raises_code(InvalidRequest, code):
        check_password(password)


@pytest.mark.parametrize("role", ["superuser", "Admin", ""])
def test_invalid_role(role: str) -> None:
    with raises_code(InvalidRequest, "invalid_role"):
        User.register(**{**REGISTRATION, "role": role})


@pytest.mark.parametrize("full_name", ["", "   ", "x" * 201])
def test_invalid_full_name(full_name: str) -> None:
    with raises_code(InvalidRequest, "invalid_full_name"):
        User.register(**{**REGISTRATION, "full_name": full_name})


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("Password123!", "password_too_common"),  # a common one, dressed up
        ("iloveyou1234", "password_too_common"),
        ("!!Sunshine2024", "password_too_common"),
        ("aaaaaaaaaaab", "password_too_predictable"),  # nearly all one repeated part
        ("abababababab1", "password_too_predictable"),
        ("1xyzxyzxyzxyz12", "password_too_predictable"),
        ("asdfghjklasd", "password_too_predictable"),  # one keyboard row, wrapping
        ("zaq12wsxcde3", "password_too_predictable"),  # keyboard columns, snaking
        ("1qaz2wsx3edc4r", "password_too_predictable"),  # columns straight down
        ("!@#$%^&*()_+", "password_too_predictable"),  # the shifted digit row
        ("aab.aab.aab.b", "password_too_predictable"),  # four distinct characters
    ],
)
def test_passwords_a_guesser_tries_early(password: str, code: str) -> None:
    with raises_code(InvalidRequest, code):
        check_password(password)


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("P a s s w o r d 1 2", "password_too_common"),  # separators inside a listed one
        ("p.a.s.s.w.o.r.d.1", "password_too_common"),
        ("pass1234word", "password_too_common"),
        ("password!2024x", "password_too_common"),  # a listed one padded with a letter
        ("iloveyou1234z", "password_too_common"),
        ("password1password2", "password_too_common"),  # a listed one repeated
        ("password_password", "password_too_common"),
        ("letmein!letmein", "password_too_common"),
        ("monkey123monkey", "password_too_common"),
        ("xyzzyq1xyzzyq2", "password_too_predictable"),  # 8 characters, the repeat once
        ("zxcvbnmasdfghjkl", "password_too_predictable"),  # keyboard rows, reversed order
        ("poiuytrewqlkjh", "password_too_predictable"),
        ("9ol8ik7uj6yh", "password_too_predictable"),  # columns, right to left
        ("qweasdzxcqwe", "password_too_common"),  # listed once its ends are seen
        ("azertyuiopqsdf", "password_too_predictable"),  # AZERTY
        ("qwertzuiopasdf", "password_too_predictable"),  # QWERTZ
    ],
)
def test_derived_common_passwords_and_keyboard_walks_are_refused(password: str, code: str) -> None:
    with raises_code(InvalidRequest, code):
        check_password(password)


@pytest.mark.parametrize(
    ("password", "email", "full_name"),
    [
        ("Maria_Gonzalez_99", "chef@example.com", "Maria Gonzalez"),
        ("gonzalez-maria-1", "chef@example.com", "Maria Gonzalez"),
        ("annalopez2024!", "anna.lopez@example.com", "Someone Else"),
        ("zepol ana 2024!", "chef@example.com", "Ana Lopez"),  # the name reversed
        ("ana.lopez.cooks", "Ana.Lopez@example.com", "Someone Else"),
        ("i am ana lopez!", "chef@example.com", "Ana  Lopez"),
        ("ANALOPEZ-kitchen", "chef@example.com", "Ana Lopez"),
    ],
)
def test_a_password_with_the_users_email_or_name_is_refused(
    password: str, email: str, full_name: str
) -> None:
    check_password(password)
    with raises_code(InvalidRequest, "password_too_personal"):
        check_password(password, email=email, full_name=full_name)


@pytest.mark.parametrize(
    "password",
    [
        "prep-demo-kitchens",  # the demo's
        "rosa-cooks-all-day",  # the README tour's
        "sam-bakes-bread-daily",
        "correct horse battery",  # the tests'
        "a new horse battery staple",
        "another sound passphrase",
        "a long enough password",
        "correct horse",  # two words: a passphrase, not listed
        "kitchen rent",
        "Tr0ub4dor&3xq",
        "x7#a9a!2$4%8",  # a few letters repeating by chance
        "we were sad at tea",  # words of neighbouring keys, not a walk
    ],
)
def test_sound_passwords_and_passphrases_pass(password: str) -> None:
    check_password(password, email="test-user@example.com", full_name="Test User")


@pytest.mark.parametrize(
    ("password", "email", "full_name"),
    [
        ("rosa-cooks-all-day", "rosa@example.com", "Rosa Diaz"),  # the README tour's
        ("sam-bakes-bread-daily", "sam@example.com", "Sam Lee"),
    ],
)
def test_a_name_in_a_password_long_enough_without_it_passes(
    password: str, email: str, full_name: str
) -> None:
    check_password(password, email=email, full_name=full_name)


def test_password_length() -> None:
    with raises_code(InvalidRequest, "password_too_short"):
        check_password("x" * 11)
    check_password("kitchen rent")
    longest = "".join(f"{number:04d}" for number in range(256))
    check_password(longest)
    with raises_code(InvalidRequest, "password_too_long"):
        check_password(longest + "x")


def test_change_role_emits_only_when_different() -> None:
    user = given(*registered())
    user.change_role("customer", at=NOW)
    then_nothing(user)
    user.change_role("host", at=NOW)
    then(user, (User.UserRoleChanged, {"role": "host", "changed_at": NOW}))
    assert user.role == "host"


def test_change_to_an_invalid_role_is_refused() -> None:
    user = given(*registered())
    with refused(user, InvalidRequest, "invalid_role"):
        user.change_role("root", at=NOW)


def test_deactivate_and_reactivate() -> None:
    history = registered()
    user = given(*history)
    user.set_active(False, at=NOW)
    deactivated = then(user, (User.UserDeactivated, {"deactivated_at": NOW}))
    assert not user.active

    user = given(*history, *deactivated)
    user.set_active(False, at=NOW)
    then_nothing(user)
    user.set_active(True, at=NOW)
    then(user, (User.UserReactivated, {}))
    assert user.active

    user = given(*history)
    user.set_active(True, at=NOW)
    then_nothing(user)


def test_a_user_acts_only_while_active_and_in_their_role() -> None:
    history = registered()
    user = given(*history)
    user.check_acts_as(REGISTRATION["role"])
    with refused(user, ActorNotAdmitted, "role_changed"):
        user.check_acts_as("admin")
    user.set_active(False, at=NOW)
    deactivated = user.collect_events()
    user = given(*history, *deactivated)
    with refused(user, ActorNotAdmitted, "user_inactive"):
        user.check_acts_as(REGISTRATION["role"])


def test_user_registered_is_at_class_version_2() -> None:
    assert User.UserRegistered.class_version == 2


def test_user_registered_upcasts_name_to_full_name() -> None:
    assert "upcast_v1_v2" not in vars(User.UserReactivated)
    state: dict[str, Any] = {"email": "a@example.com", "name": "Alice", "role": "host"}
    User.UserRegistered.upcast_v1_v2(state)
    assert state == {"email": "a@example.com", "full_name": "Alice", "role": "host"}


def test_an_email_claim_is_keyed_by_the_email_digest_and_keeps_no_email() -> None:
    """The digest is the store's keyed hash of the normalized email (see
    ``tests/store/test_personal_data.py``): one claim per digest, and the email itself is
    in none of its events, nor its holder's id: only the keyed hash of it the command
    made."""
    first = EmailClaim(email_digest="d1" * 32, holder="h1" * 32)
    second = EmailClaim(email_digest="d1" * 32, holder="h2" * 32)
    assert first.id == second.id == derived_id("email-digest", "d1" * 32)
    assert EmailClaim(email_digest="d2" * 32, holder="h1" * 32).id != first.id
    then(first, (EmailClaim.EmailClaimed, {"email_digest": "d1" * 32, "holder": "h1" * 32}))


def test_a_claim_names_its_holder_by_a_labelled_message() -> None:
    """The message the store hashes names the user and nothing else could produce it:
    another user, or the user's id hashed for another purpose, is another message."""
    message = EmailClaim.holder_message(UUID(int=1))
    assert message == b"email-claim-holder:" + UUID(int=1).bytes
    assert message != EmailClaim.holder_message(UUID(int=2))


def test_a_v1_claim_reads_without_its_user() -> None:
    state: dict[str, Any] = {"email": "a@example.com", "user_id": str(UUID(int=1))}
    EmailClaim.EmailClaimed.upcast_v1_v2(state)
    assert state == {"email_digest": "", "holder": ""}


def test_a_released_email_may_be_claimed_again_by_one_user() -> None:
    claim = EmailClaim(email_digest="d1" * 32, holder="h1" * 32)
    history = claim.collect_events()
    with refused(claim, EmailTaken, "email_taken"):
        claim.reclaim("h2" * 32, "alice@example.com")
    assert claim.held_by("h1" * 32) and not claim.held_by("h2" * 32)
    claim.release("h1" * 32)
    released = then(claim, (EmailClaim.EmailReleased, {"holder": "h1" * 32}))
    claim = given(*history, *released)
    assert claim.holder is None and not claim.held_by("h1" * 32)
    claim.check_free("alice@example.com")
    claim.reclaim("h2" * 32, "alice@example.com")
    then(claim, (EmailClaim.EmailReclaimed, {"holder": "h2" * 32}))
    assert claim.held_by("h2" * 32)
    with refused(claim, EmailTaken, "email_taken"):
        claim.reclaim("h3" * 32, "alice@example.com")


# --- tokens ------------------------------------------------------------------------------

ISSUED_US = int(NOW.timestamp()) * 1_000_000
EXPIRES_S = int(NOW.timestamp()) + 3600


def test_a_deactivation_revokes_every_token_issued_until_then_for_good() -> None:
    history = registered()
    user = given(*history)
    user.set_active(False, at=NOW)
    deactivated = user.collect_events()
    user.set_active(True, at=NOW)
    user = given(*history, *deactivated, *user.collect_events())
    with refused(user, ActorNotAdmitted, "token_revoked"):
        user.check_acts_as(REGISTRATION["role"], token_id="old", issued_at_us=ISSUED_US)
    user.check_acts_as(REGISTRATION["role"], token_id="new", issued_at_us=ISSUED_US + 1)


def test_a_role_change_revokes_earlier_tokens_for_good() -> None:
    """Changing the role back revives no token issued before the change (it carries
    the role it was issued with again); one issued after the change back works."""
    history = registered()
    user = given(*history)
    user.change_role("admin", at=NOW)
    user.change_role(REGISTRATION["role"], at=NOW + timedelta(seconds=1))
    user = given(*history, *user.collect_events())
    with refused(user, ActorNotAdmitted, "token_revoked"):
        user.check_acts_as(REGISTRATION["role"], token_id="old", issued_at_us=ISSUED_US - 1)
    with refused(user, ActorNotAdmitted, "token_revoked"):
        later_us = ISSUED_US + 1_000_000 - 1
        user.check_acts_as(REGISTRATION["role"], token_id="admin", issued_at_us=later_us)
    # A sign-in in the very microsecond of the change reads the new role: kept.
    user.check_acts_as(REGISTRATION["role"], token_id="new", issued_at_us=ISSUED_US + 1_000_000)


def test_user_role_changed_v1_is_upcast_to_its_own_timestamp() -> None:
    state: dict[str, Any] = {"timestamp": "2030-01-07T17:00:00+00:00", "role": "host"}
    User.UserRoleChanged.upcast_v1_v2(state)
    assert state["changed_at"] == state["timestamp"] and state["role"] == "host"


def test_a_password_change_revokes_earlier_tokens_to_the_microsecond() -> None:
    user = given(*registered())
    user.change_password("new-hash", at=NOW)
    then(user, (User.PasswordChanged, {"password_hash": "new-hash", "changed_at": NOW}))
    assert user.password_hash == "new-hash"
    assert user.token_revoked("same-second-before", ISSUED_US)
    assert not user.token_revoked("same-second-after", ISSUED_US + 1)


def test_a_logout_revokes_one_token_once_and_keeps_the_list_bounded() -> None:
    user = given(*registered())
    user.revoke_token("a", issued_at_us=ISSUED_US, expires_at_s=EXPIRES_S, at=NOW)
    then(
        user,
        (
            User.TokenRevoked,
            {
                "token_id": "a",
                "issued_at_us": ISSUED_US,
                "expires_at_s": EXPIRES_S,
                "revoked_at": NOW,
            },
        ),
    )
    user.revoke_token("a", issued_at_us=ISSUED_US, expires_at_s=EXPIRES_S, at=NOW)
    user.revoke_token("gone", issued_at_us=ISSUED_US, expires_at_s=int(NOW.timestamp()), at=NOW)
    then_nothing(user)
    assert user.token_revoked("a", ISSUED_US) and not user.token_revoked("b", ISSUED_US)
    for number in range(REVOKED_TOKENS_MAX + 5):
        user.revoke_token(
            f"t{number}", issued_at_us=ISSUED_US + 1 + number, expires_at_s=EXPIRES_S, at=NOW
        )
    assert len(user.revoked_tokens) <= REVOKED_TOKENS_MAX
    # The earliest were folded into the cut-off: still refused, as is every older token.
    assert all(
        user.token_revoked(f"t{n}", ISSUED_US + 1 + n) for n in range(REVOKED_TOKENS_MAX + 5)
    )


def test_user_deactivated_v1_is_upcast_to_its_own_timestamp() -> None:
    state: dict[str, Any] = {"timestamp": "2030-01-07T17:00:00+00:00"}
    User.UserDeactivated.upcast_v1_v2(state)
    assert state["deactivated_at"] == state["timestamp"]


def test_a_rehash_replaces_the_hash_it_was_made_from() -> None:
    user = given(*registered())
    user.rehash_password("argon2id$hash", "argon2id$stronger")
    then(user, (User.PasswordRehashed, {"password_hash": "argon2id$stronger"}))
    assert user.password_hash == "argon2id$stronger"


@pytest.mark.parametrize(
    ("replaced", "new"),
    [
        ("argon2id$changed-since", "argon2id$stronger"),  # the password changed meanwhile
        ("argon2id$hash", "argon2id$hash"),
    ],
)
def test_a_rehash_of_a_hash_no_longer_current_changes_nothing(replaced: str, new: str) -> None:
    user = given(*registered())
    user.rehash_password(replaced, new)
    then_nothing(user)
    assert user.password_hash == "argon2id$hash"


@pytest.mark.parametrize(
    "password",
    [
        "a" * 1023 + "b",
        "ab" * 511 + "xy",
        ("kitchen" * 147)[:1023] + "!",
        ("qwertyuiop" * 103)[:1024],
        "".join(chr(ord("a") + (number * number * 7 + number) % 26) for number in range(1024)),
    ],
)
def test_a_longest_password_is_judged_by_its_rules(password: str) -> None:
    """Each of these is refused by a named rule at the longest length a password may
    have (1024 characters): the rules scan it whole."""
    with pytest.raises(InvalidRequest) as refused:
        check_password(password, email="anna.lopez@example.com", full_name="Anna Lopez")
    assert refused.value.code.startswith("password_too_")
