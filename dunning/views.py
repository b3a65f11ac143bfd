from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.decorators import is_htmx, member_may
from accounts.models import Membership
from subscriptions.models import Subscription

from .selectors import subscription_dunning_timeline


@member_may("can_view_subscriptions")
def subscription_timeline(request: HttpRequest, membership: Membership, subscription_id: int) -> HttpResponse:
    """A subscription's dunning timeline. Every member may read it, readers included."""
    sub = get_object_or_404(
        Subscription.objects.select_related("account", "product", "payment_method"),
        account=membership.account,
        pk=subscription_id,
    )
    template = "dunning/timeline.html#timeline" if is_htmx(request) else "dunning/timeline.html"
    return render(
        request,
        template,
        {
            "account": membership.account,
            "membership": membership,
            "nav_current": "products",
            "sub": sub,
            "t": subscription_dunning_timeline(subscription=sub),
        },
    )
