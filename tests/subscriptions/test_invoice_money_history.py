"""The customer's invoice page shows the payments, refunds, credit notes and chargebacks behind its amount due."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from payments.disputes import dispute_event_apply
from payments.models import CreditNote, Refund
from payments.refunds import payment_refund
from tests.payments.money_back import settle
from tests.payments.scenario import build_contoso
from tests.payments.test_disputes import closed, opened

pytestmark = pytest.mark.django_db


@pytest.fixture
def contoso(db):
    return build_contoso()


def _invoice_page(client, contoso, key="m365") -> str:
    client.force_login(contoso.reader)
    url = reverse(
        "subscriptions:invoice_detail",
        kwargs={"account_id": contoso.account.pk, "number": contoso.invoices[key].number},
    )
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_invoice_page_shows_the_payment_the_credit_note_and_the_refund(client, contoso):
    attempt = settle(contoso)
    payment_refund(
        attempt_id=attempt.pk, amount_minor=1000, reason="internal", actor=None, idempotency_key="r1"
    )
    note = CreditNote.objects.get()
    refund = Refund.objects.get()
    body = _invoice_page(client, contoso)
    assert "Payments and credits" in body
    assert attempt.reference in body
    assert "Payment with Mastercard ending 4444" in body
    assert note.number in body
    assert f"Credit note for refund {refund.reference} of payment {attempt.reference}" in body
    assert "Refunded to Mastercard ending 4444" in body
    assert "−€292.50" in body
    assert "+€10.00" in body
    assert "internal" not in body  # support's reason is theirs, not the customer's


def test_invoice_page_in_dutch(client, contoso):
    contoso.account.language = "nl"
    contoso.account.save(update_fields=["language"])
    attempt = settle(contoso)
    payment_refund(
        attempt_id=attempt.pk, amount_minor=1000, reason="intern", actor=None, idempotency_key="r1"
    )
    body = _invoice_page(client, contoso)
    assert "Betalingen en tegoeden" in body
    assert "Creditnota voor terugbetaling" in body
    assert "Teruggestort naar Mastercard eindigend op 4444" in body
    assert "Payments and credits" not in body


def test_invoice_page_names_the_lost_chargeback_that_made_it_due(client, contoso):
    attempt = settle(contoso)
    dispute_event_apply(event=opened(attempt))
    dispute_event_apply(event=closed(attempt, "lost"))
    body = _invoice_page(client, contoso)
    assert "your bank took payment" in body
    assert "DP-" in body
    assert "is past due" in body


def test_invoice_page_queries_do_not_grow_with_its_history(client, contoso):
    attempt = settle(contoso)
    payment_refund(attempt_id=attempt.pk, amount_minor=100, reason="r", actor=None, idempotency_key="r0")
    _invoice_page(client, contoso)
    with CaptureQueriesContext(connection) as one:
        _invoice_page(client, contoso)
    for i in range(1, 6):
        payment_refund(
            attempt_id=attempt.pk, amount_minor=100, reason="r", actor=None, idempotency_key=f"r{i}"
        )
    with CaptureQueriesContext(connection) as six:
        _invoice_page(client, contoso)
    assert len(six) == len(one)
