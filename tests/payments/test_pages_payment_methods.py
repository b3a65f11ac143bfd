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
    # Fabrikam reads its pages in Dutch, card labels included.
    assert "Visa eindigend op 1881" in body
    assert "(kaart verlopen)" in body


def test_bank_transfer_account_says_how_it_pays(client):
    seed_demo()
    body = _page(client, "admin@northwind.example", "Northwind Traders")
    assert "pays by invoice" in body


def test_a_card_with_many_subscriptions_names_five_and_counts_the_rest(client):
    from tests.pages_helpers import account_with_subscriptions

    account, users = account_with_subscriptions(12, past_due=0)
    client.force_login(users["reader"])
    body = client.get(reverse("payments:methods", kwargs={"account_id": account.pk})).content.decode()
    assert "12 subscriptions" in body
    assert "and 7 more" in body


def test_cancelled_subscriptions_do_not_count_as_using_a_card(client):
    from django.utils import timezone

    from subscriptions.models import Subscription
    from tests.pages_helpers import account_with_subscriptions

    account, users = account_with_subscriptions(3, past_due=0)
    Subscription.objects.filter(pk=account.subscriptions.order_by("pk").first().pk).update(
        status="cancelled", cancelled_at=timezone.now()
    )
    client.force_login(users["reader"])
    body = client.get(reverse("payments:methods", kwargs={"account_id": account.pk})).content.decode()
    assert "2 subscriptions" in body
    assert "3 subscriptions" not in body
