"""The payments ledger: what an invoice still owes follows from its money rows, never from a flag.

    amount due = total − credited − (applied − refunded − reversed)

- applied: `PaymentAllocation.applied_minor` of succeeded payments (card, bank transfer, webhook);
- credited and refunded: `CreditNote` rows. A credit note is the part of a refund that came off this
  invoice, so it lowers what the invoice is worth and what was paid on it alike: a refund leaves a
  paid invoice paid, with a credit note on it;
- reversed: `DisputeReversal` rows of lost chargebacks: the bank took the money back, so it is due again.

`invoice_ledger_sync()` stores the result on the invoice and moves its state with it
(`subscriptions.services.invoice_amount_due_set`). Every writer here runs under the billing
account's lock (payments.services.account_lock), taken by its caller.

`payment_apply()` is the one place money received is applied to invoices and receipted, for card
payments, webhook successes and recorded bank transfers alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import BillingAccount
from audit.models import AuditEvent
from audit.services import audit_event, audits_record
from billing_portal.batch import WriteBatch
from billing_portal.compiled import CompiledQuery
from billing_portal.dates import format_date
from billing_portal.money import format_money
from notifications.services import notice_send
from subscriptions.models import UNPAID_STATUSES, Invoice, Subscription
from subscriptions.services import invoice_amount_due_set, invoices_mark_paid, subscription_restore

from .models import CreditNote, DisputeReversal, PaymentAllocation, PaymentAttempt


def _sums(qs: Any, key: str, value: str) -> dict[int, int]:
    return {row[key]: row["s"] or 0 for row in qs.order_by().values(key).annotate(s=Sum(value))}


def invoices_amount_due_derived(*, invoice_ids: Iterable[int]) -> dict[int, int]:
    """What each invoice owes by its money rows (four queries, whatever the number of invoices)."""
    ids = sorted(set(invoice_ids))
    totals = dict(Invoice.objects.filter(pk__in=ids).values_list("pk", "total_minor"))
    applied = _sums(
        PaymentAllocation.objects.filter(invoice_id__in=ids, attempt__status=PaymentAttempt.Status.SUCCEEDED),
        "invoice_id",
        "applied_minor",
    )
    credited = _sums(CreditNote.objects.filter(invoice_id__in=ids), "invoice_id", "amount_minor")
    reversed_ = _sums(DisputeReversal.objects.filter(invoice_id__in=ids), "invoice_id", "amount_minor")
    return {
        pk: _derived(
            total=total,
            applied=applied.get(pk, 0),
            credited=credited.get(pk, 0),
            reversed_=reversed_.get(pk, 0),
        )
        for pk, total in totals.items()
    }


def invoice_ledger_sync(*, invoice_ids: Iterable[int], at: dt.datetime) -> list[Invoice]:
    """Store what each invoice owes by the ledger and move its state (caller holds the account lock).

    Void and uncollectible invoices are left as they are: they were written off by a person.
    """
    ids = sorted(set(invoice_ids))
    if not ids:
        return []
    # One round trip: the invoices, locked, with their money sums (the caller already holds the account).
    rows = list(
        Invoice.objects.select_for_update(of=("self",))
        .filter(pk__in=ids)
        .annotate(
            applied_sum=_sum_of(
                PaymentAllocation.objects.filter(attempt__status=PaymentAttempt.Status.SUCCEEDED),
                "applied_minor",
            ),
            credited_sum=_sum_of(CreditNote.objects.all(), "amount_minor"),
            reversed_sum=_sum_of(DisputeReversal.objects.all(), "amount_minor"),
        )
        .order_by("pk")
    )
    invoices = []
    for invoice in rows:
        if invoice.status in (Invoice.Status.VOID, Invoice.Status.UNCOLLECTIBLE):
            continue
        due = _derived(
            total=invoice.total_minor,
            applied=invoice.applied_sum,
            credited=invoice.credited_sum,
            reversed_=invoice.reversed_sum,
        )
        invoices.append(
            invoice_amount_due_set(invoice_id=invoice.pk, amount_due_minor=due, at=at, locked=invoice)
        )
    return invoices


def _sum_of(qs: Any, value: str, *, invoice: str = "pk") -> Coalesce:
    total = (
        qs.filter(invoice_id=OuterRef(invoice))
        .order_by()
        .values("invoice_id")
        .annotate(s=Sum(value))
        .values("s")
    )
    return Coalesce(Subquery(total), 0)


def _derived(*, total: int, applied: int, credited: int, reversed_: int) -> int:
    # Every credit note is a refund's part on this invoice: credited and refunded are the same rows.
    paid = applied - credited - reversed_
    return total - credited - paid


# ---------------------------------------------------------------------------------------------
# Money received


@dataclass
class LockedAllocation:
    """One allocation of a payment with its invoice (locked), that invoice's money sums as
    invoice_ledger_sync reads them, and whether another invoice of its subscription, outside this payment,
    is past due."""

    allocation: PaymentAllocation
    applied_sum: int
    credited_sum: int
    reversed_sum: int
    other_past_due: bool

    @property
    def invoice(self) -> Invoice:
        return self.allocation.invoice


def _allocations_locked(*, attempt_id: int) -> QuerySet[PaymentAllocation]:
    others = (
        Invoice.objects.filter(
            subscription_id=OuterRef("invoice__subscription_id"),
            status=Invoice.Status.PAST_DUE,
            amount_due_minor__gt=0,
        )
        .exclude(pk__in=PaymentAllocation.objects.filter(attempt_id=attempt_id).values("invoice_id"))
        .values("pk")
    )
    return (
        PaymentAllocation.objects.filter(attempt_id=attempt_id)
        .select_related("invoice__subscription__product")
        .select_for_update(of=("invoice",))
        .annotate(
            applied_sum=_sum_of(
                PaymentAllocation.objects.filter(attempt__status=PaymentAttempt.Status.SUCCEEDED),
                "applied_minor",
                invoice="invoice_id",
            ),
            credited_sum=_sum_of(CreditNote.objects.all(), "amount_minor", invoice="invoice_id"),
            reversed_sum=_sum_of(DisputeReversal.objects.all(), "amount_minor", invoice="invoice_id"),
            other_past_due=Exists(others),
        )
        .order_by("invoice_id")
    )


# Compiled once per process (billing_portal.compiled): every payment that succeeds reads this, and the ORM
# took longer to write it (its sums, its EXISTS, three related tables) than PostgreSQL takes to run it.
_allocations_locked_compiled = CompiledQuery(_allocations_locked)


def attempt_allocations_locked(*, attempt: PaymentAttempt) -> list[LockedAllocation]:
    """An attempt's allocations with their invoices, locked, in ONE round trip (caller holds the account).

    With the money sums and `other_past_due` (LockedAllocation), applying the payment reads nothing else,
    and only a payment that clears a subscription's last past-due invoice asks to restore it.
    """
    rows = _allocations_locked_compiled(attempt_id=attempt.pk)
    locked = []
    for row in rows:
        row.attempt = attempt
        sub = row.invoice.subscription
        if (
            sub is not None
            and sub.account_id == attempt.account_id
            and PaymentAttempt.account.is_cached(attempt)
        ):
            sub.account = attempt.account  # the locked row: restoring audits against it
        sums = vars(row)  # the query's annotations, set on each row as the QuerySet sets them
        locked.append(
            LockedAllocation(
                allocation=row,
                applied_sum=sums["applied_sum"],
                credited_sum=sums["credited_sum"],
                reversed_sum=sums["reversed_sum"],
                other_past_due=sums["other_past_due"],
            )
        )
    return locked


@dataclass(frozen=True)
class Applied:
    invoices: list[Invoice]
    unapplied_minor: int


def payment_apply(
    *,
    account: BillingAccount,
    attempt: PaymentAttempt,
    now: dt.datetime,
    actor: Any = None,
    method_text: str,
    paid_on: dt.date,
    paid_at: dt.datetime | None = None,
    allocations: list[LockedAllocation] | None = None,
    audits: list[AuditEvent] | None = None,
    writes: WriteBatch | None = None,
) -> Applied:
    """Apply a payment that has just succeeded to the invoices it was for, restore their subscriptions
    and mail the receipt. Called once per payment, under the account lock, by whatever learnt of the
    money: the charge's answer, a webhook, reconciliation, or support recording a bank transfer.

    An invoice paid otherwise meanwhile (a transfer recorded while a card payment was unknown) is not
    paid twice: that allocation stays unapplied, and the payment is flagged as overpaid with a refund
    offered in the support console (payments.refunds.overpaid_minor).

    `audits`: events the caller built for this payment (audit.services.audit_event); they are inserted
    with this payment's own (reactivations, overpayment) in ONE statement.

    The writes nothing here reads back (the allocations applied, the invoices paid, the audit events, the
    receipt) go to the database together at the end, in one round trip (billing_portal.batch), with those
    the caller put in `writes` (the attempt's own outcome). A subscription's restore is a conditional
    UPDATE whose row count decides what follows, so it is sent on its own, before them.
    """
    audits = [] if audits is None else audits
    writes = writes if writes is not None else WriteBatch()
    if allocations is None:
        allocations = attempt_allocations_locked(attempt=attempt)
    applied: list[LockedAllocation] = []
    unapplied = 0
    for row in allocations:
        allocation = row.allocation
        if allocation.applied_minor:
            continue  # applied before: this is the same money told twice
        # Read under the account lock with the allocations: nothing changed the invoice since.
        due, status = allocation.invoice.amount_due_minor, allocation.invoice.status
        if status not in Invoice.PAYABLE_STATUSES or due < allocation.amount_minor:
            unapplied += allocation.amount_minor
            continue
        allocation.applied_minor = allocation.amount_minor
        applied.append(row)
    if applied:
        writes.update(
            PaymentAllocation.objects.filter(pk__in=[r.allocation.pk for r in applied]),
            applied_minor=F("amount_minor"),
        )
    # What each invoice owes now, by the sums read with it plus what this payment applied (the ledger's
    # formula, without reading the invoices again). An invoice is paid when the money arrived (a
    # transfer's value date), not when we recorded it.
    at = paid_at or now
    paid, invoices = [], []
    for row in applied:
        invoice = row.invoice
        due = _derived(
            total=invoice.total_minor,
            applied=row.applied_sum + row.allocation.applied_minor,
            credited=row.credited_sum,
            reversed_=row.reversed_sum,
        )
        if due == 0:
            paid.append(invoice)  # the usual case: all of them paid in one UPDATE
        else:
            invoices.append(
                invoice_amount_due_set(invoice_id=invoice.pk, amount_due_minor=due, at=at, locked=invoice)
            )
    invoices += invoices_mark_paid(invoices=paid, at=at, writes=writes)
    for sub in _cleared_subscriptions(allocations):
        subscription_restore(
            subscription_id=sub.pk,
            at=now,
            actor=actor or attempt.initiated_by,
            actor_label=attempt.initiated_by_label,
            past_due_checked=True,
            read=sub,
            audits=audits,
        )
    if unapplied:
        audits.append(
            audit_event(
                account=account,
                actor_label="billing",
                action="payment.overpaid",
                message=f"Payment {attempt.reference} took {format_money(unapplied, attempt.currency)} for invoices "
                "that were already paid; refund it",
                target=attempt,
                data={"unapplied_minor": unapplied},
            )
        )
    audits_record(audits, writes=writes)
    notice_send(
        writes=writes,
        account=account,
        # New: the attempt succeeded in this very transaction, so its receipt cannot exist yet.
        new_event=True,
        kind="payment_received",
        dedupe_key=f"payment_received:{attempt.pk}",
        context={
            "reference": attempt.reference,
            "amount": format_money(attempt.amount_minor, attempt.currency, account.language),
            "method": method_text,
            "invoices": ", ".join(a.invoice.number for a in allocations),
            # A date for people, in the language the mail is written in.
            "paid_on": format_date(paid_on, account.language),
        },
    )
    writes.execute()
    return Applied(invoices=invoices, unapplied_minor=unapplied)


def _cleared_subscriptions(allocations: list[LockedAllocation]) -> list[Subscription]:
    """The subscriptions this payment may bring back: restorable ones (restorable_q) none of whose invoices
    is past due any more, neither among this payment's (as applied now) nor outside it (other_past_due)."""
    subs: dict[int, Subscription] = {}
    blocked: set[int] = set()
    for row in allocations:
        invoice = row.invoice
        sub = invoice.subscription
        if sub is None:
            continue
        if row.other_past_due or (invoice.status == Invoice.Status.PAST_DUE and invoice.amount_due_minor > 0):
            blocked.add(sub.pk)
        restorable = sub.status in UNPAID_STATUSES or (
            sub.status == Subscription.Status.CANCELLED and sub.reactivation_requested_at is not None
        )
        if restorable:
            subs[sub.pk] = sub
    return [sub for pk, sub in sorted(subs.items()) if pk not in blocked]


def bank_transfer_receive(
    *,
    account_id: int,
    amount_minor: int,
    received_on: dt.date,
    reference: str,
    allocations: list[tuple[int, int]],
    idempotency_key: str,
    actor: Any,
) -> PaymentAttempt:
    """Record money that arrived by bank transfer as a succeeded payment and apply it.

    `allocations` are (invoice id, amount) pairs the caller planned under the same account lock
    (support.services.bank_transfer_allocate). A repeated idempotency key raises IntegrityError from
    the unique key, so the same transfer is never recorded twice.
    """
    from .services import account_lock

    with transaction.atomic():
        account = account_lock(account_id=account_id)
        now = timezone.now()
        attempt = PaymentAttempt.objects.create(
            account=account,
            payment_method=None,
            amount_minor=amount_minor,
            currency=account.currency,
            status=PaymentAttempt.Status.SUCCEEDED,
            source=PaymentAttempt.Source.BANK_TRANSFER,
            idempotency_key=idempotency_key,
            gateway="bank_transfer",
            initiated_by=actor,
            initiated_by_label=getattr(actor, "email", "") or "bank transfer",
            reference_note=reference,
            completed_at=now,
        )
        PaymentAllocation.objects.bulk_create(
            [
                PaymentAllocation(attempt=attempt, invoice_id=invoice_id, amount_minor=amount)
                for invoice_id, amount in allocations
            ]
        )
        with translation.override(account.language):
            method_text = _("Bank transfer (ref. %(reference)s)") % {"reference": reference}
        payment_apply(
            account=account,
            attempt=attempt,
            now=now,
            actor=actor,
            method_text=method_text,
            paid_on=received_on,
            # "Paid on" is the day the transfer arrived (midday, so no time zone moves it to another day).
            paid_at=min(timezone.make_aware(dt.datetime.combine(received_on, dt.time(12, 0))), now),
        )
    return attempt
