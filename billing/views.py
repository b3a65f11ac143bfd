"""The customer's billing pages: Home, the Billing profile tab, Your products, a subscription's details
and reactivation, Invoices, an invoice, its PDF and the CSV export. They read subscriptions, invoices and
payments together, so they live above both apps (docs/ARCHITECTURE.md, Layers)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from django_htmx.http import trigger_client_event

from accounts.decorators import account_member_required, is_htmx, member_may
from accounts.models import Membership
from billing_portal.ids import parse_page
from payments.selectors import PastDueSummary, past_due_summary
from subscriptions.forms import InvoiceFilterForm
from subscriptions.models import Invoice, Subscription
from subscriptions.selectors import (
    invoice_for_account,
    invoice_frequencies,
    invoices_for_account,
)
from subscriptions.services import NothingToReactivate, subscription_request_reactivation

from .documents import invoice_document_context, invoice_pdf_filename, invoices_csv
from .documents import invoice_pdf as invoice_pdf_bytes
from .selectors import (
    InvoiceRow,
    ProductRow,
    account_overview,
    invoice_page,
    invoice_rows,
    product_page,
    product_rows,
    subscription_details,
)
from .tables import invoice_rows_html, product_rows_html

# A page of Your products shows as many rows as a page of invoices: the admin center pages long product
# lists, and a row is the one cost of the page that grows with the account (bench/pages.py).
PRODUCTS_PER_PAGE = 25
INVOICES_PER_PAGE = 25


@account_member_required
def home(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Home; for htmx (after a `balanceChanged` event) just its banner and summary cards."""
    account = membership.account
    template = "accounts/home.html#home-body" if is_htmx(request) else "accounts/home.html"
    return render(
        request,
        template,
        {
            "membership": membership,
            "account": account,
            "past_due": past_due_summary(account=account),
            "overview": account_overview(account=account),
        },
    )


@account_member_required
def billing_profile(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Bills & payments → Billing profile: currency, invoice frequency, bill-to address, PO number and
    invoice attachments. Everyone in the account reads it; owners and admins edit it in a pane."""
    account = membership.account
    return render(
        request,
        "accounts/billing_profile.html#profile-card" if is_htmx(request) else "accounts/billing_profile.html",
        {
            "membership": membership,
            "account": account,
            "frequencies": invoice_frequencies(account=account),
            "nav_current": "bills",
        },
    )


@member_may("can_view_subscriptions")
def products(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    page = product_page(
        account=account, number=parse_page(request.GET.get("page")), per_page=PRODUCTS_PER_PAGE
    )
    summary = past_due_summary(account=account)
    rows = product_rows(values=page)
    _product_row_parts(membership, rows, summary)
    # The "…" menu (Replace payment method): owners and admins of card-paying accounts.
    row_menus = membership.can_manage_payment_methods and not account.pays_by_bank_transfer
    template = (
        "subscriptions/products.html#product-list" if is_htmx(request) else "subscriptions/products.html"
    )
    return render(
        request,
        template,
        {
            "membership": membership,
            "account": account,
            "page": page,
            "rows_html": product_rows_html(rows, row_menus=row_menus),
            "past_due": summary,
            "row_menus": row_menus,
        },
    )


def _product_row_parts(membership: Membership, rows: list[ProductRow], summary: PastDueSummary) -> None:
    """Give each row of Your products its URLs and the parts it shares with other rows.

    A row's status chip, unpaid note, payment method cell and Settle balance action depend only on its
    status or its card, so each distinct one is rendered once per page and the rows print it: a
    template pays for every tag and variable once per row, and most rows of a page repeat a few parts.
    """
    account = membership.account
    timeline_url = _url_pattern("dunning:timeline", account_id=account.pk, subscription_id=0)
    detail_url = _url_pattern("subscriptions:subscription_detail", account_id=account.pk, subscription_id=0)
    replace_url = _url_pattern("payments:subscription_replace", account_id=account.pk, subscription_id=0)
    parts: dict[tuple[str, object], SafeString] = {}

    def part(template: str, key: object, **context: object) -> SafeString:
        if (template, key) not in parts:
            parts[(template, key)] = render_to_string(template, {"account": account, **context})
        return parts[(template, key)]

    status_part = "subscriptions/includes/product_row_parts.html#status"
    note_part = "subscriptions/includes/product_row_parts.html#note"
    method_part = "subscriptions/includes/product_row_parts.html#method"
    settle_part = "payments/includes/settle_balance_action.html"

    for row in rows:
        row.detail_url = detail_url(row.pk)
        row.replace_url = replace_url(row.pk)
        row.status_cell = part(
            status_part, row.status, tone=row.tone, tone_icon=row.tone_icon, label=row.status_label
        )
        row.method_cell = part(
            method_part, row.payment_method_id, label=row.method_label, failed=row.method_failed
        )
        if not row.unpaid:
            continue
        row.timeline_url = timeline_url(row.pk)
        row.note = part(note_part, row.status, status=row.status, tone=row.tone, tone_icon=row.tone_icon)
        balance = summary.for_method(row.payment_method_id) if row.payment_method_id else None
        if balance is not None:
            # Settle balance for everything past due on the row's card (owners and admins only).
            row.settle = part(settle_part, row.payment_method_id, balance=balance, membership=membership)


def _invoice_row_parts(membership: Membership, rows: list[InvoiceRow]) -> None:
    """Give each row of the Invoices tab its URLs, its status chip (rendered once per status) and the
    URL of its Pay now link when the member may pay it by card here (see _product_row_parts)."""
    account = membership.account
    detail_url = _url_pattern("subscriptions:invoice_detail", account_id=account.pk, number="")
    pdf_url = _url_pattern("subscriptions:invoice_pdf", account_id=account.pk, number="")
    pay_url = _url_pattern("payments:invoice_pay", account_id=account.pk, number="")
    pays_here = membership.can_pay and not account.pays_by_bank_transfer
    pdf_label = gettext("Download PDF of invoice %(number)s")
    status_cells: dict[str, SafeString] = {}
    labels = dict(Invoice.Status.choices)
    for row in rows:
        if row.status not in status_cells:
            status_cells[row.status] = render_to_string(
                "subscriptions/includes/invoice_status.html",
                {"invoice": {"status": row.status, "get_status_display": labels.get(row.status, row.status)}},
            )
        row.status_cell = status_cells[row.status]
        row.detail_url = detail_url(row.number)
        row.pdf_url = pdf_url(row.number)
        row.pdf_label = pdf_label % {"number": row.number}
        if pays_here and row.payable:
            row.pay_url = pay_url(row.number)


def _url_pattern(name: str, **kwargs: int | str) -> Callable[[int | str], str]:
    """reverse() once for a URL whose last argument changes per row (0 or "" in kwargs), and return
    a function that fills it in: a row then costs a string join instead of a URL resolution. A string
    argument is quoted as reverse() quotes it."""
    last = next(reversed(kwargs))
    marker = 987654321987
    by_string = isinstance(kwargs[last], str)
    head, tail = reverse(name, kwargs={**kwargs, last: str(marker) if by_string else marker}).rsplit(
        str(marker), 1
    )
    if by_string:
        return lambda value: f"{head}{quote(str(value), safe=RFC3986_SUBDELIMS + '/~:@')}{tail}"
    return lambda value: f"{head}{int(value)}{tail}"


@account_member_required
def invoices(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    form = InvoiceFilterForm(request.GET or None)
    filters = form.filters()
    page = invoice_page(
        invoices=invoices_for_account(account=account, **filters),
        number=parse_page(request.GET.get("page")),
        per_page=INVOICES_PER_PAGE,
    )
    rows = invoice_rows(values=page)
    _invoice_row_parts(membership, rows)
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
            "rows_html": invoice_rows_html(rows),
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
            # Lines, payments, credit notes and chargebacks: what the amount due follows from (PDF too).
            **invoice_document_context(invoice=invoice, lines=invoice.lines.all()),
        },
    )


@account_member_required
def invoice_pdf(request: HttpRequest, membership: Membership, number: str) -> HttpResponse:
    """ "Download PDF": the same document as the invoice page, in the account's language, cached per version."""
    invoice = invoice_for_account(account=membership.account, number=number)
    response = HttpResponse(invoice_pdf_bytes(invoice=invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{invoice_pdf_filename(invoice)}"'
    response["Cache-Control"] = "private, no-cache"
    return response


@account_member_required
def invoices_export(request: HttpRequest, membership: Membership) -> StreamingHttpResponse:
    """The Invoices tab as CSV, with the same filters (a bad filter is left out, as on the page), streamed."""
    account = membership.account
    filters = InvoiceFilterForm(request.GET or None).filters()
    rows = invoices_csv(invoices=invoices_for_account(account=account, **filters), language=account.language)
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="invoices-{account.pk}-{stamp}.csv"'
    response["Cache-Control"] = "private, no-cache"
    return response


@account_member_required
def subscription_detail(request: HttpRequest, membership: Membership, subscription_id: int) -> HttpResponse:
    """ "Subscription and payment settings": status, payment method, renewal date, invoices, timeline."""
    account = membership.account
    details = subscription_details(account=account, subscription_id=subscription_id)
    return render(
        request,
        "subscriptions/subscription_detail.html#subscription-body"
        if is_htmx(request)
        else "subscriptions/subscription_detail.html",
        {
            "membership": membership,
            "account": account,
            "details": details,
            "sub": details.subscription,
            "can_reactivate": details.subscription.can_reactivate(at=timezone.now()),
            "nav_current": "products",
        },
    )


@require_http_methods(["GET", "POST"])
@account_member_required
def subscription_reactivate(
    request: HttpRequest, membership: Membership, subscription_id: int
) -> HttpResponse:
    """The "Reactivate subscription" pane. What is due is paid first, in the Settle balance pane."""
    account = membership.account
    details = subscription_details(account=account, subscription_id=subscription_id)
    sub = details.subscription
    detail_url = reverse(
        "subscriptions:subscription_detail", kwargs={"account_id": account.pk, "subscription_id": sub.pk}
    )
    context = {
        "membership": membership,
        "account": account,
        "details": details,
        "sub": sub,
        "nav_current": "products",
        "pane_close_url": detail_url,
        "can_reactivate": sub.can_reactivate(at=timezone.now()),
    }
    if request.method == "POST":
        if not membership.can_pay:
            raise PermissionDenied
        try:
            sub = subscription_request_reactivation(
                subscription_id=sub.pk, at=timezone.now(), actor=request.user
            )
        except NothingToReactivate:
            context["error"] = _(
                "This subscription can no longer be reactivated: it is not cancelled, or its reactivation "
                "period has ended."
            )
            return render(request, "subscriptions/subscription_reactivate.html", context)
        if sub.status == Subscription.Status.ACTIVE:
            messages.success(request, _("%(product)s is active again.") % {"product": sub.product.name})
            if not is_htmx(request):
                return redirect(detail_url)
            response = render(request, "includes/oob_messages.html", context)
            return trigger_client_event(trigger_client_event(response, "balanceChanged"), "closePane")
        if sub.payment_method_id is not None and not account.pays_by_bank_transfer:
            # Pay what is due first: the Settle balance pane for its card (htmx follows the redirect
            # and swaps that pane in; without JavaScript it is the page). Paying brings it back.
            return redirect("payments:settle", account.pk, sub.payment_method_id)
        messages.info(
            request,
            _(
                "%(product)s is active again once its invoices are paid by bank transfer. Use the invoice "
                "number as the payment reference."
            )
            % {"product": sub.product.name},
        )
        return redirect(reverse("subscriptions:invoices", args=[account.pk]) + "?status=past_due")
    return render(request, "subscriptions/subscription_reactivate.html", context)
