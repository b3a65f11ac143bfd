"""The browser and the gateway's webhook report the same card setup at the same moment, many times:
one card (PostgreSQL row locks and the unique gateway token)."""

import hashlib
import hmac
import json
import threading
import time

import pytest
from django.db import connection, connections
from django.test import Client

from payments import services
from payments.models import PaymentMethod, WebhookEvent
from tests.payments.scenario import build_contoso

SECRET = "whsec_test_secret"
EACH = 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_webhooks_and_browser_saves_of_one_setup_make_one_card(fake_stripe, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")
    settings.PAYMENT_GATEWAY = "stripe"
    contoso = build_contoso()
    secret = services.card_setup_start(account_id=contoso.account.pk, actor=contoso.finance)
    seti = secret.split("_secret_")[0]
    intent = fake_stripe.confirm_setup(seti)
    intent["payment_method"] = intent["payment_method"]["id"]
    payload = json.dumps(
        {
            "id": "evt_race",
            "object": "event",
            "created": 1795000000,
            "type": "setup_intent.succeeded",
            "data": {"object": intent},
        }
    ).encode()
    barrier = threading.Barrier(EACH * 2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def webhook() -> None:
        try:
            barrier.wait()
            ts = int(time.time())
            mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
            response = Client().post(
                "/payments/webhooks/stripe/",
                payload,
                content_type="application/json",
                headers={"Stripe-Signature": f"t={ts},v1={mac}"},
            )
            result = f"webhook {response.status_code}"
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    def browser() -> None:
        try:
            barrier.wait()
            services.payment_method_add_from_setup(
                account_id=contoso.account.pk, actor=contoso.finance, setup_intent_id=seti
            )
            result = "browser ok"
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=f) for f in (webhook, browser) for _ in range(EACH)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["browser ok"] * EACH + ["webhook 200"] * EACH
    assert PaymentMethod.objects.filter(gateway="stripe").count() == 1
    assert PaymentMethod.objects.get(gateway="stripe").owner_id == contoso.finance.pk
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
