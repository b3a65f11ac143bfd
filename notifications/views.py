from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.selectors import membership_for_user

from .models import Notice


@login_required
def sent(request: HttpRequest, account_id: int) -> HttpResponse:
    """Which billing mails went to the account's notification address. Readers may see it too."""
    membership = membership_for_user(user=request.user, account_id=account_id)  # type: ignore[arg-type]
    from dunning.views import base_template

    notices = Notice.objects.filter(account=membership.account).order_by("-created_at", "-pk")[:200]
    return render(
        request,
        "notifications/sent.html",
        {
            "base_template": base_template(),
            "account": membership.account,
            "membership": membership,
            "nav_current": "notifications",
            "notices": notices,
        },
    )
