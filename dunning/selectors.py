"""Reads for dunning: each past-due subscription's timeline, what the next sweep would do, and a summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import cast

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from billing_portal.money import Money
from notifications.models import Notice
from payments.gateways.base import decline_reason
from payments.models import PaymentAllocation, PaymentAttempt
from payments.services import PENDING_STALE_AFTER
from subscriptions.models import Invoice, Subscription

from .messages import customer_message, plan_reason, refusal_text
from .models import DeclineCode, InvoiceDunning, RetryPolicy, RetryRefusal
from .policy import decline_entry
from .services import (
    charge_plan,
    decline_category,
    due_account_ids,
    due_invoices,
    group_key,
    leased_account_ids,
    lifecycle_due_q,
)

UNPAID = (Subscription.Status.PAST_DUE, Subscription.Status.WARNED, Subscription.Status.DISABLED)
_BEFORE_DISABLE = (Subscription.Status.PAST_DUE, Subscription.Status.WARNED)


@dataclass
class DunningTimeline:
    subscription: Subscription
    invoices: list[Invoice]
    amount_due: Money
    last_attempt: PaymentAttempt | None
    last_result: str
    next_retry_at: dt.datetime | None
    no_retry_reason: str
    past_due_since: dt.datetime | None
    final_warning_at: dt.datetime | None
    disable_at: dt.datetime | None
    cancel_at: dt.datetime | None
    delete_at: dt.datetime | None
    disabled_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    data_deleted_at: dt.datetime | None = None
    events: list[tuple[dt.datetime, str, bool]] = field(default_factory=list)
    # The recovery engine, in plain words: why the last charge failed, what the customer can do, why
    # the next retry is when it is (or why there is none), and charges the retry budget postponed.
    reason: str = ""
    customer_action: str = ""
    next_retry_why: str = ""
    attempts: list[PaymentAttempt] = field(default_factory=list)
    refusals: list[RetryRefusal] = field(default_factory=list)


def _result_text(attempt: PaymentAttempt | None) -> str:
    if attempt is None:
        return _("No charge attempted yet")
    status = attempt.Status
    if attempt.status == status.SUCCEEDED:
        return _("Paid")
    if attempt.status == status.FAILED:
        # In the reader's language and plain words: never the stored (English) message or the raw code.
        return f"{_('Declined')}: {decline_reason(attempt.decline_code)}"
    if attempt.status == status.REQUIRES_ACTION:
        return _("Waiting for the customer to authenticate")
    if attempt.status in (status.UNKNOWN, status.PENDING):
        return _("Outcome unknown; being checked with the bank")
    return _("Canceled: the charge never reached the bank")


def _no_retry_reason(
    *,
    sub: Subscription,
    unpaid: list[Invoice],
    attempt: PaymentAttempt | None,
    next_retry: dt.datetime | None,
    policies: dict[str, RetryPolicy],
) -> str:
    if next_retry is not None or not unpaid:
        return ""
    if sub.status in (Subscription.Status.CANCELLED, Subscription.Status.DELETED):
        return _("The subscription is cancelled; it is no longer charged automatically.")
    if sub.account.pays_by_bank_transfer:
        return _("This account pays by bank transfer; nothing is charged automatically.")
    if sub.payment_method_id is None:
        return _("There is no payment method to charge.")
    if attempt is None:
        return _("No automatic charge is scheduled.")
    if attempt.status in (PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.PENDING):
        if attempt.reconcile_count >= settings.DUNNING_UNKNOWN_SUPPORT_AFTER:
            return _("The bank has not confirmed the last charge yet; support is looking into it.")
        return _(
            "The last charge is being checked with the bank; nothing is charged until its outcome is known."
        )
    category = decline_category(attempt.decline_code)
    if attempt.status == PaymentAttempt.Status.REQUIRES_ACTION or category == "authentication_required":
        return _("Your bank wants you to confirm the payment yourself: use Settle balance.")
    if category == "hard":
        return _(
            "The card was declined in a way that retrying cannot fix: update the card or choose another one."
        )
    if not policies[category].days:
        return _("This kind of decline is not retried automatically.")
    return _("All automatic retries have been used: use Settle balance.")


def subscriptions_dunning_timelines(
    *, subscriptions: Sequence[Subscription], now: dt.datetime | None = None
) -> dict[int, DunningTimeline]:
    """The dunning timeline of each subscription, in a fixed number of queries however many there are.

    Subscriptions should come with select_related("account", "product").
    """
    now = now or timezone.now()
    ids = [s.pk for s in subscriptions]
    unpaid_by_sub: dict[int, list[Invoice]] = {i: [] for i in ids}
    for invoice in Invoice.objects.filter(
        subscription_id__in=ids, status__in=Invoice.PAYABLE_STATUSES, amount_due_minor__gt=0
    ).order_by("pk"):
        # subscription_id__in above: never None here.
        unpaid_by_sub[cast(int, invoice.subscription_id)].append(invoice)
    # The latest attempt on any of each subscription's invoices (paid ones too: "last attempt and result").
    latest: dict[int, PaymentAttempt] = {}
    history: dict[int, dict[int, PaymentAttempt]] = {i: {} for i in ids}
    for allocation in (
        PaymentAllocation.objects.filter(invoice__subscription_id__in=ids)
        .select_related("attempt", "invoice")
        .order_by("attempt_id")
    ):
        if (
            allocation.attempt.source == PaymentAttempt.Source.BANK_TRANSFER
            and allocation.attempt.status != "succeeded"
        ):
            continue
        sub_id = cast(int, allocation.invoice.subscription_id)  # invoice__subscription_id__in: never None
        latest[sub_id] = allocation.attempt
        history[sub_id][allocation.attempt_id] = allocation.attempt
    unpaid_ids = [i.pk for invoices in unpaid_by_sub.values() for i in invoices]
    notes = {n.invoice_id: n for n in InvoiceDunning.objects.filter(invoice_id__in=unpaid_ids)}
    refusals: dict[int, list[RetryRefusal]] = {i: [] for i in ids}
    sub_of_invoice = {i.pk: i.subscription_id for invoices in unpaid_by_sub.values() for i in invoices}
    for refusal in RetryRefusal.objects.filter(invoice_id__in=unpaid_ids).order_by("-created_at", "-pk")[
        :200
    ]:
        refusal.text = refusal_text(refusal.reason)  # type: ignore[attr-defined]  # display text set per row
        # RetryRefusal.invoice is nullable; these were read by invoice_id__in, so it is set.
        refusals[cast(int, sub_of_invoice[cast(int, refusal.invoice_id)])].append(refusal)
    policies = {p.category: p for p in RetryPolicy.objects.all()}
    for category in RetryPolicy.Category.values:
        policies.setdefault(
            category, RetryPolicy(category=category, retry_days=[], retries_off_session=False)
        )
    grace, disabled_for, retention = (
        settings.BILLING_GRACE_PERIOD,
        settings.BILLING_DISABLED_PERIOD,
        settings.BILLING_DATA_RETENTION_AFTER_CANCEL,
    )
    result: dict[int, DunningTimeline] = {}
    for sub in subscriptions:
        unpaid = unpaid_by_sub[sub.pk]
        attempt = latest.get(sub.pk)
        planned = [i.next_attempt_at for i in unpaid if i.next_attempt_at is not None]
        next_retry = min(planned) if planned else None
        if attempt is not None and attempt.status in (
            PaymentAttempt.Status.UNKNOWN,
            PaymentAttempt.Status.PENDING,
        ):
            next_retry = None  # the invoice only waits for the look-up; no charge is planned until then
        disable_at = sub.grace_ends_at or (sub.past_due_since + grace if sub.past_due_since else None)
        cancel_at = (
            sub.next_lifecycle_at
            if sub.status == Subscription.Status.DISABLED
            else (
                sub.disabled_at + disabled_for
                if sub.disabled_at
                else (disable_at + disabled_for if disable_at else None)
            )
        )
        delete_at = (
            sub.cancelled_at + retention
            if sub.cancelled_at
            else (cancel_at + retention if cancel_at else None)
        )
        final_warning_at = (
            disable_at - dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS) if disable_at else None
        )
        timeline = DunningTimeline(
            subscription=sub,
            invoices=unpaid,
            amount_due=Money(sum(i.amount_due_minor for i in unpaid), sub.currency),
            last_attempt=attempt,
            last_result=_result_text(attempt),
            next_retry_at=next_retry,
            no_retry_reason=_no_retry_reason(
                sub=sub, unpaid=unpaid, attempt=attempt, next_retry=next_retry, policies=policies
            ),
            past_due_since=sub.past_due_since,
            final_warning_at=final_warning_at if sub.status in _BEFORE_DISABLE else None,
            disable_at=disable_at if sub.status in _BEFORE_DISABLE else sub.disabled_at,
            cancel_at=cancel_at if sub.status in UNPAID else sub.cancelled_at,
            delete_at=delete_at
            if sub.status in (*UNPAID, Subscription.Status.CANCELLED)
            else sub.data_deleted_at,
            disabled_at=sub.disabled_at,
            cancelled_at=sub.cancelled_at,
            data_deleted_at=sub.data_deleted_at,
        )
        events = [
            (sub.past_due_since, _("First failed charge"), True),
            (attempt.created_at if attempt else None, _("Last attempt"), True),
            (next_retry, _("Next retry"), False),
            (timeline.final_warning_at, _("Final warning"), False),
            (timeline.disable_at, _("Disabled"), sub.disabled_at is not None),
            (timeline.cancel_at, _("Cancelled"), sub.cancelled_at is not None),
            (timeline.delete_at, _("Data deleted"), sub.data_deleted_at is not None),
        ]
        timeline.events = sorted(
            ((at, label, done or at <= now) for at, label, done in events if at is not None),
            key=lambda e: e[0],
        )
        if attempt is not None and attempt.decline_code:
            entry = decline_entry(attempt.decline_code, policies=policies)
            timeline.reason = customer_message(entry.message)
            if entry.rule.customer_action != DeclineCode.CustomerAction.NONE:
                timeline.customer_action = str(DeclineCode.CustomerAction(entry.rule.customer_action).label)
        noted = [notes[i.pk] for i in unpaid if i.pk in notes]
        if noted:
            note = min(noted, key=lambda n: (n.planned_at is None, n.planned_at or now))
            timeline.next_retry_why = plan_reason(note.reason)
        timeline.attempts = sorted(history[sub.pk].values(), key=lambda a: (a.created_at, a.pk))
        timeline.refusals = refusals[sub.pk][:20]
        result[sub.pk] = timeline
    return result


def subscription_dunning_timeline(
    *, subscription: Subscription, now: dt.datetime | None = None
) -> DunningTimeline:
    return subscriptions_dunning_timelines(subscriptions=[subscription], now=now)[subscription.pk]


def notices_sent(*, account_id: int, limit: int = 200) -> list[Notice]:
    return list(Notice.objects.filter(account_id=account_id).order_by("-created_at", "-pk")[:limit])


# ---------------------------------------------------------------------------------------------
# What the next sweep would do (manage.py run_dunning --dry-run) and due work (dunning_status)


@dataclass(frozen=True)
class PlannedAction:
    account_id: int
    kind: str
    target: str
    detail: str


def dunning_plan(
    *, now: dt.datetime, progress: Callable[[int, int], None] | None = None
) -> tuple[list[PlannedAction], dict[str, int]]:
    """Every action the next sweep would take, without taking any. Reads in batches of accounts."""
    today = timezone.localdate(now)
    account_ids = due_account_ids(now=now)
    leased = leased_account_ids(now=now)
    actions: list[PlannedAction] = []
    counts: dict[str, int] = {"accounts": len(account_ids), "leased": len(leased & set(account_ids))}
    batch = 500
    for start in range(0, len(account_ids), batch):
        chunk = account_ids[start : start + batch]
        for attempt in PaymentAttempt.objects.filter(
            Q(status=PaymentAttempt.Status.UNKNOWN, reconcile_after__lte=now)
            | Q(status=PaymentAttempt.Status.PENDING, created_at__lte=now - PENDING_STALE_AFTER),
            account_id__in=chunk,
        ).order_by("account_id", "pk"):
            actions.append(
                PlannedAction(
                    attempt.account_id, "reconcile", attempt.reference, f"look up {attempt.idempotency_key}"
                )
            )
        for sub in Subscription.objects.filter(
            account_id__in=chunk, status__in=["active", "past_due", "warned"], current_period_end__lt=today
        ).select_related("product"):
            actions.append(
                PlannedAction(
                    sub.account_id,
                    "renew",
                    f"subscription {sub.pk}",
                    f"{sub.product.name}, period ended {sub.current_period_end}",
                )
            )
        for invoice in Invoice.objects.filter(
            account_id__in=chunk, status=Invoice.Status.OPEN, due_on__lt=today, next_attempt_at__isnull=True
        ):
            actions.append(
                PlannedAction(invoice.account_id, "mark_past_due", invoice.number, f"due {invoice.due_on}")
            )
        # Charges as the run makes them: one attempt per account and card, with the key it will have.
        due = due_invoices(account_ids=chunk, now=now).select_related("account")
        for account_id, rows in groupby(due, key=lambda invoice: invoice.account_id):
            invoices = list(rows)
            plan = charge_plan(account=invoices[0].account, invoices=invoices)
            for method_id, group in plan.groups.items():
                amount = Money(sum(i.amount_due_minor for i in group), group[0].currency)
                actions.append(
                    PlannedAction(
                        account_id,
                        "charge",
                        ", ".join(i.number for i in group),
                        f"{amount} on {plan.methods[method_id].label}, key {group_key(group)}",
                    )
                )
            for attempt_id, held in plan.waiting.items():
                actions.append(
                    PlannedAction(
                        account_id,
                        "wait",
                        ", ".join(i.number for i in held),
                        f"a payment is in flight on the invoice or its card (attempt {attempt_id}); "
                        "charged after its reconciliation",
                    )
                )
            for invoice, why in plan.stopped:
                actions.append(PlannedAction(account_id, "stop", invoice.number, why.replace("_", " ")))
        for sub in Subscription.objects.filter(lifecycle_due_q(now), account_id__in=chunk).select_related(
            "product"
        ):
            if sub.next_lifecycle_at is not None and sub.next_lifecycle_at > now:
                step = "plan_warning"  # woken at the end of grace only: the final warning is scheduled
            else:
                step = {
                    "past_due": "final_warning"
                    if sub.grace_ends_at and now < sub.grace_ends_at
                    else "disable",
                    "warned": "disable",
                    "disabled": "cancel",
                    "cancelled": "delete_data",
                }[sub.status]
            actions.append(PlannedAction(sub.account_id, step, f"subscription {sub.pk}", sub.product.name))
        if progress is not None:
            progress(min(start + batch, len(account_ids)), len(account_ids))
    for action in actions:
        counts[action.kind] = counts.get(action.kind, 0) + 1
    return actions, counts


def dunning_status(*, now: dt.datetime) -> dict[str, object]:
    """A summary of due and upcoming work for operators."""
    payable = Invoice.objects.filter(status__in=Invoice.PAYABLE_STATUSES, amount_due_minor__gt=0)
    tomorrow = now + dt.timedelta(days=1)
    return {
        "invoices_due_now": payable.filter(next_attempt_at__lte=now).count(),
        "invoices_due_24h": payable.filter(next_attempt_at__gt=now, next_attempt_at__lte=tomorrow).count(),
        "invoices_past_due_without_retry": payable.filter(
            status=Invoice.Status.PAST_DUE, next_attempt_at__isnull=True
        ).count(),
        "next_retry_at": payable.filter(next_attempt_at__gt=now).aggregate(m=Min("next_attempt_at"))["m"],
        "attempts_to_reconcile": PaymentAttempt.objects.filter(
            status=PaymentAttempt.Status.UNKNOWN, reconcile_after__lte=now
        ).count(),
        "attempts_unknown_for_support": PaymentAttempt.objects.filter(
            status=PaymentAttempt.Status.UNKNOWN, reconcile_count__gte=settings.DUNNING_UNKNOWN_SUPPORT_AFTER
        ).count(),
        "lifecycle_due_now": Subscription.objects.filter(
            next_lifecycle_at__lte=now, status__in=["past_due", "warned", "disabled", "cancelled"]
        ).count(),
        "subscriptions_by_status": dict(
            Subscription.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
        ),
        "accounts_due": len(due_account_ids(now=now)),
        "accounts_leased": len(leased_account_ids(now=now)),
        "notices_queued": Notice.objects.filter(status=Notice.Status.QUEUED).count(),
    }
