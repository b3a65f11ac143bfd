"""Twenty settle requests for the same balance at once make exactly one charge (PostgreSQL row locks)."""

import threading
import time
import uuid

import pytest
from django.db import connection, connections

from gateway_sim.models import SimCharge
from payments import services
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from tests.payments.scenario import build_contoso

CONCURRENT = 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_settles_charge_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")
    contoso = build_contoso()
    barrier = threading.Barrier(CONCURRENT)
    outcomes: list[str] = []
    lock = threading.Lock()

    def settle() -> None:
        try:
            barrier.wait()
            attempt = services.balance_settle(
                account_id=contoso.account.pk,
                failed_method_id=contoso.visa.pk,
                chosen_method_id=contoso.mastercard.pk,
                actor=contoso.admin,
                idempotency_key=str(uuid.uuid4()),
            )
            result = attempt.status
        except services.PaymentError as exc:
            result = type(exc).__name__
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=settle) for _ in range(CONCURRENT)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    print(f"\n{CONCURRENT} concurrent settles in {elapsed:.2f}s: {sorted(outcomes)}")
    assert len(outcomes) == CONCURRENT
    assert SimCharge.objects.count() == 1
    assert PaymentAttempt.objects.filter(status=PaymentAttempt.Status.SUCCEEDED).count() == 1
    assert PaymentAttempt.objects.count() == 1
    assert outcomes.count("succeeded") == 1
    assert set(outcomes) <= {"succeeded", "PaymentInProgress", "NothingToPay"}
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 4
