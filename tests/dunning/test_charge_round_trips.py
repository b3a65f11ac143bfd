"""What one sweep charge costs the database, in round trips, BEGIN/COMMIT/SAVEPOINT included.

How it is counted, the same way on SQLite and PostgreSQL: the test runs with real transactions
(`transaction=True`), `CaptureQueriesContext` records every statement Django sends (SAVEPOINT and RELEASE
included), and the connection's own transaction calls are observed: each outermost `atomic` is one BEGIN
(PostgreSQL's is sent by psycopg and never shows up as a query) and each commit or rollback one more round
trip. SQLite's backend also logs its BEGIN and COMMIT as statements; those are dropped from the statements
so nothing is counted twice. A batch of writes (billing_portal.batch) is one query string on PostgreSQL, so
CaptureQueriesContext records it once: one round trip. SQLite runs the same statements one by one, and each is
counted.

The account run has a fixed cost (what is due, the card history, the lifecycle, the sweep lease) that does
not grow with the invoices charged; the limit is on the charge itself: everything `account_charge_due`
sends (its phase-1 transaction and phase 3; the gateway call left out), for one invoice and for N invoices
due on one card, which are one attempt.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from dunning import services
from dunning.policy import decline_table
from dunning.services import account_dunning_run
from notifications.models import Notice
from notifications.services import notices_requeue_stale
from payments import services as payment_services
from payments.models import PaymentAttempt
from subscriptions.models import Invoice, Subscription

from .helpers import INSUFFICIENT_FUNDS, seed_past_due

pytestmark = pytest.mark.django_db(transaction=True)

# One charged invoice, the gateway call left out. Measured before issue 12's work: 49 (3 BEGIN, 3 COMMIT,
# 43 statements); 44 after the account id, the idempotency key, the allocations and the amount are read
# once; 34 once the ledger reads each invoice and its money in one locked query and the restore and
# ledger write run without savepoints; 21 (2 BEGIN, 2 COMMIT, 17 statements, SQLite and PostgreSQL alike;
# the card history's one read now counted here) once the dunning run's checks share phase 1's transaction
# (one lock, one locked read of the due invoices with their card and any payment in flight, attempt numbers
# counted there, so no UPDATE after the charge), phase 3 reads the attempt's invoices, their sums and
# whether other past-due invoices hold their subscription in one query, restores only the subscription
# whose last past-due invoice is paid, and inserts the receipt without a savepoint.
# 18 (2 BEGIN, 2 COMMIT, 14 statements, SQLite and PostgreSQL alike) once phase 3 takes the account lock in
# the statement that reads and locks the attempt (payments.services.attempt_locked: the account by an
# InitPlan sub-select first, then the attempt), restores the subscription with one conditional UPDATE of
# the row it read with the allocations (no lock-and-read), and inserts its audit events ("payment.succeeded",
# "subscription.reactivated") in one INSERT (audit.services.audits_record).
# 12 on PostgreSQL (2 BEGIN, 2 COMMIT, 8 statements) once the writes nothing reads back go in one round trip
# each phase (billing_portal.batch.WriteBatch: the statements in one query string, each still its own
# statement): phase 1 = BEGIN, account lock, due invoices (locked, with card and payments in flight), card
# history, [INSERT attempt, INSERT allocations, UPDATE invoices (attempt numbers + lease)], COMMIT; phase 3 =
# BEGIN, account lock + attempt (locked), allocations with invoices (locked), UPDATE subscription (a
# conditional restore: its row count decides what follows, so it is sent alone), [UPDATE attempt, UPDATE
# allocations, UPDATE invoices to paid, INSERT audit events, INSERT receipt], COMMIT. Why phase 1's lock and
# read cannot be one statement: docs/ARCHITECTURE.md (Payments contract). The issue's own "floor charge" (two
# transactions, no allocations, ledger, restore or receipt) is 9. This limit only ever goes down.
MAX_ROUND_TRIPS = 12
# SQLite runs in-process: there are no round trips to save, and its driver takes one statement per call, so a
# batch's statements run one by one and are counted one by one (the 18 above, unchanged).
MAX_SQLITE_STATEMENTS = 18


def limit() -> int:
    """The bound for this database: round trips on PostgreSQL, statements (BEGIN/COMMIT included) on SQLite."""
    return MAX_ROUND_TRIPS if connection.vendor == "postgresql" else MAX_SQLITE_STATEMENTS


# A grouped charge of N invoices on one card (one attempt, one gateway call) costs the same: every
# statement above is one statement for all N invoices (bulk allocations, one UPDATE of the attempt numbers,
# one UPDATE of the allocations, one UPDATE of the invoices to paid). Per-invoice cost: 0.
GROUP_PER_INVOICE = 0
# A grouped charge that is DECLINED: the same phase 1, then phase 3 records the decline once (attempt, card,
# audit), marks each subscription past due once, and schedules each invoice on its own (its retry plan, its
# dunning row, read with the invoice so it is not asked for again). Measured at stop 18 before: 14 + 11 per
# invoice on PostgreSQL (the same subscription marked twice per invoice, each in a savepoint; the dunning row
# by get_or_create: SELECT, SAVEPOINT, INSERT, RELEASE). Now each invoice's schedule and dunning row join one
# batch: 21 on PostgreSQL whatever N; SQLite runs those two statements per invoice one by one.
DECLINE_BASE = {"postgresql": 21, "sqlite": 22}
DECLINE_PER_INVOICE = {"postgresql": 0, "sqlite": 2}
TRANSACTION_BOUNDARY = re.compile(r"^(BEGIN|COMMIT|ROLLBACK)\b", re.IGNORECASE)


@dataclass
class RoundTrips:
    statements: list[str] = field(default_factory=list)
    begins: int = 0
    ends: int = 0

    @property
    def total(self) -> int:
        return len(self.statements) + self.begins + self.ends


class Counter:
    """Statements through CaptureQueriesContext, BEGIN and COMMIT/ROLLBACK through the connection's calls."""

    def __init__(self, captured: CaptureQueriesContext) -> None:
        self.captured = captured
        self.begins = 0
        self.ends = 0

    def mark(self) -> tuple[int, int, int]:
        return (len(self.captured.captured_queries), self.begins, self.ends)

    def between(self, start: tuple[int, int, int], end: tuple[int, int, int]) -> RoundTrips:
        queries = self.captured.captured_queries[start[0] : end[0]]
        return RoundTrips(
            statements=[q["sql"] for q in queries if not TRANSACTION_BOUNDARY.match(q["sql"].strip())],
            begins=end[1] - start[1],
            ends=end[2] - start[2],
        )


@contextmanager
def round_trips() -> Iterator[Counter]:
    wrapper = connection._connection if hasattr(connection, "_connection") else connection
    real = {name: getattr(wrapper, name) for name in ("set_autocommit", "commit", "rollback")}
    counter: Counter

    def set_autocommit(autocommit: bool, *args: object, **kwargs: object) -> None:
        if not autocommit:
            counter.begins += 1
        real["set_autocommit"](autocommit, *args, **kwargs)

    def commit() -> None:
        counter.ends += 1
        real["commit"]()

    def rollback() -> None:
        counter.ends += 1
        real["rollback"]()

    with (
        mock.patch.object(wrapper, "set_autocommit", set_autocommit),
        mock.patch.object(wrapper, "commit", commit),
        mock.patch.object(wrapper, "rollback", rollback),
        # The receipt goes out from another worker; its task is not the charge's cost.
        mock.patch("notifications.services.notice_enqueue_delivery", return_value=True),
        mock.patch("notifications.services.notices_enqueue_delivery", return_value=True),
        CaptureQueriesContext(wrapper) as captured,
    ):
        counter = Counter(captured)
        yield counter


@dataclass
class Measured:
    charge: RoundTrips  # the charge step, the gateway call left out
    whole_run: RoundTrips
    gateway_calls: int
    report: Any


def measure_account_run(account_id: int) -> Measured:
    """One account run, with the charge step (account_charge_due) measured apart from the gateway."""
    charge = services.account_charge_due
    marks: list[tuple[int, int, int]] = []

    def measured_charge(**kwargs: Any) -> dict[int, str]:
        marks.append(counter.mark())
        try:
            return charge(**kwargs)
        finally:
            marks.append(counter.mark())

    gateway_charge = payment_services._gateway_charge
    gateway: list[tuple[int, int, int]] = []

    def measured_gateway(**kwargs: Any) -> Any:
        # The simulated bank keeps its cards in this database; a real gateway is not our round trip.
        gateway.append(counter.mark())
        try:
            return gateway_charge(**kwargs)
        finally:
            gateway.append(counter.mark())

    # The decline-code table is cached per process for a minute (dunning.policy): read it now, so a
    # measurement never pays for the cache's refresh.
    decline_table()
    with (
        round_trips() as counter,
        mock.patch.object(services, "account_charge_due", measured_charge),
        mock.patch.object(payment_services, "_gateway_charge", measured_gateway),
    ):
        start = counter.mark()
        report = account_dunning_run(account_id=account_id, now=timezone.now())
        whole_run = counter.between(start, counter.mark())
    assert len(marks) == 2
    # Everything the charge step sends outside the gateway calls.
    edges = [marks[0], *gateway, marks[1]]
    parts = [counter.between(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    charged = RoundTrips(
        statements=[s for p in parts for s in p.statements],
        begins=sum(p.begins for p in parts),
        ends=sum(p.ends for p in parts),
    )
    return Measured(charge=charged, whole_run=whole_run, gateway_calls=len(gateway) // 2, report=report)


def describe(measured: Measured) -> str:
    c = measured.charge
    return (
        f"{c.total} round trips ({c.begins} BEGIN, {c.ends} COMMIT/ROLLBACK, {len(c.statements)} statements; "
        f"the whole run {measured.whole_run.total}):\n" + "\n".join(c.statements)
    )


def test_one_sweep_charge_of_one_past_due_invoice_costs_at_most_max_round_trips():
    (invoice_id,) = seed_past_due(accounts=1, invoices_per_account=1)
    invoice = Invoice.objects.get(pk=invoice_id)
    measured = measure_account_run(invoice.account_id)
    assert measured.report.charged == {invoice_id: "succeeded"}
    assert measured.gateway_calls == 1
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.attempt_count == 2
    assert Subscription.objects.get(pk=invoice.subscription_id).status == Subscription.Status.ACTIVE
    assert Notice.objects.filter(account_id=invoice.account_id, kind="payment_received").count() == 1
    print(f"\n[{connection.vendor}] one invoice: " + describe(measured).split(":", 1)[0])
    assert measured.charge.total <= limit(), describe(measured)


@pytest.mark.parametrize("n", [2, 5, 20])
def test_all_due_invoices_on_one_card_are_one_gateway_call_at_a_bounded_cost(n):
    """N invoices due on one card: one attempt, one gateway call, and at most limit() + GROUP_PER_INVOICE × N
    round trips: the same as one invoice, whatever N."""
    invoice_ids = seed_past_due(accounts=1, invoices_per_account=n)
    account_id = Invoice.objects.get(pk=invoice_ids[0]).account_id
    measured = measure_account_run(account_id)
    assert measured.report.charged == dict.fromkeys(invoice_ids, "succeeded")
    assert measured.gateway_calls == 1
    (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
    assert sorted(attempt.allocations.values_list("invoice_id", flat=True)) == sorted(invoice_ids)
    assert attempt.amount_minor == 1800 * n
    assert Invoice.objects.filter(pk__in=invoice_ids, status=Invoice.Status.PAID).count() == n
    # The subscription comes back once, when its last past-due invoice is paid; one receipt for the payment.
    assert AuditEvent.objects.filter(account_id=account_id, action="subscription.reactivated").count() == 1
    assert Notice.objects.filter(account_id=account_id, kind="payment_received").count() == 1
    bound = limit() + GROUP_PER_INVOICE * n
    print(f"\n[{connection.vendor}] {n} invoices: " + describe(measured).split(":", 1)[0])
    assert measured.charge.total <= bound, describe(measured)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_grouped_charge_that_is_declined_costs_a_bounded_amount_per_invoice(n):
    """A decline is not one write for all N invoices: each invoice gets its own retry plan, its dunning row
    (the timeline's "why") and its past-due marks. So its cost grows with N; measured here, it cannot grow
    unnoticed. Still one attempt and one gateway call, and one failure mail per card."""
    invoice_ids = seed_past_due(accounts=1, invoices_per_account=n, number=INSUFFICIENT_FUNDS)
    account_id = Invoice.objects.get(pk=invoice_ids[0]).account_id
    measured = measure_account_run(account_id)
    assert measured.report.charged == dict.fromkeys(invoice_ids, "failed")
    assert measured.gateway_calls == 1
    (attempt,) = PaymentAttempt.objects.filter(account_id=account_id)
    assert attempt.decline_code == "insufficient_funds"
    assert not Invoice.objects.filter(pk__in=invoice_ids, next_attempt_at__isnull=True).exists()
    bound = DECLINE_BASE[connection.vendor] + DECLINE_PER_INVOICE[connection.vendor] * n
    print(f"\n[{connection.vendor}] {n} invoices declined: " + describe(measured).split(":", 1)[0])
    assert measured.charge.total <= bound, describe(measured)


def test_an_account_runs_notices_go_to_one_task_and_stay_queued_when_the_broker_is_down():
    invoice_ids = seed_past_due(accounts=1, invoices_per_account=2)
    account_id = Invoice.objects.get(pk=invoice_ids[0]).account_id
    with (
        mock.patch("notifications.tasks.deliver_notices.delay") as batch,
        mock.patch("notifications.tasks.deliver_notice.delay") as single,
    ):
        report = account_dunning_run(account_id=account_id, now=timezone.now())
    assert set(report.charged.values()) == {"succeeded"}
    receipts = list(
        Notice.objects.filter(account_id=account_id, kind="payment_received")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    assert len(receipts) == 1  # the two invoices are one payment: one receipt listing both
    assert Notice.objects.get(pk=receipts[0]).context["invoices"].count(", ") == 1
    batch.assert_called_once_with(receipts)
    single.assert_not_called()

    # The broker is down: nothing breaks, the receipts stay queued, and the sweep's requeue hands them out.
    Notice.objects.all().delete()
    more = seed_past_due(accounts=1, invoices_per_account=1)
    other = Invoice.objects.get(pk=more[0]).account_id
    with mock.patch("notifications.tasks.deliver_notices.delay", side_effect=OSError("broker down")):
        account_dunning_run(account_id=other, now=timezone.now())
    notice = Notice.objects.get(account_id=other, kind="payment_received")
    assert notice.status == Notice.Status.QUEUED
    with mock.patch("notifications.tasks.deliver_notice.delay") as single:
        assert notices_requeue_stale(older_than=timezone.now() + dt.timedelta(seconds=1)) == 1
    single.assert_called_once_with(notice.pk)
