"""Retry scheduling, re-checks under the lock, notices once, policies from settings and the admin."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import TestCase
from django.utils import timezone

from accounts.models import Membership
from dunning.models import AccountSweep, RetryPolicy
from dunning.services import (
    account_dunning_run,
    dunning_sweep,
    invoice_after_attempt,
    next_retry_at,
    retry_policies,
)
from notifications.models import Notice
from payments.models import PaymentAttempt
from payments.services import invoice_pay
from subscriptions.models import Invoice
from tests.payments.scenario import card

from .helpers import INSUFFICIENT_FUNDS, SUCCEEDS, bank_charges, renewal_invoice, renewing_subscription

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def test_next_retry_is_the_first_scheduled_day_after_now_counted_from_the_first_failure():
    first = START
    assert next_retry_at(first_failed_at=first, days=[1, 3, 5, 7], now=first) == first + dt.timedelta(days=1)
    assert next_retry_at(first_failed_at=first, days=[1, 3, 5, 7], now=first + dt.timedelta(days=2)) == (
        first + dt.timedelta(days=3)
    )
    # A worker that was down for days continues with the next retry, not a burst of missed ones.
    assert next_retry_at(first_failed_at=first, days=[1, 3, 5, 7], now=first + dt.timedelta(days=6)) == (
        first + dt.timedelta(days=7)
    )
    assert next_retry_at(first_failed_at=first, days=[1, 3, 5, 7], now=first + dt.timedelta(days=7)) is None


def test_policies_come_from_settings_and_an_admin_edit_changes_the_schedule(settings):
    assert RetryPolicy.objects.count() == 4  # created by a data migration, for the admin
    RetryPolicy.objects.all().delete()  # a missing row comes back with the settings' defaults
    settings.DUNNING_SOFT_RETRY_DAYS = [2, 4]
    policies = retry_policies()
    assert policies["soft"].days == [2, 4]
    assert policies["hard"].days == []
    assert policies["authentication_required"].retries_off_session is False
    RetryPolicy.objects.filter(category="soft").update(retry_days=[1, 10])
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        assert renewal_invoice(r.sub).next_attempt_at == START + dt.timedelta(days=1)
        RetryPolicy.objects.filter(category="soft").update(retries_off_session=False)
        with time_machine.travel(START + dt.timedelta(days=1), tick=False):
            account_dunning_run(account_id=r.account.pk, now=timezone.now())
        assert renewal_invoice(r.sub).next_attempt_at is None


def test_policy_days_are_validated():
    policy = RetryPolicy(category="soft", retry_days=[3, 1])
    with pytest.raises(ValidationError):
        policy.full_clean(validate_unique=False, validate_constraints=False)
    policy.retry_days = [1, 3, 5, 7]
    policy.full_clean(validate_unique=False, validate_constraints=False)


def test_a_retry_rechecks_under_the_lock_and_charges_nothing_once_the_customer_paid():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        invoice = renewal_invoice(r.sub)
        traveller.shift(dt.timedelta(days=1))
        # The sweep hands the account to a worker, but the message waits in the queue...
        with TestCase.captureOnCommitCallbacks(execute=False) as callbacks:
            result = dunning_sweep(now=timezone.now())
        assert result.enqueued == 1
        # ...while the customer pays with another card.
        owner = Membership.objects.get(account=r.account, role="owner").user
        good = card(account=r.account, number=SUCCEEDS, owner=owner)
        invoice_pay(
            account_id=r.account.pk,
            invoice_id=invoice.pk,
            payment_method_id=good.pk,
            actor=owner,
            idempotency_key="k",
        )
        for callback in callbacks:
            callback()  # the worker finally runs it (eagerly here)
        assert len(bank_charges(r.method)) == 1  # only the first, failed renewal charge
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        assert invoice.next_attempt_at is None


def test_the_sweep_hands_an_account_out_once_per_lease(settings):
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=SUCCEEDS)
        with TestCase.captureOnCommitCallbacks(execute=False) as first:
            assert dunning_sweep(now=timezone.now()).enqueued == 1
        assert len(first) == 1
        with TestCase.captureOnCommitCallbacks(execute=False):
            again = dunning_sweep(now=timezone.now())
        assert (again.enqueued, again.leased) == (0, 1)
        # The worker died: after the lease the next sweep hands it out again.
        traveller.shift(settings.DUNNING_ENQUEUE_LEASE + dt.timedelta(seconds=1))
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert dunning_sweep(now=timezone.now()).enqueued == 1
        assert renewal_invoice(r.sub).status == Invoice.Status.PAID
        assert AccountSweep.objects.get(account=r.account).enqueued_at is None


def test_the_sweep_batches_accounts():
    with time_machine.travel(START, tick=False):
        for _ in range(5):
            renewing_subscription(number=SUCCEEDS)
        with TestCase.captureOnCommitCallbacks(execute=False) as callbacks:
            result = dunning_sweep(now=timezone.now(), batch_size=2)
        assert (result.enqueued, result.batches, len(callbacks)) == (5, 3, 3)


def test_a_failure_is_notified_once_however_often_it_is_scheduled():
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        attempt = PaymentAttempt.objects.get(account=r.account)
        invoice = renewal_invoice(r.sub)
        for _ in range(3):
            invoice_after_attempt(invoice_id=invoice.pk, attempt_id=attempt.pk, now=timezone.now())
            account_dunning_run(account_id=r.account.pk, now=timezone.now())
        assert Notice.objects.filter(account=r.account, kind="payment_failed").count() == 1
        assert len(bank_charges(r.method)) == 1


def test_a_repeated_task_reuses_the_attempt_key_instead_of_charging_again():
    """A worker that died after the charge but before recording it: the rerun asks with the same key."""
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        invoice = renewal_invoice(r.sub)
        # Roll the invoice's own bookkeeping back as if the process died before invoice_after_attempt.
        Invoice.objects.filter(pk=invoice.pk).update(attempt_count=0, next_attempt_at=timezone.now())
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        assert len(bank_charges(r.method)) == 1
        invoice.refresh_from_db()
        assert invoice.attempt_count == 1
        assert invoice.next_attempt_at == START + dt.timedelta(days=1)


def test_dutch_account_gets_dutch_mail():
    from django.core import mail

    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS, language="nl")
        with TestCase.captureOnCommitCallbacks(execute=True):
            account_dunning_run(account_id=r.account.pk, now=timezone.now())
        notice = Notice.objects.get(account=r.account)
        assert notice.language == "nl"
        assert notice.subject.startswith("Betaling mislukt")
        message = mail.outbox[-1]
        assert message.to == [r.account.notification_email]
        assert "Saldo vereffenen" in message.body
        assert "Saldo vereffenen" in message.alternatives[0][0]


def test_final_warning_is_sent_even_when_the_wake_up_was_set_to_the_end_of_grace():
    """Seed data and support's "extend grace" set next_lifecycle_at to the end of the grace period."""
    from dunning.services import dunning_run_inline
    from subscriptions.models import Subscription

    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        sub = Subscription.objects.get(pk=r.sub.pk)
        assert sub.grace_ends_at is not None
        Subscription.objects.filter(pk=sub.pk).update(next_lifecycle_at=sub.grace_ends_at)
        while timezone.now() < sub.grace_ends_at + dt.timedelta(hours=1):
            dunning_run_inline(now=timezone.now())
            traveller.shift(dt.timedelta(hours=6))
        warning = Notice.objects.get(account=r.account, kind="final_warning")
        assert sub.grace_ends_at - warning.created_at <= dt.timedelta(days=3)
        assert sub.grace_ends_at - warning.created_at > dt.timedelta(days=2)
        assert Subscription.objects.get(pk=sub.pk).status == Subscription.Status.DISABLED


def test_an_open_card_invoice_past_its_due_date_is_charged_off_session():
    from tests.factories import InvoiceFactory

    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=SUCCEEDS)
        from subscriptions.models import Subscription

        Subscription.objects.filter(pk=r.sub.pk).update(current_period_end=timezone.localdate())
        invoice = InvoiceFactory(
            subscription=r.sub,
            issued_on=timezone.localdate() - dt.timedelta(days=12),
            due_on=timezone.localdate() - dt.timedelta(days=2),
        )
        account_dunning_run(account_id=r.account.pk, now=timezone.now())
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        assert len(bank_charges(r.method)) == 1


def test_admins_edit_retry_policies_in_the_django_admin(client):
    from tests.factories import UserFactory

    root = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(root)
    policy = RetryPolicy.objects.get(category="soft")
    assert client.get("/django-admin/dunning/retrypolicy/").status_code == 200
    response = client.post(
        f"/django-admin/dunning/retrypolicy/{policy.pk}/change/",
        {"category": "soft", "retry_days": "[2, 4, 6]", "retries_off_session": "on"},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.retry_days == [2, 4, 6]
    response = client.post(
        f"/django-admin/dunning/retrypolicy/{policy.pk}/change/",
        {"category": "soft", "retry_days": "[6, 2]", "retries_off_session": "on"},
    )
    assert response.status_code == 200  # refused with the validation message
    policy.refresh_from_db()
    assert policy.retry_days == [2, 4, 6]


def test_a_charge_that_cannot_start_stops_retries_and_says_why_in_the_audit_trail():
    """Not a decline: the card was removed from our records, so there is nothing to retry with."""
    from audit.models import AuditEvent
    from dunning.services import account_dunning_run, renewals_invoice_due
    from payments.models import PaymentMethod
    from tests.dunning.helpers import SUCCEEDS, renewal_invoice, renewing_subscription

    r = renewing_subscription(number=SUCCEEDS)
    now = timezone.now()
    renewals_invoice_due(now=now, account_id=r.account.pk)  # invoiced and due for its charge
    PaymentMethod.objects.filter(pk=r.method.pk).update(status=PaymentMethod.Status.DETACHED)
    account_dunning_run(account_id=r.account.pk, now=now)
    invoice = renewal_invoice(r.sub)
    assert invoice.next_attempt_at is None
    assert invoice.status in ("open", "past_due")
    event = AuditEvent.objects.get(account=r.account, action="dunning.stopped")
    assert invoice.number in event.message
