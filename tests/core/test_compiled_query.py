"""billing_portal.compiled.CompiledQuery: the ORM query compiled once, run with new ids, returns what the
QuerySet returns; and it refuses the queries it could not run faithfully."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from django.db import connection, transaction
from django.db.models import Exists, F, IntegerField, OuterRef, Q, QuerySet, Value
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from accounts.models import BillingAccount, User
from billing_portal.compiled import CompiledQuery, CompiledRows
from dunning.models import InvoiceDunning
from payments.models import PaymentMethod
from subscriptions.models import Invoice, Subscription
from tests.factories import (
    BillingAccountFactory,
    InvoiceFactory,
    PaymentMethodFactory,
    SubscriptionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _past_due_on_cards(*, account_id: int, method_ids: list[int]) -> QuerySet[Invoice]:
    """Ids in a join, an IN list and a subquery; the account id twice."""
    return (
        Invoice.objects.filter(
            account_id=account_id,
            status=Invoice.Status.PAST_DUE,
            amount_due_minor__gt=0,
            subscription__in=Subscription.objects.filter(
                account_id=account_id, payment_method_id__in=method_ids
            ).values("pk"),
        )
        .exclude(number="")
        .order_by("-amount_due_minor", "pk")
    )


def _world() -> tuple[list[BillingAccount], list[int]]:
    accounts, cards = [], []
    for a in range(2):
        account = cast(BillingAccount, BillingAccountFactory())
        accounts.append(account)
        for c in range(3):
            card = cast(PaymentMethod, PaymentMethodFactory(account=account))
            cards.append(card.pk)
            sub = SubscriptionFactory(account=account, payment_method=card)
            for i in range(3):
                InvoiceFactory(
                    subscription=sub,
                    status=[Invoice.Status.PAST_DUE, Invoice.Status.OPEN][(a + c + i) % 2],
                    total_minor=1200,
                    amount_due_minor=[0, 500, 1200][(c + i) % 3],
                )
    return accounts, cards


def _rows(invoices: list[Invoice]) -> list[tuple]:
    return [(i.pk, i.number, i.status, i.amount_due_minor, i.due_on, i.subscription_id) for i in invoices]


def test_it_returns_what_the_queryset_returns_for_every_account_and_set_of_cards():
    accounts, cards = _world()
    compiled = CompiledQuery(_past_due_on_cards)
    checked = 0
    for account in accounts:
        for method_ids in ([cards[0]], cards[:2], cards[1:4], cards, [cards[5], cards[2]], [-1]):
            expected = list(_past_due_on_cards(account_id=account.pk, method_ids=method_ids))
            found = compiled(account_id=account.pk, method_ids=method_ids)
            assert _rows(found) == _rows(expected)
            assert all(type(i) is Invoice and i._state.adding is False for i in found)
            checked += len(expected)
    assert checked > 10  # the comparison saw rows, not only empty answers


def test_it_compiles_once_per_shape_and_sends_nothing_for_an_empty_list(django_assert_num_queries):
    accounts, cards = _world()
    builds = []

    def build(**ids):
        builds.append(ids)
        return _past_due_on_cards(**ids)

    compiled = CompiledQuery(build)
    for account in accounts:
        compiled(account_id=account.pk, method_ids=cards[:2])
        compiled(account_id=account.pk, method_ids=cards[3:5])
        compiled(account_id=account.pk, method_ids=cards[:3])
    # Two lists of 2 share a statement; a list of 3 is another. Each is built with two sets of stand-ins.
    assert len(builds) == 4
    with django_assert_num_queries(0):
        assert compiled(account_id=accounts[0].pk, method_ids=[]) == []


def test_it_selects_related_over_a_foreign_key_as_the_queryset_does(django_assert_num_queries):
    accounts, cards = _world()
    owner = cast(User, UserFactory(full_name="Megan Bowen"))
    PaymentMethod.objects.filter(pk__in=cards[::2]).update(owner=owner)

    def build(*, account_id: int) -> QuerySet[PaymentMethod]:
        return PaymentMethod.objects.filter(account_id=account_id).select_related("owner").order_by("-pk")

    compiled = CompiledQuery(build)
    for account in accounts:
        expected = list(build(account_id=account.pk))
        with django_assert_num_queries(1):
            found = compiled(account_id=account.pk)
            owners = [(m.owner.pk, m.owner.display_name) if m.owner else None for m in found]
        assert [(m.pk, m.owner_id, m.status, m.created_at) for m in found] == [
            (m.pk, m.owner_id, m.status, m.created_at) for m in expected
        ]
        assert owners == [(m.owner.pk, m.owner.display_name) if m.owner else None for m in expected]
        assert {o for o in owners if o} == {(owner.pk, "Megan Bowen")}
        assert None in owners


@pytest.mark.parametrize(
    ("build", "refusal"),
    [
        (lambda account_id: Invoice.objects.filter(account_id=account_id).values("pk"), "plain model"),
        (lambda account_id: Invoice.objects.filter(account_id=account_id).only("pk"), "plain model"),
        (lambda account_id: Invoice.objects.filter(account_id=account_id).defer("number"), "plain model"),
        (
            lambda account_id: Invoice.objects.filter(account_id=account_id).prefetch_related("lines"),
            "plain model",
        ),
    ],
    ids=["values", "only", "defer", "prefetch_related"],
)
def test_it_refuses_queries_it_could_not_map_back(build, refusal):
    with pytest.raises(TypeError, match=refusal):
        CompiledQuery(build)(account_id=1)


def test_it_refuses_an_id_that_does_not_reach_the_sql_as_a_parameter():
    # A value used in Python (here turned positive) would be compiled in as the stand-in's value.
    with pytest.raises(TypeError, match="looks like a changed stand-in"):
        CompiledQuery(lambda account_id: Invoice.objects.filter(account_id=account_id + 1))(account_id=1)
    with pytest.raises(TypeError, match="did not reach the SQL"):
        CompiledQuery(lambda account_id: Invoice.objects.filter(account_id=abs(account_id)))(account_id=1)


def test_nested_select_related_annotations_and_row_locks_come_back_as_the_queryset_gives_them(
    django_assert_num_queries,
):
    accounts, _cards = _world()
    paid = Invoice.objects.filter(account=accounts[0]).order_by("pk").first()
    assert paid is not None
    Invoice.objects.filter(pk=paid.pk).update(subscription=None)  # a null key: nothing below it

    def build(*, account_id: int) -> QuerySet[Invoice]:
        return (
            Invoice.objects.filter(account_id=account_id)
            .select_related("subscription__product", "subscription__payment_method__owner", "account")
            .select_for_update(of=("self",))
            .annotate(
                open_on_card=Exists(
                    Subscription.objects.filter(
                        payment_method_id=OuterRef("subscription__payment_method_id"),
                        status=Subscription.Status.ACTIVE,
                    )
                ),
                doubled=F("amount_due_minor") * 2,
            )
            .order_by("pk")
        )

    def seen(invoices: list[Invoice]) -> list[tuple]:
        rows = []
        for i in invoices:
            sub = i.subscription
            rows.append(
                (
                    *_rows([i])[0],
                    i.account.name,
                    i.open_on_card,
                    i.doubled,
                    None if sub is None else (sub.pk, sub.product.name, sub.payment_method.last4),
                    None if sub is None or sub.payment_method.owner is None else sub.payment_method.owner.pk,
                )
            )
        return rows

    compiled = CompiledQuery(build)
    for account in accounts:
        with transaction.atomic():
            expected = seen(list(build(account_id=account.pk)))
            with django_assert_num_queries(1):
                found = seen(compiled(account_id=account.pk))
        assert found == expected
        assert len(found) == 9
        if account == accounts[0]:
            assert found[0][-2] is None  # the invoice without a subscription


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_outside_a_transaction_is_refused_as_the_orm_refuses_it():
    compiled = CompiledQuery(
        lambda account_id: Invoice.objects.filter(account_id=account_id).select_for_update()
    )
    with transaction.atomic():
        assert compiled(account_id=1) == []  # compiled inside one, as the ORM requires
    if connection.features.has_select_for_update:  # SQLite locks no rows: Django lets it pass there
        with pytest.raises(TransactionManagementError):
            compiled(account_id=1)
        with pytest.raises(TransactionManagementError):
            list(Invoice.objects.filter(account_id=1).select_for_update())


def test_a_one_to_one_key_caches_both_sides_as_the_queryset_does(django_assert_num_queries):
    accounts, _cards = _world()
    invoices = list(Invoice.objects.filter(account=accounts[1]).order_by("pk")[:3])
    InvoiceDunning.objects.bulk_create(
        InvoiceDunning(invoice=i, last_decline_code="do_not_honor") for i in invoices
    )

    def build(*, account_id: int) -> QuerySet[InvoiceDunning]:
        return InvoiceDunning.objects.filter(invoice__account_id=account_id).select_related("invoice")

    rows = CompiledQuery(build)(account_id=accounts[1].pk)
    with django_assert_num_queries(0):
        assert sorted(row.invoice.number for row in rows) == sorted(i.number for i in invoices)
        assert all(row.invoice.dunning is row for row in rows)


def test_an_empty_list_means_what_the_queryset_makes_of_it():
    """`pk__in=[]` matches nothing on its own, but under an OR the other branch still counts."""
    accounts, cards = _world()

    def build(*, account_id: int, method_ids: list[int]) -> QuerySet[PaymentMethod]:
        return PaymentMethod.objects.filter(Q(pk__in=method_ids) | Q(account_id=account_id)).order_by("pk")

    compiled = CompiledQuery(build)
    expected = list(build(account_id=accounts[0].pk, method_ids=[]))
    assert len(expected) == 3
    assert [m.pk for m in compiled(account_id=accounts[0].pk, method_ids=[])] == [m.pk for m in expected]
    assert len(compiled(account_id=accounts[0].pk, method_ids=cards[3:4])) == 4


def test_a_reverse_one_to_one_comes_back_there_or_not_as_the_queryset_caches_it(django_assert_num_queries):
    accounts, _cards = _world()
    with_row = list(Invoice.objects.filter(account=accounts[0]).order_by("pk")[::2])
    InvoiceDunning.objects.bulk_create(
        InvoiceDunning(invoice=i, last_decline_code="insufficient_funds") for i in with_row
    )

    def build(*, account_id: int) -> QuerySet[Invoice]:
        return Invoice.objects.filter(account_id=account_id).select_related("dunning").order_by("pk")

    def seen(invoices: list[Invoice]) -> list[tuple]:
        rows = []
        for i in invoices:
            try:
                rows.append((i.pk, i.dunning.pk, i.dunning.last_decline_code, i.dunning.invoice is i))
            except InvoiceDunning.DoesNotExist:
                rows.append((i.pk, None, None, None))
        return rows

    compiled = CompiledQuery(build)
    for account in accounts:
        expected = seen(list(build(account_id=account.pk)))
        found = compiled(account_id=account.pk)
        with django_assert_num_queries(0):  # present or absent, both cached
            assert seen(found) == expected
    assert sum(row[1] is not None for row in seen(compiled(account_id=accounts[0].pk))) == len(with_row) > 0


def test_an_aware_datetime_is_a_parameter_adapted_as_the_orm_adapts_it():
    accounts, _cards = _world()
    base = timezone.now().replace(microsecond=0)
    invoices = list(Invoice.objects.order_by("pk"))
    for n, invoice in enumerate(invoices):
        invoice.next_attempt_at = base + dt.timedelta(hours=n % 7, microseconds=n)
    Invoice.objects.bulk_update(invoices, ["next_attempt_at"])

    def build(*, account_id: int, now: dt.datetime) -> QuerySet[Invoice]:
        return Invoice.objects.filter(account_id=account_id, next_attempt_at__lte=now).order_by("pk")

    compiled = CompiledQuery(build)
    amsterdam = dt.timezone(dt.timedelta(hours=1))
    sizes = set()
    for account in accounts:
        for now in (
            base - dt.timedelta(seconds=1),
            base,
            base + dt.timedelta(hours=3, microseconds=5),
            (base + dt.timedelta(hours=5)).astimezone(amsterdam),  # another offset: the same instant
            base + dt.timedelta(days=1),
        ):
            expected = [i.pk for i in build(account_id=account.pk, now=now)]
            assert [i.pk for i in compiled(account_id=account.pk, now=now)] == expected
            sizes.add(len(expected))
    assert len(sizes) >= 4  # the comparisons cut the rows in different places


@pytest.mark.parametrize(
    "build",
    [
        lambda now: Invoice.objects.filter(next_attempt_at__gte=now - dt.timedelta(days=30)),
        lambda now: Invoice.objects.filter(due_on__lt=now.date()),
        lambda now: Invoice.objects.filter(due_on__lt=timezone.localdate(now)),
        lambda now: Invoice.objects.filter(created_at__date=now),
    ],
    ids=["moved", "its_date", "its_local_date", "date_lookup"],
)
def test_a_value_worked_out_from_the_datetime_is_refused(build):
    with pytest.raises(TypeError, match="looks like a changed stand-in"):
        CompiledQuery(build)(now=timezone.now())


def test_a_date_is_a_parameter_and_a_date_worked_out_from_it_is_refused():
    accounts, _cards = _world()
    base = timezone.localdate()
    invoices = list(Invoice.objects.order_by("pk"))
    for n, invoice in enumerate(invoices):
        invoice.issued_on = base - dt.timedelta(days=40)
        invoice.due_on = base + dt.timedelta(days=n % 5)
    Invoice.objects.bulk_update(invoices, ["issued_on", "due_on"])

    def build(*, account_id: int, today: dt.date) -> QuerySet[Invoice]:
        return Invoice.objects.filter(account_id=account_id, due_on__lt=today).order_by("pk")

    compiled = CompiledQuery(build)
    sizes = set()
    for account in accounts:
        for days in range(6):
            today = base + dt.timedelta(days=days)
            expected = [i.pk for i in build(account_id=account.pk, today=today)]
            assert [i.pk for i in compiled(account_id=account.pk, today=today)] == expected
            sizes.add(len(expected))
    assert len(sizes) >= 4
    with pytest.raises(TypeError, match="looks like a changed stand-in"):
        CompiledQuery(lambda today: Invoice.objects.filter(due_on__lt=today - dt.timedelta(days=1)))(
            today=base
        )


def test_value_rows_and_their_union_come_back_as_the_queryset_gives_them():
    accounts, cards = _world()
    today = timezone.localdate()
    Invoice.objects.filter(
        pk__in=list(Invoice.objects.order_by("pk").values_list("pk", flat=True))[::3]
    ).update(issued_on=today - dt.timedelta(days=60), due_on=today - dt.timedelta(days=1))

    def build(*, account_id: int, today: dt.date, method_ids: list[int]) -> QuerySet:
        late = Invoice.objects.filter(account_id=account_id, due_on__lt=today).order_by()
        carded = PaymentMethod.objects.filter(account_id=account_id, pk__in=method_ids).order_by()
        return (
            late.annotate(kind=Value(0, output_field=IntegerField()))
            .values_list("kind", "pk")
            .union(
                carded.annotate(kind=Value(1, output_field=IntegerField())).values_list("kind", "pk"),
                all=True,
            )
            .order_by()
        )

    def flat(*, account_id: int) -> QuerySet:
        return Invoice.objects.filter(account_id=account_id).order_by("-pk").values_list("pk", flat=True)

    rows, flats = CompiledRows(build), CompiledRows(flat)
    seen, kinds = 0, set()
    for account in accounts:
        for method_ids in (cards[:1], cards[:4], cards):
            expected = sorted(build(account_id=account.pk, today=today, method_ids=method_ids))
            assert sorted(rows(account_id=account.pk, today=today, method_ids=method_ids)) == expected
            kinds |= {kind for kind, _pk in expected}
            seen += len(expected)
        assert flats(account_id=account.pk) == list(flat(account_id=account.pk))
    assert seen > 10
    assert kinds == {0, 1}
    with pytest.raises(TypeError, match="values_list"):
        CompiledRows(lambda account_id: Invoice.objects.filter(account_id=account_id))(account_id=1)
    with pytest.raises(TypeError, match="plain model"):
        CompiledQuery(
            lambda account_id: Invoice.objects.filter(account_id=account_id).union(Invoice.objects.all())
        )(account_id=1)


def test_a_string_is_a_parameter_and_a_string_worked_out_from_it_is_refused():
    _world()
    numbers = list(Invoice.objects.order_by("pk").values_list("number", flat=True))

    def build(*, number: str) -> QuerySet[Invoice]:
        return Invoice.objects.filter(number=number).order_by("pk")[:1]

    compiled = CompiledQuery(build)
    for number in [*numbers[:5], "", "no such number", "it's %s; --"]:
        assert [i.pk for i in compiled(number=number)] == [i.pk for i in build(number=number)]
    assert len(compiled(number=numbers[0])) == 1
    for derived in (
        lambda number: Invoice.objects.filter(number__startswith=number),
        lambda number: Invoice.objects.filter(number=number.upper()),
        lambda number: Invoice.objects.filter(number__contains=number),
    ):
        with pytest.raises(TypeError, match=r"looks like a changed stand-in|did not reach the SQL"):
            CompiledQuery(derived)(number=numbers[0])
    # iexact: UPPER(x) = UPPER(%s) on PostgreSQL runs faithfully; SQLite's LIKE escapes the value: refused.
    iexact = CompiledQuery(lambda number: Invoice.objects.filter(number__iexact=number))
    if connection.vendor == "sqlite":
        with pytest.raises(TypeError, match="did not reach the SQL"):
            iexact(number=numbers[1].lower())
    else:
        assert [i.number for i in iexact(number=numbers[1].lower())] == [numbers[1]]


def test_a_naive_datetime_is_refused():
    compiled = CompiledQuery(lambda now: Invoice.objects.filter(next_attempt_at__lte=now))
    with pytest.raises(TypeError, match="aware datetime"):
        compiled(now=dt.datetime(2026, 12, 1, 9, 0))  # naive: the value under test


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_on_postgresql_the_statement_is_prepared_once_per_connection_and_still_counted(
    django_assert_num_queries,
):
    accounts, _cards = _world()

    def build(*, account_id: int) -> QuerySet[Invoice]:
        return Invoice.objects.filter(account_id=account_id).order_by("pk")

    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND statement LIKE %s",
                ['%"subscriptions_invoice"."account_id" = $1%'],
            )
            return cursor.fetchone()[0]

    compiled = CompiledQuery(build)
    before = prepared()
    for _round in range(3):
        for account in accounts:
            with django_assert_num_queries(1) as logged:  # seen by Django's query log, like any other
                found = compiled(account_id=account.pk)
            # and logged as the client-binding cursor sends a statement: its values in place
            assert logged.captured_queries[0]["sql"].startswith("SELECT ")
            assert (
                f'"subscriptions_invoice"."account_id" = {account.pk} ' in logged.captured_queries[0]["sql"]
            )
            assert [i.pk for i in found] == [i.pk for i in build(account_id=account.pk)]
    assert prepared() == before + 1


@pytest.mark.parametrize(
    ("build", "ids"),
    [
        # the keyword reaches the SQL unchanged too, so only the second compilation shows the derived value
        (
            lambda *, number: Invoice.objects.filter(Q(number=number) | Q(number__startswith=number)),
            {"number": "INV-1"},
        ),
        (
            lambda *, number: Invoice.objects.filter(Q(number=number) | Q(number=number.upper())),
            {"number": "inv-1"},
        ),
        (
            lambda *, account_id: Invoice.objects.filter(
                Q(account_id=account_id) | Q(number=str(account_id))
            ),
            {"account_id": 1},
        ),
    ],
    ids=["startswith", "upper", "str-of-an-id"],
)
def test_a_value_worked_out_from_a_stand_in_is_refused_even_beside_the_stand_in_itself(build, ids):
    with pytest.raises(TypeError, match="worked out from a stand-in"):
        CompiledQuery(build)(**ids)


def test_a_list_with_none_or_an_empty_sequence_of_any_kind_runs_the_queryset():
    _world()
    invoices = list(Invoice.objects.order_by("pk").values_list("pk", flat=True))

    def build(*, invoice_ids) -> QuerySet[Invoice]:
        return Invoice.objects.exclude(pk__in=invoice_ids).order_by("pk")

    compiled = CompiledQuery(build)
    # The ORM drops None from an IN list; NOT IN (…, NULL) would match nothing. (Typed callers cannot pass
    # one; an untyped caller can.)
    with_none: list[Any] = [invoices[0], None]
    assert [i.pk for i in compiled(invoice_ids=with_none)] == invoices[1:]
    assert [i.pk for i in compiled(invoice_ids=range(0))] == invoices
    assert [i.pk for i in compiled(invoice_ids={}.keys())] == invoices
    assert [i.pk for i in compiled(invoice_ids=range(invoices[0], invoices[0] + 1))] == invoices[1:]
    # So does one too long for its stand-ins (they would run into the next keyword's), instead of raising.
    assert [i.pk for i in compiled(invoice_ids=[invoices[0]] * 500_000)] == invoices[1:]
    rows = CompiledRows(lambda *, invoice_ids: build(invoice_ids=invoice_ids).values_list("pk", flat=True))
    assert rows(invoice_ids=with_none) == invoices[1:]
    assert rows(invoice_ids=()) == invoices
