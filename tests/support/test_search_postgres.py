"""On PostgreSQL the partial-match keys are served by the trigram indexes of migration 0003."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import BillingAccount, User
from tests.factories import BillingAccountFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("trigram indexes exist on PostgreSQL only (SQLite falls back to a scan)")


def test_trigram_indexes_exist():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'support_%%_trgm'")
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {
        "support_account_name_trgm",
        "support_account_domain_trgm",
        "support_user_email_trgm",
    }
    assert all("gin_trgm_ops" in d for d in indexes.values())


def _plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # Tiny test tables: ask what the planner *can* use, not what is cheapest on ten rows.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_name_and_email_icontains_use_the_trigram_indexes():
    BillingAccountFactory.create_batch(5)
    plan = _plan(BillingAccount.objects.filter(name__icontains="northw").values("pk").order_by())
    assert "support_account_name_trgm" in plan
    plan = _plan(BillingAccount.objects.filter(domain__icontains="northw").values("pk").order_by())
    assert "support_account_domain_trgm" in plan
    plan = _plan(User.objects.filter(email__icontains="north").values("pk").order_by())
    assert "support_user_email_trgm" in plan
