"""Kitchen search and detail answers are written by orjson straight from the read model
(``json_of``): byte for byte what the documented response models would serialize."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from api.queries.kitchens.schemas import KitchenDetailOut, KitchenPage, KitchenSummaryOut
from queries.base import Page
from queries.kitchens import KitchenCertificate, KitchenCompliance, KitchenDetail, KitchenSummary

texts = st.text(max_size=40)
zones = st.sampled_from(
    [
        UTC,
        ZoneInfo("Etc/UTC"),
        ZoneInfo("America/Los_Angeles"),
        timezone(timedelta(hours=5, minutes=30)),
    ]
)
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30), timezones=zones
)
dates = st.dates(min_value=date(1970, 1, 1), max_value=date(2999, 12, 31))
uuids = st.uuids()

summary_fields = {
    "id": uuids,
    "host_id": uuids,
    "name": texts,
    "city": texts,
    "jurisdiction": texts,
    "hourly_rate_cents": st.integers(min_value=0, max_value=10_000_000),
    "capacity": st.integers(min_value=1, max_value=50),
    "amenities": st.lists(texts, max_size=4),
    "instant_book": st.booleans(),
    "status": st.sampled_from(["draft", "pending_review", "published", "rejected", "suspended"]),
    "status_reason": st.none() | texts,
    "compliant_through": st.none() | dates,
    "created_at": times,
}
summaries = st.builds(KitchenSummary, **summary_fields)
certificates = st.builds(
    KitchenCertificate,
    id=uuids,
    kind=texts,
    number=texts,
    issued_on=dates,
    expires_on=dates,
    status=texts,
)
compliances = st.builds(
    KitchenCompliance,
    compliant=st.booleans(),
    compliant_through=st.none() | dates,
    required_kinds=st.lists(texts, max_size=3),
    missing_kinds=st.lists(texts, max_size=3),
    expired_kinds=st.lists(texts, max_size=3),
    certificates=st.lists(certificates, max_size=4),
)
details = st.builds(
    KitchenDetail,
    **summary_fields,
    description=texts,
    address=texts,
    status_changed_at=times,
    updated_at=times,
    version=st.integers(min_value=1, max_value=10**6),
    compliance=compliances,
)


@settings(max_examples=200)
@given(
    items=st.lists(summaries, max_size=5),
    total=st.integers(min_value=0, max_value=10**6),
    limit=st.integers(min_value=1, max_value=100),
    offset=st.integers(min_value=0, max_value=10**6),
)
def test_a_search_page_is_written_as_the_response_model_would(
    items: list[KitchenSummary], total: int, limit: int, offset: int
) -> None:
    page = Page[KitchenSummary](items=items, total=total, limit=limit, offset=offset)
    assert (
        KitchenPage.json_of(page)
        == KitchenPage.of(page, KitchenSummaryOut.of).model_dump_json().encode()
    )


@settings(max_examples=200)
@given(detail=details)
def test_a_kitchen_is_written_as_the_response_model_would(detail: KitchenDetail) -> None:
    expected = KitchenDetailOut.of_detail(detail).model_dump_json().encode()
    assert KitchenDetailOut.json_of(detail) == expected


def test_constructed_read_model_rows_are_written_alike() -> None:
    """PostgreSQL rows become summaries without validation (``model_construct``)."""
    row: dict[str, Any] = {
        "id": UUID(int=1),
        "host_id": UUID(int=2),
        "name": "Sunset Bakery",
        "city": "Los Angeles",
        "jurisdiction": "los_angeles",
        "hourly_rate_cents": 12050,
        "capacity": 8,
        "amenities": ["oven", "walk-in fridge"],
        "instant_book": True,
        "status": "published",
        "status_reason": None,
        "compliant_through": date(2031, 12, 31),
        "created_at": datetime(2030, 1, 7, 17, 0, 0, 123, tzinfo=ZoneInfo("Etc/UTC")),
    }
    constructed = KitchenSummary.model_construct(**row)
    validated = KitchenSummary.model_validate(row)
    page = Page[KitchenSummary](items=[constructed], total=1, limit=20, offset=0)
    same = Page[KitchenSummary](items=[validated], total=1, limit=20, offset=0)
    assert (
        KitchenPage.json_of(page)
        == KitchenPage.of(same, KitchenSummaryOut.of).model_dump_json().encode()
    )
