"""Login credentials as the write model has them now.

The users read model finds a user by email, but may be a moment behind on what a login
decides on: right after a password change the old password would still sign in, after
a role change a token would carry the old role (and be refused at its first use), after
a deactivation a token would still be issued, after an email change the old email would
still sign in, and after an erasure the erased person would. So a login takes the
password hash, role and active flag from the write model's user
(``commands.admission``), as every request after it does, and a user the write model no
longer knows by that email (changed, or erased) is no one.
"""

from __future__ import annotations

from aggregates.user import User
from commands.admission import Admission
from projections.database import ReadDatabase
from queries.users import UserCredentials, UserQueries


class CurrentCredentials(UserQueries):
    """:class:`UserQueries` whose :meth:`credentials_by_email` answers the write
    model's password hash, role and active flag."""

    def __init__(self, database: ReadDatabase, admission: Admission) -> None:
        super().__init__(database)
        self._admission = admission

    def credentials_by_email(self, email: str) -> UserCredentials | None:
        found = super().credentials_by_email(email)
        if found is None:
            return None

        def current(user: User) -> UserCredentials | None:
            if user.erased or user.email != found.email or user.password_hash is None:
                return None
            return found.model_copy(
                update={
                    "role": user.role,
                    "active": user.active,
                    "password_hash": user.password_hash,
                }
            )

        return self._admission.look_at(found.id, current)
