"""billing_portal.batch.WriteBatch: writes sent together, in order, in one round trip on PostgreSQL.

Each statement still sees the ones before it, every row count and new key comes back, an error anywhere
rolls the caller's transaction back, and a database or setting that cannot take several statements in one
query gets them one by one.
"""

from __future__ import annotations

import pytest
import time_machine
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Subquery
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import BillingAccount
from audit.models import AuditEvent
from billing_portal import batch as batch_module
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


def _compiled_fresh(objs: list, *, returning: bool) -> tuple[str, tuple]:
    """What Django compiles for these rows, with no shape kept."""
    from django.db.models.sql import InsertQuery

    model = type(objs[0])
    fields = [
        f for f in model._meta.concrete_fields if not f.generated and not isinstance(f, models.AutoField)
    ]
    query = InsertQuery(model)
    query.insert_values(fields, objs)
    compiler = query.get_compiler("default")
    if returning:
        compiler.returning_fields = [model._meta.pk]
    ((sql, params),) = compiler.as_sql()
    return sql, tuple(params)


@pytest.mark.parametrize("rows", [1, 3])
def test_an_insert_compiled_once_sends_what_django_would_compile_for_the_new_rows(rows, monkeypatch):
    """The second batch of the same model and row count reuses the statement's text; its parameters are
    exactly those Django compiles (JSON values and, on PostgreSQL, UNNEST's column arrays included)."""
    monkeypatch.setattr(batch_module, "_insert_shapes", {})
    account = BillingAccountFactory()

    def events(tag: str) -> list[AuditEvent]:
        return [
            AuditEvent(
                account=account,
                actor_label="test",
                action=f"batch.{tag}",
                message=f"{tag} {n} it's 100% \\ done",
                data={"n": n, "tag": tag, "nested": [1, {"a": None}]},
            )
            for n in range(rows)
        ]

    first = WriteBatch()
    first.insert(events("first"), returning=True)
    shape = batch_module._insert_shapes[(AuditEvent, rows, True, "default")]
    assert shape is not None  # learnt: plain values
    assert shape.by_column == (connection.vendor == "postgresql" and rows > 1)
    second_rows = events("second")
    second = WriteBatch()
    with time_machine.travel(timezone.now(), tick=False):  # auto_now_add: the same moment both times
        second.insert(second_rows, returning=True)
        sent = second._statements[0]
        sql, params = _compiled_fresh(second_rows, returning=True)
    assert sent.sql == sql
    assert len(sent.params) == len(params)
    assert all(batch_module._same(a, b) for a, b in zip(sent.params, params, strict=True))
    with transaction.atomic():
        first.execute()
        second.execute()
    stored = AuditEvent.objects.filter(action="batch.second").order_by("pk")
    assert [(e.message, e.data) for e in stored] == [(e.message, e.data) for e in second_rows]


def test_an_insert_with_an_expression_is_compiled_every_time(monkeypatch):
    monkeypatch.setattr(batch_module, "_insert_shapes", {})
    BillingAccountFactory(domain="named.example")
    by_domain = Subquery(BillingAccount.objects.filter(domain="named.example").values("pk")[:1])
    plain_account = BillingAccountFactory()
    batch = WriteBatch()
    batch.insert([AuditEvent(account=plain_account, actor_label="t", action="a.plain", message="m")])
    batch.insert([AuditEvent(account_id=by_domain, actor_label="t", action="a.expr", message="m")])
    with transaction.atomic():
        batch.execute()
    assert AuditEvent.objects.get(action="a.expr").account.domain == "named.example"
    assert AuditEvent.objects.get(action="a.plain").account_id == plain_account.pk
