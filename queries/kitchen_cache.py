"""Kitchen detail and search through the query cache (see ``queries.cache``).

Only answers that are the same for every viewer are cached: search results (public)
and the detail of a *published* kitchen. Keys include today's date, because both answers
depend on which certificates are valid today. An entry records the kitchens read
model's position read *before* the query ran, which can only make it look older than
it is: a change that lands between that read and the query marks the entry stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import orjson

from queries.base import Page, PageRequest, Viewer
from queries.cache import QueryCache
from queries.kitchens import KitchenDetail, KitchenFilters, KitchenQueries, KitchenSummary

KITCHENS_DEPENDENCY = "kitchens"


class CachedKitchenQueries:
    def __init__(
        self,
        queries: KitchenQueries,
        cache: QueryCache,
        *,
        position: Callable[[], int],
        clock: Callable[[], datetime],
    ) -> None:
        """``position``: how far the kitchens read model has got (from its state)."""
        self._queries = queries
        self._cache = cache
        self._position = position
        self._clock = clock

    def search(
        self, filters: KitchenFilters, page: PageRequest | None = None, *, min_position: int = 0
    ) -> Page[KitchenSummary]:
        page = page or PageRequest()
        request = {
            "filters": dataclasses.asdict(filters),
            "limit": page.limit,
            "offset": page.offset,
            "today": self._clock().date().isoformat(),
        }
        digest = hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()
        key = f"kitchens:search:{digest}"
        cached = self._cache.get(key, dependency=KITCHENS_DEPENDENCY, min_position=min_position)
        if cached is not None:
            return Page[KitchenSummary].model_validate_json(cached)
        position = self._position()
        result = self._queries.search(filters, page)
        self._cache.put(key, result.model_dump_json().encode(), position=position)
        return result

    def get(
        self, viewer: Viewer | None, kitchen_id: UUID, *, min_position: int = 0
    ) -> KitchenDetail:
        key = f"kitchen:{kitchen_id}:published:{self._clock().date().isoformat()}"
        dependency = f"kitchen:{kitchen_id}"
        cached = self._cache.get(key, dependency=dependency, min_position=min_position)
        if cached is not None:
            return KitchenDetail.model_validate_json(cached)
        position = self._position()
        detail = self._queries.get(viewer, kitchen_id)
        if detail.status == "published":
            self._cache.put(key, detail.model_dump_json().encode(), position=position)
        return detail
