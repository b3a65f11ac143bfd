"""The Stripe adapter through the real SDK against a local server answering Stripe's JSON."""

import uuid

import pytest

from gateway_sim.models import SimCharge
from payments import services
from payments.gateways.base import ChargeOutcome, DeclineCategory, classify_decline, get_gateway
from payments.models import PaymentAttempt
from subscriptions.models import Invoice, Subscription
from tests.factories import PaymentMethodFactory

pytestmark = pytest.mark.django_db


def stripe_card(account, pm, owner=None):
    return PaymentMethodFactory(
        account=account,
        brand="mastercard",
        last4="4444",
        gateway="stripe",
        gateway_token=f"cus_C1/{pm}",
        owner=owner,
    )


def test_charge_succeeds_with_idempotency_key_and_off_session(fake_stripe):
    gateway = get_gateway("stripe")
    result = gateway.charge(
        token="cus_C1/pm_card_visa",
        amount_minor=1400,
        currency="EUR",
        idempotency_key="k-1",
        off_session=True,
    )
    assert result.outcome == ChargeOutcome.SUCCEEDED
    assert result.reference.startswith("pi_fake")
    method, path, body, headers = fake_stripe.requests[0]
    assert (method, path) == ("POST", "/v1/payment_intents")
    assert headers["idempotency-key"] == "k-1"
    assert body["off_session"] == "true"
    assert body["confirm"] == "true"
    assert body["customer"] == "cus_C1"
    assert body["metadata"] == {"idempotency_key": "k-1"}
    assert body["amount"] == "1400"
    assert body["currency"] == "eur"
    # The same key answers with the same intent, as Stripe does.
    again = gateway.charge(
        token="cus_C1/pm_card_visa",
        amount_minor=1400,
        currency="EUR",
        idempotency_key="k-1",
        off_session=True,
    )
    assert again.reference == result.reference
    assert len(fake_stripe.intents) == 1


def test_card_error_is_a_decline_with_its_code(fake_stripe):
    result = get_gateway("stripe").charge(
        token="pm_card_chargeDeclined",
        amount_minor=100,
        currency="EUR",
        idempotency_key="k",
        off_session=False,
    )
    assert result.outcome == ChargeOutcome.DECLINED
    assert result.decline_code == "generic_decline"
    assert result.decline_category == DeclineCategory.SOFT
    assert result.reference == "pi_3QaDeclined00000001"


def test_off_session_authentication_required(fake_stripe):
    result = get_gateway("stripe").charge(
        token="pm_card_authenticationRequired",
        amount_minor=100,
        currency="EUR",
        idempotency_key="k",
        off_session=True,
    )
    assert result.decline_code == "authentication_required"
    assert result.decline_category == DeclineCategory.AUTHENTICATION_REQUIRED


def test_on_session_3ds_gives_the_next_action_url(fake_stripe):
    result = get_gateway("stripe").charge(
        token="pm_card_threeDSecure2Required",
        amount_minor=100,
        currency="EUR",
        idempotency_key="k",
        off_session=False,
        return_url="/a/1/billing/payments/return/?attempt=1",
    )
    assert result.outcome == ChargeOutcome.REQUIRES_ACTION
    assert result.action_url.startswith("https://hooks.stripe.com/3d_secure_2/")
    assert fake_stripe.requests[0][2]["return_url"].startswith("http")


def test_dropped_connection_is_unknown_and_lookup_finds_the_charge(fake_stripe):
    gateway = get_gateway("stripe")
    result = gateway.charge(
        token="pm_card_timeout", amount_minor=100, currency="EUR", idempotency_key="k-t", off_session=True
    )
    assert result.outcome == ChargeOutcome.UNKNOWN
    found = gateway.lookup(idempotency_key="k-t")
    assert found.outcome == ChargeOutcome.SUCCEEDED
    assert gateway.lookup(idempotency_key="never-sent").outcome == ChargeOutcome.NOT_FOUND


def test_unreachable_api_is_unknown(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    result = get_gateway("stripe").charge(
        token="pm_card_visa", amount_minor=100, currency="EUR", idempotency_key="k", off_session=True
    )
    assert result.outcome == ChargeOutcome.UNKNOWN


def test_cancel_of_a_succeeded_intent_reports_success(fake_stripe):
    gateway = get_gateway("stripe")
    ok = gateway.charge(
        token="pm_card_visa", amount_minor=100, currency="EUR", idempotency_key="k", off_session=False
    )
    assert gateway.cancel(reference=ok.reference).outcome == ChargeOutcome.SUCCEEDED
    action = gateway.charge(
        token="pm_card_threeDSecure2Required",
        amount_minor=100,
        currency="EUR",
        idempotency_key="k2",
        off_session=False,
    )
    assert gateway.cancel(reference=action.reference).outcome == ChargeOutcome.CANCELED


def test_update_expiry_and_card_setup_finish(fake_stripe):
    gateway = get_gateway("stripe")
    updated = gateway.update_expiry(token="cus_C1/pm_1", exp_month=4, exp_year=2032)
    assert updated.ok
    assert fake_stripe.requests[-1][2]["card"] == {"exp_month": "4", "exp_year": "2032"}
    card = gateway.card_setup_finish(reference="seti_1QaSetup00000001")
    assert (card.token, card.brand, card.last4, card.exp_year) == (
        "cus_Contoso001/pm_1QaNewCard0000001",
        "visa",
        "4242",
        2031,
    )


def test_settle_through_stripe_charges_once_and_moves_subscriptions(fake_stripe, contoso):
    mc = stripe_card(contoso.account, "pm_card_mastercard")
    Subscription.objects.filter(pk__in=[contoso.subs["visio"].pk, contoso.subs["teams"].pk]).update(
        payment_method=mc
    )
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=mc.pk,
        actor=contoso.admin,
        idempotency_key=str(uuid.uuid4()),
    )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.gateway == "stripe"
    assert attempt.amount_minor == 39050
    assert len(fake_stripe.creates) == 1
    assert not SimCharge.objects.exists()
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 4


def test_stripe_timeout_reconciles_to_success_without_a_second_charge(fake_stripe, contoso):
    lost = stripe_card(contoso.account, "pm_card_timeout")
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=lost.pk,
        actor=contoso.finance,
        idempotency_key=str(uuid.uuid4()),
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    attempt = services.attempt_reconcile(attempt_id=attempt.pk)
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert len(fake_stripe.creates) == 1
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID


def test_stripe_request_lost_is_not_released_until_the_search_can_be_trusted(fake_stripe, contoso):
    import datetime as dt

    lost = stripe_card(contoso.account, "pm_card_lost")
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=lost.pk,
        actor=contoso.finance,
        idempotency_key=str(uuid.uuid4()),
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    assert services.attempt_reconcile(attempt_id=attempt.pk).status == PaymentAttempt.Status.UNKNOWN
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        created_at=attempt.created_at - dt.timedelta(minutes=11)
    )
    assert services.attempt_reconcile(attempt_id=attempt.pk).status == PaymentAttempt.Status.CANCELED
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.OPEN


def test_classify_decline_table():
    assert classify_decline("insufficient_funds") == DeclineCategory.SOFT
    assert classify_decline("stolen_card") == DeclineCategory.HARD
    assert classify_decline("expired_card") == DeclineCategory.HARD
    assert classify_decline("authentication_required") == DeclineCategory.AUTHENTICATION_REQUIRED
    assert classify_decline("something_new") == DeclineCategory.UNKNOWN


def test_stripe_mode_adds_a_card_through_a_setup_intent_and_settles(fake_stripe, contoso, client, settings):
    from django.urls import reverse

    from payments.models import GatewayCustomer, PaymentMethod

    settings.PAYMENT_GATEWAY = "stripe"
    client.force_login(contoso.finance)
    setup = client.post(reverse("payments:card_setup", args=[contoso.account.pk]))
    assert setup.json()["client_secret"].startswith("seti_")
    assert GatewayCustomer.objects.get(account=contoso.account).customer_id.startswith("cus_fake")
    pane = client.get(reverse("payments:settle", args=[contoso.account.pk, contoso.visa.pk]))
    body = pane.content.decode()
    assert 'id="stripe-card-element"' in body
    assert 'name="number"' not in body  # no card number field in stripe mode
    # The browser confirmed the SetupIntent with Elements; only its id comes to us.
    fake_stripe.confirm_setup("seti_1QaSetup00000001")
    fake_stripe.intents.clear()
    response = client.post(
        reverse("payments:settle", args=[contoso.account.pk, contoso.visa.pk]),
        {
            "form_key": str(uuid.uuid4()),
            "method": "new",
            "setup_intent": "seti_1QaSetup00000001",
            "shown_total_minor": "37650",
        },
    )
    assert "Payment received" in response.content.decode()
    method = PaymentMethod.objects.get(gateway="stripe")
    customer_id = GatewayCustomer.objects.get(account=contoso.account).customer_id
    assert (method.last4, method.gateway_token) == ("4242", f"{customer_id}/pm_1QaNewCard0000001")
    assert fake_stripe.creates[0]["payment_method"] == "pm_1QaNewCard0000001"
    assert fake_stripe.creates[0]["customer"] == customer_id


def test_a_setup_intent_of_another_customer_is_refused_and_nothing_is_saved(
    fake_stripe, contoso, client, settings
):
    """The seti_ id comes from the browser: quoting another account's intent must not attach its card."""
    from django.urls import reverse

    from payments.models import GatewayCustomer, PaymentAttempt, PaymentMethod

    settings.PAYMENT_GATEWAY = "stripe"
    client.force_login(contoso.finance)
    GatewayCustomer.objects.create(account=contoso.account, gateway="stripe", customer_id="cus_ContosoOwn")
    # No intent was created for this customer: the fixture's intent belongs to cus_Contoso001.
    response = client.post(
        reverse("payments:settle", args=[contoso.account.pk, contoso.visa.pk]),
        {
            "form_key": str(uuid.uuid4()),
            "method": "new",
            "setup_intent": "seti_1QaSetup00000001",
            "shown_total_minor": "37650",
        },
    )
    assert response.status_code == 200
    assert "The card was not confirmed" in response.content.decode()
    assert not PaymentMethod.objects.filter(gateway="stripe").exists()
    assert not PaymentAttempt.objects.filter(account=contoso.account, status="succeeded").exists()
    assert fake_stripe.creates == []
