"""Money that comes back in Stripe mode: refunds and chargebacks through the real SDK against the
param-checking fake (conftest's fake_stripe fails any request the pinned API would refuse), and
Stripe's signed webhooks through the one event table. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from payments import services
from payments.gateways.stripe import StripeGateway
from payments.models import (
    CreditNote,
    Dispute,
    DisputeReversal,
    PaymentAttempt,
    PaymentMethod,
    Refund,
    WebhookEvent,
)
from subscriptions.models import Invoice
from support.services import support_payment_refund
from tests.payments.money_back import assert_ledger_consistent
from tests.payments.test_gateway_events import event, post
from tests.payments.test_stripe_flows import stripe_card

pytestmark = pytest.mark.django_db

EVIDENCE_DUE = 1796000000


@pytest.fixture
def paid(fake_stripe, contoso):
    """Teams' €36.00 invoice paid now with a Stripe card."""
    card = stripe_card(contoso.account, "pm_card_visa", owner=contoso.finance)
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=card.pk,
        actor=contoso.finance,
        idempotency_key="stripe-pay-teams",
    )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.gateway_reference.startswith("pi_")
    return attempt


def _refund_webhook(client, fake_stripe, reference: str, raw_type: str = "refund.updated"):
    response = post(client, event(raw_type, fake_stripe.refunds[reference]))
    assert response.status_code == 200
    return WebhookEvent.objects.order_by("-pk").first()


def test_support_refund_goes_to_stripe_with_our_key_and_its_webhook_counts_once(
    client, fake_stripe, contoso, paid
):
    refund = support_payment_refund(
        account_id=contoso.account.pk,
        attempt_id=paid.pk,
        amount="10.00",
        actor=contoso.admin,
        reason="Goodwill",
        idempotency_key="support-refund-1",
    )
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.gateway_reference.startswith("re_")
    [sent] = fake_stripe.refunds.values()
    assert sent["amount"] == 1000
    assert sent["payment_intent"] == paid.gateway_reference
    assert sent["metadata"]["idempotency_key"] == "support-refund-1"
    method, path, _body, headers = fake_stripe.requests[-1]
    assert (method, path, headers["idempotency-key"]) == ("POST", "/v1/refunds", "support-refund-1")
    stored = _refund_webhook(client, fake_stripe, refund.gateway_reference)
    assert stored.status == WebhookEvent.Status.PROCESSED
    _refund_webhook(client, fake_stripe, refund.gateway_reference, raw_type="refund.created")
    assert Refund.objects.count() == 1
    assert CreditNote.objects.get().amount_minor == 1000
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID
    assert_ledger_consistent(contoso.account.pk)


def test_refund_made_in_stripes_dashboard_arrives_by_webhook_once(client, fake_stripe, contoso, paid):
    status, made = fake_stripe._refund({"payment_intent": paid.gateway_reference, "amount": "1500"})
    assert status == 200
    for _ in range(2):  # delivered, then redelivered under a new event id (charge.refunded tells the same)
        stored = _refund_webhook(client, fake_stripe, made["id"])
        assert stored.status == WebhookEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.source, refund.status, refund.amount_minor) == (
        Refund.Source.GATEWAY,
        Refund.Status.SUCCEEDED,
        1500,
    )
    assert refund.gateway_reference == made["id"]
    assert CreditNote.objects.get().amount_minor == 1500
    assert_ledger_consistent(contoso.account.pk)


def test_refund_whose_webhook_arrives_before_our_answer_is_matched_by_its_key(
    client, fake_stripe, contoso, paid, monkeypatch
):
    original = StripeGateway.refund

    def webhook_first(self, **kwargs):
        result = original(self, **kwargs)
        # Stripe's webhook is handled before our own call returns: it must find our pending refund.
        assert _refund_webhook(client, fake_stripe, result.reference).status == WebhookEvent.Status.PROCESSED
        assert Refund.objects.get().status == Refund.Status.SUCCEEDED
        return result

    monkeypatch.setattr(StripeGateway, "refund", webhook_first)
    done = services_refund(paid, 3600, key="whole")
    assert done.status == Refund.Status.SUCCEEDED
    assert Refund.objects.count() == 1
    assert CreditNote.objects.count() == 1
    assert_ledger_consistent(contoso.account.pk)


def services_refund(attempt, amount, *, key):
    from payments.refunds import payment_refund

    return payment_refund(
        attempt_id=attempt.pk, amount_minor=amount, reason="r", actor=None, idempotency_key=key
    )


def dispute(attempt, status: str, *, reference="dp_1QaFake0000001") -> dict:
    return {
        "id": reference,
        "object": "dispute",
        "amount": attempt.amount_minor,
        "currency": "eur",
        "charge": f"ch_{attempt.gateway_reference}",
        "payment_intent": attempt.gateway_reference,
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": EVIDENCE_DUE},
    }


def test_lost_chargeback_through_stripe_webhooks(client, fake_stripe, contoso, paid):
    opened = event("charge.dispute.created", dispute(paid, "needs_response"), created=1795000000)
    closed = event("charge.dispute.closed", dispute(paid, "lost"), created=1795000100)
    assert post(client, opened).status_code == 200
    card = PaymentMethod.objects.get(pk=paid.payment_method_id)
    assert card.disputed_at is not None
    assert "fraudulent" in AuditEvent.objects.get(action="dispute.opened").message
    assert post(client, closed).status_code == 200
    assert post(client, closed).status_code == 200  # a replay
    found = Dispute.objects.get()
    assert (found.gateway, found.gateway_reference, found.outcome) == ("stripe", "dp_1QaFake0000001", "lost")
    assert int(found.evidence_due_by.timestamp()) == EVIDENCE_DUE
    invoice = Invoice.objects.get(pk=contoso.invoices["teams"].pk)
    # Due again; its due date is still ahead, so it is open (not yet past due), and never scheduled.
    assert (invoice.status, invoice.amount_due_minor, invoice.next_attempt_at) == (
        Invoice.Status.OPEN,
        3600,
        None,
    )
    assert DisputeReversal.objects.count() == 1
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}
    # Nothing charges the card automatically any more.
    with pytest.raises(services.CardDisputed):
        services.invoices_charge(
            account_id=contoso.account.pk,
            invoice_ids=[invoice.pk],
            payment_method_id=card.pk,
            source=PaymentAttempt.Source.RETRY,
            off_session=True,
            idempotency_key="retry-after-chargeback",
        )
    assert len(fake_stripe.creates) == 1
    assert_ledger_consistent(contoso.account.pk)


def test_won_chargeback_through_stripe_webhooks_changes_nothing(client, fake_stripe, contoso, paid):
    # Delivered out of order: the decision first, then the opening.
    post(client, event("charge.dispute.closed", dispute(paid, "won"), created=1795000100))
    post(client, event("charge.dispute.created", dispute(paid, "needs_response"), created=1795000000))
    found = Dispute.objects.get()
    assert (found.status, found.outcome) == (Dispute.Status.CLOSED, Dispute.Outcome.WON)
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID
    assert not DisputeReversal.objects.exists()
    assert "nothing changes" in AuditEvent.objects.get(action="dispute.won").message


def test_money_back_events_for_charges_we_do_not_know_are_stored_as_ignored(client, fake_stripe, contoso):
    stranger = {
        "id": "re_1QaStranger00001",
        "object": "refund",
        "amount": 500,
        "currency": "eur",
        "payment_intent": "pi_not_ours",
        "status": "succeeded",
    }
    assert post(client, event("refund.updated", stranger)).status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookEvent.Status.IGNORED
    assert "pi_not_ours" in stored.error
    assert not Refund.objects.exists()
