"""Every page costs the same number of queries for an account with 1 and with 200 subscriptions."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.pages_helpers import account_with_subscriptions

pytestmark = pytest.mark.django_db

PAGES = [
    ("accounts:home", {}),
    ("accounts:notifications", {}),
    ("accounts:notifications_edit", {}),
    ("subscriptions:products", {}),
    ("subscriptions:invoices", {}),
    ("subscriptions:invoices", {"query": "?status=past_due&issued_from=2000-01-01"}),
    ("subscriptions:invoice_detail", {"number": True}),
    ("payments:methods", {}),
    ("accounts:billing_accounts", {}),
    ("accounts:roles", {}),
    ("support_requests:list", {}),
    ("support_requests:new", {}),
    ("accounts:billing_profile", {}),
    ("accounts:billing_profile_edit", {}),
    ("accounts:recipients_edit", {}),
    ("payments:method_edit", {"method": True}),
    ("payments:method_replace", {"method": True}),
    ("payments:method_delete", {"method": True}),
    ("payments:subscription_replace", {"subscription": True}),
    # The first subscription is the past-due one in both worlds: its page shows what Settle balance collects.
    ("subscriptions:subscription_detail", {"subscription": "first"}),
    ("subscriptions:subscription_reactivate", {"subscription": "first"}),
]


def _url(name, extra, account) -> str:
    kwargs = {"account_id": account.pk}
    if extra.get("number"):
        kwargs["number"] = account.invoices.order_by("pk").first().number
    if extra.get("method"):  # the default card, which pays every subscription but the past-due ones
        kwargs["method_id"] = account.payment_methods.get(is_default=True).pk
    if extra.get("subscription"):
        order = "pk" if extra["subscription"] == "first" else "-pk"
        kwargs["subscription_id"] = account.subscriptions.order_by(order).first().pk
    return reverse(name, kwargs=kwargs) + extra.get("query", "")


@pytest.mark.parametrize(("name", "extra"), PAGES, ids=[f"{n}{e.get('query', '')}" for n, e in PAGES])
def test_query_count_is_flat_from_1_to_200_subscriptions(client, django_assert_num_queries, name, extra):
    small, small_users = account_with_subscriptions(1, past_due=1)
    large, large_users = account_with_subscriptions(200, past_due=3)

    client.force_login(small_users["admin"])
    with CaptureQueriesContext(connection) as small_queries:
        assert client.get(_url(name, extra, small)).status_code == 200

    client.force_login(large_users["admin"])
    with django_assert_num_queries(len(small_queries)):
        response = client.get(_url(name, extra, large))
    assert response.status_code == 200
    # A page of a large account shows at most one page of rows.
    assert len(small_queries) <= 12, [q["sql"] for q in small_queries]
