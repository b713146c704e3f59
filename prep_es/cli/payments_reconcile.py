"""``prep-es payments reconcile``: the payment provider's records against the ledger."""

from __future__ import annotations

import argparse

from aggregates.policies import format_money
from prep_es.cli.terminal import EXIT_FAILED, EXIT_OK, print_json
from prep_es.services.reconciliation import Difference, reconcile
from prep_es.services.runtime import open_runtime
from prep_es.store.settings import Settings


def run_payments_reconcile(arguments: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    try:
        result = reconcile(runtime.app, runtime.payments, arguments.since)
    finally:
        runtime.close()
    status = EXIT_FAILED if result.differences else EXIT_OK
    if arguments.json:
        print_json(result)
        return status
    mode = " (test mode)" if result.test_mode else ""
    since = "" if result.since is None else f" since {result.since.isoformat()}"
    print(
        f"reconciled with {result.provider}{mode}{since}: {result.payments_checked} "
        f"payment(s), {result.transfers_checked} transfer(s), "
        f"{len(result.differences)} difference(s)"
    )
    for difference in result.differences:
        print("  " + describe(difference))
    return status


def describe(difference: Difference) -> str:
    amounts = ", ".join(
        f"{side} {format_money(cents)}"
        for side, cents in (
            ("ledger", difference.ledger_cents),
            ("provider", difference.provider_cents),
        )
        if cents is not None
    )
    return (
        f"{difference.kind:<24} {difference.subject} {difference.id or '-'} "
        f"({difference.reference or 'no provider reference'}): {difference.detail}"
        + (f"; {amounts}" if amounts else "")
    )
