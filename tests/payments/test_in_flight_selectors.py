"""attempts_in_flight_on_methods is hand-written SQL for the Settle balance pane; it must answer exactly what
payments_in_flight answers for the cards' past-due invoices, whatever state the attempts and invoices are in."""

import itertools

import pytest

from payments.models import PaymentAllocation, PaymentAttempt
from payments.selectors import attempts_in_flight_on_methods, payments_in_flight
from subscriptions.models import Invoice
from tests.payments.scenario import build_contoso

pytestmark = pytest.mark.django_db


def _attempt(account, method, status, invoices, key):
    attempt = PaymentAttempt.objects.create(
        account=account,
        payment_method=method,
        amount_minor=sum(i.amount_due_minor for i in invoices) or 100,
        currency="EUR",
        source="settle",
        status=status,
        decline_code="card_declined" if status == PaymentAttempt.Status.FAILED else "",
        idempotency_key=key,
    )
    PaymentAllocation.objects.bulk_create(
        PaymentAllocation(attempt=attempt, invoice=i, amount_minor=i.amount_due_minor) for i in invoices
    )
    return attempt


def _expected(account, method_ids):
    past_due = Invoice.objects.filter(
        account=account,
        status=Invoice.Status.PAST_DUE,
        amount_due_minor__gt=0,
        subscription__payment_method_id__in=method_ids,
    ).values("pk")
    return [a.pk for a in payments_in_flight(account_id=account.pk, invoices=past_due)]


def test_same_answer_as_payments_in_flight_in_every_state():
    contoso = build_contoso()
    other = build_contoso(prefix="other-")
    inv = contoso.invoices
    statuses = [s for s, _ in PaymentAttempt.Status.choices]
    keys = itertools.count()
    # Every status, on the Visa's invoices, the Mastercard's, both, a paid one and none; another account's too.
    for status in statuses:
        for invoices in (
            [inv["m365"]],
            [inv["visio"]],
            [inv["exchange"], inv["visio"]],
            [inv["teams"]],  # not past due
            [],
        ):
            _attempt(contoso.account, contoso.visa, status, invoices, f"k{next(keys)}")
        _attempt(other.account, other.visa, status, [other.invoices["m365"]], f"o{next(keys)}")
    Invoice.objects.filter(pk=inv["powerbi"].pk).update(amount_due_minor=0)
    _attempt(contoso.account, contoso.visa, PaymentAttempt.Status.PENDING, [inv["powerbi"]], "zero-due")

    for method_ids in ([contoso.visa.pk], [contoso.mastercard.pk], [contoso.visa.pk, contoso.mastercard.pk]):
        found = [a.pk for a in attempts_in_flight_on_methods(account=contoso.account, method_ids=method_ids)]
        assert found == _expected(contoso.account, method_ids)
        assert found, "the scenario has attempts in flight on every card"
        assert all(
            a.status in PaymentAttempt.IN_FLIGHT
            for a in attempts_in_flight_on_methods(account=contoso.account, method_ids=method_ids)
        )


def test_needs_one_or_two_cards():
    contoso = build_contoso()
    with pytest.raises(ValueError, match="one or two"):
        attempts_in_flight_on_methods(account=contoso.account, method_ids=[])
