"""Refunds: money we give back on a succeeded payment, through the gateway that took it.

The same three phases as every charge (payments.services):

1. under the account lock: check what is still refundable, write a `pending` Refund with its
   idempotency key, commit;
2. outside any transaction: `gateway.refund(...)` with that key;
3. under the account lock again: apply the answer (`refund_apply_result`). Succeeded: a credit note on
   each invoice the payment paid, the ledger re-derives what they owe, the customer gets a mail.
   Failed or refused: the refund is failed and nothing changes. No answer, or accepted but not
   finished: it stays `pending`; `refund_reconcile` asks again with the same key (the gateway answers
   with the same refund, it never makes a second) and the gateway's webhook finishes it too.

A refund made at the gateway (Stripe's dashboard) arrives as a REFUND_UPDATED event
(`refund_event_apply`) and is applied the same way, once: it is matched to our own row by the
gateway's refund id, or, while our own call has not answered yet, to our pending refund of the same
payment and amount.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import BillingAccount
from audit.services import audit_record
from billing_portal.dates import format_date
from billing_portal.money import format_money

from .gateways.base import GatewayEvent, RefundOutcome, RefundResult, get_gateway
from .ledger import invoice_ledger_sync
from .models import CreditNote, Dispute, PaymentAllocation, PaymentAttempt, Refund
from .services import PaymentError, account_lock

logger = logging.getLogger(__name__)

REASON_MAX_LENGTH = 500
# A refund without an answer is asked about again after 1 min, 10 min, 1 h, then daily.
REFUND_RECONCILE_BACKOFF = (
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=10),
    dt.timedelta(hours=1),
    dt.timedelta(days=1),
)
# Gateways that can give money back on a payment (a bank transfer is paid back by a person).
REFUNDABLE_SOURCES_EXCLUDED = (PaymentAttempt.Source.BANK_TRANSFER,)


# How a handling note starts when the event is not for us, or cannot be read (webhooks.HANDLERS maps
# these to ignored and failed; any other note means the event was applied).
NOTE_NOT_OURS = "not ours: "
NOTE_UNREADABLE = "unreadable: "


class RefundError(PaymentError):
    """A refund was refused; the message is for the operator, as it is."""


class RefundInProgress(RefundError):
    pass


# ---------------------------------------------------------------------------------------------
# What may still be given back


def refundable_minor(*, attempt: PaymentAttempt) -> int:
    """What is left to give back on a payment: what it took, less refunds that did not fail, less
    chargebacks that are open or lost (the bank has, or may take, that money back itself)."""
    if attempt.status != PaymentAttempt.Status.SUCCEEDED:
        return 0
    refunded = attempt.refunds.exclude(status=Refund.Status.FAILED).aggregate(s=Sum("amount_minor"))["s"] or 0
    disputed = (
        attempt.disputes.exclude(outcome=Dispute.Outcome.WON).aggregate(s=Sum("amount_minor"))["s"] or 0
    )
    return max(attempt.amount_minor - refunded - disputed, 0)


def overpaid_minor(*, attempt: PaymentAttempt) -> int:
    """What a payment took beyond what it paid on invoices, and has not been given back yet."""
    if attempt.status != PaymentAttempt.Status.SUCCEEDED:
        return 0
    applied = attempt.allocations.aggregate(s=Sum("applied_minor"))["s"] or 0
    returned = (
        attempt.refunds.exclude(status=Refund.Status.FAILED).aggregate(s=Sum("unapplied_minor"))["s"] or 0
    )
    return max(min(attempt.amount_minor - applied - returned, refundable_minor(attempt=attempt)), 0)


def payment_invoice_parts(*, attempt: PaymentAttempt, amount_minor: int) -> list[tuple[int, int]]:
    """How a refund or a lost chargeback of `amount_minor` (its invoice part) splits over the invoices
    the payment paid: (invoice id, amount), oldest invoice first, each at most what is still paid on
    it by this payment (applied, less earlier credit notes and reversals of this payment)."""
    from .models import DisputeReversal

    left = amount_minor
    parts: list[tuple[int, int]] = []
    allocations = PaymentAllocation.objects.filter(attempt=attempt, applied_minor__gt=0).order_by(
        "invoice_id"
    )
    credited = {
        row["invoice_id"]: row["s"]
        for row in CreditNote.objects.filter(refund__attempt=attempt)
        .order_by()
        .values("invoice_id")
        .annotate(s=Sum("amount_minor"))
    }
    reversed_ = {
        row["invoice_id"]: row["s"]
        for row in DisputeReversal.objects.filter(dispute__attempt=attempt)
        .order_by()
        .values("invoice_id")
        .annotate(s=Sum("amount_minor"))
    }
    for allocation in allocations:
        if left <= 0:
            break
        still_paid = (
            allocation.applied_minor
            - credited.get(allocation.invoice_id, 0)
            - reversed_.get(allocation.invoice_id, 0)
        )
        part = min(left, still_paid)
        if part > 0:
            parts.append((allocation.invoice_id, part))
            left -= part
    return parts


def _clean_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise RefundError(_("Give a reason for the refund; it goes into the audit trail."))
    if len(reason) > REASON_MAX_LENGTH:
        raise RefundError(_("Keep the reason under %(n)d characters.") % {"n": REASON_MAX_LENGTH})
    return reason


def refund_check(*, attempt: PaymentAttempt, amount_minor: int) -> None:
    """Refuse, with words for the operator, a refund that cannot be made (also for the preview)."""
    if attempt.status != PaymentAttempt.Status.SUCCEEDED:
        raise RefundError(
            _("Payment %(reference)s did not succeed; there is nothing to refund.")
            % {"reference": attempt.reference}
        )
    if attempt.source in REFUNDABLE_SOURCES_EXCLUDED or attempt.payment_method_id is None:
        raise RefundError(
            _("Payment %(reference)s was a bank transfer; pay it back by bank transfer, not here.")
            % {"reference": attempt.reference}
        )
    if amount_minor <= 0:
        raise RefundError(_("The amount must be more than zero."))
    if attempt.refunds.filter(status=Refund.Status.PENDING).exists():
        raise RefundInProgress(
            _("A refund of %(reference)s is still in progress; wait for its outcome first.")
            % {"reference": attempt.reference}
        )
    left = refundable_minor(attempt=attempt)
    if amount_minor > left:
        raise RefundError(
            _("%(amount)s is more than what is left to refund on %(reference)s (%(left)s).")
            % {
                "amount": format_money(amount_minor, attempt.currency),
                "reference": attempt.reference,
                "left": format_money(left, attempt.currency),
            }
        )


# ---------------------------------------------------------------------------------------------
# Our own refunds


def payment_refund(
    *,
    attempt_id: int,
    amount_minor: int,
    reason: str,
    actor: Any,
    idempotency_key: str,
    source: str = Refund.Source.SUPPORT,
    ip_address: str | None = None,
) -> Refund:
    """Give back `amount_minor` of a succeeded card payment, once per idempotency key.

    Returns the refund in its resulting state: succeeded, failed, or pending (the gateway has not
    said yet; it is finished by look-up or webhook). A repeated key returns the first refund.
    Raises RefundError (with words for the operator) when the refund cannot be made, e.g. more than
    what is left, or another refund of the payment still in progress.
    """
    reason = _clean_reason(reason)
    existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.attempt_id != attempt_id:
            raise RefundError("idempotency key already used for another payment")
        return existing
    try:
        refund = _phase1_create(
            attempt_id=attempt_id,
            amount_minor=amount_minor,
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            source=source,
            ip_address=ip_address,
        )
    except IntegrityError:
        # The same key committed by a concurrent double submit: answer with that refund.
        existing = Refund.objects.filter(idempotency_key=idempotency_key, attempt_id=attempt_id).first()
        if existing is None:
            raise
        return existing
    if refund.status != Refund.Status.PENDING or refund.gateway_reference:
        return refund
    result = _gateway_refund(refund=refund)
    return refund_apply_result(refund_id=refund.pk, result=result)


def _phase1_create(
    *,
    attempt_id: int,
    amount_minor: int,
    reason: str,
    actor: Any,
    idempotency_key: str,
    source: str,
    ip_address: str | None,
) -> Refund:
    with transaction.atomic():
        account_id = PaymentAttempt.objects.values_list("account_id", flat=True).get(pk=attempt_id)
        account = account_lock(account_id=account_id)
        existing = Refund.objects.filter(idempotency_key=idempotency_key, attempt_id=attempt_id).first()
        if existing is not None:
            return existing
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self",))
            .select_related("payment_method")
            .get(pk=attempt_id)
        )
        refund_check(attempt=attempt, amount_minor=amount_minor)
        unapplied = min(amount_minor, overpaid_minor(attempt=attempt))
        refund = Refund.objects.create(
            account=account,
            attempt=attempt,
            amount_minor=amount_minor,
            currency=attempt.currency,
            unapplied_minor=unapplied,
            reason=reason,
            source=source,
            gateway=attempt.gateway,
            idempotency_key=idempotency_key,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            initiated_by_label=getattr(actor, "email", "") or source,
        )
        audit_record(
            account=account,
            actor=actor if getattr(actor, "is_authenticated", False) else None,
            actor_label=refund.initiated_by_label,
            action="refund.requested",
            message=f"Refund {refund.reference} of {refund.amount} on payment {attempt.reference} requested: {reason}",
            target=refund,
            data={
                "reason": reason,
                "amount_minor": amount_minor,
                "payment": attempt.reference,
                "source": source,
            },
            ip_address=ip_address,
        )
    return refund


def _gateway_refund(*, refund: Refund) -> RefundResult:
    """Phase 2. Outside any transaction: a slow gateway must not hold the account lock."""
    attempt = refund.attempt
    try:
        return get_gateway(refund.gateway).refund(
            charge_reference=attempt.gateway_reference,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            idempotency_key=refund.idempotency_key,
            reason=refund.reason,
        )
    except Exception as exc:  # whatever broke, money may have moved: ask again with the same key
        logger.exception("gateway refund for %s raised", refund.reference)
        return RefundResult(outcome=RefundOutcome.UNKNOWN, message=f"{type(exc).__name__}: {exc}")


def refund_apply_result(*, refund_id: int, result: RefundResult) -> Refund:
    """Phase 3: apply a gateway answer to a refund, idempotently and in any order. A finished refund
    never changes again; a late "pending" never undoes "succeeded"."""
    now = timezone.now()
    with transaction.atomic():
        account_id = Refund.objects.values_list("account_id", flat=True).get(pk=refund_id)
        account = account_lock(account_id=account_id)
        refund = Refund.objects.select_for_update(of=("self",)).select_related("attempt").get(pk=refund_id)
        fields: list[str] = []
        if result.reference and not refund.gateway_reference:
            refund.gateway_reference = result.reference
            fields.append("gateway_reference")
        elif result.reference and result.reference != refund.gateway_reference:
            logger.error(
                "refund %s: gateway answered %s, row holds %s",
                refund.reference,
                result.reference,
                refund.gateway_reference,
            )
        if refund.status != Refund.Status.PENDING:
            if fields:
                refund.save(update_fields=fields)
            return refund
        if result.outcome == RefundOutcome.SUCCEEDED:
            _refund_succeed(account=account, refund=refund, now=now, fields=fields)
        elif result.outcome in (RefundOutcome.FAILED, RefundOutcome.INVALID):
            refund.status = Refund.Status.FAILED
            refund.failure_message = (result.message or str(result.outcome))[:300]
            refund.completed_at = now
            refund.reconcile_after = None
            refund.save(
                update_fields=[*fields, "status", "failure_message", "completed_at", "reconcile_after"]
            )
            audit_record(
                account=account,
                actor_label="billing",
                action="refund.failed",
                message=f"Refund {refund.reference} of {refund.amount} on payment {refund.attempt.reference} "
                f"failed: {refund.failure_message}",
                target=refund,
                data={"outcome": str(result.outcome)},
            )
        else:  # PENDING or UNKNOWN: finished later by look-up or webhook, never sent with a new key
            step = REFUND_RECONCILE_BACKOFF[min(refund.reconcile_count, len(REFUND_RECONCILE_BACKOFF) - 1)]
            refund.reconcile_after = now + step
            refund.save(update_fields=[*fields, "reconcile_after"])
    return refund


def _refund_succeed(*, account: BillingAccount, refund: Refund, now: dt.datetime, fields: list[str]) -> None:
    """Money went back: credit notes on the invoices it came off, the ledger re-derived, a mail."""
    attempt = refund.attempt
    refund.status = Refund.Status.SUCCEEDED
    refund.completed_at = now
    refund.reconcile_after = None
    refund.failure_message = ""
    refund.save(update_fields=[*fields, "status", "completed_at", "reconcile_after", "failure_message"])
    notes: list[CreditNote] = []
    for invoice_id, part in payment_invoice_parts(
        attempt=attempt, amount_minor=refund.amount_minor - refund.unapplied_minor
    ):
        note = CreditNote.objects.create(
            account=account,
            invoice_id=invoice_id,
            refund=refund,
            # A placeholder only until the row has its id: the series is the id (CN-00000042).
            number=f"CN-new-{refund.pk}-{invoice_id}",
            amount_minor=part,
            currency=refund.currency,
            reason=refund.reason,
        )
        note.number = f"CN-{note.pk:08d}"
        note.save(update_fields=["number"])
        notes.append(note)
    invoice_ledger_sync(invoice_ids=[n.invoice_id for n in notes], at=now)
    numbers = {n.invoice_id: n for n in notes}
    invoice_numbers = dict(
        attempt.allocations.filter(invoice_id__in=numbers).values_list("invoice_id", "invoice__number")
    )
    notes_text = ", ".join(f"{n.number} on {invoice_numbers[n.invoice_id]} ({n.amount})" for n in notes)
    audit_record(
        account=account,
        actor=refund.initiated_by,
        actor_label=refund.initiated_by_label,
        action="refund.succeeded",
        message=f"Refund {refund.reference} of {refund.amount} on payment {attempt.reference} succeeded"
        + (f"; credit notes {notes_text}" if notes else "")
        + (
            f"; {format_money(refund.unapplied_minor, refund.currency)} overpaid"
            if refund.unapplied_minor
            else ""
        ),
        target=refund,
        data={
            "credit_notes": [n.number for n in notes],
            "unapplied_minor": refund.unapplied_minor,
            "reason": refund.reason,
        },
    )
    from notifications.services import notice_send

    notice_send(
        account=account,
        kind="refund_issued",
        dedupe_key=f"refund_issued:{refund.pk}",
        context={
            "reference": refund.reference,
            "payment_reference": attempt.reference,
            "amount": format_money(refund.amount_minor, refund.currency, account.language),
            "credit_notes": ", ".join(f"{n.number} ({invoice_numbers[n.invoice_id]})" for n in notes),
            "refunded_on": format_date(timezone.localdate(now), account.language),
        },
    )


def refund_reconcile(*, refund_id: int) -> Refund:
    """Ask the gateway again about a refund without a final answer: the same request with the same
    idempotency key, so the gateway answers with the refund it made (or makes it now, once)."""
    refund = Refund.objects.select_related("attempt").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    with transaction.atomic():
        account_lock(account_id=refund.account_id)
        Refund.objects.filter(pk=refund.pk).update(reconcile_count=refund.reconcile_count + 1)
    return refund_apply_result(refund_id=refund.pk, result=_gateway_refund(refund=refund))


# A pending refund without an answer time older than this lost its process between phase 1 and 3.
PENDING_STALE_AFTER = dt.timedelta(minutes=5)


def refunds_due_for_reconcile(*, now: dt.datetime, account_id: int | None = None) -> list[int]:
    """Pending refunds to ask the gateway about again: their backoff ran out, or their process died
    before it got an answer."""
    qs = Refund.objects.filter(
        Q(reconcile_after__lte=now)
        | Q(reconcile_after__isnull=True, created_at__lte=now - PENDING_STALE_AFTER),
        status=Refund.Status.PENDING,
    )
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    return list(qs.order_by("pk").values_list("pk", flat=True))


# ---------------------------------------------------------------------------------------------
# Refunds the gateway tells us about


def refund_event_apply(*, event: GatewayEvent) -> str:
    """Apply a REFUND_UPDATED event, exactly once, in any order, also while our own refund call for
    the same refund has not answered yet. Returns a note on what was done, for the event's record."""
    info = event.refund
    if info is None:
        return f"{NOTE_UNREADABLE}refund event without a refund"
    attempt = PaymentAttempt.objects.filter(gateway_reference=info.charge_reference).order_by("pk").first()
    if attempt is None:
        return f"{NOTE_NOT_OURS}no payment of ours for charge {info.charge_reference}"
    if info.amount_minor <= 0:
        return f"{NOTE_UNREADABLE}refund {info.reference} has no amount"
    with transaction.atomic():
        account = account_lock(account_id=attempt.account_id)
        refund = Refund.objects.filter(gateway=attempt.gateway, gateway_reference=info.reference).first()
        claimed = False
        if refund is None and event.idempotency_key:
            # Our own refund, named by the key the gateway echoes back, whose answer has not arrived yet.
            refund = (
                Refund.objects.select_for_update(of=("self",))
                .filter(attempt=attempt, idempotency_key=event.idempotency_key, gateway_reference="")
                .first()
            )
            if refund is not None:
                refund.gateway_reference = info.reference
                refund.save(update_fields=["gateway_reference"])
                claimed = True
        if refund is None:
            # Our own call may not have answered yet: our pending refund of this payment and amount,
            # made before the gateway created this one, is the same refund.
            refund = (
                Refund.objects.select_for_update(of=("self",))
                .filter(
                    attempt=attempt,
                    status=Refund.Status.PENDING,
                    gateway_reference="",
                    amount_minor=info.amount_minor,
                )
                .filter(Q(created_at__lte=event.created + dt.timedelta(minutes=5)))
                .order_by("pk")
                .first()
            )
            if refund is not None:
                refund.gateway_reference = info.reference
                refund.save(update_fields=["gateway_reference"])
                claimed = True
        if refund is None:
            if info.status in (RefundOutcome.FAILED, RefundOutcome.INVALID):
                return f"{NOTE_NOT_OURS}refund {info.reference} failed at the gateway; nothing of ours"
            left = refundable_minor(attempt=attempt)
            if info.amount_minor > left:
                logger.error(
                    "refund %s of %s on %s exceeds what we think is refundable (%s)",
                    info.reference,
                    info.amount_minor,
                    attempt.reference,
                    left,
                )
            unapplied = min(info.amount_minor, overpaid_minor(attempt=attempt))
            refund = Refund.objects.create(
                account=account,
                attempt=attempt,
                amount_minor=info.amount_minor,
                currency=attempt.currency,
                unapplied_minor=unapplied,
                reason=(info.reason or "refunded at the payment provider")[:500],
                source=Refund.Source.GATEWAY,
                gateway=attempt.gateway,
                gateway_reference=info.reference,
                idempotency_key=f"gateway-refund:{attempt.gateway}:{info.reference}"[:120],
                initiated_by_label="payment provider",
            )
            audit_record(
                account=account,
                actor_label="payment provider",
                action="refund.requested",
                message=f"Refund {refund.reference} of {refund.amount} on payment {attempt.reference} "
                f"was made at the payment provider ({info.reference})",
                target=refund,
                data={"gateway_reference": info.reference, "reason": refund.reason},
            )
        before = refund.status
    refund = refund_apply_result(
        refund_id=refund.pk,
        result=RefundResult(
            outcome=info.status,
            reference=info.reference,
            amount_minor=info.amount_minor,
            currency=info.currency,
            message=f"webhook {event.raw_type}",
        ),
    )
    how = "matched to our pending refund" if claimed else "applied"
    if before != Refund.Status.PENDING:
        return f"refund {refund.reference} already {before}; nothing changed"
    return f"refund {refund.reference} {how}: {refund.status}"
