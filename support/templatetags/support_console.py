"""Helpers for the support console's templates."""

from __future__ import annotations

from django import template

register = template.Library()

_LEVELS = {
    "success": {"active", "paid", "succeeded", "valid", "sent"},
    "warning": {"past_due", "warned", "declined", "requires_action", "pending", "unknown", "queued"},
    "error": {"disabled", "failed", "expired", "cancelled", "deleted", "uncollectible"},
    "info": {"open"},
}
_ICONS = {"success": "success", "warning": "warning", "error": "error", "info": "clock", "neutral": "circle"}


@register.inclusion_tag("support/includes/status.html")
def support_status(value: str | None, label: str) -> dict[str, str]:
    """{% support_status sub.status sub.get_status_display %}: coloured text with an icon, never colour alone."""
    level = next((lvl for lvl, values in _LEVELS.items() if value in values), "neutral")
    return {"level": level, "icon": _ICONS[level], "label": label}
