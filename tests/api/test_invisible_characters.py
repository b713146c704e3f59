"""Characters that show as nothing, on each backend: no email may hold one (it would
look exactly like another user's), and no name may be made only of them."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.api.conftest import ADMIN_EMAIL, PASSWORD, Api, assert_problem


@pytest.mark.parametrize(
    "blank", ["\u3164", "\u034f", "\u2800"], ids=["hangul-filler", "cgj", "braille-blank"]
)
def test_an_admin_look_alike_email_is_refused(api: Api, blank: str) -> None:
    local, domain = ADMIN_EMAIL.split("@")
    for email in (f"{local}{blank}@{domain}", f"new{uuid4().hex[:8]}{blank}@example.com"):
        body = {"email": email, "password": PASSWORD, "full_name": "Ana Lopez", "role": "host"}
        problem = assert_problem(api.post("/auth/register", json=body), 422, "invalid_email")
        assert [error["loc"] for error in problem["errors"]] == [["body", "email"]]


@pytest.mark.parametrize(
    "invisible",
    ["\u3164\u3164", "\u2800\u2800", "\u034f\u034f", "\ufe0f"],
    ids=["hangul-fillers", "braille-blanks", "cgjs", "variation-selector"],
)
def test_a_full_name_of_blanks_is_refused(api: Api, invisible: str) -> None:
    body = {
        "email": f"new-{uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "full_name": invisible,
        "role": "customer",
    }
    problem = assert_problem(api.post("/auth/register", json=body), 422, "invalid_full_name")
    assert [error["loc"] for error in problem["errors"]] == [["body", "full_name"]]


@pytest.mark.parametrize(
    "invisible",
    ["\u3164\u3164", "\u2800\u2800", "\u034f\u034f", "\ufe0f"],
    ids=["hangul-fillers", "braille-blanks", "cgjs", "variation-selector"],
)
def test_a_kitchen_name_of_blanks_is_refused(api: Api, invisible: str) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    problem = assert_problem(
        api.patch(f"/kitchens/{kitchen['id']}", host, json={"name": invisible}),
        422,
        "invalid_name",
    )
    assert [error["loc"] for error in problem["errors"]] == [["body", "name"]]
