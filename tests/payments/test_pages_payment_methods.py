"""Bills & payments → Payment methods: every card, and a warning that names each declined one."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import User
from tests.pages_helpers import demo_account, seed_demo

pytestmark = pytest.mark.django_db


def _page(client, email: str, account_name: str) -> str:
    client.force_login(User.objects.get(email=email))
    account = demo_account(account_name)
    response = client.get(reverse("payments:methods", kwargs={"account_id": account.pk}))
    assert response.status_code == 200
    return response.content.decode()


def test_warning_names_the_declined_visa_and_its_balance(client):
    seed_demo()
    body = _page(client, "reader@contoso.example", "Contoso Ltd")
    assert "Your Visa ending 0341 was declined (card declined)." in body
    assert "3 subscriptions have a past due balance of €376.50." in body
    assert "Your Mastercard ending 4444 was declined" not in body


def test_cards_show_brand_last4_expiry_owner_status_default_and_use(client):
    seed_demo()
    body = _page(client, "admin@contoso.example", "Contoso Ltd")
    for text in (
        "Visa ending 0341",
        "08/2028",
        "Megan Bowen (you)",
        "Mastercard ending 4444",
        "03/2029",
        "Adele Vance",
        "Default",
        "Valid",
        "Declined",
        "Microsoft Teams Essentials \u00d79",
        "3 subscriptions",
    ):
        assert text in body, text


def test_expired_card_is_named_with_its_reason(client):
    seed_demo()
    body = _page(client, "admin@fabrikam.example", "Fabrikam BV")
    assert "Visa ending 1881" in body
    assert "(kaart verlopen)" in body or "(card expired)" in body


def test_bank_transfer_account_says_how_it_pays(client):
    seed_demo()
    body = _page(client, "admin@northwind.example", "Northwind Traders")
    assert "pays by invoice" in body
