"""The recovery dashboard: server-drawn SVG charts with data tables, fixed query count."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from payments.models import PaymentAllocation, PaymentAttempt
from subscriptions.models import Invoice
from support.dashboard import declines_by_code, past_due_by_day, recovered_by_channel
from tests.factories import BillingAccountFactory, PaymentMethodFactory

from .conftest import past_due_subscription

pytestmark = pytest.mark.django_db


def paid_attempt(invoice: Invoice, source: str, key: str) -> PaymentAttempt:
    now = timezone.now()
    method = (
        None
        if source == PaymentAttempt.Source.BANK_TRANSFER
        else PaymentMethodFactory(account=invoice.account)
    )
    attempt = PaymentAttempt.objects.create(
        account=invoice.account,
        payment_method=method,
        amount_minor=invoice.total_minor,
        currency=invoice.currency,
        status=PaymentAttempt.Status.SUCCEEDED,
        source=source,
        idempotency_key=key,
        completed_at=now,
    )
    PaymentAllocation.objects.create(attempt=attempt, invoice=invoice, amount_minor=invoice.total_minor)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID, amount_due_minor=0, paid_at=now)
    return attempt


@pytest.fixture
def history(northwind):
    account, _sub, _invoice = northwind  # $1,250.00 past due for 45 days, no card
    eur = BillingAccountFactory(currency="EUR")
    _s, retried = past_due_subscription(eur, amount_minor=1000, days_ago=5, number="E-1")
    Invoice.objects.filter(pk=retried.pk).update(first_failed_at=timezone.now() - dt.timedelta(days=5))
    retried.refresh_from_db()
    paid_attempt(retried, PaymentAttempt.Source.RETRY, "r1")
    _s, settled = past_due_subscription(eur, amount_minor=2500, days_ago=4, number="E-2")
    Invoice.objects.filter(pk=settled.pk).update(first_failed_at=timezone.now() - dt.timedelta(days=4))
    settled.refresh_from_db()
    paid_attempt(settled, PaymentAttempt.Source.SETTLE, "s1")
    card = PaymentMethodFactory(account=eur)
    for i, code in enumerate(["card_declined", "card_declined", "expired_card"]):
        PaymentAttempt.objects.create(
            account=eur,
            payment_method=card,
            amount_minor=100,
            currency="EUR",
            status=PaymentAttempt.Status.FAILED,
            source=PaymentAttempt.Source.RENEWAL,
            decline_code=code,
            idempotency_key=f"f{i}",
        )
    return account, eur


def test_past_due_over_time_per_currency(history):
    today = timezone.localdate()
    days = [today - dt.timedelta(days=i) for i in (10, 1, 0)]
    series = past_due_by_day(days=days)
    assert series["USD"] == [125000, 125000, 125000]
    # Both EUR invoices were past due a day ago (the retry and the settle happened today)...
    assert series["EUR"][1] == 3500
    # ...neither ten days ago, and both are paid now.
    assert series["EUR"][0] == 0
    assert series["EUR"][2] == 0


def test_recovered_by_channel(history):
    since = timezone.now() - dt.timedelta(days=30)
    assert recovered_by_channel(since=since) == {"EUR": {"automatic": 1000, "customer": 2500}}


def test_bank_transfer_recovery_counts_for_support(history, support_user):
    from support.services import bank_transfer_record

    account, _eur = history
    bank_transfer_record(
        account_id=account.pk,
        amount="1250.00",
        currency="USD",
        received_on=timezone.localdate(),
        reference="INV-2026-300001",
        actor=support_user,
        reason="wire",
    )
    since = timezone.now() - dt.timedelta(days=30)
    assert recovered_by_channel(since=since)["USD"] == {"support": 125000}


def test_declines_per_code(history):
    since = timezone.now() - dt.timedelta(days=30)
    assert declines_by_code(since=since) == [("card_declined", 2), ("expired_card", 1)]


def test_dashboard_page_draws_accessible_svg_charts(support_client, history):
    from support.services import dashboard_snapshot_refresh

    dashboard_snapshot_refresh()  # the beat task's work; the page only reads it
    with CaptureQueriesContext(connection) as queries:
        response = support_client.get(reverse("support:dashboard"))
    body = response.content.decode()
    assert response.status_code == 200
    # Past due USD and EUR, recovered EUR, declines; recovered by attempt, by decline reason, money at
    # risk (USD), refused retries.
    assert body.count('<svg class="chart"') == 8
    assert "<title id=" in body
    assert "<desc id=" in body
    assert "<table" in body
    assert "card_declined" in body
    assert "€35.00" in body  # yesterday's EUR past-due total in the data table
    # CSP forbids inline styles; SVG presentation attributes are fine.
    assert not re.search(r"\sstyle=", body)
    assert len(queries) <= 11  # + invalid requests (1) + the chargeback tile (2)


def test_dashboard_query_count_does_not_grow(support_client, history):
    support_client.get(reverse("support:dashboard"))
    with CaptureQueriesContext(connection) as before:
        support_client.get(reverse("support:dashboard"))
    eur = BillingAccountFactory(currency="EUR")
    for i in range(40):
        _s, inv = past_due_subscription(eur, amount_minor=100, days_ago=3, number=f"G-{i}")
        paid_attempt(inv, PaymentAttempt.Source.PAY_NOW, f"g{i}")
    with CaptureQueriesContext(connection) as after:
        support_client.get(reverse("support:dashboard"))
    assert len(after) == len(before)


def test_recovery_analytics_figures(history):
    from dunning.models import InvoiceDunning, RetryRefusal
    from support.dashboard import dashboard_figures, recovery_analytics

    _account, eur = history
    for invoice in Invoice.objects.filter(account=eur):
        InvoiceDunning.objects.create(invoice=invoice, first_decline_code="insufficient_funds")
    Invoice.objects.filter(account=eur, number="E-1").update(attempt_count=3)
    RetryRefusal.objects.create(account=eur, source="retry", reason="mac_wait")
    RetryRefusal.objects.create(account=eur, source="support_retry", reason="never_retry", overridden=True)
    figures = dashboard_figures()
    assert figures["rates"]["EUR"] == {
        "failed": 2,
        "failed_minor": 3500,
        "recovered": 2,
        "recovered_minor": 3500,
    }
    assert sorted(figures["days_to_recover"]) == [4.0, 5.0]
    analytics = recovery_analytics(figures)
    assert analytics["median_days"] == "4.5"
    assert dict(analytics["attempt_rows"]) == {"Automatic retry 2": "1", "Customers settling or paying": "1"}
    assert analytics["code_rows"] == [("Not enough funds", 2, 2, "100 %")]
    usd = next(c for c in analytics["risk_charts"] if c["currency"] == "USD")
    assert dict(usd["rows"])["Subscription disabled"] == "$1,250.00"
    refused = {label: (n, over) for label, n, over in analytics["refused_rows"]}
    assert refused["Mastercard asked to wait before retrying"] == (1, 0)
    assert refused["Card may not be retried (Visa Category 1 or Mastercard advice 03/21)"] == (1, 1)


def test_page_reads_the_snapshot_and_never_recomputes(support_client, history):
    from unittest import mock

    from support.services import dashboard_snapshot_refresh

    dashboard_snapshot_refresh()
    with (
        mock.patch("support.dashboard.dashboard_figures", side_effect=AssertionError("scan")),
        CaptureQueriesContext(connection) as queries,
    ):
        response = support_client.get(reverse("support:dashboard"))
    assert response.status_code == 200
    assert not any("subscriptions_invoice" in q["sql"] for q in queries.captured_queries)
    body = response.content.decode()
    # Charts speak plain words; raw codes appear only in the code column of the declines table.
    charts = "".join(re.findall(r"<svg.*?</svg>", body, flags=re.S))
    assert "card_declined" not in charts
    assert "Declined: choose another card or contact the bank" in charts
    assert 'data-field="computed-at"' in body


def test_the_snapshot_task_is_on_the_beat_schedule(settings, history):
    from support.models import DashboardSnapshot
    from support.tasks import dashboard_snapshot

    entry = settings.CELERY_BEAT_SCHEDULE["support-dashboard-snapshot"]
    assert entry["task"] == "support.tasks.dashboard_snapshot"
    dashboard_snapshot.delay()
    snapshot = DashboardSnapshot.objects.get(key="recovery")
    assert snapshot.data["rates"]["EUR"]["recovered"] == 2
