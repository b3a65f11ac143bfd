"""invoice_page reads a page of the Invoices tab and the number of invoices on all pages in one statement:
the same rows, in the same order, with the same page numbers as the Paginator it replaced, whatever the
filters, and never another account's invoices."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.paginator import Paginator

from billing.selectors import INVOICE_ROW_COLUMNS, invoice_page
from subscriptions.models import Invoice
from subscriptions.selectors import invoices_for_account
from tests.factories import InvoiceFactory, SubscriptionFactory
from tests.pages_helpers import account_with_subscriptions

pytestmark = pytest.mark.django_db

FILTERS = [
    {},
    {"status": Invoice.Status.PAST_DUE},
    {"status": Invoice.Status.OPEN, "issued_from": dt.date(2026, 3, 1)},
    {"issued_to": dt.date(2026, 6, 30)},
    {"issued_from": dt.date(2026, 3, 1), "issued_to": dt.date(2026, 6, 30)},
    {"status": Invoice.Status.VOID},
]


@pytest.fixture
def account():
    account, _users = account_with_subscriptions(7, past_due=3)
    subs = list(account.subscriptions.order_by("pk"))
    for month in range(1, 12):  # invoices over the year, several on one day (the order breaks ties by id)
        for n in range(month % 3 + 1):
            issued = dt.date(2026, month, 1 + n % 2)
            InvoiceFactory(
                subscription=subs[(month + n) % len(subs)],
                status=Invoice.Status.PAST_DUE if month % 4 == 0 else Invoice.Status.OPEN,
                issued_on=issued,
                due_on=issued + dt.timedelta(days=30),
            )
    other, _ = account_with_subscriptions(2)
    SubscriptionFactory(account=other)
    return account


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_every_page_is_paginators_page_in_one_query(account, filters, django_assert_num_queries):
    invoices = invoices_for_account(account=account, **filters)
    reference = Paginator(invoices.values(*INVOICE_ROW_COLUMNS), 4)
    for number in range(1, reference.num_pages + 1):
        with django_assert_num_queries(1):
            page = invoice_page(invoices=invoices, number=number, per_page=4)
            rows = [{k: v for k, v in row.items() if k != "on_all_pages"} for row in page]
        assert rows == list(reference.page(number))
        assert (page.number, page.paginator.count, page.paginator.num_pages) == (
            number,
            reference.count,
            reference.num_pages,
        )


def test_a_page_past_the_end_is_the_last_page(account):
    invoices = invoices_for_account(account=account)
    reference = Paginator(invoices.values(*INVOICE_ROW_COLUMNS), 4)
    assert reference.num_pages > 2
    page = invoice_page(invoices=invoices, number=reference.num_pages + 5, per_page=4)
    assert page.number == reference.num_pages
    assert [row["number"] for row in page] == [row["number"] for row in reference.page(reference.num_pages)]


def test_no_invoices_is_one_empty_page(account):
    page = invoice_page(
        invoices=invoices_for_account(account=account, status=Invoice.Status.VOID), number=3, per_page=4
    )
    assert (list(page), page.number, page.paginator.count) == ([], 1, 0)
