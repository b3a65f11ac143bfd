"""Template helpers shared by every page (registered as builtins in settings)."""

from django import template
from django.utils import formats

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
    """'24 Nov 2026' (localised)."""
    if not value:
        return ""
    return formats.date_format(value, "j M Y")
