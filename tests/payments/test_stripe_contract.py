"""The contract check: what the pinned SDK's typed params define is what the fake Stripe accepts.

The allowed names come from the installed SDK at test time (tests/payments/stripe_contract.py), so a
bumped SDK re-runs the same checks against its own API version.
"""

from typing import Any

import pytest
import stripe

from payments import services
from payments.gateways.base import ChargeOutcome, get_gateway
from payments.gateways.stripe import ALLOWED_PAYMENT_METHOD_TYPES
from payments.models import PaymentAttempt
from tests.factories import PaymentMethodFactory
from tests.payments import stripe_contract


def _route(method: str, path: str) -> stripe_contract.Route:
    route = stripe_contract.route_for(method, path)
    assert route is not None, f"the pinned SDK has no {method} {path}"
    return route


def test_routes_are_read_from_the_sdk_services():
    create = _route("POST", "/v1/payment_intents")
    assert create.params is stripe.params.PaymentIntentCreateParams
    assert create.sdk_method == "PaymentIntentService.create"
    # A literal path wins over a template with the same prefix.
    assert _route("GET", "/v1/payment_intents/search").sdk_method == "PaymentIntentService.search"
    assert _route("GET", "/v1/payment_intents/pi_1").sdk_method == "PaymentIntentService.retrieve"
    assert _route("POST", "/v1/payment_methods/pm_1/detach").sdk_method == "PaymentMethodService.detach"
    assert _route("POST", "/v1/refunds").params is stripe.params.RefundCreateParams
    assert stripe_contract.route_for("POST", "/v1/no_such_thing") is None


def test_unknown_top_level_and_nested_parameters_are_refused():
    params = _route("POST", "/v1/payment_intents").params
    found = stripe_contract.check(
        params,
        {
            "amount": "100",
            "currency": "eur",
            "payment_method_types": ["card"],
            "automatic_payment_methods": {"enabled": "true", "colour": "blue"},
            "metadata": {"anything": "goes"},
        },
    )
    assert [(v.code, v.param) for v in found] == [
        ("parameter_unknown", "payment_method_types"),
        ("parameter_unknown", "automatic_payment_methods[colour]"),
    ]
    error = found[0].as_stripe_error()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "Received unknown parameter: payment_method_types"


def test_missing_required_parameters_are_refused_at_every_level():
    params = _route("POST", "/v1/payment_intents").params
    assert [(v.code, v.param) for v in stripe_contract.check(params, {"currency": "eur"})] == [
        ("parameter_missing", "amount")
    ]
    # automatic_payment_methods is optional, but once sent its `enabled` is Required.
    nested = stripe_contract.check(
        params, {"amount": "1", "currency": "eur", "automatic_payment_methods": {"allow_redirects": "never"}}
    )
    assert [(v.code, v.param) for v in nested] == [
        ("parameter_missing", "automatic_payment_methods[enabled]")
    ]


def test_list_elements_and_closed_enumerations_are_checked():
    params = _route("POST", "/v1/payment_intents").params
    ok = stripe_contract.check(
        params, {"amount": "1", "currency": "eur", "allowed_payment_method_types": ["card"]}
    )
    assert ok == []
    bad = stripe_contract.check(params, {"amount": "1", "currency": "eur", "confirm": {"x": "1"}})
    assert [(v.code, v.param) for v in bad] == [("parameter_invalid", "confirm")]


def test_request_options_are_not_body_parameters():
    params = _route("POST", "/v1/customers").params
    found = stripe_contract.check(params, {"name": "Contoso", "idempotency_key": "k", "api_key": "sk"})
    assert {v.param for v in found} == {"idempotency_key", "api_key"}


def test_decode_form_rebuilds_nested_hashes_and_arrays():
    pairs = [("card[exp_month]", "4"), ("expand[0]", "a"), ("expand[1]", "b"), ("x[y][0][z]", "1")]
    assert stripe_contract.decode_form(pairs) == {
        "card": {"exp_month": "4"},
        "expand": ["a", "b"],
        "x": {"y": [{"z": "1"}]},
    }


def test_cards_only_uses_the_parameter_the_pinned_api_offers(fake_stripe):
    get_gateway("stripe").charge(
        token="cus_C1/pm_card_visa", amount_minor=100, currency="EUR", idempotency_key="k", off_session=True
    )
    body = fake_stripe.creates[0]
    assert body["allowed_payment_method_types"] == ALLOWED_PAYMENT_METHOD_TYPES == ["card"]
    assert "payment_method_types" not in body


@pytest.mark.django_db
def test_a_request_the_pinned_api_refuses_fails_the_attempt_as_invalid(
    fake_stripe, contoso, monkeypatch, caplog
):
    """What the adapter did before the fix (payment_method_types on endive): the fake answers 400 like
    Stripe, the attempt fails at once as INVALID with an operator error, and is never reconciled."""
    original = stripe.PaymentIntentService.create

    def old_adapter(self: Any, params: Any, options: Any = None) -> Any:
        # The request the adapter built before the fix; untyped on purpose, so the fake must catch it.
        sent: Any = {**params, "payment_method_types": ["card"]}
        return original(self, sent, options)

    monkeypatch.setattr(stripe.PaymentIntentService, "create", old_adapter)
    method = PaymentMethodFactory(
        account=contoso.account, gateway="stripe", gateway_token="cus_C1/pm_card_visa"
    )
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=method.pk,
        actor=contoso.finance,
        idempotency_key="old-adapter",
    )
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "invalid_request"
    assert "parameter_unknown" in attempt.operator_error
    assert "payment_method_types" in attempt.operator_error
    assert attempt.reconcile_after is None
    assert [v.param for _where, v in fake_stripe.violations] == ["payment_method_types"]
    assert any(r.levelname == "ERROR" and "invalid" in r.getMessage() for r in caplog.records)
    assert get_gateway("stripe").lookup(idempotency_key="old-adapter").outcome == ChargeOutcome.NOT_FOUND
    fake_stripe.violations.clear()  # seen and asserted: the fixture's own check must not fail this test


def test_stripe_js_restricts_to_cards_with_the_option_endive_offers():
    import re
    from pathlib import Path

    js = (Path(__file__).resolve().parents[2] / "payments/static/payments/stripe-card.js").read_text()
    assert "allowedPaymentMethodTypes: CARD_ONLY" in js
    assert 'var CARD_ONLY = ["card"];' in js
    # Stripe.js throws an integration error for paymentMethodTypes since endive (comments aside).
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    assert re.search(r"(?<![A-Za-z])paymentMethodTypes", code) is None
