"""payments_in_flight, the one "payments in flight" query, asked the way the Settle balance pane asks it
(attempts_in_flight_on_methods): exactly the open attempts that pay a past-due invoice of these cards, in
every attempt state, each once, oldest first, never another account's."""

import itertools

import pytest

from payments.models import PaymentAllocation, PaymentAttempt
from payments.selectors import attempts_in_flight, attempts_in_flight_on_methods, payments_in_flight
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


def test_in_flight_on_cards_in_every_state():
    contoso = build_contoso()
    other = build_contoso(prefix="other-")
    inv = contoso.invoices
    Invoice.objects.filter(pk=inv["powerbi"].pk).update(amount_due_minor=0)  # past due, nothing left to pay
    visa, mastercard = contoso.visa.pk, contoso.mastercard.pk
    # Which card's past-due invoices each invoice set touches (teams is paid up; powerbi owes nothing).
    sets = {
        "m365": ([inv["m365"]], {visa}),
        "visio": ([inv["visio"]], {mastercard}),
        "both": ([inv["exchange"], inv["visio"]], {visa, mastercard}),
        "teams": ([inv["teams"]], set()),
        "powerbi": ([inv["powerbi"]], set()),
        "none": ([], set()),
    }
    keys = itertools.count()
    made = []  # (attempt, cards it is in flight on)
    for status, _label in PaymentAttempt.Status.choices:
        for invoices, cards in sets.values():
            attempt = _attempt(contoso.account, contoso.visa, status, invoices, f"k{next(keys)}")
            made.append((attempt, cards if status in PaymentAttempt.IN_FLIGHT else set()))
        _attempt(other.account, other.visa, status, [other.invoices["m365"]], f"o{next(keys)}")

    for method_ids in ([visa], [mastercard], [visa, mastercard]):
        found = [a.pk for a in attempts_in_flight_on_methods(account=contoso.account, method_ids=method_ids)]
        expected = [a.pk for a, cards in made if cards & set(method_ids)]
        assert found == expected  # each once, oldest first
    # 3 open states x (m365 + both) on the Visa; x (visio + both) on the Mastercard.
    assert len(attempts_in_flight_on_methods(account=contoso.account, method_ids=[visa])) == 6


def test_by_invoice_ids_and_by_card():
    contoso = build_contoso()
    inv = contoso.invoices
    waiting = _attempt(contoso.account, contoso.visa, "requires_action", [inv["m365"], inv["exchange"]], "a")
    _attempt(contoso.account, contoso.visa, "succeeded", [inv["powerbi"]], "b")
    assert [a.pk for a in attempts_in_flight(account=contoso.account, invoice_ids=[inv["exchange"].pk])] == [
        waiting.pk
    ]
    assert attempts_in_flight(account=contoso.account, invoice_ids=[inv["powerbi"].pk]) == []
    assert list(payments_in_flight(account_id=contoso.account.pk, method_id=contoso.visa.pk)) == [waiting]
    assert not payments_in_flight(account_id=contoso.account.pk, method_id=contoso.mastercard.pk).exists()


def test_settle_preview_says_whether_a_payment_is_in_flight_as_the_query_does():
    """The Settle balance pane reads which payments are in flight only when its preview says one is: the
    preview's flag must agree with attempts_in_flight_on_methods for every attempt state and invoice set."""
    from django.db import transaction

    from payments.selectors import settle_preview

    contoso = build_contoso()
    other = build_contoso(prefix="other-")
    inv = contoso.invoices
    Invoice.objects.filter(pk=inv["powerbi"].pk).update(amount_due_minor=0)
    sets = [
        [inv["m365"]],
        [inv["visio"]],
        [inv["exchange"], inv["visio"]],
        [inv["teams"]],
        [inv["powerbi"]],
        [],
    ]
    # Another account's payment in flight never counts.
    _attempt(other.account, other.visa, PaymentAttempt.Status.PENDING, [other.invoices["m365"]], "other")
    keys = itertools.count()
    checked = 0
    for status, _label in PaymentAttempt.Status.choices:
        for invoices in sets:
            with transaction.atomic():
                _attempt(contoso.account, contoso.visa, status, invoices, f"k{next(keys)}")
                for chosen in (
                    None,
                    contoso.visa,
                    contoso.mastercard,
                ):  # the view passes the failed card itself
                    preview = settle_preview(
                        account=contoso.account, failed_method=contoso.visa, chosen_method=chosen
                    )
                    method_ids = sorted({contoso.visa.pk, (chosen or contoso.visa).pk})
                    expected = attempts_in_flight_on_methods(account=contoso.account, method_ids=method_ids)
                    assert preview.payments_in_flight == bool(expected), (status, invoices, chosen)
                    checked += bool(expected)
                transaction.set_rollback(True)
    assert checked > 0  # some of them were in flight
