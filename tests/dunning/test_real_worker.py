"""Real Celery workers on Redis and PostgreSQL: a worker killed with SIGKILL mid-sweep and restarted
leaves every invoice charged exactly once; with the broker unreachable pages still answer and the
sweep catches up once it is back."""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from audit.models import AuditEvent
from billing_portal.celery import app
from dunning import services as dunning
from dunning.models import AccountSweep
from gateway_sim.models import SimCharge
from notifications.models import Notice
from payments import services as payments
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from tests.factories import MembershipFactory, UserFactory

from .helpers import seed_past_due
from .realworker import kill_worker, start_worker, stop_worker, use_broker, wait_for

pytestmark = [pytest.mark.celery_worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

STALE_SECONDS = 2
LEASE_SECONDS = 3


@pytest.fixture(autouse=True)
def _real_broker(settings, monkeypatch, tmp_path):
    if not (os.environ.get("REDIS_URL") and os.environ.get("DATABASE_URL")):
        pytest.skip(
            "needs REDIS_URL and DATABASE_URL: starts a real Celery worker against Redis and PostgreSQL"
        )
    if connection.vendor != "postgresql":
        pytest.skip("the worker process shares the test database, which needs PostgreSQL")
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # REDIS_URL's db is this branch's own
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    settings.DUNNING_ENQUEUE_LEASE = __import__("datetime").timedelta(seconds=LEASE_SECONDS)
    monkeypatch.setattr(
        dunning, "PENDING_STALE_AFTER", __import__("datetime").timedelta(seconds=STALE_SECONDS)
    )
    yield
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # nothing left unacked for the next user
    app.conf.task_always_eager = eager
    use_broker(app, settings.CELERY_BROKER_URL)


WORKER_ENV = {
    "TEST_PENDING_STALE_SECONDS": str(STALE_SECONDS),
    "DUNNING_ENQUEUE_LEASE_SECONDS": str(LEASE_SECONDS),
}


def paid_count(ids: list[int]) -> int:
    return Invoice.objects.filter(pk__in=ids, status=Invoice.Status.PAID).count()


def assert_each_invoice_charged_exactly_once(ids: list[int]) -> None:
    assert paid_count(ids) == len(ids)
    # At the simulated bank: one succeeded charge per account (its invoices due on one card are one
    # attempt), for exactly what was owed, and each charge is the one of a succeeded attempt.
    charges = SimCharge.objects.filter(idempotency_key__startswith="dunning:")
    accounts = Invoice.objects.filter(pk__in=ids).values("account_id").distinct().count()
    assert charges.filter(status=SimCharge.Status.SUCCEEDED).count() == accounts
    assert charges.exclude(status=SimCharge.Status.SUCCEEDED).count() == 0
    succeeded = PaymentAttempt.objects.filter(
        status=PaymentAttempt.Status.SUCCEEDED, idempotency_key__startswith="dunning:"
    )
    assert set(succeeded.values_list("idempotency_key", flat=True)) == set(
        charges.values_list("idempotency_key", flat=True)
    )
    total = Invoice.objects.filter(pk__in=ids).aggregate(t=Sum("total_minor"))["t"]
    assert charges.aggregate(t=Sum("amount_minor"))["t"] == total
    # In our ledger: each invoice paid by one succeeded attempt, nothing overpaid.
    per_invoice = (
        Invoice.objects.filter(pk__in=ids)
        .annotate(
            ok=Count("allocations", filter=Q(allocations__attempt__status=PaymentAttempt.Status.SUCCEEDED))
        )
        .values_list("ok", flat=True)
    )
    assert set(per_invoice) == {1}
    assert not AuditEvent.objects.filter(action="payment.overpaid").exists()


def test_worker_killed_mid_sweep_and_restarted_charges_every_invoice_exactly_once(tmp_path):
    ids = seed_past_due(accounts=100, invoices_per_account=3, prefix="kill")
    started = time.monotonic()
    worker = start_worker(concurrency=2, extra_env=WORKER_ENV, log=tmp_path / "worker1.log")
    try:
        result = dunning.dunning_sweep(now=timezone.now(), batch_size=40)
        assert (result.enqueued, result.batches) == (100, 3)
        # Kill once a quarter is paid. The wait only bounds a worker that never starts: on a loaded
        # 2-core machine (load 12) a cold worker needed 40 s to get there.
        assert wait_for(lambda: paid_count(ids) >= len(ids) // 4, timeout=90), (
            tmp_path / "worker1.log"
        ).read_text()[-3000:]
        kill_worker(worker)  # SIGKILL to the whole process group, mid-way
        killed_after = time.monotonic() - started
        killed_at = paid_count(ids)
        pending = PaymentAttempt.objects.filter(status=PaymentAttempt.Status.PENDING).count()
    finally:
        kill_worker(worker)
    assert killed_at < len(ids), "the sweep finished before the kill; nothing was tested"
    worker = start_worker(concurrency=2, extra_env=WORKER_ENV, log=tmp_path / "worker2.log")
    try:
        # Beat would start a sweep every minute; here every second, with leases of a few seconds.
        done = wait_for(
            lambda: paid_count(ids) == len(ids),
            timeout=45,
            interval=1.0,
            tick=lambda: dunning.dunning_sweep(now=timezone.now()),
        )
    finally:
        stop_worker(worker)
    elapsed = time.monotonic() - started
    print(
        f"\n{len(ids)} invoices; killed after {killed_after:.1f}s with {killed_at} paid and {pending} attempt(s) in flight; "
        f"all paid after {elapsed:.1f}s; {SimCharge.objects.count()} bank charges"
    )
    assert done, (tmp_path / "worker2.log").read_text()[-3000:]
    assert_each_invoice_charged_exactly_once(ids)


def test_with_the_broker_down_pages_answer_and_the_sweep_catches_up(settings, monkeypatch, tmp_path):
    ids = seed_past_due(accounts=20, invoices_per_account=2, prefix="down")
    account_id = Invoice.objects.get(pk=ids[0]).account_id
    user = UserFactory()
    MembershipFactory(account_id=account_id, user=user, role=Role.OWNER)
    client = Client()
    client.force_login(user)

    use_broker(app, "redis://127.0.0.1:1/0")  # nothing listens there: the broker is "down"
    t0 = time.monotonic()
    result = dunning.dunning_sweep(now=timezone.now())
    assert result.due == 20
    assert not AccountSweep.objects.exclude(enqueued_at=None).exists()  # leases given back; work stays due
    sub_id = Invoice.objects.get(pk=ids[0]).subscription_id
    assert client.get(f"/a/{account_id}/products/{sub_id}/timeline/").status_code == 200
    assert client.get(f"/a/{account_id}/billing/notifications/sent/").status_code == 200
    # A payment made while the broker is down succeeds; its receipt waits in the database.
    from tests.payments.scenario import card

    good = card(account=Invoice.objects.get(pk=ids[0]).account, number="5555555555554444", owner=user)
    attempt = payments.invoice_pay(
        account_id=account_id,
        invoice_id=ids[0],
        payment_method_id=good.pk,
        actor=user,
        idempotency_key="down-1",
    )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    receipt = Notice.objects.get(account_id=account_id, kind="payment_received")
    assert receipt.status == Notice.Status.QUEUED
    assert time.monotonic() - t0 < 20, "an unreachable broker must not hang requests"

    use_broker(app, settings.CELERY_BROKER_URL)  # the broker is back
    monkeypatch.setattr(dunning, "NOTICE_REQUEUE_AFTER", __import__("datetime").timedelta(0))
    worker = start_worker(concurrency=2, extra_env=WORKER_ENV, log=tmp_path / "worker.log")
    try:
        done = wait_for(
            lambda: (
                paid_count(ids) == len(ids) and Notice.objects.filter(pk=receipt.pk, status="sent").exists()
            ),
            timeout=30,
            interval=1.0,
            tick=lambda: dunning.dunning_sweep(now=timezone.now()),
        )
    finally:
        stop_worker(worker)
    assert done, (tmp_path / "worker.log").read_text()[-3000:]
    assert_each_invoice_charged_exactly_once(ids[1:])
