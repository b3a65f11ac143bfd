"""An account run reads the candidates of its first three steps (reconcile, renew, mark overdue) in one
statement, and reads again what a step that wrote may have changed."""

from __future__ import annotations

import datetime as dt
from typing import cast

import pytest
from django.utils import timezone

from accounts.models import BillingAccount
from dunning import services
from dunning.services import _run_todo, _RunTodo, account_dunning_run
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription
from tests.factories import BillingAccountFactory, InvoiceFactory, PaymentMethodFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _attempt(account: BillingAccount, status: str, *, age: dt.timedelta, **extra: object) -> PaymentAttempt:
    attempt = PaymentAttempt.objects.create(
        account=account,
        payment_method=PaymentMethod.objects.filter(account=account).first()
        or PaymentMethodFactory(account=account),
        amount_minor=1000,
        currency="EUR",
        status=status,
        idempotency_key=f"todo:{account.pk}:{PaymentAttempt.objects.count()}",
        **extra,
    )
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - age)
    return attempt


def _invoice(sub: Subscription, due_on: dt.date, **extra: object) -> Invoice:
    return cast(
        Invoice,
        InvoiceFactory(subscription=sub, issued_on=due_on - dt.timedelta(days=30), due_on=due_on, **extra),
    )


def _transfer_account() -> BillingAccount:
    return cast(
        BillingAccount,
        BillingAccountFactory(
            payment_mode=BillingAccount.PaymentMode.BANK_TRANSFER, remittance_iban="NL91ABNA0417164300"
        ),
    )


def _ending(account: BillingAccount, end: dt.date, **extra: object) -> Subscription:
    return cast(
        Subscription,
        SubscriptionFactory(
            account=account, current_period_start=end - dt.timedelta(days=29), current_period_end=end, **extra
        ),
    )


def _world(account: BillingAccount) -> dict[str, list[int]]:
    """One candidate of each kind, and for each a near miss."""
    now = timezone.now()
    today = timezone.localdate(now)
    ended = _ending(account, today - dt.timedelta(days=1))
    _ending(account, today)  # ends today: not yet
    _ending(
        account,
        today - dt.timedelta(days=3),
        status=Subscription.Status.CANCELLED,
        cancelled_at=now - dt.timedelta(days=1),
    )
    sub = SubscriptionFactory(account=account)
    overdue = _invoice(sub, today - dt.timedelta(days=2), status=Invoice.Status.OPEN)
    _invoice(sub, today - dt.timedelta(days=2), next_attempt_at=now)  # scheduled
    _invoice(sub, today, status=Invoice.Status.OPEN)  # due today: not overdue
    stale = _attempt(account, PaymentAttempt.Status.PENDING, age=dt.timedelta(minutes=6))
    _attempt(account, PaymentAttempt.Status.PENDING, age=dt.timedelta(minutes=1))  # may still answer
    unknown = _attempt(
        account,
        PaymentAttempt.Status.UNKNOWN,
        age=dt.timedelta(0),
        reconcile_after=now - dt.timedelta(seconds=1),
    )
    _attempt(
        account,
        PaymentAttempt.Status.UNKNOWN,
        age=dt.timedelta(0),
        reconcile_after=now + dt.timedelta(minutes=1),
    )
    return {"reconcile": sorted([stale.pk, unknown.pk]), "renew": [ended.pk], "overdue": [overdue.pk]}


def test_the_one_read_finds_each_steps_candidates_of_this_account_only():
    accounts = [cast(BillingAccount, BillingAccountFactory()) for _ in range(2)]
    expected = [_world(account) for account in accounts]
    now = timezone.now()
    for account, wanted in zip(accounts, expected, strict=True):
        todo = _run_todo(account_id=account.pk, now=now)
        assert (todo.reconcile, todo.renew, todo.overdue) == (
            wanted["reconcile"],
            wanted["renew"],
            wanted["overdue"],
        )
        # The same rows the steps' own reads find.
        assert todo.reconcile == sorted(
            services._reconcile_candidates(account_id=account.pk, now=now).values_list("pk", flat=True)
        )
        assert todo.renew == sorted(
            services._renewal_candidates(account_id=account.pk, now=now).values_list("pk", flat=True)
        )
        assert todo.overdue == sorted(
            services._overdue_candidates(account_id=account.pk, now=now).values_list("pk", flat=True)
        )
    assert _run_todo(account_id=cast(BillingAccount, BillingAccountFactory()).pk, now=now) == _RunTodo()


def test_after_a_renewal_wrote_the_overdue_invoices_are_read_again(monkeypatch):
    """A renewal writes; the overdue step must not act on the list read before it."""
    account = cast(BillingAccount, _transfer_account())
    today = timezone.localdate()
    _ending(account, today - dt.timedelta(days=1))
    sub = SubscriptionFactory(account=account)
    overdue = _invoice(sub, today - dt.timedelta(days=2), status=Invoice.Status.OPEN)
    seen: list[list[int] | None] = []
    mark_overdue = services._mark_overdue

    def spy(**kwargs: object) -> None:
        seen.append(cast("list[int] | None", kwargs.get("invoice_ids")))
        mark_overdue(**kwargs)

    monkeypatch.setattr(services, "_mark_overdue", spy)
    report = account_dunning_run(account_id=account.pk, now=timezone.now())
    assert seen == [None]  # read by the step itself, after the renewal
    assert report.renewed
    assert report.overdue == [overdue.pk]


def test_with_nothing_written_before_it_the_overdue_step_uses_the_first_read(monkeypatch):
    account = cast(BillingAccount, _transfer_account())
    sub = SubscriptionFactory(account=account)
    overdue = _invoice(sub, timezone.localdate() - dt.timedelta(days=2), status=Invoice.Status.OPEN)
    seen: list[list[int] | None] = []
    mark_overdue = services._mark_overdue

    def spy(**kwargs: object) -> None:
        seen.append(cast("list[int] | None", kwargs.get("invoice_ids")))
        mark_overdue(**kwargs)

    monkeypatch.setattr(services, "_mark_overdue", spy)
    report = account_dunning_run(account_id=account.pk, now=timezone.now())
    assert seen == [[overdue.pk]]
    assert report.overdue == [overdue.pk]
    assert Invoice.objects.get(pk=overdue.pk).status == Invoice.Status.PAST_DUE
