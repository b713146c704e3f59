"""How the console shows a JSON value of a state or an event's fields."""

from __future__ import annotations

from api.console.values import history_link, value_html


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


def test_a_history_link_encodes_the_id_in_its_path_and_escapes_its_text() -> None:
    assert history_link("a/b?c") == ('<a href="/console/aggregates/a%2Fb%3Fc" class="id">a/b?c</a>')
    assert history_link("k-1", "<Sunset>") == '<a href="/console/aggregates/k-1">&lt;Sunset&gt;</a>'
    assert history_link("k-1", named="Sunset & Co") == (
        '<a href="/console/aggregates/k-1" class="id">'
        '<span class="visually-hidden">History of Sunset &amp; Co: </span>k-1</a>'
    )
