"""Disputes (chargebacks): a cardholder asked their bank to take a payment back.

- Opened: the dispute is recorded against the payment, the card is marked disputed so no automatic
  charge (renewal, dunning retry, support's off-session retry) uses it again for this account, and
  support sees it on the dashboard and in the account's timeline with the reason and evidence due date.
- Lost: the bank took the money back; the disputed amount is due again on the invoices the payment
  paid (DisputeReversal rows, the ledger re-derives what they owe), with the dispute named. Nothing
  is charged automatically: the invoice is not scheduled and the card stays disputed.
- Won: nothing changes, and the timeline says so.

Events may come in any order, twice, or replayed: a closed dispute never reopens, the reversal is
written once (unique per dispute and invoice), and an older event never overwrites newer details.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import BillingAccount
from audit.services import audit_record
from subscriptions.models import Invoice, Subscription
from subscriptions.services import subscription_mark_past_due

from .gateways.base import DisputeInfo, GatewayEvent, GatewayEventKind
from .ledger import invoice_ledger_sync
from .models import Dispute, DisputeReversal, PaymentAttempt, PaymentMethod, Refund
from .refunds import NOTE_NOT_OURS, NOTE_UNREADABLE, payment_invoice_parts
from .services import account_lock

logger = logging.getLogger(__name__)

# The gateway's words for a dispute that is over. "lost": the bank kept the money for the cardholder;
# every other ending leaves the money with us (won, a warning/inquiry closed, refunded instead, prevented).
LOST_STATUSES = {"lost"}
CLOSED_STATUSES = {"won", "lost", "warning_closed", "charge_refunded", "prevented"}


def _is_closing(event: GatewayEvent, info: DisputeInfo) -> bool:
    return event.kind == GatewayEventKind.DISPUTE_CLOSED or info.status in CLOSED_STATUSES


def dispute_event_apply(*, event: GatewayEvent) -> str:
    """Apply a DISPUTE_OPENED / DISPUTE_UPDATED / DISPUTE_CLOSED event. Returns a note on what was done."""
    info = event.dispute
    if info is None:
        return f"{NOTE_UNREADABLE}dispute event without a dispute"
    attempt = PaymentAttempt.objects.filter(gateway_reference=info.charge_reference).order_by("pk").first()
    if attempt is None:
        return f"{NOTE_NOT_OURS}no payment of ours for charge {info.charge_reference}"
    if info.amount_minor <= 0:
        return f"{NOTE_UNREADABLE}dispute {info.reference} has no amount"
    now = timezone.now()
    notes: list[str] = []
    with transaction.atomic():
        account = account_lock(account_id=attempt.account_id)
        dispute = (
            Dispute.objects.select_for_update()
            .filter(gateway=attempt.gateway, gateway_reference=info.reference)
            .first()
        )
        if dispute is None:
            dispute = _dispute_open(account=account, attempt=attempt, info=info, event=event, now=now)
            notes.append(f"dispute {dispute.reference} recorded")
        elif dispute.status == Dispute.Status.OPEN and (
            dispute.last_event_at is None or event.created >= dispute.last_event_at
        ):
            dispute.gateway_status = info.status[:40]
            dispute.evidence_due_by = info.evidence_due_by or dispute.evidence_due_by
            dispute.reason = (info.reason or dispute.reason)[:60]
            dispute.last_event_at = event.created
            dispute.save(update_fields=["gateway_status", "evidence_due_by", "reason", "last_event_at"])
            notes.append(f"dispute {dispute.reference} updated ({info.status})")
        if _is_closing(event, info):
            if dispute.status == Dispute.Status.CLOSED:
                notes.append(f"dispute {dispute.reference} already closed ({dispute.outcome})")
            else:
                _dispute_close(account=account, dispute=dispute, info=info, event=event, now=now)
                notes.append(f"dispute {dispute.reference} {dispute.outcome}")
    return "; ".join(notes) or f"dispute {dispute.reference}: nothing new"


def _dispute_open(
    *,
    account: BillingAccount,
    attempt: PaymentAttempt,
    info: DisputeInfo,
    event: GatewayEvent,
    now: dt.datetime,
) -> Dispute:
    dispute = Dispute.objects.create(
        account=account,
        attempt=attempt,
        gateway=attempt.gateway,
        gateway_reference=info.reference,
        amount_minor=info.amount_minor,
        currency=info.currency.upper() or attempt.currency,
        reason=(info.reason or "general")[:60],
        gateway_status=info.status[:40],
        evidence_due_by=info.evidence_due_by,
        last_event_at=event.created,
    )
    method = (
        PaymentMethod.objects.select_for_update().filter(pk=attempt.payment_method_id).first()
        if attempt.payment_method_id
        else None
    )
    blocked = ""
    if method is not None and method.disputed_at is None:
        method.disputed_at = now
        method.blocked_reason = (
            f"Chargeback {dispute.reference} on payment {attempt.reference} ({dispute.reason})"
        )
        method.save(update_fields=["disputed_at", "blocked_reason"])
        blocked = f"; automatic charges on {method.label} stopped"
    due = f", evidence due by {dispute.evidence_due_by:%d %b %Y %H:%M} UTC" if dispute.evidence_due_by else ""
    audit_record(
        account=account,
        actor_label="payment provider",
        action="dispute.opened",
        message=f"Chargeback {dispute.reference} of {dispute.amount} on payment {attempt.reference}: "
        f"reason {dispute.reason}{due}{blocked}",
        target=dispute,
        data={
            "gateway_reference": info.reference,
            "reason": dispute.reason,
            "evidence_due_by": dispute.evidence_due_by.isoformat() if dispute.evidence_due_by else None,
            "payment_method": attempt.payment_method_id,
        },
    )
    return dispute


def _dispute_close(
    *, account: BillingAccount, dispute: Dispute, info: DisputeInfo, event: GatewayEvent, now: dt.datetime
) -> None:
    lost = info.status in LOST_STATUSES
    dispute.status = Dispute.Status.CLOSED
    dispute.outcome = Dispute.Outcome.LOST if lost else Dispute.Outcome.WON
    dispute.gateway_status = info.status[:40]
    dispute.closed_at = now
    dispute.last_event_at = max(filter(None, [dispute.last_event_at, event.created]))
    dispute.save(update_fields=["status", "outcome", "gateway_status", "closed_at", "last_event_at"])
    attempt = dispute.attempt
    if not lost:
        audit_record(
            account=account,
            actor_label="payment provider",
            action="dispute.won",
            message=f"Chargeback {dispute.reference} on payment {attempt.reference} was decided in our favour "
            f"({info.status}): the money stays paid and nothing changes",
            target=dispute,
        )
        return
    # The bank took the money back. What this payment still paid on invoices, less what a refund already
    # gave back beyond the overpaid part, is due again; what it overpaid comes off first.
    applied = sum(a.applied_minor for a in attempt.allocations.all())
    returned_unapplied = sum(r.unapplied_minor for r in attempt.refunds.exclude(status=Refund.Status.FAILED))
    overpaid_left = max(attempt.amount_minor - applied - returned_unapplied, 0)
    invoice_part = max(dispute.amount_minor - overpaid_left, 0)
    parts = payment_invoice_parts(attempt=attempt, amount_minor=invoice_part)
    DisputeReversal.objects.bulk_create(
        [
            DisputeReversal(dispute=dispute, invoice_id=invoice_id, amount_minor=part)
            for invoice_id, part in parts
        ]
    )
    invoices = invoice_ledger_sync(invoice_ids=[i for i, _part in parts], at=now)
    for invoice in invoices:
        sub_id = invoice.subscription_id
        if invoice.status == Invoice.Status.PAST_DUE and sub_id:
            status = Subscription.objects.values_list("status", flat=True).get(pk=sub_id)
            if status == Subscription.Status.ACTIVE:
                subscription_mark_past_due(subscription_id=sub_id, at=now)
    numbers = ", ".join(f"{i.number} ({i.amount_due})" for i in invoices)
    audit_record(
        account=account,
        actor_label="payment provider",
        action="dispute.lost",
        message=f"Chargeback {dispute.reference} on payment {attempt.reference} was lost: the bank took back "
        f"{dispute.amount}; due again: {numbers or 'nothing (it was overpaid money)'}. Nothing is charged "
        "automatically; the customer pays it themselves",
        target=dispute,
        data={"invoices": {i.number: i.amount_due_minor for i in invoices}},
    )
