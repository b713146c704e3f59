"""How the console shows a JSON value of a state or an event's fields."""

from __future__ import annotations

from api.console.values import value_html


def test_text_is_escaped_and_ids_of_aggregates_link_to_their_history() -> None:
    shown = value_html(
        {
            "name": "<script>alert(1)</script>",
            "kitchen_id": "5a41300b-7e40-45b3-9104-5ed479f0c870",
            "price_cents": 123456,
            "notes": "",
            "holds": [],
            "left": None,
            "instant": True,
        }
    )
    assert "<script>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert '<a href="/console/aggregates/5a41300b-7e40-45b3-9104-5ed479f0c870" class="id">' in shown
    assert '123456 <span class="hint">(1,234.56)</span>' in shown
    assert '<span class="none">empty text</span>' in shown
    assert '<span class="none">empty list</span>' in shown
    assert '<span class="none">none</span>' in shown
    assert "<dd>true</dd>" in shown


def test_a_hostile_id_field_is_escaped_inside_its_link() -> None:
    shown = value_html('"><img src=x onerror=alert(1)>', "booking_id")
    assert "<img" not in shown
    assert "&#34;&gt;&lt;img" in shown


def test_nested_lists_keep_their_field_name_for_links() -> None:
    shown = value_html(["5a41300b-7e40-45b3-9104-5ed479f0c870"], "kitchen_id")
    assert shown.startswith('<ul class="nested"><li><a href="/console/aggregates/')
