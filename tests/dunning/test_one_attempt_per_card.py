"""One attempt per card at a time, and the dry-run planner showing the charges the run will make.

While any attempt on an account's card is in flight (pending, unknown, requires_action), whoever opened it,
the dunning run opens no new automatic attempt on that card for that account: the card's due invoices wait
until reconciliation may know the outcome, as an invoice whose own payment is in flight always did.
Runs with real commits, on SQLite and on PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from dunning.selectors import dunning_plan
from dunning.services import account_dunning_run, dunning_key
from gateway_sim.models import SimCharge
from payments.models import PaymentAttempt, PaymentMethod
from payments.services import attempt_open
from subscriptions.models import Invoice, Subscription

from .helpers import seed_past_due

pytestmark = pytest.mark.django_db(transaction=True)

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _in_flight_on(invoice: Invoice, *, status: str, reconcile_after: dt.datetime | None) -> PaymentAttempt:
    """A customer's payment of `invoice` alone on the subscription's card, left in flight."""
    assert invoice.subscription is not None
    assert invoice.subscription.payment_method is not None
    attempt = attempt_open(
        account=invoice.account,
        invoices=[invoice],
        method=invoice.subscription.payment_method,
        source=PaymentAttempt.Source.SETTLE,
        off_session=False,
        idempotency_key=f"settle-test-{invoice.pk}",
        actor_label="test",
    )
    PaymentAttempt.objects.filter(pk=attempt.pk).update(status=status, reconcile_after=reconcile_after)
    attempt.refresh_from_db()
    return attempt


@pytest.mark.parametrize("status", ["unknown", "pending", "requires_action"])
def test_no_new_attempt_on_a_card_while_another_is_in_flight_on_it(status):
    with time_machine.travel(START, tick=False):
        first, second = seed_past_due(accounts=1, invoices_per_account=2)
        held = Invoice.objects.select_related("account", "subscription__payment_method").get(pk=first)
        reconcile_after = timezone.now() + dt.timedelta(minutes=30) if status == "unknown" else None
        in_flight = _in_flight_on(held, status=status, reconcile_after=reconcile_after)

        report = account_dunning_run(account_id=held.account_id, now=timezone.now())

    # The other invoice is NOT its own attempt's: it waits because its card has one in flight.
    assert report.charged == {first: "in_flight", second: "in_flight"}
    assert list(PaymentAttempt.objects.filter(account_id=held.account_id)) == [in_flight]
    assert SimCharge.objects.count() == 0
    other = Invoice.objects.get(pk=second)
    assert other.attempt_count == 1  # no number used: no attempt was opened
    assert other.next_attempt_at is not None
    assert other.next_attempt_at > START
    if reconcile_after is not None:
        assert other.next_attempt_at == reconcile_after + dt.timedelta(seconds=1)  # after reconciliation


def test_after_the_card_is_free_its_waiting_invoices_are_charged_as_one_attempt():
    with time_machine.travel(START, tick=False):
        first, second = seed_past_due(accounts=1, invoices_per_account=2)
        held = Invoice.objects.select_related("account", "subscription__payment_method").get(pk=first)
        in_flight = _in_flight_on(held, status="pending", reconcile_after=None)
        account_dunning_run(account_id=held.account_id, now=timezone.now())
        assert SimCharge.objects.count() == 0
        # The customer's payment was declined (its answer came): the card is free again.
        PaymentAttempt.objects.filter(pk=in_flight.pk).update(
            status=PaymentAttempt.Status.FAILED, decline_code="insufficient_funds"
        )
    later = START + dt.timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        report = account_dunning_run(account_id=held.account_id, now=timezone.now())
    assert report.charged == {first: "succeeded", second: "succeeded"}
    (attempt,) = PaymentAttempt.objects.filter(account_id=held.account_id).exclude(pk=in_flight.pk)
    assert attempt.idempotency_key == dunning_key({first: 2, second: 2})
    assert SimCharge.objects.count() == 1


def test_another_card_of_the_account_is_not_held():
    with time_machine.travel(START, tick=False):
        (busy,) = seed_past_due(accounts=1, invoices_per_account=1)
        (free,) = seed_past_due(accounts=1, invoices_per_account=1, prefix="other")
        held = Invoice.objects.select_related("account", "subscription__payment_method").get(pk=busy)
        # Move the second subscription (with its own card) into the first account.
        moved = Invoice.objects.select_related("subscription__payment_method").get(pk=free)
        assert moved.subscription is not None
        assert moved.subscription.payment_method is not None
        Invoice.objects.filter(pk=moved.pk).update(account_id=held.account_id)
        Subscription.objects.filter(pk=moved.subscription.pk).update(account_id=held.account_id)
        PaymentMethod.objects.filter(pk=moved.subscription.payment_method.pk).update(
            account_id=held.account_id, is_default=False
        )
        _in_flight_on(held, status="unknown", reconcile_after=timezone.now() + dt.timedelta(minutes=30))
        report = account_dunning_run(account_id=held.account_id, now=timezone.now())
    assert report.charged == {busy: "in_flight", free: "succeeded"}


def test_the_dry_run_shows_one_charge_per_account_and_card_with_the_engines_key():
    with time_machine.travel(START, tick=False):
        ids = seed_past_due(accounts=1, invoices_per_account=3)
        busy_first, busy_second = seed_past_due(accounts=1, invoices_per_account=2, prefix="busy")
        held = Invoice.objects.select_related("account", "subscription__payment_method").get(pk=busy_first)
        in_flight = _in_flight_on(
            held, status="unknown", reconcile_after=timezone.now() + dt.timedelta(hours=1)
        )
        actions, counts = dunning_plan(now=timezone.now())
        out = StringIO()
        call_command("run_dunning", "--dry-run", "--no-progress", stdout=out)

        invoices = list(Invoice.objects.filter(pk__in=ids).order_by("pk"))
        charges = [a for a in actions if a.kind == "charge"]
        assert len(charges) == 1  # three invoices on one card: one charge, as the run makes it
        (charge,) = charges
        assert charge.target == ", ".join(i.number for i in invoices)
        key = dunning_key({i.pk: i.attempt_count + 1 for i in invoices})
        assert charge.detail.endswith(f"key {key}")
        assert "€54.00" in charge.detail
        (wait,) = [a for a in actions if a.kind == "wait"]
        assert wait.account_id == held.account_id
        assert wait.target == ", ".join(Invoice.objects.get(pk=pk).number for pk in (busy_first, busy_second))
        assert str(in_flight.pk) in wait.detail
        assert counts["charge"] == 1
        assert counts["wait"] == 1
        assert key in out.getvalue()

        # What the plan showed is what the run does: the same key, nothing charged on the busy card.
        report = account_dunning_run(account_id=invoices[0].account_id, now=timezone.now())
        assert set(report.charged.values()) == {"succeeded"}
        assert PaymentAttempt.objects.filter(idempotency_key=key).count() == 1
        busy_report = account_dunning_run(account_id=held.account_id, now=timezone.now())
        assert set(busy_report.charged.values()) == {"in_flight"}
    assert SimCharge.objects.count() == 1
