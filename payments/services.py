"""Moving money. Every entry point takes the billing account's lock first (see docs/ARCHITECTURE.md).

The three phases of every payment (Settle balance, Pay now, renewals, retries, support "retry now"):

1. under the account lock: re-read what is still unpaid, refuse when an attempt for those invoices is
   already in flight, write a `pending` PaymentAttempt with its allocations and idempotency key, commit;
2. outside any transaction: ask the gateway, passing the idempotency key;
3. under the account lock again: apply the answer (attempt_apply_result).

An answer we did not get leaves the attempt `unknown`; attempt_reconcile() looks the charge up by the
same key later. Nothing ever charges an unknown attempt again.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import BillingAccount, Membership
from audit.services import audit_record
from billing_portal.dates import format_date
from billing_portal.money import format_money
from notifications.services import notice_send
from subscriptions.models import Invoice, Subscription
from subscriptions.services import (
    invoice_apply_payment,
    invoice_mark_past_due,
    subscription_mark_past_due,
    subscription_restore,
)

from .gateways.base import ChargeOutcome, ChargeResult, decline_message, get_gateway, luhn_valid
from .models import PaymentAllocation, PaymentAttempt, PaymentMethod, WebhookEvent

logger = logging.getLogger(__name__)

Source = PaymentAttempt.Source
Status = PaymentAttempt.Status

# After an unanswered charge: look again after 15 s, 1 min, 3 min, 1 h, then once a day.
RECONCILE_BACKOFF = (
    dt.timedelta(seconds=15),
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=3),
    dt.timedelta(hours=1),
    dt.timedelta(days=1),
)
# A `pending` attempt older than this lost its process between phase 1 and 3; reconcile it too.
PENDING_STALE_AFTER = dt.timedelta(minutes=5)
# A 3-D Secure challenge still open after this is canceled, so it cannot block retries forever.
ABANDONED_ACTION_AFTER = dt.timedelta(hours=24)
# For gateways whose lookup is a search (Stripe), a miss is believed only after this long.
NOT_FOUND_TRUSTED_AFTER = dt.timedelta(minutes=10)


class PaymentError(Exception):
    """A domain error with a message for the person paying."""

    def __init__(self, message: str = "", *, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class PaymentInProgress(PaymentError):
    pass


class NothingToPay(PaymentError):
    pass


class BalanceChanged(PaymentError):
    """What is unpaid changed between showing the amount and charging it: show it again, charge nothing."""


class PaymentNotAllowed(PaymentError):
    pass


class NotCardOwner(PaymentError):
    pass


class InvalidCardInput(PaymentError):
    pass


def account_lock(*, account_id: int) -> BillingAccount:
    """Lock the billing account row until the surrounding transaction ends.

    Every payment entry point (Settle balance, Pay now, renewals, retries, support actions, webhooks)
    takes this lock before it reads what is unpaid, so two of them can never pay the same invoice.
    On SQLite, which has no row locks, IMMEDIATE transactions serialise writers instead.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("account_lock() must be called inside transaction.atomic()")
    return BillingAccount.objects.select_for_update().get(pk=account_id)


def _require_payer(*, account_id: int, actor: Any) -> None:
    """Owners and admins pay; readers (and anyone else) are refused here too, not only in the view."""
    membership = Membership.objects.filter(
        account_id=account_id, user_id=getattr(actor, "pk", None) or 0
    ).first()
    if membership is None or not membership.can_pay:
        raise PaymentNotAllowed(_("Only billing account owners and billing admins can make payments."))


# ---------------------------------------------------------------------------------------------
# The engine


class _StaleActions(Exception):
    def __init__(self, attempt_ids: list[int]) -> None:
        self.attempt_ids = attempt_ids


def invoices_charge(
    *,
    account_id: int,
    invoice_ids: Iterable[int],
    payment_method_id: int,
    source: str,
    off_session: bool,
    idempotency_key: str,
    actor: Any = None,
    actor_label: str = "",
    replaces_method_id: int | None = None,
    return_url: str = "",
    description: str = "",
    expected_amount_minor: int | None = None,
) -> PaymentAttempt:
    """Charge one payment method once for what is still unpaid of `invoice_ids`.

    The shared engine behind Settle balance, Pay now, renewals (source=RENEWAL), dunning retries
    (RETRY) and support's retry now (SUPPORT_RETRY). Returns the attempt in its resulting state:
    succeeded, failed (decline_code/decline_message), requires_action (action_url), or unknown.

    A repeated idempotency_key returns the first attempt and charges nothing. Raises NothingToPay
    when nothing of those invoices is unpaid any more, PaymentInProgress when another attempt
    already covers them. With expected_amount_minor (customer entry points: the amount they were
    shown, computed by the server), a different amount under the lock raises BalanceChanged.
    """
    invoice_ids = sorted(set(invoice_ids))
    existing = PaymentAttempt.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.account_id != account_id:  # keys are global; never answer with another account's attempt
            raise PaymentError("idempotency key already used by another account")
        return existing
    attempt = None
    for _round in range(2):
        try:
            attempt, created = _phase1_create(
                account_id=account_id,
                invoice_ids=invoice_ids,
                payment_method_id=payment_method_id,
                source=source,
                off_session=off_session,
                idempotency_key=idempotency_key,
                actor=actor,
                actor_label=actor_label,
                replaces_method_id=replaces_method_id,
                expected_amount_minor=expected_amount_minor,
            )
        except _StaleActions as stale:
            # A customer walked away from a 3-D Secure challenge: cancel it at the gateway first. If
            # the gateway says it succeeded after all, that payment is applied and nothing is left.
            for stale_id in stale.attempt_ids:
                attempt_abandon(attempt_id=stale_id)
            continue
        if not created:
            return attempt
        break
    if attempt is None:
        raise PaymentInProgress(_("A payment for this balance is already in progress."))

    method = attempt.payment_method
    assert method is not None
    return_url = return_url.replace("{attempt}", str(attempt.pk))
    result = _gateway_charge(attempt=attempt, method=method, return_url=return_url, description=description)
    return attempt_apply_result(attempt_id=attempt.pk, result=result)


def _phase1_create(
    *,
    account_id: int,
    invoice_ids: list[int],
    payment_method_id: int,
    source: str,
    off_session: bool,
    idempotency_key: str,
    actor: Any,
    actor_label: str,
    replaces_method_id: int | None,
    expected_amount_minor: int | None,
) -> tuple[PaymentAttempt, bool]:
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        existing = PaymentAttempt.objects.filter(
            idempotency_key=idempotency_key, account_id=account_id
        ).first()
        if existing is not None:
            return existing, False
        try:
            method = PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED).get(
                account_id=account_id, pk=payment_method_id
            )
        except PaymentMethod.DoesNotExist:
            raise PaymentError(_("Choose a payment method.")) from None
        invoices = list(
            Invoice.objects.select_for_update()
            .filter(
                account_id=account_id,
                pk__in=invoice_ids,
                status__in=Invoice.PAYABLE_STATUSES,
                amount_due_minor__gt=0,
            )
            .order_by("pk")
        )
        if not invoices:
            raise NothingToPay(_("There is nothing left to pay: this balance has already been paid."))
        in_flight = list(
            PaymentAttempt.objects.filter(
                account_id=account_id, status__in=PaymentAttempt.IN_FLIGHT, allocations__invoice__in=invoices
            )
            .distinct()
            .order_by("pk")
        )
        if in_flight:
            stale = [a.pk for a in in_flight if a.status == Status.REQUIRES_ACTION]
            # Only a customer, present now, may replace a customer's waiting challenge; a job never does.
            if not off_session and len(stale) == len(in_flight):
                raise _StaleActions(stale)
            raise PaymentInProgress(_("A payment for this balance is already in progress."))
        if any(i.currency != account.currency for i in invoices):
            raise PaymentError("invoice currency differs from the account's")
        amount_minor = sum(i.amount_due_minor for i in invoices)
        if expected_amount_minor is not None and amount_minor != expected_amount_minor:
            raise BalanceChanged(
                _("The balance changed while you were paying. Check the new total and try again.")
            )
        attempt = PaymentAttempt.objects.create(
            account=account,
            payment_method=method,
            amount_minor=amount_minor,
            currency=account.currency,
            source=source,
            off_session=off_session,
            idempotency_key=idempotency_key,
            gateway=method.gateway,
            replaces_method_id=replaces_method_id,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            initiated_by_label=actor_label or getattr(actor, "email", "") or source,
        )
        PaymentAllocation.objects.bulk_create(
            [PaymentAllocation(attempt=attempt, invoice=i, amount_minor=i.amount_due_minor) for i in invoices]
        )
    return attempt, True


def _gateway_charge(
    *, attempt: PaymentAttempt, method: PaymentMethod, return_url: str, description: str
) -> ChargeResult:
    """Phase 2. Outside any transaction: a slow gateway must not hold the account lock."""
    try:
        gateway = get_gateway(method.gateway)
        return gateway.charge(
            token=method.gateway_token,
            amount_minor=attempt.amount_minor,
            currency=attempt.currency,
            idempotency_key=attempt.idempotency_key,
            off_session=attempt.off_session,
            return_url=return_url,
            description=description or f"{attempt.account.name} {attempt.reference}",
        )
    except Exception as exc:  # whatever broke, money may have moved: reconcile, never re-charge
        logger.exception("gateway charge for attempt %s raised", attempt.pk)
        return ChargeResult.unknown(f"{type(exc).__name__}: {exc}")


def attempt_apply_result(*, attempt_id: int, result: ChargeResult, actor: Any = None) -> PaymentAttempt:
    """Phase 3: apply a gateway answer to an attempt, idempotently.

    Called after the charge, after 3-D Secure, by reconciliation and by webhooks, in any order and
    any number of times: a succeeded attempt never changes again, and a late decline never undoes it.
    """
    now = timezone.now()
    with transaction.atomic():
        account_id = PaymentAttempt.objects.values_list("account_id", flat=True).get(pk=attempt_id)
        account = account_lock(account_id=account_id)
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self",))
            .select_related("payment_method")
            .get(pk=attempt_id)
        )
        if attempt.status == Status.SUCCEEDED:
            return attempt
        if result.reference and not attempt.gateway_reference:
            attempt.gateway_reference = result.reference
        outcome = result.outcome
        if attempt.status in (Status.FAILED, Status.CANCELED) and outcome != ChargeOutcome.SUCCEEDED:
            # Final already; only news that money did move can change it.
            return attempt
        if outcome == ChargeOutcome.SUCCEEDED:
            _apply_success(account=account, attempt=attempt, now=now, actor=actor)
        elif outcome == ChargeOutcome.DECLINED:
            _apply_decline(account=account, attempt=attempt, result=result, now=now)
        elif outcome == ChargeOutcome.REQUIRES_ACTION:
            attempt.status = Status.REQUIRES_ACTION
            attempt.action_url = result.action_url
            attempt.save(update_fields=["status", "action_url", "gateway_reference"])
        elif outcome == ChargeOutcome.CANCELED:
            attempt.status = Status.CANCELED
            attempt.completed_at = now
            attempt.save(update_fields=["status", "completed_at", "gateway_reference"])
            audit_record(
                account=account,
                actor_label="billing",
                action="payment.canceled",
                message=f"Payment {attempt.reference} of {attempt.amount} was canceled; nothing was charged",
                target=attempt,
            )
        else:  # UNKNOWN (or NOT_FOUND right after a charge): find out later, never charge again meanwhile
            if attempt.status != Status.UNKNOWN:
                attempt.status = Status.UNKNOWN
                attempt.reconcile_after = now + RECONCILE_BACKOFF[0]
                audit_record(
                    account=account,
                    actor_label="billing",
                    action="payment.unknown",
                    message=f"No answer from the gateway for {attempt.reference}; it will be looked up",
                    target=attempt,
                    data={"detail": result.message[:300]},
                )
            attempt.save(update_fields=["status", "reconcile_after", "gateway_reference"])
    return attempt


def _apply_success(*, account: BillingAccount, attempt: PaymentAttempt, now: dt.datetime, actor: Any) -> None:
    late = attempt.status in (Status.FAILED, Status.CANCELED)
    attempt.status = Status.SUCCEEDED
    attempt.completed_at = now
    attempt.decline_code = ""
    attempt.decline_message = ""
    attempt.action_url = ""
    attempt.reconcile_after = None
    attempt.save(
        update_fields=[
            "status",
            "completed_at",
            "decline_code",
            "decline_message",
            "action_url",
            "reconcile_after",
            "gateway_reference",
        ]
    )
    allocations = list(attempt.allocations.select_related("invoice").order_by("invoice_id"))
    subscription_ids: set[int] = set()
    unapplied = 0
    for allocation in allocations:
        invoice = allocation.invoice
        # Under the account lock nothing else pays these invoices, except a payment recorded while this
        # one was unknown (e.g. a bank transfer): what is no longer owed is flagged, not applied.
        due = Invoice.objects.values_list("amount_due_minor", "status").get(pk=invoice.pk)
        if due[1] not in Invoice.PAYABLE_STATUSES or due[0] < allocation.amount_minor:
            unapplied += allocation.amount_minor
            continue
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=allocation.amount_minor, at=now)
        if invoice.subscription_id:
            subscription_ids.add(invoice.subscription_id)
    actor_label = attempt.initiated_by_label
    for sub in Subscription.objects.filter(
        pk__in=subscription_ids, status__in=[Subscription.Status.PAST_DUE, Subscription.Status.DISABLED]
    ).order_by("pk"):
        subscription_restore(
            subscription_id=sub.pk, at=now, actor=actor or attempt.initiated_by, actor_label=actor_label
        )
    method = attempt.payment_method
    assert method is not None
    if method.status in (PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED):
        # The card that paid evidently works again.
        method.status = PaymentMethod.Status.VALID
        method.last_decline_code = ""
        method.save(update_fields=["status", "last_decline_code"])
    moved = 0
    if attempt.replaces_method_id and attempt.replaces_method_id != method.pk:
        # Settle balance: the paying method becomes the active method of everything on the failed one.
        moved = Subscription.objects.filter(
            account=account, payment_method_id=attempt.replaces_method_id
        ).update(payment_method=method)
    invoices_text = ", ".join(a.invoice.number for a in allocations)
    audit_record(
        account=account,
        actor=actor or attempt.initiated_by,
        actor_label=actor_label,
        action="payment.succeeded",
        message=f"Payment {attempt.reference} of {attempt.amount} with {method.label} paid {invoices_text}"
        + (f"; {moved} subscription(s) moved to {method.label}" if moved else ""),
        target=attempt,
        data={
            "invoices": [a.invoice.number for a in allocations],
            "moved_subscriptions": moved,
            "late": late,
        },
    )
    if unapplied:
        audit_record(
            account=account,
            actor_label="billing",
            action="payment.overpaid",
            message=f"Payment {attempt.reference} took {format_money(unapplied, attempt.currency)} for invoices "
            "that were already paid; refund it",
            target=attempt,
        )
    notice_send(
        account=account,
        kind="payment_received",
        dedupe_key=f"payment_received:{attempt.pk}",
        context={
            "reference": attempt.reference,
            "amount": format_money(attempt.amount_minor, attempt.currency, account.language),
            "method": method.label,
            "invoices": invoices_text,
            # A date for people, in the language the mail is written in.
            "paid_on": format_date(timezone.localdate(now), account.language),
        },
    )


def _apply_decline(
    *, account: BillingAccount, attempt: PaymentAttempt, result: ChargeResult, now: dt.datetime
) -> None:
    code = result.decline_code or "generic_decline"
    attempt.status = Status.FAILED
    attempt.decline_code = code
    attempt.decline_message = decline_message(code)[:300]
    attempt.completed_at = now
    attempt.action_url = ""
    attempt.reconcile_after = None
    attempt.save(
        update_fields=[
            "status",
            "decline_code",
            "decline_message",
            "completed_at",
            "action_url",
            "reconcile_after",
            "gateway_reference",
        ]
    )
    method = attempt.payment_method
    assert method is not None
    # A failed 3-D Secure challenge says nothing about the card; every other decline marks it.
    if code != "authentication_failed":
        method.status = PaymentMethod.Status.DECLINED
        method.last_decline_code = code
        method.last_declined_at = now
        method.save(update_fields=["status", "last_decline_code", "last_declined_at"])
    if attempt.off_session:
        # Nobody was present: the invoices and subscriptions are past due now (dunning retries them).
        for allocation in attempt.allocations.select_related("invoice").order_by("invoice_id"):
            invoice = allocation.invoice
            if invoice.status == Invoice.Status.OPEN:
                invoice_mark_past_due(invoice_id=invoice.pk, at=now)
            if invoice.subscription_id:
                subscription_mark_past_due(subscription_id=invoice.subscription_id, at=now)
    audit_record(
        account=account,
        actor=attempt.initiated_by,
        actor_label=attempt.initiated_by_label,
        action="payment.declined",
        message=f"Payment {attempt.reference} of {attempt.amount} with {method.label} was declined ({code})",
        target=attempt,
        data={"decline_code": code, "category": str(result.decline_category or "")},
    )


def attempt_abandon(*, attempt_id: int) -> PaymentAttempt:
    """Cancel an attempt still waiting for 3-D Secure, at the gateway first. If the gateway says the
    charge went through after all, that success is applied instead."""
    attempt = PaymentAttempt.objects.select_related("payment_method").get(pk=attempt_id)
    if attempt.status != Status.REQUIRES_ACTION:
        return attempt
    method = attempt.payment_method
    assert method is not None
    try:
        result = get_gateway(attempt.gateway or method.gateway).cancel(reference=attempt.gateway_reference)
    except Exception as exc:
        logger.exception("gateway cancel for attempt %s raised", attempt.pk)
        result = ChargeResult.unknown(str(exc))
    if result.outcome in (ChargeOutcome.CANCELED, ChargeOutcome.NOT_FOUND):
        result = ChargeResult(outcome=ChargeOutcome.CANCELED, reference=result.reference)
    if result.outcome == ChargeOutcome.REQUIRES_ACTION:
        return attempt
    return attempt_apply_result(attempt_id=attempt.pk, result=result)


def attempt_complete_action(*, attempt_id: int, account_id: int | None = None) -> PaymentAttempt:
    """The customer came back from 3-D Secure: ask the gateway what happened, then apply it."""
    qs = PaymentAttempt.objects.select_related("payment_method")
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    attempt = qs.get(pk=attempt_id)
    if attempt.status != Status.REQUIRES_ACTION:
        return attempt
    method = attempt.payment_method
    assert method is not None
    try:
        result = get_gateway(attempt.gateway or method.gateway).confirm(reference=attempt.gateway_reference)
    except Exception as exc:
        logger.exception("gateway confirm for attempt %s raised", attempt.pk)
        result = ChargeResult.unknown(str(exc))
    if result.outcome == ChargeOutcome.NOT_FOUND:
        result = ChargeResult.unknown("confirm: charge not found", reference=attempt.gateway_reference)
    return attempt_apply_result(attempt_id=attempt.pk, result=result)


def attempt_reconcile(*, attempt_id: int) -> PaymentAttempt:
    """Find out what happened to a charge we got no answer for, and settle or release it.

    Looks the charge up by the attempt's idempotency key (the reference, when we have one). Succeeded:
    applied. Declined: failed. Never arrived: canceled, which releases the invoices for another try.
    Still unknown: looked at again later (15 s, 1 min, 3 min, 1 h, then daily).
    """
    attempt = PaymentAttempt.objects.select_related("payment_method").get(pk=attempt_id)
    now = timezone.now()
    if attempt.status == Status.PENDING and attempt.created_at > now - PENDING_STALE_AFTER:
        return attempt  # still in phase 2 in some process; not ours to judge yet
    if attempt.status not in (Status.UNKNOWN, Status.PENDING):
        return attempt
    method = attempt.payment_method
    gateway: Any = None
    try:
        gateway = get_gateway(attempt.gateway or (method.gateway if method else None))
        result = gateway.lookup(idempotency_key=attempt.idempotency_key, reference=attempt.gateway_reference)
    except Exception as exc:
        logger.exception("gateway lookup for attempt %s raised", attempt.pk)
        result = ChargeResult.unknown(str(exc))
    if result.outcome == ChargeOutcome.NOT_FOUND:
        trusted = (
            getattr(gateway, "lookup_is_immediate", False)
            or attempt.created_at < now - NOT_FOUND_TRUSTED_AFTER
        )
        # A search index may lag behind a charge that did arrive: only an old enough miss releases.
        result = (
            ChargeResult(outcome=ChargeOutcome.CANCELED) if trusted else ChargeResult.unknown("not found yet")
        )
    if result.outcome != ChargeOutcome.UNKNOWN:
        return attempt_apply_result(attempt_id=attempt.pk, result=result)
    with transaction.atomic():
        account_lock(account_id=attempt.account_id)
        attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status not in (Status.UNKNOWN, Status.PENDING):
            return attempt
        attempt.status = Status.UNKNOWN
        attempt.reconcile_count += 1
        step = RECONCILE_BACKOFF[min(attempt.reconcile_count, len(RECONCILE_BACKOFF) - 1)]
        attempt.reconcile_after = now + step
        attempt.save(update_fields=["status", "reconcile_count", "reconcile_after"])
    return attempt


# ---------------------------------------------------------------------------------------------
# Customer entry points


def balance_settle(
    *,
    account_id: int,
    failed_method_id: int,
    chosen_method_id: int,
    actor: Any,
    idempotency_key: str,
    return_url: str = "",
) -> PaymentAttempt:
    """Settle balance: one charge on the chosen method for everything past due on the failed method's
    subscriptions plus the chosen method's own past-due charges. The engine re-checks under the lock."""
    from .selectors import settle_quote

    _require_payer(account_id=account_id, actor=actor)
    existing = PaymentAttempt.objects.filter(idempotency_key=idempotency_key, account_id=account_id).first()
    if existing is not None:
        return existing
    account = BillingAccount.objects.get(pk=account_id)
    try:
        failed = PaymentMethod.objects.get(account_id=account_id, pk=failed_method_id)
        chosen = PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED).get(
            account_id=account_id, pk=chosen_method_id
        )
    except PaymentMethod.DoesNotExist:
        raise PaymentError(
            _("Choose a payment method."), errors={"method": _("Choose a payment method.")}
        ) from None
    quote = settle_quote(account=account, failed_method=failed, chosen_method=chosen)
    if quote.is_empty:
        raise NothingToPay(_("There is nothing left to pay: this balance has already been paid."))
    return invoices_charge(
        account_id=account_id,
        invoice_ids=quote.invoice_ids,
        payment_method_id=chosen.pk,
        source=Source.SETTLE,
        off_session=False,
        idempotency_key=idempotency_key,
        actor=actor,
        replaces_method_id=failed.pk,
        return_url=return_url,
        expected_amount_minor=quote.total.amount_minor,
        description=f"{account.name}: settle balance of {failed.label}",
    )


def invoice_pay(
    *,
    account_id: int,
    invoice_id: int,
    payment_method_id: int,
    actor: Any,
    idempotency_key: str,
    return_url: str = "",
    shown_amount_minor: int | None = None,
) -> PaymentAttempt:
    """Pay now: one invoice, on-session, with the chosen method.

    shown_amount_minor is what the pane showed; if the invoice changed since (a transfer arrived),
    nothing is charged and the pane shows the new amount. The charge itself is always the server's.
    """
    _require_payer(account_id=account_id, actor=actor)
    invoice = Invoice.objects.get(account_id=account_id, pk=invoice_id)
    if (
        shown_amount_minor is not None
        and invoice.is_payable
        and shown_amount_minor != invoice.amount_due_minor
    ):
        raise BalanceChanged(_("The amount due changed while you were paying. Check it and try again."))
    return invoices_charge(
        account_id=account_id,
        invoice_ids=[invoice.pk],
        payment_method_id=payment_method_id,
        source=Source.PAY_NOW,
        off_session=False,
        idempotency_key=idempotency_key,
        actor=actor,
        return_url=return_url,
        description=f"Invoice {invoice.number}",
        expected_amount_minor=invoice.amount_due_minor if invoice.is_payable else None,
    )


# ---------------------------------------------------------------------------------------------
# Cards


def validate_expiry(*, exp_month: Any, exp_year: Any, today: dt.date | None = None) -> tuple[int, int]:
    """Parse and check an expiry date from a form; raise InvalidCardInput with plain-words errors for every
    field at once. Only ASCII digits count ("٣" is not a month)."""
    month_text, year_text = str(exp_month or "").strip(), str(exp_year or "").strip()
    month = int(month_text) if re.fullmatch(r"[0-9]{1,2}", month_text) else 0
    year = int(year_text) if re.fullmatch(r"[0-9]{2}|[0-9]{4}", year_text) else -1
    if 0 <= year < 100:
        year += 2000
    today = today or timezone.localdate()
    errors: dict[str, str] = {}
    if not 1 <= month <= 12:
        errors["exp_month"] = _("Enter the expiry month as a number from 1 to 12.")
    if not 2000 <= year <= today.year + 25:
        errors["exp_year"] = _("Enter the expiry year with four digits.")
    if errors:
        raise InvalidCardInput(next(iter(errors.values())), errors=errors)
    if (year, month) < (today.year, today.month):
        msg = _("This expiry date is in the past. Enter the date printed on the card.")
        raise InvalidCardInput(msg, errors={"exp_month": msg})
    return month, year


HOLDER_NAME_MAX = 120


def _check_holder_name(holder_name: str, errors: dict[str, str]) -> str:
    holder_name = (holder_name or "").strip()
    if len(holder_name) > HOLDER_NAME_MAX:
        errors["holder_name"] = _("Enter the name as printed on the card (at most %(max)s characters).") % {
            "max": HOLDER_NAME_MAX
        }
    return holder_name


def payment_method_add(
    *,
    account_id: int,
    actor: Any,
    number: str,
    exp_month: Any,
    exp_year: Any,
    cvc: str,
    holder_name: str = "",
) -> PaymentMethod:
    """Add a card through the simulated gateway's own form. The number goes to the bank, not our tables."""
    _require_payer(account_id=account_id, actor=actor)
    errors: dict[str, str] = {}
    month = year = 0
    try:
        month, year = validate_expiry(exp_month=exp_month, exp_year=exp_year)
    except InvalidCardInput as exc:
        errors.update(exc.errors)
    holder_name = _check_holder_name(holder_name, errors)
    # Spaces and dashes as people type them; anything else stays in and fails the number check.
    number = "".join(c for c in (number or "") if not c.isspace() and c != "-")
    if not number:
        errors["number"] = _("Enter the card number.")
    elif not luhn_valid(number):
        errors["number"] = _("This card number is not valid. Check the digits and try again.")
    if not re.fullmatch(r"[0-9]{3,4}", (cvc or "").strip()):
        errors["cvc"] = _("Enter the 3 or 4 digit security code from the back of the card.")
    if errors:
        raise InvalidCardInput(_("Check the card details."), errors=errors)
    gateway = get_gateway()
    result = gateway.add_card(
        number=number, exp_month=month, exp_year=year, cvc=(cvc or "").strip(), holder_name=holder_name
    )
    if not result.ok:
        if result.unavailable:
            raise PaymentError(_("The card could not be added just now. Try again in a moment."))
        raise InvalidCardInput(_("Check the card details."), errors=result.errors or {})
    return _payment_method_record(
        account_id=account_id, actor=actor, gateway_name=gateway.name, card=result, holder_name=holder_name
    )


def payment_method_add_from_setup(
    *, account_id: int, actor: Any, setup_intent_id: str, holder_name: str = ""
) -> PaymentMethod:
    """Stripe mode: Elements confirmed a SetupIntent in the browser; record the card it created."""
    _require_payer(account_id=account_id, actor=actor)
    errors: dict[str, str] = {}
    holder_name = _check_holder_name(holder_name, errors)
    if not setup_intent_id or len(setup_intent_id) > 255:
        errors["number"] = _("Enter the card details.")
    if errors:
        raise InvalidCardInput(next(iter(errors.values())), errors=errors)
    from .models import GatewayCustomer

    gateway = get_gateway("stripe")
    result = gateway.card_from_setup_intent(setup_intent_id=setup_intent_id)  # type: ignore[attr-defined]
    if not result.ok:
        if result.unavailable:
            raise PaymentError(_("The card could not be added just now. Try again in a moment."))
        raise InvalidCardInput(_("Check the card details."), errors=result.errors or {})
    # The SetupIntent id comes from the browser: the card must belong to this account's own Stripe
    # customer, or a payer could attach another account's card by quoting its seti_ id.
    customer = GatewayCustomer.objects.filter(account_id=account_id, gateway="stripe").first()
    if customer is None or not result.token.startswith(f"{customer.customer_id}/"):
        logger.warning("setup intent %s does not belong to account %s", setup_intent_id, account_id)
        raise InvalidCardInput(
            _("The card was not confirmed. Try again."),
            errors={"number": _("The card was not confirmed. Try again.")},
        )
    return _payment_method_record(
        account_id=account_id, actor=actor, gateway_name="stripe", card=result, holder_name=holder_name
    )


def card_setup_start(*, account_id: int, actor: Any) -> str:
    """Stripe mode: a SetupIntent for Elements on the account's Stripe customer; returns its client secret."""
    from .models import GatewayCustomer

    _require_payer(account_id=account_id, actor=actor)
    account = BillingAccount.objects.get(pk=account_id)
    gateway: Any = get_gateway("stripe")
    customer = GatewayCustomer.objects.filter(account=account, gateway="stripe").first()
    if customer is None:
        # The key makes a retried request reuse the customer Stripe already created for this account.
        customer_id = gateway.customer_create(
            name=account.name, email=account.notification_email, idempotency_key=f"customer:{account.pk}"
        )
        customer, _created = GatewayCustomer.objects.get_or_create(
            account=account, gateway="stripe", defaults={"customer_id": customer_id}
        )
    _intent_id, client_secret = gateway.setup_intent_create(
        customer=customer.customer_id, idempotency_key=f"setup:{account.pk}:{uuid.uuid4()}"
    )
    return client_secret


def _payment_method_record(
    *, account_id: int, actor: Any, gateway_name: str, card: Any, holder_name: str
) -> PaymentMethod:
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        try:
            with transaction.atomic():
                method = PaymentMethod.objects.create(
                    account=account,
                    brand=card.brand
                    if card.brand in PaymentMethod.Brand.values
                    else PaymentMethod.Brand.OTHER,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                    holder_name=holder_name[:120],
                    owner=actor,
                    gateway=gateway_name,
                    gateway_token=card.token,
                )
        except IntegrityError:
            # The same card saved twice (a double submit) is the one row; a token another account holds is refused.
            existing = PaymentMethod.objects.filter(
                gateway=gateway_name, gateway_token=card.token, account=account
            ).first()
            if existing is None:
                raise InvalidCardInput(
                    _("This card cannot be added."), errors={"number": _("This card cannot be added.")}
                ) from None
            return existing
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.added",
            message=f"{method.label} (expires {method.expiry}) was added",
            target=method,
        )
    return method


def payment_method_update_expiry(
    *, account_id: int, method_id: int, actor: Any, exp_month: Any, exp_year: Any
) -> PaymentMethod:
    """The card's owner enters a new expiry date. A declined or expired card may then pay again."""
    _require_payer(account_id=account_id, actor=actor)
    method = PaymentMethod.objects.get(account_id=account_id, pk=method_id)
    if method.owner_id is None or method.owner_id != getattr(actor, "pk", None):
        raise NotCardOwner(_("Only the person who added this card can change its expiry date."))
    month, year = validate_expiry(exp_month=exp_month, exp_year=exp_year)
    result = get_gateway(method.gateway).update_expiry(
        token=method.gateway_token, exp_month=month, exp_year=year
    )
    if not result.ok:
        raise InvalidCardInput(_("The bank did not accept the new expiry date."), errors=result.errors or {})
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
        old = method.expiry
        method.exp_month, method.exp_year = month, year
        fields = ["exp_month", "exp_year"]
        if method.status in (PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED):
            method.status = PaymentMethod.Status.VALID
            method.last_decline_code = ""
            fields += ["status", "last_decline_code"]
        method.save(update_fields=fields)
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.expiry_changed",
            message=f"{method.label}: expiry date changed from {old} to {method.expiry}",
            target=method,
        )
    return method


# ---------------------------------------------------------------------------------------------
# Webhooks

HANDLED_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
}


def webhook_event_record(*, gateway: str, event: dict[str, Any]) -> tuple[WebhookEvent, bool]:
    """Store a verified event once by its id. Returns (event, created); a replay is not created."""
    try:
        with transaction.atomic():
            return (
                WebhookEvent.objects.create(
                    gateway=gateway, event_id=str(event["id"]), type=str(event["type"])[:100], payload=event
                ),
                True,
            )
    except IntegrityError:
        return WebhookEvent.objects.get(gateway=gateway, event_id=str(event["id"])), False


def webhook_event_process(*, webhook_event_id: int) -> WebhookEvent:
    """Apply one stored event through the same phase 3 as every payment. Safe to run again, and in any
    order with other events: a succeeded attempt stays succeeded, a final one is not reopened."""
    from .gateways.stripe import intent_result

    event = WebhookEvent.objects.get(pk=webhook_event_id)
    if event.status in (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED):
        return event
    status, error = WebhookEvent.Status.IGNORED, ""
    if event.type in HANDLED_EVENTS:
        intent = (event.payload.get("data") or {}).get("object") or {}
        key = (intent.get("metadata") or {}).get("idempotency_key", "")
        attempt = None
        if intent.get("id"):
            attempt = PaymentAttempt.objects.filter(
                gateway=event.gateway, gateway_reference=intent["id"]
            ).first()
        if attempt is None and key:
            attempt = PaymentAttempt.objects.filter(gateway=event.gateway, idempotency_key=key).first()
        if attempt is not None:
            result = intent_result(intent)
            if result.amount_minor is not None and result.amount_minor != attempt.amount_minor:
                status, error = WebhookEvent.Status.FAILED, "amount differs from the attempt's"
            elif result.outcome == ChargeOutcome.REQUIRES_ACTION and attempt.status not in (
                Status.PENDING,
                Status.UNKNOWN,
            ):
                status = WebhookEvent.Status.PROCESSED  # nothing new: the customer already has the challenge
            else:
                attempt_apply_result(attempt_id=attempt.pk, result=result)
                status = WebhookEvent.Status.PROCESSED
    event.status, event.error, event.processed_at = status, error, timezone.now()
    event.save(update_fields=["status", "error", "processed_at"])
    return event
