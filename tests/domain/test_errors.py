"""Every domain error carries a stable code, and the tree maps to HTTP classes."""

from __future__ import annotations

import pytest

from aggregates.errors import (
    ActorNotAdmitted,
    BookingConflict,
    ConcurrencyConflict,
    DomainError,
    EmailTaken,
    ErasureBlocked,
    HoldNotPending,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidRequest,
    InvalidStateTransition,
    KitchenNotBookable,
    NotFound,
    PermissionDenied,
    StateConflict,
)

DEFAULT_CODES: dict[type[DomainError], tuple[str, type[DomainError]]] = {
    DomainError: ("domain_error", DomainError),
    InvalidRequest: ("invalid_request", DomainError),
    IdempotencyKeyReused: ("idempotency_key_reused", InvalidRequest),
    NotFound: ("not_found", DomainError),
    PermissionDenied: ("forbidden", DomainError),
    ActorNotAdmitted: ("user_inactive", DomainError),
    InsufficientFunds: ("insufficient_funds", DomainError),
    StateConflict: ("state_conflict", DomainError),
    BookingConflict: ("booking_conflict", StateConflict),
    KitchenNotBookable: ("kitchen_not_bookable", StateConflict),
    InvalidStateTransition: ("invalid_state_transition", StateConflict),
    EmailTaken: ("email_taken", StateConflict),
    ErasureBlocked: ("erasure_blocked", StateConflict),
    HoldNotPending: ("hold_not_pending", StateConflict),
    ConcurrencyConflict: ("concurrency_conflict", StateConflict),
}


def all_subclasses(cls: type[DomainError]) -> set[type[DomainError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= all_subclasses(sub)
    return found


def test_every_error_class_is_listed() -> None:
    in_errors_module = {
        c for c in all_subclasses(DomainError) if c.__module__ == "aggregates.errors"
    }
    assert in_errors_module == set(DEFAULT_CODES)


@pytest.mark.parametrize("error_class", list(DEFAULT_CODES), ids=lambda c: c.__name__)
def test_default_code_and_parent(error_class: type[DomainError]) -> None:
    code, parent = DEFAULT_CODES[error_class]
    error = error_class("detail")
    assert error.code == code
    assert error.detail == str(error) == "detail"
    assert isinstance(error, parent)
    assert error_class("detail", code="specific").code == "specific"
