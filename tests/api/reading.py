"""Reading through the query routes as a client that just wrote: send the command's
position as ``X-Prep-Min-Position`` and check the answer says it got there."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import Api, User


def read(
    api: Api,
    path: str,
    user: User | None = None,
    *,
    after: int = 0,
    params: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``GET path`` once the read model has applied position ``after``."""
    sent = dict(headers or {})
    if after:
        sent["X-Prep-Min-Position"] = str(after)
    response = api.get(path, user, params=params, headers=sent)
    if response.status_code == 200:
        assert int(response.headers["X-Prep-Position"]) >= after, response.headers
    return response


def read_ok(
    api: Api,
    path: str,
    user: User | None = None,
    *,
    after: int = 0,
    params: Any = None,
) -> dict[str, Any]:
    response = read(api, path, user, after=after, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def head(api: Api) -> int:
    """The event store's latest position: at or after every write made so far."""
    return api.services.runtime.app.position()
