"""What Home, Your products and Invoices say, on the demo data of PRODUCT.md and on made-up accounts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from payments.selectors import past_due_summary
from subscriptions.models import Invoice
from tests.factories import InvoiceFactory, ProductFactory, SubscriptionFactory
from tests.pages_helpers import account_with_subscriptions, demo_account, seed_demo

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    seed_demo()


def _get(client, email: str, name: str, account_name: str, **kwargs) -> str:
    client.force_login(User.objects.get(email=email))
    account = demo_account(account_name)
    response = client.get(reverse(name, kwargs={"account_id": account.pk, **kwargs}))
    assert response.status_code == 200
    return response.content.decode()


def test_past_due_summary_groups_by_the_method_that_pays(demo):
    summary = past_due_summary(account=demo_account("Contoso Ltd"))
    assert str(summary.total) == "€390.50"
    [visa] = summary.declined
    assert (visa.method.last4, str(visa.amount), visa.subscription_count) == ("0341", "€376.50", 3)
    assert summary.subscription_count == 4


def test_home_banner_names_the_declined_card_and_where_to_act(client, demo):
    body = _get(client, "reader@contoso.example", "accounts:home", "Contoso Ltd")
    assert "You have a past due balance of €390.50." in body
    assert "€376.50 past due on Visa ending 0341 (3 subscriptions)" in body
    assert reverse("payments:methods", kwargs={"account_id": demo_account("Contoso Ltd").pk}) in body
    assert 'hx-trigger="balanceChanged from:body"' in body


def test_home_counts_a_past_due_subscription_as_active_with_its_warning(client, demo):
    # Fabrikam's one subscription is past due but still in service: "0 actief" beside it was wrong.
    body = _get(client, "admin@fabrikam.example", "accounts:home", "Fabrikam BV")
    assert "1 actief" in body
    assert "0 actief" not in body


def test_home_has_no_banner_in_good_standing(client):
    account, users = account_with_subscriptions(2, past_due=0)
    client.force_login(users["owner"])
    body = client.get(reverse("accounts:home", kwargs={"account_id": account.pk})).content.decode()
    assert "past due balance" not in body
    assert 'id="past-due-banner"' in body  # the region stays, so a later balanceChanged can fill it


def test_banner_fragment_is_just_the_banner(client, demo):
    client.force_login(User.objects.get(email="admin@contoso.example"))
    account = demo_account("Contoso Ltd")
    response = client.get(reverse("accounts:home", kwargs={"account_id": account.pk}), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="home-body"')
    assert 'id="past-due-banner"' in body
    assert "<html" not in body


def test_products_flags_past_due_and_disabled_rows(client, demo):
    body = _get(client, "admin@contoso.example", "subscriptions:products", "Contoso Ltd")
    assert body.count("Subscription has a past due payment") == 4
    for name in ("Microsoft 365 Business Standard", "Exchange Online (Plan 1)", "Power BI Pro"):
        assert name in body
    assert "€292.50" in body
    northwind = _get(client, "admin@northwind.example", "subscriptions:products", "Northwind Traders")
    assert "disabled because payment wasn't received" in northwind
    assert "$1,250.00" in northwind


def test_products_htmx_refresh_renders_only_the_list(client, demo):
    client.force_login(User.objects.get(email="admin@contoso.example"))
    account = demo_account("Contoso Ltd")
    response = client.get(
        reverse("subscriptions:products", kwargs={"account_id": account.pk}), HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="product-list"')
    assert "Subscription has a past due payment" in body


def test_dutch_account_formats_amounts_and_dates_in_dutch(client, demo):
    body = _get(client, "admin@fabrikam.example", "accounts:home", "Fabrikam BV")
    assert "€\xa072,00" in body or "€ 72,00" in body
    assert 'lang="nl"' in body
    products = _get(client, "admin@fabrikam.example", "subscriptions:products", "Fabrikam BV")
    assert "€\xa072,00" in products or "€ 72,00" in products


def test_invoice_detail_has_lines_totals_terms_and_bill_to(client, demo):
    body = _get(
        client,
        "reader@contoso.example",
        "subscriptions:invoice_detail",
        "Contoso Ltd",
        number="INV-2026-100001",
    )
    for text in (
        "Total amount",
        "Amount due",
        "Payment terms: Due on receipt",  # a card renewal is due on its issue date
        "1 Microsoft Way",
        "€11.70",
        "€292.50",
    ):
        assert text in body
    assert "How to pay" not in body


def test_bank_transfer_invoice_shows_remittance_details(client, demo):
    body = _get(
        client,
        "admin@northwind.example",
        "subscriptions:invoice_detail",
        "Northwind Traders",
        number="INV-2026-300001",
    )
    for text in (
        "How to pay",
        "Contoso Bank N.A.",
        "Billing Portal Inc.",
        "US64SVBKUS6S3300958879",
        "SVBKUS6S",
    ):
        assert text in body
    assert body.count("INV-2026-300001") >= 2  # the reference is the invoice number


def _invoices(client, account, users, query: str = "") -> str:
    client.force_login(users["reader"])
    response = client.get(reverse("subscriptions:invoices", kwargs={"account_id": account.pk}) + query)
    assert response.status_code == 200
    return response.content.decode()


def test_invoice_filters_by_status_and_issue_date():
    account, users = account_with_subscriptions(3, past_due=1)
    old = SubscriptionFactory(account=account)
    InvoiceFactory(
        subscription=old,
        number="OLD-1",
        issued_on=dt.date(2025, 1, 5),
        status=Invoice.Status.PAID,
        amount_due_minor=0,
        paid_at=timezone.now(),
    )
    from django.test import Client

    client = Client()
    everything = _invoices(client, account, users)
    assert "OLD-1" in everything
    only_past_due = _invoices(client, account, users, "?status=past_due")
    assert only_past_due.count("Past due</span>") == 1
    assert "OLD-1" not in only_past_due
    in_2025 = _invoices(client, account, users, "?issued_from=2025-01-01&issued_to=2025-12-31")
    assert "OLD-1" in in_2025
    assert in_2025.count('<th scope="row">') == 1


@pytest.mark.parametrize(
    "query",
    [
        "?issued_from=yesterday",
        "?issued_to=2026-13-45",
        "?issued_from=2026-12-01&issued_to=2026-01-01",
        "?status=bogus",
    ],
)
def test_bad_filters_give_a_message_not_a_500(client, query):
    account, users = account_with_subscriptions(2)
    body = _invoices(client, account, users, query)
    assert 'aria-invalid="true"' in body or "Select a valid choice" in body
    assert "Some filters were not applied" in body


def test_invoices_are_paginated_25_per_page(client):
    account, users = account_with_subscriptions(30)
    first = _invoices(client, account, users)
    assert first.count('<th scope="row">') == 25
    assert "Page 1 of 2" in first
    second = _invoices(client, account, users, "?page=2")
    assert second.count('<th scope="row">') == 5
    assert _invoices(client, account, users, "?page=abc").count('<th scope="row">') == 25
    past_the_end = _invoices(client, account, users, "?page=99")  # the last page, as Paginator.get_page
    assert past_the_end.count('<th scope="row">') == 5
    assert "Page 2 of 2" in past_the_end


def test_invoice_pages_count_what_the_filters_keep(client):
    account, users = account_with_subscriptions(60, past_due=27)
    past_due = _invoices(client, account, users, "?status=past_due&page=2")
    assert past_due.count('<th scope="row">') == 2
    assert "26–27 of 27" in past_due
    assert "Page 2 of 2" in past_due
    assert past_due.count("Past due") >= 2
    nothing = _invoices(client, account, users, "?status=void&page=3")
    assert "No invoices match these filters" in nothing
    # Issued-on dates count too: move ten invoices back a year; the rest are counted from the year's start.
    old = Invoice.objects.filter(account=account).order_by("pk")[:10]
    Invoice.objects.filter(pk__in=[i.pk for i in old]).update(
        issued_on=dt.date(2025, 1, 15), due_on=dt.date(2025, 2, 14)
    )
    this_year = _invoices(client, account, users, "?issued_from=2026-01-01&page=2")
    assert "26–50 of 50" in this_year
    last_year = _invoices(client, account, users, "?issued_to=2025-12-31")
    assert last_year.count('<th scope="row">') == 10
    assert "Page 1 of" not in last_year  # one page: no pagination bar


def test_products_are_paginated_25_per_page_rows_that_need_attention_first(client):
    account, users = account_with_subscriptions(30, past_due=2)
    # A later product name sorts first among the paid-up rows; it must still come after the past-due ones.
    SubscriptionFactory(account=account, product=ProductFactory(name="AAA <b>Suite</b> & more"))
    client.force_login(users["admin"])
    url = reverse("subscriptions:products", kwargs={"account_id": account.pk})
    first = client.get(url).content.decode()
    assert first.count('<th scope="row">') == 25
    assert "Page 1 of 2" in first
    assert first.count("Subscription has a past due payment") == 2
    assert (
        first.count('class="settle-action"') == 2
    )  # the declined Visa's Settle balance, on each of its rows
    assert first.index("Subscription has a past due payment") < first.index(
        "AAA &lt;b&gt;Suite&lt;/b&gt; &amp; more"
    )
    assert "<b>Suite</b>" not in first  # names are escaped, in the cell and in the row menu's label
    assert 'aria-label="More actions for AAA &lt;b&gt;Suite&lt;/b&gt; &amp; more"' in first
    assert first.count("Visa ending 0341") == 2
    assert "Mastercard ending 4444" in first
    assert first.count("More actions for") == 25
    second = client.get(url + "?page=2").content.decode()
    assert second.count('<th scope="row">') == 6
    assert "Subscription has a past due payment" not in second


def test_empty_account_shows_what_to_do_next(client):
    account, users = account_with_subscriptions(0)
    client.force_login(users["owner"])
    products = client.get(
        reverse("subscriptions:products", kwargs={"account_id": account.pk})
    ).content.decode()
    assert "No products yet" in products
    assert "No invoices yet" in _invoices(client, account, users)


@pytest.mark.parametrize(
    ("name", "region", "extra"),
    [
        ("accounts:home", "home-body", {}),
        ("subscriptions:products", "product-list", {}),
        ("subscriptions:invoices", "invoice-list", {}),
        ("subscriptions:invoice_detail", "invoice-body", {"number": "INV-2026-100001"}),
        ("payments:methods", "payment-method-list", {}),
    ],
)
def test_balance_regions_reload_as_fragments_for_htmx(client, demo, name, region, extra):
    """After a payment the payments views send HX-Trigger: balanceChanged; each region re-fetches itself."""
    client.force_login(User.objects.get(email="admin@contoso.example"))
    account = demo_account("Contoso Ltd")
    url = reverse(name, kwargs={"account_id": account.pk, **extra})
    full = client.get(url).content.decode()
    assert f'id="{region}"' in full
    assert 'hx-trigger="balanceChanged from:body"' in full
    fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode().lstrip()
    assert "<html" not in fragment
    assert f'id="{region}"' in fragment.split(">", 1)[0]


def test_dutch_account_pages_read_in_dutch(client, demo):
    body = _get(client, "admin@fabrikam.example", "subscriptions:products", "Fabrikam BV")
    assert "Abonnement heeft een verschuldigd bedrag" in body
    assert "Uw producten" in body
    home = _get(client, "admin@fabrikam.example", "accounts:home", "Fabrikam BV")
    assert ">Start<" in home
    assert "U hebt een achterstallig saldo van €\xa072,00." in home


def test_bank_transfer_invoice_says_net_30_days_and_how_to_pay_but_no_card_pay_now(client, demo):
    body = _get(
        client,
        "admin@northwind.example",
        "subscriptions:invoice_detail",
        "Northwind Traders",
        number="INV-2026-300001",
    )
    assert "Payment terms: Net 30 days" in body
    assert "How to pay" in body
    assert "/pay/" not in body  # no card Pay now for an account that pays by bank transfer


def test_paid_invoice_shows_no_how_to_pay(client, demo):
    from django.utils import timezone

    from subscriptions.models import Invoice

    Invoice.objects.filter(number="INV-2026-300001").update(
        status=Invoice.Status.PAID, amount_due_minor=0, paid_at=timezone.now()
    )
    body = _get(
        client,
        "admin@northwind.example",
        "subscriptions:invoice_detail",
        "Northwind Traders",
        number="INV-2026-300001",
    )
    assert "How to pay" not in body
