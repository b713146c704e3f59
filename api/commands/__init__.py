"""Command routes: each appends events through a command handler and answers with the
resulting state from the write model, its event store ``position`` in the body and the
``X-Prep-Position`` header."""

from fastapi import APIRouter

from api.commands import accounts, admin, auth, bookings, kitchens, payments, users

COMMAND_ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    bookings.router,
    kitchens.router,
    accounts.router,
    payments.router,
    admin.router,
    users.router,
    users.me_router,
)
"""Included one by one into the application (``prep_es.app``), as query routers are."""

__all__ = ["COMMAND_ROUTERS"]
