"""Helpers for the refund and dispute tests: a succeeded payment and the ledger check."""

from __future__ import annotations

import uuid

from payments import services
from payments.ledger import invoices_amount_due_derived
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from tests.payments.scenario import Contoso

SETTLE_INVOICES = ("m365", "exchange", "powerbi", "visio")


def settle(contoso: Contoso) -> PaymentAttempt:
    """Settle balance of the declined Visa with the Mastercard: one charge of €390.50 for four invoices."""
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key=str(uuid.uuid4()),
    )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED, attempt.decline_code
    return attempt


def assert_ledger_consistent(account_id: int) -> None:
    """Every invoice's stored amount due is what its money rows say, and its state follows."""
    invoices = list(Invoice.objects.filter(account_id=account_id))
    derived = invoices_amount_due_derived(invoice_ids=[i.pk for i in invoices])
    for invoice in invoices:
        assert invoice.amount_due_minor == derived[invoice.pk], invoice.number
        if invoice.amount_due_minor == 0:
            assert invoice.status == Invoice.Status.PAID, invoice.number
        else:
            assert invoice.status in Invoice.PAYABLE_STATUSES, invoice.number
