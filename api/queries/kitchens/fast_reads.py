"""The hottest public kitchen reads, answered before routing."""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import PLAIN_POSITION, POSITION_MAX
from api.queries.kitchens.routes import router
from api.queries.kitchens.schemas import page_json
from api.queries.kitchens.search import plain_search
from api.schemas import MIN_POSITION_HEADER, POSITION_HEADER
from queries.kitchen_cache import PublishedPages
from queries.kitchen_index import LiveSearchIndex


class KitchenReadsMiddleware:
    """Answers the hottest public reads from this process's memory, before routing: for
    an answer already at hand, FastAPI's validation, dependencies and the trip to a
    worker thread cost several times the answer.

    - ``GET {prefix}/kitchens/{id}``: the published pages the route made (see
      :class:`~queries.kitchen_cache.PublishedPages`);
    - ``GET {prefix}/kitchens?…``: searches the search index answers (see
      :mod:`queries.kitchen_index`).

    It answers only what the routes would answer alike, byte for byte (the tests hold
    them equal): no ``Authorization`` (a token must still be checked), an
    ``X-Prep-Min-Position`` that is absent or a plain number the read model has reached,
    and for a search, parameters spelled plainly and read as the route reads them (see
    :func:`~api.queries.kitchens.search.plain_search`). Everything else, and every miss,
    goes on to the routes, which remember the pages of published kitchens they make.
    Request ids and metrics wrap this as any route."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.search_path = f"{prefix}{router.prefix}"
        self.path_start = f"{self.search_path}/"
        self.search_route = _Route(self.search_path)
        self.detail_route = _Route(f"{self.path_start}{{kitchen_id}}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answer(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        page, position, route = answer
        scope["route"] = route  # for the metrics, as the router would
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(page)).encode()),
                    (b"content-type", b"application/json"),
                    (POSITION_HEADER.lower().encode(), str(position).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": page})

    def _answer(self, scope: Scope) -> tuple[bytes, int, _Route] | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(self.search_path):
            return None
        min_position = _plain_min_position(scope["headers"])
        if min_position is None:
            return None
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        if path == self.search_path:
            search: LiveSearchIndex | None = getattr(services, "search_index", None)
            request = None if search is None else plain_search(scope["query_string"])
            if search is None or request is None:
                return None
            found = search.search(*request, min_position)
            if found is None:
                return None
            items, total, position = found
            page_request = request[1]
            page = page_json(items, total, page_request.limit, page_request.offset)
            return page, position, self.search_route
        pages: PublishedPages | None = getattr(services, "kitchen_pages", None)
        if pages is None or not path.startswith(self.path_start):
            return None
        text = path[len(self.path_start) :]
        try:
            kitchen_id = UUID(text)
        except ValueError:
            return None
        if str(kitchen_id) != text:
            return None  # another spelling of an id: the route's to judge
        answer = pages.page(kitchen_id, min_position)
        return None if answer is None else (*answer, self.detail_route)


_MIN_POSITION_NAME: Final = MIN_POSITION_HEADER.lower().encode()
_PLAIN_POSITION_BYTES: Final = re.compile(PLAIN_POSITION.pattern.encode())


def _plain_min_position(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The client's ``X-Prep-Min-Position`` (0 without one); ``None`` when the routes
    must judge the request: it carries a token, or a minimum that is not one plain
    number (see :data:`~api.deps.PLAIN_POSITION`: ``0005`` is not)."""
    min_position = 0
    min_position_seen = False
    for name, value in headers:
        if name == b"authorization":
            return None
        if name == _MIN_POSITION_NAME:
            if (
                min_position_seen
                or not _PLAIN_POSITION_BYTES.fullmatch(value)
                or int(value) > POSITION_MAX
            ):
                return None  # the route's to refuse or to settle
            min_position, min_position_seen = int(value), True
    return min_position


class _Route:
    """What the metrics read of a route: its path template."""

    def __init__(self, path_format: str) -> None:
        self.path_format = path_format
