"""A data key wrapped by a master key this process does not have, met while serving: the
rotation run in place (``prep-es keys rotate``) before this process was restarted with
the new key. No client can fix that: every request about the person is a 503 naming
no key, the cause logged for the operator, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from aggregates.user import User
from prep_es.store.eventstore import open_application
from prep_es.store.personal_keys import MasterKey
from tests.api.conftest import assert_problem, minted_token
from tests.support import store_settings


def test_a_data_key_under_a_master_key_this_process_lacks_is_a_503(
    database_url: str,
    serve: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    client = serve(master_key=old.encoded())
    rotated = open_application(
        store_settings(database_url, master_key=new.encoded(), previous_master_key=old.encoded())
    )
    rotated.data_keys.rewrap_all()
    admin = User.register(
        email="rotated.admin@example.com",
        full_name="Rotated Admin",
        role="admin",
        password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$not-a-real-hash",
    )
    rotated.save(admin)  # its data key wrapped by the new master key
    rotated.close()

    response = client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {minted_token(admin.id, 'admin')}"}
    )

    assert_problem(response, 503, "master_key_unavailable")
    assert response.headers["Retry-After"]
    assert new.key_id not in response.text
    assert any(new.key_id in record.getMessage() for record in caplog.records)
