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
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_htmx.middleware import HtmxDetails

from accounts.models import BillingAccount
from billing_portal.dates import format_date
from billing_portal.ids import parse_page
from billing_portal.money import Money
from payments.models import Dispute, PaymentAttempt, Refund
from payments.services import PaymentError
from subscriptions.models import Invoice, Subscription

from . import dashboard as dashboard_charts
from .forms import (
    DISPUTE_REASONS,
    BankTransferForm,
    GraceForm,
    NoteForm,
    OverpaymentRefundForm,
    RefundForm,
    RetryForm,
    SimulateForm,
)
from .selectors import (
    search_keys,
    support_account_get,
    support_account_overview,
    support_search,
    support_subscriptions,
    support_timeline,
    support_timeline_first_page,
)
from .services import (
    SupportActionError,
    bank_transfer_preview,
    bank_transfer_record,
    invoice_retry_now,
    payment_refund_preview,
    subscription_grace_extend,
    support_account_viewed,
    support_note_add,
    support_payment_refund,
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
    page = parse_page(request.GET.get("page", "1"))
    account = support_account_get(account_id=account_id, with_overview=not request.htmx)
    support_account_viewed(account=account, actor=request.user, ip_address=_ip(request))
    if request.htmx:
        timeline = support_timeline(account=account, page=page)
        return render(request, "support/account.html#timeline", {"account": account, "timeline": timeline})
    overview = support_account_overview(account=account)
    # The first page is merged from the overview's lists (one query); later ones are paged in SQL.
    timeline = (
        support_timeline_first_page(overview=overview)
        if page == 1
        else support_timeline(account=account, page=page)
    )
    return render(
        request,
        "support/account.html",
        {"account": account, "o": overview, "timeline": timeline, "perms_support": _perms(request)},
    )


SUBSCRIPTIONS_PER_PAGE = 50


@support_view()
@require_http_methods(["GET"])
def account_subscriptions(request: HtmxHttpRequest, account_id: int) -> HttpResponse:
    """Every subscription of the account, 50 a page (the account view shows the first 50)."""
    account = _account(account_id)
    page = Paginator(support_subscriptions(account=account), SUBSCRIPTIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    support_account_viewed(account=account, actor=request.user, ip_address=_ip(request))
    return render(
        request,
        "support/subscriptions.html",
        {"account": account, "page": page, "perms_support": _perms(request)},
    )


def _perms(request: HttpRequest) -> dict[str, bool]:
    user = request.user
    return {
        name: user.has_perm(f"support.{name}")
        for name in (
            "add_support_note",
            "retry_payment",
            "record_bank_transfer",
            "extend_grace",
            "refund_payment",
        )
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
                    override_budget=form.cleaned_data["override_budget"],
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
            if form.cleaned_data["override_budget"]:
                summary.append((_("Retry limits"), _("Overridden")))
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


@support_view("refund_payment")
@require_http_methods(["GET", "POST"])
def payment_refund(request: HttpRequest, account_id: int, attempt_id: int) -> HttpResponse:
    account = _account(account_id)
    attempt = get_object_or_404(PaymentAttempt, pk=attempt_id, account=account)
    return _refund(request, account, attempt, overpayment=False)


@support_view("refund_payment")
@require_http_methods(["GET", "POST"])
def overpayment_refund(request: HttpRequest, account_id: int, attempt_id: int) -> HttpResponse:
    """The one-click refund of exactly what a payment overpaid (a `payment.overpaid` flag)."""
    account = _account(account_id)
    attempt = get_object_or_404(PaymentAttempt, pk=attempt_id, account=account)
    return _refund(request, account, attempt, overpayment=True)


def _refund(
    request: HttpRequest, account: BillingAccount, attempt: PaymentAttempt, *, overpayment: bool
) -> HttpResponse:
    initial = {"token": secrets.token_urlsafe(16)}
    if overpayment:
        initial["reason"] = _("Overpaid: %(reference)s took money for invoices that were already paid.") % {
            "reference": attempt.reference
        }
    form_class = OverpaymentRefundForm if overpayment else RefundForm
    form = form_class(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if _confirmed(request):
                refund = support_payment_refund(
                    amount=data.get("amount", ""),
                    actor=request.user,
                    reason=data["reason"],
                    idempotency_key=f"support-refund-{attempt.pk}-{data['token']}",
                    ip_address=_ip(request),
                    account_id=account.pk,
                    attempt_id=attempt.pk,
                    overpayment=overpayment,
                )
                level = messages.SUCCESS if refund.status == Refund.Status.SUCCEEDED else messages.WARNING
                messages.add_message(
                    request,
                    level,
                    _("Refund %(reference)s of %(amount)s on %(payment)s: %(status)s.")
                    % {
                        "reference": refund.reference,
                        "amount": refund.amount,
                        "payment": attempt.reference,
                        "status": refund.get_status_display(),
                    },
                )
                return redirect("support:account", account_id=account.pk)
            plan = payment_refund_preview(
                account=account, attempt_id=attempt.pk, amount=data.get("amount", ""), overpayment=overpayment
            )
        except SupportActionError as exc:
            form.add_error(None, str(exc))
        else:
            # The confirmation carries the amount it showed: "everything left" is fixed now, so a
            # refund made meanwhile cannot change what the operator confirmed.
            bound = request.POST.copy()
            bound["amount"] = str(plan.money.decimal)
            confirm_form = form_class(bound)
            confirm_form.is_valid()
            summary = [
                (_("Payment"), f"{attempt.reference} · {attempt.amount}"),
                (_("Left to refund"), str(plan.refundable)),
                (_("Refund now"), str(plan.money)),
            ]
            unapplied = min(plan.overpaid.amount_minor, plan.money.amount_minor)
            if unapplied:
                summary.append((_("Overpaid part (no credit note)"), str(Money(unapplied, attempt.currency))))
            summary += [
                (_("Credit note on %(number)s") % {"number": number}, str(amount))
                for number, amount in plan.credit_notes
            ]
            summary.append((_("Reason"), data["reason"]))
            return _confirm(
                request,
                account,
                confirm_form,
                _("Refund %(amount)s of %(reference)s to the card that paid?")
                % {"amount": plan.money, "reference": attempt.reference},
                summary,
            )
    title = (
        _("Refund the overpayment of %(reference)s") if overpayment else _("Refund payment %(reference)s")
    ) % {"reference": attempt.reference}
    return _action_form(request, account, form, title, _("Review refund"), subject=attempt)


@support_view("refund_payment")
@require_http_methods(["GET", "POST"])
def simulated_bank(request: HttpRequest, account_id: int, attempt_id: int) -> HttpResponse:
    """Raise a refund or a chargeback at the simulated bank on one of its charges, to see offline what
    a gateway's webhooks do. Only payments made at the simulated bank have this page."""
    from payments import simulator
    from payments.refunds import refundable_minor

    account = _account(account_id)
    attempt = get_object_or_404(
        PaymentAttempt,
        pk=attempt_id,
        account=account,
        gateway="simulated",
        status=PaymentAttempt.Status.SUCCEEDED,
    )
    form = SimulateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not form.is_valid():
            messages.error(request, _("Choose what the bank should do."))
            status = 400
        else:
            data = form.cleaned_data
            try:
                if data["action"] == "refund":
                    text = (data["amount"] or "").strip()
                    from .services import bank_transfer_parse_amount

                    amount_minor = (
                        bank_transfer_parse_amount(amount=text, currency="", account=account).amount_minor
                        if text
                        else refundable_minor(attempt=attempt)
                    )
                    done = simulator.sim_refund_raise(attempt_id=attempt.pk, amount_minor=amount_minor)
                elif data["action"] == "dispute":
                    done = simulator.sim_dispute_raise(
                        attempt_id=attempt.pk, reason=data["reason"] or "general"
                    )
                else:
                    dispute = get_object_or_404(Dispute, pk=data["dispute"] or 0, attempt=attempt)
                    done = simulator.sim_dispute_decide(dispute_id=dispute.pk, won=data["action"] == "won")
            except (simulator.SimulationError, SupportActionError) as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request, _("The simulated bank sent its event: %(note)s") % {"note": done.note}
                )
            return redirect("support:simulated_bank", account_id=account.pk, attempt_id=attempt.pk)
    return render(
        request,
        "support/simulated_bank.html",
        {
            "account": account,
            "attempt": attempt,
            "refundable_minor": refundable_minor(attempt=attempt),
            "disputes": list(attempt.disputes.order_by("pk")),
            "refunds": list(attempt.refunds.order_by("pk")),
            "reasons": [value for value, _label in DISPUTE_REASONS],
        },
        status=status,
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
