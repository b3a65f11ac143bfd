"""Subscription and payment settings (the details page), the Reactivate pane, the Warned banner on Home and Your
products, and the query cost of the CSV export."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import Subscription
from tests.pages_helpers import account_with_subscriptions, outsider

pytestmark = pytest.mark.django_db

BANNER = "This subscription will be disabled for non-payment. Settle outstanding charges."
BANNER_NL = "Dit abonnement wordt uitgeschakeld wegens niet-betaling. Vereffen de openstaande kosten."


def _warn(sub: Subscription) -> None:
    Subscription.objects.filter(pk=sub.pk).update(
        status=Subscription.Status.WARNED,
        past_due_since=timezone.now() - dt.timedelta(days=28),
        grace_ends_at=timezone.now() + dt.timedelta(days=2),
    )


def _cancel(sub: Subscription, *, days_ago: int = 5) -> None:
    Subscription.objects.filter(pk=sub.pk).update(
        status=Subscription.Status.CANCELLED,
        cancelled_at=timezone.now() - dt.timedelta(days=days_ago),
        next_lifecycle_at=timezone.now() + dt.timedelta(days=90 - days_ago),
    )


def test_details_page_shows_status_method_renewal_invoices_and_timeline(client):
    account, users = account_with_subscriptions(2, past_due=1)
    sub = account.subscriptions.order_by("pk").first()
    client.force_login(users["admin"])

    response = client.get(reverse("subscriptions:subscription_detail", args=[account.pk, sub.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Subscription and payment settings" in html
    assert "Subscription has a past due payment" in html
    assert "Visa ending 0341" in html
    assert "Replace payment method" in html
    assert reverse("payments:settle", args=[account.pk, sub.payment_method_id]) in html
    assert reverse("dunning:timeline", args=[account.pk, sub.pk]) in html
    assert sub.invoices.get().number in html
    assert "Reactivate subscription" not in html  # only a cancelled one


def test_details_page_is_an_htmx_fragment_too(client):
    account, users = account_with_subscriptions(1)
    sub = account.subscriptions.get()
    client.force_login(users["reader"])
    response = client.get(
        reverse("subscriptions:subscription_detail", args=[account.pk, sub.pk]),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="subscription-body"')
    assert "<html" not in html


def test_another_accounts_subscription_is_404_on_details_and_reactivate(client):
    account, users = account_with_subscriptions(1)
    other, _ = account_with_subscriptions(1)
    theirs = other.subscriptions.get()
    client.force_login(users["owner"])
    for name in ("subscriptions:subscription_detail", "subscriptions:subscription_reactivate"):
        assert client.get(reverse(name, args=[account.pk, theirs.pk])).status_code == 404
        assert client.post(reverse(name, args=[account.pk, theirs.pk])).status_code in (404, 405)
    client.force_login(outsider())
    mine = account.subscriptions.get()
    assert (
        client.get(reverse("subscriptions:subscription_detail", args=[account.pk, mine.pk])).status_code
        == 404
    )


def test_a_reader_sees_no_reactivate_action_and_may_not_post_it(client):
    account, users = account_with_subscriptions(1)
    sub = account.subscriptions.get()
    _cancel(sub)
    client.force_login(users["reader"])
    html = client.get(
        reverse("subscriptions:subscription_detail", args=[account.pk, sub.pk])
    ).content.decode()
    assert 'id="reactivate"' not in html
    url = reverse("subscriptions:subscription_reactivate", args=[account.pk, sub.pk])
    assert client.post(url).status_code == 403
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.CANCELLED
    assert sub.reactivation_requested_at is None


def test_the_owner_of_a_cancelled_subscription_sees_reactivate_in_english_and_dutch(client):
    account, users = account_with_subscriptions(1)
    sub = account.subscriptions.get()
    _cancel(sub)
    client.force_login(users["owner"])
    url = reverse("subscriptions:subscription_detail", args=[account.pk, sub.pk])
    assert 'id="reactivate"' in client.get(url).content.decode()
    account.language = "nl"
    account.save(update_fields=["language"])
    html = client.get(url).content.decode()
    assert "Abonnement opnieuw activeren" in html
    assert "Abonnements- en betalingsinstellingen" in html


def test_reactivate_on_a_subscription_that_is_not_cancelled_says_so_and_changes_nothing(client):
    account, users = account_with_subscriptions(1)
    sub = account.subscriptions.get()
    client.force_login(users["owner"])
    response = client.post(reverse("subscriptions:subscription_reactivate", args=[account.pk, sub.pk]))
    assert response.status_code == 200
    assert "can no longer be reactivated" in response.content.decode()
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE


def test_warned_banner_on_home_and_your_products_links_the_details_page(client):
    account, users = account_with_subscriptions(3, past_due=2)
    sub = account.subscriptions.order_by("pk").first()
    _warn(sub)
    client.force_login(users["reader"])
    detail = reverse("subscriptions:subscription_detail", args=[account.pk, sub.pk])

    home = client.get(reverse("accounts:home", args=[account.pk])).content.decode()
    assert BANNER in home
    assert detail in home
    products = client.get(reverse("subscriptions:products", args=[account.pk])).content.decode()
    assert BANNER in products
    assert detail in products
    assert "Warned" in products
    # Still past due: the Settle balance amount includes the warned subscription.
    assert "2 subscriptions have a past due balance" in products

    account.language = "nl"
    account.save(update_fields=["language"])
    assert BANNER_NL in client.get(reverse("accounts:home", args=[account.pk])).content.decode()
    assert BANNER_NL in client.get(reverse("subscriptions:products", args=[account.pk])).content.decode()


def test_no_warned_banner_when_nothing_is_warned(client):
    account, users = account_with_subscriptions(2, past_due=1)
    client.force_login(users["reader"])
    assert BANNER not in client.get(reverse("accounts:home", args=[account.pk])).content.decode()


def test_home_query_count_with_a_warned_subscription_is_flat_from_1_to_200(client, django_assert_num_queries):
    small, small_users = account_with_subscriptions(1, past_due=1)
    large, large_users = account_with_subscriptions(200, past_due=3)
    for account in (small, large):
        for sub in account.subscriptions.filter(status=Subscription.Status.PAST_DUE):
            _warn(sub)
    client.force_login(small_users["admin"])
    with CaptureQueriesContext(connection) as small_queries:
        client.get(reverse("accounts:home", args=[small.pk]))
    client.force_login(large_users["admin"])
    with django_assert_num_queries(len(small_queries)):
        client.get(reverse("accounts:home", args=[large.pk]))


def test_csv_export_query_count_is_flat_from_1_to_200_subscriptions(client, django_assert_num_queries):
    small, small_users = account_with_subscriptions(1, past_due=1)
    large, large_users = account_with_subscriptions(200, past_due=3)
    client.force_login(small_users["reader"])
    with CaptureQueriesContext(connection) as small_queries:
        rows = b"".join(
            client.get(reverse("subscriptions:invoices_export", args=[small.pk])).streaming_content
        )
    assert rows.count(b"\n") == 2
    client.force_login(large_users["reader"])
    with django_assert_num_queries(len(small_queries)):
        rows = b"".join(
            client.get(reverse("subscriptions:invoices_export", args=[large.pk])).streaming_content
        )
    assert rows.count(b"\n") == 201
