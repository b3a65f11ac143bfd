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
from support.selectors import LIST_LIMIT, TIMELINE_PAGE_SIZE, support_timeline
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
    assert len(q_large) <= 12, [q["sql"] for q in q_large]
    # The first LIST_LIMIT subscriptions, and a link to the paged list of all of them.
    body = response.content.decode()
    assert f"The first {LIST_LIMIT} of 200, worst standing first." in body
    assert reverse("support:subscriptions", args=[large.pk]) in body
    assert body.count(f'href="{reverse("support:subscriptions", args=[large.pk])}"') == 1
    assert body.count(">Extend grace<") == LIST_LIMIT


def test_subscription_list_pages_through_all_of_them(support_client, client):
    account = BillingAccountFactory(name="Many Subs", domain="many.example")
    for i in range(LIST_LIMIT + 3):
        past_due_subscription(account, amount_minor=100, days_ago=5, number=f"INV-M-{i:05d}")
    url = reverse("support:subscriptions", args=[account.pk])
    support_client.get(url)
    with CaptureQueriesContext(connection) as first:
        page1 = support_client.get(url)
    with CaptureQueriesContext(connection) as second:
        page2 = support_client.get(url + "?page=2")
    assert page1.status_code == page2.status_code == 200
    assert len(first) == len(second) <= 12
    assert page1.content.decode().count(">Extend grace<") == LIST_LIMIT
    assert page2.content.decode().count(">Extend grace<") == 3
    assert f"{LIST_LIMIT + 1}–{LIST_LIMIT + 3} of {LIST_LIMIT + 3}" in page2.content.decode()
    assert support_client.get(url + "?page=x").status_code == 200  # a bad page number is page 1
    assert AuditEvent.objects.filter(action="support.account_viewed", account=account).count() == 4
    # Not an operator: as if the page did not exist.
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    assert support_client.get(reverse("support:subscriptions", args=[999999])).status_code == 404


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


def test_first_timeline_page_from_the_overview_equals_the_paged_one(support_user):
    """The account view merges page 1 from the lists it already loaded; it must be the SQL page."""
    from support.selectors import support_account_get, support_account_overview, support_timeline_first_page

    account, _card = card_account(subscriptions=30)
    for i in range(5):
        SupportNote.objects.create(account=account, body=f"note {i}", author=support_user)
    full = support_account_get(account_id=account.pk, with_overview=True)
    merged = support_timeline_first_page(overview=support_account_overview(account=full))
    paged = support_timeline(account=account, page=1)
    assert [(e.kind, e.obj.pk) for e in merged.entries] == [(e.kind, e.obj.pk) for e in paged.entries]
    assert [(e.title, e.detail, e.actor) for e in merged.entries] == [
        (e.title, e.detail, e.actor) for e in paged.entries
    ]
    assert merged.has_next == paged.has_next is True
    small, _ = card_account(subscriptions=1, name="Tiny", domain="tiny.example")
    tiny = support_timeline_first_page(
        overview=support_account_overview(
            account=support_account_get(account_id=small.pk, with_overview=True)
        )
    )
    assert tiny.has_next is False
    assert [(e.kind, e.obj.pk) for e in tiny.entries] == [
        (e.kind, e.obj.pk) for e in support_timeline(account=small, page=1).entries
    ]
