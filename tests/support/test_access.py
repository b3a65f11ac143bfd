"""Who reaches the support area: operators with view_support_console; everyone else gets 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Role
from tests.factories import MembershipFactory, SubscriptionFactory, UserFactory

from .conftest import past_due_subscription, staff_with

pytestmark = pytest.mark.django_db


def support_urls(account, sub, invoice) -> list[str]:
    return [
        reverse("support:search") + "?q=north",
        reverse("support:dashboard"),
        reverse("support:account", args=[account.pk]),
        reverse("support:note_add", args=[account.pk]),
        reverse("support:bank_transfer", args=[account.pk]),
        reverse("support:invoice_retry", args=[account.pk, invoice.pk]),
        reverse("support:grace_extend", args=[account.pk, sub.pk]),
    ]


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.READER])
def test_customer_gets_404_on_every_support_url(client, northwind, role):
    account, sub, invoice = northwind
    customer = (
        MembershipFactory(account=account, role=role, user=UserFactory()).user
        if role != Role.OWNER
        else (account.memberships.get(role=Role.OWNER).user)
    )
    client.force_login(customer)
    for url in support_urls(account, sub, invoice):
        assert client.get(url).status_code == 404, url
        assert client.post(url, {"reason": "x", "confirm": "yes"}).status_code == 404, url


def test_customer_who_is_also_marked_staff_without_permission_gets_404(client, northwind):
    account, sub, invoice = northwind
    client.force_login(UserFactory(is_staff=True))
    for url in support_urls(account, sub, invoice):
        assert client.get(url).status_code == 404, url


def test_permission_without_staff_flag_gets_404(client, northwind):
    account, sub, invoice = northwind
    user = staff_with("view_support_console", "record_bank_transfer")
    user.is_staff = False
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    for url in support_urls(account, sub, invoice):
        assert client.get(url).status_code == 404, url


def test_anonymous_is_sent_to_sign_in(client, northwind):
    account, sub, invoice = northwind
    sign_in = reverse("accounts:signin")
    for url in support_urls(account, sub, invoice):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{sign_in}?next=")


@pytest.mark.parametrize(
    ("name", "permission"),
    [
        ("note_add", "add_support_note"),
        ("bank_transfer", "record_bank_transfer"),
        ("invoice_retry", "retry_payment"),
        ("grace_extend", "extend_grace"),
        ("dashboard", "view_recovery_dashboard"),
    ],
)
def test_staff_without_the_action_permission_gets_403(client, northwind, name, permission):
    account, sub, invoice = northwind
    args = {
        "note_add": [account.pk],
        "bank_transfer": [account.pk],
        "invoice_retry": [account.pk, invoice.pk],
        "grace_extend": [account.pk, sub.pk],
        "dashboard": [],
    }[name]
    url = reverse(f"support:{name}", args=args)
    client.force_login(staff_with("view_support_console"))
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": "x", "confirm": "yes"}).status_code == 403
    client.force_login(staff_with("view_support_console", permission))
    assert client.get(url).status_code == 200


def test_support_staff_reach_search_and_account(support_client, northwind):
    account, _sub, _invoice = northwind
    assert support_client.get(reverse("support:search")).status_code == 200
    response = support_client.get(reverse("support:account", args=[account.pk]))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")


def test_unknown_account_is_404_for_support(support_client):
    assert support_client.get(reverse("support:account", args=[999999])).status_code == 404


def test_ids_from_another_account_are_404(support_client, northwind):
    account, _sub, _invoice = northwind
    other = SubscriptionFactory()
    other_sub, other_invoice = past_due_subscription(
        other.account, amount_minor=100, days_ago=3, number="X-1"
    )
    assert (
        support_client.get(reverse("support:grace_extend", args=[account.pk, other_sub.pk])).status_code
        == 404
    )
    assert (
        support_client.get(reverse("support:invoice_retry", args=[account.pk, other_invoice.pk])).status_code
        == 404
    )


def test_support_staff_do_not_reach_customer_pages(support_client, northwind):
    """Support looks through the console only; it never acts inside a customer's portal."""
    account, _sub, _invoice = northwind
    for url in (
        reverse("accounts:home", kwargs={"account_id": account.pk}),
        reverse("subscriptions:invoices", kwargs={"account_id": account.pk}),
        reverse("payments:methods", kwargs={"account_id": account.pk}),
    ):
        assert support_client.get(url).status_code == 404, url


def test_account_page_shows_only_brand_last4_expiry_of_cards(support_client):
    from tests.factories import BillingAccountFactory, PaymentMethodFactory

    account = BillingAccountFactory()
    PaymentMethodFactory(
        account=account, last4="4444", holder_name="Adele Vance", gateway_token="pm_secret_token_value"
    )
    body = support_client.get(reverse("support:account", args=[account.pk])).content.decode()
    assert "ending 4444" in body
    assert "12/2030" in body
    assert "pm_secret_token_value" not in body
    assert "Adele Vance" not in body
