"""User queries over the ``users`` read model: the signed-in user's profile, the login
lookup and the admin listing. (The per-request authentication check reads the write
model: ``commands.admission``.)

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
from aggregates.user import EMAIL_LENGTH_MAX, ROLES, fold_email
from projections.database import ReadDatabase, uuid_parameter
from projections.users import UsersProjection
from queries.base import ERASED_USER_NAME, Page, PageRequest, Viewer

USERS = UsersProjection.view("users")
_PROFILE_COLUMNS = "id, email, full_name, role, active, erased, registered_at, updated_at"


class UserProfile(BaseModel):
    """A user as they and admins see them."""

    id: UUID
    email: str
    full_name: str
    role: str
    active: bool
    registered_at: datetime
    updated_at: datetime


class ListedUser(BaseModel):
    """A user as admins list them: an erased user keeps their id, role and dates, with
    no email and :data:`~queries.base.ERASED_USER_NAME` for a name."""

    id: UUID
    email: str | None
    full_name: str
    role: str
    active: bool
    erased: bool
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> ListedUser:
        # The users read model blanks an erased user's email and name itself.
        full_name = ERASED_USER_NAME if row["erased"] else row["full_name"]
        return cls.model_validate({**row, "full_name": full_name})


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

    def me(self, viewer: Viewer, *, catch_up: Callable[[], None]) -> UserProfile:
        """The viewer's own profile. The viewer was authenticated on the write model, so
        they exist, in the role they act in now: a registration the read model has not
        applied yet is waited for (``catch_up``, bounded; then 404 ``user_not_found``),
        and the role is the viewer's, not the read model's, which may be milliseconds
        behind a change. An erased user has no profile (404 ``user_not_found``): the
        read model may not have heard yet that they may no longer sign in."""
        row = self._profile(viewer.user_id)
        if row is None:
            catch_up()
            row = self._profile(viewer.user_id)
        if row is None or row["erased"]:
            raise NotFound(f"no user {viewer.user_id}", code="user_not_found")
        return UserProfile.model_validate({**row, "role": viewer.role})

    def _profile(self, user_id: UUID) -> dict[str, Any] | None:
        with self._database.reading() as sql:
            return sql.fetchone(
                f"SELECT {_PROFILE_COLUMNS} FROM {USERS} WHERE id = %s",
                (uuid_parameter(self._database.dialect, user_id),),
            )

    def credentials_by_email(self, email: str) -> UserCredentials | None:
        """The stored credentials for ``email`` (folded as registration folds it: any
        case, fullwidth look-alikes), or ``None``."""
        normalized = fold_email(email)
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
    ) -> Page[ListedUser]:
        """Every user, erased ones included, oldest registration first (admin only:
        403 otherwise)."""
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
        return Page[ListedUser](
            items=[ListedUser.of(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )
