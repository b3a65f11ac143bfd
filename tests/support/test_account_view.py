"""The account view: everything in one place, every look audited, query count flat."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import audit_record
from notifications.models import Notice
from payments.models import PaymentAllocation, PaymentAttempt
from support.models import SupportNote
from support.selectors import TIMELINE_PAGE_SIZE, support_timeline
from tests.factories import BillingAccountFactory, MembershipFactory, PaymentMethodFactory, UserFactory

from .conftest import past_due_subscription

pytestmark = pytest.mark.django_db


def card_account(subscriptions: int = 1, *, name: str = "Contoso Ltd", domain: str = "contoso.example"):
    account = BillingAccountFactory(name=name, domain=domain)
    MembershipFactory(account=account, user=UserFactory(email=f"admin@{domain}"))
    card = PaymentMethodFactory(account=account, last4="0341", gateway_token=f"tok_SECRET_{domain}")
    for i in range(subscriptions):
        sub, invoice = past_due_subscription(
            account, amount_minor=1170, days_ago=5, number=f"INV-{account.pk}-{i:05d}"
        )
        sub.payment_method = card
        sub.save(update_fields=["payment_method"])
        attempt = PaymentAttempt.objects.create(
            account=account,
            payment_method=card,
            amount_minor=1170,
            currency=account.currency,
            status=PaymentAttempt.Status.FAILED,
            source=PaymentAttempt.Source.RENEWAL,
            decline_code="insufficient_funds",
            idempotency_key=f"renewal-{account.pk}-{i}",
        )
        PaymentAllocation.objects.create(attempt=attempt, invoice=invoice, amount_minor=1170)
        Notice.objects.create(
            account=account,
            kind=Notice.Kind.PAYMENT_FAILED,
            recipient=account.notification_email,
            subject=f"Payment failed {i}",
            dedupe_key=f"pf-{account.pk}-{i}",
        )
        audit_record(account=account, action="subscription.past_due", message=f"past due {i}")
    return account, card


def test_account_view_shows_everything(support_client):
    account, _card = card_account()
    SupportNote.objects.create(account=account, body="Customer called about the Visa.")
    response = support_client.get(reverse("support:account", args=[account.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    for text in (
        "Contoso Ltd",
        account.notification_email,
        "Card",  # pays by
        "Past due",
        f"INV-{account.pk}-00000",
        "ending 0341",
        "12/2030",
        "insufficient_funds",
        "not enough funds",  # the decline in plain words
        "Payment failed 0",
        "Customer called about the Visa.",
        "admin@contoso.example",
        "Timeline",
    ):
        assert text in body, text


def test_account_view_never_shows_card_tokens(support_client):
    account, _card = card_account()
    body = support_client.get(reverse("support:account", args=[account.pk])).content.decode()
    assert "tok_SECRET" not in body


def test_every_opening_is_audited(support_client, support_user):
    account, _card = card_account()
    url = reverse("support:account", args=[account.pk])
    support_client.get(url)
    support_client.get(url + "?page=2")
    events = AuditEvent.objects.filter(action="support.account_viewed", account=account)
    assert events.count() == 2
    assert {e.actor for e in events} == {support_user}
    assert events.first().ip_address == "127.0.0.1"


def test_account_view_query_count_is_flat(support_client):
    small, _ = card_account(subscriptions=1)
    url_small = reverse("support:account", args=[small.pk])
    support_client.get(url_small)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as q_small:
        support_client.get(url_small)
    large = BillingAccountFactory(name="Large Co", domain="large.example")
    card = PaymentMethodFactory(account=large)
    for i in range(200):
        sub, invoice = past_due_subscription(large, amount_minor=100, days_ago=5, number=f"INV-L-{i:05d}")
        sub.payment_method = card
        sub.save(update_fields=["payment_method"])
        attempt = PaymentAttempt.objects.create(
            account=large,
            payment_method=card,
            amount_minor=100,
            currency=large.currency,
            status=PaymentAttempt.Status.FAILED,
            source=PaymentAttempt.Source.RETRY,
            decline_code="card_declined",
            idempotency_key=f"l-{i}",
        )
        PaymentAllocation.objects.create(attempt=attempt, invoice=invoice, amount_minor=100)
    url_large = reverse("support:account", args=[large.pk])
    support_client.get(url_large)
    with CaptureQueriesContext(connection) as q_large:
        response = support_client.get(url_large)
    assert response.status_code == 200
    assert len(q_large) == len(q_small), [q["sql"] for q in q_large]


def test_timeline_merges_everything_newest_first_and_pages(support_user):
    account, _card = card_account(subscriptions=30)  # 30 attempts + 30 notices + 30 audit events
    SupportNote.objects.create(account=account, author=support_user, body="latest")
    first = support_timeline(account=account, page=1)
    assert len(first.entries) == TIMELINE_PAGE_SIZE
    assert first.has_next
    assert not first.has_previous
    assert first.entries[0].kind == "note"
    assert [e.at for e in first.entries] == sorted((e.at for e in first.entries), reverse=True)
    second = support_timeline(account=account, page=2)
    assert len(second.entries) == 91 - TIMELINE_PAGE_SIZE
    assert not second.has_next
    kinds = {e.kind for e in first.entries + second.entries}
    assert kinds == {"note", "attempt", "notice", "audit"}
    assert second.entries[0].at <= first.entries[-1].at


def test_timeline_query_count_is_fixed(support_user):
    counts = []
    for size in (2, 80):
        account, _card = card_account(subscriptions=size, name=f"Co {size}", domain=f"co{size}.example")
        SupportNote.objects.create(account=account, author=support_user, body="note")
        with CaptureQueriesContext(connection) as queries:
            support_timeline(account=account, page=1)
        counts.append(len(queries))
    assert counts == [5, 5]


def test_timeline_htmx_page_is_a_fragment(support_client):
    account, _card = card_account(subscriptions=30)
    response = support_client.get(
        reverse("support:account", args=[account.pk]) + "?page=2", headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert 'id="timeline"' in body
    assert "<html" not in body
