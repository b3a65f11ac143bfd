"""Template helpers shared by every page (registered as builtins in settings)."""

import functools

from django import template
from django.utils.html import format_html

from billing_portal.dates import format_date, format_datetime
from billing_portal.money import Money, format_money

register = template.Library()


@register.simple_tag
def money(amount_minor: int, currency: str) -> str:
    """{% money invoice.amount_due_minor invoice.currency %} formatted for the active language."""
    return format_money(int(amount_minor), currency)


@register.filter
def as_money(value: Money) -> str:
    return value.format()


@register.filter
def longdate(value) -> str:
    """'24 Nov 2026' in English, '24 nov 2026' in Dutch."""
    return format_date(value) if value else ""


@register.filter
def longdatetime(value, seconds: str = "") -> str:
    """'24 Nov 2026 14:05' ('|longdatetime:"seconds"' adds seconds): the one way to show a moment."""
    return format_datetime(value, seconds=bool(seconds)) if value else ""


# Icons: a small local set drawn on a 20 px grid in the spirit of Fluent's System Icons
# (no icon font, no CDN). Filled ones carry status; outlined ones are for navigation and commands.
# Always decorative (aria-hidden): the text next to an icon says what it means.
_FILLED_ICONS = {
    "warning": "M10 2.5c.4 0 .8.2 1 .6l6.8 12.3c.4.8-.1 1.6-1 1.6H3.2c-.9 0-1.4-.9-1-1.6L9 3.1c.2-.4.6-.6 "
    "1-.6Zm0 10.6a.95.95 0 1 0 0 1.9.95.95 0 0 0 0-1.9Zm0-6.6c-.42 0-.75.33-.75.75v4.2a.75.75 0 0 0 "
    "1.5 0V7.25c0-.42-.33-.75-.75-.75Z",
    "error": "M10 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16ZM7.05 6 6 7.05 8.94 10 6 12.95 7.05 14 10 11.06 12.95 14 "
    "14 12.95 11.06 10 14 7.05 12.95 6 10 8.94Z",
    "success": "M10 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16Zm-1.25 10.19L6.78 10.22 5.72 11.28l3.03 3.03 5.53-5.53"
    "-1.06-1.06Z",
    "info": "M10 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16Zm0 3.75a1 1 0 1 0 0 2 1 1 0 0 0 0-2ZM9.25 9v5.5h1.5V9Z",
    "waffle": "M3 3h3v3H3Zm5.5 0h3v3h-3ZM14 3h3v3h-3ZM3 8.5h3v3H3Zm5.5 0h3v3h-3Zm5.5 0h3v3h-3ZM3 14h3v3H3Zm5.5 "
    "0h3v3h-3Zm5.5 0h3v3h-3Z",
}
_FILLED_ICONS["more"] = (
    "M4.5 8.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3Zm5.5 0a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3Zm5.5 0a1.5 1.5 0 1 1 "
    "0 3 1.5 1.5 0 0 1 0-3Z"
)
_OUTLINE_ICONS = {
    "home": "M3.5 9 10 3.5 16.5 9M5 7.8v8.7h3.5V12h3v4.5H15V7.8",
    "products": "M3.5 3.5h5v5h-5ZM11.5 3.5h5v5h-5ZM3.5 11.5h5v5h-5ZM11.5 11.5h5v5h-5Z",
    "receipt": "M5 2.5h10v15l-1.7-1.2-1.6 1.2-1.7-1.2-1.7 1.2-1.6-1.2L5 17.5ZM7.5 6.5h5M7.5 9.5h5M7.5 12.5h3",
    "card": "M4 4h12a1.5 1.5 0 0 1 1.5 1.5v9A1.5 1.5 0 0 1 16 16H4a1.5 1.5 0 0 1-1.5-1.5v-9A1.5 1.5 0 0 1 4 4ZM2.5 "
    "8h15M5.5 12.5h3",
    "bell": "M10 2.5a5 5 0 0 1 5 5V11l1.5 2.5h-13L5 11V7.5a5 5 0 0 1 5-5ZM8 15.5a2 2 0 0 0 4 0",
    "wallet": "M3 6.5h14v10H3ZM3 6.5l10-3v3M13.5 11.5h1",
    "person": "M10 3a3 3 0 1 1 0 6 3 3 0 0 1 0-6ZM4 17c.5-3 3-4.5 6-4.5s5.5 1.5 6 4.5",
    "building": "M4 17.5v-14h8v14M12 8h4v9.5M2.5 17.5h15M6.5 6h3M6.5 9h3M6.5 12h3",
    "signout": "M8 3.5H4.5v13H8M12 6.5l3.5 3.5-3.5 3.5M15.5 10h-8",
    "filter": "M3 4.5h14l-5.5 6.5v5l-3-1.5V11Z",
    "document": "M5 2.5h7l3.5 3.5v11.5H5ZM12 2.5V6h3.5M7.5 10h5M7.5 13h5",
    "download": "M10 3v10M6 9l4 4 4-4M4 16.5h12",
    "bank": "M2.5 7.5 10 3l7.5 4.5ZM4.5 9v6M8.5 9v6M11.5 9v6M15.5 9v6M2.5 17h15",
    "mail": "M2.5 5h15v10h-15ZM2.5 5.5 10 11l7.5-5.5",
    "check": "M4.5 10.5 8 14l7.5-8",
    "dismiss": "M4.5 4.5l11 11M15.5 4.5l-11 11",
    "chevron-down": "M5 7.5l5 5 5-5",
    "chevron-right": "M7.5 5l5 5-5 5",
    "chevron-left": "M12.5 5l-5 5 5 5",
    "navigation": "M3 5.5h14M3 10h14M3 14.5h14",
    "blocked": "M10 3a7 7 0 1 1 0 14 7 7 0 0 1 0-14ZM5 5l10 10",
    "clock": "M10 3a7 7 0 1 1 0 14 7 7 0 0 1 0-14ZM10 6.5V10l2.5 1.5",
    "circle": "M10 3.5a6.5 6.5 0 1 1 0 13 6.5 6.5 0 0 1 0-13Z",
    "star": "M10 2.8l2.2 4.5 5 .7-3.6 3.5.9 4.9L10 14.1l-4.5 2.3.9-4.9L2.8 8l5-.7Z",
    "add": "M10 4v12M4 10h12",
    "edit": "M13.5 3.5l3 3-9 9H4.5v-3Z",
    "delete": "M4 5.5h12M8 5.5V3.5h4v2M5.5 5.5l.8 11h7.4l.8-11",
    "swap": "M4 7h11l-3-3M16 13H5l3 3",
    "open": "M11 3.5h5.5V9M16.5 3.5 9 11M8 4.5H4.5v11h11V12",
    "people": "M7.5 3.5a2.5 2.5 0 1 1 0 5 2.5 2.5 0 0 1 0-5ZM2.5 16c.4-2.6 2.4-4 5-4s4.6 1.4 5 4M13 4a2.2 2.2 0 1 1 0 4.4M14.5 11.5c1.7.4 2.8 1.7 3 3.5",
    "help": "M10 2.5a7.5 7.5 0 1 1 0 15 7.5 7.5 0 0 1 0-15ZM7.8 7.8A2.3 2.3 0 0 1 10 6.2c1.3 0 2.3.9 2.3 2 0 1.6-2.3 1.8-2.3 3.6M10 13.6v.4",
    "send": "M3 10 17 3.5 13.5 16.5 9.5 11ZM9.5 11 17 3.5",
}


@register.simple_tag
def icon(name: str, extra_class: str = "") -> str:
    """{% icon "warning" %}: an inline SVG (decorative; pair it with text)."""
    return _icon(name, extra_class)


@functools.lru_cache(maxsize=256)
def _icon(name: str, extra_class: str) -> str:
    # The markup depends on the two arguments only; table rows draw the same few icons again and again.
    classes = f"icon {extra_class}".strip()
    if name in _FILLED_ICONS:
        return format_html(
            '<svg class="{}" viewBox="0 0 20 20" aria-hidden="true" focusable="false" fill="currentColor">'
            '<path fill-rule="evenodd" d="{}"/></svg>',
            classes,
            _FILLED_ICONS[name],
        )
    return format_html(
        '<svg class="{}" viewBox="0 0 20 20" aria-hidden="true" focusable="false" fill="none" '
        'stroke="currentColor" stroke-width="1.4" stroke-linecap="round" stroke-linejoin="round">'
        '<path d="{}"/></svg>',
        classes,
        _OUTLINE_ICONS[name],
    )
