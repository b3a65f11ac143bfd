"""Reads for the customer pages. Each function costs a fixed number of queries, however large the account."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import BillingAccount

from .models import Invoice, Subscription


def invoices_for_account(
    *,
    account: BillingAccount,
    status: str = "",
    issued_from: dt.date | None = None,
    issued_to: dt.date | None = None,
) -> QuerySet[Invoice]:
    invoices = Invoice.objects.filter(account=account)
    if status:
        invoices = invoices.filter(status=status)
    if issued_from:
        invoices = invoices.filter(issued_on__gte=issued_from)
    if issued_to:
        invoices = invoices.filter(issued_on__lte=issued_to)
    return invoices.order_by("-issued_on", "-pk")


def invoice_for_account(*, account: BillingAccount, number: str) -> Invoice:
    """One invoice of this account by its number, with its lines; 404 for any other account's number."""
    return get_object_or_404(
        Invoice.objects.select_related(
            "subscription__product", "subscription__payment_method"
        ).prefetch_related("lines"),
        account=account,
        number=number,
    )


def invoice_frequencies(*, account: BillingAccount) -> list[str]:
    """How often the account is invoiced: each subscription is invoiced once per billing period of its
    product, so the account's frequencies are the periods its subscriptions have ("Monthly", "Annual").
    One query, whatever the number of subscriptions."""
    from .models import Product

    periods = set(
        Subscription.objects.filter(account=account)
        .exclude(status__in=[Subscription.Status.CANCELLED, Subscription.Status.DELETED])
        .values_list("product__billing_period", flat=True)
        .distinct()
    )
    return [str(label) for value, label in Product.Period.choices if value in periods]


def subscription_for_account(*, account: BillingAccount, subscription_id: int) -> Subscription:
    """One subscription of this account; 404 for any other account's id and for deleted ones."""
    return get_object_or_404(
        Subscription.objects.select_related("product", "payment_method").exclude(
            status=Subscription.Status.DELETED
        ),
        account=account,
        pk=subscription_id,
    )
