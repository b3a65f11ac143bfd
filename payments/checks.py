"""Deployment checks (manage.py check --deploy) for the payment gateway settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .gateways.base import GATEWAYS, get_gateway


@register(Tags.security, deploy=True)
def gateway_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    gateway = settings.PAYMENT_GATEWAY
    if gateway == "simulated":
        return [
            Warning(
                "PAYMENT_GATEWAY is 'simulated': no money moves, and card numbers are typed into this server.",
                hint="Set PAYMENT_GATEWAY=stripe with STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and "
                "STRIPE_WEBHOOK_SECRET in production.",
                id="payments.W001",
            )
        ]
    if gateway == "stripe":
        missing = [
            name
            for name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
            if not getattr(settings, name, "")
        ]
        if missing:
            return [
                Error(f"PAYMENT_GATEWAY is 'stripe' but {', '.join(missing)} not set.", id="payments.E001")
            ]
        return []
    try:
        get_gateway(gateway)
    except LookupError:
        return [
            Error(
                f"PAYMENT_GATEWAY must name a registered gateway ({', '.join(sorted(GATEWAYS))}), not {gateway!r}.",
                id="payments.E002",
            )
        ]
    return []
