"""The user commands a request runs with more than the write model: those where a user
enters their current password again, its wrong guesses limited
(:class:`~prep_es.services.auth.CurrentPasswordLimit`), and erasures, which take their
leads from the read models (:class:`ReadModelLeads`)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from commands import Commands
from commands.context import CommandContext
from commands.erasure import EraseMe, EraseUser, ErasureLeadReader, ErasureLeads, ErasureState
from commands.processor import Executed
from commands.profile import ChangeProfile
from commands.users import ChangePassword, UserState
from prep_es.services.auth import CurrentPasswordLimit
from queries.consistency import ReadPositions
from queries.erasure import LEAD_PROJECTIONS, ErasureLeadQueries


@dataclass(frozen=True)
class ReadModelLeads:
    """An erasure's leads from the read models, once each has applied the position the
    erasure asks for (at most ``wait_s``, then ``ReadModelBehind``: 503)."""

    queries: ErasureLeadQueries
    positions: ReadPositions
    wait_s: float

    def leads(self, user_id: UUID, *, position: int) -> ErasureLeads:
        for name in LEAD_PROJECTIONS:
            self.positions.wait_for(name, position, self.wait_s)
        return self.queries.leads(user_id)


@dataclass(frozen=True)
class UserChanges:
    commands: Commands
    current_passwords: CurrentPasswordLimit
    leads: ErasureLeadReader

    def change_password(
        self, command: ChangePassword, context: CommandContext
    ) -> Executed[UserState]:
        return self.current_passwords.run(self.commands.users.change_password, command, context)

    def change_profile(
        self, command: ChangeProfile, context: CommandContext
    ) -> Executed[UserState]:
        """Limited only with a current password to check: a name alone guesses nothing."""
        if command.current_password is None:
            return self.commands.profile.change_profile(command, context)
        return self.current_passwords.run(self.commands.profile.change_profile, command, context)

    def erase_me(self, command: EraseMe, context: CommandContext) -> Executed[ErasureState]:
        return self.current_passwords.run(self._erase_me, command, context)

    def _erase_me(self, command: EraseMe, context: CommandContext) -> Executed[ErasureState]:
        return self.commands.erasure.erase_me(command, context, self.leads)

    def erase_user(self, command: EraseUser, context: CommandContext) -> Executed[ErasureState]:
        return self.commands.erasure.erase_user(command, context, self.leads)
