"""One box finds an account by every key support is given on the phone."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from payments.models import PaymentAttempt
from support.selectors import search_keys, support_search
from tests.factories import BillingAccountFactory, MembershipFactory, PaymentMethodFactory, UserFactory

from .conftest import past_due_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(northwind):
    account, sub, invoice = northwind
    contoso = BillingAccountFactory(name="Contoso Ltd", domain="contoso.example", currency="EUR")
    MembershipFactory(account=contoso, user=UserFactory(email="finance@contoso.example"))
    card = PaymentMethodFactory(account=contoso, last4="0341")
    attempt = PaymentAttempt.objects.create(
        account=contoso,
        payment_method=card,
        amount_minor=37650,
        currency="EUR",
        status=PaymentAttempt.Status.FAILED,
        source=PaymentAttempt.Source.RENEWAL,
        decline_code="card_declined",
        idempotency_key="t-1",
    )
    BillingAccountFactory(name="Fabrikam BV", domain="fabrikam.example")
    return {"northwind": account, "sub": sub, "invoice": invoice, "contoso": contoso, "attempt": attempt}


def names(query: str) -> list[str]:
    return [r.account.name for r in support_search(query=query)]


def test_partial_name_finds_account(accounts):
    assert names("northw") == ["Northwind Traders"]
    assert names("NORTHW") == ["Northwind Traders"]
    assert names("traders") == ["Northwind Traders"]


def test_domain_finds_account(accounts):
    assert names("contoso.example") == ["Contoso Ltd"]
    assert names("fabrikam") == ["Fabrikam BV"]


def test_member_email_finds_account(accounts):
    assert names("finance@contoso.example") == ["Contoso Ltd"]
    assert names("admin@northwind") == ["Northwind Traders"]


def test_invoice_number_finds_account(accounts):
    assert names("INV-2026-300001") == ["Northwind Traders"]
    assert names("inv-2026-300001") == ["Northwind Traders"]


def test_subscription_id_finds_account(accounts):
    assert "Northwind Traders" in names(str(accounts["sub"].pk))


def test_payment_reference_finds_account(accounts):
    reference = accounts["attempt"].reference
    assert reference.startswith("PAY-")
    assert names(reference) == ["Contoso Ltd"]
    assert names(reference.lower()) == ["Contoso Ltd"]


def test_card_last4_finds_account(accounts):
    assert names("0341") == ["Contoso Ltd"]


def test_results_show_status_and_outstanding_balance(accounts):
    (result,) = support_search(query="northw")
    assert result.status == "disabled"
    assert result.outstanding_minor == 125000
    (contoso,) = support_search(query="contoso")
    assert contoso.status is None
    assert contoso.outstanding_minor == 0


def test_worst_subscription_state_wins(accounts):
    contoso = accounts["contoso"]
    past_due_subscription(contoso, amount_minor=1400, days_ago=3, number="INV-C-1")
    past_due_subscription(contoso, amount_minor=2000, days_ago=40, number="INV-C-2", disabled=True)
    (result,) = support_search(query="contoso")
    assert result.status == "disabled"
    assert result.outstanding_minor == 3400


def test_no_match_and_too_short_queries(accounts):
    assert names("zzzz-nothing") == []
    assert names("n") == []
    assert names("   ") == []


def test_key_detection():
    assert search_keys("a@b.c") == ["email", "email_partial"]
    assert search_keys("PAY-00000042")[0] == "payment_reference"
    assert "invoice_number" in search_keys("INV-2026-300001")
    assert search_keys("4242") == ["card_last4", "subscription_id", "name_domain"]
    assert search_keys("123456") == ["subscription_id", "name_domain"]
    assert search_keys("northw") == ["name_domain"]
    assert search_keys("northwind.example") == ["domain", "name_domain"]


def test_partial_matches_are_the_fallback_when_nothing_exact_matches(accounts):
    # "0341" is Contoso's card; an account whose name contains 0341 is not listed beside it...
    BillingAccountFactory(name="Shop 0341 BV", domain="shop0341.example")
    assert names("0341") == ["Contoso Ltd"]
    # ...but a partial domain or address still finds accounts through the fallback.
    assert names("contoso.ex") == ["Contoso Ltd"]
    assert names("finance@contoso") == ["Contoso Ltd"]


def test_results_are_limited(db):
    BillingAccountFactory.create_batch(55, name="Many Co")
    assert len(support_search(query="many co")) == 50


@pytest.mark.parametrize(
    "query", ["northw", "admin@northwind.example", "INV-2026-300001", "0341", "PAY-00000001"]
)
def test_search_query_count_does_not_grow_with_data(accounts, query):
    with CaptureQueriesContext(connection) as small:
        support_search(query=query)
    for i in range(30):
        account = BillingAccountFactory(name=f"Northwind Traders {i}", domain=f"northwind{i}.example")
        MembershipFactory(account=account, user=UserFactory(email=f"admin{i}@northwind.example"))
        past_due_subscription(account, amount_minor=100, days_ago=3, number=f"INV-N-{i}")
        PaymentMethodFactory(account=account, last4="0341")
    with CaptureQueriesContext(connection) as large:
        support_search(query=query)
    assert len(large) == len(small)
    assert len(small) <= 6


def test_search_page_renders_results(support_client, accounts):
    response = support_client.get(reverse("support:search"), {"q": "northw"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Northwind Traders" in body
    assert "$1,250.00" in body
    assert "Disabled" in body


def test_search_page_htmx_fragment(support_client, accounts):
    response = support_client.get(reverse("support:search"), {"q": "northw"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "Northwind Traders" in body
    assert "<html" not in body


def test_every_search_is_audited(support_client, support_user, accounts):
    from audit.models import AuditEvent

    support_client.get(reverse("support:search"), {"q": "northw"})
    event = AuditEvent.objects.get(action="support.searched")
    assert event.actor == support_user
    assert event.data == {"query": "northw", "results": 1}
    assert event.account is None
