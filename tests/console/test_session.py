"""Signing in to the console and out of it, form tokens, and who gets in."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import PASSWORD
from tests.console.conftest import Console, form_token_in


def test_an_admin_signs_in_with_a_strict_http_only_cookie_and_sees_the_sections(
    console: Console,
) -> None:
    session = console.session()
    response = session.sign_in(console.api.admin.email)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith("prep_console_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here
    home = session.page("/")
    assert "Moderation" in home
    assert "Sign out" in home


def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(
    console: Console,
) -> None:
    session = console.session()
    response = session.get("/moderation/kitchens?status=published")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?")
    assert "next=/console/moderation/kitchens%3Fstatus%3Dpublished" in response.headers["location"]


def test_customers_and_hosts_are_refused_and_get_no_session(console: Console) -> None:
    for role in ("customer", "host"):
        session = console.session()
        response = session.sign_in(console.api.register(role).email)
        assert response.status_code == 403
        assert "for admins and analysts" in response.text
        assert "prep_console_session" not in response.headers.get("set-cookie", "")
        assert session.get("/").status_code == 303


def test_wrong_passwords_are_refused_and_limited_as_logins_are(console: Console) -> None:
    session = console.session()
    response = session.sign_in(console.api.admin.email, "not the password at all")
    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    statuses = [
        session.sign_in("nobody-console@example.com", "wrong password here").status_code
        for _ in range(console.api.settings.login_failures_max + 1)
    ]
    assert statuses[-1] == 429


def test_a_form_without_its_token_or_with_another_sessions_is_refused(console: Console) -> None:
    first = console.admin()
    second = console.admin()
    kitchen = console.api.draft_kitchen(console.api.register("host"))
    target = f"/moderation/kitchens/{kitchen['id']}/approve"
    without = first.client.post("/console" + target, data={})
    assert without.status_code == 403
    assert "form_token_invalid" in without.text
    second.page("/")
    borrowed = first.client.post("/console" + target, data={"form_token": second.last_form_token})
    assert borrowed.status_code == 403
    cross_site = first.post(target, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403


def test_a_sign_in_form_without_its_cookie_is_refused(console: Console) -> None:
    session = console.session()
    page = session.client.get("/console/sign-in")
    session.client.cookies.clear()
    response = session.client.post(
        "/console/sign-in",
        data={"form_token": "x" * 43, "email": console.api.admin.email, "password": "x"},
    )
    assert page.status_code == 200
    assert response.status_code == 403


def test_signing_out_revokes_the_session_everywhere(console: Console) -> None:
    session = console.admin()
    token = session.client.cookies["prep_console_session"]
    response = session.post("/sign-out")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?done=signed_out"
    # The same cookie, kept by someone who copied it, no longer opens the console...
    copy = console.session()
    copy.client.cookies.set("prep_console_session", token, path="/console")
    assert copy.get("/").status_code == 303
    # ...nor the API.
    api = console.api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401


def test_the_next_page_after_sign_in_is_always_a_console_page(console: Console) -> None:
    session = console.session()
    page = session.client.get("/console/sign-in?next=//evil.example/console/")
    assert 'name="next" value="/console/"' in page.text


def test_an_error_page_keeps_the_navigation_and_a_way_back(console: Console) -> None:
    session = console.admin()
    kitchen = console.api.published_kitchen(console.api.register("host"))
    session.page("/moderation/kitchens")
    refused = session.post(
        f"/moderation/kitchens/{kitchen['id']}/approve",
        headers={"Referer": "http://testserver/console/moderation/kitchens?status=published"},
    )
    assert refused.status_code == 409
    assert "invalid_state_transition" in refused.text
    assert "Sign out" in refused.text
    assert 'href="/console/moderation/kitchens?status=published"' in refused.text
    elsewhere = session.post(
        f"/moderation/kitchens/{kitchen['id']}/approve",
        headers={"Referer": "http://evil.example/console/users"},
    )
    assert "Back to the page you were on" not in elsewhere.text


def test_behind_https_the_cookies_are_secure(console: Console) -> None:
    client = TestClient(console.api.app, base_url="https://testserver", follow_redirects=False)
    page = client.get("/console/sign-in")
    assert "Secure" in page.headers["set-cookie"]
    response = client.post(
        "/console/sign-in",
        data={
            "form_token": form_token_in(page.text),
            "email": console.api.admin.email,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 303
    session_cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith("prep_console_session=")
    )
    assert "Secure" in session_cookie


def test_two_sign_in_pages_open_at_once_both_work(console: Console) -> None:
    session = console.session()
    first = form_token_in(session.client.get("/console/sign-in").text)
    second = form_token_in(session.client.get("/console/sign-in").text)
    assert first == second
    response = session.client.post(
        "/console/sign-in",
        data={"form_token": first, "email": console.api.admin.email, "password": PASSWORD},
    )
    assert response.status_code == 303


def test_only_the_session_that_acted_is_told_it_did(console: Console) -> None:
    acting = console.admin()
    host = console.api.register("host")
    kitchen = console.api.draft_kitchen(host)
    console.api.ok(console.api.post(f"/kitchens/{kitchen['id']}/submit", host))
    acting.page("/moderation/kitchens")
    response = acting.post(f"/moderation/kitchens/{kitchen['id']}/approve")
    location = response.headers["location"].removeprefix("/console")
    assert "Kitchen approved." in acting.page(location)
    # The same link, opened by another admin, or made up, says nothing was done.
    other = console.admin()
    assert "Kitchen approved." not in other.page(location)
    made_up = "/users?done=user_deactivated&position=3"
    assert "User deactivated." not in acting.page(made_up)


def test_a_nul_in_the_sign_in_form_is_refused_as_bad_input(console: Console) -> None:
    session = console.session()
    page = session.client.get("/console/sign-in")
    response = session.client.post(
        "/console/sign-in",
        data={"form_token": form_token_in(page.text), "email": "a\x00b", "password": "x"},
    )
    assert response.status_code == 422
    assert "NUL" in response.text


def test_a_form_posted_after_the_session_ended_comes_back_to_its_page(console: Console) -> None:
    session = console.admin()
    session.page("/users")
    token = session.last_form_token
    session.post("/sign-out")
    response = session.client.post(
        "/console/moderation/kitchens/5a41300b-7e40-45b3-9104-5ed479f0c870/approve",
        data={"form_token": token or ""},
        headers={"Referer": "http://testserver/console/users?role=host"},
    )
    assert response.status_code == 303
    assert "next=/console/users%3Frole%3Dhost" in response.headers["location"]
