"""Two workers, a webhook and a customer racing for the same invoice: one charge (PostgreSQL row locks)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts.models import Membership
from dunning.services import account_dunning_run
from gateway_sim.models import SimCharge
from notifications.models import Notice
from payments import services as payments
from payments.gateways.base import ChargeOutcome, ChargeResult
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from tests.payments.scenario import card

from .helpers import SUCCEEDS, bank_charges, renewal_invoice, renewing_subscription, seed_past_due

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")


def race(*jobs: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)

    def run(i: int, job: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[i] = job()
        except Exception as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_eight_workers_on_the_same_account_charge_each_invoice_once():
    r = renewing_subscription(number=SUCCEEDS)
    now = timezone.now()
    results = race(*[lambda: account_dunning_run(account_id=r.account.pk, now=now)] * 8)
    assert not [x for x in results if isinstance(x, Exception)]
    invoice = renewal_invoice(r.sub)
    assert invoice.status == Invoice.Status.PAID
    assert len(bank_charges(r.method)) == 1
    assert PaymentAttempt.objects.filter(allocations__invoice=invoice).count() == 1
    assert Notice.objects.filter(kind="payment_received").count() == 1


def test_eight_workers_on_an_account_with_three_due_invoices_make_one_grouped_charge():
    ids = seed_past_due(accounts=1, invoices_per_account=3)
    account_id = Invoice.objects.get(pk=ids[0]).account_id
    now = timezone.now()
    results = race(*[lambda: account_dunning_run(account_id=account_id, now=now)] * 8)
    assert not [x for x in results if isinstance(x, Exception)]
    assert Invoice.objects.filter(pk__in=ids, status=Invoice.Status.PAID).count() == 3
    (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
    assert attempt.allocations.count() == 3
    assert SimCharge.objects.filter(idempotency_key=attempt.idempotency_key).count() == 1
    assert SimCharge.objects.count() == 1
    assert Notice.objects.filter(account_id=account_id, kind="payment_received").count() == 1


@pytest.mark.parametrize("rounds", [5])
def test_webhook_and_reconciling_job_racing_for_an_unknown_charge_pay_once(settings, rounds):
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = [SUCCEEDS]
    for _ in range(rounds):
        r = renewing_subscription(number=SUCCEEDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        attempt = PaymentAttempt.objects.get(account=r.account)
        assert attempt.status == PaymentAttempt.Status.UNKNOWN
        charge = bank_charges(r.method)[0]
        # Make the look-up due, then let the webhook and the job arrive together.
        PaymentAttempt.objects.filter(pk=attempt.pk).update(reconcile_after=timezone.now())
        Invoice.objects.filter(pk=renewal_invoice(r.sub).pk).update(next_attempt_at=timezone.now())
        webhook = ChargeResult(
            outcome=ChargeOutcome.SUCCEEDED, reference=charge.reference, amount_minor=charge.amount_minor
        )
        later = timezone.now() + dt.timedelta(seconds=1)
        results = race(
            lambda: payments.attempt_apply_result(attempt_id=attempt.pk, result=webhook),  # noqa: B023
            lambda: account_dunning_run(account_id=r.account.pk, now=later),  # noqa: B023
            lambda: account_dunning_run(account_id=r.account.pk, now=later),  # noqa: B023
        )
        assert not [x for x in results if isinstance(x, Exception)]
        invoice = renewal_invoice(r.sub)
        assert invoice.status == Invoice.Status.PAID
        assert invoice.amount_due_minor == 0
        assert len(bank_charges(r.method)) == 1
        assert PaymentAttempt.objects.filter(account=r.account).count() == 1
        assert Notice.objects.filter(account=r.account, kind="payment_received").count() == 1


def test_customer_paying_while_the_job_charges_takes_money_once():
    for _ in range(5):
        r = renewing_subscription(number=SUCCEEDS)
        owner = Membership.objects.get(account=r.account, role="owner").user
        other = card(account=r.account, number="5555555555554444", owner=owner)
        from dunning.services import renewals_invoice_due

        renewals_invoice_due(now=timezone.now(), account_id=r.account.pk)
        invoice = renewal_invoice(r.sub)
        results = race(
            lambda: account_dunning_run(account_id=r.account.pk, now=timezone.now()),  # noqa: B023
            lambda: payments.invoice_pay(
                account_id=r.account.pk,  # noqa: B023
                invoice_id=invoice.pk,  # noqa: B023
                payment_method_id=other.pk,  # noqa: B023
                actor=owner,  # noqa: B023
                idempotency_key=f"pay-{invoice.pk}",  # noqa: B023
            ),
        )
        assert not [
            x for x in results if isinstance(x, Exception) and not isinstance(x, payments.PaymentError)
        ]
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        succeeded = SimCharge.objects.filter(
            card__token__in=[r.method.gateway_token, other.gateway_token], status=SimCharge.Status.SUCCEEDED
        )
        assert succeeded.count() == 1
