"""Support requests: customers open and follow them under /a/<id>/support/requests/; support staff work
the queue under /support/requests/ (the console's gate: staff with view_support_console, 404 otherwise).

A request is shown only to members of its account (another account's id is a 404) and to support staff.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts.decorators import account_member_required, is_htmx
from accounts.models import Membership, User
from payments.forms import new_form_key
from payments.models import PaymentAttempt
from subscriptions.models import Invoice, Subscription
from support.views import support_view

from . import selectors, services
from .forms import ReplyForm, StaffReplyForm, SupportRequestForm
from .models import SupportRequest

REQUESTS_PER_PAGE = 25


def _strict_id(raw: str) -> int | None:
    """An id from a query string: ASCII digits only ("²" and "٣" are not ids), else None."""
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


@account_member_required
def request_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Support requests: every request of the account with its status (two queries per page)."""
    page = Paginator(
        selectors.support_requests_for_member(membership=membership), REQUESTS_PER_PAGE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "support_requests/list.html",
        {"membership": membership, "account": membership.account, "page": page, "querystring": ""},
    )


def _subject_of(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    """What the new request is about, from ?invoice=<number> | ?payment=<id> | ?subscription=<id>, looked up
    in the member's account only (404 for another account's or an unknown one)."""
    account = membership.account
    params = request.POST if request.method == "POST" else request.GET
    if params.get("invoice"):
        number = params["invoice"]
        # A NUL byte reaches PostgreSQL as an error (a 500); a cut-down number could name another invoice.
        if len(number) > 32 or not number.isprintable():
            raise Http404
        invoice = get_object_or_404(Invoice, account=account, number=number)
        return {
            "about": SupportRequest.About.INVOICE,
            "invoice": invoice,
            "subject": _("Question about invoice %(number)s") % {"number": invoice.number},
        }
    if params.get("payment"):
        attempt_id = _strict_id(params["payment"])
        if attempt_id is None:
            raise Http404
        attempt = get_object_or_404(PaymentAttempt, account=account, pk=attempt_id)
        return {
            "about": SupportRequest.About.PAYMENT,
            "payment_attempt": attempt,
            "subject": _("Question about payment %(reference)s") % {"reference": attempt.reference},
        }
    if params.get("subscription"):
        if not membership.can_view_subscriptions:
            raise PermissionDenied
        subscription_id = _strict_id(params["subscription"])
        if subscription_id is None:
            raise Http404
        subscription = get_object_or_404(
            Subscription.objects.select_related("product"), account=account, pk=subscription_id
        )
        return {
            "about": SupportRequest.About.SUBSCRIPTION,
            "subscription": subscription,
            "subject": _("Question about %(subscription)s") % {"subscription": subscription.product.name},
        }
    return {"about": SupportRequest.About.ACCOUNT, "subject": ""}


@require_http_methods(["GET", "POST"])
@account_member_required
def request_new(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The "Create a support request" pane, prefilled with what it is about. Owners, admins and invoice
    managers; readers see the requests but do not open them (403)."""
    if not membership.can_open_support_requests:
        raise PermissionDenied
    about = _subject_of(request, membership)
    list_url = reverse("support_requests:list", kwargs={"account_id": membership.account_id})
    if request.method == "POST":
        form = SupportRequestForm(request.POST)
        if form.is_valid():
            try:
                created = services.support_request_open(
                    membership=membership,
                    about=about["about"],
                    subject=form.cleaned_data["subject"],
                    body=form.cleaned_data["body"],
                    form_key=str(form.cleaned_data["form_key"]),
                    invoice=about.get("invoice"),
                    payment_attempt=about.get("payment_attempt"),
                    subscription=about.get("subscription"),
                )
            except services.SupportRequestError as exc:
                form.add_error("body", str(exc))
            else:
                messages.success(
                    request,
                    _(
                        "Your support request %(reference)s was sent. We will reply by e-mail and on this page."
                    )
                    % {"reference": created.reference},
                )
                detail_url = reverse(
                    "support_requests:detail",
                    kwargs={"account_id": membership.account_id, "request_id": created.pk},
                )
                if is_htmx(request):
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = detail_url
                    return response
                return redirect(detail_url)
        messages.error(request, _("The request was not sent. Correct the highlighted fields and send again."))
    else:
        form = SupportRequestForm(initial={"form_key": new_form_key(), "subject": about["subject"]})
    return render(
        request,
        "support_requests/new.html",
        {
            "membership": membership,
            "account": membership.account,
            "form": form,
            "about": about,
            "nav_current": "support",
            "pane_close_url": _back_url(request, fallback=list_url),
        },
    )


def _back_url(request: HttpRequest, *, fallback: str) -> str:
    """Where Cancel goes without JavaScript: the page the pane was opened from (same site only, and not
    the pane itself after a failed submit), else the list."""
    referer = request.META.get("HTTP_REFERER", "")
    site = request.build_absolute_uri("/")
    if referer.startswith(site) and not referer.startswith(request.build_absolute_uri(request.path)):
        path = "/" + referer[len(site) :]
        # "//evil.example/x" after our host would be a link to another site (protocol-relative).
        if not path.startswith(("//", "/\\")):
            return path
    return fallback


@require_http_methods(["GET", "POST"])
@account_member_required
def request_detail(request: HttpRequest, membership: Membership, request_id: int) -> HttpResponse:
    """One request: what it is about, its status, the thread; owners, admins and invoice managers reply."""
    support_request = selectors.support_request_for_member(membership=membership, request_id=request_id)
    form = ReplyForm(initial={"form_key": new_form_key()})
    if request.method == "POST":
        if not membership.can_open_support_requests:
            raise PermissionDenied
        form = ReplyForm(request.POST)
        if form.is_valid():
            try:
                services.support_request_customer_reply(
                    membership=membership,
                    request_id=support_request.pk,
                    body=form.cleaned_data["body"],
                    form_key=str(form.cleaned_data["form_key"]),
                )
            except services.SupportRequestError as exc:
                form.add_error("body", str(exc))
            else:
                messages.success(request, _("Your reply was sent to support."))
                return redirect(
                    "support_requests:detail", account_id=membership.account_id, request_id=support_request.pk
                )
        messages.error(request, _("The reply was not sent. Correct the highlighted field and send again."))
    return render(
        request,
        "support_requests/detail.html",
        {
            "membership": membership,
            "account": membership.account,
            "support_request": support_request,
            "thread": list(selectors.support_request_messages(request=support_request)),
            "form": form,
        },
    )


# -- Support console ----------------------------------------------------------------------------------


def _can_reply(request: HttpRequest) -> bool:
    return request.user.has_perm("support_requests.reply_support_request")


@support_view()
@require_http_methods(["GET"])
def queue(request: HttpRequest) -> HttpResponse:
    """The queue: `?sort=waiting` (default: those waiting for us, the longest-waiting first) or `newest`."""
    sort = request.GET.get("sort", "waiting")
    if sort not in selectors.QUEUE_SORTS:
        sort = "waiting"
    page = Paginator(selectors.support_queue(sort=sort), REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "support_requests/queue.html",
        {"page": page, "sort": sort, "nav": "requests", "querystring": f"sort={sort}"},
    )


def _staff_user(request: HttpRequest) -> User:
    """support_view lets only signed-in staff through, so this is a User; anything else is refused."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user


@support_view()
@require_http_methods(["GET", "POST"])
def staff_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    support_request = selectors.support_request_for_staff(request_id=request_id)
    if request.method == "GET":
        services.support_request_viewed(
            request=support_request,
            actor=_staff_user(request),
            ip_address=request.META.get("REMOTE_ADDR") or None,
        )
    form = StaffReplyForm(initial={"form_key": new_form_key()})
    if request.method == "POST":
        if not _can_reply(request):
            raise PermissionDenied
        form = StaffReplyForm(request.POST)
        if form.is_valid():
            try:
                services.support_request_reply(
                    request_id=support_request.pk,
                    actor=_staff_user(request),
                    body=form.cleaned_data["body"],
                    form_key=str(form.cleaned_data["form_key"]),
                    close=form.cleaned_data["close"],
                )
            except services.SupportRequestError as exc:
                form.add_error("body", str(exc))
            else:
                messages.success(
                    request,
                    _("%(reference)s closed.") % {"reference": support_request.reference}
                    if form.cleaned_data["close"]
                    else _("Reply sent; the customer gets it by e-mail."),
                )
                return redirect("support_queue:detail", request_id=support_request.pk)
        messages.error(request, _("Nothing was sent. Correct the highlighted field."))
    return render(
        request,
        "support_requests/staff_detail.html",
        {
            "support_request": support_request,
            "thread": list(selectors.support_request_messages(request=support_request)),
            "form": form,
            "can_reply": _can_reply(request),
            "nav": "requests",
        },
    )
