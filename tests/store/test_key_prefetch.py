"""Reading many people's data keys at once, on both backends: what a reader about to
open a page of many people's fields does before it opens them."""

from __future__ import annotations

from uuid import uuid4

from prep_es.store.eventstore import PrepApplication, datastore_of
from prep_es.store.personal_keys import PREFETCH_SUBJECTS_MAX, DataKeys


def test_prefetch_caches_kept_erased_and_unknown_keys_alike(
    application: PrepApplication,
) -> None:
    writer = application.data_keys
    kept = [uuid4() for _ in range(PREFETCH_SUBJECTS_MAX + 3)]  # more than one query's
    keys = {subject: writer.for_writing(subject) for subject in kept}
    erased, unknown = uuid4(), uuid4()
    writer.for_writing(erased)
    writer.destroy(erased)

    reader = DataKeys(datastore_of(application), writer.key_ring)
    reader.prefetch([*kept, erased, unknown, kept[0]])
    # Destroyed behind the reader's back: what it prefetched is what it reads, from its
    # cache, until the cache's time is up.
    for subject in (*kept, unknown):
        writer.destroy(subject)
    assert {subject: reader.for_reading(subject) for subject in kept} == keys
    assert reader.for_reading(erased) is None
    assert reader.for_reading(unknown) is None
    assert DataKeys(datastore_of(application), writer.key_ring).for_reading(kept[0]) is None
