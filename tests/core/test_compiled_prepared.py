"""A compiled query's prepared statement outlives a migration that changes a column it reads (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import NotSupportedError, connection, transaction
from django.db.models import QuerySet

from accounts.models import BillingAccount
from billing_portal.compiled import CompiledRows
from tests.factories import BillingAccountFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),  # autocommit, as the dunning run's reads outside a transaction
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"),
]


def _names(*, account_id: int) -> QuerySet[BillingAccount, str]:
    return BillingAccount.objects.filter(pk=account_id).values_list("name", flat=True)


@pytest.fixture
def other_session() -> Iterator[psycopg.Connection]:
    """A second session on the test database, as a deploy's `migrate` would be; the column put back after."""
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        autocommit=True,
    ) as other:
        yield other
        _migrate(other, BillingAccount._meta.get_field("name").max_length)


def _migrate(other: psycopg.Connection, length: int | None) -> None:
    other.execute(f'ALTER TABLE accounts_billingaccount ALTER COLUMN "name" TYPE varchar({length})')


def test_a_read_in_autocommit_prepares_again_after_the_column_changed(other_session):
    account = BillingAccountFactory(name="Contoso")
    compiled = CompiledRows(_names)
    assert compiled(account_id=account.pk) == ["Contoso"]
    _migrate(other_session, 201)  # the model's is 200
    # PostgreSQL refuses the old plan ("cached plan must not change result type"): prepared again, once.
    assert compiled(account_id=account.pk) == ["Contoso"]
    assert compiled(account_id=account.pk) == ["Contoso"]
    _migrate(other_session, 202)
    assert compiled(account_id=account.pk) == ["Contoso"]


def test_inside_a_transaction_the_error_is_the_transactions_and_the_next_call_works(other_session):
    account = BillingAccountFactory(name="Contoso")
    compiled = CompiledRows(_names)
    assert compiled(account_id=account.pk) == ["Contoso"]
    _migrate(other_session, 201)
    with pytest.raises(NotSupportedError, match="cached plan"), transaction.atomic():
        compiled(account_id=account.pk)  # the transaction is aborted: nothing to retry in it
    assert compiled(account_id=account.pk) == ["Contoso"]  # its rollback let the statement be prepared anew
    with transaction.atomic():
        assert compiled(account_id=account.pk) == ["Contoso"]


def test_datetimes_are_read_in_the_time_zone_django_reads_them_in(settings):
    account = BillingAccountFactory(name="Contoso")
    compiled = CompiledRows(_created)
    assert compiled(account_id=account.pk) == list(_created(account.pk))
    settings.USE_TZ = False  # the kept connection's loader still reads aware datetimes
    assert compiled(account_id=account.pk) == list(_created(account.pk))
    assert compiled(account_id=account.pk)[0].tzinfo is None


def _created(account_id: int) -> QuerySet[BillingAccount, object]:
    return BillingAccount.objects.filter(pk=account_id).values_list("created_at", flat=True)
