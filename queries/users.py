"""User queries over the ``users`` read model: the signed-in user's profile, the
per-request authentication check, the login lookup and the admin listing.

The password hash leaves the read model only through :meth:`UserQueries.credentials_by_email`
(for checking a login); no other read model carries it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.user import EMAIL_LENGTH_MAX, ROLES
from projections.database import ReadDatabase
from projections.users import UsersProjection, user_dependency
from queries.base import Page, PageRequest, Viewer
from queries.cache import MemoryQueryCache

USERS = UsersProjection.view("users")
_PROFILE_COLUMNS = "id, email, full_name, role, active, registered_at, updated_at"


class UserProfile(BaseModel):
    """A user as they and admins see them."""

    id: UUID
    email: str
    full_name: str
    role: str
    active: bool
    registered_at: datetime
    updated_at: datetime


class AuthUser(BaseModel):
    """What every authenticated request checks: the user still exists, is active, and
    has this role."""

    id: UUID
    role: str
    active: bool


class UserCredentials(BaseModel):
    """For checking a login only: never returned to a client."""

    id: UUID
    email: str
    role: str
    active: bool
    password_hash: str


class UserQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def _id(self, value: UUID) -> UUID | str:
        return value if self._database.dialect == "postgresql" else str(value)

    def me(self, viewer: Viewer) -> UserProfile:
        """The viewer's own profile; 404 (``user_not_found``) until the read model has
        their registration."""
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT {_PROFILE_COLUMNS} FROM {USERS} WHERE id = %s",
                (self._id(viewer.user_id),),
            )
        if row is None:
            raise NotFound(f"no user {viewer.user_id}", code="user_not_found")
        return UserProfile.model_validate(row)

    def get_for_auth(self, user_id: UUID) -> AuthUser | None:
        """The user behind a token, by primary key; ``None`` if unknown."""
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT id, role, active FROM {USERS} WHERE id = %s", (self._id(user_id),)
            )
        return None if row is None else AuthUser.model_validate(row)

    def credentials_by_email(self, email: str) -> UserCredentials | None:
        """The stored credentials for ``email`` (any case), or ``None``."""
        normalized = email.strip().lower()
        if not normalized or len(normalized) > EMAIL_LENGTH_MAX:
            return None
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT id, email, role, active, password_hash FROM {USERS} "
                "WHERE lower(email) = %s",
                (normalized,),
            )
        return None if row is None else UserCredentials.model_validate(row)

    def list(
        self,
        viewer: Viewer,
        *,
        role: str | None = None,
        active: bool | None = None,
        page: PageRequest | None = None,
    ) -> Page[UserProfile]:
        """Every user, oldest registration first (admin only: 403 otherwise)."""
        page = page or PageRequest()
        if not viewer.is_admin:
            raise PermissionDenied("listing users is for admins")
        if role is not None and role not in ROLES:
            raise InvalidRequest(f"role is one of {', '.join(ROLES)}", code="invalid_role")
        conditions: list[str] = []
        params: list[Any] = []
        if role is not None:
            conditions.append("role = %s")
            params.append(role)
        if active is not None:
            conditions.append("active = %s")
            params.append(active)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._database.reading() as sql:
            total = int(sql.scalar(f"SELECT count(*) FROM {USERS} {where}", params))
            rows = sql.fetchall(
                f"SELECT {_PROFILE_COLUMNS} FROM {USERS} {where} "
                "ORDER BY registered_at, id LIMIT %s OFFSET %s",
                [*params, page.limit, page.offset],
            )
        return Page[UserProfile](
            items=[UserProfile.model_validate(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )


class AuthUsers:
    """Users as every authenticated request checks them, also kept in this process's
    memory while no change to them has been announced (the query cache's rule, see
    ``queries.cache``), where announcements reach it (``cache``; PostgreSQL, not a
    replica): most requests then authenticate without a round trip.

    :meth:`cached` never does I/O (the event loop may call it); :meth:`load` reads the
    read model and remembers the answer at the users projection's announced position,
    read first, so a change committed after it is never hidden."""

    def __init__(
        self,
        users: UserQueries,
        cache: MemoryQueryCache | None,
        position: Callable[[], int | None],
    ) -> None:
        self._users = users
        self._cache = cache
        self._position = position

    def cached(self, user_id: UUID) -> AuthUser | None:
        if self._cache is None:
            return None
        entry = self._cache.get(str(user_id), dependency=user_dependency(user_id), min_position=0)
        return None if entry is None else AuthUser.model_validate_json(entry.value)

    def load(self, user_id: UUID) -> AuthUser | None:
        position = self._position()
        user = self._users.get_for_auth(user_id)
        if user is not None and position is not None and self._cache is not None:
            self._cache.put(str(user_id), user.model_dump_json().encode(), position=position)
        return user
