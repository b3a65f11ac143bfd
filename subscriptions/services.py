"""State transitions of subscriptions and invoices.

Every transition locks its row, checks the current state and raises InvalidTransition when the
row is not in a state it may leave. Callers that move money hold the billing account's lock
(payments.services.account_lock) around these, so the lock order is always account → row.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_event, audit_record
from billing_portal.batch import WriteBatch

from .models import UNPAID_STATUSES, Invoice, Product, Subscription


class InvalidTransition(Exception):
    """The row is not in a state that allows this change."""


def _locked_subscription(subscription_id: int) -> Subscription:
    return Subscription.objects.select_for_update().select_related("product").get(pk=subscription_id)


def _locked_invoice(invoice_id: int) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice_id)


@transaction.atomic
def invoice_mark_past_due(*, invoice_id: int, at: dt.datetime) -> Invoice:
    """open → past_due: the due date passed or a charge for it failed. Idempotent for past_due."""
    invoice = _locked_invoice(invoice_id)
    if invoice.status == Invoice.Status.PAST_DUE:
        return invoice
    if invoice.status != Invoice.Status.OPEN:
        raise InvalidTransition(f"invoice {invoice.number} is {invoice.status}, not open")
    invoice.status = Invoice.Status.PAST_DUE
    if invoice.first_failed_at is None:
        invoice.first_failed_at = at
    invoice.save(update_fields=["status", "first_failed_at"])
    return invoice


@transaction.atomic
def invoice_apply_payment(*, invoice_id: int, amount_minor: int, at: dt.datetime) -> Invoice:
    """Reduce what is owed; the invoice is paid when nothing is left. Never below zero."""
    invoice = _locked_invoice(invoice_id)
    if invoice.status not in Invoice.PAYABLE_STATUSES:
        raise InvalidTransition(f"invoice {invoice.number} is {invoice.status}, nothing to pay")
    if amount_minor <= 0 or amount_minor > invoice.amount_due_minor:
        raise InvalidTransition(
            f"cannot apply {amount_minor} to invoice {invoice.number} with {invoice.amount_due_minor} due"
        )
    return invoice_amount_due_set(
        invoice_id=invoice.pk, amount_due_minor=invoice.amount_due_minor - amount_minor, at=at
    )


@transaction.atomic(savepoint=False)
def invoice_amount_due_set(
    *, invoice_id: int, amount_due_minor: int, at: dt.datetime, locked: Invoice | None = None
) -> Invoice:
    """Store what is owed, as the payments ledger (payments.ledger) derives it from payments, credit
    notes and lost disputes, and move the state with it: nothing due → paid; due again on a paid
    invoice (a lost chargeback) → past due, or open while its due date is still ahead. A reopened
    invoice is never scheduled for an automatic charge (next_attempt_at stays empty).

    `locked`: the invoice as the caller has just read it with select_for_update in this transaction
    (the ledger does), so it is not locked and read again. No savepoint: an error here is the whole
    transaction's error.
    """
    invoice = locked if locked is not None and locked.pk == invoice_id else _locked_invoice(invoice_id)
    if invoice.status in (Invoice.Status.VOID, Invoice.Status.UNCOLLECTIBLE):
        raise InvalidTransition(f"invoice {invoice.number} is {invoice.status}; what is due does not move")
    if not 0 <= amount_due_minor <= invoice.total_minor:
        raise InvalidTransition(
            f"invoice {invoice.number}: {amount_due_minor} due is outside 0..{invoice.total_minor}"
        )
    fields = []
    if amount_due_minor != invoice.amount_due_minor:
        invoice.amount_due_minor = amount_due_minor
        fields.append("amount_due_minor")
    if amount_due_minor == 0 and invoice.status != Invoice.Status.PAID:
        invoice.status = Invoice.Status.PAID
        invoice.paid_at = at
        invoice.next_attempt_at = None
        fields += ["status", "paid_at", "next_attempt_at"]
    elif amount_due_minor > 0 and invoice.status == Invoice.Status.PAID:
        overdue = invoice.due_on < timezone.localdate(at)
        invoice.status = Invoice.Status.PAST_DUE if overdue else Invoice.Status.OPEN
        invoice.paid_at = None
        invoice.next_attempt_at = None
        if overdue and invoice.first_failed_at is None:
            invoice.first_failed_at = at
            fields.append("first_failed_at")
        fields += ["status", "paid_at", "next_attempt_at"]
    if fields:
        invoice.save(update_fields=fields)
    return invoice


def invoices_mark_paid(
    *, invoices: list[Invoice], at: dt.datetime, writes: WriteBatch | None = None
) -> list[Invoice]:
    """Nothing is due any more on these invoices (the ledger derived 0 for each): open/past due → paid, in ONE
    UPDATE whatever their number. The caller read them with select_for_update in its transaction, under the
    account lock, and passes those rows; an invoice that is not open or past due is refused. With `writes`,
    the UPDATE joins the caller's batch (billing_portal.batch), sent when the caller executes it."""
    for invoice in invoices:
        if invoice.status not in Invoice.PAYABLE_STATUSES:
            raise InvalidTransition(f"invoice {invoice.number} is {invoice.status}, nothing to pay")
    if invoices:
        batch = writes if writes is not None else WriteBatch()
        batch.update(
            Invoice.objects.filter(pk__in=[i.pk for i in invoices]),
            status=Invoice.Status.PAID,
            amount_due_minor=0,
            paid_at=at,
            next_attempt_at=None,
        )
        if writes is None:
            batch.execute()
    for invoice in invoices:
        invoice.status, invoice.amount_due_minor, invoice.paid_at, invoice.next_attempt_at = (
            Invoice.Status.PAID,
            0,
            at,
            None,
        )
    return invoices


@transaction.atomic
def subscription_mark_past_due(*, subscription_id: int, at: dt.datetime) -> Subscription:
    """active → past_due after a failed charge. The grace period runs from the first failure."""
    sub = _locked_subscription(subscription_id)
    if sub.status in UNPAID_STATUSES:
        return sub
    if sub.status != Subscription.Status.ACTIVE:
        raise InvalidTransition(f"subscription {sub.pk} is {sub.status}")
    sub.status = Subscription.Status.PAST_DUE
    sub.past_due_since = at
    sub.grace_ends_at = at + settings.BILLING_GRACE_PERIOD
    sub.next_lifecycle_at = sub.grace_ends_at
    sub.save(update_fields=["status", "past_due_since", "grace_ends_at", "next_lifecycle_at"])
    audit_record(
        account=sub.account,
        actor_label="billing",
        action="subscription.past_due",
        message=f"{sub.product.name} is past due; it will be disabled on {sub.grace_ends_at:%d %b %Y}",
        target=sub,
    )
    return sub


def period_end_after(start: dt.date, period: str) -> dt.date:
    """The last day of a period that starts on `start` (a month or a year, clamped to the month's end)."""
    months = 12 if period == Product.Period.ANNUAL else 1
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return dt.date(year, month, day) - dt.timedelta(days=1)


@transaction.atomic(savepoint=False)
def subscription_restore(
    *,
    subscription_id: int,
    at: dt.datetime,
    actor: Any = None,
    actor_label: str = "",
    past_due_checked: bool = False,
    read: Subscription | None = None,
    audits: list[AuditEvent] | None = None,
) -> Subscription:
    """past_due/warned/disabled → active once nothing on it is unpaid.

    A cancelled one comes back only when someone asked to reactivate it (`subscription_request_reactivation`)
    and its reactivation window is still open; otherwise it stays cancelled.

    A subscription that was not renewed while it was unpaid has a period that ended in the past. The
    payment that reactivates it pays that period, so the period starts again on the day it comes back:
    its renewal date moves to the next period and never stays in the past.

    No savepoint (an error is the caller's transaction's error), and the account comes with the row
    for the audit event. `past_due_checked`: the caller (payments.ledger.payment_apply) has just seen,
    under the account lock, that none of the subscription's invoices is past due; it is not asked again.

    `read`: the row as the caller read it in this transaction, under the account lock, with its product and
    account (payment_apply). Then it is not locked and read again: ONE conditional UPDATE (WHERE the
    status, reactivation request and period are still what was read) writes it, and if anything changed
    meanwhile the row is locked and read after all. `audits`: the audit event is appended there for the
    caller to insert with its own (audit.services.audits_record), in the same transaction.
    """
    if read is not None:
        restored = _restore_read(read=read, at=at, actor=actor, actor_label=actor_label, audits=audits)
        if restored is not None:
            return restored
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("product", "account")
        .get(pk=subscription_id)
    )
    if sub.status == Subscription.Status.ACTIVE:
        return sub
    reactivating = (
        sub.status == Subscription.Status.CANCELLED
        and sub.reactivation_requested_at is not None
        and sub.can_reactivate(at=at)
    )
    if sub.status == Subscription.Status.CANCELLED and sub.reactivation_requested_at and not reactivating:
        return sub  # asked for too late: the window closed before the payment came; it stays cancelled
    if sub.status not in UNPAID_STATUSES and not reactivating:
        raise InvalidTransition(f"subscription {sub.pk} is {sub.status} and cannot be reactivated")
    if (
        not past_due_checked
        and sub.invoices.filter(status=Invoice.Status.PAST_DUE, amount_due_minor__gt=0).exists()
    ):
        return sub
    previous = sub.status
    fields = _restored(sub, at=at)
    sub.save(update_fields=fields)
    event = _reactivated_event(sub, previous=previous, actor=actor, actor_label=actor_label)
    if audits is None:
        event.save(force_insert=True)
    else:
        audits.append(event)
    return sub


def _restored(sub: Subscription, *, at: dt.datetime) -> list[str]:
    """Set `sub` active in memory (the period starts again if it ended); the fields that changed."""
    sub.status = Subscription.Status.ACTIVE
    sub.past_due_since = None
    sub.grace_ends_at = None
    sub.disabled_at = None
    sub.cancelled_at = None
    sub.reactivation_requested_at = None
    sub.next_lifecycle_at = None
    fields = [
        "status",
        "past_due_since",
        "grace_ends_at",
        "disabled_at",
        "cancelled_at",
        "reactivation_requested_at",
        "next_lifecycle_at",
    ]
    today = timezone.localdate(at)
    if sub.current_period_end < today:
        sub.current_period_start = today
        sub.current_period_end = period_end_after(today, sub.product.billing_period)
        fields += ["current_period_start", "current_period_end"]
    return fields


def _reactivated_event(sub: Subscription, *, previous: str, actor: Any, actor_label: str) -> AuditEvent:
    return audit_event(
        account=sub.account,
        actor=actor,
        actor_label=actor_label,
        action="subscription.reactivated",
        message=f"{sub.product.name} is active again (was {previous.replace('_', ' ')}); "
        f"it renews on {sub.current_period_end + dt.timedelta(days=1):%d %b %Y}",
        target=sub,
    )


def _restore_read(
    *, read: Subscription, at: dt.datetime, actor: Any, actor_label: str, audits: list[AuditEvent] | None
) -> Subscription | None:
    """subscription_restore for a row read under the account lock: one conditional UPDATE. None when the
    row is not one this path restores as read (let the locking path decide) or changed since it was read."""
    if read.status not in UNPAID_STATUSES:
        return None  # active (nothing to do), cancelled (the reactivation window rules): the locking path
    previous = read.status
    expected = {
        "status": read.status,
        "reactivation_requested_at": read.reactivation_requested_at,
        "current_period_end": read.current_period_end,
    }
    sub = copy.copy(read)
    fields = _restored(sub, at=at)
    changed = Subscription.objects.filter(pk=sub.pk, **expected).update(
        **{name: getattr(sub, name) for name in fields}
    )
    if not changed:
        return None
    event = _reactivated_event(sub, previous=previous, actor=actor, actor_label=actor_label)
    if audits is None:
        event.save(force_insert=True)
    else:
        audits.append(event)
    read.__dict__.update({name: getattr(sub, name) for name in fields})
    return read


@transaction.atomic
def subscription_warn(*, subscription_id: int, at: dt.datetime) -> Subscription:
    """past_due → warned: the final warning before disabling (Azure's "Warned" state). Idempotent."""
    sub = _locked_subscription(subscription_id)
    if sub.status == Subscription.Status.WARNED:
        return sub
    if sub.status != Subscription.Status.PAST_DUE:
        raise InvalidTransition(f"subscription {sub.pk} is {sub.status}, not past due")
    sub.status = Subscription.Status.WARNED
    sub.save(update_fields=["status"])
    audit_record(
        account=sub.account,
        actor_label="billing",
        action="subscription.warned",
        message=f"{sub.product.name} will be disabled for non-payment"
        + (f" on {sub.grace_ends_at:%d %b %Y}" if sub.grace_ends_at else ""),
        target=sub,
    )
    return sub


class NothingToReactivate(InvalidTransition):
    """Only a cancelled subscription inside its reactivation window can be reactivated."""


@transaction.atomic
def subscription_request_reactivation(
    *, subscription_id: int, at: dt.datetime, actor: Any = None
) -> Subscription:
    """ "Reactivate subscription" on a cancelled one. With nothing left to pay it is active at once;
    otherwise the request is noted and the payment that clears its invoices (Settle balance) brings it back.
    Asking twice is the same as asking once."""
    sub = _locked_subscription(subscription_id)
    if not sub.can_reactivate(at=at):
        raise NothingToReactivate(f"subscription {sub.pk} is {sub.status}; it cannot be reactivated")
    if sub.reactivation_requested_at is None:
        sub.reactivation_requested_at = at
        sub.save(update_fields=["reactivation_requested_at"])
        audit_record(
            account=sub.account,
            actor=actor,
            action="subscription.reactivation_requested",
            message=f"Reactivation of {sub.product.name} requested; it is active again once its balance is paid",
            target=sub,
        )
    return subscription_restore(subscription_id=sub.pk, at=at, actor=actor)


@transaction.atomic
def subscription_disable(*, subscription_id: int, at: dt.datetime) -> Subscription:
    """past_due/warned → disabled when the grace period is over. Admins keep read access."""
    sub = _locked_subscription(subscription_id)
    if sub.status not in (Subscription.Status.PAST_DUE, Subscription.Status.WARNED):
        raise InvalidTransition(f"subscription {sub.pk} is {sub.status}, not past due")
    if sub.grace_ends_at and sub.grace_ends_at > at:
        raise InvalidTransition(f"subscription {sub.pk} is in its grace period until {sub.grace_ends_at}")
    sub.status = Subscription.Status.DISABLED
    sub.disabled_at = at
    sub.next_lifecycle_at = at + settings.BILLING_DISABLED_PERIOD
    sub.save(update_fields=["status", "disabled_at", "next_lifecycle_at"])
    audit_record(
        account=sub.account,
        actor_label="billing",
        action="subscription.disabled",
        message=f"{sub.product.name} was disabled for non-payment",
        target=sub,
    )
    return sub


@transaction.atomic
def subscription_cancel(*, subscription_id: int, at: dt.datetime) -> Subscription:
    """disabled → cancelled after the disabled period. From here payment no longer reactivates."""
    sub = _locked_subscription(subscription_id)
    if sub.status != Subscription.Status.DISABLED:
        raise InvalidTransition(f"subscription {sub.pk} is {sub.status}, not disabled")
    sub.status = Subscription.Status.CANCELLED
    sub.cancelled_at = at
    sub.next_lifecycle_at = at + settings.BILLING_DATA_RETENTION_AFTER_CANCEL
    sub.save(update_fields=["status", "cancelled_at", "next_lifecycle_at"])
    audit_record(
        account=sub.account,
        actor_label="billing",
        action="subscription.cancelled",
        message=f"{sub.product.name} was cancelled for non-payment; its data will be deleted on "
        f"{sub.next_lifecycle_at:%d %b %Y}",
        target=sub,
    )
    return sub


@transaction.atomic(savepoint=False)
def subscription_delete(*, subscription_id: int, at: dt.datetime) -> tuple[Subscription, int | None, bool]:
    """cancelled → deleted, the retention period after cancellation (PRODUCT.md flow 7). Invoices are kept
    (they are the account's books). Call it through `payments.retention.subscription_delete_data`, which
    also forgets the card only this subscription still used and audits both in the same transaction.

    Returns the subscription, the id of the payment method it no longer refers to, and whether it was
    deleted now (False: it already was; idempotent).
    """
    sub = _locked_subscription(subscription_id)
    if sub.status == Subscription.Status.DELETED:
        return sub, None, False
    if sub.status != Subscription.Status.CANCELLED:
        raise InvalidTransition(f"subscription {sub.pk} is {sub.status}, not cancelled")
    if sub.cancelled_at and sub.cancelled_at + settings.BILLING_DATA_RETENTION_AFTER_CANCEL > at:
        raise InvalidTransition(f"subscription {sub.pk} keeps its data until {sub.next_lifecycle_at}")
    method_id = sub.payment_method_id
    sub.status = Subscription.Status.DELETED
    sub.data_deleted_at = at
    sub.next_lifecycle_at = None
    sub.payment_method = None
    sub.save(update_fields=["status", "data_deleted_at", "next_lifecycle_at", "payment_method"])
    return sub, method_id, True


def subscription_method_in_use(*, method_id: int) -> bool:
    """Whether a subscription that is neither cancelled nor deleted is still paid with this payment method."""
    return (
        Subscription.objects.filter(payment_method_id=method_id)
        .exclude(status__in=[Subscription.Status.CANCELLED, Subscription.Status.DELETED])
        .exists()
    )
