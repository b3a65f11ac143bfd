from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.decorators import member_may
from accounts.models import Membership

from .models import Notice


@member_may("can_view_subscriptions")
def sent(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Which billing mails went to the account's notification address. Readers may see it too."""
    notices = Notice.objects.filter(account=membership.account).order_by("-created_at", "-pk")[:200]
    return render(
        request,
        "notifications/sent.html",
        {
            "account": membership.account,
            "membership": membership,
            "nav_current": "notifications",
            "notices": notices,
        },
    )
