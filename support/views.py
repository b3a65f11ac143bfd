"""The support console. Operators only: anyone else gets 404, as if the area did not exist.

Every view goes through support_view(), which checks staff + view_support_console and, for an
action, the action's own permission (403 for staff who lack it). Actions are two POSTs: the first
validates and shows what will happen, the second (confirm=yes) does it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_htmx.middleware import HtmxDetails

from accounts.models import BillingAccount
from billing_portal.dates import format_date
from billing_portal.ids import parse_page
from payments.services import PaymentError
from subscriptions.models import Invoice, Subscription

from . import dashboard as dashboard_charts
from .forms import BankTransferForm, GraceForm, NoteForm, RetryForm
from .selectors import (
    search_keys,
    support_account_get,
    support_account_overview,
    support_search,
    support_timeline,
)
from .services import (
    SupportActionError,
    bank_transfer_preview,
    bank_transfer_record,
    invoice_retry_now,
    subscription_grace_extend,
    support_account_viewed,
    support_note_add,
    support_searched,
)

View = Callable[..., HttpResponse]


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def is_support_user(user: Any) -> bool:
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm("support.view_support_console")
    )


def support_view(permission: str | None = None) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        @never_cache
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not is_support_user(request.user):
                # Not 403: a customer must not learn that this area exists.
                raise Http404
            if permission and not request.user.has_perm(f"support.{permission}"):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _account(account_id: int) -> BillingAccount:
    return get_object_or_404(BillingAccount, pk=account_id)


@support_view()
@require_http_methods(["GET"])
def search(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    results = support_search(query=query) if query else []
    if query:
        support_searched(query=query, result_count=len(results), actor=request.user, ip_address=_ip(request))
    context = {
        "query": query,
        "results": results,
        "keys": search_keys(query) if query else [],
        "nav": "search",
    }
    template = "support/search.html#results" if request.htmx else "support/search.html"
    return render(request, template, context)


@support_view()
@require_http_methods(["GET"])
def account_detail(request: HtmxHttpRequest, account_id: int) -> HttpResponse:
    account = support_account_get(account_id=account_id)
    page = parse_page(request.GET.get("page", "1"))
    support_account_viewed(account=account, actor=request.user, ip_address=_ip(request))
    timeline = support_timeline(account=account, page=page)
    if request.htmx:
        return render(request, "support/account.html#timeline", {"account": account, "timeline": timeline})
    overview = support_account_overview(account=account)
    return render(
        request,
        "support/account.html",
        {"account": account, "o": overview, "timeline": timeline, "perms_support": _perms(request)},
    )


def _perms(request: HttpRequest) -> dict[str, bool]:
    user = request.user
    return {
        name: user.has_perm(f"support.{name}")
        for name in ("add_support_note", "retry_payment", "record_bank_transfer", "extend_grace")
    }


def _confirmed(request: HttpRequest) -> bool:
    return request.POST.get("confirm") == "yes"


@support_view("add_support_note")
@require_http_methods(["GET", "POST"])
def note_add(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _account(account_id)
    form = NoteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _confirmed(request):
            try:
                support_note_add(
                    account_id=account.pk,
                    author=request.user,
                    body=form.cleaned_data["body"],
                    ip_address=_ip(request),
                )
            except SupportActionError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, _("Note added."))
                return redirect("support:account", account_id=account.pk)
        else:
            return _confirm(
                request, account, form, _("Add this note?"), summary=[(_("Note"), form.cleaned_data["body"])]
            )
    return _action_form(request, account, form, _("Add a note"), _("Review note"))


@support_view("record_bank_transfer")
@require_http_methods(["GET", "POST"])
def bank_transfer(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _account(account_id)
    form = BankTransferForm(request.POST or None, initial={"currency": account.currency})
    if not account.pays_by_bank_transfer:
        refusal = _(
            "%(name)s pays by card; bank transfers are recorded only for accounts that pay by invoice."
        ) % {"name": account.name}
        return _action_form(
            request, account, None, _("Record a bank transfer"), "", refusal=refusal, status=400
        )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        args = {
            "amount": data["amount"],
            "currency": data["currency"],
            "received_on": data["received_on"],
            "reference": data["reference"],
        }
        try:
            if _confirmed(request):
                attempt = bank_transfer_record(
                    account_id=account.pk,
                    actor=request.user,
                    reason=data["reason"],
                    ip_address=_ip(request),
                    **args,
                )
                messages.success(
                    request,
                    _("Bank transfer of %(amount)s recorded as %(reference)s.")
                    % {"amount": attempt.amount, "reference": attempt.reference},
                )
                return redirect("support:account", account_id=account.pk)
            plan = bank_transfer_preview(account=account, **args)
        except SupportActionError as exc:
            form.add_error(None, str(exc))
        else:
            summary = [
                (_("Amount"), plan.money.format()),
                (_("Received on"), format_date(plan.received_on)),
                (_("Bank reference"), plan.reference),
                (_("Reason"), data["reason"]),
            ] + [
                (
                    _("Pays %(number)s") % {"number": a.invoice.number},
                    (_("%(amount)s of %(due)s") if a.settles else _("%(amount)s of %(due)s (partly)"))
                    % {"amount": a.amount, "due": a.invoice.amount_due},
                )
                for a in plan.allocations
            ]
            return _confirm(
                request,
                account,
                form,
                _("Record %(amount)s received from %(name)s?") % {"amount": plan.money, "name": account.name},
                summary,
            )
    return _action_form(request, account, form, _("Record a bank transfer"), _("Review transfer"))


@support_view("extend_grace")
@require_http_methods(["GET", "POST"])
def grace_extend(request: HttpRequest, account_id: int, subscription_id: int) -> HttpResponse:
    account = _account(account_id)
    sub = get_object_or_404(
        Subscription.objects.select_related("product"), pk=subscription_id, account=account
    )
    form = GraceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days, reason = form.cleaned_data["days"], form.cleaned_data["reason"]
        if _confirmed(request):
            try:
                subscription_grace_extend(
                    account_id=account.pk,
                    subscription_id=sub.pk,
                    days=days,
                    actor=request.user,
                    reason=reason,
                    ip_address=_ip(request),
                )
            except SupportActionError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    _("Grace period of %(product)s extended by %(days)d days.")
                    % {"product": sub.product.name, "days": days},
                )
                return redirect("support:account", account_id=account.pk)
        else:
            summary = [
                (_("Subscription"), str(sub)),
                (_("Extend by"), _("%(days)d days") % {"days": days}),
                (_("Reason"), reason),
            ]
            return _confirm(
                request,
                account,
                form,
                _("Extend the grace period of %(product)s?") % {"product": sub.product.name},
                summary,
            )
    return _action_form(
        request,
        account,
        form,
        _("Extend the grace period of %(product)s") % {"product": sub.product.name},
        _("Review extension"),
        subject=sub,
    )


@support_view("retry_payment")
@require_http_methods(["GET", "POST"])
def invoice_retry(request: HttpRequest, account_id: int, invoice_id: int) -> HttpResponse:
    account = _account(account_id)
    invoice = get_object_or_404(Invoice, pk=invoice_id, account=account)
    form = RetryForm(request.POST or None, initial={"token": secrets.token_urlsafe(16)})
    if request.method == "POST" and form.is_valid():
        reason = form.cleaned_data["reason"]
        if _confirmed(request):
            try:
                attempt = invoice_retry_now(
                    account_id=account.pk,
                    invoice_id=invoice.pk,
                    actor=request.user,
                    reason=reason,
                    idempotency_key=f"support-retry-{invoice.pk}-{form.cleaned_data['token']}",
                    ip_address=_ip(request),
                )
            except (SupportActionError, PaymentError) as exc:
                # PaymentError: the engine's own refusals, e.g. a payment already in flight.
                form.add_error(None, str(exc))
            else:
                level = messages.SUCCESS if attempt.status == attempt.Status.SUCCEEDED else messages.WARNING
                messages.add_message(
                    request,
                    level,
                    _("Retry %(reference)s of %(number)s: %(status)s.")
                    % {
                        "reference": attempt.reference,
                        "number": invoice.number,
                        "status": attempt.get_status_display(),
                    },
                )
                return redirect("support:account", account_id=account.pk)
        else:
            summary = [
                (_("Invoice"), invoice.number),
                (_("Amount due"), invoice.amount_due.format()),
                (_("Reason"), reason),
            ]
            return _confirm(
                request,
                account,
                form,
                _("Charge %(amount)s for %(number)s now?")
                % {"amount": invoice.amount_due, "number": invoice.number},
                summary,
            )
    return _action_form(
        request,
        account,
        form,
        _("Retry invoice %(number)s now") % {"number": invoice.number},
        _("Review retry"),
        subject=invoice,
    )


def _action_form(
    request: HttpRequest,
    account: BillingAccount,
    form: Any,
    title: str,
    submit: str,
    *,
    subject: Any = None,
    refusal: str = "",
    status: int | None = None,
) -> HttpResponse:
    if status is None:
        status = 400 if request.method == "POST" else 200
    return render(
        request,
        "support/action.html",
        {
            "account": account,
            "form": form,
            "title": title,
            "submit": submit,
            "subject": subject,
            "refusal": refusal,
        },
        status=status,
    )


def _confirm(
    request: HttpRequest, account: BillingAccount, form: Any, question: str, summary: list[tuple[str, str]]
) -> HttpResponse:
    return render(
        request,
        "support/confirm.html",
        {"account": account, "form": form, "question": question, "summary": summary},
    )


@support_view("view_recovery_dashboard")
@require_http_methods(["GET"])
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request, "support/dashboard.html", {**dashboard_charts.recovery_dashboard(), "nav": "dashboard"}
    )
