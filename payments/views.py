from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.decorators import account_member_required, is_htmx
from accounts.models import Membership
from subscriptions.selectors import past_due_summary

from .selectors import decline_reason, payment_methods_for_account


@account_member_required
def methods(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Bills & payments → Payment methods: every card, and a warning naming each declined one."""
    account = membership.account
    summary = past_due_summary(account=account)
    cards = list(payment_methods_for_account(account=account))
    declined = []
    for card in cards:
        card.past_due = summary.for_method(card.pk)  # type: ignore[attr-defined]
        card.decline_reason = decline_reason(card.last_decline_code)  # type: ignore[attr-defined]
        if card.status in (card.Status.DECLINED, card.Status.EXPIRED):
            declined.append(card)
    template = "payments/methods.html#method-list" if is_htmx(request) else "payments/methods.html"
    return render(
        request,
        template,
        {
            "membership": membership,
            "account": account,
            "cards": cards,
            "declined": declined,
            "past_due": summary,
        },
    )
