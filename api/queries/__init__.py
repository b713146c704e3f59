"""Query routes: they read read models only (``queries/``), never the event store's
aggregates, and answer with ``X-Prep-Position`` (see ``api.deps.read_model``)."""

from fastapi import APIRouter

from api.queries import users

query_router = APIRouter()
for _router in (users.router,):
    query_router.include_router(_router)

__all__ = ["query_router"]
