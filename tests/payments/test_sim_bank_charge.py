"""The simulated bank's charge: once per idempotency key, in two round trips outside a transaction."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from gateway_sim.models import SimCard, SimCharge
from gateway_sim.services import sim_card_forget, sim_card_register, sim_charge_create

pytestmark = pytest.mark.django_db(transaction=True)


def _charge(token: str, key: str, amount: int = 1800) -> SimCharge:
    return sim_charge_create(
        token=token, amount_minor=amount, currency="EUR", idempotency_key=key, off_session=True
    )


def test_a_new_charge_costs_the_card_and_the_insert():
    token = sim_card_register(number="4242424242424242", exp_month=12, exp_year=2040)
    with CaptureQueriesContext(connection) as captured:
        charge = _charge(token, "k1")
    assert charge.status == SimCharge.Status.SUCCEEDED
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["SELECT", "INSERT"]


def test_a_repeated_key_answers_with_the_first_charge_untouched():
    token = sim_card_register(number="4242424242424242", exp_month=12, exp_year=2040)
    first = _charge(token, "k1")
    again = _charge(token, "k1", amount=99)
    assert again.pk == first.pk
    assert again.amount_minor == 1800
    assert SimCharge.objects.count() == 1
    # Inside a caller's transaction too, and the transaction stays usable.
    with transaction.atomic():
        assert _charge(token, "k1").pk == first.pk
        assert SimCard.objects.filter(token=token).exists()


def test_a_forgotten_card_is_unknown_but_its_earlier_answer_stands():
    token = sim_card_register(number="4242424242424242", exp_month=12, exp_year=2040)
    first = _charge(token, "k1")
    sim_card_forget(token=token)
    assert _charge(token, "k1").pk == first.pk
    with pytest.raises(SimCard.DoesNotExist):
        _charge(token, "k2")


def test_declining_cards_decline():
    token = sim_card_register(number="4000000000009995", exp_month=12, exp_year=2040)
    charge = _charge(token, "k1")
    assert (charge.status, charge.decline_code) == (SimCharge.Status.DECLINED, "insufficient_funds")
