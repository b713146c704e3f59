"""A destroyed data key leaves no trace in the embedded database's files: neither in
the file's free space nor in its write-ahead log, where SQLite keeps pages as they were
(a copy of the files and the master key would otherwise open the key again)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from uuid import uuid4

from prep_es.store.eventstore import open_application
from prep_es.store.settings import Settings


def stored_files(database: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(database.parent.glob(f"{database.name}*")))


def wrapped_key(database: Path, subject: object) -> bytes | None:
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT wrapped_key FROM personal_data_keys WHERE subject_id = ?", (str(subject),)
        ).fetchone()
    assert row is not None
    return None if row[0] is None else bytes(row[0])


def test_a_destroyed_key_leaves_no_trace_in_the_files(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    app = open_application(Settings(database_url=f"sqlite:///{database}"))
    try:
        keys = app.data_keys
        erased, kept = uuid4(), uuid4()
        keys.for_writing(erased)
        keys.for_writing(kept)
        wrapped = wrapped_key(database, erased)
        assert wrapped is not None
        # The key's page in the file itself, not only in the log.
        with sqlite3.connect(database) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert wrapped in stored_files(database)

        app.destroy_personal_data(erased)

        assert wrapped_key(database, erased) is None
        assert wrapped not in stored_files(database)
        assert keys.for_reading(erased) is None
        assert keys.for_reading(kept) is not None
    finally:
        app.close()


def test_a_rewrapped_key_leaves_no_trace_of_its_former_wrapping(tmp_path: Path) -> None:
    """After a master key's rotation, the data keys wrapped by the old one are gone
    from the files: whoever kept the old master key opens nothing with it."""
    database = tmp_path / "store.db"
    app = open_application(Settings(database_url=f"sqlite:///{database}"))
    subject = uuid4()
    try:
        app.data_keys.for_writing(subject)
        formerly = wrapped_key(database, subject)
        assert formerly is not None
    finally:
        app.close()
    old_key = Path(f"{database}.master-key").read_text().strip()
    new_key = Path(f"{database}.master-key")
    new_key.unlink()
    reopened = open_application(
        Settings(database_url=f"sqlite:///{database}", previous_master_key=old_key)
    )
    try:
        assert reopened.data_keys.rewrap_all() == 1
        assert wrapped_key(database, subject) not in (None, formerly)
        assert formerly not in stored_files(database)
        assert reopened.data_keys.for_reading(subject) is not None
    finally:
        reopened.close()
