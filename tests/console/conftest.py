"""The console in process: each :class:`ConsoleSession` is a browser of its own (its
own cookies) on the module's application (``tests/api``'s ``api`` fixture), signing in
through the sign-in form and posting forms with the token their page carries."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PASSWORD, Api, User, api  # noqa: F401  (the fixture)

CONSOLE = "/console"
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def form_token_in(html: str) -> str:
    found = FORM_TOKEN.search(html)
    assert found is not None, "the page has no form token"
    return found.group(1)


@dataclass
class ConsoleSession:
    """One browser: cookies kept between requests, redirects not followed unless
    asked (tests look at them)."""

    client: TestClient
    last_form_token: str | None = field(default=None)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.get(CONSOLE + path, **kwargs)
        if response.status_code == 200 and "form_token" in response.text:
            self.last_form_token = form_token_in(response.text)
        return response

    def page(self, path: str, **kwargs: Any) -> str:
        """The page at ``path``, which must answer 200."""
        response = self.get(path, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text[:2000])
        return response.text

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """``data`` posted with the form token of the last page read (read ``/`` first
        if none was)."""
        if self.last_form_token is None:
            self.get("/")
        form = {"form_token": self.last_form_token or "", **(data or {})}
        response: httpx.Response = self.client.post(CONSOLE + path, data=form, **kwargs)
        return response

    def follow(self, response: httpx.Response) -> str:
        """The page a 303 answer sends the browser to."""
        assert response.status_code == 303, (response.status_code, response.text[:2000])
        location = response.headers["location"]
        assert location.startswith(CONSOLE), location
        return self.page(location.removeprefix(CONSOLE))

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        page = self.client.get(CONSOLE + "/sign-in")
        assert page.status_code == 200, page.text
        response: httpx.Response = self.client.post(
            CONSOLE + "/sign-in",
            data={"form_token": form_token_in(page.text), "email": email, "password": password},
        )
        return response


@dataclass
class Console:
    api: Api

    def session(self) -> ConsoleSession:
        """A new browser, signed in to nothing."""
        return ConsoleSession(TestClient(self.api.app, follow_redirects=False))

    def signed_in(self, user: User) -> ConsoleSession:
        session = self.session()
        response = session.sign_in(user.email)
        assert response.status_code == 303, (response.status_code, response.text[:2000])
        return session

    def admin(self) -> ConsoleSession:
        return self.signed_in(self.api.admin)

    def analyst(self) -> ConsoleSession:
        return self.signed_in(self.api.user_with_role("analyst"))


@pytest.fixture(scope="module")
def console(api: Api) -> Console:  # noqa: F811
    return Console(api)
