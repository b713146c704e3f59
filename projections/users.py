"""Users: who may sign in and with which role — read on every request by the API.

The row keeps the password hash because logging in reads it from here; queries expose
it only through ``UserQueries.credentials_by_email``. Emails are unique
case-insensitively (a unique index on ``lower(email)``; the write side already keeps
them unique and stores them lower-cased).

An erased user keeps their row (id, role, when they registered) with ``erased`` set
and their email, full name and password hash NULL: the admin listing still counts them,
nobody can sign in as them, and the unique index lets their email be registered again.
The events of an erased user read with those fields erased (``None``), so a rebuild
writes NULL from their registration on, and ends with the row an erasure leaves.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from aggregates.user import User
from projections.base import Projection, fold
from projections.database import Sql


def user_dependency(user_id: UUID) -> str:
    """The query-cache dependency of one user's row."""
    return f"user:{user_id}"


class UsersProjection(Projection):
    name: ClassVar[str] = "users"
    version: ClassVar[int] = 2
    """2: rectification and erasure (personal columns NULL once erased, ``erased``)."""
    tables: ClassVar[tuple[str, ...]] = ("users",)

    def create_tables(self, sql: Sql) -> None:
        users = self.table("users")
        sql.execute(
            f"CREATE TABLE {users} (id {self.column('id')} PRIMARY KEY, "
            "email text, full_name text, role text NOT NULL, "
            f"active {self.column('bool')} NOT NULL, password_hash text, "
            f"erased {self.column('bool')} NOT NULL, "
            f"registered_at {self.column('time')} NOT NULL, "
            f"updated_at {self.column('time')} NOT NULL, "
            f"version {self.column('int')} NOT NULL)"
        )
        sql.execute(f"CREATE UNIQUE INDEX {users}_email ON {users} (lower(email))")
        sql.execute(f"CREATE INDEX {users}_listing ON {users} (registered_at, id)")
        sql.execute(f"CREATE INDEX {users}_role ON {users} (role, registered_at, id)")

    @fold(User.UserRegistered)
    def _registered(self, event: User.UserRegistered, position: int, sql: Sql) -> None:
        self._user_changed(event)
        recorded_at = self.time_value(event.timestamp)
        sql.execute(
            f"INSERT INTO {self.table('users')} (id, email, full_name, role, active, "
            "password_hash, erased, registered_at, updated_at, version) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                event.email,
                event.full_name,
                event.role,
                True,
                event.password_hash,
                False,
                recorded_at,
                recorded_at,
                event.originator_version,
            ),
        )

    @fold(User.UserRoleChanged)
    def _role_changed(self, event: User.UserRoleChanged, position: int, sql: Sql) -> None:
        self._update(sql, event, role=event.role)

    @fold(User.UserDeactivated)
    def _deactivated(self, event: User.UserDeactivated, position: int, sql: Sql) -> None:
        self._update(sql, event, active=False)

    @fold(User.UserReactivated)
    def _reactivated(self, event: User.UserReactivated, position: int, sql: Sql) -> None:
        self._update(sql, event, active=True)

    @fold(User.PasswordChanged)
    def _password_changed(self, event: User.PasswordChanged, position: int, sql: Sql) -> None:
        self._update(sql, event, password_hash=event.password_hash)

    @fold(User.PasswordRehashed)
    def _password_rehashed(self, event: User.PasswordRehashed, position: int, sql: Sql) -> None:
        self._update(sql, event, password_hash=event.password_hash)

    @fold(User.FullNameChanged)
    def _full_name_changed(self, event: User.FullNameChanged, position: int, sql: Sql) -> None:
        self._update(sql, event, full_name=event.full_name)

    @fold(User.EmailChanged)
    def _email_changed(self, event: User.EmailChanged, position: int, sql: Sql) -> None:
        self._update(sql, event, email=event.email)

    @fold(User.UserErased)
    def _erased(self, event: User.UserErased, position: int, sql: Sql) -> None:
        self._update(
            sql,
            event,
            email=None,
            full_name=None,
            password_hash=None,
            active=False,
            erased=True,
        )

    def _user_changed(self, event: User.Event) -> None:
        """Query-cache dependencies: this user, and every listing."""
        self.changed.update((user_dependency(event.originator_id), self.name))

    def _update(self, sql: Sql, event: User.Event, **changes: Any) -> None:
        self._user_changed(event)
        changes["updated_at"] = self.time_value(event.timestamp)
        changes["version"] = event.originator_version
        assignments = ", ".join(f"{column} = %s" for column in changes)
        sql.execute(
            f"UPDATE {self.table('users')} SET {assignments} WHERE id = %s",
            (*changes.values(), self.id_value(event.originator_id)),
        )
