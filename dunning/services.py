"""Scheduled charging: renewals, retries of declined recurring charges, reconciliation of unanswered
charges, and the lifecycle of unpaid subscriptions (PRODUCT.md flows 7 and 8).

Due work lives in the database, on the rows it is about:
- Invoice.next_attempt_at: when the invoice is charged off-session next (a renewal or a retry);
- PaymentAttempt.reconcile_after: when an unanswered charge is looked up again (payments engine);
- Subscription.next_lifecycle_at: final warning, disable, cancel, delete data.

The beat sweep (dunning_sweep) only finds accounts with due work and hands each to a worker once per
lease; the worker (account_dunning_run) re-checks everything under the account lock. All invoices due
now on one card are charged as ONE attempt (account_charge_due), opened in one phase-1 transaction with
the payments engine's attempt_open and sent with attempt_send. Its key (dunning_key) names each invoice
and its attempt number, which moves on in phase 1: a task that runs twice finds the payment in flight,
and a worker that died between phase 1 and 3 is replaced by reconciliation asking the gateway with the
same key, never by a second charge.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, IntegerField, OneToOneRel, OuterRef, Q, QuerySet, Subquery, Value
from django.urls import reverse
from django.utils import timezone, translation

from accounts.models import BillingAccount
from audit.services import audit_record
from billing_portal.batch import WriteBatch
from billing_portal.compiled import CompiledQuery, CompiledRows
from billing_portal.dates import format_date
from billing_portal.money import format_money
from notifications.services import notice_send, notices_batched, notices_requeue_stale
from payments.gateways.base import DeclineCategory, classify_decline, decline_message, get_gateway
from payments.models import PaymentAllocation, PaymentAttempt, PaymentMethod
from payments.retention import subscription_delete_data
from payments.services import (
    PENDING_STALE_AFTER,
    account_lock,
    attempt_open,
    attempt_reconcile,
    attempt_send,
)
from subscriptions.models import Invoice, InvoiceLine, Product, Subscription
from subscriptions.services import (
    InvalidTransition,
    invoice_mark_past_due,
    subscription_cancel,
    subscription_disable,
    subscription_mark_past_due,
    subscription_restore,
    subscription_warn,
)

from . import recovery
from .models import AccountSweep, InvoiceDunning, RetryPolicy, RetryRefusal
from .policy import active_policy, decline_entry, decline_table, timing_from_settings
from .recovery import BudgetDecision, CardAttempt, PolicyName, RetryContext, RetryPlan

logger = logging.getLogger(__name__)

JOB_LABEL = "job: dunning"
KEY_PREFIX = "dunning:"
KEY_MAX_LENGTH = PaymentAttempt._meta.get_field("idempotency_key").max_length or 80
# A charge that never reached the bank (reconciled as canceled) is tried again after these waits,
# so a gateway that is down is not hammered every minute.
NEVER_ARRIVED_BACKOFF = (
    dt.timedelta(0),
    dt.timedelta(minutes=15),
    dt.timedelta(hours=1),
    dt.timedelta(days=1),
)
NOTICE_REQUEUE_AFTER = dt.timedelta(minutes=10)
LIFECYCLE_STATUSES = (
    Subscription.Status.PAST_DUE,
    Subscription.Status.WARNED,
    Subscription.Status.DISABLED,
    Subscription.Status.CANCELLED,
)
RENEWING_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.WARNED)


# ---------------------------------------------------------------------------------------------
# Policy


def _policy_defaults() -> dict[str, tuple[list[int], bool]]:
    return {
        RetryPolicy.Category.SOFT: (list(settings.DUNNING_SOFT_RETRY_DAYS), True),
        RetryPolicy.Category.HARD: ([], False),
        RetryPolicy.Category.AUTHENTICATION_REQUIRED: ([], False),
        RetryPolicy.Category.UNKNOWN: (list(settings.DUNNING_UNKNOWN_RETRY_DAYS), True),
    }


def retry_policies() -> dict[str, RetryPolicy]:
    """The four policies, created from the settings' defaults the first time they are needed."""
    policies = {p.category: p for p in _policies_compiled()}
    for category, (days, off_session) in _policy_defaults().items():
        if category not in policies:
            try:
                with transaction.atomic():
                    policies[category] = RetryPolicy.objects.create(
                        category=category, retry_days=days, retries_off_session=off_session
                    )
            except IntegrityError:  # another worker created it first
                policies[category] = RetryPolicy.objects.get(category=category)
    return policies


# Read on every account run (billing_portal.compiled: built and compiled once per process).
_policies_compiled = CompiledQuery(lambda: RetryPolicy.objects.order_by("pk"))


def decline_category(code: str) -> str:
    category = classify_decline(code)
    return str(category) if category in set(DeclineCategory) else RetryPolicy.Category.UNKNOWN


def next_retry_at(
    *, first_failed_at: dt.datetime, days: Iterable[int], now: dt.datetime
) -> dt.datetime | None:
    """The first scheduled retry after `now`, counted in days from the first failure; None when none is left.

    Time-based, not count-based: a worker that was down for three days does not fire the missed retries
    in a burst, it continues with the next one on the schedule.
    """
    for day in sorted(days):
        at = first_failed_at + dt.timedelta(days=day)
        if at > now:
            return at
    return None


# ---------------------------------------------------------------------------------------------
# Retry budget: the card networks' rules, checked before every automatic charge

BUDGET_LOOKBACK = max(recovery.VISA_WINDOW, recovery.MC_WINDOW)
REATTEMPT_SOURCES = (
    PaymentAttempt.Source.RETRY,
    PaymentAttempt.Source.SUPPORT_RETRY,
    PaymentAttempt.Source.SETTLE,
)
# A charge may wait for the budget at most this long after the first failure; later, it stops.
BUDGET_HORIZON = dt.timedelta(days=60)


@dataclass
class CardHistory:
    """The recent attempts on an account's cards, read once per account run (card_history_load) and
    kept current in memory as the run charges, so each charge's budget check costs no query."""

    by_method: dict[int, dict[int, CardAttempt]] = field(default_factory=dict)
    brands: dict[int, str] = field(default_factory=dict)

    def decide(
        self, *, method_id: int, amount_minor: int, merchant_initiated: bool, reattempt: bool, at: dt.datetime
    ) -> BudgetDecision:
        return recovery.retry_budget_decide(
            history=self.by_method.get(method_id, {}).values(),
            brand=self.brands.get(method_id, ""),
            amount_minor=amount_minor,
            merchant_initiated=merchant_initiated,
            reattempt=reattempt,
            at=at,
        )

    def add(self, attempt: PaymentAttempt, *, brand: str = "") -> None:
        if attempt.payment_method_id is None:
            return
        if brand:
            self.brands[attempt.payment_method_id] = brand
        # Keyed by attempt: a repeated key answers with the same attempt, counted once.
        self.by_method.setdefault(attempt.payment_method_id, {})[attempt.pk] = _card_attempt(attempt)


def _never_codes() -> set[str]:
    return {code for code, entry in decline_table().items() if entry.rule.visa_category == 1}


def _card_attempt(attempt: PaymentAttempt) -> CardAttempt:
    declined = attempt.status == PaymentAttempt.Status.FAILED
    entry = decline_table().get(attempt.decline_code) if declined else None
    return CardAttempt(
        at=attempt.created_at,
        amount_minor=attempt.amount_minor,
        merchant_initiated=attempt.off_session,
        reattempt=attempt.source in REATTEMPT_SOURCES,
        declined=declined,
        succeeded=attempt.status == PaymentAttempt.Status.SUCCEEDED,
        never_again=declined
        and recovery.never_retry_codes(
            network_advice_code=attempt.network_advice_code,
            network_decline_code=attempt.network_decline_code,
            visa_category=entry.rule.visa_category if entry else 0,
        ),
        wait=recovery.mac_wait(attempt.network_advice_code) if declined else dt.timedelta(0),
    )


def card_history_load(*, account_id: int, now: dt.datetime) -> CardHistory:
    """One query: the last 30 days of attempts on the account's cards, plus any older decline that
    forbids a card for good (Visa Category 1, MAC 03/21) and the successes after it."""
    never_codes = tuple(sorted(_never_codes()))  # the decline table can be edited: each set its own query
    compiled = _card_history_compiled.get(never_codes)
    if compiled is None:
        if len(_card_history_compiled) > 8:  # edits over a process's life: keep only the current one
            _card_history_compiled.clear()
        compiled = CompiledQuery(partial(_card_history, never_codes=never_codes))
        _card_history_compiled[never_codes] = compiled
    history = CardHistory()
    for attempt in compiled(account_id=account_id, since=now - BUDGET_LOOKBACK):
        assert attempt.payment_method is not None
        history.add(attempt, brand=attempt.payment_method.brand)
    return history


def _card_history(
    *, account_id: int, since: dt.datetime, never_codes: tuple[str, ...]
) -> QuerySet[PaymentAttempt]:
    never = Q(
        status=PaymentAttempt.Status.FAILED,
    ) & (
        Q(network_advice_code__in=recovery.MAC_NEVER)
        | Q(network_decline_code__in=recovery.VISA_CATEGORY_1)
        | Q(decline_code__in=never_codes)
    )
    return (
        PaymentAttempt.objects.filter(account_id=account_id, payment_method__isnull=False)
        .filter(Q(created_at__gte=since) | never | Q(status=PaymentAttempt.Status.SUCCEEDED))
        .select_related("payment_method")
        .order_by("created_at", "pk")
    )


_card_history_compiled: dict[tuple[str, ...], CompiledQuery[PaymentAttempt]] = {}


def retry_refusal_record(
    *,
    account: BillingAccount,
    decision: BudgetDecision,
    source: str,
    invoice: Invoice | None,
    method_id: int | None,
    actor: Any = None,
    actor_label: str = JOB_LABEL,
    overridden: bool = False,
    reason: str = "",
) -> RetryRefusal:
    """Record a refused (or overridden) automatic charge and audit it, in the caller's transaction."""
    refusal = RetryRefusal.objects.create(
        account=account,
        invoice=invoice,
        payment_method_id=method_id,
        source=source,
        reason=decision.reason,
        not_before=decision.not_before,
        overridden=overridden,
        actor_label=actor_label,
    )
    when = f"not before {decision.not_before:%Y-%m-%d %H:%M} UTC" if decision.not_before else "never again"
    audit_record(
        account=account,
        actor=actor,
        actor_label=actor_label,
        action="dunning.budget_overridden" if overridden else "dunning.retry_refused",
        message=(
            f"Support charged {invoice.number if invoice else 'the card'} despite the retry budget "
            f"({decision.reason}): {reason}"
            if overridden
            else f"Retry budget refused charging {invoice.number if invoice else 'the card'} now "
            f"({decision.reason}); {when}"
        ),
        target=invoice or account,
        data={"reason": decision.reason, "not_before": decision.not_before, "override_reason": reason},
    )
    return refusal


def retry_budget_check(
    *,
    account_id: int,
    method_id: int,
    amount_minor: int,
    source: str,
    at: dt.datetime,
    history: CardHistory | None = None,
) -> BudgetDecision:
    """May the card be charged automatically at `at`? One decision for renewals, retries and support's
    retry now. Reads the account's card history once (or uses the run's), records nothing: callers
    record refusals with retry_refusal_record() inside their own transaction."""
    history = history if history is not None else card_history_load(account_id=account_id, now=at)
    return history.decide(
        method_id=method_id,
        amount_minor=amount_minor,
        merchant_initiated=True,
        reattempt=source in REATTEMPT_SOURCES,
        at=at,
    )


def retry_plan(
    *,
    account: BillingAccount,
    invoice: Invoice,
    attempt: PaymentAttempt,
    code: str,
    now: dt.datetime,
    policies: dict[str, RetryPolicy],
    history: CardHistory,
) -> RetryPlan:
    """When to charge a declined invoice again: the active policy's choice, moved until the retry
    budget allows it."""
    assert invoice.first_failed_at is not None
    entry = decline_entry(code, policies=policies)
    ctx = RetryContext(
        first_failed_at=invoice.first_failed_at,
        now=now,
        attempts=invoice.attempt_count,
        rule=entry.rule,
        country=account.country,
    )
    name = active_policy()
    timing = timing_from_settings() if name == PolicyName.SMART else None
    if name == PolicyName.FIXED:
        category = entry.rule.category if entry.rule.category in policies else RetryPolicy.Category.UNKNOWN
        plan = recovery.fixed_plan(ctx=ctx, days=policies[category].days, policy=PolicyName.FIXED)
    elif timing is not None:
        plan = recovery.smart_plan(ctx=ctx, timing=timing)
    else:
        plan = recovery.per_code_plan(ctx=ctx)
    if attempt.payment_method_id is None:
        return plan
    method_id = attempt.payment_method_id
    plan, _refusal = recovery.plan_within_budget(
        plan=plan,
        decide=lambda at: history.decide(
            method_id=method_id,
            amount_minor=invoice.amount_due_minor,
            merchant_initiated=True,
            reattempt=True,
            at=at,
        ),
        timing=timing,
        country=account.country,
        horizon=invoice.first_failed_at + BUDGET_HORIZON,
    )
    return plan


def _dunning_relation() -> OneToOneRel:
    """Invoice → its dunning row, whose cache on an invoice says whether the row was read with it."""
    relation = Invoice._meta.get_field("dunning")
    assert isinstance(relation, OneToOneRel)
    return relation


def _dunning_note(
    *,
    invoice: Invoice,
    plan: RetryPlan | None,
    code: str = "",
    reason: str = "",
    writes: WriteBatch | None = None,
) -> None:
    """Keep the invoice's dunning row (the timeline's "why") current.

    When the caller read the invoice locked with its dunning row (select_related("dunning"), under the account
    lock), whether the row exists is known: it is inserted or updated without asking again, and with
    `writes` the write joins the caller's batch (billing_portal.batch). Otherwise it is looked up."""
    values: dict[str, Any] = {}
    if plan is not None:
        values.update(policy=plan.policy, reason=plan.why, planned_at=plan.at)
    if reason:
        values["reason"] = reason
    if code:
        values["last_decline_code"] = code
    cache = _dunning_relation()
    if cache.is_cached(invoice):
        batch = writes if writes is not None else WriteBatch()
        known = cache.get_cached_value(invoice)
        assert known is None or isinstance(known, InvoiceDunning)
        if known is None:
            known = InvoiceDunning(invoice=invoice, **values, first_decline_code=code)
            batch.insert([known])
            cache.set_cached_value(invoice, known)
        elif values:
            if code and not known.first_decline_code:
                values["first_decline_code"] = code
            for name, value in values.items():
                setattr(known, name, value)
            batch.update(InvoiceDunning.objects.filter(pk=known.pk), **values, updated_at=timezone.now())
        if writes is None:
            batch.execute()
        return
    row, created = InvoiceDunning.objects.get_or_create(
        invoice=invoice, defaults={**values, "first_decline_code": code}
    )
    if not created and values:
        if code and not row.first_decline_code:
            values["first_decline_code"] = code
        InvoiceDunning.objects.filter(pk=row.pk).update(**values, updated_at=timezone.now())


# ---------------------------------------------------------------------------------------------
# Renewals


def _period_after(start: dt.date, period: str) -> dt.date:
    """The last day of a period that starts on `start`."""
    months = 12 if period == Product.Period.ANNUAL else 1
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return dt.date(year, month, day) - dt.timedelta(days=1)


def renewal_invoice_number(*, subscription_id: int, period_start: dt.date) -> str:
    # Deterministic: a renewal that runs twice hits the unique number instead of invoicing twice.
    return f"R{subscription_id:07d}-{period_start:%Y%m%d}"


def _chargeable_method(sub: Subscription, account: BillingAccount) -> PaymentMethod | None:
    method = sub.payment_method
    if account.pays_by_bank_transfer or method is None or not method.automatic_charges_allowed:
        # Removed, or disputed (a chargeback): automatic retries stop; the customer may still pay.
        return None
    return method


def renewals_invoice_due(*, now: dt.datetime, account_id: int | None = None) -> list[Invoice]:
    """Invoice the next period of every active or past-due subscription whose period has ended.

    Card accounts' invoices are due at once and get next_attempt_at=now, so the sweep charges them
    off-session to the subscription's method; bank-transfer accounts get an open invoice due by the
    payment terms, with the remittance details the invoice page shows.
    """
    qs = _renewal_candidates(account_id=account_id, now=now)
    created: list[Invoice] = []
    for sub_id, sub_account_id in qs.order_by("account_id", "pk").values_list("pk", "account_id"):
        created += _subscription_renew(subscription_id=sub_id, account_id=sub_account_id, now=now)
    return created


def _subscription_renew(*, subscription_id: int, account_id: int, now: dt.datetime) -> list[Invoice]:
    today = timezone.localdate(now)
    created: list[Invoice] = []
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        sub = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("product", "payment_method")
            .get(pk=subscription_id)
        )
        if sub.status not in RENEWING_STATUSES:
            return created
        method = _chargeable_method(sub, account)
        while sub.current_period_end < today:
            start = sub.current_period_end + dt.timedelta(days=1)
            end = _period_after(start, sub.product.billing_period)
            number = renewal_invoice_number(subscription_id=sub.pk, period_start=start)
            if not Invoice.objects.filter(number=number).exists():
                amount = sub.unit_price_minor * sub.quantity
                invoice = Invoice.objects.create(
                    account=account,
                    subscription=sub,
                    number=number,
                    status=Invoice.Status.OPEN,
                    transaction_type=Invoice.TransactionType.RENEW,
                    currency=sub.currency,
                    total_minor=amount,
                    amount_due_minor=amount,
                    issued_on=today,
                    due_on=today
                    if method is not None
                    else today + dt.timedelta(days=settings.BILLING_PAYMENT_TERMS_DAYS),
                    period_start=start,
                    period_end=end,
                    next_attempt_at=now if (method is not None and amount > 0) else None,
                )
                InvoiceLine.objects.create(
                    invoice=invoice,
                    description=sub.product.name,
                    quantity=sub.quantity,
                    unit_price_minor=sub.unit_price_minor,
                    amount_minor=amount,
                    period_start=start,
                    period_end=end,
                )
                created.append(invoice)
                if method is None:
                    # Nobody is charged for it: mail the invoice (with its PDF when the account asked for
                    # attachments), so a bank-transfer customer knows what to pay and by when.
                    _notify_invoice_issued(account=account, invoice=invoice, product=sub.product.name)
                audit_record(
                    account=account,
                    actor_label=JOB_LABEL,
                    action="invoice.renewal_issued",
                    message=f"Invoice {number} of {format_money(amount, sub.currency)} for {sub.product.name}, "
                    f"{start:%d %b %Y} – {end:%d %b %Y}"
                    + (f", to be charged to {method.label}" if method else ", to be paid by bank transfer"),
                    target=invoice,
                )
            sub.current_period_start, sub.current_period_end = start, end
        sub.save(update_fields=["current_period_start", "current_period_end"])
    return created


# ---------------------------------------------------------------------------------------------
# The sweep


def due_account_ids(*, now: dt.datetime) -> list[int]:
    """Every account with work due at `now`, in id order."""
    today = timezone.localdate(now)
    queries = [
        Invoice.objects.filter(
            next_attempt_at__lte=now, status__in=Invoice.PAYABLE_STATUSES, amount_due_minor__gt=0
        ).values_list("account_id"),
        Invoice.objects.filter(
            status=Invoice.Status.OPEN, due_on__lt=today, next_attempt_at__isnull=True
        ).values_list("account_id"),
        PaymentAttempt.objects.filter(
            Q(status=PaymentAttempt.Status.UNKNOWN, reconcile_after__lte=now)
            | Q(status=PaymentAttempt.Status.PENDING, created_at__lte=now - PENDING_STALE_AFTER)
        ).values_list("account_id"),
        Subscription.objects.filter(lifecycle_due_q(now)).values_list("account_id"),
        Subscription.objects.filter(status__in=RENEWING_STATUSES, current_period_end__lt=today).values_list(
            "account_id"
        ),
    ]
    ids: set[int] = set()
    for query in queries:
        ids.update(row[0] for row in query.order_by().distinct())
    return sorted(ids)


def leased_account_ids(*, now: dt.datetime) -> set[int]:
    return set(
        AccountSweep.objects.filter(enqueued_at__gt=now - settings.DUNNING_ENQUEUE_LEASE).values_list(
            "account_id", flat=True
        )
    )


@dataclass
class SweepResult:
    due: int = 0
    enqueued: int = 0
    leased: int = 0
    batches: int = 0
    notices_requeued: int = 0


def dunning_sweep(*, now: dt.datetime, batch_size: int | None = None) -> SweepResult:
    """Hand every account with due work to a worker, in batches, after each batch's lease commits.

    An account already handed out within the lease is skipped; its worker is still on it, or died and
    the lease will run out. A broker that is down loses nothing: the lease is released and the work
    stays in the database for the next sweep.
    """
    batch_size = batch_size or settings.DUNNING_SWEEP_BATCH
    due = due_account_ids(now=now)
    leased = leased_account_ids(now=now)
    todo = [a for a in due if a not in leased]
    result = SweepResult(due=len(due), leased=len(due) - len(todo))
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        with transaction.atomic():
            AccountSweep.objects.bulk_create(
                [AccountSweep(account_id=a, enqueued_at=now) for a in chunk],
                update_conflicts=True,
                unique_fields=["account"],
                update_fields=["enqueued_at"],
            )
            transaction.on_commit(partial(_enqueue_accounts, chunk))
        result.batches += 1
        result.enqueued += len(chunk)
    # Mails whose delivery could not be queued (broker down) go out now.
    result.notices_requeued = notices_requeue_stale(older_than=now - NOTICE_REQUEUE_AFTER)
    return result


def _enqueue_accounts(account_ids: list[int]) -> None:
    from .tasks import dunning_account

    for n, account_id in enumerate(account_ids):
        try:
            dunning_account.delay(account_id)
        except Exception:
            # The broker is down. Give the leases back so the next sweep hands these out again.
            logger.exception("dunning: could not enqueue %d account(s); they stay due", len(account_ids) - n)
            AccountSweep.objects.filter(account_id__in=account_ids[n:]).update(enqueued_at=None)
            return


def dunning_run_inline(*, now: dt.datetime) -> int:
    """Run every due account in this process (manage.py run_dunning, tests). Returns the account count."""
    ids = due_account_ids(now=now)
    for account_id in ids:
        account_dunning_run(account_id=account_id, now=now)
    return len(ids)


# ---------------------------------------------------------------------------------------------
# One account


@dataclass
class RunReport:
    account_id: int
    reconciled: list[int] = field(default_factory=list)
    renewed: list[int] = field(default_factory=list)
    overdue: list[int] = field(default_factory=list)
    charged: dict[int, str] = field(default_factory=dict)
    lifecycle: dict[int, str] = field(default_factory=dict)


def account_dunning_run(*, account_id: int, now: dt.datetime) -> RunReport:
    """Everything due on one account: reconcile, renew, mark overdue, charge, move the lifecycle.

    Safe to run twice at once or again after a crash: each step re-checks under the account lock, and
    charges reuse the invoice's attempt key. The run's notices (receipts, failures) go out in one task
    at its end (notices_batched), not one task each.
    """
    with notices_batched():
        return _account_dunning_run(account_id=account_id, now=now)


def _account_dunning_run(*, account_id: int, now: dt.datetime) -> RunReport:
    report = RunReport(account_id=account_id)
    todo = _run_todo(account_id=account_id, now=now)
    if todo.reconcile:
        _reconcile_due(account_id=account_id, now=now, report=report)
    if todo.reconcile or todo.renew:  # a reconciled payment can bring a subscription back into renewal
        report.renewed = [i.pk for i in renewals_invoice_due(now=now, account_id=account_id)]
        _mark_overdue(account_id=account_id, now=now, report=report)  # read again after those writes
    else:  # nothing written since the first read: its overdue invoices are still the ones
        _mark_overdue(account_id=account_id, now=now, report=report, invoice_ids=todo.overdue)
    policies = retry_policies()
    failures: list[Failure] = []
    # All due invoices of each card in one attempt; the card history is read once, kept current in memory.
    report.charged = account_charge_due(account_id=account_id, now=now, policies=policies, failures=failures)
    # One mail per card and event, listing every subscription it failed for (not one per invoice).
    failures_notify(account_id=account_id, failures=failures, now=now)
    warn = dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS)
    for sub_id in _lifecycle_due_compiled(account_id=account_id, now=now, warn_after=now + warn):
        report.lifecycle[sub_id] = subscription_lifecycle_step(subscription_id=sub_id, now=now)
    AccountSweep.objects.filter(account_id=account_id).update(enqueued_at=None, finished_at=timezone.now())
    return report


@dataclass
class _RunTodo:
    """What the first steps of an account run have to do, read in one round trip (ids, ascending)."""

    reconcile: list[int] = field(default_factory=list)  # attempts whose outcome is due to be asked for
    renew: list[int] = field(default_factory=list)  # subscriptions whose period has ended
    overdue: list[int] = field(default_factory=list)  # open invoices past due with nothing scheduled


def _run_todo(*, account_id: int, now: dt.datetime) -> _RunTodo:
    """The candidates of _reconcile_due, renewals_invoice_due and _mark_overdue, one UNION ALL instead of
    three reads: in a sweep most accounts have none of the first two, and then the third is still current
    when its turn comes (each step re-checks every row under the account lock anyway)."""
    todo = _RunTodo()
    lists = (todo.reconcile, todo.renew, todo.overdue)
    rows = _run_todo_compiled(
        account_id=account_id,
        now=now,
        stale_before=now - PENDING_STALE_AFTER,
        today=timezone.localdate(now),
    )
    for step, pk in sorted(rows):
        lists[step].append(pk)
    return todo


def _run_todo_rows(
    *, account_id: int, now: dt.datetime, stale_before: dt.datetime, today: dt.date
) -> QuerySet[Any, tuple[int, int]]:
    parts: tuple[QuerySet[Any], ...] = (
        _reconcile_rows(account_id=account_id, now=now, stale_before=stale_before),
        _renewal_rows(today=today).filter(account_id=account_id),
        _overdue_rows(account_id=account_id, today=today),
    )
    tagged = [
        qs.order_by().annotate(step=Value(n, output_field=IntegerField())).values_list("step", "pk")
        for n, qs in enumerate(parts)
    ]
    return tagged[0].union(*tagged[1:], all=True).order_by()  # no Meta ordering: sorted in Python


# Compiled once per process (billing_portal.compiled): compiling the union cost more than running it.
_run_todo_compiled = CompiledRows(_run_todo_rows)


def _reconcile_candidates(*, account_id: int, now: dt.datetime) -> QuerySet[PaymentAttempt]:
    return _reconcile_rows(account_id=account_id, now=now, stale_before=now - PENDING_STALE_AFTER)


def _reconcile_rows(
    *, account_id: int, now: dt.datetime, stale_before: dt.datetime
) -> QuerySet[PaymentAttempt]:
    return PaymentAttempt.objects.filter(
        Q(status=PaymentAttempt.Status.UNKNOWN, reconcile_after__lte=now)
        | Q(status=PaymentAttempt.Status.PENDING, created_at__lte=stale_before),
        account_id=account_id,
    )


def _renewal_candidates(*, account_id: int | None, now: dt.datetime) -> QuerySet[Subscription]:
    qs = _renewal_rows(today=timezone.localdate(now))
    return qs if account_id is None else qs.filter(account_id=account_id)


def _renewal_rows(*, today: dt.date) -> QuerySet[Subscription]:
    return Subscription.objects.filter(status__in=RENEWING_STATUSES, current_period_end__lt=today)


def _overdue_candidates(*, account_id: int, now: dt.datetime) -> QuerySet[Invoice]:
    return _overdue_rows(account_id=account_id, today=timezone.localdate(now))


def _overdue_rows(*, account_id: int, today: dt.date) -> QuerySet[Invoice]:
    return Invoice.objects.filter(
        account_id=account_id,
        status=Invoice.Status.OPEN,
        due_on__lt=today,
        next_attempt_at__isnull=True,
    )


def _reconcile_due(*, account_id: int, now: dt.datetime, report: RunReport) -> None:
    attempts = _reconcile_candidates(account_id=account_id, now=now).order_by("pk")
    policies: dict[str, RetryPolicy] | None = None
    for attempt_id in list(attempts.values_list("pk", flat=True)):
        attempt = attempt_reconcile(attempt_id=attempt_id)
        report.reconciled.append(attempt_id)
        if attempt.status in PaymentAttempt.IN_FLIGHT or not attempt.idempotency_key.startswith(KEY_PREFIX):
            continue
        # A dunning charge got its real outcome: schedule its invoices as if the answer came at once.
        policies = policies or retry_policies()
        invoices_after_attempt(
            invoice_ids=attempt.allocations.values_list("invoice_id", flat=True),
            attempt_id=attempt.pk,
            now=now,
            policies=policies,
            account_id=account_id,
        )


def _mark_overdue(
    *, account_id: int, now: dt.datetime, report: RunReport, invoice_ids: list[int] | None = None
) -> None:
    """Open invoices past their due date with nothing scheduled (`invoice_ids`, if the caller read them): a
    card that was never charged for one is charged now (off-session, like a renewal); otherwise (bank
    transfer, no card) it is past due."""
    if invoice_ids is None:
        invoice_ids = list(
            _overdue_candidates(account_id=account_id, now=now).order_by("pk").values_list("pk", flat=True)
        )
    for invoice_id in invoice_ids:
        with transaction.atomic():
            account = account_lock(account_id=account_id)
            invoice = (
                Invoice.objects.select_for_update(of=("self",))
                .select_related("subscription__payment_method")
                .get(pk=invoice_id)
            )
            if invoice.status != Invoice.Status.OPEN or invoice.next_attempt_at is not None:
                continue
            sub = invoice.subscription
            if (
                invoice.attempt_count == 0
                and sub is not None
                and _chargeable_method(sub, account) is not None
            ):
                invoice.next_attempt_at = now
                invoice.save(update_fields=["next_attempt_at"])
                continue
            invoice = invoice_mark_past_due(invoice_id=invoice_id, at=now)
            if invoice.subscription_id:
                sub = _mark_subscription_past_due(subscription_id=invoice.subscription_id, now=now)
                if sub is not None:
                    _schedule_final_warning(sub=sub, now=now)
        report.overdue.append(invoice_id)


def lifecycle_due_q(now: dt.datetime, warn_after: dt.datetime | None = None) -> Q:
    """Subscriptions whose lifecycle step is due, plus past-due ones whose wake-up time skips the final
    warning that is still ahead (next_lifecycle_at set straight to the end of the grace period by
    seed data or by support extending the grace period): those are rescheduled for the warning.
    `warn_after`: now + the final warning's days (DUNNING_FINAL_WARNING_DAYS), if the caller has it."""
    if warn_after is None:
        warn_after = now + dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS)
    return Q(next_lifecycle_at__lte=now, status__in=LIFECYCLE_STATUSES) | Q(
        status=Subscription.Status.PAST_DUE,
        next_lifecycle_at=F("grace_ends_at"),
        grace_ends_at__gt=warn_after,
    )


def _lifecycle_due(
    *, account_id: int, now: dt.datetime, warn_after: dt.datetime
) -> QuerySet[Subscription, int]:
    return (
        Subscription.objects.filter(lifecycle_due_q(now, warn_after), account_id=account_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


_lifecycle_due_compiled = CompiledRows(_lifecycle_due)


def _mark_subscription_past_due(*, subscription_id: int, now: dt.datetime) -> Subscription | None:
    try:
        return subscription_mark_past_due(subscription_id=subscription_id, at=now)
    except InvalidTransition:  # cancelled or deleted: the lifecycle is past this point
        return None


def _schedule_final_warning(*, sub: Subscription, now: dt.datetime) -> None:
    """Make the lifecycle sweep look at a past-due subscription in time for the final warning."""
    if sub.status != Subscription.Status.PAST_DUE or sub.grace_ends_at is None:
        return
    warn_at = sub.grace_ends_at - dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS)
    wake = max(warn_at, now) if now < sub.grace_ends_at else sub.grace_ends_at
    if sub.next_lifecycle_at is None or wake < sub.next_lifecycle_at:
        Subscription.objects.filter(pk=sub.pk).update(next_lifecycle_at=wake)
        sub.next_lifecycle_at = wake


def dunning_key(numbers: dict[int, int]) -> str:
    """The idempotency key of a dunning attempt: the invoices it pays, each with its own attempt number.

    One invoice: f"dunning:{invoice}:{n}", as always. Several (all due now on one card, charged together):
    f"dunning:{invoice}:{n},{invoice}:{n},…" in invoice order; when that is longer than the column (80
    characters) it is named by its digest, f"dunning:{k}invoices:{sha256 of that text}". Each invoice's
    number goes up by one with every attempt that includes it (counted in phase 1), so a pair (invoice, n)
    belongs to one attempt only: the same attempt always has the same key, and no other attempt has it.
    """
    text = ",".join(f"{pk}:{n}" for pk, n in sorted(numbers.items()))
    key = f"{KEY_PREFIX}{text}"
    if len(key) <= KEY_MAX_LENGTH:
        return key
    digest = hashlib.sha256(text.encode()).hexdigest()[:48]
    return f"{KEY_PREFIX}{len(numbers)}invoices:{digest}"


def group_key(invoices: Iterable[Invoice]) -> str:
    """The key of the next attempt on these invoices (each at its next attempt number): the one phase 1
    opens (_group_open), and the one the dry-run planner shows."""
    return dunning_key({i.pk: i.attempt_count + 1 for i in invoices})


def attempt_numbers(key: str) -> dict[int, int]:
    """{invoice: n} of a readable dunning key; {} for a digest key or another kind of key."""
    if not key.startswith(KEY_PREFIX):
        return {}
    numbers: dict[int, int] = {}
    for part in key[len(KEY_PREFIX) :].split(","):
        invoice, _sep, n = part.partition(":")
        if not (invoice.isdigit() and n.isdigit()):
            return {}
        numbers[int(invoice)] = int(n)
    return numbers


@dataclass
class _Opened:
    """A grouped attempt that phase 1 committed, waiting for phases 2 and 3."""

    attempt: PaymentAttempt
    method: PaymentMethod
    invoice_ids: list[int]
    description: str


def account_charge_due(
    *,
    account_id: int,
    now: dt.datetime,
    policies: dict[str, RetryPolicy] | None = None,
    history: CardHistory | None = None,
    failures: list[Failure] | None = None,
    invoice_ids: Iterable[int] | None = None,
) -> dict[int, str]:
    """Charge everything of one account that is due now, off-session: all invoices due on one card in ONE
    attempt (as Settle balance does), if the retry budget allows it. Returns what happened to each invoice,
    in a word, for reports. `invoice_ids` limits it to those invoices (invoice_charge_due).

    Only invoices due now are grouped: an invoice whose next retry is later on the same card waits for its
    own schedule (and then joins whatever else is due on the card at that moment). After the attempt, each
    invoice is scheduled on its own (invoice_after_attempt's rules: its first failure, its decline, its
    policy); a success pays them all, and each subscription comes back once.

    Phase 1 is one transaction for the whole account: under the account lock, read the due invoices
    (locked, with their card, their dunning row and whether a payment for them is in flight), decide, and
    open one attempt per card (payments.services.attempt_open) with the key dunning_key() gives. Each
    invoice's attempt number moves on in that same transaction, with a lease on next_attempt_at. Phases 2
    and 3 go through payments.services.attempt_send; a decline is scheduled in phase 3's transaction.
    """
    policies = policies or retry_policies()
    ids = None if invoice_ids is None else sorted(set(invoice_ids))
    try:
        outcomes, opened, history = _charges_open(
            account_id=account_id,
            now=now,
            policies=policies,
            history=history,
            failures=failures,
            invoice_ids=ids,
            keys_checked=False,
        )
    except IntegrityError:
        # A key that exists already: a run from before attempt numbers were counted in phase 1 died after
        # its charge. Look the keys up this time; the first attempt is the answer, not a second charge.
        outcomes, opened, history = _charges_open(
            account_id=account_id,
            now=now,
            policies=policies,
            history=history,
            failures=failures,
            invoice_ids=ids,
            keys_checked=True,
        )
    for charge in opened:
        attempt = attempt_send(
            attempt=charge.attempt,
            method=charge.method,
            account_id=account_id,
            description=charge.description,
            then=partial(
                _after_charge,
                invoice_ids=charge.invoice_ids,
                brand=charge.method.brand,
                now=now,
                policies=policies,
                history=history,
                failures=failures,
            ),
        )
        for invoice_id in charge.invoice_ids:
            outcomes[invoice_id] = str(attempt.status)
    return outcomes


def _charges_open(
    *,
    account_id: int,
    now: dt.datetime,
    policies: dict[str, RetryPolicy],
    history: CardHistory | None,
    failures: list[Failure] | None,
    invoice_ids: list[int] | None,
    keys_checked: bool,
) -> tuple[dict[int, str], list[_Opened], CardHistory | None]:
    """Phase 1 of account_charge_due, in one transaction."""
    outcomes: dict[int, str] = {}
    opened: list[_Opened] = []
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        if invoice_ids is None:
            due = _due_locked_compiled(account_id=account_id, now=now)
        else:
            due = _due_locked_among_compiled(account_id=account_id, now=now, invoice_ids=invoice_ids)
        plan = charge_plan(account=account, invoices=due)
        stop = [invoice for invoice, _why in plan.stopped]
        waiting = plan.waiting
        groups = plan.groups
        methods = plan.methods
        for invoice, why in plan.stopped:
            outcomes[invoice.pk] = why
            if why in STOP_MESSAGES:
                audit_record(
                    account=account,
                    actor_label=JOB_LABEL,
                    action="dunning.stopped",
                    message=f"Automatic retries of {invoice.number} stopped: {STOP_MESSAGES[why]}",
                    target=invoice,
                )
        for invoices in waiting.values():
            for invoice in invoices:
                outcomes[invoice.pk] = "in_flight"
        if stop:
            Invoice.objects.filter(pk__in=[i.pk for i in stop]).update(next_attempt_at=None)
        if waiting:
            _wait_for_in_flight(waiting=waiting, now=now)
        if groups and history is None:
            history = card_history_load(account_id=account.pk, now=now)
        for method_id, invoices in groups.items():
            assert history is not None
            charge = _group_open(
                account=account,
                method=methods[method_id],
                invoices=invoices,
                now=now,
                history=history,
                policies=policies,
                failures=failures,
                outcomes=outcomes,
                keys_checked=keys_checked,
            )
            if charge is not None:
                opened.append(charge)
    return outcomes, opened, history


# Why an invoice's automatic retries stop for good (audited as dunning.stopped).
STOP_MESSAGES = {
    "no_method": "no usable payment method to charge",
    # Not a decline: the charge cannot even start, and would fail the same way every time.
    "error": "its currency is not the account's",
}


def due_invoices(*, account_ids: list[int], now: dt.datetime) -> QuerySet[Invoice]:
    """The invoices of these accounts due for an automatic charge now, with their subscription, card and
    dunning row, and two ids of payments in flight (pending, unknown, requires_action): `in_flight_id`, one
    for the invoice itself, and `card_in_flight_id`, one on the invoice's card for its account (one attempt
    per card at a time). The dunning run reads them locked (phase 1); the dry-run planner reads them as is.
    """
    in_flight = PaymentAttempt.objects.filter(
        status__in=PaymentAttempt.IN_FLIGHT, allocations__invoice=OuterRef("pk")
    ).order_by("-pk")
    on_card = PaymentAttempt.objects.filter(
        status__in=PaymentAttempt.IN_FLIGHT,
        account_id=OuterRef("account_id"),
        payment_method_id=OuterRef("subscription__payment_method_id"),
    ).order_by("-pk")
    return (
        Invoice.objects.select_related("subscription__payment_method", "dunning")
        .filter(
            account_id__in=account_ids,
            next_attempt_at__lte=now,
            status__in=Invoice.PAYABLE_STATUSES,
            amount_due_minor__gt=0,
        )
        .annotate(
            in_flight_id=Subquery(in_flight.values("pk")[:1]),
            card_in_flight_id=Subquery(on_card.values("pk")[:1]),
        )
        .order_by("account_id", "pk")
    )


def _due_locked(*, account_id: int, now: dt.datetime) -> QuerySet[Invoice]:
    """Phase 1's read: the account's due invoices, locked (not their subscriptions, cards or dunning rows)."""
    return due_invoices(account_ids=[account_id], now=now).select_for_update(of=("self",))


def _due_locked_among(*, account_id: int, now: dt.datetime, invoice_ids: list[int]) -> QuerySet[Invoice]:
    return _due_locked(account_id=account_id, now=now).filter(pk__in=invoice_ids)


# Compiled once per process (billing_portal.compiled): building and compiling this read cost more Python
# than the rest of phase 1 (bench/sweep_round_trips.py --cprofile).
_due_locked_compiled = CompiledQuery(_due_locked)
_due_locked_among_compiled = CompiledQuery(_due_locked_among)


@dataclass
class ChargePlan:
    """What account_charge_due does with an account's due invoices (due_invoices), decided without writing:
    the dunning run and the dry-run planner (dunning.selectors.dunning_plan) share it."""

    stopped: list[tuple[Invoice, str]] = field(default_factory=list)  # (invoice, why): no retry again
    waiting: dict[int, list[Invoice]] = field(default_factory=dict)  # attempt in flight → invoices it holds
    groups: dict[int, list[Invoice]] = field(default_factory=dict)  # card → its invoices, one attempt
    methods: dict[int, PaymentMethod] = field(default_factory=dict)


def charge_plan(*, account: BillingAccount, invoices: Iterable[Invoice]) -> ChargePlan:
    """Decide per due invoice (read with due_invoices): its subscription ended, no usable card, another
    currency (stop); a payment in flight for it or on its card (wait until reconciliation may know it:
    never two attempts on one card at once); else it joins its card's one attempt."""
    plan = ChargePlan()
    for invoice in invoices:
        sub = invoice.subscription
        if sub is not None and sub.status in (Subscription.Status.CANCELLED, Subscription.Status.DELETED):
            plan.stopped.append((invoice, "subscription_ended"))
            continue
        method = _chargeable_method(sub, account) if sub is not None else None
        if method is None:
            plan.stopped.append((invoice, "no_method"))
            continue
        if invoice.currency != account.currency:
            plan.stopped.append((invoice, "error"))
            continue
        # Annotated by due_invoices: a payment in flight for the invoice, or on its card for its account.
        in_flight = getattr(invoice, "in_flight_id", None) or getattr(invoice, "card_in_flight_id", None)
        if in_flight is not None:
            plan.waiting.setdefault(in_flight, []).append(invoice)
            continue
        plan.groups.setdefault(method.pk, []).append(invoice)
        plan.methods[method.pk] = method
    return plan


def _wait_for_in_flight(*, waiting: dict[int, list[Invoice]], now: dt.datetime) -> None:
    """Never charge while another charge's outcome is open: look again once reconciliation may know it."""
    for attempt in PaymentAttempt.objects.filter(pk__in=list(waiting)).only(
        "pk", "status", "reconcile_after", "created_at"
    ):
        if attempt.status == PaymentAttempt.Status.PENDING:
            at = max(attempt.created_at + PENDING_STALE_AFTER, now)
        else:
            at = max(attempt.reconcile_after or now, now)
        Invoice.objects.filter(pk__in=[i.pk for i in waiting[attempt.pk]]).update(
            next_attempt_at=at + dt.timedelta(seconds=1)
        )


def _group_open(
    *,
    account: BillingAccount,
    method: PaymentMethod,
    invoices: list[Invoice],
    now: dt.datetime,
    history: CardHistory,
    policies: dict[str, RetryPolicy],
    failures: list[Failure] | None,
    outcomes: dict[int, str],
    keys_checked: bool,
) -> _Opened | None:
    """One card's due invoices: refused by the retry budget, answered by an attempt that already has the
    key, or opened as one new attempt (its writes: the attempt, its allocations, one UPDATE of the invoices)."""
    renewal = all(
        i.first_failed_at is None and i.transaction_type == Invoice.TransactionType.RENEW for i in invoices
    )
    source = PaymentAttempt.Source.RENEWAL if renewal else PaymentAttempt.Source.RETRY
    amount = sum(i.amount_due_minor for i in invoices)
    decision = retry_budget_check(
        account_id=account.pk,
        method_id=method.pk,
        amount_minor=amount,
        source=source,
        at=now,
        history=history,
    )
    if not decision.allowed:
        # The network rules say not now (or never): wait until they allow it, and say why.
        for invoice in invoices:
            retry_refusal_record(
                account=account, decision=decision, source=source, invoice=invoice, method_id=method.pk
            )
            invoice.next_attempt_at = (
                decision.not_before
                if decision.not_before is not None
                and decision.not_before <= (invoice.first_failed_at or now) + BUDGET_HORIZON
                else None
            )
            invoice.save(update_fields=["next_attempt_at"])
            _dunning_note(
                invoice=invoice,
                plan=RetryPlan(invoice.next_attempt_at, active_policy(), f"budget_{decision.reason}"),
            )
            outcomes[invoice.pk] = "refused"
        return None
    key = group_key(invoices)
    if keys_checked:
        existing = (
            PaymentAttempt.objects.filter(idempotency_key=key, account_id=account.pk)
            .select_related("payment_method")
            .first()
        )
        if existing is not None:
            existing.account = account
            _schedule_after(
                attempt=existing,
                invoices=invoices,
                now=now,
                policies=policies,
                history=history,
                failures=failures,
                newest=False,
            )
            for invoice in invoices:
                outcomes[invoice.pk] = str(existing.status)
            return None
    policy = ""
    if source == PaymentAttempt.Source.RETRY:
        rows = [getattr(i, "dunning", None) for i in invoices]
        policy = next((row.policy for row in rows if row is not None and row.policy), "")
    writes = WriteBatch()
    attempt = attempt_open(
        account=account,
        invoices=invoices,
        method=method,
        source=source,
        off_session=True,
        idempotency_key=key,
        actor_label=JOB_LABEL,
        retry_policy=policy,
        writes=writes,
    )
    # The attempt numbers move on with the attempt, and the lease: while this charge runs nobody else
    # takes these invoices; if this process dies, the payment in flight is reconciled by its key. The
    # attempt, its allocations and this go to the database in one round trip (billing_portal.batch).
    writes.update(
        Invoice.objects.filter(pk__in=[i.pk for i in invoices]),
        attempt_count=F("attempt_count") + 1,
        next_attempt_at=now + settings.DUNNING_ENQUEUE_LEASE,
    )
    writes.execute()
    numbers = [i.number for i in invoices]
    description = (
        f"Invoice {numbers[0]}"
        if len(numbers) == 1
        else f"Invoices {', '.join(numbers[:3])}"
        + (f" and {len(numbers) - 3} more" if len(numbers) > 3 else "")
    )
    return _Opened(
        attempt=attempt, method=method, invoice_ids=[i.pk for i in invoices], description=description
    )


def _after_charge(
    attempt: PaymentAttempt,
    *,
    invoice_ids: list[int],
    brand: str,
    now: dt.datetime,
    policies: dict[str, RetryPolicy],
    history: CardHistory | None,
    failures: list[Failure] | None,
) -> None:
    """In phase 3's transaction (account locked): remember the attempt for the budget, and schedule each
    invoice unless it was paid (the ledger cleared next_attempt_at; the numbers were counted in phase 1)."""
    if history is not None:
        history.add(attempt, brand=brand)
    if attempt.status == PaymentAttempt.Status.SUCCEEDED:
        return
    invoices = list(
        Invoice.objects.select_for_update(of=("self",))
        .select_related("dunning")  # whether each has its dunning row: _dunning_note then need not ask
        .filter(pk__in=invoice_ids)
        .order_by("pk")
    )
    _schedule_after(
        attempt=attempt,
        invoices=invoices,
        now=now,
        policies=policies,
        history=history,
        failures=failures,
        newest=True,
    )


def invoice_charge_due(
    *,
    invoice_id: int,
    now: dt.datetime,
    policies: dict[str, RetryPolicy] | None = None,
    history: CardHistory | None = None,
    failures: list[Failure] | None = None,
    account_id: int | None = None,
) -> str:
    """Charge one due invoice off-session (account_charge_due limited to it). Returns what happened."""
    if account_id is None:
        account_id = Invoice.objects.values_list("account_id", flat=True).get(pk=invoice_id)
    outcomes = account_charge_due(
        account_id=account_id,
        now=now,
        policies=policies,
        history=history,
        failures=failures,
        invoice_ids=[invoice_id],
    )
    return outcomes.get(invoice_id, "not_due")


def invoice_after_attempt(
    *,
    invoice_id: int,
    attempt_id: int,
    now: dt.datetime,
    policies: dict[str, RetryPolicy] | None = None,
    history: CardHistory | None = None,
    failures: list[Failure] | None = None,
    account_id: int | None = None,
) -> Invoice:
    """Schedule what comes after an off-session attempt on one invoice (invoices_after_attempt)."""
    (invoice,) = invoices_after_attempt(
        invoice_ids=[invoice_id],
        attempt_id=attempt_id,
        now=now,
        policies=policies,
        history=history,
        failures=failures,
        account_id=account_id,
    )
    return invoice


def invoices_after_attempt(
    *,
    invoice_ids: Iterable[int],
    attempt_id: int,
    now: dt.datetime,
    policies: dict[str, RetryPolicy] | None = None,
    history: CardHistory | None = None,
    failures: list[Failure] | None = None,
    account_id: int | None = None,
) -> list[Invoice]:
    """Schedule what comes after an off-session attempt on its invoices, by its outcome and decline category,
    in one transaction under the account lock (reconciliation; a charge schedules in its own phase 3).

    Idempotent: the attempt numbers only move forward, and each notice has its attempt in its dedupe key.
    With `failures`, a decline is added to that list for one grouped mail (failures_notify) instead of
    being mailed on its own.
    """
    ids = sorted(set(invoice_ids))
    if account_id is None:
        account_id = Invoice.objects.values_list("account_id", flat=True).get(pk=ids[0])
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        invoices = list(
            Invoice.objects.select_for_update().filter(pk__in=ids, account_id=account_id).order_by("pk")
        )
        attempt = PaymentAttempt.objects.select_related("payment_method").get(pk=attempt_id)
        attempt.account = account
        _schedule_after(
            attempt=attempt,
            invoices=invoices,
            now=now,
            policies=policies or retry_policies(),
            history=history,
            failures=failures,
            newest=False,
        )
    return invoices


def _schedule_after(
    *,
    attempt: PaymentAttempt,
    invoices: list[Invoice],
    now: dt.datetime,
    policies: dict[str, RetryPolicy],
    history: CardHistory | None,
    failures: list[Failure] | None,
    newest: bool,
) -> None:
    """invoices_after_attempt's rules, for invoices the caller read locked under the account lock.

    `newest`: the caller knows no later attempt exists for them (it just made this one); otherwise one
    query tells which invoices already have a later dunning attempt, whose answer schedules them instead.
    """
    account = attempt.account
    numbers = attempt_numbers(attempt.idempotency_key)
    subs: dict[int, Subscription | None] = {}  # each subscription marked past due once for all its invoices
    # The invoices' own writes (their schedule, their dunning rows) go in one round trip at the end
    # (billing_portal.batch); nothing below reads them back. An open invoice is written at once: marking it
    # past due reads and writes the row again.
    writes = WriteBatch()
    later: set[int] = set()
    if not newest:
        later = set(
            PaymentAllocation.objects.filter(
                invoice_id__in=[i.pk for i in invoices],
                attempt_id__gt=attempt.pk,
                attempt__idempotency_key__startswith=KEY_PREFIX,
            ).values_list("invoice_id", flat=True)
        )
    for invoice in invoices:
        fields = set()
        number = numbers.get(invoice.pk, 0)
        if number > invoice.attempt_count:
            # Counted after the charge by an older run that died before it could: catch up.
            invoice.attempt_count = number
            fields.add("attempt_count")
        if invoice.pk in later:
            pass  # an old attempt's late answer: scheduling belongs to the newer one
        elif not invoice.is_payable:
            invoice.next_attempt_at = None
            fields.add("next_attempt_at")
        elif attempt.status in (PaymentAttempt.Status.PENDING, PaymentAttempt.Status.UNKNOWN):
            # Outcome open: no charge until reconciliation has the real answer.
            invoice.next_attempt_at = max(attempt.reconcile_after or now, now) + dt.timedelta(seconds=1)
            fields.add("next_attempt_at")
        elif attempt.status == PaymentAttempt.Status.CANCELED:
            # Reconciliation found that the charge never reached the bank: try again, with a fresh key.
            never_arrived = PaymentAttempt.objects.filter(
                allocations__invoice=invoice,
                status=PaymentAttempt.Status.CANCELED,
                idempotency_key__startswith=KEY_PREFIX,
            ).count()
            wait = NEVER_ARRIVED_BACKOFF[min(max(never_arrived - 1, 0), len(NEVER_ARRIVED_BACKOFF) - 1)]
            invoice.next_attempt_at = now + wait
            fields.add("next_attempt_at")
        elif attempt.status in (PaymentAttempt.Status.FAILED, PaymentAttempt.Status.REQUIRES_ACTION):
            _schedule_decline(
                account=account,
                invoice=invoice,
                attempt=attempt,
                fields=fields,
                now=now,
                policies=policies,
                history=history,
                failures=failures,
                subs=subs,
                writes=writes,
            )
            fields.clear()
        if fields:
            invoice.save(update_fields=sorted(fields))
    writes.execute()


def _schedule_decline(
    *,
    account: BillingAccount,
    invoice: Invoice,
    attempt: PaymentAttempt,
    fields: set[str],
    now: dt.datetime,
    policies: dict[str, RetryPolicy],
    history: CardHistory | None,
    failures: list[Failure] | None,
    subs: dict[int, Subscription | None] | None = None,
    writes: WriteBatch | None = None,
) -> None:
    """One invoice of a declined (or 3-D Secure) attempt: its retry plan, its dunning row, and the past-due
    marks on it and its subscription. `subs`: subscriptions already marked for this attempt (one mark and
    one final-warning check per subscription, however many of its invoices the attempt held). `writes`: the
    caller's batch for the invoice's schedule and dunning row, unless the invoice is still open."""
    code = attempt.decline_code or (
        "authentication_required" if attempt.status == PaymentAttempt.Status.REQUIRES_ACTION else ""
    )
    category = decline_category(code)
    failed_at = attempt.completed_at or now
    if invoice.first_failed_at is None:
        invoice.first_failed_at = failed_at
        fields.add("first_failed_at")
    if history is None:
        history = card_history_load(account_id=account.pk, now=now)
    plan = retry_plan(
        account=account,
        invoice=invoice,
        attempt=attempt,
        code=code,
        now=now,
        policies=policies,
        history=history,
    )
    invoice.next_attempt_at = plan.at
    fields.add("next_attempt_at")
    batch = writes if writes is not None and invoice.status != Invoice.Status.OPEN else None
    _dunning_note(invoice=invoice, plan=plan, code=code, writes=batch)
    if batch is None:
        invoice.save(update_fields=sorted(fields))
    else:
        batch.update(
            Invoice.objects.filter(pk=invoice.pk), **{name: getattr(invoice, name) for name in fields}
        )
    if invoice.status == Invoice.Status.OPEN:
        invoice = invoice_mark_past_due(invoice_id=invoice.pk, at=failed_at)
    sub = None
    if invoice.subscription_id and subs is not None and invoice.subscription_id in subs:
        sub = subs[invoice.subscription_id]
    elif invoice.subscription_id:
        sub = _mark_subscription_past_due(subscription_id=invoice.subscription_id, now=failed_at)
        if sub is not None:
            _schedule_final_warning(sub=sub, now=now)
        if subs is not None:
            subs[invoice.subscription_id] = sub
    if failures is None:
        _notify_failure(account=account, invoice=invoice, attempt=attempt, category=category, sub=sub)
    else:
        failures.append(Failure(invoice_id=invoice.pk, attempt_id=attempt.pk, category=category))


# ---------------------------------------------------------------------------------------------
# Lifecycle


def subscription_lifecycle_step(*, subscription_id: int, now: dt.datetime) -> str:
    """Move one unpaid subscription along: final warning → disabled → cancelled → data deleted."""
    detached: list[tuple[str, str]] = []
    with transaction.atomic():
        account = account_lock(
            account_id=Subscription.objects.values_list("account_id", flat=True).get(pk=subscription_id)
        )
        sub = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("product")
            .get(pk=subscription_id)
        )
        warn = dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS)
        if (
            sub.status == Subscription.Status.PAST_DUE
            and sub.grace_ends_at is not None
            and sub.next_lifecycle_at == sub.grace_ends_at
            and sub.grace_ends_at - warn > now
        ):
            sub.next_lifecycle_at = sub.grace_ends_at - warn
            sub.save(update_fields=["next_lifecycle_at"])
            return "waiting"
        if sub.next_lifecycle_at is None or sub.next_lifecycle_at > now:
            return "not_due"
        if sub.status in (Subscription.Status.PAST_DUE, Subscription.Status.WARNED):
            if not sub.invoices.filter(status=Invoice.Status.PAST_DUE).exists():
                subscription_restore(subscription_id=sub.pk, at=now, actor_label=JOB_LABEL)
                return "restored"
            assert sub.grace_ends_at is not None
            if now < sub.grace_ends_at:
                warn_at = sub.grace_ends_at - dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS)
                if now >= warn_at:
                    # The Warned stage: the status moves (banner on Home and Your products) and the
                    # final-warning mail goes out, once per grace end date.
                    if sub.status == Subscription.Status.PAST_DUE:
                        sub = subscription_warn(subscription_id=sub.pk, at=now)
                    assert sub.grace_ends_at is not None
                    _notify(
                        account=account,
                        kind="final_warning",
                        dedupe_key=f"final_warning:{sub.pk}:{sub.grace_ends_at:%Y%m%d}",
                        sub=sub,
                        context={"disable_on": _date(sub.grace_ends_at, account)},
                    )
                    sub.next_lifecycle_at = sub.grace_ends_at
                    result = "final_warning"
                else:
                    sub.next_lifecycle_at = warn_at
                    result = "waiting"
                sub.save(update_fields=["next_lifecycle_at"])
                return result
            sub = subscription_disable(subscription_id=sub.pk, at=now)
            assert sub.next_lifecycle_at is not None
            _notify(
                account=account,
                kind="disabled",
                dedupe_key=f"disabled:{sub.pk}:{now:%Y%m%d}",
                sub=sub,
                context={"cancel_on": _date(sub.next_lifecycle_at, account)},
            )
            return "disabled"
        if sub.status == Subscription.Status.DISABLED:
            sub = subscription_cancel(subscription_id=sub.pk, at=now)
            assert sub.next_lifecycle_at is not None
            # From here on a payment no longer reactivates it: stop charging its invoices.
            sub.invoices.filter(next_attempt_at__isnull=False).update(next_attempt_at=None)
            _notify(
                account=account,
                kind="cancelled",
                dedupe_key=f"cancelled:{sub.pk}",
                sub=sub,
                context={"delete_on": _date(sub.next_lifecycle_at, account)},
            )
            return "cancelled"
        if sub.status == Subscription.Status.CANCELLED:
            sub, detached = subscription_delete_data(subscription_id=sub.pk, at=now)
            transaction.on_commit(partial(_detach_at_gateway, detached))
            return "data_deleted"
        sub.next_lifecycle_at = None
        sub.save(update_fields=["next_lifecycle_at"])
        return "nothing"


def _detach_at_gateway(tokens: list[tuple[str, str]]) -> None:
    """Best effort: ask each card's gateway to forget it. Our rows already forgot the token."""
    for gateway_name, token in tokens:
        try:
            get_gateway(gateway_name).detach(token=token)
        except Exception:
            logger.exception("dunning: could not detach a %s token at the gateway", gateway_name)


# ---------------------------------------------------------------------------------------------
# Notices


def _date(value: dt.datetime, account: BillingAccount) -> str:
    """A date in a mail: the one formatter for people, in the account's language ("26 dec 2026")."""
    return format_date(timezone.localtime(value), account.language)


def settle_url(*, account_id: int, method_id: int | None) -> str:
    """The absolute link a mail gives for settling: the pane for the failed card, else Payment methods."""
    if method_id is None:
        path = reverse("payments:methods", args=[account_id])
    else:
        path = reverse("payments:settle", args=[account_id, method_id])
    return f"{settings.SITE_URL}{path}"


def _notify(
    *, account: BillingAccount, kind: str, dedupe_key: str, sub: Subscription, context: dict[str, Any]
) -> None:
    due = sum(
        sub.invoices.filter(status__in=Invoice.PAYABLE_STATUSES).values_list("amount_due_minor", flat=True)
    )
    notice_send(
        account=account,
        kind=kind,
        dedupe_key=dedupe_key,
        context={
            "product": sub.product.name,
            "amount": format_money(due, sub.currency, account.language),
            "settle_url": settle_url(account_id=account.pk, method_id=sub.payment_method_id),
            **context,
        },
    )


def _notify_invoice_issued(*, account: BillingAccount, invoice: Invoice, product: str) -> None:
    path = reverse("subscriptions:invoice_detail", args=[account.pk, invoice.number])
    notice_send(
        account=account,
        kind="invoice_issued",
        dedupe_key=f"invoice_issued:{invoice.pk}",
        context={
            "product": product,
            "invoice": invoice.number,
            "amount": format_money(invoice.amount_due_minor, invoice.currency, account.language),
            "due_on": format_date(invoice.due_on, account.language),
            "invoice_url": f"{settings.SITE_URL}{path}",
        },
    )


@dataclass(frozen=True)
class Failure:
    invoice_id: int
    attempt_id: int
    category: str


def failures_notify(*, account_id: int, failures: list[Failure], now: dt.datetime) -> None:
    """Mail each card's declines of one run once: the subscriptions, the total, the next step.

    The dedupe key is the group's first attempt (`payment_failed:<attempt>`), so a rerun of the same run
    (same attempts, same idempotency keys) never mails again.
    """
    if not failures:
        return
    account = BillingAccount.objects.get(pk=account_id)
    attempts = {
        a.pk: a
        for a in PaymentAttempt.objects.filter(pk__in=[f.attempt_id for f in failures]).select_related(
            "payment_method"
        )
    }
    invoices = {
        i.pk: i
        for i in Invoice.objects.filter(pk__in=[f.invoice_id for f in failures]).select_related(
            "subscription__product"
        )
    }
    groups: dict[tuple[int | None, bool], list[Failure]] = {}
    for f in failures:
        auth = f.category == RetryPolicy.Category.AUTHENTICATION_REQUIRED
        groups.setdefault((attempts[f.attempt_id].payment_method_id, auth), []).append(f)
    for (_method_id, auth), group in groups.items():
        group.sort(key=lambda f: f.attempt_id)
        first = attempts[group[0].attempt_id]
        rows = [invoices[f.invoice_id] for f in group]
        subs = [i.subscription for i in rows if i.subscription is not None]
        kind = "authentication_required" if auth else "payment_failed"
        retries = [i.next_attempt_at for i in rows if i.next_attempt_at and i.next_attempt_at > now]
        graces = [s.grace_ends_at for s in subs if s.grace_ends_at and s.grace_ends_at > now]
        currency = rows[0].currency
        with translation.override(account.language):
            reason = decline_message(first.decline_code or group[0].category)
            # Built in the account's language: "Visa eindigend op 1881" in a Dutch mail.
            method_label = first.payment_method.label if first.payment_method else ""
        items = [
            {
                "product": i.subscription.product.name if i.subscription else i.number,
                "invoice": i.number,
                "amount": format_money(i.amount_due_minor, i.currency, account.language),
            }
            for i in rows
        ]
        notice_send(
            account=account,
            kind=kind,
            dedupe_key=f"{kind}:{first.pk}",
            context={
                "product": ", ".join(item["product"] for item in items),
                "invoice": ", ".join(item["invoice"] for item in items),
                "items": items if len(items) > 1 else [],
                "amount": format_money(sum(i.amount_due_minor for i in rows), currency, account.language),
                "method": method_label,
                "reason": reason,
                "retry_on": _date(min(retries), account) if retries else "",
                "disable_on": _date(min(graces), account) if graces else "",
                "settle_url": settle_url(account_id=account.pk, method_id=first.payment_method_id),
            },
        )


def _notify_failure(
    *,
    account: BillingAccount,
    invoice: Invoice,
    attempt: PaymentAttempt,
    category: str,
    sub: Subscription | None,
) -> None:
    method = attempt.payment_method
    now = timezone.now()
    with translation.override(account.language):
        reason = decline_message(attempt.decline_code or category)
        method_label = method.label if method else ""
    auth = category == RetryPolicy.Category.AUTHENTICATION_REQUIRED
    kind = "authentication_required" if auth else "payment_failed"
    notice_send(
        account=account,
        kind=kind,
        dedupe_key=f"{kind}:{attempt.pk}",
        context={
            "product": sub.product.name if sub else invoice.number,
            "invoice": invoice.number,
            "amount": format_money(invoice.amount_due_minor, invoice.currency, account.language),
            "method": method_label,
            "reason": reason,
            "retry_on": _date(invoice.next_attempt_at, account) if invoice.next_attempt_at else "",
            # After the grace period the subscription is (being) disabled: no date in the past.
            "disable_on": _date(sub.grace_ends_at, account)
            if sub and sub.grace_ends_at and sub.grace_ends_at > now
            else "",
            "settle_url": settle_url(account_id=account.pk, method_id=attempt.payment_method_id),
        },
    )
