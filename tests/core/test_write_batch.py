"""billing_portal.batch.WriteBatch: writes sent together, in order, in one round trip on PostgreSQL.

Each statement still sees the ones before it, every row count and new key comes back, an error anywhere
rolls the caller's transaction back, and a database or setting that cannot take several statements in one
query gets them one by one.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Subquery
from django.test.utils import CaptureQueriesContext

from accounts.models import BillingAccount
from audit.models import AuditEvent
from billing_portal.batch import WriteBatch
from tests.factories import BillingAccountFactory

pytestmark = pytest.mark.django_db


def _new_account(domain: str) -> BillingAccount:
    template = BillingAccountFactory.build(domain=domain)
    return BillingAccount(
        name=template.name,
        domain=domain,
        currency=template.currency,
        notification_email=template.notification_email,
        country=template.country,
    )


def test_a_batch_writes_in_order_with_row_counts_and_new_keys_in_one_round_trip_on_postgresql():
    existing = BillingAccountFactory(name="Before")
    new = _new_account("batched.example")
    by_domain = Subquery(BillingAccount.objects.filter(domain="batched.example").values("pk")[:1])
    events = [
        # Names the account inserted by the statement before it, by its unique domain: no key known yet.
        AuditEvent(account_id=by_domain, actor_label="test", action="batch.one", message="first"),
        AuditEvent(account_id=by_domain, actor_label="test", action="batch.two", message="second"),
    ]
    batch = WriteBatch()
    batch.insert([new], returning=True)
    batch.insert(events, returning=True)
    batch.update(BillingAccount.objects.filter(pk=existing.pk), name="After")
    batch.update(BillingAccount.objects.filter(pk=-1), name="Nobody")
    batch.update(BillingAccount.objects.filter(pk__in=[]), name="Nothing")  # nothing to send, as update()
    assert len(batch) == 5
    assert new.pk is None
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        batch.execute()
    sent = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    if connection.vendor == "postgresql":
        assert len(sent) == 1  # one query string: one round trip
        assert sent[0].count(";\n") == 3
    else:
        assert len(sent) == 4
    assert batch.rowcounts() == [1, 2, 1, 0, 0]
    assert all(event.pk is not None for event in events)
    assert new.pk is not None
    assert not new._state.adding
    assert BillingAccount.objects.get(pk=new.pk).domain == "batched.example"
    assert list(
        AuditEvent.objects.filter(account_id=new.pk).order_by("pk").values_list("action", flat=True)
    ) == ["batch.one", "batch.two"]
    assert all(event.created_at is not None for event in events)  # auto_now_add, as bulk_create sets it
    existing.refresh_from_db()
    assert existing.name == "After"


@pytest.mark.django_db(transaction=True)
def test_an_error_in_any_statement_raises_and_the_callers_transaction_keeps_none_of_it():
    taken = BillingAccountFactory(domain="taken.example")
    batch = WriteBatch()
    batch.insert([_new_account("fresh.example")], returning=True)
    batch.update(BillingAccount.objects.filter(pk=taken.pk), name=F("name"))
    batch.insert([_new_account("taken.example")])  # the unique domain: refused
    with pytest.raises(IntegrityError), transaction.atomic():
        batch.execute()
    assert not BillingAccount.objects.filter(domain="fresh.example").exists()
    assert BillingAccount.objects.filter(domain="taken.example").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_error_caught_inside_the_callers_transaction_still_rolls_the_whole_batch_back():
    """As save() and update() do: the failed batch marks the caller's atomic block, so what ran before the
    error (statement by statement, on SQLite) is never committed without the rest."""
    BillingAccountFactory(domain="taken.example")
    batch = WriteBatch()
    batch.insert([_new_account("fresh.example")])
    batch.insert([_new_account("taken.example")])
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            batch.execute()
        assert transaction.get_rollback()
    assert not BillingAccount.objects.filter(domain="fresh.example").exists()


def test_with_server_side_binding_the_statements_go_one_by_one(settings):
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("server_side_binding")
    options["server_side_binding"] = True  # psycopg then refuses parameters in a multi-statement query
    try:
        first, second = _new_account("one.example"), _new_account("two.example")
        batch = WriteBatch()
        batch.insert([first], returning=True)
        batch.insert([second], returning=True)
        with transaction.atomic(), CaptureQueriesContext(connection) as captured:
            batch.execute()
    finally:
        if before is None:
            options.pop("server_side_binding")
        else:
            options["server_side_binding"] = before
    sent = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(sent) == 2
    assert first.pk is not None
    assert second.pk is not None
    assert first.pk != second.pk


def test_what_a_batch_refuses():
    account = BillingAccount.objects.get(pk=BillingAccountFactory().pk)
    batch = WriteBatch()
    with pytest.raises(TypeError, match="plain filtered"):
        batch.update(BillingAccount.objects.all()[:1], name="x")
    with pytest.raises(TypeError, match="new rows"):
        batch.insert([account])  # has a key: not a new row
    with pytest.raises(ValueError, match="save account before"):
        batch.insert([AuditEvent(account=_new_account("unsaved.example"), action="x", message="x")])
    batch.insert([])  # nothing to write: no statement
    assert len(batch) == 0
    batch.execute()
    with pytest.raises(RuntimeError, match="executed already"):
        batch.execute()
    with pytest.raises(RuntimeError, match="executed already"):
        batch.update(BillingAccount.objects.filter(pk=account.pk), name="late")
