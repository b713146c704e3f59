"""Command routes: each appends events through a command handler and answers with the
resulting state from the write model, its event store ``position`` in the body and the
``X-Prep-Position`` header."""

from fastapi import APIRouter

from api.commands import accounts, admin, auth, bookings, kitchens, users

command_router = APIRouter()
for _router in (
    auth.router,
    kitchens.router,
    bookings.router,
    accounts.router,
    admin.router,
    users.router,
):
    command_router.include_router(_router)

__all__ = ["command_router"]
