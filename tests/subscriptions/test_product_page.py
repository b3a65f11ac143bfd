"""product_page is Your products' one hand-written statement: the same rows, in the same order, with the
same values and page numbers as the ORM query and Paginator it replaced (written out here as the reference)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from billing.selectors import _PRODUCT_ROW_COLUMNS, product_page
from subscriptions.models import Subscription
from tests.factories import BillingAccountFactory, PaymentMethodFactory, ProductFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

S = Subscription.Status


def _reference(account):
    attention = Case(
        When(status=S.WARNED, then=Value(0)),
        When(status=S.PAST_DUE, then=Value(0)),
        When(status=S.DISABLED, then=Value(1)),
        When(status=S.ACTIVE, then=Value(2)),
        default=Value(3),
        output_field=IntegerField(),
    )
    return (
        Subscription.objects.filter(account=account)
        .exclude(status=S.DELETED)
        .annotate(attention=attention)
        .order_by("attention", "product__name", "pk")
        .values(*_PRODUCT_ROW_COLUMNS)
    )


@pytest.fixture
def account():
    account = BillingAccountFactory()
    other = BillingAccountFactory()
    visa = PaymentMethodFactory(account=account, brand="visa", last4="0341", status="declined")
    mastercard = PaymentMethodFactory(account=account, brand="mastercard", last4="4444")
    names = ["Visio", "Azure", "Teams", "Exchange", "Power BI"]
    now = timezone.now()
    for i, (status, name) in enumerate(itertools.product([s for s, _ in S.choices], names)):
        extra = {}
        if status in (S.PAST_DUE, S.WARNED, S.DISABLED):
            extra["past_due_since"] = now
        if status == S.DISABLED:
            extra["disabled_at"] = now
        if status in (S.CANCELLED, S.DELETED):
            extra["cancelled_at"] = now
            extra["next_lifecycle_at"] = now + dt.timedelta(days=i)
        SubscriptionFactory(
            account=account,
            product=ProductFactory(code=f"p-{name}", name=name),
            status=status,
            quantity=1 + i,
            payment_method=[visa, mastercard, None][i % 3],
            **extra,
        )
    SubscriptionFactory(account=other, product=ProductFactory(code="p-Azure", name="Azure"))
    return account


def test_every_page_is_the_reference_page(account):
    reference = Paginator(_reference(account), 4)
    assert reference.count == 25  # five statuses but deleted, five products
    for number in range(1, reference.num_pages + 1):
        page = product_page(account=account, number=number, per_page=4)
        expected = reference.page(number)
        assert list(page) == list(expected)
        assert (page.number, page.paginator.count, page.paginator.num_pages) == (
            number,
            reference.count,
            reference.num_pages,
        )
        assert (page.start_index(), page.end_index(), page.has_next()) == (
            expected.start_index(),
            expected.end_index(),
            expected.has_next(),
        )
    first = product_page(account=account, number=1, per_page=4)[0]
    assert isinstance(first["current_period_end"], dt.date)
    cancelled = next(
        row
        for n in range(1, 8)
        for row in product_page(account=account, number=n, per_page=4)
        if row["status"] == "cancelled"
    )
    assert timezone.is_aware(cancelled["next_lifecycle_at"])


@pytest.mark.parametrize("number", [8, 9, 10**6])
def test_a_page_past_the_end_is_the_last_page(account, number):
    page = product_page(account=account, number=number, per_page=4)
    assert page.number == 7
    assert list(page) == list(Paginator(_reference(account), 4).page(7))


def test_an_account_without_subscriptions_has_one_empty_page():
    empty = BillingAccountFactory()
    for number in (1, 2):
        page = product_page(account=empty, number=number, per_page=25)
        assert (page.number, page.paginator.count, list(page)) == (1, 0, [])


def test_past_the_end_costs_two_queries_when_the_first_page_is_the_last(account, django_assert_num_queries):
    with django_assert_num_queries(2):
        page = product_page(account=account, number=2, per_page=30)
    assert (page.number, page.paginator.count) == (1, 25)
    assert list(page) == list(Paginator(_reference(account), 30).page(1))
    with django_assert_num_queries(3):
        assert product_page(account=account, number=9, per_page=4).number == 7
    with django_assert_num_queries(1):
        assert product_page(account=account, number=7, per_page=4).number == 7
