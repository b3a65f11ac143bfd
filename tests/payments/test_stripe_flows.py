"""Each Stripe flow end to end, through the real SDK against the param-checking fake (conftest's
fake_stripe fails any test whose requests the pinned API would refuse). Runs on SQLite and PostgreSQL."""

import uuid

import pytest
from django.urls import reverse

from payments import services
from payments.gateways.base import (
    ChargeOutcome,
    GatewayError,
    RefundOutcome,
    get_gateway,
)
from payments.models import GatewayCustomer, PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice
from support.services import support_staff_group
from tests.factories import PaymentMethodFactory, UserFactory

pytestmark = pytest.mark.django_db


def stripe_card(account, pm, owner=None, last4="4444"):
    return PaymentMethodFactory(
        account=account,
        brand="visa",
        last4=last4,
        gateway="stripe",
        gateway_token=f"cus_C1/{pm}",
        owner=owner,
    )


def test_settle_balance_with_3d_secure(fake_stripe, contoso):
    card = stripe_card(contoso.account, "pm_card_threeDSecure2Required", owner=contoso.finance)
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=card.pk,
        actor=contoso.finance,
        idempotency_key=str(uuid.uuid4()),
        return_url="/a/1/billing/payments/return/?attempt={attempt}",
    )
    assert attempt.status == PaymentAttempt.Status.REQUIRES_ACTION
    assert attempt.action_url.startswith("https://hooks.stripe.com/")
    body = fake_stripe.creates[0]
    assert "off_session" not in body
    assert body["return_url"].startswith("http")  # absolute, as Stripe requires
    assert body["return_url"].endswith(f"/a/1/billing/payments/return/?attempt={attempt.pk}")
    fake_stripe.authenticate(attempt.gateway_reference, success=True)
    attempt = services.attempt_complete_action(attempt_id=attempt.pk, account_id=contoso.account.pk)
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert len(fake_stripe.creates) == 1
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 3  # the visa's three past-due


def test_failed_3d_secure_fails_without_blaming_the_card(fake_stripe, contoso):
    card = stripe_card(contoso.account, "pm_card_threeDSecure2Required")
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=card.pk,
        actor=contoso.finance,
        idempotency_key="3ds-fail",
    )
    fake_stripe.authenticate(attempt.gateway_reference, success=False)
    attempt = services.attempt_complete_action(attempt_id=attempt.pk)
    assert (attempt.status, attempt.decline_code) == (PaymentAttempt.Status.FAILED, "authentication_failed")
    card.refresh_from_db()
    assert card.status == PaymentMethod.Status.VALID


def test_pay_now_through_the_pane(fake_stripe, contoso, client):
    card = stripe_card(contoso.account, "pm_card_visa")
    client.force_login(contoso.finance)
    invoice = contoso.invoices["teams"]
    response = client.post(
        reverse("payments:invoice_pay", args=[contoso.account.pk, invoice.number]),
        {
            "form_key": str(uuid.uuid4()),
            "method": str(card.pk),
            "shown_total_minor": str(invoice.amount_due_minor),
        },
    )
    assert "Payment received" in response.content.decode()
    assert fake_stripe.creates[0]["amount"] == str(invoice.amount_due_minor)
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID


def test_off_session_renewal_charge_once_per_key(fake_stripe, contoso):
    card = stripe_card(contoso.account, "pm_card_mastercard")
    invoice = contoso.invoices["teams"]
    kwargs = {
        "account_id": contoso.account.pk,
        "invoice_ids": [invoice.pk],
        "payment_method_id": card.pk,
        "source": PaymentAttempt.Source.RENEWAL,
        "off_session": True,
        "idempotency_key": f"dunning:{invoice.pk}:1",
        "actor_label": "renewal",
    }
    attempt = services.invoices_charge(**kwargs)
    again = services.invoices_charge(**kwargs)
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert again.pk == attempt.pk
    assert len(fake_stripe.creates) == 1
    assert fake_stripe.creates[0]["off_session"] == "true"
    assert fake_stripe.requests[0][3]["idempotency-key"] == f"dunning:{invoice.pk}:1"


def test_off_session_renewal_that_needs_the_customer(fake_stripe, contoso):
    card = stripe_card(contoso.account, "pm_card_authenticationRequired")
    attempt = services.invoices_charge(
        account_id=contoso.account.pk,
        invoice_ids=[contoso.invoices["teams"].pk],
        payment_method_id=card.pk,
        source=PaymentAttempt.Source.RENEWAL,
        off_session=True,
        idempotency_key="renewal-sca",
    )
    assert (attempt.status, attempt.decline_code) == (PaymentAttempt.Status.FAILED, "authentication_required")
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAST_DUE


def test_refund_call_with_key_amount_and_reason(fake_stripe):
    gateway = get_gateway("stripe")
    charge = gateway.charge(
        token="cus_C1/pm_card_visa", amount_minor=5000, currency="EUR", idempotency_key="c", off_session=True
    )
    refund = gateway.refund(
        charge_reference=charge.reference,
        amount_minor=1200,
        currency="EUR",
        idempotency_key="refund:1",
        reason="overpaid",
    )
    assert (refund.outcome, refund.amount_minor, refund.currency) == (RefundOutcome.SUCCEEDED, 1200, "EUR")
    assert refund.reference.startswith("re_")
    method, path, body, headers = fake_stripe.requests[-1]
    assert (method, path, headers["idempotency-key"]) == ("POST", "/v1/refunds", "refund:1")
    assert body["payment_intent"] == charge.reference
    assert body["metadata"]["reason"] == "overpaid"
    # The same key is the same refund, never a second one.
    again = gateway.refund(
        charge_reference=charge.reference, amount_minor=1200, currency="EUR", idempotency_key="refund:1"
    )
    assert again.reference == refund.reference
    assert len(fake_stripe.refunds) == 1
    # More than is left is refused as invalid: permanent, nothing refunded.
    too_much = gateway.refund(
        charge_reference=charge.reference, amount_minor=4000, currency="EUR", idempotency_key="refund:2"
    )
    assert too_much.outcome == RefundOutcome.INVALID
    assert "amount_too_large" in too_much.message


def test_refund_without_an_answer_is_unknown(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    result = get_gateway("stripe").refund(
        charge_reference="pi_1", amount_minor=100, currency="EUR", idempotency_key="r"
    )
    assert result.outcome == RefundOutcome.UNKNOWN


def test_detach_forgets_the_card_and_twice_is_fine(fake_stripe):
    gateway = get_gateway("stripe")
    gateway.detach(token="cus_C1/pm_card_visa")
    gateway.detach(token="cus_C1/pm_card_visa")
    assert fake_stripe.detached == ["pm_card_visa"]
    assert fake_stripe.requests[0][:2] == ("POST", "/v1/payment_methods/pm_card_visa/detach")


def test_detach_without_an_answer_raises_a_retryable_gateway_error(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    with pytest.raises(GatewayError) as caught:
        get_gateway("stripe").detach(token="pm_1")
    assert caught.value.permanent is False


def test_adding_a_card_with_a_setup_intent(fake_stripe, contoso, client, settings):
    settings.PAYMENT_GATEWAY = "stripe"
    client.force_login(contoso.finance)
    setup = client.post(reverse("payments:card_setup", args=[contoso.account.pk]))
    secret = setup.json()["client_secret"]
    _method, path, body, _headers = fake_stripe.requests[-1]
    assert path == "/v1/setup_intents"
    assert body["allowed_payment_method_types"] == ["card"]
    assert body["usage"] == "off_session"
    seti = secret.split("_secret_")[0]
    fake_stripe.confirm_setup(seti)
    response = client.post(
        reverse("payments:method_add", args=[contoso.account.pk]),
        {"setup_intent": seti, "holder_name": "Fin"},
    )
    assert response.status_code == 303
    method = PaymentMethod.objects.get(gateway="stripe")
    customer = GatewayCustomer.objects.get(account=contoso.account)
    assert method.gateway_token == f"{customer.customer_id}/pm_1QaNewCard0000001"
    assert (method.owner, method.last4, method.exp_year) == (contoso.finance, "4242", 2031)


def test_the_card_form_follows_the_gateways_card_collection(fake_stripe, contoso, client, settings):
    client.force_login(contoso.finance)
    url = reverse("payments:method_add", args=[contoso.account.pk])
    settings.PAYMENT_GATEWAY = "simulated"
    assert 'name="number"' in client.get(url).content.decode()
    assert client.post(reverse("payments:card_setup", args=[contoso.account.pk])).status_code == 404
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_shown"
    body = client.get(url).content.decode()
    assert 'name="number"' not in body
    assert 'data-publishable-key="pk_test_shown"' in body


def test_card_setup_that_stripe_refuses_shows_a_plain_message(
    fake_stripe, contoso, client, settings, monkeypatch
):
    settings.PAYMENT_GATEWAY = "stripe"
    client.force_login(contoso.finance)

    def refuse(self, **kwargs):
        raise GatewayError("AuthenticationError 401: invalid key", permanent=True)

    monkeypatch.setattr("payments.gateways.stripe.StripeGateway.customer_create", refuse)
    response = client.post(reverse("payments:card_setup", args=[contoso.account.pk]))
    assert response.status_code == 502
    assert response.json()["error"] == "The card form could not be loaded. Try again in a moment."


def test_invalid_request_fails_at_once_tells_the_customer_and_shows_on_the_support_dashboard(
    fake_stripe, contoso, client, caplog
):
    card = stripe_card(contoso.account, "pm_card_missing")
    client.force_login(contoso.finance)
    invoice = contoso.invoices["teams"]
    response = client.post(
        reverse("payments:invoice_pay", args=[contoso.account.pk, invoice.number]),
        {
            "form_key": str(uuid.uuid4()),
            "method": str(card.pk),
            "shown_total_minor": str(invoice.amount_due_minor),
        },
    )
    body = response.content.decode()
    assert "could not be processed, and nothing was charged" in body
    assert "resource_missing" not in body  # the operator's detail is not for customers
    attempt = PaymentAttempt.objects.get(payment_method=card)
    assert attempt.status == PaymentAttempt.Status.FAILED  # not unknown: never reconciled
    assert attempt.decline_code == "invalid_request"
    assert attempt.reconcile_after is None
    assert "InvalidRequestError 400 resource_missing param=payment_method" in attempt.operator_error
    card.refresh_from_db()
    assert card.status == PaymentMethod.Status.VALID  # the card did nothing wrong
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN
    assert services.attempt_reconcile(attempt_id=attempt.pk).status == PaymentAttempt.Status.FAILED
    assert len(fake_stripe.creates) == 1
    assert any(r.levelname == "ERROR" and attempt.reference in r.getMessage() for r in caplog.records)

    agent = UserFactory(email="agent@billing.example", is_staff=True)
    agent.groups.add(support_staff_group())
    client.force_login(agent)
    dashboard = client.get(reverse("support:dashboard")).content.decode()
    assert "Refused by the payment gateway as invalid" in dashboard
    assert attempt.reference in dashboard
    assert "resource_missing" in dashboard


def test_an_invalid_answer_to_a_look_up_never_fails_an_unknown_attempt(fake_stripe, contoso):
    card = stripe_card(contoso.account, "pm_card_timeout")
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=card.pk,
        actor=contoso.finance,
        idempotency_key="lost-then-refused",
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    from payments.gateways.base import ChargeResult

    attempt = services.attempt_apply_result(
        attempt_id=attempt.pk, result=ChargeResult.invalid("search refused")
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    assert ChargeOutcome.INVALID == "invalid"


@pytest.mark.parametrize(
    ("token", "secret", "outcome"),
    [
        ("pm_card_missing", "sk_test_fake", ChargeOutcome.INVALID),  # InvalidRequestError, not a card error
        ("pm_card_visa", "sk_test_revoked", ChargeOutcome.INVALID),  # AuthenticationError
        ("pm_card_rateLimited", "sk_test_fake", ChargeOutcome.UNKNOWN),  # try later, never charge twice
        ("pm_card_keyReused", "sk_test_fake", ChargeOutcome.UNKNOWN),  # an earlier request may have charged
        ("pm_card_timeout", "sk_test_fake", ChargeOutcome.UNKNOWN),  # no answer
        ("pm_card_chargeDeclined", "sk_test_fake", ChargeOutcome.DECLINED),  # the card
    ],
)
def test_errors_say_what_they_are(fake_stripe, settings, token, secret, outcome):
    settings.STRIPE_SECRET_KEY = secret
    result = get_gateway("stripe").charge(
        token=f"cus_C1/{token}", amount_minor=100, currency="EUR", idempotency_key="k", off_session=True
    )
    assert result.outcome == outcome
    if outcome == ChargeOutcome.INVALID:
        assert result.message  # the operator's detail
