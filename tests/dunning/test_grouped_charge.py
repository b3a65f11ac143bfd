"""All invoices due now on one card are charged as one attempt (like Settle balance), with exact per-invoice
idempotency: the key names each invoice and its attempt number, a rerun after a crash between phase 1 and
phase 3 looks the charge up by that key and never charges twice. Runs with real commits, on SQLite and on
PostgreSQL (DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from dunning import services as dunning
from dunning.models import InvoiceDunning
from dunning.services import account_dunning_run, attempt_numbers, dunning_key
from gateway_sim.models import SimCharge
from notifications.models import Notice
from payments import services as payment_services
from payments.gateways import simulated
from payments.models import PaymentAttempt
from subscriptions.models import Invoice, Subscription

from .helpers import INSUFFICIENT_FUNDS, seed_past_due

pytestmark = pytest.mark.django_db(transaction=True)

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


class Killed(BaseException):
    """The worker process died here (SIGKILL): nothing after this line of the charge runs."""


def _account(invoice_ids: list[int]) -> int:
    return Invoice.objects.get(pk=invoice_ids[0]).account_id


def test_the_key_names_each_invoice_and_its_attempt_number():
    assert dunning_key({7: 2}) == "dunning:7:2"  # one invoice: the key it always had
    assert dunning_key({9: 1, 7: 3}) == "dunning:7:3,9:1"
    assert attempt_numbers("dunning:7:3,9:1") == {7: 3, 9: 1}
    many = {pk: 4 for pk in range(1_000_000, 1_000_030)}
    key = dunning_key(many)
    assert len(key) <= (PaymentAttempt._meta.get_field("idempotency_key").max_length or 0)
    assert key.startswith("dunning:30invoices:")
    assert key == dunning_key(dict(many))  # the same set and numbers, the same key
    assert key != dunning_key({**many, 1_000_000: 5})  # another number, another key
    assert attempt_numbers(key) == {}


def test_three_due_invoices_on_one_card_are_one_charge_and_one_receipt():
    with time_machine.travel(START, tick=False):
        ids = seed_past_due(accounts=1, invoices_per_account=3)
        account_id = _account(ids)
        report = account_dunning_run(account_id=account_id, now=timezone.now())
        assert report.charged == dict.fromkeys(ids, "succeeded")
        (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
        assert attempt.idempotency_key == ",".join(f"{pk}:2" for pk in sorted(ids)).join(("dunning:", ""))
        assert attempt.amount_minor == 3 * 1800
        assert SimCharge.objects.filter(idempotency_key=attempt.idempotency_key).count() == 1
        invoices = Invoice.objects.filter(pk__in=ids)
        assert {(i.status, i.attempt_count, i.next_attempt_at) for i in invoices} == {("paid", 2, None)}
        sub = Subscription.objects.get(account_id=account_id)
        assert sub.status == Subscription.Status.ACTIVE
        assert (
            AuditEvent.objects.filter(account_id=account_id, action="subscription.reactivated").count() == 1
        )
        (receipt,) = Notice.objects.filter(account_id=account_id, kind="payment_received")
        assert sorted(receipt.context["invoices"].split(", ")) == sorted(i.number for i in invoices)
        # Run again: nothing is due, nothing is charged.
        assert account_dunning_run(account_id=account_id, now=timezone.now()).charged == {}
        assert SimCharge.objects.count() == 1


def test_a_grouped_decline_counts_once_and_schedules_each_invoice_by_its_own_failure():
    with time_machine.travel(START, tick=False):
        ids = seed_past_due(accounts=1, invoices_per_account=2, number=INSUFFICIENT_FUNDS)
        account_id = _account(ids)
        older, newer = ids
        # The older invoice first failed three days ago and was tried twice, the newer one yesterday, once.
        Invoice.objects.filter(pk=older).update(first_failed_at=START - dt.timedelta(days=3), attempt_count=2)
        report = account_dunning_run(account_id=account_id, now=timezone.now())
        assert report.charged == dict.fromkeys(ids, "failed")
        (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
        assert attempt.idempotency_key == f"dunning:{older}:3,{newer}:2"
        assert attempt.source == PaymentAttempt.Source.RETRY
        assert SimCharge.objects.count() == 1  # one decline against the card, not two
        first, second = Invoice.objects.filter(pk__in=ids).order_by("pk")
        assert (first.attempt_count, second.attempt_count) == (3, 2)
        assert first.first_failed_at == START - dt.timedelta(days=3)
        assert first.next_attempt_at is not None
        assert second.next_attempt_at is not None
        assert first.next_attempt_at > START
        assert second.next_attempt_at > START
        # Each invoice has its own plan and its own "why" on the timeline.
        assert (
            InvoiceDunning.objects.filter(invoice_id__in=ids, last_decline_code="insufficient_funds").count()
            == 2
        )
        # One mail for the card's decline, listing both invoices.
        (mail,) = Notice.objects.filter(account_id=account_id, kind="payment_failed")
        assert mail.dedupe_key == f"payment_failed:{attempt.pk}"
        assert len(mail.context["items"]) == 2


def test_only_invoices_due_now_join_the_group():
    with time_machine.travel(START, tick=False):
        ids = seed_past_due(accounts=1, invoices_per_account=3)
        account_id = _account(ids)
        later = START + dt.timedelta(days=2)
        Invoice.objects.filter(pk=ids[2]).update(next_attempt_at=later)
        report = account_dunning_run(account_id=account_id, now=timezone.now())
        assert report.charged == dict.fromkeys(ids[:2], "succeeded")
        (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
        assert sorted(attempt.allocations.values_list("invoice_id", flat=True)) == ids[:2]
        waiting = Invoice.objects.get(pk=ids[2])
        assert (waiting.status, waiting.next_attempt_at, waiting.attempt_count) == ("past_due", later, 1)
        # Its subscription stays past due: one of its invoices still is.
        assert Subscription.objects.get(account_id=account_id).status == Subscription.Status.PAST_DUE
        assert not AuditEvent.objects.filter(action="subscription.reactivated").exists()


def _kill_after_the_bank_answered(**kwargs: Any) -> Any:
    real_charge(**kwargs)  # the bank charged the card...
    raise Killed  # ...and the worker died before phase 3


real_charge = payment_services._gateway_charge


@pytest.mark.parametrize("bank_charged", [True, False], ids=["bank-charged", "never-sent"])
def test_a_rerun_after_a_crash_between_phase_1_and_3_asks_with_the_same_key_and_charges_once(bank_charged):
    with time_machine.travel(START, tick=False) as traveller:
        ids = seed_past_due(accounts=1, invoices_per_account=3)
        account_id = _account(ids)
        crash = _kill_after_the_bank_answered if bank_charged else mock.Mock(side_effect=Killed)
        with mock.patch.object(payment_services, "_gateway_charge", crash), pytest.raises(Killed):
            account_dunning_run(account_id=account_id, now=timezone.now())
        (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
        key = attempt.idempotency_key
        assert attempt.status == PaymentAttempt.Status.PENDING
        assert attempt_numbers(key) == dict.fromkeys(ids, 2)
        assert SimCharge.objects.filter(idempotency_key=key).count() == int(bank_charged)
        # A rerun right away (another worker) charges nothing: the payment for these invoices is in flight.
        with mock.patch.object(payment_services, "_gateway_charge") as gateway:
            report = account_dunning_run(account_id=account_id, now=timezone.now())
        gateway.assert_not_called()
        assert set(report.charged.values()) <= {"in_flight"}
        # Once the attempt is stale, the next run looks the charge up at the bank by the same key.
        traveller.shift(max(payment_services.PENDING_STALE_AFTER, settings.DUNNING_ENQUEUE_LEASE))
        lookups: list[str] = []
        real_lookup = simulated.SimulatedGateway.lookup

        def lookup(self: Any, *, idempotency_key: str, reference: str = "") -> Any:
            lookups.append(idempotency_key)
            return real_lookup(self, idempotency_key=idempotency_key, reference=reference)

        with mock.patch.object(simulated.SimulatedGateway, "lookup", lookup):
            account_dunning_run(account_id=account_id, now=timezone.now())
        assert lookups == [key]
        assert Invoice.objects.filter(pk__in=ids, status=Invoice.Status.PAID).count() == 3
        succeeded = SimCharge.objects.filter(status=SimCharge.Status.SUCCEEDED)
        assert succeeded.count() == 1  # charged exactly once, whichever way the crash fell
        assert succeeded.get().amount_minor == 3 * 1800
        paid_by = PaymentAttempt.objects.get(status=PaymentAttempt.Status.SUCCEEDED)
        if bank_charged:
            assert paid_by.pk == attempt.pk  # the first attempt was applied, not charged again
        else:
            # It never reached the bank: released, and charged again with the next attempt numbers.
            assert PaymentAttempt.objects.get(pk=attempt.pk).status == PaymentAttempt.Status.CANCELED
            assert attempt_numbers(paid_by.idempotency_key) == dict.fromkeys(ids, 3)
        assert Notice.objects.filter(account_id=account_id, kind="payment_received").count() == 1
        assert not AuditEvent.objects.filter(action="payment.overpaid").exists()


def test_a_key_an_older_run_left_behind_answers_instead_of_a_second_charge():
    """Before attempt numbers moved on in phase 1, a run that died after its charge left the key used and
    the number not counted: the rerun finds the key and schedules by that attempt."""
    with time_machine.travel(START, tick=False):
        ids = seed_past_due(accounts=1, invoices_per_account=2, number=INSUFFICIENT_FUNDS)
        account_id = _account(ids)
        account_dunning_run(account_id=account_id, now=timezone.now())
        Invoice.objects.filter(pk__in=ids).update(attempt_count=1, next_attempt_at=timezone.now())
        report = account_dunning_run(account_id=account_id, now=timezone.now())
        assert report.charged == dict.fromkeys(ids, "failed")
        assert SimCharge.objects.count() == 1
        assert PaymentAttempt.objects.count() == 1
        assert set(Invoice.objects.filter(pk__in=ids).values_list("attempt_count", flat=True)) == {2}
        for invoice in Invoice.objects.filter(pk__in=ids):
            assert invoice.next_attempt_at is not None
            assert invoice.next_attempt_at > START


def test_the_retry_budget_decides_for_the_group_on_its_total():
    with time_machine.travel(START, tick=False):
        ids = seed_past_due(accounts=1, invoices_per_account=2)
        account_id = _account(ids)
        amounts: list[int] = []
        decide = dunning.CardHistory.decide

        def spy(self: Any, **kwargs: Any) -> Any:
            amounts.append(kwargs["amount_minor"])
            return decide(self, **kwargs)

        with mock.patch.object(dunning.CardHistory, "decide", spy):
            account_dunning_run(account_id=account_id, now=timezone.now())
        assert amounts == [2 * 1800]
