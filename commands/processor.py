"""How every command runs: load, decide, save everything in one transaction.

A command handler gives :meth:`CommandProcessor.execute` a ``decide`` function. Each
attempt gets a fresh :class:`UnitOfWork`; the aggregates it loaded or created are saved
together in one ``save()`` — one database transaction. When a concurrent writer got
there first (the event store refuses a version twice), the attempt is thrown away and
``decide`` runs again on fresh state, at most ``conflict_retries_max`` times.

Idempotency: with an idempotency key, the first successful attempt also saves an
``IdempotencyRecord`` holding a hash of the request and the result, in the same
transaction. A retry with the same key and request returns that result and appends
nothing; a different request under the key is refused. Keys are scoped: a user's keys
are theirs alone; a command nobody signed in for (registration) names its own scope (the
email it claims), so one anonymous client can neither obtain nor block another's result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import IntegrityError
from pydantic import BaseModel, ConfigDict

from aggregates.base import recording_metadata
from aggregates.errors import ConcurrencyConflict, DomainError
from aggregates.idempotency import (
    IdempotencyRecord,
    check_idempotency_key,
    key_message,
    scope_message,
)
from aggregates.user import User
from commands.context import SYSTEM_ROLE, Actor, CommandContext
from commands.observers import CommandObserver, IgnoreCommands
from commands.store import CommandStore
from commands.unit_of_work import UnitOfWork
from prep_es.store.known_copies import KNOWN_AGGREGATES_MAX, KnownAggregates

logger = logging.getLogger(__name__)

TResult = TypeVar("TResult", bound=BaseModel)


@dataclass(frozen=True)
class Executed(Generic[TResult]):
    """A command's result and the event store position its events reached.
    ``replayed`` is true when an idempotency key returned an earlier result."""

    result: TResult
    position: int
    replayed: bool = False


class AggregateTarget(BaseModel):
    """The request of a command that only names the aggregate it acts on (a sweep's
    transition, a payment submitted after its top-up): what it logs and hashes."""

    model_config = ConfigDict(frozen=True)

    aggregate_id: UUID


SECRET_ARGUMENTS = {"password", "current_password", "new_password"}


def request_body(command_name: str, request: BaseModel) -> bytes:
    """What makes two requests "the same" under one key, to be hashed with the store's
    secret (a plain hash would let anyone holding the store confirm a guessed email or
    note). Secrets stay out all the same. A command with a secret compares it on a
    replay instead (``check_replay`` of :meth:`CommandProcessor.execute`), against what
    it stored of it (a password hash)."""
    document = {
        "command": command_name,
        "request": request.model_dump(mode="json", exclude=SECRET_ARGUMENTS),
    }
    try:
        body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # orjson refuses an integer past 64 bits, which a client may send (10**20
        # guests) before the domain refuses it. The standard library encodes any
        # integer, deterministically; one request always takes the same path, so its
        # hash stays the same on a retry.
        body = json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    return body


@dataclass(frozen=True)
class _Replaying(Generic[TResult]):
    """How a command's idempotency keys are scoped and its replays checked (see
    :meth:`CommandProcessor.execute`)."""

    anonymous_scope: str | None
    check: Callable[[UnitOfWork, TResult], None] | None

    def owner(self, actor: Actor | None) -> str:
        """Whose keys these are: the user's, or for an anonymous command the scope it
        names: never one namespace shared by every anonymous client."""
        if actor is not None:
            return str(actor.user_id)
        assert self.anonymous_scope, "an anonymous command with a key names its scope"
        return f"anonymous:{self.anonymous_scope}"


def _admit(unit: UnitOfWork, actor: Actor | None) -> None:
    """A user's command stands on the user being active in the role their token claims,
    with that token not revoked, as the write model has them: the user is read like any
    aggregate the decision reads, so a deactivation, role change or revocation
    committed meanwhile refuses the commit, and the next attempt reads it.
    (Authentication checked this process's copy of the user, which another process's
    change may reach a moment later.)"""
    if actor is None or actor.role == SYSTEM_ROLE:
        return
    user = unit.get(User, actor.user_id, not_found_code="user_not_found")
    user.check_acts_as(actor.role, token_id=actor.token_id, issued_at_us=actor.token_issued_at_us)


class CommandProcessor:
    """Runs commands with bounded conflict retries and idempotency.

    The first attempt is optimistic: it does not look the idempotency key up (the
    record is saved with the command's events, so a key used before makes the commit
    fail) and starts from this process's last known copy of each aggregate (see
    ``KnownAggregates``). A lost race costs one retry, which reads everything fresh.
    """

    def __init__(
        self,
        store: CommandStore,
        *,
        conflict_retries_max: int,
        known_aggregates_max: int = KNOWN_AGGREGATES_MAX,
    ) -> None:
        assert conflict_retries_max >= 0
        self.store = store
        self.conflict_retries_max = conflict_retries_max
        self.known = KnownAggregates(known_aggregates_max)
        self.conflicts_total = 0
        self.observer: CommandObserver = IgnoreCommands()

    def current_position(self) -> int:
        return self.store.position()

    def execute(
        self,
        command_name: str,
        context: CommandContext,
        request: BaseModel,
        result_type: type[TResult],
        decide: Callable[[UnitOfWork], TResult],
        *,
        read_ahead: Sequence[UUID] = (),
        anonymous_scope: str | None = None,
        check_replay: Callable[[UnitOfWork, TResult], None] | None = None,
    ) -> Executed[TResult]:
        """``read_ahead``: aggregates ``decide`` is likely to read, fetched together
        with the actor's user (see :meth:`UnitOfWork.read_ahead`).

        ``anonymous_scope``: whose idempotency keys these are when no user issues the
        command (``context.actor`` is ``None``): what the command is about to claim for
        one client alone, such as the email registered. Required with a key then.

        ``check_replay``: called with an earlier result before a retry gets it, to
        compare what the request hash leaves out (secrets); raises
        ``IdempotencyKeyReused`` when they differ."""
        try:
            executed = self._execute(
                command_name,
                context,
                request,
                result_type,
                decide,
                read_ahead,
                _Replaying(anonymous_scope, check_replay),
            )
        except DomainError as error:
            self.observer.command_finished(command_name, error.code)
            raise
        self.observer.command_finished(command_name, "replayed" if executed.replayed else "ok")
        return executed

    def _execute(
        self,
        command_name: str,
        context: CommandContext,
        request: BaseModel,
        result_type: type[TResult],
        decide: Callable[[UnitOfWork], TResult],
        read_ahead: Sequence[UUID],
        replaying: _Replaying[TResult],
    ) -> Executed[TResult]:
        key = context.idempotency_key
        actor = context.actor
        if actor is not None and actor.role != SYSTEM_ROLE:
            read_ahead = [actor.user_id, *read_ahead]
        record_id: UUID | None = None
        scope = key_digest = ""
        fingerprint = ""
        if key is not None:
            check_idempotency_key(key)
            # Kept and looked up as keyed hashes: a registration's scope names the email's
            # claim, which the record must not tie to the user it created.
            scope = self.store.keyed_digest(
                scope_message(f"{replaying.owner(context.actor)}:{command_name}")
            )
            key_digest = self.store.keyed_digest(key_message(key))
            record_id = IdempotencyRecord.create_id(scope=scope, key=key_digest)
            # Keyed over the plain hash, so a store written before fingerprints were
            # keyed can be migrated: its plain hashes are keyed the same way.
            plain = hashlib.sha256(request_body(command_name, request)).digest()
            fingerprint = self.store.keyed_digest(plain)

        retry_reason = ""
        with recording_metadata(context.metadata()):
            for attempt in range(self.conflict_retries_max + 1):
                optimistic = attempt == 0
                if not optimistic:
                    self.observer.command_retried(command_name, retry_reason)
                unit = UnitOfWork(self.store, self.known, optimistic=optimistic)
                if record_id is not None and not optimistic:
                    replayed = self._replay(record_id, fingerprint, result_type, replaying)
                    if replayed is not None:
                        return replayed
                try:
                    unit.read_ahead(read_ahead)
                    _admit(unit, context.actor)
                    result = decide(unit)
                except DomainError:
                    if optimistic and (unit.started_from_known_copy or key is not None):
                        # Decided on a possibly stale copy, or the key was used before
                        # and its effects now refuse ours (the slot is taken): decide
                        # again on fresh state, which also looks the key up.
                        retry_reason = "stale_copy"
                        continue
                    # A concurrent first use of the key may have committed after our
                    # lookup. The key's owner gets the original result, not the refusal.
                    if record_id is not None:
                        replayed = self._replay(record_id, fingerprint, result_type, replaying)
                        if replayed is not None:
                            return replayed
                    raise
                if key is not None:
                    unit.add(
                        IdempotencyRecord(
                            scope=scope,
                            key=key_digest,
                            request_hash=fingerprint,
                            result=result.model_dump(mode="json"),
                            subject_id=(subject := _subject_of(context, result)),
                            joint_subject_ids=_people_named_by(result, subject),
                        )
                    )
                try:
                    position = unit.commit()
                    if position is None and unit.started_from_known_copy:
                        # Nothing to commit means nothing validated the copies the
                        # decision came from: decide again on fresh state.
                        retry_reason = "stale_copy"
                        continue
                except IntegrityError:
                    self.conflicts_total += 1
                    self.observer.command_conflicted(command_name)
                    retry_reason = "write_conflict"
                    logger.debug(
                        "command %s attempt %d lost a write race; retrying",
                        command_name,
                        attempt + 1,
                    )
                    continue
                return Executed(
                    result=result,
                    position=self.current_position() if position is None else position,
                )
        raise ConcurrencyConflict(
            f"{command_name} kept conflicting with concurrent changes; try again"
        )

    def _replay(
        self,
        record_id: UUID,
        fingerprint: str,
        result_type: type[TResult],
        replaying: _Replaying[TResult],
    ) -> Executed[TResult] | None:
        """The stored result of an earlier use of the key, if there was one, with the
        position it had: the record is the last aggregate its command saved, so its
        event is the last that command stored (should the store not find it, the
        current position, also past the command's). Read from the events table alone:
        records are never snapshotted."""
        events = self.store.events.get(record_id)
        record = project_aggregate(None, events)
        if record is None:
            return None
        assert isinstance(record, IdempotencyRecord)
        result = result_type.model_validate(record.check_same_request(fingerprint))
        if replaying.check is not None:
            replaying.check(UnitOfWork(self.store, self.known, optimistic=False), result)
        position = self.store.position_of(record_id, record.version)
        return Executed(
            result=result,
            position=self.current_position() if position is None else position,
            replayed=True,
        )


def _people_named_by(result: BaseModel, subject: UUID | None) -> list[UUID]:
    """The people whose personal data ``result`` holds besides ``subject``: the fields a
    result type names in ``PERSONAL_SUBJECTS`` (a booking's customer, for its notes)."""
    fields: tuple[str, ...] = getattr(type(result), "PERSONAL_SUBJECTS", ())
    people = (getattr(result, field) for field in fields)
    return [person for person in dict.fromkeys(people) if person is not None and person != subject]


def _subject_of(context: CommandContext, result: BaseModel) -> UUID | None:
    """Whose personal data a command's result may hold: the caller's, or for a caller
    not signed in (a registration) the user the command created."""
    if context.actor is not None:
        return context.actor.user_id
    created = getattr(result, "id", None)
    return created if isinstance(created, UUID) else None
