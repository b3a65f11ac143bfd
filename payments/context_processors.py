from django.conf import settings
from django.http import HttpRequest


def gateway(request: HttpRequest) -> dict[str, object]:
    """Whether pages load Stripe.js: only in stripe mode, where card fields are Stripe Elements."""
    return {"stripe_mode": settings.PAYMENT_GATEWAY == "stripe"}
