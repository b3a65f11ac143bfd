from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.decorators import account_member_required, is_htmx
from accounts.models import Membership

from .forms import InvoiceFilterForm
from .models import Product, Subscription
from .selectors import invoice_for_account, invoices_for_account, past_due_summary, subscriptions_for_account

PRODUCTS_PER_PAGE = 50
INVOICES_PER_PAGE = 25


@account_member_required
def products(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    page = Paginator(subscriptions_for_account(account=account), PRODUCTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    summary = past_due_summary(account=account)
    # A row costs what its template does, 50 times: what is the same for many rows (labels, the
    # Settle balance action of a card, the timeline URL) is worked out once here, not per row.
    status_labels = {value: str(label) for value, label in Subscription.Status.choices}
    period_labels = {value: str(label) for value, label in Product.Period.choices}
    timeline_url = _url_pattern("dunning:timeline", account_id=account.pk, subscription_id=0)
    settle_actions: dict[int, str] = {}
    for sub in page:
        # Renewal is invoiced the day after the period ends; disabled and cancelled ones do not renew.
        renews = sub.status in (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)
        sub.renews_on = sub.current_period_end + dt.timedelta(days=1) if renews else None  # type: ignore[attr-defined]
        balance = summary.for_method(sub.payment_method_id) if sub.payment_method_id else None
        sub.balance = balance  # type: ignore[attr-defined]
        sub.status_label = status_labels.get(sub.status, sub.status)  # type: ignore[attr-defined]
        sub.period_label = period_labels.get(sub.product.billing_period, sub.product.billing_period)  # type: ignore[attr-defined]
        sub.timeline_url = timeline_url(sub.pk)  # type: ignore[attr-defined]
        action = ""
        if balance is not None and sub.payment_method_id is not None:
            if sub.payment_method_id not in settle_actions:
                settle_actions[sub.payment_method_id] = render_to_string(
                    "payments/includes/settle_balance_action.html",
                    {"balance": balance, "membership": membership, "account": account},
                    request=request,
                )
            action = settle_actions[sub.payment_method_id]
        sub.settle_action = action  # type: ignore[attr-defined]
    template = (
        "subscriptions/products.html#product-list" if is_htmx(request) else "subscriptions/products.html"
    )
    return render(
        request,
        template,
        {"membership": membership, "account": account, "page": page, "past_due": summary},
    )


def _url_pattern(name: str, **kwargs: int) -> Callable[[int], str]:
    """reverse() once for a URL whose last integer argument changes per row (0 in kwargs), and return
    a function that fills it in: a row then costs a string join instead of a URL resolution."""
    last = next(reversed(kwargs))
    marker = 987654321987
    head, tail = reverse(name, kwargs={**kwargs, last: marker}).rsplit(str(marker), 1)
    return lambda value: f"{head}{int(value)}{tail}"


@account_member_required
def invoices(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    form = InvoiceFilterForm(request.GET or None)
    filters = form.filters()
    page = Paginator(invoices_for_account(account=account, **filters), INVOICES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "subscriptions/invoices.html#invoice-list" if is_htmx(request) else "subscriptions/invoices.html",
        {
            "membership": membership,
            "account": account,
            "form": form,
            "page": page,
            "filtered": any(filters.values()),
            "querystring": query.urlencode(),
        },
    )


@account_member_required
def invoice_detail(request: HttpRequest, membership: Membership, number: str) -> HttpResponse:
    account = membership.account
    invoice = invoice_for_account(account=account, number=number)
    return render(
        request,
        "subscriptions/invoice_detail.html#invoice-body"
        if is_htmx(request)
        else "subscriptions/invoice_detail.html",
        {
            "membership": membership,
            "account": account,
            "invoice": invoice,
            "lines": invoice.lines.all(),
            "payment_terms_days": settings.BILLING_PAYMENT_TERMS_DAYS,
        },
    )
