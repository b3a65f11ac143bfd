"""Double submits of the card panes at the same moment (PostgreSQL row locks): one card, one move."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from gateway_sim.models import SimCard, SimCharge
from payments.models import PaymentMethod
from subscriptions.models import Subscription
from tests.payments.scenario import build_contoso

CONCURRENT = 8

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _needs_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")


def _at_once(user, post: Callable[[Client], int]) -> list[int]:
    """Each thread signs in its own browser (client), then all post at the same moment."""
    barrier = threading.Barrier(CONCURRENT)
    statuses: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            client = Client()
            client.force_login(user)
            barrier.wait()
            status = post(client)
        except Exception as exc:  # recorded, so the assertion shows it
            status = -1
            print(f"{type(exc).__name__}: {exc}")
        finally:
            connections.close_all()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run) for _ in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_concurrent_double_submit_of_the_add_form_stores_one_card():
    _needs_postgres()
    contoso = build_contoso()
    url = reverse("payments:method_add", args=[contoso.account.pk])
    data = {"number": "4242424242424242", "exp_month": "7", "exp_year": "2031", "cvc": "123"}
    statuses = _at_once(contoso.finance, lambda c: c.post(url, data).status_code)
    assert statuses == [303] * CONCURRENT
    cards = PaymentMethod.objects.filter(account=contoso.account, last4="4242")
    assert cards.exclude(status="detached").count() == 1
    assert AuditEvent.objects.filter(action="payment_method.added").count() == 1
    # Every request registered its card at the bank; all but the kept one were detached again, and each of
    # those is kept as a removed card, confirmed detached.
    sim = SimCard.objects.filter(number="4242424242424242")
    assert sim.count() == CONCURRENT
    assert list(sim.filter(forgotten_at__isnull=True).values_list("token", flat=True)) == [
        cards.exclude(status="detached").get().gateway_token
    ]
    dropped = cards.filter(status="detached")
    assert dropped.count() == CONCURRENT - 1
    assert not dropped.filter(gateway_detached_at__isnull=True).exists()
    assert set(dropped.values_list("gateway_token", flat=True)) == set(
        sim.filter(forgotten_at__isnull=False).values_list("token", flat=True)
    )
    assert AuditEvent.objects.filter(action="payment_method.duplicate_dropped").count() == CONCURRENT - 1


def test_concurrent_replace_for_all_items_moves_once_and_charges_nothing():
    _needs_postgres()
    contoso = build_contoso()
    url = reverse("payments:method_replace", args=[contoso.account.pk, contoso.visa.pk])
    statuses = _at_once(contoso.admin, lambda c: c.post(url, {"method": contoso.mastercard.pk}).status_code)
    assert statuses == [303] * CONCURRENT
    assert Subscription.objects.filter(payment_method=contoso.visa).count() == 0
    assert Subscription.objects.filter(payment_method=contoso.mastercard).count() == 5
    assert AuditEvent.objects.filter(action="payment_method.replaced").count() == 1
    assert SimCharge.objects.count() == 0


def test_concurrent_delete_with_replacement_deletes_once():
    _needs_postgres()
    contoso = build_contoso()
    url = reverse("payments:method_delete", args=[contoso.account.pk, contoso.visa.pk])
    statuses = _at_once(
        contoso.admin, lambda c: c.post(url, {"replacement": contoso.mastercard.pk}).status_code
    )
    # The first deletes; the others either see the same deletion (303) or a card that is gone (404).
    assert set(statuses) <= {303, 404}
    assert 303 in statuses
    assert AuditEvent.objects.filter(action="payment_method.removed").count() == 1
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).is_removed
    assert Subscription.objects.filter(payment_method=contoso.mastercard).count() == 5
