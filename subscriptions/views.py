from __future__ import annotations

import datetime as dt

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.decorators import account_member_required, is_htmx
from accounts.models import Membership
from billing_portal.ids import parse_page

from .forms import InvoiceFilterForm
from .models import Subscription
from .selectors import invoice_for_account, invoices_for_account, past_due_summary, subscriptions_for_account

PRODUCTS_PER_PAGE = 50
INVOICES_PER_PAGE = 25


@account_member_required
def products(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    page = Paginator(subscriptions_for_account(account=account), PRODUCTS_PER_PAGE).get_page(
        parse_page(request.GET.get("page"))
    )
    summary = past_due_summary(account=account)
    for sub in page:
        # Renewal is invoiced the day after the period ends; disabled and cancelled ones do not renew.
        renews = sub.status in (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)
        sub.renews_on = sub.current_period_end + dt.timedelta(days=1) if renews else None  # type: ignore[attr-defined]
        sub.balance = summary.for_method(sub.payment_method_id) if sub.payment_method_id else None  # type: ignore[attr-defined]
    template = (
        "subscriptions/products.html#product-list" if is_htmx(request) else "subscriptions/products.html"
    )
    return render(
        request,
        template,
        {"membership": membership, "account": account, "page": page, "past_due": summary},
    )


@account_member_required
def invoices(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    form = InvoiceFilterForm(request.GET or None)
    filters = form.filters()
    page = Paginator(invoices_for_account(account=account, **filters), INVOICES_PER_PAGE).get_page(
        parse_page(request.GET.get("page"))
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
        },
    )
