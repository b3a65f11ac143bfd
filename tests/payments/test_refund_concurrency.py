"""Refund races on PostgreSQL row locks: concurrent refunds of one payment never give back more than it
took, and a refund racing its own webhook counts once."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, connections

from gateway_sim.models import SimRefund
from payments.gateways.simulated import SimulatedGateway, refund_event
from payments.models import CreditNote, Refund
from payments.refunds import RefundError, payment_refund, refund_event_apply
from tests.payments.money_back import assert_ledger_consistent, settle
from tests.payments.scenario import build_contoso

CONCURRENT = 10


def _needs_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")


def _race(n: int, work) -> list[str]:
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait()
            result = work()
        except RefundError as exc:
            result = type(exc).__name__
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("share", [60, 15])
def test_concurrent_refunds_never_give_back_more_than_was_paid(share):
    _needs_postgres()
    contoso = build_contoso()
    attempt = settle(contoso)
    amount = attempt.amount_minor * share // 100

    def work() -> str:
        return payment_refund(
            attempt_id=attempt.pk,
            amount_minor=amount,
            reason="race",
            actor=None,
            idempotency_key=str(uuid.uuid4()),
        ).status

    outcomes = _race(CONCURRENT, work)
    print(f"\n{CONCURRENT} concurrent refunds of {share}%: {sorted(outcomes)}")
    assert set(outcomes) <= {"succeeded", "RefundError", "RefundInProgress"}, outcomes
    refunded = sum(
        Refund.objects.filter(status=Refund.Status.SUCCEEDED).values_list("amount_minor", flat=True)
    )
    at_bank = sum(SimRefund.objects.values_list("amount_minor", flat=True))
    assert refunded == at_bank
    assert 0 < refunded <= attempt.amount_minor
    assert outcomes.count("succeeded") == Refund.objects.count()
    assert sum(CreditNote.objects.values_list("amount_minor", flat=True)) == refunded
    assert_ledger_consistent(contoso.account.pk)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_refund_racing_its_own_webhook_counts_once(monkeypatch):
    """The gateway's webhook for our refund is applied in another thread while our call is still
    returning: one refund row, one set of credit notes, whoever takes the account lock first."""
    _needs_postgres()
    contoso = build_contoso()
    attempt = settle(contoso)
    original = SimulatedGateway.refund
    webhooks: list[threading.Thread] = []
    notes: list[str] = []

    def refund_and_notify(self, **kwargs):
        result = original(self, **kwargs)
        made = SimRefund.objects.get(reference=result.reference)

        def deliver() -> None:
            try:
                for _ in range(2):  # delivered, then redelivered
                    notes.append(refund_event_apply(event=refund_event(made)))
            finally:
                connections.close_all()

        thread = threading.Thread(target=deliver)
        thread.start()
        webhooks.append(thread)
        if len(webhooks) % 2 == 0:
            thread.join()  # every other time the webhook surely wins: it claims our pending row
        return result

    monkeypatch.setattr(SimulatedGateway, "refund", refund_and_notify)
    for i in range(3):
        done = payment_refund(
            attempt_id=attempt.pk, amount_minor=1000, reason="race", actor=None, idempotency_key=f"race-{i}"
        )
        for thread in webhooks:
            thread.join()
        done.refresh_from_db()
        assert done.status == Refund.Status.SUCCEEDED
    print(f"\nwebhook notes: {notes}")
    assert any("matched to our pending refund" in n for n in notes)
    assert Refund.objects.count() == 3
    assert SimRefund.objects.count() == 3
    assert CreditNote.objects.count() == 3
    assert sum(CreditNote.objects.values_list("amount_minor", flat=True)) == 3000
    assert_ledger_consistent(contoso.account.pk)
