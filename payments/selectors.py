"""Reads for the Payment methods page. A fixed number of queries, however many subscriptions use a card."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import BillingAccount
from subscriptions.models import Subscription

from .models import PaymentMethod

# What a decline code means, in words for the customer (Stripe's codes; the simulated bank uses the same).
DECLINE_REASONS = {
    "card_declined": _("card declined"),
    "insufficient_funds": _("insufficient funds"),
    "expired_card": _("card expired"),
    "incorrect_cvc": _("incorrect security code"),
    "processing_error": _("processing error"),
    "stolen_card": _("card declined"),
    "lost_card": _("card declined"),
    "do_not_honor": _("card declined"),
    "authentication_required": _("your bank asks you to confirm the payment"),
}


def decline_reason(code: str) -> str:
    if not code:
        return ""
    return str(DECLINE_REASONS.get(code, _("card declined")))


def payment_methods_for_account(*, account: BillingAccount) -> QuerySet[PaymentMethod]:
    """The account's cards (removed ones left out), each with the live subscriptions it pays. Two queries."""
    in_use = (
        Subscription.objects.exclude(status__in=[Subscription.Status.CANCELLED, Subscription.Status.DELETED])
        .select_related("product")
        .order_by("product__name", "pk")
    )
    return (
        PaymentMethod.objects.filter(account=account)
        .exclude(status=PaymentMethod.Status.DETACHED)
        .select_related("owner")
        .prefetch_related(Prefetch("subscriptions", queryset=in_use, to_attr="live_subscriptions"))
        .order_by("-is_default", "pk")
    )
