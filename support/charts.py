"""Tiny server-side SVG charts: no JavaScript, no CDN, nothing inline that CSP forbids.

Colours are SVG presentation attributes (fill="…"), which are not style attributes. Every label
is escaped through format_html. Each chart carries a <title> and <desc> for screen readers, and
the page shows the same numbers as a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

BRAND = "#0F6CBD"
PALETTE = ("#0F6CBD", "#BC4B09", "#0E700E", "#B10E1C", "#616161", "#8764B8")
INK = "#424242"
RULE = "#E0E0E0"


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    display: str  # the value as people read it ("€376.50", "3")


# Charts are drawn 1200 units wide and fill the page's width (sup-figure): at a desktop width their text
# stays about the size of the page's (13 units ≈ 14 px); narrower, the figure scrolls (support.css).
CHART_WIDTH = 1200


def bar_chart(
    *, chart_id: str, title: str, desc: str, bars: Sequence[Bar], width: int = CHART_WIDTH
) -> SafeString:
    """Horizontal bars, one row per label, scaled to the largest value."""
    # The label column holds a long Dutch decline text ("Kies een andere kaart of neem contact op met de bank").
    row_h, label_w, value_w, pad = 28, 420, 130, 8
    height = max(1, len(bars)) * row_h + 2 * pad
    plot_w = width - label_w - value_w - 2 * pad
    top = max((b.value for b in bars), default=0) or 1
    rows = []
    for i, bar in enumerate(bars):
        y = pad + i * row_h
        w = max(1, round(plot_w * bar.value / top)) if bar.value else 0
        rows.append(
            format_html(
                '<g><text x="{}" y="{}" fill="{}" font-size="13" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}"></rect>'
                '<text x="{}" y="{}" fill="{}" font-size="13">{}</text></g>',
                label_w - 6,
                y + 18,
                INK,
                bar.label,
                label_w,
                y + 5,
                w,
                row_h - 10,
                PALETTE[i % len(PALETTE)] if len(bars) <= len(PALETTE) else BRAND,
                label_w + w + 6,
                y + 18,
                INK,
                bar.display,
            )
        )
    if not bars:
        rows.append(
            format_html(
                '<text x="{}" y="{}" fill="{}" font-size="13">{}</text>', pad, pad + 18, INK, _("No data")
            )
        )
    return format_html(
        '<svg class="chart" role="img" aria-labelledby="{0}-title {0}-desc" viewBox="0 0 {1} {2}" '
        'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{0}-title">{3}</title><desc id="{0}-desc">{4}</desc>{5}</svg>',
        chart_id,
        width,
        height,
        title,
        desc,
        mark_safe("".join(rows)),  # noqa: S308 - each row was built by format_html
    )


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]


def line_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_format: Callable[[int], str] = str,
    width: int = CHART_WIDTH,
    height: int = 240,
) -> SafeString:
    """One polyline per series over shared x labels; y from zero to the largest value."""
    left, right, top_pad, bottom = 90, 16, 16, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = max(1, len(x_labels) - 1)
    top = max((v for s in series for v in s.values), default=0) or 1

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: int) -> float:
        return top_pad + plot_h * (1 - v / top)

    parts = [
        # Axes and three horizontal rules with their values.
        format_html_join(
            "",
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"></line>'
            '<text x="{}" y="{}" fill="{}" font-size="12" text-anchor="end">{}</text>',
            (
                (left, y(v), left + plot_w, y(v), RULE, left - 6, y(v) + 4, INK, y_format(v))
                for v in (0, top // 2, top)
            ),
        ),
        format_html_join(
            "",
            '<text x="{}" y="{}" fill="{}" font-size="12" text-anchor="{}">{}</text>',
            (
                (x(i), height - bottom + 18, INK, anchor, x_labels[i])
                for i, anchor in ((0, "start"), (len(x_labels) // 2, "middle"), (len(x_labels) - 1, "end"))
                if 0 <= i < len(x_labels)
            ),
        ),
    ]
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"></polyline>'
                '<text x="{}" y="{}" fill="{}" font-size="12">{}</text>',
                points,
                colour,
                left + 4 + 90 * k,
                height - 6,
                colour,
                f"— {s.name}",
            )
        )
    return format_html(
        '<svg class="chart" role="img" aria-labelledby="{0}-title {0}-desc" viewBox="0 0 {1} {2}" '
        'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{0}-title">{3}</title><desc id="{0}-desc">{4}</desc>{5}</svg>',
        chart_id,
        width,
        height,
        title,
        desc,
        mark_safe("".join(parts)),  # noqa: S308 - each part was built by format_html
    )
