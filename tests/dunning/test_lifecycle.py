"""Time travel through the whole dunning lifecycle, once per decline category (PRODUCT.md flows 7-8)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.test import TestCase
from django.utils import timezone

from dunning.selectors import subscription_dunning_timeline
from dunning.services import dunning_run_inline
from gateway_sim.models import SimCharge
from notifications.models import Notice
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription

from .helpers import (
    INSUFFICIENT_FUNDS,
    STOLEN,
    SUCCEEDS,
    THREE_D_SECURE,
    bank_charges,
    renewal_invoice,
    renewing_subscription,
)

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(hours=6)


def run_now() -> None:
    # Mails go out on commit; the test transaction never commits, so run those callbacks here.
    with TestCase.captureOnCommitCallbacks(execute=True):
        dunning_run_inline(now=timezone.now())


def walk(traveller, *, days: float, step: dt.timedelta = STEP) -> None:
    """Let time pass, running the sweep inline at every step, as beat + workers would."""
    end = timezone.now() + dt.timedelta(days=days)
    while timezone.now() < end:
        run_now()
        traveller.shift(step)
    run_now()


def kinds(account) -> list[str]:
    return list(Notice.objects.filter(account=account).order_by("pk").values_list("kind", flat=True))


def assert_unpaid_end_of_life(r, *, first_failure: dt.datetime) -> None:
    sub = Subscription.objects.get(pk=r.sub.pk)
    assert sub.status == Subscription.Status.DELETED
    assert sub.disabled_at is not None
    assert sub.disabled_at - first_failure < dt.timedelta(days=30, hours=7)
    assert sub.disabled_at - first_failure >= dt.timedelta(days=30)
    assert sub.cancelled_at is not None
    assert sub.cancelled_at - sub.disabled_at < dt.timedelta(days=90, hours=7)
    assert sub.data_deleted_at is not None
    assert sub.data_deleted_at - sub.cancelled_at >= dt.timedelta(days=90)
    method = PaymentMethod.objects.get(pk=r.method.pk)
    assert method.status == PaymentMethod.Status.DETACHED
    assert method.gateway_token != r.method.gateway_token  # the token is forgotten
    invoice = renewal_invoice(r.sub)  # invoices are kept
    assert invoice.status == Invoice.Status.PAST_DUE


def test_soft_decline_retries_on_days_1_3_5_7_then_disables_cancels_and_deletes():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        run_now()
        invoice = renewal_invoice(r.sub)
        assert invoice.status == Invoice.Status.PAST_DUE
        assert invoice.first_failed_at == START
        assert invoice.next_attempt_at == START + dt.timedelta(days=1)
        first = PaymentAttempt.objects.get(idempotency_key=f"dunning:{invoice.pk}:1")
        assert first.source == PaymentAttempt.Source.RENEWAL
        assert first.decline_code == "insufficient_funds"
        timeline = subscription_dunning_timeline(
            subscription=Subscription.objects.select_related("account", "product").get(pk=r.sub.pk)
        )
        assert timeline.next_retry_at == START + dt.timedelta(days=1)
        assert timeline.disable_at == START + dt.timedelta(days=30)
        assert timeline.cancel_at == START + dt.timedelta(days=120)
        assert timeline.delete_at == START + dt.timedelta(days=210)

        walk(traveller, days=8)
        attempts = PaymentAttempt.objects.filter(allocations__invoice=invoice).order_by("pk")
        assert [a.created_at - START for a in attempts] == [dt.timedelta(days=d) for d in (0, 1, 3, 5, 7)]
        assert [a.source for a in attempts][1:] == [PaymentAttempt.Source.RETRY] * 4
        assert len(bank_charges(r.method)) == 5
        invoice.refresh_from_db()
        assert invoice.attempt_count == 5
        assert invoice.next_attempt_at is None
        timeline = subscription_dunning_timeline(
            subscription=Subscription.objects.select_related("account", "product").get(pk=r.sub.pk)
        )
        assert timeline.next_retry_at is None
        assert "retries have been used" in timeline.no_retry_reason
        assert kinds(r.account) == ["payment_failed"] * 5

        walk(traveller, days=215, step=dt.timedelta(hours=12))
        assert kinds(r.account) == ["payment_failed"] * 5 + ["final_warning", "disabled", "cancelled"]
        warning = Notice.objects.get(account=r.account, kind="final_warning")
        assert dt.timedelta(days=27) <= warning.created_at - START < dt.timedelta(days=27, hours=13)
        assert len(bank_charges(r.method)) == 5  # nothing more was charged
        assert_unpaid_end_of_life(r, first_failure=START)


def test_hard_decline_is_never_retried_and_the_customer_is_told_to_act():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=STOLEN)
        walk(traveller, days=10)
        invoice = renewal_invoice(r.sub)
        assert len(bank_charges(r.method)) == 1
        assert invoice.next_attempt_at is None
        assert invoice.attempt_count == 1
        assert kinds(r.account) == ["payment_failed"]
        body = mail.outbox[0].body
        assert "Your bank declined this card" in body
        assert f"/a/{r.account.pk}/billing/settle/{r.method.pk}/" in body
        assert mail.outbox[0].alternatives[0][1] == "text/html"
        sub = Subscription.objects.select_related("account", "product").get(pk=r.sub.pk)
        assert "retrying cannot fix" in subscription_dunning_timeline(subscription=sub).no_retry_reason
        walk(traveller, days=205, step=dt.timedelta(hours=12))
        assert kinds(r.account) == ["payment_failed", "final_warning", "disabled", "cancelled"]
        assert len(bank_charges(r.method)) == 1
        assert_unpaid_end_of_life(r, first_failure=START)


def test_authentication_required_is_never_retried_off_session_and_mails_a_settle_link():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=THREE_D_SECURE)
        walk(traveller, days=10)
        invoice = renewal_invoice(r.sub)
        charges = bank_charges(r.method)
        assert [(c.off_session, c.decline_code) for c in charges] == [(True, "authentication_required")]
        assert invoice.next_attempt_at is None
        assert kinds(r.account) == ["authentication_required"]
        assert f"/a/{r.account.pk}/billing/settle/{r.method.pk}/" in mail.outbox[0].body
        sub = Subscription.objects.select_related("account", "product").get(pk=r.sub.pk)
        assert (
            "confirm the payment yourself" in subscription_dunning_timeline(subscription=sub).no_retry_reason
        )
        walk(traveller, days=205, step=dt.timedelta(hours=12))
        assert kinds(r.account) == ["authentication_required", "final_warning", "disabled", "cancelled"]
        assert len(bank_charges(r.method)) == 1
        assert_unpaid_end_of_life(r, first_failure=START)


def test_unknown_outcome_is_looked_up_not_charged_again(settings):
    """The bank took the charge but the answer was lost: reconciliation finds it; no second charge."""
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = [SUCCEEDS]
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=SUCCEEDS)
        run_now()
        invoice = renewal_invoice(r.sub)
        attempt = PaymentAttempt.objects.get(allocations__invoice=invoice)
        assert attempt.status == PaymentAttempt.Status.UNKNOWN
        assert invoice.status == Invoice.Status.OPEN
        assert invoice.next_attempt_at is not None
        assert invoice.next_attempt_at > START
        # Sweeps before the look-up is due charge nothing.
        traveller.shift(dt.timedelta(seconds=5))
        run_now()
        assert len(bank_charges(r.method)) == 1
        traveller.shift(dt.timedelta(seconds=15))
        run_now()
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        walk(traveller, days=3, step=dt.timedelta(hours=1))
        assert len(bank_charges(r.method)) == 1
        assert PaymentAttempt.objects.filter(allocations__invoice=invoice).count() == 1
        assert Subscription.objects.get(pk=r.sub.pk).status == Subscription.Status.ACTIVE
        assert kinds(r.account) == ["payment_received"]


def test_unknown_outcome_that_never_reached_the_bank_is_charged_again_once_known(settings):
    settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS = [SUCCEEDS]
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=SUCCEEDS)
        walk(traveller, days=0.5, step=dt.timedelta(seconds=30))
        invoice = renewal_invoice(r.sub)
        assert bank_charges(r.method) == []
        statuses = list(
            PaymentAttempt.objects.filter(allocations__invoice=invoice).values_list("status", flat=True)
        )
        # Each attempt was looked up (never arrived) before the next one; a backing-off handful, not hundreds.
        assert 2 <= len(statuses) <= 6
        assert statuses.count(PaymentAttempt.Status.UNKNOWN) <= 1
        settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS = []
        walk(traveller, days=2, step=dt.timedelta(hours=1))
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        assert [c.status for c in bank_charges(r.method)] == [SimCharge.Status.SUCCEEDED]


def test_unknown_outcome_that_stays_unknown_is_left_for_support(settings, monkeypatch):
    from payments.gateways.base import ChargeResult
    from payments.gateways.simulated import SimulatedGateway

    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = [SUCCEEDS]
    monkeypatch.setattr(SimulatedGateway, "lookup", lambda self, **kw: ChargeResult.unknown("still down"))
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=SUCCEEDS)
        walk(traveller, days=3, step=dt.timedelta(minutes=30))
        assert len(bank_charges(r.method)) == 1
        attempt = PaymentAttempt.objects.get(account=r.account)
        assert attempt.status == PaymentAttempt.Status.UNKNOWN
        assert attempt.reconcile_count >= 5
        sub = Subscription.objects.select_related("account", "product").get(pk=r.sub.pk)
        assert "support is looking into it" in subscription_dunning_timeline(subscription=sub).no_retry_reason


def test_payment_before_cancellation_reactivates_at_once_and_stops_the_lifecycle():
    from accounts.models import Membership
    from payments.services import invoice_pay
    from tests.payments.scenario import card

    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        walk(traveller, days=40)
        sub = Subscription.objects.get(pk=r.sub.pk)
        assert sub.status == Subscription.Status.DISABLED
        owner = Membership.objects.get(account=r.account, role="owner").user
        good = card(account=r.account, number=SUCCEEDS, owner=owner)
        invoice = renewal_invoice(r.sub)
        attempt = invoice_pay(
            account_id=r.account.pk,
            invoice_id=invoice.pk,
            payment_method_id=good.pk,
            actor=owner,
            idempotency_key="pay-1",
        )
        assert attempt.status == PaymentAttempt.Status.SUCCEEDED
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.ACTIVE
        assert sub.next_lifecycle_at is None
        walk(traveller, days=200, step=dt.timedelta(days=1))
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.ACTIVE
        assert "cancelled" not in kinds(r.account)


def test_bank_transfer_renewal_is_left_open_with_payment_terms_then_goes_past_due(settings):
    from tests.factories import BillingAccountFactory, ProductFactory, SubscriptionFactory

    with time_machine.travel(START, tick=False) as traveller:
        account = BillingAccountFactory(
            payment_mode="bank_transfer", remittance_iban="NL91ABNA0417164300", currency="USD"
        )
        today = timezone.localdate()
        sub = SubscriptionFactory(
            account=account,
            product=ProductFactory(),
            current_period_start=today - dt.timedelta(days=30),
            current_period_end=today - dt.timedelta(days=1),
        )
        run_now()
        invoice = renewal_invoice(sub)
        assert invoice.status == Invoice.Status.OPEN
        assert invoice.next_attempt_at is None
        assert invoice.due_on == today + dt.timedelta(days=settings.BILLING_PAYMENT_TERMS_DAYS)
        assert invoice.lines.get().amount_minor == invoice.total_minor
        sub.refresh_from_db()
        assert sub.current_period_start == today
        assert PaymentAttempt.objects.count() == 0
        walk(traveller, days=31, step=dt.timedelta(days=1))
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAST_DUE
        assert Subscription.objects.get(pk=sub.pk).status == Subscription.Status.PAST_DUE
        assert PaymentAttempt.objects.count() == 0


def test_renewal_is_invoiced_once_even_when_run_twice():
    from dunning.services import renewals_invoice_due

    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=SUCCEEDS, period="monthly", ended_days_ago=40)
        renewals_invoice_due(now=timezone.now())
        renewals_invoice_due(now=timezone.now())
        numbers = list(
            Invoice.objects.filter(subscription=r.sub)
            .order_by("period_start")
            .values_list("number", flat=True)
        )
        assert len(numbers) == 2 == len(set(numbers))  # two missed monthly periods, each invoiced once
        sub = Subscription.objects.get(pk=r.sub.pk)
        assert sub.current_period_end >= timezone.localdate()
