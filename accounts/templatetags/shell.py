"""The admin-center shell: left navigation and account switcher (used by templates/base.html)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.selectors import memberships_of_user

register = template.Library()


@dataclass(frozen=True)
class NavItem:
    key: str
    label: Any
    icon: str
    url: str
    current: bool


# Which navigation item a page belongs to, by URL name. A view may override it with `nav_current`
# in its context (e.g. a pane opened from Payment methods keeps that item marked).
_NAV_FOR_VIEW = {
    "accounts:home": "home",
    "subscriptions:products": "products",
    "subscriptions:invoices": "bills",
    "subscriptions:invoice_detail": "bills",
    "payments:methods": "methods",
    "accounts:notifications": "notifications",
    "accounts:billing_accounts": "accounts",
    "accounts:roles": "accounts",
    "support_requests:list": "support",
    "support_requests:detail": "support",
    "accounts:billing_profile": "bills",
    "accounts:billing_profile_edit": "bills",
}


def nav_key_for(view_name: str) -> str:
    if view_name in _NAV_FOR_VIEW:
        return _NAV_FOR_VIEW[view_name]
    # Panes and sub-pages of an app fall back to the app's main item.
    app = view_name.split(":", 1)[0]
    return {"payments": "methods", "subscriptions": "bills", "support_requests": "support"}.get(app, "")


@register.inclusion_tag("includes/nav.html", takes_context=True)
def portal_nav(context: template.Context) -> dict[str, Any]:
    membership = context.get("membership")
    request = context.get("request")
    if membership is None or request is None:
        return {"home": None, "billing": [], "support": []}
    view_name = request.resolver_match.view_name if request.resolver_match else ""
    current = context.get("nav_current") or nav_key_for(view_name)
    kwargs = {"account_id": membership.account_id}

    def item(key: str, label: Any, icon: str, url_name: str) -> NavItem:
        return NavItem(key, label, icon, reverse(url_name, kwargs=kwargs), key == current)

    # Invoice managers see invoices and payment methods only: no products, no notification settings.
    sees_subscriptions = membership.can_view_subscriptions
    billing = [
        item("products", _("Your products"), "products", "subscriptions:products")
        if sees_subscriptions
        else None,
        item("bills", _("Bills & payments"), "receipt", "subscriptions:invoices"),
        item("methods", _("Payment methods"), "card", "payments:methods"),
        item("notifications", _("Billing notifications"), "bell", "accounts:notifications")
        if sees_subscriptions
        else None,
        item("accounts", _("Billing accounts"), "people", "accounts:billing_accounts"),
    ]
    return {
        "home": item("home", pgettext_lazy("navigation", "Home"), "home", "accounts:home"),
        "billing": [i for i in billing if i is not None],
        "support": [item("support", _("Support requests"), "help", "support_requests:list")],
    }


@register.simple_tag(takes_context=True)
def user_memberships(context: template.Context) -> list:
    """Every billing account the signed-in user belongs to, for the account switcher (one query)."""
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return []
    return list(memberships_of_user(user=request.user))


@register.filter
def initials(user: Any) -> str:
    name = (getattr(user, "full_name", "") or getattr(user, "email", "") or "?").strip()
    parts = [p for p in name.replace("@", " ").replace(".", " ").split() if p]
    letters = "".join(p[0] for p in parts[:2]) if " " in name else name[:2]
    return letters.upper()
