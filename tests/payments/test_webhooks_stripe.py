"""Signed Stripe webhooks: verified, stored once, idempotent, safe out of order."""

import hashlib
import hmac
import json
import time
import uuid

import pytest
from django.urls import reverse

from payments import services
from payments.models import PaymentAttempt, WebhookEvent
from subscriptions.models import Invoice
from tests.factories import PaymentMethodFactory
from tests.payments.stripe_server import fixture

pytestmark = pytest.mark.django_db
URL = "/payments/webhooks/stripe/"
SECRET = "whsec_test_secret"


def sign(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    ts = at if at is not None else int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def event(event_type: str, intent: dict, event_id: str | None = None) -> bytes:
    body = fixture("event_payment_intent")
    body["id"] = event_id or f"evt_{uuid.uuid4().hex[:20]}"
    body["type"] = event_type
    body["data"]["object"] = intent
    return json.dumps(body).encode()


def post(client, payload: bytes, signature: str | None = None):
    return client.post(
        URL,
        payload,
        content_type="application/json",
        headers={"Stripe-Signature": signature or sign(payload)},
    )


@pytest.fixture
def pending_attempt(contoso, fake_stripe, settings):
    """A Pay now attempt whose answer was lost: only a webhook will tell us."""
    method = PaymentMethodFactory(
        account=contoso.account, gateway="stripe", gateway_token="cus_C/pm_card_timeout"
    )
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=method.pk,
        actor=contoso.finance,
        idempotency_key=str(uuid.uuid4()),
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    intent = next(iter(fake_stripe.intents.values()))
    return attempt, intent


def test_url_is_outside_the_account_scope():
    assert reverse("payments_webhooks:receive", args=["stripe"]) == URL


def test_bad_signature_is_refused_and_not_stored(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    payload = event("payment_intent.succeeded", fixture("payment_intent_succeeded"))
    assert post(client, payload, sign(payload, secret="whsec_wrong")).status_code == 400
    assert not WebhookEvent.objects.exists()


def test_old_timestamp_is_refused(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    payload = event("payment_intent.succeeded", fixture("payment_intent_succeeded"))
    old = int(time.time()) - settings.STRIPE_WEBHOOK_TOLERANCE - 10
    assert post(client, payload, sign(payload, at=old)).status_code == 400


def test_succeeded_event_settles_the_unknown_attempt_once(
    client, pending_attempt, django_capture_on_commit_callbacks
):
    attempt, intent = pending_attempt
    payload = event("payment_intent.succeeded", intent, event_id="evt_1")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, payload).status_code == 200
        assert post(client, payload).status_code == 200  # replay
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.gateway_reference == intent["id"]
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert Invoice.objects.get(allocations__attempt=attempt).status == Invoice.Status.PAID
    from notifications.models import Notice

    assert Notice.objects.filter(kind="payment_received").count() == 1


def test_late_failure_after_success_changes_nothing(client, pending_attempt):
    attempt, intent = pending_attempt
    post(client, event("payment_intent.succeeded", intent, event_id="evt_ok"))
    failed = dict(intent, status="requires_payment_method", last_payment_error={"code": "card_declined"})
    assert (
        post(client, event("payment_intent.payment_failed", failed, event_id="evt_late")).status_code == 200
    )
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.decline_code == ""


def test_requires_action_after_success_changes_nothing(client, pending_attempt):
    attempt, intent = pending_attempt
    post(client, event("payment_intent.succeeded", intent))
    action = dict(
        intent,
        status="requires_action",
        next_action={"type": "redirect_to_url", "redirect_to_url": {"url": "https://x"}},
    )
    post(client, event("payment_intent.requires_action", action))
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED


def test_failure_event_fails_the_attempt_and_releases_the_invoice(client, pending_attempt):
    attempt, intent = pending_attempt
    failed = dict(
        intent,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    post(client, event("payment_intent.payment_failed", failed))
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "insufficient_funds"
    assert Invoice.objects.get(allocations__attempt=attempt).status == Invoice.Status.OPEN


def test_amount_mismatch_is_not_applied(client, pending_attempt):
    attempt, intent = pending_attempt
    post(client, event("payment_intent.succeeded", dict(intent, amount=1)))
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.FAILED


def test_unknown_intent_and_other_types_are_stored_and_ignored(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    post(client, event("payment_intent.succeeded", fixture("payment_intent_succeeded")))
    post(client, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.IGNORED}
