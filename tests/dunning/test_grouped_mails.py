"""One "payment failed" mail per card and event, listing its subscriptions; no disable date in the past."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import TestCase
from django.utils import timezone

from dunning.services import dunning_run_inline
from notifications.models import Notice
from payments.models import PaymentAttempt
from subscriptions.models import Product, Subscription
from tests.factories import ProductFactory, SubscriptionFactory

from .helpers import INSUFFICIENT_FUNDS, renewing_subscription

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def run_now() -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        dunning_run_inline(now=timezone.now())


def _three_on_one_card(language: str = "en"):
    r = renewing_subscription(number=INSUFFICIENT_FUNDS, language=language)
    for name in ("Exchange Online (Plan 1)", "Power BI Pro"):
        SubscriptionFactory(
            account=r.account,
            product=ProductFactory(name=name, billing_period=Product.Period.ANNUAL),
            quantity=1,
            unit_price_minor=1000,
            payment_method=r.method,
            current_period_start=r.sub.current_period_start,
            current_period_end=r.sub.current_period_end,
        )
    return r


def test_three_declines_on_one_card_send_one_mail_listing_them():
    with time_machine.travel(START, tick=False):
        r = _three_on_one_card()
        run_now()
        # The three renewals due on one card are one attempt: one decline counted against the card.
        (attempt,) = PaymentAttempt.objects.filter(account=r.account, status="failed")
        assert attempt.allocations.count() == 3
        notices = list(Notice.objects.filter(account=r.account, kind="payment_failed"))
        assert len(notices) == 1
        ctx = notices[0].context
        assert len(ctx["items"]) == 3
        assert "Power BI Pro" in ctx["product"]
        assert "Exchange Online (Plan 1)" in ctx["product"]
        assert notices[0].subject == "Payment failed for 3 subscriptions"
        # A second run of the same moment mails nothing again.
        run_now()
        assert Notice.objects.filter(account=r.account, kind="payment_failed").count() == 1


def test_dutch_mail_has_a_dutch_card_label_and_date():
    with time_machine.travel(START, tick=False):
        r = _three_on_one_card(language="nl")
        run_now()
        ctx = Notice.objects.get(account=r.account, kind="payment_failed").context
        assert ctx["method"].startswith("Visa eindigend op")
        assert ctx["retry_on"]
        assert ctx["retry_on"].split()[1] in {"dec", "jan"}
        assert "." not in ctx["retry_on"]  # not "Dec. 4, 2026"


def test_a_failure_after_the_grace_period_names_no_past_disable_date():
    with time_machine.travel(START, tick=False):
        r = renewing_subscription(number=INSUFFICIENT_FUNDS)
        run_now()
    # Support extended nothing; the grace period ended long ago but a retry still runs (e.g. a late one).
    Subscription.objects.filter(pk=r.sub.pk).update(grace_ends_at=START - dt.timedelta(days=1))
    with time_machine.travel(START + dt.timedelta(days=3, hours=1), tick=False):
        run_now()
    for notice in Notice.objects.filter(account=r.account, kind="payment_failed"):
        if notice.created_at > START + dt.timedelta(days=1):
            assert notice.context["disable_on"] == ""
