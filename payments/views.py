"""Payment pages: the Settle balance pane, Pay now, 3-D Secure return, receipts, webhooks.

Every customer view starts with membership_for_user() (404 for outsiders) and looks every id up
scoped to that account. Readers see no pay actions and get 403 on POST. Amounts never come from
the request: the server computes them.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event
from django_htmx.middleware import HtmxDetails

from accounts.decorators import account_member_required, is_htmx
from accounts.models import Membership
from billing_portal.ids import parse_id
from subscriptions.models import Invoice, Subscription

from . import services, webhooks
from .forms import ExpiryForm, PayForm, PaymentMethodEditForm, new_form_key
from .gateways.base import (
    CardCollection,
    GatewayError,
    UnsupportedOperation,
    WebhookRejected,
    decline_message,
    decline_reason,
    get_gateway,
)
from .models import PaymentAttempt, PaymentMethod
from .selectors import (
    attempts_in_flight,
    attempts_in_flight_on_methods,
    past_due_summary,
    payment_method_preselect,
    payment_method_subscription_count,
    payment_methods_for_account,
    payment_methods_usable,
    settle_methods,
    settle_preview,
)

logger = logging.getLogger(__name__)


@account_member_required
def methods(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Bills & payments → Payment methods: every card in a table, a warning naming each declined card with
    something past due, and one for a working card that has past-due charges of its own."""
    account = membership.account
    summary = past_due_summary(account=account)
    cards = list(payment_methods_for_account(account=account))
    today = timezone.localdate()
    declined, own_past_due = [], []
    for card in cards:
        card.past_due = summary.for_method(card.pk)  # type: ignore[attr-defined]  # display value set per row
        card.decline_reason = decline_reason(card.last_decline_code)  # type: ignore[attr-defined]  # display value set per row
        card.expired = card.is_expired(today)  # type: ignore[attr-defined]  # display value set per row
        card.more_subscriptions = card.live_subscription_count - len(card.first_subscriptions)  # type: ignore[attr-defined]  # display value set per row
        # The warning names a declined card while something it pays is still past due; once that
        # balance is settled (with another card) the warning is gone, the card keeps its status.
        if card.past_due and card.status in (card.Status.DECLINED, card.Status.EXPIRED):  # type: ignore[attr-defined]  # display value set per row
            declined.append(card)
        elif card.past_due:  # type: ignore[attr-defined]  # display value set per row
            own_past_due.append(card)
    template = "payments/methods.html#method-list" if is_htmx(request) else "payments/methods.html"
    return render(
        request,
        template,
        {
            "membership": membership,
            "account": account,
            "cards": cards,
            "declined": declined,
            "own_past_due": own_past_due,
            "past_due": summary,
        },
    )


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _require_pay(membership: Membership) -> None:
    if not membership.can_pay:
        raise PermissionDenied


def _require_manage_methods(membership: Membership) -> None:
    """Adding a card outside a payment, editing one: owners and admins. Invoice managers choose or add a
    card only while paying (the Pay now and Settle balance panes)."""
    if not membership.can_manage_payment_methods:
        raise PermissionDenied


def _card_form_context() -> dict[str, Any]:
    """How the "Add a new card" fields work with the configured gateway (our form, or the gateway's Elements)."""
    gateway = get_gateway()
    return {
        "card_elements": gateway.card_collection == CardCollection.ELEMENTS,
        "publishable_key": gateway.public_key,
    }


def _method_from_form(*, request: HtmxHttpRequest, membership: Membership, form: PayForm) -> PaymentMethod:
    """The chosen method, or a new card added now (its number goes to the gateway, not to us)."""
    choice = form.cleaned_data["method"]
    if choice != "new":
        return get_object_or_404(
            PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED),
            account_id=membership.account_id,
            pk=parse_id(choice),
        )
    if get_gateway().card_collection == CardCollection.ELEMENTS:
        return services.payment_method_add_from_setup(
            account_id=membership.account_id,
            actor=request.user,
            setup_intent_id=form.cleaned_data["setup_intent"],
            holder_name=form.cleaned_data["holder_name"],
        )
    return services.payment_method_add(
        account_id=membership.account_id,
        actor=request.user,
        number=form.cleaned_data["number"],
        exp_month=form.cleaned_data["exp_month"],
        exp_year=form.cleaned_data["exp_year"],
        cvc=form.cleaned_data["cvc"],
        holder_name=form.cleaned_data["holder_name"],
    )


def _render_pane(
    request: HtmxHttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    # includes/pane.html sends just the pane to htmx and the full page otherwise.
    _pane_target(request, context)
    return render(request, template, context, status=status)


def _pane_target(request: HtmxHttpRequest, context: dict[str, Any]) -> None:
    """Where the pane's own htmx requests swap: the side pane over a page, or — when the pane is the page
    (opened without JavaScript, a bookmark) — the pane section in place, so no second pane pops up."""
    in_side_pane = bool(request.htmx) and request.htmx.target != "pane"
    context["hx_target"] = "#side-pane" if in_side_pane else "#pane"
    context["hx_swap"] = "innerHTML" if in_side_pane else "outerHTML"


def _after_attempt(
    request: HtmxHttpRequest, membership: Membership, attempt: PaymentAttempt, template: str, context
):
    """Success: the receipt in the pane (and tell the page its balance changed). Action: to the bank's
    challenge. Decline or unknown: the pane again, with the reason in plain words."""
    if attempt.status == PaymentAttempt.Status.REQUIRES_ACTION and attempt.action_url:
        if request.htmx:
            return HttpResponseClientRedirect(attempt.action_url)
        return HttpResponseRedirect(attempt.action_url, status=303)
    if attempt.status == PaymentAttempt.Status.SUCCEEDED:
        return _receipt_response(request, membership, attempt)
    if attempt.status == PaymentAttempt.Status.FAILED:
        context["error"] = attempt.decline_message
    elif attempt.status == PaymentAttempt.Status.UNKNOWN:
        context["error"] = _(
            "We did not get an answer from the bank. Nothing will be charged twice: we are checking "
            "what happened and will update this balance. Reference: %(ref)s"
        ) % {"ref": attempt.reference}
    elif attempt.status == PaymentAttempt.Status.CANCELED:
        context["error"] = _("The payment was canceled; nothing was charged.")
    elif attempt.status == PaymentAttempt.Status.PENDING:
        # A second submit while the first is still with the bank: say so, never charge again.
        context["error"] = _(
            "This payment (%(ref)s) is still being processed. Nothing will be charged twice."
        ) % {"ref": attempt.reference}
    context["form_key"] = new_form_key()
    return _render_pane(request, template, context)


def _receipt_response(
    request: HtmxHttpRequest, membership: Membership, attempt: PaymentAttempt
) -> HttpResponse:
    context = {
        "membership": membership,
        "account": membership.account,
        "pane_close_url": _close_url(membership, attempt),
        "attempt": attempt,
        "allocations": attempt.allocations.select_related("invoice__subscription__product").order_by(
            "invoice_id"
        ),
    }
    response = _render_pane(request, "payments/receipt.html", context)
    if request.htmx:
        # The page behind the pane reloads its banner and product list (hx-trigger="balanceChanged from:body").
        trigger_client_event(response, "balanceChanged")
    return response


def _close_url(membership: Membership, attempt: PaymentAttempt | None = None) -> str:
    if attempt is not None and attempt.source == PaymentAttempt.Source.PAY_NOW:
        return reverse("subscriptions:invoices", args=[membership.account_id])
    return reverse("payments:methods", args=[membership.account_id])


# ------------------------------------------------------------------------------------------------
# Settle balance


def _settle_context(
    *,
    request: HtmxHttpRequest,
    membership: Membership,
    failed: PaymentMethod,
    chosen: PaymentMethod | None,
    typed: dict[str, str] | None = None,
    preselect: bool = True,
    methods: list[PaymentMethod] | None = None,
) -> dict[str, Any]:
    """`chosen` is what the person selected (None: nothing yet). With nothing chosen a working card is
    pre-selected, never the declined one; with no working card nothing is, and the pane asks.
    `methods`: the usable cards when the caller has just read them (settle_methods), else read here."""
    account = membership.account
    if methods is None:
        methods = list(payment_methods_usable(account=account))
    if chosen is None and preselect:
        preselected = payment_method_preselect(methods=methods)
        chosen = next((m for m in methods if m.pk == preselected), None)
    quote = settle_preview(account=account, failed_method=failed, chosen_method=chosen or failed)
    return {
        "membership": membership,
        "account": account,
        "failed": failed,
        "chosen": chosen,
        "selected_id": chosen.pk if chosen else None,
        "methods": methods,
        "quote": quote,
        "in_flight": attempts_in_flight_on_methods(
            account=account, method_ids=sorted({failed.pk, (chosen or failed).pk})
        )
        if quote.payments_in_flight
        else [],
        "pane_close_url": _close_url(membership),
        "failed_message": decline_message(failed.last_decline_code) if failed.last_decline_code else "",
        "can_edit_expiry": membership.can_manage_payment_methods
        and failed.owner_id is not None
        and failed.owner_id == request.user.pk,
        "form_key": new_form_key(),
        "form_data": typed or {},
        **_card_form_context(),
    }


def _typed(request: HttpRequest) -> dict[str, str]:
    """What the person typed, to show again under an error: never the card number or security code."""
    return {k: request.POST.get(k, "")[:120] for k in ("holder_name", "exp_month", "exp_year", "method")}


def _field_errors(errors: Any) -> dict[str, str]:
    """{field: first message} from a Django form's errors or a service's error dict."""
    return {k: (v[0] if isinstance(v, list | tuple) else str(v)) for k, v in (errors or {}).items()}


@require_http_methods(["GET", "POST"])
@account_member_required
def settle_balance(request: HtmxHttpRequest, membership: Membership, failed_method_id: int) -> HttpResponse:
    template = "payments/settle.html"
    choice = request.GET.get("method", "") if request.method == "GET" else request.POST.get("method", "")
    choice_id = parse_id(choice)
    # The failed card, the chosen one and the usable list in one query; another account's card is a 404.
    cards = settle_methods(
        account=membership.account, failed_method_id=failed_method_id, chosen_method_id=choice_id
    )
    if cards.failed is None:
        raise Http404
    failed = cards.failed
    if request.method == "GET":
        if choice_id is not None and cards.chosen is None:  # not a usable card of this account
            raise Http404
        # "Add a new card": nothing else is selected, and the total is the declined card's alone.
        context = _settle_context(
            request=request,
            membership=membership,
            failed=failed,
            chosen=cards.chosen,
            preselect=choice != "new",
            methods=cards.usable,
        )
        context["new_selected"] = choice == "new"
        return _render_pane(request, template, context)

    _require_pay(membership)
    form = PayForm(request.POST)
    typed = _typed(request)
    context = _settle_context(
        request=request,
        membership=membership,
        failed=failed,
        chosen=cards.chosen,
        typed=typed,
        preselect=typed["method"] != "new",  # "Add a new card": no saved card, the declined card's total
        methods=cards.usable,
    )
    context["new_selected"] = typed["method"] == "new"
    if not form.is_valid():
        context["form_errors"] = _field_errors(form.errors)
        context["error"] = _("Choose a payment method or add a new card.") if "method" in form.errors else ""
        return _render_pane(request, template, context)
    key = f"settle:{membership.account_id}:{form.cleaned_data['form_key']}"
    existing = PaymentAttempt.objects.filter(account=membership.account, idempotency_key=key).first()
    if existing is not None:  # a double submit: show what the first one did
        return _after_attempt(request, membership, existing, template, context)
    try:
        chosen = _method_from_form(request=request, membership=membership, form=form)
        context = _settle_context(request=request, membership=membership, failed=failed, chosen=chosen)
        shown = form.cleaned_data.get("shown_total_minor")
        total = context["quote"].total.amount_minor
        # A new card has no charges of its own: its total is the declined card's, which can only be less than
        # a total shown with a pre-selected saved card. Never charge more than the person saw.
        new_card = form.cleaned_data["method"] == "new"
        if shown is not None and (shown < total if new_card else shown != total):
            context["error"] = _(
                "The total is %(total)s with this payment method, including its own past-due charges. "
                "Check it and select Settle balance again."
            ) % {"total": context["quote"].total}
            return _render_pane(request, template, context)
        attempt = services.balance_settle(
            account_id=membership.account_id,
            failed_method_id=failed.pk,
            chosen_method_id=chosen.pk,
            actor=request.user,
            idempotency_key=key,
            return_url=_return_url(membership.account_id),
        )
    except services.PaymentError as exc:
        context["error"] = exc.message
        context["form_errors"] = _field_errors(exc.errors)
        context["form_key"] = new_form_key()
        return _render_pane(request, template, context)
    if attempt.status == PaymentAttempt.Status.FAILED:
        # The card just declined is not selected again: the primary button must not charge it twice.
        context = _settle_context(request=request, membership=membership, failed=failed, chosen=None)
    return _after_attempt(request, membership, attempt, template, context)


@require_POST
@account_member_required
def settle_expiry(request: HtmxHttpRequest, membership: Membership, failed_method_id: int) -> HttpResponse:
    """The failed card's owner enters a new expiry date in the pane. Nobody else may."""
    _require_manage_methods(membership)
    failed = get_object_or_404(PaymentMethod, account=membership.account, pk=failed_method_id)
    if failed.owner_id != request.user.pk:
        raise PermissionDenied
    form = ExpiryForm(request.POST)
    notice = error = ""
    errors: dict[str, Any] = {}
    if form.is_valid():
        try:
            failed = services.payment_method_update_expiry(
                account_id=membership.account_id,
                method_id=failed.pk,
                actor=request.user,
                exp_month=form.cleaned_data["exp_month"],
                exp_year=form.cleaned_data["exp_year"],
            )
            notice = _("The expiry date of %(card)s is now %(expiry)s.") % {
                "card": failed.label,
                "expiry": failed.expiry,
            }
        except services.NotCardOwner as exc:
            raise PermissionDenied from exc
        except services.PaymentError as exc:
            error, errors = exc.message, exc.errors
    else:
        error = _("Enter the new expiry month and year.")
        errors = {k: v[0] for k, v in form.errors.items()}
    context = _settle_context(request=request, membership=membership, failed=failed, chosen=None)
    # Under an error the fields show what was typed, never the stored date.
    typed = {k: request.POST.get(k, "")[:4] for k in ("exp_month", "exp_year")} if error else {}
    context.update({"notice": notice, "expiry_error": error, "expiry_errors": errors, "expiry_typed": typed})
    return _render_pane(request, "payments/settle.html", context)


# ------------------------------------------------------------------------------------------------
# Pay now


def _pay_context(*, membership: Membership, invoice: Invoice) -> dict[str, Any]:
    methods = list(payment_methods_usable(account=membership.account))
    # The invoice's own card first; else the account's active payment method (Make this my active …).
    preferred = invoice.subscription.payment_method_id if invoice.subscription else None
    return {
        "membership": membership,
        "account": membership.account,
        "invoice": invoice,
        "in_flight": attempts_in_flight(account=membership.account, invoice_ids=[invoice.pk]),
        "pane_close_url": reverse(
            "subscriptions:invoice_detail", args=[membership.account_id, invoice.number]
        ),
        "methods": methods,
        # The invoice's own card when it works, else the first working card; never a declined one.
        "default_method_id": payment_method_preselect(methods=methods, preferred_id=preferred),
        "form_key": new_form_key(),
        **_card_form_context(),
    }


@require_http_methods(["GET", "POST"])
@account_member_required
def invoice_pay(request: HtmxHttpRequest, membership: Membership, number: str) -> HttpResponse:
    invoice = get_object_or_404(
        Invoice.objects.select_related("subscription__product"), account=membership.account, number=number
    )
    template = "payments/pay.html"
    context = _pay_context(membership=membership, invoice=invoice)
    if request.method == "GET":
        return _render_pane(request, template, context)
    _require_pay(membership)
    form = PayForm(request.POST)
    typed = _typed(request)
    context["form_data"] = typed
    context["new_selected"] = typed["method"] == "new"
    if parse_id(typed["method"]) is not None:
        context["default_method_id"] = parse_id(typed["method"])
    if not form.is_valid():
        context["form_errors"] = _field_errors(form.errors)
        context["error"] = _("Choose a payment method or add a new card.") if "method" in form.errors else ""
        return _render_pane(request, template, context)
    key = f"paynow:{membership.account_id}:{form.cleaned_data['form_key']}"
    existing = PaymentAttempt.objects.filter(account=membership.account, idempotency_key=key).first()
    if existing is not None:
        return _after_attempt(request, membership, existing, template, context)
    try:
        method = _method_from_form(request=request, membership=membership, form=form)
        attempt = services.invoice_pay(
            account_id=membership.account_id,
            invoice_id=invoice.pk,
            payment_method_id=method.pk,
            actor=request.user,
            idempotency_key=key,
            return_url=_return_url(membership.account_id),
            shown_amount_minor=form.cleaned_data.get("shown_total_minor"),
        )
    except services.PaymentError as exc:
        context["error"] = exc.message
        context["form_errors"] = _field_errors(exc.errors)
        context["form_key"] = new_form_key()
        return _render_pane(request, template, context)
    if attempt.status == PaymentAttempt.Status.FAILED:
        context = _pay_context(membership=membership, invoice=invoice)  # the declined card is not re-selected
    return _after_attempt(request, membership, attempt, template, context)


# ------------------------------------------------------------------------------------------------
# After the bank: 3-D Secure return and receipts


def _return_url(account_id: int) -> str:
    # The engine fills in {attempt} once the attempt exists (before the gateway is called).
    return reverse("payments:attempt_return", args=[account_id]) + "?attempt={attempt}"


@account_member_required
def attempt_return(request: HtmxHttpRequest, membership: Membership) -> HttpResponse:
    """Where the bank's challenge sends the customer back. Completes the payment, then shows it."""
    attempt_id = parse_id(request.GET.get("attempt", ""))
    if attempt_id is None:
        raise Http404
    attempt = get_object_or_404(PaymentAttempt, account=membership.account, pk=attempt_id)
    if membership.can_pay:
        attempt = services.attempt_complete_action(attempt_id=attempt.pk, account_id=membership.account_id)
    return HttpResponseRedirect(
        reverse("payments:attempt_detail", args=[membership.account_id, attempt.pk]), status=303
    )


@account_member_required
def attempt_detail(request: HtmxHttpRequest, membership: Membership, attempt_id: int) -> HttpResponse:
    attempt = get_object_or_404(
        PaymentAttempt.objects.select_related("payment_method", "replaces_method"),
        account=membership.account,
        pk=attempt_id,
    )
    if attempt.status == PaymentAttempt.Status.SUCCEEDED:
        return _receipt_response(request, membership, attempt)
    retry_url = ""
    if attempt.replaces_method_id:
        retry_url = reverse("payments:settle", args=[membership.account_id, attempt.replaces_method_id])
    else:
        first = attempt.allocations.select_related("invoice").first()
        if first:
            retry_url = reverse("payments:invoice_pay", args=[membership.account_id, first.invoice.number])
    return render(
        request,
        "payments/attempt.html",
        {
            "membership": membership,
            "account": membership.account,
            "attempt": attempt,
            # Said again from the code in the reader's language: the stored text is in the language of
            # whoever recorded it (a job records in English), and a seeded or imported decline has none.
            "decline_text": decline_message(attempt.decline_code)
            if attempt.decline_code or not attempt.decline_message
            else attempt.decline_message,
            "retry_url": retry_url,
            "pane_close_url": _close_url(membership, attempt),
        },
    )


# ------------------------------------------------------------------------------------------------
# Webhooks


@csrf_exempt
@require_POST
def gateway_webhook(request: HttpRequest, gateway_name: str) -> HttpResponse:
    """A gateway's signed events: verified by its adapter, stored once by id, handled idempotently.

    400 for a delivery we refuse (bad signature, stale or future-dated) or cannot read (stored as
    failed); 404 for a gateway without webhooks; 500 only when a handler broke, so the gateway retries.
    """
    try:
        webhooks.webhook_receive(gateway_name=gateway_name, payload=request.body, headers=request.headers)
    except (LookupError, UnsupportedOperation):
        raise Http404 from None
    except WebhookRejected as exc:
        logger.warning("%s webhook refused: %s", gateway_name, exc)
        return HttpResponseBadRequest("refused")
    except webhooks.WebhookMalformed:
        return HttpResponseBadRequest("malformed event")
    except Exception:
        logger.exception("%s webhook handler failed", gateway_name)
        return HttpResponse(status=500)  # the gateway retries; the stored row makes the retry safe
    return HttpResponse(status=200)


@require_POST
@account_member_required
def card_setup(request: HtmxHttpRequest, membership: Membership) -> HttpResponse:
    """ELEMENTS gateways (Stripe): start a card setup so the gateway's script collects the card in its iframe."""
    _require_pay(membership)
    if get_gateway().card_collection != CardCollection.ELEMENTS:
        raise Http404
    try:
        secret = services.card_setup_start(account_id=membership.account_id, actor=request.user)
    except (GatewayError, services.PaymentError):
        logger.exception("setup intent for account %s failed", membership.account_id)
        return JsonResponse(
            {"error": _("The card form could not be loaded. Try again in a moment.")}, status=502
        )
    return JsonResponse({"client_secret": secret})


# ------------------------------------------------------------------------------------------------
# Payment methods: add a card, edit a card's expiry (its owner only)


def _other_methods(membership: Membership, *, excluding_id: int | None) -> list[PaymentMethod]:
    """The cards a pane offers to move things to: every usable card of the account but the one named."""
    return [m for m in payment_methods_usable(account=membership.account) if m.pk != excluding_id]


def _card_saved(
    request: HtmxHttpRequest, membership: Membership, text: str, *, redirect_to: str | None = None
) -> HttpResponse:
    """A card pane succeeded: the message, and the pane closes (htmx) or the page it was opened from
    (Payment methods unless redirect_to says otherwise) loads."""
    messages.success(request, text)
    if request.htmx:
        # The pane closes; the card list reloads itself on balanceChanged; the message lands on the page.
        response = render(request, "includes/oob_messages.html", {"membership": membership})
        trigger_client_event(response, "balanceChanged")
        trigger_client_event(response, "closePane")
        return response
    return HttpResponseRedirect(
        redirect_to or reverse("payments:methods", args=[membership.account_id]), status=303
    )


@account_member_required
@require_http_methods(["GET", "POST"])
def method_add(request: HtmxHttpRequest, membership: Membership) -> HttpResponse:
    _require_manage_methods(membership)
    context: dict[str, Any] = {
        "membership": membership,
        "account": membership.account,
        "pane_close_url": _close_url(membership),
        "methods": [],
        "new_selected": True,
        **_card_form_context(),
    }
    if request.method == "POST":
        data = request.POST
        try:
            if get_gateway().card_collection == CardCollection.ELEMENTS:
                method = services.payment_method_add_from_setup(
                    account_id=membership.account_id,
                    actor=request.user,
                    setup_intent_id=data.get("setup_intent", ""),
                    holder_name=data.get("holder_name", ""),
                )
            else:
                method = services.payment_method_add(
                    account_id=membership.account_id,
                    actor=request.user,
                    number=data.get("number", ""),
                    exp_month=data.get("exp_month", ""),
                    exp_year=data.get("exp_year", ""),
                    cvc=data.get("cvc", ""),
                    holder_name=data.get("holder_name", ""),
                )
        except services.PaymentError as exc:
            context.update({"error": exc.message, "form_errors": exc.errors})
        else:
            return _card_saved(request, membership, _("%(card)s was added.") % {"card": method.label})
    return _render_pane(request, "payments/method_add.html", context)


def _live_method(membership: Membership, method_id: int) -> PaymentMethod:
    """A card of this account that is not deleted, or 404 (another account's id is a 404 too)."""
    return get_object_or_404(
        PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED).select_related("owner"),
        account=membership.account,
        pk=method_id,
    )


def _chosen_method(membership: Membership, raw: str | None) -> PaymentMethod | None:
    """The card picked in a pane's radio list: None when nothing (or no id) was picked, 404 for an id
    that is not one of this account's cards."""
    chosen_id = parse_id(raw)
    return None if chosen_id is None else _live_method(membership, chosen_id)


def _method_pane_context(membership: Membership, **extra: Any) -> dict[str, Any]:
    return {
        "membership": membership,
        "account": membership.account,
        "pane_close_url": _close_url(membership),
        "nav_current": "methods",
        **extra,
    }


@account_member_required
@require_http_methods(["GET", "POST"])
def method_edit(request: HtmxHttpRequest, membership: Membership, method_id: int) -> HttpResponse:
    """Edit a card: name on card and billing address (owners and admins); expiry only for the admin who
    added it. The number is never editable."""
    _require_manage_methods(membership)
    method = _live_method(membership, method_id)
    is_owner = method.owner_id is not None and method.owner_id == request.user.pk
    initial = {
        "holder_name": method.holder_name,
        "address_line1": method.address_line1,
        "address_line2": method.address_line2,
        "postal_code": method.postal_code,
        "city": method.city,
        "country": method.country,
        "exp_month": f"{method.exp_month:02d}",
        "exp_year": str(method.exp_year),
    }
    form = PaymentMethodEditForm(
        request.POST if request.method == "POST" else None, initial=initial, can_edit_expiry=is_owner
    )
    context = _method_pane_context(membership, method=method, form=form, is_owner=is_owner)
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                method = services.payment_method_update(
                    account_id=membership.account_id,
                    method_id=method.pk,
                    actor=request.user,
                    holder_name=data["holder_name"],
                    address_line1=data["address_line1"],
                    address_line2=data["address_line2"],
                    postal_code=data["postal_code"],
                    city=data["city"],
                    country=data["country"],
                    exp_month=data.get("exp_month") if is_owner else None,
                    exp_year=data.get("exp_year") if is_owner else None,
                )
            except services.NotCardOwner as exc:
                raise PermissionDenied from exc
            except services.PaymentError as exc:
                context["error"] = exc.message
                for field, message in exc.errors.items():
                    form.add_error(field if field in form.fields else None, message)
            else:
                return _card_saved(request, membership, _("%(card)s was saved.") % {"card": method.label})
        else:
            context["error"] = _("Nothing was changed. Correct the highlighted fields.")
    return _render_pane(request, "payments/method_edit.html", context)


@require_POST
@account_member_required
def method_set_default(request: HtmxHttpRequest, membership: Membership, method_id: int) -> HttpResponse:
    """Make this my active payment method (from the card's "…" menu)."""
    _require_manage_methods(membership)
    method = _live_method(membership, method_id)
    try:
        method = services.payment_method_set_default(
            account_id=membership.account_id, method_id=method.pk, actor=request.user
        )
    except services.PaymentError as exc:
        messages.error(request, exc.message)
        if request.htmx:
            return render(request, "includes/oob_messages.html", {"membership": membership})
        return HttpResponseRedirect(reverse("payments:methods", args=[membership.account_id]), status=303)
    return _card_saved(
        request, membership, _("%(card)s is now your active payment method.") % {"card": method.label}
    )


@account_member_required
@require_http_methods(["GET", "POST"])
def method_replace(request: HtmxHttpRequest, membership: Membership, method_id: int) -> HttpResponse:
    """Replace payment method for all items: every subscription on this card moves to the chosen one.
    Nothing is charged."""
    _require_manage_methods(membership)
    source = _live_method(membership, method_id)
    others = _other_methods(membership, excluding_id=source.pk)
    context = _method_pane_context(
        membership,
        source=source,
        methods=others,
        subscription_count=payment_method_subscription_count(method=source),
        selected_id=None,
    )
    if request.method == "POST":
        target = _chosen_method(membership, request.POST.get("method"))
        if target is None:
            context["error"] = context["method_error"] = _("Choose the card that pays these subscriptions.")
        else:
            context["selected_id"] = target.pk
            try:
                moved = services.payment_method_replace_all(
                    account_id=membership.account_id,
                    from_method_id=source.pk,
                    to_method_id=target.pk,
                    actor=request.user,
                )
            except services.PaymentError as exc:
                context["error"] = exc.message
                context["method_error"] = exc.errors.get("method", "")
            else:
                return _card_saved(
                    request,
                    membership,
                    ngettext(
                        "%(n)d subscription now uses %(card)s. Nothing was charged.",
                        "%(n)d subscriptions now use %(card)s. Nothing was charged.",
                        moved,
                    )
                    % {"n": moved, "card": target.label},
                )
    return _render_pane(request, "payments/method_replace.html", context)


@account_member_required
@require_http_methods(["GET", "POST"])
def subscription_replace(
    request: HtmxHttpRequest, membership: Membership, subscription_id: int
) -> HttpResponse:
    """Replace payment method on one subscription (Your products → "…"). Nothing is charged."""
    _require_manage_methods(membership)
    sub = get_object_or_404(
        Subscription.objects.exclude(status=Subscription.Status.DELETED).select_related(
            "product", "payment_method"
        ),
        account=membership.account,
        pk=subscription_id,
    )
    others = _other_methods(membership, excluding_id=sub.payment_method_id)
    context = _method_pane_context(
        membership,
        subscription=sub,
        methods=others,
        selected_id=None,
        pane_close_url=reverse("subscriptions:products", args=[membership.account_id]),
        nav_current="products",
    )
    if request.method == "POST":
        target = _chosen_method(membership, request.POST.get("method"))
        if target is None:
            context["error"] = context["method_error"] = _("Choose the card that pays this subscription.")
        else:
            context["selected_id"] = target.pk
            try:
                services.subscription_payment_method_replace(
                    account_id=membership.account_id,
                    subscription_id=sub.pk,
                    to_method_id=target.pk,
                    actor=request.user,
                )
            except services.PaymentError as exc:
                context["error"] = exc.message
                context["method_error"] = exc.errors.get("method", "")
            else:
                return _card_saved(
                    request,
                    membership,
                    _("%(product)s now uses %(card)s. Nothing was charged.")
                    % {"product": sub.product.name, "card": target.label},
                    redirect_to=context["pane_close_url"],
                )
    return _render_pane(request, "payments/subscription_replace.html", context)


@account_member_required
@require_http_methods(["GET", "POST"])
def method_delete(request: HtmxHttpRequest, membership: Membership, method_id: int) -> HttpResponse:
    """Delete a card; while subscriptions use it, the replacement is chosen in this pane first."""
    _require_manage_methods(membership)
    method = _live_method(membership, method_id)
    others = _other_methods(membership, excluding_id=method.pk)
    context = _method_pane_context(
        membership,
        method=method,
        methods=others,
        subscription_count=payment_method_subscription_count(method=method),
        selected_id=None,
    )
    if request.method == "POST":
        replacement = _chosen_method(membership, request.POST.get("replacement"))
        context["selected_id"] = replacement.pk if replacement else None
        try:
            services.payment_method_remove(
                account_id=membership.account_id,
                method_id=method.pk,
                actor=request.user,
                replacement_id=replacement.pk if replacement else None,
            )
        except services.PaymentError as exc:
            context["error"] = exc.message
            context["replacement_error"] = exc.errors.get("replacement", "")
        else:
            text = _("%(card)s was deleted.") % {"card": method.label}
            if replacement is not None and context["subscription_count"]:
                text += " " + ngettext(
                    "%(n)d subscription now uses %(card)s.",
                    "%(n)d subscriptions now use %(card)s.",
                    context["subscription_count"],
                ) % {"n": context["subscription_count"], "card": replacement.label}
            return _card_saved(request, membership, text)
    return _render_pane(request, "payments/method_delete.html", context)
