import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from subscriptions.models import Invoice, Subscription
from subscriptions.services import (
    InvalidTransition,
    invoice_apply_payment,
    invoice_mark_past_due,
    subscription_cancel,
    subscription_disable,
    subscription_mark_past_due,
    subscription_restore,
)
from tests.factories import InvoiceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _past_due(now):
    invoice = InvoiceFactory()
    invoice_mark_past_due(invoice_id=invoice.pk, at=now)
    subscription_mark_past_due(subscription_id=invoice.subscription_id, at=now)
    return invoice, Subscription.objects.get(pk=invoice.subscription_id)


def test_a_failed_charge_starts_the_grace_period(settings):
    now = timezone.now()
    _, sub = _past_due(now)
    assert sub.status == Subscription.Status.PAST_DUE
    assert sub.past_due_since == now
    assert sub.grace_ends_at == now + settings.BILLING_GRACE_PERIOD
    assert AuditEvent.objects.filter(action="subscription.past_due", account=sub.account).count() == 1


def test_marking_past_due_twice_keeps_the_first_failure_date():
    now = timezone.now()
    _, sub = _past_due(now)
    later = subscription_mark_past_due(subscription_id=sub.pk, at=now + dt.timedelta(days=3))
    assert later.past_due_since == now


def test_paying_the_invoice_restores_the_subscription():
    now = timezone.now()
    invoice, sub = _past_due(now)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor, at=now)
    restored = subscription_restore(subscription_id=sub.pk, at=now)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.amount_due_minor == 0
    assert restored.status == Subscription.Status.ACTIVE
    assert restored.past_due_since is None
    assert restored.grace_ends_at is None


def test_restore_waits_while_another_invoice_is_past_due():
    now = timezone.now()
    invoice, sub = _past_due(now)
    other = InvoiceFactory(subscription=sub)
    invoice_mark_past_due(invoice_id=other.pk, at=now)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor, at=now)
    assert subscription_restore(subscription_id=sub.pk, at=now).status == Subscription.Status.PAST_DUE


def test_partial_payment_leaves_the_rest_due():
    now = timezone.now()
    invoice = InvoiceFactory(subscription__unit_price_minor=1000)
    paid = invoice_apply_payment(invoice_id=invoice.pk, amount_minor=400, at=now)
    assert (paid.status, paid.amount_due_minor) == (Invoice.Status.OPEN, 600)


@pytest.mark.parametrize("amount", [0, -1, 1001])
def test_payment_outside_what_is_due_is_refused(amount):
    invoice = InvoiceFactory(subscription__unit_price_minor=1000)
    with pytest.raises(InvalidTransition):
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=amount, at=timezone.now())
    invoice.refresh_from_db()
    assert invoice.amount_due_minor == 1000


def test_a_paid_invoice_cannot_be_paid_again():
    now = timezone.now()
    invoice = InvoiceFactory()
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor, at=now)
    with pytest.raises(InvalidTransition):
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=1, at=now)


def test_disable_only_after_the_grace_period(settings):
    now = timezone.now()
    _, sub = _past_due(now)
    with pytest.raises(InvalidTransition):
        subscription_disable(subscription_id=sub.pk, at=now + dt.timedelta(days=29))
    disabled = subscription_disable(subscription_id=sub.pk, at=now + settings.BILLING_GRACE_PERIOD)
    assert disabled.status == Subscription.Status.DISABLED
    assert disabled.next_lifecycle_at == disabled.disabled_at + settings.BILLING_DISABLED_PERIOD


def test_disabled_subscription_reactivates_when_paid_but_cancelled_does_not():
    now = timezone.now()
    invoice, sub = _past_due(now)
    subscription_disable(subscription_id=sub.pk, at=now + dt.timedelta(days=30))
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor, at=now)
    assert subscription_restore(subscription_id=sub.pk, at=now).status == Subscription.Status.ACTIVE

    _, sub2 = _past_due(now)
    subscription_disable(subscription_id=sub2.pk, at=now + dt.timedelta(days=30))
    subscription_cancel(subscription_id=sub2.pk, at=now + dt.timedelta(days=120))
    with pytest.raises(InvalidTransition):
        subscription_restore(subscription_id=sub2.pk, at=now + dt.timedelta(days=121))


def test_active_subscription_cannot_be_cancelled_directly():
    sub = SubscriptionFactory()
    with pytest.raises(InvalidTransition):
        subscription_cancel(subscription_id=sub.pk, at=timezone.now())


def test_database_refuses_a_paid_invoice_with_money_still_due():
    invoice = InvoiceFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID, paid_at=timezone.now())


def test_database_refuses_a_past_due_subscription_without_its_date():
    sub = SubscriptionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(pk=sub.pk).update(status=Subscription.Status.PAST_DUE)


def test_restore_from_the_callers_read_is_one_update_and_defers_its_audit(django_assert_num_queries):
    now = timezone.now()
    invoice, sub = _past_due(now)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor, at=now)
    read = Subscription.objects.select_related("product", "account").get(pk=sub.pk)
    audits: list[AuditEvent] = []
    with django_assert_num_queries(1), transaction.atomic(savepoint=False):  # the conditional UPDATE only
        restored = subscription_restore(
            subscription_id=sub.pk, at=now, past_due_checked=True, read=read, audits=audits
        )
    assert restored.status == Subscription.Status.ACTIVE
    assert Subscription.objects.get(pk=sub.pk).status == Subscription.Status.ACTIVE
    assert [a.action for a in audits] == ["subscription.reactivated"]
    assert audits[0].pk is None  # the caller inserts it with its own


def test_restore_from_a_stale_read_locks_and_reads_the_row_instead():
    now = timezone.now()
    invoice, sub = _past_due(now)
    read = Subscription.objects.select_related("product", "account").get(pk=sub.pk)
    # Changed since the caller read it: disabled meanwhile. The conditional UPDATE matches nothing.
    assert sub.grace_ends_at is not None
    subscription_disable(subscription_id=sub.pk, at=sub.grace_ends_at + dt.timedelta(seconds=1))
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor, at=now)
    restored = subscription_restore(subscription_id=sub.pk, at=now, read=read)
    assert restored.status == Subscription.Status.ACTIVE
    event = AuditEvent.objects.get(action="subscription.reactivated", target_id=str(sub.pk))
    assert "(was disabled)" in event.message  # what the row said, not the stale read
