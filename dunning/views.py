from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template

from accounts.selectors import membership_for_user
from subscriptions.models import Subscription

from .selectors import subscription_dunning_timeline


def base_template() -> str:
    """The admin-center shell once the UI branch has landed it in main; a plain page until then."""
    try:
        get_template("base.html")
    except TemplateDoesNotExist:
        return "dunning/standalone.html"
    return "base.html"


@login_required
def subscription_timeline(request: HttpRequest, account_id: int, subscription_id: int) -> HttpResponse:
    """A subscription's dunning timeline. Every member may read it, readers included."""
    membership = membership_for_user(user=request.user, account_id=account_id)  # type: ignore[arg-type]
    sub = get_object_or_404(
        Subscription.objects.select_related("account", "product", "payment_method"),
        account=membership.account,
        pk=subscription_id,
    )
    timeline = subscription_dunning_timeline(subscription=sub)
    template = "dunning/timeline.html"
    if getattr(request, "htmx", False):
        template += "#timeline"
    return render(
        request,
        template,
        {
            "base_template": base_template(),
            "account": membership.account,
            "membership": membership,
            "nav_current": "products",
            "sub": sub,
            "t": timeline,
        },
    )
