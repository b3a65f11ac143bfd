"""Azure's lifecycle: a Warned stage N days before disabling, payment back to active with a renewal date that is
never in the past, and Reactivate subscription for a cancelled one (pay first, in Settle balance)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from billing.selectors import account_overview
from payments.models import PaymentAttempt
from payments.selectors import past_due_summary
from payments.services import balance_settle, invoice_pay
from subscriptions.models import Invoice, Product, Subscription
from subscriptions.services import NothingToReactivate, subscription_request_reactivation
from tests.payments.scenario import card

from .helpers import INSUFFICIENT_FUNDS, SUCCEEDS, renewal_invoice, renewing_subscription
from .test_lifecycle import START, kinds, walk

pytestmark = pytest.mark.django_db

BANNER = "This subscription will be disabled for non-payment. Settle outstanding charges."


def _owner(account):
    return Membership.objects.get(account=account, role="owner").user


def test_warned_starts_n_days_before_disabling_with_the_final_warning_mail(settings):
    settings.DUNNING_FINAL_WARNING_DAYS = 5
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        walk(traveller, days=24)
        assert Subscription.objects.get(pk=r.sub.pk).status == Subscription.Status.PAST_DUE
        assert "final_warning" not in kinds(r.account)

        walk(traveller, days=1.5)
        sub = Subscription.objects.get(pk=r.sub.pk)
        assert sub.status == Subscription.Status.WARNED
        assert kinds(r.account).count("final_warning") == 1
        warning = next(m for m in mail.outbox if "will be disabled" in m.subject)
        assert BANNER in warning.body
        # Still owed, so still counted as past due everywhere.
        assert past_due_summary(account=r.account).total.amount_minor == 2500
        overview = account_overview(account=r.account)
        assert overview.unpaid_count == 1
        assert [s.pk for s in overview.warned] == [sub.pk]

        walk(traveller, days=5)
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.DISABLED
        assert kinds(r.account).count("final_warning") == 1  # the mail went once


def test_paying_a_warned_subscription_makes_it_active_again():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        walk(traveller, days=28)
        assert Subscription.objects.get(pk=r.sub.pk).status == Subscription.Status.WARNED
        owner = _owner(r.account)
        good = card(account=r.account, number=SUCCEEDS, owner=owner)
        attempt = balance_settle(
            account_id=r.account.pk,
            failed_method_id=r.method.pk,
            chosen_method_id=good.pk,
            actor=owner,
            idempotency_key="settle-warned",
        )
        assert attempt.status == PaymentAttempt.Status.SUCCEEDED
        sub = Subscription.objects.get(pk=r.sub.pk)
        assert sub.status == Subscription.Status.ACTIVE
        assert sub.next_lifecycle_at is None
        walk(traveller, days=10, step=dt.timedelta(days=1))
        assert Subscription.objects.get(pk=r.sub.pk).status == Subscription.Status.ACTIVE
        assert "disabled" not in kinds(r.account)


def test_a_subscription_reactivated_by_a_payment_renews_in_the_future_never_in_the_past():
    with time_machine.travel(START, tick=False) as traveller:
        r = renewing_subscription(number=INSUFFICIENT_FUNDS, period=Product.Period.MONTHLY)
        walk(traveller, days=45)
        sub = Subscription.objects.get(pk=r.sub.pk)
        assert sub.status == Subscription.Status.DISABLED
        today = timezone.localdate()
        assert sub.current_period_end < today  # not renewed while disabled: its renewal date is behind us
        owner = _owner(r.account)
        good = card(account=r.account, number=SUCCEEDS, owner=owner)
        invoice_pay(
            account_id=r.account.pk,
            invoice_id=renewal_invoice(r.sub).pk,
            payment_method_id=good.pk,
            actor=owner,
            idempotency_key="pay-late",
        )
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.ACTIVE
        assert sub.current_period_start == today
        assert sub.renews_on is not None
        assert sub.renews_on > today
        # No catch-up invoices for the disabled months on the next sweep.
        walk(traveller, days=1)
        assert Invoice.objects.filter(subscription=sub).count() == 1


def _cancelled(traveller):
    r = renewing_subscription(number=INSUFFICIENT_FUNDS, period=Product.Period.MONTHLY)
    walk(traveller, days=125, step=dt.timedelta(hours=12))
    sub = Subscription.objects.get(pk=r.sub.pk)
    assert sub.status == Subscription.Status.CANCELLED
    return r, sub


def test_paying_a_cancelled_subscription_without_asking_to_reactivate_leaves_it_cancelled():
    with time_machine.travel(START, tick=False) as traveller:
        r, sub = _cancelled(traveller)
        owner = _owner(r.account)
        good = card(account=r.account, number=SUCCEEDS, owner=owner)
        invoice_pay(
            account_id=r.account.pk,
            invoice_id=renewal_invoice(r.sub).pk,
            payment_method_id=good.pk,
            actor=owner,
            idempotency_key="pay-cancelled",
        )
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.CANCELLED


def test_reactivate_pays_what_is_due_in_settle_balance_then_the_subscription_is_active(client):
    with time_machine.travel(START, tick=False) as traveller:
        r, sub = _cancelled(traveller)
        owner = _owner(r.account)
        client.force_login(owner)
        detail = reverse("subscriptions:subscription_detail", args=[r.account.pk, sub.pk])
        page = client.get(detail).content.decode()
        assert "Reactivate subscription" in page
        url = reverse("subscriptions:subscription_reactivate", args=[r.account.pk, sub.pk])
        assert "€25.00" in client.get(url).content.decode()

        response = client.post(url)
        assert response.status_code == 302
        assert response["Location"] == reverse("payments:settle", args=[r.account.pk, r.method.pk])
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.CANCELLED  # nothing paid yet
        assert sub.reactivation_requested_at is not None
        # Asking twice is asking once.
        assert client.post(url).status_code == 302

        good = card(account=r.account, number=SUCCEEDS, owner=owner)
        attempt = balance_settle(
            account_id=r.account.pk,
            failed_method_id=r.method.pk,
            chosen_method_id=good.pk,
            actor=owner,
            idempotency_key="settle-reactivate",
        )
        assert attempt.status == PaymentAttempt.Status.SUCCEEDED
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.ACTIVE
        assert sub.cancelled_at is None
        assert sub.reactivation_requested_at is None
        assert sub.renews_on is not None
        assert sub.renews_on > timezone.localdate()
        walk(traveller, days=100, step=dt.timedelta(days=2))
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.ACTIVE  # the data deletion that was planned does not happen


def test_reactivate_with_nothing_due_is_immediate_and_outside_the_window_is_refused(client):
    with time_machine.travel(START, tick=False) as traveller:
        r, sub = _cancelled(traveller)
        Invoice.objects.filter(subscription=sub).update(
            status=Invoice.Status.VOID, amount_due_minor=0, next_attempt_at=None
        )
        client.force_login(_owner(r.account))
        url = reverse("subscriptions:subscription_reactivate", args=[r.account.pk, sub.pk])
        response = client.post(url, follow=True)
        assert "is active again" in response.content.decode()
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.ACTIVE

        r2, late = _cancelled(traveller)
        traveller.shift(dt.timedelta(days=91))
        with pytest.raises(NothingToReactivate):
            subscription_request_reactivation(subscription_id=late.pk, at=timezone.now())
        client.force_login(_owner(r2.account))
        url = reverse("subscriptions:subscription_reactivate", args=[r2.account.pk, late.pk])
        response = client.post(url)
        assert response.status_code == 200
        assert "can no longer be reactivated" in response.content.decode()
        late.refresh_from_db()
        assert late.status == Subscription.Status.CANCELLED
        assert late.reactivation_requested_at is None


def test_a_bank_transfer_renewal_mails_the_invoice_with_its_pdf(settings, tmp_path):
    from tests.factories import BillingAccountFactory, SubscriptionFactory

    from .test_lifecycle import run_now

    settings.INVOICE_PDF_CACHE_DIR = tmp_path
    with time_machine.travel(START, tick=False):
        account = BillingAccountFactory(
            payment_mode="bank_transfer",
            remittance_iban="NL91ABNA0417164300",
            invoice_email_attachments=True,
            language="nl",
        )
        today = timezone.localdate()
        sub = SubscriptionFactory(
            account=account,
            current_period_start=today - dt.timedelta(days=30),
            current_period_end=today - dt.timedelta(days=1),
        )
        run_now()
        run_now()  # a second sweep mails nothing new
        invoice = renewal_invoice(sub)
        assert kinds(account) == ["invoice_issued"]
        message = mail.outbox[-1]
        assert invoice.number in message.subject
        assert "NL91ABNA0417164300" in message.body
        assert "€\xa010,00" in message.body  # Dutch money, with its no-break space
        assert [a[0] for a in message.attachments] == [f"{invoice.number}.pdf"]
