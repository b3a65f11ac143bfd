"""Moving money. Every entry point takes the billing account's lock first (see docs/ARCHITECTURE.md).

The three phases of every payment (Settle balance, Pay now, renewals, retries, support "retry now"):

1. under the account lock: re-read what is still unpaid, refuse when an attempt for those invoices is
   already in flight, write a `pending` PaymentAttempt with its allocations and idempotency key, commit;
2. outside any transaction: ask the gateway, passing the idempotency key;
3. under the account lock again: apply the answer (attempt_apply_result).

An answer we did not get leaves the attempt `unknown`; attempt_reconcile() looks the charge up by the
same key later. Nothing ever charges an unknown attempt again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import BigIntegerField, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import BillingAccount, Membership
from audit.services import audit_event, audit_record
from billing_portal.batch import WriteBatch
from billing_portal.compiled import CompiledQuery
from subscriptions.models import Invoice, Subscription
from subscriptions.services import (
    invoice_mark_past_due,
    subscription_mark_past_due,
)

from .gateways.base import (
    INVALID_REQUEST_CODE,
    CardCollection,
    CardResult,
    ChargeOutcome,
    ChargeResult,
    decline_message,
    get_gateway,
    luhn_valid,
)
from .ledger import attempt_allocations_locked, payment_apply
from .models import GatewayCustomer, PaymentAllocation, PaymentAttempt, PaymentMethod
from .selectors import payments_in_flight

logger = logging.getLogger(__name__)

Source = PaymentAttempt.Source
Status = PaymentAttempt.Status

# After an unanswered charge: look again after 15 s, 1 min, 3 min, 1 h, then once a day.
RECONCILE_BACKOFF = (
    dt.timedelta(seconds=15),
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=3),
    dt.timedelta(hours=1),
    dt.timedelta(days=1),
)
# A `pending` attempt older than this lost its process between phase 1 and 3; reconcile it too.
PENDING_STALE_AFTER = dt.timedelta(minutes=5)
# A 3-D Secure challenge still open after this is canceled, so it cannot block retries forever.
ABANDONED_ACTION_AFTER = dt.timedelta(hours=24)
# For gateways whose lookup is a search (Stripe), a miss is believed only after this long.
NOT_FOUND_TRUSTED_AFTER = dt.timedelta(minutes=10)


class PaymentError(Exception):
    """A domain error with a message for the person paying."""

    def __init__(self, message: str = "", *, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class PaymentInProgress(PaymentError):
    pass


class NothingToPay(PaymentError):
    pass


class BalanceChanged(PaymentError):
    """What is unpaid changed between showing the amount and charging it: show it again, charge nothing."""


class PaymentNotAllowed(PaymentError):
    pass


class CardDisputed(PaymentError):
    """The card has a chargeback: no automatic (off-session) charge may use it."""


class NotCardOwner(PaymentError):
    pass


class InvalidCardInput(PaymentError):
    pass


def account_lock(*, account_id: int) -> BillingAccount:
    """Lock the billing account row until the surrounding transaction ends.

    Every payment entry point (Settle balance, Pay now, renewals, retries, support actions, webhooks)
    takes this lock before it reads what is unpaid, so two of them can never pay the same invoice.
    On SQLite, which has no row locks, IMMEDIATE transactions serialise writers instead.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("account_lock() must be called inside transaction.atomic()")
    found = _account_locked_compiled(account_id=account_id)
    if not found:
        raise BillingAccount.DoesNotExist(f"no billing account {account_id}")
    return found[0]


def _account_locked(*, account_id: int) -> QuerySet[BillingAccount]:
    return BillingAccount.objects.select_for_update().filter(pk=account_id)


# The first statement of every payment (billing_portal.compiled: built and compiled once per process).
_account_locked_compiled = CompiledQuery(_account_locked)


def _require_payer(*, account_id: int, actor: Any) -> None:
    """Owners and admins pay; readers (and anyone else) are refused here too, not only in the view."""
    membership = Membership.objects.filter(
        account_id=account_id, user_id=getattr(actor, "pk", None) or 0
    ).first()
    if membership is None or not membership.can_pay:
        raise PaymentNotAllowed(_("Only billing account owners and billing admins can make payments."))


def _require_manager(*, account_id: int, actor: Any) -> None:
    """Making a card active, replacing, editing and deleting cards: owners and admins only (an invoice
    manager may pick or add a card in a payment pane, nothing more; readers nothing)."""
    membership = Membership.objects.filter(
        account_id=account_id, user_id=getattr(actor, "pk", None) or 0
    ).first()
    if membership is None or not membership.can_manage_payment_methods:
        raise PaymentNotAllowed(
            _("Only billing account owners and billing admins can manage payment methods.")
        )


# ---------------------------------------------------------------------------------------------
# The engine


class _StaleActions(Exception):
    def __init__(self, attempt_ids: list[int]) -> None:
        self.attempt_ids = attempt_ids


def invoices_charge(
    *,
    account_id: int,
    invoice_ids: Iterable[int],
    payment_method_id: int,
    source: str,
    off_session: bool,
    idempotency_key: str,
    actor: Any = None,
    actor_label: str = "",
    replaces_method_id: int | None = None,
    return_url: str = "",
    description: str = "",
    expected_amount_minor: int | None = None,
    retry_policy: str = "",
) -> PaymentAttempt:
    """Charge one payment method once for what is still unpaid of `invoice_ids`.

    The shared engine behind Settle balance, Pay now, renewals (source=RENEWAL), dunning retries
    (RETRY) and support's retry now (SUPPORT_RETRY). Returns the attempt in its resulting state:
    succeeded, failed (decline_code/decline_message), requires_action (action_url), or unknown.

    A repeated idempotency_key returns the first attempt and charges nothing. Raises NothingToPay
    when nothing of those invoices is unpaid any more, PaymentInProgress when another attempt
    already covers them. With expected_amount_minor (customer entry points: the amount they were
    shown, computed by the server), a different amount under the lock raises BalanceChanged.
    """
    invoice_ids = sorted(set(invoice_ids))
    attempt = None
    for _round in range(2):
        try:
            attempt, created = _phase1_create(
                account_id=account_id,
                invoice_ids=invoice_ids,
                payment_method_id=payment_method_id,
                source=source,
                off_session=off_session,
                idempotency_key=idempotency_key,
                actor=actor,
                actor_label=actor_label,
                replaces_method_id=replaces_method_id,
                expected_amount_minor=expected_amount_minor,
                retry_policy=retry_policy,
            )
        except _StaleActions as stale:
            # A customer walked away from a 3-D Secure challenge: cancel it at the gateway first. If
            # the gateway says it succeeded after all, that payment is applied and nothing is left.
            for stale_id in stale.attempt_ids:
                attempt_abandon(attempt_id=stale_id)
            continue
        if not created:
            return attempt
        break
    if attempt is None:
        raise PaymentInProgress(_("A payment for this balance is already in progress."))

    method = attempt.payment_method
    assert method is not None
    return attempt_send(
        attempt=attempt,
        method=method,
        account_id=account_id,
        return_url=return_url.replace("{attempt}", str(attempt.pk)),
        description=description,
    )


def attempt_open(
    *,
    account: BillingAccount,
    invoices: list[Invoice],
    method: PaymentMethod,
    source: str,
    off_session: bool,
    idempotency_key: str,
    actor: Any = None,
    actor_label: str = "",
    replaces_method_id: int | None = None,
    retry_policy: str = "",
    writes: WriteBatch | None = None,
) -> PaymentAttempt:
    """Phase 1's writes: a `pending` attempt for what `invoices` still owe, with its allocations.

    The caller holds the account lock in its own transaction and has just read `invoices` locked and
    checked them (payable, nothing in flight for them, the account's currency): _phase1_create does, and
    so does the dunning run, which charges all invoices due on one card in one attempt. Two statements,
    whatever the number of invoices, sent in one round trip (billing_portal.batch): the allocations name
    their attempt by its idempotency key, which is unique. With `writes`, they join the caller's batch, and
    the attempt has its primary key once the caller has executed it (the dunning run adds the invoices'
    attempt numbers); a key used already raises IntegrityError from there.
    """
    attempt = PaymentAttempt(
        account=account,
        payment_method=method,
        amount_minor=sum(i.amount_due_minor for i in invoices),
        currency=account.currency,
        source=source,
        off_session=off_session,
        idempotency_key=idempotency_key,
        gateway=method.gateway,
        replaces_method_id=replaces_method_id,
        initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
        initiated_by_label=actor_label or getattr(actor, "email", "") or source,
        retry_policy=retry_policy,
    )
    batch = writes if writes is not None else WriteBatch()
    batch.insert([attempt], returning=True)
    # The same subquery in every row: compiled once per process, not once per row (_attempt_by_key_sql).
    by_key = RawSQL(  # noqa: S611 - the text is the ORM's own compiled SQL; the key is its parameter
        _attempt_by_key_sql(batch.using), (idempotency_key,), output_field=BigIntegerField()
    )
    batch.insert(
        [PaymentAllocation(attempt_id=by_key, invoice=i, amount_minor=i.amount_due_minor) for i in invoices]
    )
    if writes is None:
        batch.execute()
    return attempt


@functools.cache
def _attempt_by_key_sql(using: str) -> str:
    """SELECT the attempt's id by its idempotency key, as the ORM writes it for this database (one parameter)."""
    stand_in = "\u2063idempotency key\u2063"
    query = PaymentAttempt.objects.filter(idempotency_key=stand_in).values("pk")[:1].query
    sql, params = query.get_compiler(using=using).as_sql()
    if tuple(params) != (stand_in,):
        raise TypeError(f"the attempt look-up compiled with parameters {params!r}")
    return str(sql)


def attempt_send(
    *,
    attempt: PaymentAttempt,
    method: PaymentMethod,
    account_id: int,
    return_url: str = "",
    description: str = "",
    then: Callable[[PaymentAttempt], None] | None = None,
) -> PaymentAttempt:
    """Phases 2 and 3 of an attempt that phase 1 committed: ask the gateway (outside any transaction),
    then apply its answer under the account lock. `then(attempt)` runs in phase 3's transaction after the
    answer is applied, whoever applied it first (a webhook may have), so what the caller books on the
    outcome (dunning's schedule) commits with it or not at all."""
    result = _gateway_charge(attempt=attempt, method=method, return_url=return_url, description=description)
    with transaction.atomic():
        attempt = attempt_apply_result(attempt_id=attempt.pk, result=result, account_id=account_id)
        if then is not None:
            then(attempt)
    return attempt


def _phase1_create(
    *,
    account_id: int,
    invoice_ids: list[int],
    payment_method_id: int,
    source: str,
    off_session: bool,
    idempotency_key: str,
    actor: Any,
    actor_label: str,
    replaces_method_id: int | None,
    expected_amount_minor: int | None,
    retry_policy: str = "",
) -> tuple[PaymentAttempt, bool]:
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        # The key is checked once, here, under the lock (a repeat returns the first attempt).
        existing = PaymentAttempt.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.account_id != account_id:  # keys are global; never answer with another account's
                raise PaymentError("idempotency key already used by another account")
            return existing, False
        try:
            method = PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED).get(
                account_id=account_id, pk=payment_method_id
            )
        except PaymentMethod.DoesNotExist:
            raise PaymentError(_("Choose a payment method.")) from None
        if off_session and method.disputed_at is not None:
            # A chargeback on this card: nobody charges it without the customer (payments.disputes).
            raise CardDisputed(
                _("%(card)s has a chargeback; it is not charged automatically.") % {"card": method.label}
            )
        invoices = list(
            Invoice.objects.select_for_update()
            .filter(
                account_id=account_id,
                pk__in=invoice_ids,
                status__in=Invoice.PAYABLE_STATUSES,
                amount_due_minor__gt=0,
            )
            .order_by("pk")
        )
        if not invoices:
            raise NothingToPay(_("There is nothing left to pay: this balance has already been paid."))
        in_flight = list(payments_in_flight(account_id=account_id, invoices=invoices))
        if in_flight:
            stale = [a.pk for a in in_flight if a.status == Status.REQUIRES_ACTION]
            # Only a customer, present now, may replace a customer's waiting challenge; a job never does.
            if not off_session and len(stale) == len(in_flight):
                raise _StaleActions(stale)
            raise PaymentInProgress(_("A payment for this balance is already in progress."))
        if any(i.currency != account.currency for i in invoices):
            raise PaymentError("invoice currency differs from the account's")
        amount_minor = sum(i.amount_due_minor for i in invoices)
        if expected_amount_minor is not None and amount_minor != expected_amount_minor:
            raise BalanceChanged(
                _("The balance changed while you were paying. Check the new total and try again.")
            )
        attempt = attempt_open(
            account=account,
            invoices=invoices,
            method=method,
            source=source,
            off_session=off_session,
            idempotency_key=idempotency_key,
            actor=actor,
            actor_label=actor_label,
            replaces_method_id=replaces_method_id,
            retry_policy=retry_policy,
        )
    return attempt, True


def _gateway_charge(
    *, attempt: PaymentAttempt, method: PaymentMethod, return_url: str, description: str
) -> ChargeResult:
    """Phase 2. Outside any transaction: a slow gateway must not hold the account lock."""
    try:
        gateway = get_gateway(method.gateway)
        return gateway.charge(
            token=method.gateway_token,
            amount_minor=attempt.amount_minor,
            currency=attempt.currency,
            idempotency_key=attempt.idempotency_key,
            off_session=attempt.off_session,
            return_url=return_url,
            description=description or f"{attempt.account.name} {attempt.reference}",
            language=attempt.account.language,
        )
    except Exception as exc:  # whatever broke, money may have moved: reconcile, never re-charge
        logger.exception("gateway charge for attempt %s raised", attempt.pk)
        return ChargeResult.unknown(f"{type(exc).__name__}: {exc}")


def attempt_locked(*, attempt_id: int, account_id: int) -> PaymentAttempt:
    """The account lock and the attempt, locked, in ONE statement (with its account and card).

    The lock order stays the documented one, account row first: the account is locked by an uncorrelated
    sub-select (`account_id = (SELECT id … FOR UPDATE)`), which PostgreSQL runs once as an InitPlan before
    the outer query locks the attempt row. Nothing is read stale for having waited on the account lock:
    the attempt and account rows are locked by the outer query too, so PostgreSQL re-reads their newest
    versions (READ COMMITTED's recheck of a row another transaction updated), and whatever else this
    transaction reads comes in later statements, after the lock. The card is read, not locked; what phase
    3 writes on it is either unconditional (a decline) or a conditional UPDATE (a success, below).
    SQLite has no row locks: its IMMEDIATE transactions serialise writers instead (account_lock).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("attempt_locked() must be called inside transaction.atomic()")
    found = _attempt_locked_compiled(attempt_id=attempt_id, account_id=account_id)
    if not found:
        raise PaymentAttempt.DoesNotExist(f"no attempt {attempt_id} of account {account_id}")
    return found[0]


def _attempt_locked(*, attempt_id: int, account_id: int) -> QuerySet[PaymentAttempt]:
    account = BillingAccount.objects.select_for_update().filter(pk=account_id).order_by().values("pk")[:1]
    return (
        PaymentAttempt.objects.select_for_update(of=("self", "account"))
        .select_related("payment_method", "account")
        .filter(account_id=Subquery(account), pk=attempt_id)
    )


# Compiled once per process (billing_portal.compiled): phase 3 of every payment starts with it.
_attempt_locked_compiled = CompiledQuery(_attempt_locked)


def attempt_apply_result(
    *, attempt_id: int, result: ChargeResult, actor: Any = None, account_id: int | None = None
) -> PaymentAttempt:
    """Phase 3: apply a gateway answer to an attempt, idempotently.

    Called after the charge, after 3-D Secure, by reconciliation and by webhooks, in any order and
    any number of times: a succeeded attempt never changes again, and a late decline never undoes it.
    `account_id`, when the caller knows it (the charge it just made), saves looking it up.
    """
    now = timezone.now()
    # No savepoint: inside a caller's transaction (attempt_send) an error here is that transaction's error.
    with transaction.atomic(savepoint=False):
        if account_id is None:
            account_id = PaymentAttempt.objects.values_list("account_id", flat=True).get(pk=attempt_id)
        attempt = attempt_locked(attempt_id=attempt_id, account_id=account_id)
        account = attempt.account  # the locked row, for whoever books on the outcome in this transaction
        if attempt.status == Status.SUCCEEDED:
            return attempt
        if result.reference and not attempt.gateway_reference:
            attempt.gateway_reference = result.reference
        outcome = result.outcome
        if attempt.status in (Status.FAILED, Status.CANCELED) and outcome != ChargeOutcome.SUCCEEDED:
            # Final already; only news that money did move can change it.
            return attempt
        if outcome == ChargeOutcome.INVALID and attempt.status != Status.PENDING:
            # Only the charge request itself can be refused as invalid. A look-up or confirmation refused
            # says nothing about a charge that may have taken money: keep finding out.
            logger.error("gateway refused a follow-up request for attempt %s: %s", attempt.pk, result.message)
            outcome = ChargeOutcome.UNKNOWN
        if outcome == ChargeOutcome.SUCCEEDED:
            _apply_success(account=account, attempt=attempt, now=now, actor=actor)
        elif outcome == ChargeOutcome.INVALID:
            _apply_invalid(account=account, attempt=attempt, result=result, now=now)
        elif outcome == ChargeOutcome.DECLINED:
            _apply_decline(account=account, attempt=attempt, result=result, now=now)
        elif outcome == ChargeOutcome.REQUIRES_ACTION:
            attempt.status = Status.REQUIRES_ACTION
            attempt.action_url = result.action_url
            attempt.save(update_fields=["status", "action_url", "gateway_reference"])
        elif outcome == ChargeOutcome.CANCELED:
            attempt.status = Status.CANCELED
            attempt.completed_at = now
            attempt.save(update_fields=["status", "completed_at", "gateway_reference"])
            audit_record(
                account=account,
                actor_label="billing",
                action="payment.canceled",
                message=f"Payment {attempt.reference} of {attempt.amount} was canceled; nothing was charged",
                target=attempt,
            )
        else:  # UNKNOWN (or NOT_FOUND right after a charge): find out later, never charge again meanwhile
            if attempt.status != Status.UNKNOWN:
                attempt.status = Status.UNKNOWN
                attempt.reconcile_after = now + RECONCILE_BACKOFF[0]
                audit_record(
                    account=account,
                    actor_label="billing",
                    action="payment.unknown",
                    message=f"No answer from the gateway for {attempt.reference}; it will be looked up",
                    target=attempt,
                    data={"detail": result.message[:300]},
                )
            attempt.save(update_fields=["status", "reconcile_after", "gateway_reference"])
    return attempt


def _apply_success(*, account: BillingAccount, attempt: PaymentAttempt, now: dt.datetime, actor: Any) -> None:
    late = attempt.status in (Status.FAILED, Status.CANCELED)
    attempt.status = Status.SUCCEEDED
    attempt.completed_at = now
    attempt.decline_code = ""
    attempt.decline_message = ""
    attempt.action_url = ""
    attempt.reconcile_after = None
    # Written with the payment's other writes, in one round trip (payment_apply executes the batch).
    writes = WriteBatch()
    fields = (
        "status",
        "completed_at",
        "decline_code",
        "decline_message",
        "action_url",
        "reconcile_after",
        "gateway_reference",
    )
    writes.update(
        PaymentAttempt.objects.filter(pk=attempt.pk), **{name: getattr(attempt, name) for name in fields}
    )
    method = attempt.payment_method
    assert method is not None
    if method.status in (PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED):
        # The card that paid evidently works again; conditional, so a card removed meanwhile stays removed
        # (the card was read with the attempt, not locked: attempt_locked).
        method.status = PaymentMethod.Status.VALID
        method.last_decline_code = ""
        PaymentMethod.objects.filter(
            pk=method.pk, status__in=(PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED)
        ).update(status=method.status, last_decline_code="")
    moved = 0
    if attempt.replaces_method_id and attempt.replaces_method_id != method.pk:
        # Settle balance: the paying method becomes the active method of everything on the failed one.
        moved = Subscription.objects.filter(
            account=account, payment_method_id=attempt.replaces_method_id
        ).update(payment_method=method)
    # The invoices, locked, with what the ledger needs: one read for the audit line and payment_apply.
    allocations = attempt_allocations_locked(attempt=attempt)
    invoices_text = ", ".join(a.invoice.number for a in allocations)
    # Inserted by payment_apply with the payment's other audit events, in one statement.
    succeeded = audit_event(
        account=account,
        actor=actor or attempt.initiated_by,
        actor_label=attempt.initiated_by_label,
        action="payment.succeeded",
        message=f"Payment {attempt.reference} of {attempt.amount} with {method.label} paid {invoices_text}"
        + (f"; {moved} subscription(s) moved to {method.label}" if moved else ""),
        target=attempt,
        data={
            "invoices": [a.invoice.number for a in allocations],
            "moved_subscriptions": moved,
            "late": late,
        },
    )
    # The one service that applies money received (also for bank transfers and webhooks).
    with translation.override(account.language):
        method_text = method.label
    payment_apply(
        account=account,
        attempt=attempt,
        now=now,
        actor=actor,
        method_text=method_text,
        paid_on=timezone.localdate(now),
        allocations=allocations,
        audits=[succeeded],
        writes=writes,
    )
    if writes.rowcounts()[0] != 1:  # as save(update_fields=…) would: the locked row must still be there
        raise DatabaseError(f"attempt {attempt.pk} was not updated")


def _apply_decline(
    *, account: BillingAccount, attempt: PaymentAttempt, result: ChargeResult, now: dt.datetime
) -> None:
    code = result.decline_code or "generic_decline"
    attempt.status = Status.FAILED
    attempt.decline_code = code
    attempt.decline_message = decline_message(code)[:300]
    # The network's own hints (MAC, Visa response code) feed the retry budget (dunning.recovery).
    attempt.network_advice_code = result.network_advice_code[:4]
    attempt.network_decline_code = result.network_decline_code[:8]
    attempt.completed_at = now
    attempt.action_url = ""
    attempt.reconcile_after = None
    attempt.save(
        update_fields=[
            "status",
            "decline_code",
            "decline_message",
            "network_advice_code",
            "network_decline_code",
            "completed_at",
            "action_url",
            "reconcile_after",
            "gateway_reference",
        ]
    )
    method = attempt.payment_method
    assert method is not None
    # A failed 3-D Secure challenge says nothing about the card; every other decline marks it.
    if code != "authentication_failed":
        method.status = PaymentMethod.Status.DECLINED
        method.last_decline_code = code
        method.last_declined_at = now
        method.save(update_fields=["status", "last_decline_code", "last_declined_at"])
    elif _added_for_this_attempt(method=method, attempt=attempt):
        # …except for a card added just now to pay this: its holder never proved it is theirs, so it is
        # not kept as a valid card (PRODUCT.md: a card that failed 3-D Secure while being added).
        _method_mark_removed(method=method, now=now)
        audit_record(
            account=account,
            actor=attempt.initiated_by,
            actor_label=attempt.initiated_by_label,
            action="payment_method.removed",
            message=f"{method.label} was not kept: 3-D Secure failed on its first payment",
            target=method,
            data={"reason": "authentication_failed"},
        )
        transaction.on_commit(lambda: _gateway_detach(method_id=method.pk))
    if attempt.off_session:
        # Nobody was present: the invoices and subscriptions are past due now (dunning retries them). Each
        # subscription once, however many of its invoices this payment was for.
        marked: set[int] = set()
        for allocation in attempt.allocations.select_related("invoice").order_by("invoice_id"):
            invoice = allocation.invoice
            if invoice.status == Invoice.Status.OPEN:
                invoice_mark_past_due(invoice_id=invoice.pk, at=now)
            if invoice.subscription_id and invoice.subscription_id not in marked:
                marked.add(invoice.subscription_id)
                subscription_mark_past_due(subscription_id=invoice.subscription_id, at=now)
    audit_record(
        account=account,
        actor=attempt.initiated_by,
        actor_label=attempt.initiated_by_label,
        action="payment.declined",
        message=f"Payment {attempt.reference} of {attempt.amount} with {method.label} was declined ({code})",
        target=attempt,
        data={
            "decline_code": code,
            "category": str(result.decline_category or ""),
            "network_advice_code": result.network_advice_code,
            "network_decline_code": result.network_decline_code,
        },
    )


def _apply_invalid(
    *, account: BillingAccount, attempt: PaymentAttempt, result: ChargeResult, now: dt.datetime
) -> None:
    """The gateway refused the charge request itself: nothing was charged, and the same request will be
    refused again. The attempt fails at once with an error for operators (support dashboard); the card
    is not blamed and nothing is reconciled."""
    detail = (result.message or "the gateway refused the request as invalid")[:500]
    logger.error(
        "payment %s (account %s, %s) was refused by the %s gateway as an invalid request: %s",
        attempt.reference,
        account.pk,
        attempt.amount,
        attempt.gateway,
        detail,
    )
    attempt.status = Status.FAILED
    attempt.decline_code = INVALID_REQUEST_CODE
    attempt.decline_message = decline_message(INVALID_REQUEST_CODE)[:300]
    attempt.operator_error = detail
    attempt.completed_at = now
    attempt.action_url = ""
    attempt.reconcile_after = None
    attempt.save(
        update_fields=[
            "status",
            "decline_code",
            "decline_message",
            "operator_error",
            "completed_at",
            "action_url",
            "reconcile_after",
            "gateway_reference",
        ]
    )
    audit_record(
        account=account,
        actor=attempt.initiated_by,
        actor_label=attempt.initiated_by_label,
        action="payment.invalid_request",
        message=f"Payment {attempt.reference} of {attempt.amount} was refused by the gateway as an invalid "
        "request; nothing was charged",
        target=attempt,
        data={"detail": detail},
    )


def _added_for_this_attempt(*, method: PaymentMethod, attempt: PaymentAttempt) -> bool:
    """The attempt is the card's first use: no other payment and no subscription uses it yet."""
    if method.status == PaymentMethod.Status.DETACHED:
        return False
    if PaymentAttempt.objects.filter(payment_method=method).exclude(pk=attempt.pk).exists():
        return False
    return not method.subscriptions.exclude(status=Subscription.Status.DELETED).exists()


def attempt_abandon(*, attempt_id: int) -> PaymentAttempt:
    """Cancel an attempt still waiting for 3-D Secure, at the gateway first. If the gateway says the
    charge went through after all, that success is applied instead."""
    attempt = PaymentAttempt.objects.select_related("payment_method").get(pk=attempt_id)
    if attempt.status != Status.REQUIRES_ACTION:
        return attempt
    method = attempt.payment_method
    assert method is not None
    try:
        result = get_gateway(attempt.gateway or method.gateway).cancel(reference=attempt.gateway_reference)
    except Exception as exc:
        logger.exception("gateway cancel for attempt %s raised", attempt.pk)
        result = ChargeResult.unknown(str(exc))
    if result.outcome in (ChargeOutcome.CANCELED, ChargeOutcome.NOT_FOUND):
        result = ChargeResult(outcome=ChargeOutcome.CANCELED, reference=result.reference)
    if result.outcome == ChargeOutcome.REQUIRES_ACTION:
        return attempt
    return attempt_apply_result(attempt_id=attempt.pk, result=result)


def attempt_complete_action(*, attempt_id: int, account_id: int | None = None) -> PaymentAttempt:
    """The customer came back from 3-D Secure: ask the gateway what happened, then apply it."""
    qs = PaymentAttempt.objects.select_related("payment_method")
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    attempt = qs.get(pk=attempt_id)
    if attempt.status != Status.REQUIRES_ACTION:
        return attempt
    method = attempt.payment_method
    assert method is not None
    try:
        result = get_gateway(attempt.gateway or method.gateway).confirm(reference=attempt.gateway_reference)
    except Exception as exc:
        logger.exception("gateway confirm for attempt %s raised", attempt.pk)
        result = ChargeResult.unknown(str(exc))
    if result.outcome == ChargeOutcome.NOT_FOUND:
        result = ChargeResult.unknown("confirm: charge not found", reference=attempt.gateway_reference)
    return attempt_apply_result(attempt_id=attempt.pk, result=result)


def attempt_reconcile(*, attempt_id: int) -> PaymentAttempt:
    """Find out what happened to a charge we got no answer for, and settle or release it.

    Looks the charge up by the attempt's idempotency key (the reference, when we have one). Succeeded:
    applied. Declined: failed. Never arrived: canceled, which releases the invoices for another try.
    Still unknown: looked at again later (15 s, 1 min, 3 min, 1 h, then daily).
    """
    attempt = PaymentAttempt.objects.select_related("payment_method").get(pk=attempt_id)
    now = timezone.now()
    if attempt.status == Status.PENDING and attempt.created_at > now - PENDING_STALE_AFTER:
        return attempt  # still in phase 2 in some process; not ours to judge yet
    if attempt.status not in (Status.UNKNOWN, Status.PENDING):
        return attempt
    method = attempt.payment_method
    lookup_is_final = False
    try:
        gateway = get_gateway(attempt.gateway or (method.gateway if method else None))
        lookup_is_final = gateway.lookup_is_final
        result = gateway.lookup(idempotency_key=attempt.idempotency_key, reference=attempt.gateway_reference)
    except Exception as exc:
        logger.exception("gateway lookup for attempt %s raised", attempt.pk)
        result = ChargeResult.unknown(str(exc))
    if result.outcome == ChargeOutcome.INVALID:
        # The look-up itself was refused: the charge's outcome is still unknown.
        logger.error("gateway refused the look-up for attempt %s: %s", attempt.pk, result.message)
        result = ChargeResult.unknown(result.message)
    if result.outcome == ChargeOutcome.NOT_FOUND:
        trusted = lookup_is_final or attempt.created_at < now - NOT_FOUND_TRUSTED_AFTER
        # A search index may lag behind a charge that did arrive: only an old enough miss releases.
        result = (
            ChargeResult(outcome=ChargeOutcome.CANCELED) if trusted else ChargeResult.unknown("not found yet")
        )
    if result.outcome != ChargeOutcome.UNKNOWN:
        return attempt_apply_result(attempt_id=attempt.pk, result=result)
    with transaction.atomic():
        account_lock(account_id=attempt.account_id)
        attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status not in (Status.UNKNOWN, Status.PENDING):
            return attempt
        attempt.status = Status.UNKNOWN
        attempt.reconcile_count += 1
        step = RECONCILE_BACKOFF[min(attempt.reconcile_count, len(RECONCILE_BACKOFF) - 1)]
        attempt.reconcile_after = now + step
        attempt.save(update_fields=["status", "reconcile_count", "reconcile_after"])
    return attempt


# ---------------------------------------------------------------------------------------------
# Customer entry points


def balance_settle(
    *,
    account_id: int,
    failed_method_id: int,
    chosen_method_id: int,
    actor: Any,
    idempotency_key: str,
    return_url: str = "",
) -> PaymentAttempt:
    """Settle balance: one charge on the chosen method for everything past due on the failed method's
    subscriptions plus the chosen method's own past-due charges. The engine re-checks under the lock."""
    from .selectors import settle_quote

    _require_payer(account_id=account_id, actor=actor)
    existing = PaymentAttempt.objects.filter(idempotency_key=idempotency_key, account_id=account_id).first()
    if existing is not None:
        return existing
    account = BillingAccount.objects.get(pk=account_id)
    try:
        failed = PaymentMethod.objects.get(account_id=account_id, pk=failed_method_id)
        chosen = PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED).get(
            account_id=account_id, pk=chosen_method_id
        )
    except PaymentMethod.DoesNotExist:
        raise PaymentError(
            _("Choose a payment method."), errors={"method": _("Choose a payment method.")}
        ) from None
    quote = settle_quote(account=account, failed_method=failed, chosen_method=chosen)
    if quote.is_empty:
        raise NothingToPay(_("There is nothing left to pay: this balance has already been paid."))
    return invoices_charge(
        account_id=account_id,
        invoice_ids=quote.invoice_ids,
        payment_method_id=chosen.pk,
        source=Source.SETTLE,
        off_session=False,
        idempotency_key=idempotency_key,
        actor=actor,
        replaces_method_id=failed.pk,
        return_url=return_url,
        expected_amount_minor=quote.total.amount_minor,
        description=f"{account.name}: settle balance of {failed.label}",
    )


def invoice_pay(
    *,
    account_id: int,
    invoice_id: int,
    payment_method_id: int,
    actor: Any,
    idempotency_key: str,
    return_url: str = "",
    shown_amount_minor: int | None = None,
) -> PaymentAttempt:
    """Pay now: one invoice, on-session, with the chosen method.

    shown_amount_minor is what the pane showed; if the invoice changed since (a transfer arrived),
    nothing is charged and the pane shows the new amount. The charge itself is always the server's.
    """
    _require_payer(account_id=account_id, actor=actor)
    invoice = Invoice.objects.get(account_id=account_id, pk=invoice_id)
    if (
        shown_amount_minor is not None
        and invoice.is_payable
        and shown_amount_minor != invoice.amount_due_minor
    ):
        raise BalanceChanged(_("The amount due changed while you were paying. Check it and try again."))
    return invoices_charge(
        account_id=account_id,
        invoice_ids=[invoice.pk],
        payment_method_id=payment_method_id,
        source=Source.PAY_NOW,
        off_session=False,
        idempotency_key=idempotency_key,
        actor=actor,
        return_url=return_url,
        description=f"Invoice {invoice.number}",
        expected_amount_minor=invoice.amount_due_minor if invoice.is_payable else None,
    )


# ---------------------------------------------------------------------------------------------
# Cards


def validate_expiry(*, exp_month: Any, exp_year: Any, today: dt.date | None = None) -> tuple[int, int]:
    """Parse and check an expiry date from a form; raise InvalidCardInput with plain-words errors for every
    field at once. Only ASCII digits count ("٣" is not a month)."""
    month_text, year_text = str(exp_month or "").strip(), str(exp_year or "").strip()
    month = int(month_text) if re.fullmatch(r"[0-9]{1,2}", month_text) else 0
    year = int(year_text) if re.fullmatch(r"[0-9]{2}|[0-9]{4}", year_text) else -1
    if 0 <= year < 100:
        year += 2000
    today = today or timezone.localdate()
    errors: dict[str, str] = {}
    if not 1 <= month <= 12:
        errors["exp_month"] = _("Enter the expiry month as a number from 1 to 12.")
    if not 2000 <= year <= today.year + 25:
        errors["exp_year"] = _("Enter the expiry year with four digits.")
    if errors:
        raise InvalidCardInput(next(iter(errors.values())), errors=errors)
    if (year, month) < (today.year, today.month):
        msg = _("This expiry date is in the past. Enter the date printed on the card.")
        raise InvalidCardInput(msg, errors={"exp_month": msg})
    return month, year


HOLDER_NAME_MAX = 120


def _check_holder_name(holder_name: str, errors: dict[str, str]) -> str:
    holder_name = (holder_name or "").strip()
    if len(holder_name) > HOLDER_NAME_MAX:
        errors["holder_name"] = _("Enter the name as printed on the card (at most %(max)s characters).") % {
            "max": HOLDER_NAME_MAX
        }
    return holder_name


def payment_method_add(
    *,
    account_id: int,
    actor: Any,
    number: str,
    exp_month: Any,
    exp_year: Any,
    cvc: str,
    holder_name: str = "",
) -> PaymentMethod:
    """Add a card through the simulated gateway's own form. The number goes to the bank, not our tables."""
    _require_payer(account_id=account_id, actor=actor)
    errors: dict[str, str] = {}
    month = year = 0
    try:
        month, year = validate_expiry(exp_month=exp_month, exp_year=exp_year)
    except InvalidCardInput as exc:
        errors.update(exc.errors)
    holder_name = _check_holder_name(holder_name, errors)
    # Spaces and dashes as people type them; anything else stays in and fails the number check.
    number = "".join(c for c in (number or "") if not c.isspace() and c != "-")
    if not number:
        errors["number"] = _("Enter the card number.")
    elif not luhn_valid(number):
        errors["number"] = _("This card number is not valid. Check the digits and try again.")
    if not re.fullmatch(r"[0-9]{3,4}", (cvc or "").strip()):
        errors["cvc"] = _("Enter the 3 or 4 digit security code from the back of the card.")
    if errors:
        raise InvalidCardInput(_("Check the card details."), errors=errors)
    gateway = get_gateway()
    result = gateway.add_card(
        number=number, exp_month=month, exp_year=year, cvc=(cvc or "").strip(), holder_name=holder_name
    )
    if not result.ok:
        if result.unavailable:
            raise PaymentError(_("The card could not be added just now. Try again in a moment."))
        raise InvalidCardInput(_("Check the card details."), errors=result.errors or {})
    return _payment_method_record(
        account_id=account_id, actor=actor, gateway_name=gateway.name, card=result, holder_name=holder_name
    )


def payment_method_add_from_setup(
    *, account_id: int, actor: Any, setup_intent_id: str, holder_name: str = ""
) -> PaymentMethod:
    """ELEMENTS gateways: the browser confirmed a card setup with the gateway's script; record its card."""
    _require_payer(account_id=account_id, actor=actor)
    errors: dict[str, str] = {}
    holder_name = _check_holder_name(holder_name, errors)
    if not setup_intent_id or len(setup_intent_id) > 255:
        errors["number"] = _("Enter the card details.")
    if errors:
        raise InvalidCardInput(next(iter(errors.values())), errors=errors)
    gateway = get_gateway()
    if gateway.card_collection != CardCollection.ELEMENTS:
        raise InvalidCardInput(_("Enter the card details."), errors={"number": _("Enter the card details.")})
    result = gateway.card_setup_finish(reference=setup_intent_id)
    if not result.ok:
        if result.unavailable:
            raise PaymentError(_("The card could not be added just now. Try again in a moment."))
        raise InvalidCardInput(_("Check the card details."), errors=result.errors or {})
    # The setup id comes from the browser: the card must belong to this account's own gateway
    # customer, or a payer could attach another account's card by quoting its id.
    customer = GatewayCustomer.objects.filter(account_id=account_id, gateway=gateway.name).first()
    if (
        customer is None
        or not customer.customer_id
        or not result.token.startswith(f"{customer.customer_id}/")
    ):
        logger.warning("card setup %s does not belong to account %s", setup_intent_id, account_id)
        raise InvalidCardInput(
            _("The card was not confirmed. Try again."),
            errors={"number": _("The card was not confirmed. Try again.")},
        )
    return _payment_method_record(
        account_id=account_id, actor=actor, gateway_name=gateway.name, card=result, holder_name=holder_name
    )


def card_setup_start(*, account_id: int, actor: Any) -> str:
    """ELEMENTS gateways: start a card setup on the account's gateway customer; returns its client secret."""
    _require_payer(account_id=account_id, actor=actor)
    account = BillingAccount.objects.get(pk=account_id)
    gateway = get_gateway()
    customer = GatewayCustomer.objects.filter(account=account, gateway=gateway.name).first()
    if customer is None or not customer.customer_id:
        # The key makes a retried request reuse the customer the gateway already created for this
        # account; after the gateway deleted that customer, the next generation gets a new one.
        generation = customer.generation if customer is not None else 0
        customer_id = gateway.customer_create(
            name=account.name,
            email=account.notification_email,
            idempotency_key=f"customer:{account.pk}" + (f":{generation}" if generation else ""),
        )
        with transaction.atomic():
            account_lock(account_id=account.pk)
            customer, _created = GatewayCustomer.objects.get_or_create(
                account=account, gateway=gateway.name, defaults={"customer_id": customer_id}
            )
            if not customer.customer_id and customer.generation == generation:
                customer.customer_id = customer_id
                customer.save(update_fields=["customer_id"])
    setup = gateway.card_setup_start(
        customer=customer.customer_id, idempotency_key=f"setup:{account.pk}:{uuid.uuid4()}"
    )
    return setup.client_secret


def _payment_method_record(
    *,
    account_id: int,
    actor: Any,
    gateway_name: str,
    card: CardResult,
    holder_name: str,
    actor_label: str = "",
) -> PaymentMethod:
    """Store a card the gateway just accepted, once per account: the same card (fingerprint) added again
    — twice in a row, by a double submit, or by two people at once — is the method we already have, and
    the gateway's duplicate is detached after commit.

    The token dropped (the new one, or the old one when the card came back with a new expiry) is kept as a
    removed card (_duplicate_record): the detach sweep (payments.detach) then retries its detach until the
    gateway confirms it, as for a card a person deleted, and support sees it on the account."""
    fingerprint = (getattr(card, "fingerprint", "") or "")[:64]
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        existing = None
        if fingerprint:
            existing = (
                PaymentMethod.objects.select_for_update()
                .filter(account=account, fingerprint=fingerprint)
                .exclude(status=PaymentMethod.Status.DETACHED)
                .first()
            )
        if existing is not None:
            if existing.gateway_token == card.token:
                return existing
            if PaymentMethod.objects.filter(gateway=gateway_name, gateway_token=card.token).exists():
                # A token dropped before (an earlier add told again, late): it is detached, never taken back.
                return existing
            # The gateway's second copy of the card, kept only as a removed card so its detach is retried.
            dropped = PaymentMethod(
                account=account,
                brand=existing.brand,
                last4=card.last4,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                holder_name=holder_name[:120],
                gateway=gateway_name,
                gateway_token=card.token,
                fingerprint=fingerprint,
            )
            if (existing.exp_month, existing.exp_year) != (card.exp_month, card.exp_year):
                # The same number with a new expiry (a renewed card): keep the one row, use the new token.
                dropped.gateway_token = existing.gateway_token
                dropped.exp_month, dropped.exp_year = existing.exp_month, existing.exp_year
                dropped.holder_name = existing.holder_name
                dropped.gateway = existing.gateway
                old = existing.expiry
                existing.gateway_token = card.token
                existing.exp_month, existing.exp_year = card.exp_month, card.exp_year
                fields = ["gateway_token", "exp_month", "exp_year"]
                if existing.last_decline_code == "expired_card":
                    existing.status, existing.last_decline_code = PaymentMethod.Status.VALID, ""
                    fields += ["status", "last_decline_code"]
                existing.save(update_fields=fields)
                audit_record(
                    account=account,
                    actor=actor,
                    action="payment_method.expiry_changed",
                    message=f"{existing.label} added again: expiry date changed from {old} to {existing.expiry}",
                    target=existing,
                )
            dropped_id = _duplicate_record(account=account, dropped=dropped, kept=existing, actor=actor)
            transaction.on_commit(lambda: _gateway_detach(method_id=dropped_id))
            return existing
        try:
            with transaction.atomic():
                method = PaymentMethod.objects.create(
                    account=account,
                    brand=card.brand
                    if card.brand in PaymentMethod.Brand.values
                    else PaymentMethod.Brand.OTHER,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                    holder_name=holder_name[:120],
                    owner=actor if getattr(actor, "is_authenticated", False) else None,
                    gateway=gateway_name,
                    gateway_token=card.token,
                    fingerprint=fingerprint,
                )
        except IntegrityError:
            # The same card saved twice (a double submit, or the gateway's webhook and the browser both
            # reporting one card setup) is the one row; a token another account holds is refused.
            existing = PaymentMethod.objects.filter(
                gateway=gateway_name, gateway_token=card.token, account=account
            ).first()
            if existing is None:
                raise InvalidCardInput(
                    _("This card cannot be added."), errors={"number": _("This card cannot be added.")}
                ) from None
            if existing.owner_id is None and getattr(actor, "is_authenticated", False):
                # Saved from the webhook first: the person who added it in the browser owns it.
                existing.owner = actor
                existing.holder_name = existing.holder_name or holder_name[:120]
                existing.save(update_fields=["owner", "holder_name"])
            return existing
        audit_record(
            account=account,
            actor=actor,
            actor_label=actor_label,
            action="payment_method.added",
            message=f"{method.label} (expires {method.expiry}) was added",
            target=method,
        )
    return method


def _duplicate_record(
    *, account: BillingAccount, dropped: PaymentMethod, kept: PaymentMethod, actor: Any
) -> int:
    """Keep a duplicate token of `kept` as a removed card and audit it; its id. The caller holds the account
    lock and has checked that no row of any account holds the token, so the INSERT needs no savepoint."""
    dropped.status = PaymentMethod.Status.DETACHED
    dropped.removed_at = timezone.now()
    dropped.save(force_insert=True)
    audit_record(
        account=account,
        actor=actor,
        action="payment_method.duplicate_dropped",
        message=f"{kept.label} was added again: the gateway's second copy of it (expires {dropped.expiry}) is "
        "not kept and is detached at the gateway",
        target=dropped,
    )
    return dropped.pk


def payment_method_update_expiry(
    *, account_id: int, method_id: int, actor: Any, exp_month: Any, exp_year: Any
) -> PaymentMethod:
    """The card's owner enters a new expiry date. A card declined *because it expired* may then pay again;
    a new date says nothing about any other decline (funds, a stolen card), so those stay."""
    _require_payer(account_id=account_id, actor=actor)
    method = PaymentMethod.objects.get(account_id=account_id, pk=method_id)
    if method.owner_id is None or method.owner_id != getattr(actor, "pk", None):
        raise NotCardOwner(_("Only the person who added this card can change its expiry date."))
    month, year = validate_expiry(exp_month=exp_month, exp_year=exp_year)
    result = get_gateway(method.gateway).update_expiry(
        token=method.gateway_token, exp_month=month, exp_year=year
    )
    if not result.ok:
        raise InvalidCardInput(_("The bank did not accept the new expiry date."), errors=result.errors or {})
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
        if method.status == PaymentMethod.Status.DETACHED:
            raise PaymentError(_("This payment method was deleted."))
        old = method.expiry
        method.exp_month, method.exp_year = month, year
        fields = ["exp_month", "exp_year", *_clear_expiry_decline(method)]
        method.save(update_fields=fields)
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.expiry_changed",
            message=f"{method.label}: expiry date changed from {old} to {method.expiry}",
            target=method,
        )
    return method


def _clear_expiry_decline(method: PaymentMethod) -> list[str]:
    """A new expiry date fixes a card declined because it expired, and nothing else. Returns changed fields."""
    if method.last_decline_code == "expired_card" or method.status == PaymentMethod.Status.EXPIRED:
        method.status = PaymentMethod.Status.VALID
        method.last_decline_code = ""
        return ["status", "last_decline_code"]
    return []


# ---------------------------------------------------------------------------------------------
# Managing payment methods: active, replace, edit, delete (owners and admins; PRODUCT.md flow 8)


def _locked_method(*, account_id: int, method_id: int, field: str = "method") -> PaymentMethod:
    """A card of this account under the account lock the caller holds; removed cards are not offered."""
    try:
        return (
            PaymentMethod.objects.select_for_update()
            .exclude(status=PaymentMethod.Status.DETACHED)
            .get(account_id=account_id, pk=method_id)
        )
    except PaymentMethod.DoesNotExist:
        msg = _("Choose a payment method.")
        raise PaymentError(msg, errors={field: msg}) from None


def _check_target(method: PaymentMethod, *, field: str) -> None:
    """A card that subscriptions move to must be able to pay them: not past its expiry date."""
    if method.is_expired():
        msg = _("%(card)s has expired. Choose another card or update its expiry date first.") % {
            "card": method.label
        }
        raise PaymentError(msg, errors={field: msg})


def payment_method_set_default(*, account_id: int, method_id: int, actor: Any) -> PaymentMethod:
    """Make this my active payment method: the account's default for new subscriptions and the card the
    payment panes offer first. Setting the current default again changes nothing."""
    _require_manager(account_id=account_id, actor=actor)
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        method = _locked_method(account_id=account_id, method_id=method_id)
        if method.is_default:
            return method
        _check_target(method, field="method")
        previous = PaymentMethod.objects.filter(account=account, is_default=True).first()
        # Clear first: the database allows one default per account at any moment.
        PaymentMethod.objects.filter(account=account, is_default=True).update(is_default=False)
        method.is_default = True
        method.save(update_fields=["is_default"])
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.made_default",
            message=f"{method.label} is now the active payment method"
            + (f" (was {previous.label})" if previous else ""),
            target=method,
            data={"previous": previous.pk if previous else None},
        )
    return method


def payment_method_replace_all(*, account_id: int, from_method_id: int, to_method_id: int, actor: Any) -> int:
    """Replace payment method for all items: every subscription on one card moves to another. Nothing is
    charged; renewals and retries use the new card from now on. Returns how many moved (0 on a repeat)."""
    _require_manager(account_id=account_id, actor=actor)
    if from_method_id == to_method_id:
        msg = _("Choose a different payment method from the one being replaced.")
        raise PaymentError(msg, errors={"method": msg})
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        # Both card rows in pk order (the lock order), the source may be any card still listed.
        first, second = sorted((from_method_id, to_method_id))
        locked = {
            m.pk: m
            for m in PaymentMethod.objects.select_for_update()
            .filter(account=account, pk__in=[first, second])
            .exclude(status=PaymentMethod.Status.DETACHED)
            .order_by("pk")
        }
        source, target = locked.get(from_method_id), locked.get(to_method_id)
        if source is None or target is None:
            msg = _("Choose a payment method.")
            raise PaymentError(msg, errors={"method": msg})
        _check_target(target, field="method")
        moved = (
            Subscription.objects.filter(account=account, payment_method=source)
            .exclude(status=Subscription.Status.DELETED)
            .update(payment_method=target)
        )
        if moved:
            audit_record(
                account=account,
                actor=actor,
                action="payment_method.replaced",
                message=f"{moved} subscription(s) moved from {source.label} to {target.label}; nothing was charged",
                target=target,
                data={"from": source.pk, "to": target.pk, "moved_subscriptions": moved},
            )
    return moved


def subscription_payment_method_replace(
    *, account_id: int, subscription_id: int, to_method_id: int, actor: Any
) -> Subscription:
    """Replace payment method on one subscription (Your products, its "…" menu). Nothing is charged."""
    _require_manager(account_id=account_id, actor=actor)
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        try:
            sub = (
                Subscription.objects.select_for_update(of=("self",))
                .select_related("product", "payment_method")
                .exclude(status=Subscription.Status.DELETED)
                .get(account=account, pk=subscription_id)
            )
        except Subscription.DoesNotExist:
            raise PaymentError(_("This subscription no longer exists.")) from None
        target = _locked_method(account_id=account_id, method_id=to_method_id)
        if sub.payment_method_id == target.pk:
            return sub
        _check_target(target, field="method")
        source = sub.payment_method
        sub.payment_method = target
        sub.save(update_fields=["payment_method"])
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.replaced",
            message=f"{sub.product.name}: payment method changed from "
            f"{source.label if source else 'none'} to {target.label}; nothing was charged",
            target=sub,
            data={"from": source.pk if source else None, "to": target.pk, "moved_subscriptions": 1},
        )
    return sub


def payment_method_update(
    *,
    account_id: int,
    method_id: int,
    actor: Any,
    holder_name: str,
    address_line1: str = "",
    address_line2: str = "",
    postal_code: str = "",
    city: str = "",
    country: str = "",
    exp_month: Any = None,
    exp_year: Any = None,
) -> PaymentMethod:
    """Edit a card: name on card and billing address (owners and admins), expiry (the card's owner only).
    The number is never editable: another number is another card. Nothing changes unless all is valid."""
    from billing_portal.countries import is_country_code

    _require_manager(account_id=account_id, actor=actor)
    current = (
        PaymentMethod.objects.exclude(status=PaymentMethod.Status.DETACHED)
        .filter(account_id=account_id, pk=method_id)
        .first()
    )
    if current is None:
        raise PaymentError(_("This payment method was deleted."))
    values = {
        "holder_name": (holder_name or "").strip(),
        "address_line1": (address_line1 or "").strip(),
        "address_line2": (address_line2 or "").strip(),
        "postal_code": (postal_code or "").strip(),
        "city": (city or "").strip(),
        "country": (country or "").strip().upper(),
    }
    errors: dict[str, str] = {}
    limits = {"holder_name": 120, "address_line1": 200, "address_line2": 200, "postal_code": 20, "city": 100}
    for name, limit in limits.items():
        if len(values[name]) > limit:
            errors[name] = _("Use at most %(n)d characters.") % {"n": limit}
    if not values["holder_name"]:
        errors["holder_name"] = _("Enter the name as printed on the card.")
    if values["country"] and not is_country_code(values["country"]):
        errors["country"] = _("Choose a country from the list.")
    new_expiry: tuple[int, int] | None = None
    expiry_given = exp_month not in (None, "") or exp_year not in (None, "")
    if expiry_given:
        try:
            month, year = validate_expiry(exp_month=exp_month, exp_year=exp_year)
        except InvalidCardInput as exc:
            errors.update(exc.errors)
        else:
            if (month, year) != (current.exp_month, current.exp_year):
                new_expiry = (month, year)
    if new_expiry is not None and (
        current.owner_id is None or current.owner_id != getattr(actor, "pk", None)
    ):
        raise NotCardOwner(_("Only the person who added this card can change its expiry date."))
    if errors:
        raise InvalidCardInput(_("Nothing was changed. Correct the highlighted fields."), errors=errors)
    if new_expiry is not None:
        result = get_gateway(current.gateway).update_expiry(
            token=current.gateway_token, exp_month=new_expiry[0], exp_year=new_expiry[1]
        )
        if not result.ok:
            raise InvalidCardInput(
                _("The bank did not accept the new expiry date."), errors=result.errors or {}
            )
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        method = _locked_method(account_id=account_id, method_id=method_id)
        changed = {k: [getattr(method, k), v] for k, v in values.items() if getattr(method, k) != v}
        for name, (_old, new) in changed.items():
            setattr(method, name, new)
        fields = list(changed)
        if new_expiry is not None:
            changed["expiry"] = [method.expiry, f"{new_expiry[0]:02d}/{new_expiry[1]}"]
            method.exp_month, method.exp_year = new_expiry
            fields += ["exp_month", "exp_year", *_clear_expiry_decline(method)]
        if not fields:
            return method
        method.save(update_fields=fields)
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.edited",
            message=f"{method.label}: " + ", ".join(f"{k} changed" for k in changed),
            target=method,
            data={"changed": changed},
        )
    return method


def _method_mark_removed(*, method: PaymentMethod, now: dt.datetime) -> None:
    method.status = PaymentMethod.Status.DETACHED
    method.removed_at = now
    method.is_default = False
    method.save(update_fields=["status", "removed_at", "is_default"])


def payment_method_remove(
    *, account_id: int, method_id: int, actor: Any, replacement_id: int | None = None
) -> PaymentMethod:
    """Delete a card. Its subscriptions first move to the replacement chosen in the same pane (required
    while any use it); it stays in our records for its payments' history, is never charged again, and
    is detached at the gateway. Deleting it twice (a double submit) is the one deletion."""
    _require_manager(account_id=account_id, actor=actor)
    now = timezone.now()
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        try:
            method = PaymentMethod.objects.select_for_update().get(account=account, pk=method_id)
        except PaymentMethod.DoesNotExist:
            raise PaymentError(_("Choose a payment method.")) from None
        if method.status == PaymentMethod.Status.DETACHED:
            return method
        if payments_in_flight(account_id=account.pk, method_id=method.pk).exists():
            raise PaymentInProgress(
                _(
                    "A payment with this card is still being processed. Delete it once that payment is finished."
                )
            )
        subs = Subscription.objects.filter(account=account, payment_method=method).exclude(
            status=Subscription.Status.DELETED
        )
        moved = 0
        replacement = None
        if subs.exists() or (method.is_default and replacement_id):
            if replacement_id is None or replacement_id == method.pk:
                msg = _("Choose the payment method that pays this card's subscriptions from now on.")
                raise PaymentError(msg, errors={"replacement": msg})
            replacement = _locked_method(account_id=account_id, method_id=replacement_id, field="replacement")
            _check_target(replacement, field="replacement")
            moved = subs.update(payment_method=replacement)
        was_default = method.is_default
        _method_mark_removed(method=method, now=now)
        if was_default and replacement is not None:
            replacement.is_default = True
            replacement.save(update_fields=["is_default"])
        audit_record(
            account=account,
            actor=actor,
            action="payment_method.removed",
            message=f"{method.label} was deleted"
            + (f"; {moved} subscription(s) moved to {replacement.label}" if replacement and moved else "")
            + ("; it was the active payment method" if was_default else ""),
            target=method,
            data={
                "replacement": replacement.pk if replacement else None,
                "moved_subscriptions": moved,
                "was_default": was_default,
            },
        )
    # After commit, outside the lock: a slow gateway must not hold the account. Our side is already done:
    # the engine and dunning never charge a removed card, whether or not the gateway answers.
    _gateway_detach(method_id=method.pk)
    return method


def _gateway_detach(*, method_id: int) -> None:
    method = PaymentMethod.objects.get(pk=method_id)
    if method.gateway_detached_at is not None or not method.gateway_token:
        return
    if _gateway_detach_token(gateway=method.gateway, token=method.gateway_token):
        PaymentMethod.objects.filter(pk=method_id).update(gateway_detached_at=timezone.now())


def _gateway_detach_token(*, gateway: str, token: str) -> bool:
    """Forget a card at its gateway. True when the gateway no longer holds it."""
    from .gateways.base import GatewayError, UnsupportedOperation

    if not token:
        return True
    try:
        get_gateway(gateway).detach(token=token)
    except UnsupportedOperation:
        logger.error("the %s gateway cannot detach cards; the card stays attached there", gateway)
        return False
    except GatewayError as exc:
        if exc.permanent:  # the gateway does not know the card (any more): nothing left to forget
            logger.warning("detach of a %s card refused as permanent: %s", gateway, exc)
            return True
        logger.exception("detach of a %s card failed; it stays attached at the gateway", gateway)
        return False
    except Exception:
        logger.exception("detach of a %s card failed; it stays attached at the gateway", gateway)
        return False
    return True
