"""The dunning benchmark's "floor charge" (bench/dunning_sweep.py; the worker imports it with --include).

The irreducible database work of one charge (of one invoice, or of all invoices of an account on one
card in one attempt), in the shape the payments contract requires (ARCHITECTURE.md "Payments contract"),
with nothing else: no gateway, no checks, no mail.
1. one transaction: lock the account row, insert the attempt;
2. (the gateway call would be here, outside any transaction)
3. one transaction: lock the account row, record the attempt's outcome, mark its invoices paid (one
   UPDATE), write the audit row.
Dividing the sweep's charges/s by this task's charges/s says how close the real charge path is to
what the database must do anyway.
"""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from accounts.models import BillingAccount
from audit.models import AuditEvent
from payments.models import PaymentAttempt
from subscriptions.models import Invoice


@shared_task(name="bench.floor_charge", acks_late=True, ignore_result=True)
def floor_charge(account_id: int, charges: list[tuple[int, int, list[int]]]) -> None:
    """Make each (card id, amount, invoice ids) charge of one account, like the sweep's account task does."""
    for method_id, amount_minor, invoice_ids in charges:
        with transaction.atomic():
            BillingAccount.objects.select_for_update().only("pk").get(pk=account_id)
            attempt = PaymentAttempt.objects.create(
                account_id=account_id,
                payment_method_id=method_id,
                amount_minor=amount_minor,
                currency="EUR",
                status=PaymentAttempt.Status.PENDING,
                source=PaymentAttempt.Source.RETRY,
                idempotency_key=f"floor:{account_id}:{invoice_ids[0]}",
                gateway="simulated",
                off_session=True,
            )
        with transaction.atomic():
            BillingAccount.objects.select_for_update().only("pk").get(pk=account_id)
            now = timezone.now()
            PaymentAttempt.objects.filter(pk=attempt.pk).update(
                status=PaymentAttempt.Status.SUCCEEDED, completed_at=now
            )
            Invoice.objects.filter(pk__in=invoice_ids).update(
                status=Invoice.Status.PAID, amount_due_minor=0, paid_at=now
            )
            AuditEvent.objects.create(
                account_id=account_id, action="bench.floor_charge", message=f"floor charge {attempt.pk}"
            )
