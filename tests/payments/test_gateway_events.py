"""Gateway events: Stripe's translated into ours, stored every time, acted on through one table.

Signed deliveries go to /payments/webhooks/stripe/; the handlers run against the param-checking fake.
"""

import hashlib
import hmac
import itertools
import json
import time
import uuid

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from payments import services
from payments.gateways.base import (
    ChargeOutcome,
    GatewayEventKind,
    RefundOutcome,
    UnsupportedOperation,
    WebhookRejected,
    get_gateway,
)
from payments.gateways.stripe import webhook_parse
from payments.models import GatewayCustomer, PaymentAttempt, PaymentMethod, WebhookEvent
from payments.webhooks import HANDLERS
from tests.factories import PaymentMethodFactory

pytestmark = pytest.mark.django_db
URL = "/payments/webhooks/stripe/"
SECRET = "whsec_test_secret"


def sign(payload: bytes, *, at: int | None = None) -> str:
    ts = at if at is not None else int(time.time())
    mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def event(event_type: str, obj, *, event_id: str | None = None, created: int = 1795000000) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:20]}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": created,
            "data": {"object": obj},
            "livemode": False,
            "type": event_type,
        }
    ).encode()


def post(client, payload: bytes, *, at: int | None = None):
    return client.post(
        URL, payload, content_type="application/json", headers={"Stripe-Signature": sign(payload, at=at)}
    )


def parse(payload: bytes):
    return webhook_parse(payload=payload, headers={"stripe-signature": sign(payload)})


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


# --- The table -----------------------------------------------------------------------------------


def test_the_kinds_we_act_on_are_listed_in_one_table():
    assert set(HANDLERS) == {
        GatewayEventKind.PAYMENT_SUCCEEDED,
        GatewayEventKind.PAYMENT_FAILED,
        GatewayEventKind.PAYMENT_REQUIRES_ACTION,
        GatewayEventKind.PAYMENT_CANCELED,
        GatewayEventKind.REFUND_UPDATED,
        GatewayEventKind.DISPUTE_OPENED,
        GatewayEventKind.DISPUTE_UPDATED,
        GatewayEventKind.DISPUTE_CLOSED,
        GatewayEventKind.CARD_UPDATED,
        GatewayEventKind.CARD_SETUP_SUCCEEDED,
        GatewayEventKind.CUSTOMER_DELETED,
    }


@pytest.mark.parametrize(
    ("raw_type", "kind"),
    [
        ("payment_intent.succeeded", GatewayEventKind.PAYMENT_SUCCEEDED),
        ("payment_intent.payment_failed", GatewayEventKind.PAYMENT_FAILED),
        ("payment_intent.requires_action", GatewayEventKind.PAYMENT_REQUIRES_ACTION),
        ("payment_intent.canceled", GatewayEventKind.PAYMENT_CANCELED),
        ("refund.created", GatewayEventKind.REFUND_UPDATED),
        ("refund.updated", GatewayEventKind.REFUND_UPDATED),
        ("refund.failed", GatewayEventKind.REFUND_UPDATED),
        ("charge.dispute.created", GatewayEventKind.DISPUTE_OPENED),
        ("charge.dispute.updated", GatewayEventKind.DISPUTE_UPDATED),
        ("charge.dispute.closed", GatewayEventKind.DISPUTE_CLOSED),
        ("payment_method.automatically_updated", GatewayEventKind.CARD_UPDATED),
        ("setup_intent.succeeded", GatewayEventKind.CARD_SETUP_SUCCEEDED),
        ("customer.deleted", GatewayEventKind.CUSTOMER_DELETED),
        ("invoice.paid", GatewayEventKind.IGNORED),
        ("customer.created", GatewayEventKind.IGNORED),
    ],
)
def test_stripe_event_types_translate_into_our_kinds(raw_type, kind):
    obj = {
        "id": "obj_1",
        "object": "x",
        "amount": 100,
        "currency": "eur",
        "status": "succeeded",
        "payment_intent": "pi_1",
        "customer": "cus_1",
        "payment_method": "pm_1",
        "card": {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2030},
    }
    translated = parse(event(raw_type, obj, event_id="evt_t"))
    assert (translated.kind, translated.raw_type, translated.id) == (kind, raw_type, "evt_t")


def test_a_lost_dispute_with_its_evidence_date():
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 3600,
        "currency": "eur",
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "reason": "fraudulent",
        "status": "lost",
        "evidence_details": {"due_by": 1795600000},
    }
    translated = parse(event("charge.dispute.closed", dispute))
    info = translated.dispute
    assert info is not None
    assert (info.reference, info.charge_reference, info.amount_minor, info.currency) == (
        "dp_1",
        "pi_1",
        3600,
        "EUR",
    )
    assert (info.reason, info.status) == ("fraudulent", "lost")
    assert info.evidence_due_by is not None
    assert int(info.evidence_due_by.timestamp()) == 1795600000


def test_refund_events_and_a_charge_listing_its_refunds():
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "currency": "eur",
        "payment_intent": "pi_1",
        "status": "pending",
        "metadata": {"reason": "overpaid"},
    }
    info = parse(event("refund.updated", refund)).refund
    assert info is not None
    assert (info.reference, info.charge_reference, info.status, info.reason) == (
        "re_1",
        "pi_1",
        RefundOutcome.PENDING,
        "overpaid",
    )
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "refunds": {"data": [{**refund, "status": "succeeded", "created": 2, "payment_intent": None}]},
    }
    from_charge = parse(event("charge.refunded", charge))
    assert from_charge.kind == GatewayEventKind.REFUND_UPDATED
    assert from_charge.refund is not None
    assert from_charge.refund.charge_reference == "pi_1"
    bare = parse(event("charge.refunded", {"id": "ch_1", "object": "charge"}))
    assert bare.kind == GatewayEventKind.IGNORED  # the refund.* events carry it


def test_a_payment_event_carries_the_outcome_and_our_key():
    intent = {
        "id": "pi_9",
        "object": "payment_intent",
        "amount": 100,
        "currency": "eur",
        "status": "requires_payment_method",
        "metadata": {"idempotency_key": "k-9"},
        "last_payment_error": {
            "code": "card_declined",
            "decline_code": "do_not_honor",
            "network_advice_code": "03",
            "network_decline_code": "05",
        },
    }
    translated = parse(event("payment_intent.payment_failed", intent))
    assert (translated.reference, translated.idempotency_key) == ("pi_9", "k-9")
    charge = translated.charge
    assert charge is not None
    assert (charge.outcome, charge.decline_code) == (ChargeOutcome.DECLINED, "do_not_honor")
    assert (charge.network_advice_code, charge.network_decline_code) == ("03", "05")


# --- Refused and malformed deliveries --------------------------------------------------------------


def test_a_delivery_signed_more_than_five_minutes_ahead_is_refused_and_not_stored(client):
    payload = event("customer.created", {"id": "cus_1", "object": "customer"})
    assert post(client, payload, at=int(time.time()) + 3600).status_code == 400
    assert post(client, payload, at=int(time.time()) + 301).status_code == 400
    assert not WebhookEvent.objects.exists()
    assert post(client, payload, at=int(time.time()) + 60).status_code == 200  # clock skew is fine


def test_a_bad_signature_is_refused(client):
    payload = event("customer.created", {"id": "cus_1", "object": "customer"})
    response = client.post(
        URL, payload, content_type="application/json", headers={"Stripe-Signature": "t=1,v1=x"}
    )
    assert response.status_code == 400
    with pytest.raises(WebhookRejected) as caught:
        webhook_parse(payload=payload, headers={})
    assert not caught.value.malformed


@pytest.mark.parametrize("obj", ["a string", None, 42, ["a", "list"]])
def test_a_non_object_data_object_is_stored_as_failed_and_answered_400(client, obj):
    payload = event("payment_intent.succeeded", obj, event_id="evt_bad")
    assert post(client, payload).status_code == 400
    assert post(client, payload).status_code == 400  # a redelivery: still the one row
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.type, stored.status) == ("evt_bad", "payment_intent.succeeded", "failed")
    assert "data.object is not an object" in stored.error


def test_a_signed_body_that_is_not_an_event_is_stored_as_failed(client):
    for payload in (b"not json at all", b"[1, 2]", b'{"object": "event"}'):
        assert post(client, payload).status_code == 400
    assert WebhookEvent.objects.filter(status="failed").count() == 3
    assert all(e.error.startswith("malformed:") for e in WebhookEvent.objects.all())


def test_an_unreadable_object_is_malformed_not_a_500(client):
    payload = event("charge.dispute.created", {"id": "dp_1", "object": "dispute", "amount": "lots"})
    assert post(client, payload).status_code == 400
    assert "unreadable" in WebhookEvent.objects.get().error


def test_every_other_type_is_stored_as_ignored(client):
    for raw_type in ("invoice.paid", "charge.dispute.created", "refund.created", "balance.available"):
        obj = {"id": "x_1", "object": "x", "amount": 1, "currency": "eur", "payment_intent": "pi_1"}
        assert post(client, event(raw_type, obj)).status_code == 200
    assert WebhookEvent.objects.count() == 4
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"ignored"}


def test_the_simulated_gateway_has_no_webhooks(client):
    assert (
        client.post("/payments/webhooks/simulated/", b"{}", content_type="application/json").status_code
        == 404
    )
    assert client.post("/payments/webhooks/nope/", b"{}", content_type="application/json").status_code == 404
    with pytest.raises(UnsupportedOperation):
        get_gateway("simulated").parse_webhook(payload=b"{}", headers={})


# --- CARD_UPDATED ----------------------------------------------------------------------------------


def updated(pm: str, *, last4="1111", exp=(3, 2031), created=1795000000, event_id=None) -> bytes:
    return event(
        "payment_method.automatically_updated",
        {
            "id": pm,
            "object": "payment_method",
            "customer": "cus_C1",
            "card": {"brand": "mastercard", "last4": last4, "exp_month": exp[0], "exp_year": exp[1]},
        },
        created=created,
        event_id=event_id,
    )


def test_card_update_changes_the_card_and_clears_an_expiry_decline(client, contoso):
    card = PaymentMethodFactory(
        account=contoso.account,
        gateway="stripe",
        gateway_token="cus_C1/pm_exp",
        status=PaymentMethod.Status.DECLINED,
        last_decline_code="expired_card",
    )
    payload = updated("pm_exp")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200  # replay
    card.refresh_from_db()
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("mastercard", "1111", 3, 2031)
    assert (card.status, card.last_decline_code) == (PaymentMethod.Status.VALID, "")
    assert AuditEvent.objects.filter(action="payment_method.updated_by_network").count() == 1
    assert WebhookEvent.objects.get().status == "processed"


def test_card_update_keeps_a_decline_that_is_not_about_the_expiry(client, contoso):
    card = PaymentMethodFactory(
        account=contoso.account,
        gateway="stripe",
        gateway_token="cus_C1/pm_funds",
        status=PaymentMethod.Status.DECLINED,
        last_decline_code="insufficient_funds",
    )
    post(client, updated("pm_funds"))
    card.refresh_from_db()
    assert card.exp_year == 2031
    assert (card.status, card.last_decline_code) == (PaymentMethod.Status.DECLINED, "insufficient_funds")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_shuffled_and_duplicated_card_updates_end_in_the_newest_state(client, contoso, order):
    card = PaymentMethodFactory(account=contoso.account, gateway="stripe", gateway_token="cus_C1/pm_shuf")
    deliveries = [
        updated("pm_shuf", last4="1000", exp=(1, 2030), created=1795000000, event_id="evt_a"),
        updated("pm_shuf", last4="2000", exp=(2, 2031), created=1795000100, event_id="evt_b"),
        updated("pm_shuf", last4="3000", exp=(3, 2032), created=1795000200, event_id="evt_c"),
    ]
    for i in (*order, order[0]):
        assert post(client, deliveries[i]).status_code == 200
    card.refresh_from_db()
    assert (card.last4, card.exp_month, card.exp_year) == ("3000", 3, 2032)


def test_an_update_for_a_card_we_do_not_hold_is_ignored(client, contoso):
    post(client, updated("pm_stranger"))
    assert WebhookEvent.objects.get().status == "ignored"


# --- CARD_SETUP_SUCCEEDED --------------------------------------------------------------------------


def _setup_started(fake_stripe, contoso, settings) -> str:
    settings.PAYMENT_GATEWAY = "stripe"
    secret = services.card_setup_start(account_id=contoso.account.pk, actor=contoso.finance)
    return secret.split("_secret_")[0]


def _setup_event(fake_stripe, seti: str, event_id: str = "evt_setup") -> bytes:
    intent = fake_stripe.confirm_setup(seti)
    intent["payment_method"] = intent["payment_method"]["id"]  # as Stripe sends it: not expanded
    return event("setup_intent.succeeded", intent, event_id=event_id)


def test_setup_succeeded_saves_the_card_when_the_browser_never_came_back(
    client, fake_stripe, contoso, settings
):
    seti = _setup_started(fake_stripe, contoso, settings)
    payload = _setup_event(fake_stripe, seti)
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    customer = GatewayCustomer.objects.get(account=contoso.account)
    card = PaymentMethod.objects.get(gateway="stripe")
    assert (card.account, card.gateway_token, card.last4) == (
        contoso.account,
        f"{customer.customer_id}/pm_1QaNewCard0000001",
        "4242",
    )
    assert card.owner is None
    # The browser comes back after all: the same card, now owned by whoever added it.
    client.force_login(contoso.finance)
    response = client.post(reverse("payments:method_add", args=[contoso.account.pk]), {"setup_intent": seti})
    assert response.status_code == 303
    assert PaymentMethod.objects.filter(gateway="stripe").count() == 1
    card.refresh_from_db()
    assert card.owner == contoso.finance


def test_setup_succeeded_after_the_browser_saved_it_is_the_same_card(client, fake_stripe, contoso, settings):
    seti = _setup_started(fake_stripe, contoso, settings)
    payload = _setup_event(fake_stripe, seti)
    client.force_login(contoso.finance)
    client.post(reverse("payments:method_add", args=[contoso.account.pk]), {"setup_intent": seti})
    assert post(client, payload).status_code == 200
    assert PaymentMethod.objects.filter(gateway="stripe").count() == 1
    assert PaymentMethod.objects.get(gateway="stripe").owner == contoso.finance
    assert WebhookEvent.objects.get().status == "processed"


def test_setup_succeeded_for_a_customer_we_do_not_know_is_ignored(client, fake_stripe, contoso, settings):
    seti = _setup_started(fake_stripe, contoso, settings)
    payload = _setup_event(fake_stripe, seti)
    GatewayCustomer.objects.all().delete()
    post(client, payload)
    assert not PaymentMethod.objects.filter(gateway="stripe").exists()
    assert WebhookEvent.objects.get().status == "ignored"


# --- CUSTOMER_DELETED ------------------------------------------------------------------------------


def test_customer_deleted_forgets_the_accounts_cards_and_a_new_setup_makes_a_new_customer(
    client, fake_stripe, contoso, settings
):
    GatewayCustomer.objects.create(account=contoso.account, gateway="stripe", customer_id="cus_Gone")
    gone = [
        PaymentMethodFactory(account=contoso.account, gateway="stripe", gateway_token=f"cus_Gone/pm_{i}")
        for i in range(2)
    ]
    other = PaymentMethodFactory(account=contoso.account, gateway="stripe", gateway_token="cus_Other/pm_9")
    payload = event("customer.deleted", {"id": "cus_Gone", "object": "customer", "deleted": True})
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    statuses = dict(PaymentMethod.objects.filter(gateway="stripe").values_list("pk", "status"))
    assert [statuses[c.pk] for c in gone] == ["detached", "detached"]
    assert statuses[other.pk] == "valid"
    assert contoso.mastercard.status == "valid"
    customer = GatewayCustomer.objects.get(account=contoso.account)
    assert (customer.customer_id, customer.generation) == ("", 1)
    assert AuditEvent.objects.filter(action="payment_method.customer_deleted").count() == 1
    # The next card setup creates a new customer; its idempotency key is not the deleted one's.
    _setup_started(fake_stripe, contoso, settings)
    create = next(r for r in fake_stripe.requests if r[1] == "/v1/customers")
    assert create[3]["idempotency-key"] == f"customer:{contoso.account.pk}:1"
    customer.refresh_from_db()
    assert customer.customer_id.startswith("cus_fake")


def test_a_removed_card_cannot_pay_any_more(client, contoso):
    GatewayCustomer.objects.create(account=contoso.account, gateway="stripe", customer_id="cus_Gone")
    card = PaymentMethodFactory(account=contoso.account, gateway="stripe", gateway_token="cus_Gone/pm_1")
    post(client, event("customer.deleted", {"id": "cus_Gone", "object": "customer"}))
    with pytest.raises(services.PaymentError):
        services.invoice_pay(
            account_id=contoso.account.pk,
            invoice_id=contoso.invoices["teams"].pk,
            payment_method_id=card.pk,
            actor=contoso.finance,
            idempotency_key="after-delete",
        )


# --- PAYMENT_* in any order ------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_shuffled_payment_events_end_in_the_same_state(client, fake_stripe, contoso, order):
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
    intent = next(iter(fake_stripe.intents.values()))
    action = dict(intent, status="requires_action", next_action={"redirect_to_url": {"url": "https://x"}})
    failed = dict(intent, status="requires_payment_method", last_payment_error={"code": "card_declined"})
    deliveries = [
        event("payment_intent.requires_action", action, event_id="evt_1"),
        event("payment_intent.succeeded", intent, event_id="evt_2"),
        event("payment_intent.payment_failed", failed, event_id="evt_3"),
    ]
    for i in (*order, *order):
        assert post(client, deliveries[i]).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert WebhookEvent.objects.count() == 3


def test_an_in_process_gateway_event_goes_through_the_same_table(contoso):
    """The simulated bank sends no webhooks; its card update is handed over in-process, stored once."""
    import datetime as dt

    from payments.gateways.base import CardInfo, GatewayEvent
    from payments.webhooks import gateway_event_receive

    card = contoso.visa
    card.status, card.last_decline_code = PaymentMethod.Status.EXPIRED, "expired_card"
    card.save()
    news = GatewayEvent(
        id="sim_evt_1",
        kind=GatewayEventKind.CARD_UPDATED,
        raw_type="card_updated",
        created=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        card=CardInfo(token=card.gateway_token, brand="visa", last4="0341", exp_month=5, exp_year=2033),
    )
    for _ in range(2):
        stored = gateway_event_receive(gateway_name="simulated", event=news, payload={"id": "sim_evt_1"})
    card.refresh_from_db()
    assert (card.status, card.exp_month, card.exp_year) == (PaymentMethod.Status.VALID, 5, 2033)
    assert stored.status == "processed"
    assert WebhookEvent.objects.filter(gateway="simulated").count() == 1


def test_a_malformed_copy_of_a_handled_event_does_not_reopen_it(client):
    good = event("invoice.paid", {"id": "in_1", "object": "invoice"}, event_id="evt_same")
    assert post(client, good).status_code == 200
    bad = event("invoice.paid", "not an object", event_id="evt_same")
    assert post(client, bad).status_code == 400
    assert WebhookEvent.objects.get().status == "ignored"


def _unknown_stripe_attempt(fake_stripe, contoso):
    """An invoice payment whose charge timed out: UNKNOWN, waiting for the webhook or reconciliation."""
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
    return attempt, next(iter(fake_stripe.intents.values()))


def test_a_success_for_another_amount_does_not_settle_the_attempt(client, fake_stripe, contoso):
    attempt, intent = _unknown_stripe_attempt(fake_stripe, contoso)
    assert post(client, event("payment_intent.succeeded", dict(intent, amount=1))).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status != PaymentAttempt.Status.SUCCEEDED
    assert WebhookEvent.objects.get().status == "failed"


def test_a_success_in_another_currency_does_not_settle_the_attempt(client, fake_stripe, contoso):
    attempt, intent = _unknown_stripe_attempt(fake_stripe, contoso)
    other = "usd" if attempt.currency.upper() != "USD" else "eur"
    assert post(client, event("payment_intent.succeeded", dict(intent, currency=other))).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status != PaymentAttempt.Status.SUCCEEDED
    assert WebhookEvent.objects.get().status == "failed"


def test_another_intent_carrying_our_key_does_not_settle_the_attempt(client, fake_stripe, contoso):
    """The attempt knows its PaymentIntent; a different intent with our key in its metadata is not it."""
    attempt, intent = _unknown_stripe_attempt(fake_stripe, contoso)
    attempt.gateway_reference = intent["id"]  # learned by reconciliation after the time-out
    attempt.save(update_fields=["gateway_reference"])
    stranger = dict(intent, id="pi_someone_else", status="succeeded")
    assert post(client, event("payment_intent.succeeded", stranger)).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status != PaymentAttempt.Status.SUCCEEDED
    assert attempt.gateway_reference == intent["id"]
    assert WebhookEvent.objects.get().status == "failed"
