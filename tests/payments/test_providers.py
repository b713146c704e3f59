"""Which provider a deployment opens, and what it costs a process that does not use
Stripe: nothing of the Stripe SDK is loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from prep_es.payments.providers import open_payment_provider
from prep_es.store.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_a_sandbox_process_never_loads_the_stripe_sdk(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from datetime import UTC, datetime
        import prep_es.app, prep_es.cli.parser, prep_es.worker
        from prep_es.payments.providers import open_payment_provider
        from prep_es.store.settings import Settings
        opened = open_payment_provider(
            Settings(database_url="sqlite:///{tmp_path / "store.db"}"),
            lambda: datetime.now(UTC),
        )
        assert opened.provider.name == "sandbox" and opened.sandbox is not None
        opened.close()
        assert "stripe" not in sys.modules, "the Stripe SDK was loaded"
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr


def test_a_stripe_deployment_opens_the_stripe_adapter(tmp_path: Path) -> None:
    opened = open_payment_provider(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'store.db'}",
            payments_provider="stripe",
            stripe_secret_key="sk_test_providers",
            stripe_webhook_secret="whsec_providers",
        ),
        lambda: datetime.now(UTC),
    )
    assert (opened.provider.name, opened.provider.test_mode, opened.sandbox) == (
        "stripe",
        True,
        None,
    )
    opened.close()
