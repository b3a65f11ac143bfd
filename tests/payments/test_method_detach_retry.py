"""A deleted card whose detach at the gateway failed is tried again (payments/detach.py) until the gateway
confirms it: with back-off, one gateway call per due try however many sweeps run, every try audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from gateway_sim.models import SimCard
from payments import services
from payments.detach import DETACH_LEASE, DETACH_RETRY_BACKOFF, detach_due, detach_retry
from payments.gateways.base import GatewayError
from payments.gateways.simulated import SimulatedGateway
from payments.models import PaymentMethod
from payments.tasks import methods_detach_due
from support.selectors import audit_action_label
from tests.payments.scenario import card

pytestmark = pytest.mark.django_db


class FlakyDetach:
    """The simulated gateway's detach, failing with `error` while `failing` is set; counts the calls."""

    def __init__(self, monkeypatch, error: Exception) -> None:
        self.calls = 0
        self.failing = True
        self.error = error
        real = SimulatedGateway.detach

        def detach(gateway, *, token: str) -> None:
            self.calls += 1
            if self.failing:
                raise self.error
            real(gateway, token=token)

        monkeypatch.setattr(SimulatedGateway, "detach", detach)


def _deleted_while_gateway_down(contoso, monkeypatch, error: Exception | None = None):
    spare = card(account=contoso.account, number="4242424242424242", owner=contoso.admin)
    flaky = FlakyDetach(monkeypatch, error or GatewayError("simulated: bank unreachable", permanent=False))
    services.payment_method_remove(account_id=contoso.account.pk, method_id=spare.pk, actor=contoso.admin)
    spare.refresh_from_db()
    assert spare.is_removed
    assert spare.gateway_detached_at is None
    assert flaky.calls == 1
    return spare, flaky


def _sim_forgotten(method: PaymentMethod) -> bool:
    return SimCard.objects.get(token=method.gateway_token).forgotten_at is not None


def test_a_failed_detach_is_retried_with_backoff_until_the_gateway_confirms(contoso, monkeypatch):
    spare, flaky = _deleted_while_gateway_down(contoso, monkeypatch)
    removed_at = spare.removed_at
    # Not before the delete's own try has had its time.
    assert detach_retry(method_id=spare.pk, now=removed_at + dt.timedelta(minutes=1)) is None
    assert flaky.calls == 1

    first = removed_at + dt.timedelta(minutes=6)
    assert detach_retry(method_id=spare.pk, now=first) is False
    spare.refresh_from_db()
    assert spare.gateway_detach_attempts == 1
    assert spare.gateway_detach_next_at == first + DETACH_RETRY_BACKOFF[0]
    assert "bank unreachable" in spare.gateway_detach_last_error
    failed = AuditEvent.objects.get(action="payment_method.gateway_detach_failed")
    assert failed.account_id == contoso.account.pk
    assert failed.data["attempts"] == 1
    assert "next try" in failed.message

    # A second sweep at the same moment (or a redelivered task) does not call the gateway again.
    assert detach_retry(method_id=spare.pk, now=first) is None
    assert flaky.calls == 2

    second = spare.gateway_detach_next_at
    assert detach_retry(method_id=spare.pk, now=second) is False
    spare.refresh_from_db()
    assert spare.gateway_detach_next_at == second + DETACH_RETRY_BACKOFF[1]

    flaky.failing = False  # the gateway is back
    assert detach_retry(method_id=spare.pk, now=spare.gateway_detach_next_at) is True
    spare.refresh_from_db()
    assert spare.gateway_detached_at is not None
    assert spare.gateway_detach_next_at is None
    assert spare.gateway_detach_attempts == 3
    assert _sim_forgotten(spare)
    assert AuditEvent.objects.filter(action="payment_method.gateway_detached").count() == 1
    # Done is done: later sweeps neither select it nor call the gateway.
    later = timezone.now() + dt.timedelta(days=30)
    assert not detach_due(now=later).filter(pk=spare.pk).exists()
    assert detach_retry(method_id=spare.pk, now=later) is None
    assert flaky.calls == 4
    # Still removed and never charged: the retry changes only what the gateway holds.
    assert PaymentMethod.objects.get(pk=spare.pk).status == PaymentMethod.Status.DETACHED


def test_the_backoff_grows_and_then_stays_daily_while_the_gateway_refuses(contoso, monkeypatch):
    spare, _flaky = _deleted_while_gateway_down(contoso, monkeypatch)
    now = spare.removed_at + dt.timedelta(minutes=6)
    waits = []
    for _ in range(len(DETACH_RETRY_BACKOFF) + 2):
        assert detach_retry(method_id=spare.pk, now=now) is False
        spare.refresh_from_db()
        waits.append(spare.gateway_detach_next_at - now)
        now = spare.gateway_detach_next_at
    assert waits == [*DETACH_RETRY_BACKOFF, DETACH_RETRY_BACKOFF[-1], DETACH_RETRY_BACKOFF[-1]]
    assert AuditEvent.objects.filter(action="payment_method.gateway_detach_failed").count() == len(waits)


def test_an_adapter_crash_is_retried_like_a_timeout(contoso, monkeypatch):
    spare, _flaky = _deleted_while_gateway_down(contoso, monkeypatch, ConnectionResetError("peer reset"))
    assert detach_retry(method_id=spare.pk, now=spare.removed_at + dt.timedelta(minutes=6)) is False
    spare.refresh_from_db()
    assert "ConnectionResetError" in spare.gateway_detach_last_error
    assert spare.gateway_detached_at is None


def test_a_card_the_gateway_no_longer_knows_counts_as_detached(contoso, monkeypatch):
    # The delete's own try fails as a time-out; the retry is refused as "no such card": nothing left there.
    spare, flaky = _deleted_while_gateway_down(contoso, monkeypatch)
    flaky.error = GatewayError("No such PaymentMethod", permanent=True)
    assert detach_retry(method_id=spare.pk, now=spare.removed_at + dt.timedelta(minutes=6)) is True
    spare.refresh_from_db()
    assert spare.gateway_detached_at is not None
    assert "no longer knew it" in AuditEvent.objects.get(action="payment_method.gateway_detached").message


def test_a_run_holding_the_lease_keeps_others_off_until_it_expires(contoso, monkeypatch):
    from payments.detach import _claim

    spare, flaky = _deleted_while_gateway_down(contoso, monkeypatch)
    now = spare.removed_at + dt.timedelta(minutes=6)
    assert _claim(method_id=spare.pk, now=now) is not None  # a run that died after taking the lease
    assert detach_retry(method_id=spare.pk, now=now + dt.timedelta(minutes=1)) is None
    assert flaky.calls == 1
    flaky.failing = False
    assert detach_retry(method_id=spare.pk, now=now + DETACH_LEASE) is True
    assert _sim_forgotten(PaymentMethod.objects.get(pk=spare.pk))


def test_the_sweep_task_hands_out_due_cards_and_a_second_sweep_does_nothing(contoso, monkeypatch):
    spare, flaky = _deleted_while_gateway_down(contoso, monkeypatch)
    done = card(account=contoso.account, number="4000056655665556", owner=contoso.admin)
    flaky.failing = False
    services.payment_method_remove(account_id=contoso.account.pk, method_id=done.pk, actor=contoso.admin)
    flaky.failing = True
    PaymentMethod.objects.filter(pk=spare.pk).update(removed_at=timezone.now() - dt.timedelta(minutes=10))
    calls = flaky.calls
    assert methods_detach_due() == 1  # only the pending one; the confirmed one is never picked again
    assert flaky.calls == calls + 1
    assert methods_detach_due() == 0  # backing off: a second sweep right away calls nothing
    assert flaky.calls == calls + 1


def test_support_reads_each_try_in_words():
    assert (
        audit_action_label("payment_method.gateway_detach_failed") != "Payment method gateway detach failed"
    )
    assert "detached" in audit_action_label("payment_method.gateway_detached")
