"""The console's SVG charts, alone: XML whatever the labels say, one bar per value and
series, bars proportional to their values and never negative; empty data, one point,
all zeros and huge values; the axis's scale and tick labels."""

from __future__ import annotations

from decimal import Decimal
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.console.charts import (
    BAR_MARGIN_LEFT,
    BAR_MARGIN_RIGHT,
    BAR_WIDTH,
    COLUMN_HEIGHT,
    COLUMN_MARGIN_BOTTOM,
    COLUMN_MARGIN_TOP,
    STEPS_MAX,
    Series,
    bar_chart,
    column_chart,
    compact_number,
    nice_scale,
    percent,
    text,
)

SVG = "{http://www.w3.org/2000/svg}"
COLUMN_PLOT_HEIGHT = COLUMN_HEIGHT - COLUMN_MARGIN_TOP - COLUMN_MARGIN_BOTTOM
BAR_PLOT_WIDTH = BAR_WIDTH - BAR_MARGIN_LEFT - BAR_MARGIN_RIGHT
ROUNDING = 0.006
"""Lengths are written with two decimals."""

amounts = st.decimals(
    min_value=0, max_value=Decimal(10) ** 18, places=2, allow_nan=False, allow_infinity=False
)
labels_text = st.text(max_size=40)


def parsed(markup: str) -> ElementTree.Element:
    return ElementTree.fromstring(markup)


def bars(svg: ElementTree.Element) -> dict[str, list[ElementTree.Element]]:
    return {
        group.attrib["data-series"]: group.findall(f"{SVG}rect")
        for group in svg.iter(f"{SVG}g")
        if group.attrib.get("class") == "bars"
    }


def column(labels: list[str], *series: list[Decimal]) -> str:
    return column_chart(
        chart_id="test-chart",
        title="Revenue <by day>",
        description='GMV & "platform" revenue',
        labels=labels,
        series=[
            Series(f"series {index}", values, fill="solid" if index == 0 else "hatched")
            for index, values in enumerate(series)
        ],
    )


def assert_proportional(lengths: list[float], values: list[Decimal], full: float) -> None:
    assert all(length >= 0 for length in lengths)
    assert all(length <= full + ROUNDING for length in lengths)
    largest = max(values, default=Decimal(0))
    if largest == 0:
        assert all(length == 0 for length in lengths)
        return
    # Each length over the largest bar's is its value over the largest value.
    longest = max(lengths)
    assert longest > 0
    for length, value in zip(lengths, values, strict=True):
        expected = float(value / largest) * longest
        assert abs(length - expected) <= 2 * ROUNDING + longest * 1e-9, (length, expected)


@given(
    st.lists(st.tuples(labels_text, amounts, amounts), max_size=60),
)
def test_column_charts_are_xml_with_proportional_bars(
    points: list[tuple[str, Decimal, Decimal]],
) -> None:
    labels = [label for label, _, _ in points]
    gmv = [value for _, value, _ in points]
    platform = [value for _, _, value in points]
    svg = parsed(column(labels, gmv, platform))
    assert svg.attrib["role"] == "img"
    assert svg.find(f"{SVG}title") is not None
    assert svg.find(f"{SVG}desc") is not None
    found = bars(svg)
    if not points:
        assert found == {}
        return
    assert {name: len(rects) for name, rects in found.items()} == {
        "0": len(points),
        "1": len(points),
    }
    heights = [float(rect.attrib["height"]) for rect in found["0"] + found["1"]]
    assert_proportional(heights, gmv + platform, COLUMN_PLOT_HEIGHT)
    # Bars stand on the axis.
    bottoms = {
        round(float(rect.attrib["y"]) + float(rect.attrib["height"]), 1)
        for rect in found["0"] + found["1"]
    }
    assert bottoms == {float(COLUMN_HEIGHT - COLUMN_MARGIN_BOTTOM)}


@given(st.lists(st.tuples(labels_text, amounts), max_size=40))
def test_bar_charts_are_xml_with_proportional_bars(items: list[tuple[str, Decimal]]) -> None:
    labels = [label for label, _ in items]
    values = [value for _, value in items]
    svg = parsed(
        bar_chart(
            chart_id="bars",
            title="Top kitchens",
            description="A ranking",
            labels=labels,
            series=Series("Revenue", values),
        )
    )
    rects = bars(svg).get("0", [])
    assert len(rects) == len(items)
    widths = [float(rect.attrib["width"]) for rect in rects]
    assert_proportional(widths, values, BAR_PLOT_WIDTH)


@given(st.lists(st.decimals(min_value=0, max_value=1, places=4), max_size=30))
def test_shares_are_drawn_against_the_whole(shares: list[Decimal]) -> None:
    svg = parsed(
        bar_chart(
            chart_id="shares",
            title="Occupancy",
            description="Shares",
            labels=[f"kitchen {index}" for index in range(len(shares))],
            series=Series("Occupancy", shares),
            value_label=percent,
            maximum=Decimal(1),
        )
    )
    for rect, share in zip(bars(svg).get("0", []), shares, strict=True):
        assert abs(float(rect.attrib["width"]) - float(share) * BAR_PLOT_WIDTH) <= ROUNDING
    assert "100 %" in [element.text for element in svg.iter(f"{SVG}text")]


def test_every_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & \x01\x0b\ufffe'
    markup = column([hostile], [Decimal(5)])
    assert "<script>" not in markup
    svg = parsed(markup)
    texts = [element.text for element in svg.iter(f"{SVG}text")]
    assert '<script>alert("x")</script> & ' in texts
    assert svg.findtext(f"{SVG}title") == "Revenue <by day>"
    assert svg.findtext(f"{SVG}desc") == 'GMV & "platform" revenue'
    assert text("a\x00b") == "ab"


def test_a_chart_is_named_by_its_title_and_described_by_its_desc() -> None:
    svg = parsed(column(["a"], [Decimal(1)]))
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None and desc is not None
    # The long description is not part of the name a screen reader announces.
    assert svg.attrib["aria-labelledby"] == title.attrib["id"] == "test-chart-title"
    assert svg.attrib["aria-describedby"] == desc.attrib["id"] == "test-chart-desc"


def test_empty_data_one_point_all_zeros_and_huge_values() -> None:
    empty = parsed(column([], [], []))
    assert bars(empty) == {}
    assert "No data" in [element.text for element in empty.iter(f"{SVG}text")]

    one = bars(parsed(column(["2030-01-06"], [Decimal("840.00")], [Decimal("84.00")])))
    assert [len(rects) for rects in one.values()] == [1, 1]
    assert float(one["0"][0].attrib["height"]) > float(one["1"][0].attrib["height"]) > 0

    zeros = bars(parsed(column(["a", "b"], [Decimal(0)] * 2, [Decimal(0)] * 2)))
    assert {rect.attrib["height"] for rects in zeros.values() for rect in rects} == {"0.00"}

    huge = Decimal(10) ** 30
    svg = parsed(column(["a", "b"], [huge, huge / 2]))
    heights = [float(rect.attrib["height"]) for rect in bars(svg)["0"]]
    assert heights[0] == pytest.approx(2 * heights[1], abs=ROUNDING)
    assert "1E+30" in [element.text for element in svg.iter(f"{SVG}text")]


def test_a_chart_refuses_values_it_cannot_draw() -> None:
    for bad in (Decimal(-1), Decimal("NaN"), Decimal("Infinity"), float("inf")):
        with pytest.raises(AssertionError):
            column(["a"], [bad])  # type: ignore[list-item]
    with pytest.raises(AssertionError):
        column(["a", "b"], [Decimal(1)])  # one value per label


@given(st.decimals(min_value=0, max_value=Decimal(10) ** 20, places=4))
def test_the_scale_is_the_tightest_of_at_most_five_nice_steps(largest: Decimal) -> None:
    scale = nice_scale(largest)
    assert scale.maximum >= largest
    ticks = scale.ticks()
    assert ticks[0] == 0 and ticks[-1] == scale.maximum
    assert 1 <= len(ticks) - 1 <= STEPS_MAX
    if largest > 0:
        assert scale.maximum - scale.step < largest
        digits = scale.step.normalize().as_tuple().digits
        assert digits in ((1,), (2,), (5,))


@given(st.integers(min_value=0, max_value=10**12))
def test_counts_are_scaled_in_whole_numbers(largest: int) -> None:
    scale = nice_scale(Decimal(largest), whole_numbers=True)
    assert scale.step >= 1 and scale.step == scale.step.to_integral_value()
    assert scale.maximum >= largest
    assert len(scale.ticks()) - 1 <= STEPS_MAX


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (Decimal(0), "0"),
        (Decimal("0.25"), "0.25"),
        (Decimal(850), "850"),
        (Decimal(2500), "2,500"),
        (Decimal(12_500), "12.5k"),
        (Decimal(3_000_000), "3M"),
        (Decimal(4_250_000_000), "4.25B"),
        (Decimal(10) ** 13, "10T"),
        (Decimal(3) * Decimal(10) ** 16, "3E+16"),
    ],
)
def test_tick_labels_are_short(value: Decimal, label: str) -> None:
    assert compact_number(value) == label


@pytest.mark.parametrize(
    ("share", "label"),
    [
        (Decimal(0), "0 %"),
        (Decimal("0.5"), "50 %"),
        (Decimal("0.125"), "12.5 %"),
        (Decimal(1), "100 %"),
        (0.0278, "2.78 %"),  # a float as the read models give it, without binary noise
        (0.5, "50 %"),
    ],
)
def test_percentages_have_at_most_two_decimals(share: Decimal | float, label: str) -> None:
    assert percent(share) == label
