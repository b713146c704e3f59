"""Charts drawn on the server, as inline SVG: no script, nothing fetched, and readable
without colour.

Pure functions from labels and series of numbers to SVG markup. Every text that goes
in (titles, labels, series names) is escaped, and characters XML cannot hold are left
out, so a kitchen named ``<b>&"`` is text in the chart and the chart stays XML. Each
chart is an ``<svg role="img">`` named by its ``<title>`` and summarised by its
``<desc>`` (the page puts the same numbers in a table beside it); its series differ
by fill pattern and outline as well as colour, and a legend names them.

Bars are proportional: a bar's length is its value over the axis's maximum (the
largest value rounded up to a whole number of steps of 1, 2 or 5 times a power of ten)
times the plot's length, never negative. Empty data, one point, all zeros and huge values all draw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Final, Literal

from markupsafe import Markup, escape

Number = Decimal | int | float
Fill = Literal["solid", "hatched"]
ValueLabel = Callable[[Decimal], str]

SVG_NAMESPACE: Final = "http://www.w3.org/2000/svg"
INK: Final = "#1b1f24"
ACCENT: Final = "#0b5cad"
GRID: Final = "#c9d1d9"
PAPER: Final = "#ffffff"
FONT_SIZE: Final = 12
STEPS_MAX: Final = 5
"""Steps between labelled ticks on a value axis, at most."""
NICE_STEPS: Final = (Decimal(1), Decimal(2), Decimal(5))
CATEGORY_LABELS_MAX: Final = 8
"""Labels written under a column chart's axis; between them, every n-th is left out
(the table beside the chart names every period)."""
NAME_LENGTH_MAX: Final = 24
"""Characters of a bar chart's label shown; the bar's tooltip has it whole."""

COLUMN_WIDTH: Final = 720
COLUMN_HEIGHT: Final = 340
COLUMN_MARGIN_LEFT: Final = 72
COLUMN_MARGIN_RIGHT: Final = 16
COLUMN_MARGIN_TOP: Final = 40
COLUMN_MARGIN_BOTTOM: Final = 40
COLUMN_GROUP_FILL: Final = 0.8
"""The share of a period's width its bars take; the rest is the gap between periods."""

BAR_WIDTH: Final = 720
BAR_ROW_HEIGHT: Final = 24
BAR_THICKNESS: Final = 16
BAR_MARGIN_LEFT: Final = 200
BAR_MARGIN_RIGHT: Final = 72
BAR_MARGIN_TOP: Final = 12
BAR_MARGIN_BOTTOM: Final = 48

# XML 1.0's characters: tab, newline, carriage return, and from U+0020 on, but not
# surrogates nor U+FFFE/U+FFFF.
_NOT_XML: Final = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SUFFIXES: Final = ((Decimal(10) ** 12, "T"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"))


@dataclass(frozen=True)
class Series:
    """One series of a chart: its name (in the legend), one value per label (finite,
    not negative), and how its bars are filled."""

    name: str
    values: Sequence[Number]
    fill: Fill = "solid"


def text(value: str) -> Markup:
    """``value`` as SVG text: escaped, characters XML cannot hold left out."""
    return escape(_NOT_XML.sub("", value))


def shortened(value: str, length_max: int = NAME_LENGTH_MAX) -> str:
    return value if len(value) <= length_max else value[: length_max - 1] + "…"


@dataclass(frozen=True)
class Scale:
    """A value axis: from 0 to ``maximum``, a labelled tick every ``step``."""

    maximum: Decimal
    step: Decimal

    def ticks(self) -> list[Decimal]:
        count = int((self.maximum / self.step).to_integral_value(rounding=ROUND_CEILING))
        return [self.step * index for index in range(count + 1)]


def nice_scale(largest: Decimal, *, whole_numbers: bool = False) -> Scale:
    """The axis for values up to ``largest``: a step of 1, 2 or 5 times a power of ten
    (at least 1 for ``whole_numbers``, such as counts), the least that needs at most
    :data:`STEPS_MAX` steps, and the maximum the first step not under ``largest``. From
    0 to 1 when there is nothing above zero."""
    if largest <= 0:
        return Scale(Decimal(1), Decimal(1) if whole_numbers else Decimal("0.2"))
    power = Decimal(10) ** (largest / STEPS_MAX).adjusted()
    if whole_numbers:
        power = max(power, Decimal(1))
    for step in (multiple * power * scale for scale in (1, 10) for multiple in NICE_STEPS):
        steps = (largest / step).to_integral_value(rounding=ROUND_CEILING)
        if steps <= STEPS_MAX:
            return Scale(step * steps, step)
    raise AssertionError(largest)  # 10 times the power is over largest / STEPS_MAX


def fixed_scale(maximum: Decimal) -> Scale:
    """An axis with a given end (1 for shares), in four steps."""
    assert maximum > 0
    return Scale(maximum, maximum / 4)


def compact_number(value: Decimal) -> str:
    """A tick's label, short whatever the size: ``850``, ``2,500``, ``12.5M``, ``3E+16``."""
    magnitude = abs(value)
    if magnitude >= Decimal(10) ** 15:
        return f"{value:.0E}"
    for scale, suffix in _SUFFIXES:
        if magnitude >= scale:
            return f"{_trimmed(value / scale)}{suffix}"
    if magnitude >= 10_000:
        return f"{_trimmed(value / 1000)}k"
    return _trimmed(value, grouped=True)


def _trimmed(value: Decimal, *, grouped: bool = False) -> str:
    """``value`` with at most two decimals, without trailing zeros."""
    rounded = f"{value:,.2f}" if grouped else f"{value:.2f}"
    return rounded.rstrip("0").rstrip(".") if "." in rounded else rounded


def percent(value: Decimal | float) -> str:
    """A share (0 to 1) as a percentage, at most two decimals: ``42.5 %``. The one
    percentage format of the console: charts use it, and templates as the ``percent``
    filter."""
    share = Decimal(repr(value)) if isinstance(value, float) else value
    return f"{_trimmed(share * 100)} %"


def _decimal(value: Number) -> Decimal:
    number = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    assert number.is_finite() and number >= 0, f"a chart's values are finite, not negative: {value}"
    return number


def _length(value: Decimal, maximum: Decimal, full: float) -> float:
    """A bar's length: ``value``'s share of ``maximum`` of ``full``, never negative."""
    return max(0.0, min(full, float(value / maximum) * full))


def _fill(chart_id: str, fill: Fill) -> str:
    return ACCENT if fill == "solid" else f"url(#{chart_id}-hatched)"


def _patterns(chart_id: str) -> str:
    return (
        f'<defs><pattern id="{chart_id}-hatched" patternUnits="userSpaceOnUse" '
        'width="6" height="6" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{PAPER}"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{INK}" stroke-width="2.5"/>'
        "</pattern></defs>"
    )


def _open(chart_id: str, width: int, height: int, title: str, description: str) -> str:
    return (
        f'<svg xmlns="{SVG_NAMESPACE}" class="chart" id="{chart_id}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{chart_id}-title" aria-describedby="{chart_id}-desc" '
        f'font-family="system-ui, sans-serif" font-size="{FONT_SIZE}">'
        f'<title id="{chart_id}-title">{text(title)}</title>'
        f'<desc id="{chart_id}-desc">{text(description)}</desc>'
        f"{_patterns(chart_id)}"
    )


def _checked_id(chart_id: str) -> str:
    assert re.fullmatch(r"[a-z][a-z0-9-]*", chart_id), chart_id
    return chart_id


def column_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    value_label: ValueLabel = compact_number,
    unit: str = "",
) -> Markup:
    """Vertical bars, one group per label with one bar per series side by side, a value
    axis with labelled ticks, category labels under the axis, and a legend."""
    chart_id = _checked_id(chart_id)
    assert series, "a chart has at least one series"
    values = [[_decimal(value) for value in one.values] for one in series]
    assert all(len(row) == len(labels) for row in values), "one value per label"
    scale = nice_scale(max((value for row in values for value in row), default=Decimal(0)))
    maximum = scale.maximum
    left, top = COLUMN_MARGIN_LEFT, COLUMN_MARGIN_TOP
    plot_width = COLUMN_WIDTH - COLUMN_MARGIN_LEFT - COLUMN_MARGIN_RIGHT
    plot_height = COLUMN_HEIGHT - COLUMN_MARGIN_TOP - COLUMN_MARGIN_BOTTOM
    bottom = top + plot_height
    parts = [_open(chart_id, COLUMN_WIDTH, COLUMN_HEIGHT, title, description)]

    parts.append('<g class="value-axis">')
    for tick in scale.ticks():
        y = bottom - _length(tick, maximum, plot_height)
        parts.append(
            f'<line x1="{left}" y1="{y:.2f}" x2="{left + plot_width}" y2="{y:.2f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.2f}" text-anchor="end" fill="{INK}">'
            f"{text(value_label(tick))}</text>"
        )
    if unit:
        parts.append(f'<text x="4" y="{top - 14}" fill="{INK}">{text(unit)}</text>')
    parts.append("</g>")

    if labels:
        group_width = plot_width / len(labels)
        bar_width = group_width * COLUMN_GROUP_FILL / len(series)
        every = math.ceil(len(labels) / CATEGORY_LABELS_MAX)
        parts.append('<g class="category-axis">')
        for index, label in enumerate(labels):
            if index % every == 0:
                x = left + group_width * (index + 0.5)
                parts.append(
                    f'<text x="{x:.2f}" y="{bottom + 18}" text-anchor="middle" '
                    f'fill="{INK}">{text(label)}</text>'
                )
        parts.append("</g>")
        for number, (one, row) in enumerate(zip(series, values, strict=True)):
            parts.append(f'<g class="bars" data-series="{number}">')
            for index, (label, value) in enumerate(zip(labels, row, strict=True)):
                height = _length(value, maximum, plot_height)
                x = left + group_width * (index + (1 - COLUMN_GROUP_FILL) / 2) + bar_width * number
                parts.append(
                    f'<rect class="bar" x="{x:.2f}" y="{bottom - height:.2f}" '
                    f'width="{bar_width:.2f}" height="{height:.2f}" '
                    f'fill="{_fill(chart_id, one.fill)}" stroke="{INK}" stroke-width="1">'
                    f"<title>{text(f'{label}: {one.name} {value_label(value)}')}</title></rect>"
                )
            parts.append("</g>")
    else:
        parts.append(
            f'<text x="{left + plot_width / 2:.2f}" y="{top + plot_height / 2:.2f}" '
            f'text-anchor="middle" fill="{INK}">No data</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot_width}" y2="{bottom}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
    )
    parts.append(_legend(chart_id, series, x=left, y=8))
    parts.append("</svg>")
    return Markup("".join(parts))


def _legend(chart_id: str, series: Sequence[Series], *, x: int, y: int) -> str:
    parts = ['<g class="legend">']
    for one in series:
        parts.append(
            f'<rect x="{x}" y="{y}" width="14" height="14" fill="{_fill(chart_id, one.fill)}" '
            f'stroke="{INK}" stroke-width="1"/>'
            f'<text x="{x + 20}" y="{y + 11}" fill="{INK}">{text(one.name)}</text>'
        )
        x += 40 + 8 * len(one.name)
    parts.append("</g>")
    return "".join(parts)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Series,
    value_label: ValueLabel = compact_number,
    maximum: Decimal | None = None,
    whole_numbers: bool = False,
) -> Markup:
    """Horizontal bars, one per label (its text at the left, shortened; the value at the
    bar's end), with a value axis under them. ``maximum`` fixes the axis's end (1 for
    shares); by default it is the nice maximum of the values (``whole_numbers``: ticks
    at whole numbers only, for counts)."""
    chart_id = _checked_id(chart_id)
    values = [_decimal(value) for value in series.values]
    assert len(values) == len(labels), "one value per label"
    scale = (
        nice_scale(max(values, default=Decimal(0)), whole_numbers=whole_numbers)
        if maximum is None
        else fixed_scale(maximum)
    )
    maximum = scale.maximum
    rows = max(len(labels), 1)
    height = BAR_MARGIN_TOP + rows * BAR_ROW_HEIGHT + BAR_MARGIN_BOTTOM
    left, top = BAR_MARGIN_LEFT, BAR_MARGIN_TOP
    plot_width = BAR_WIDTH - BAR_MARGIN_LEFT - BAR_MARGIN_RIGHT
    bottom = top + rows * BAR_ROW_HEIGHT
    parts = [_open(chart_id, BAR_WIDTH, height, title, description)]

    parts.append('<g class="value-axis">')
    for tick in scale.ticks():
        x = left + _length(tick, maximum, plot_width)
        parts.append(
            f'<line x1="{x:.2f}" y1="{top}" x2="{x:.2f}" y2="{bottom}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{x:.2f}" y="{bottom + 18}" text-anchor="middle" fill="{INK}">'
            f"{text(value_label(tick))}</text>"
        )
    parts.append("</g>")

    if labels:
        parts.append('<g class="bars" data-series="0">')
        for index, (label, value) in enumerate(zip(labels, values, strict=True)):
            y = top + index * BAR_ROW_HEIGHT + (BAR_ROW_HEIGHT - BAR_THICKNESS) / 2
            length = _length(value, maximum, plot_width)
            parts.append(
                f'<text x="{left - 8}" y="{y + BAR_THICKNESS - 4:.2f}" text-anchor="end" '
                f'fill="{INK}">{text(shortened(label))}</text>'
                f'<rect class="bar" x="{left}" y="{y:.2f}" width="{length:.2f}" '
                f'height="{BAR_THICKNESS}" fill="{_fill(chart_id, series.fill)}" '
                f'stroke="{INK}" stroke-width="1">'
                f"<title>{text(f'{label}: {series.name} {value_label(value)}')}</title></rect>"
                f'<text x="{left + length + 6:.2f}" y="{y + BAR_THICKNESS - 4:.2f}" '
                f'fill="{INK}">{text(value_label(value))}</text>'
            )
        parts.append("</g>")
    else:
        parts.append(
            f'<text x="{left + plot_width / 2:.2f}" y="{top + BAR_ROW_HEIGHT / 2 + 4:.2f}" '
            f'text-anchor="middle" fill="{INK}">No data</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
    )
    # The axis says what the bars measure (one series: no legend needed).
    parts.append(
        f'<text x="{left + plot_width / 2:.2f}" y="{bottom + 38}" text-anchor="middle" '
        f'fill="{INK}">{text(series.name)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
