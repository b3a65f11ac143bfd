"""Writes of the support console. Each action is audited in the transaction that makes it.

Money moves only under payments.services.account_lock (the lock every payment path shares), and
invoices and subscriptions change only through subscriptions.services' transitions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import BillingAccount
from audit.services import audit_record
from billing_portal.dates import format_datetime
from billing_portal.money import Money
from dunning.messages import refusal_text
from dunning.services import retry_budget_check, retry_refusal_record
from payments.ledger import bank_transfer_receive
from payments.models import PaymentAttempt, Refund
from payments.refunds import (
    RefundError,
    overpaid_minor,
    payment_invoice_parts,
    payment_refund,
    refund_check,
    refundable_minor,
)
from payments.services import account_lock, invoices_charge
from subscriptions.models import Invoice, Subscription

from .models import DashboardSnapshot, SupportConsole, SupportNote
from .selectors import in_flight_invoice_ids, support_payable_invoices

SUPPORT_STAFF_GROUP = "Support staff"
GRACE_EXTENSION_DAYS = range(1, 31)
REASON_MAX_LENGTH = 500
AMOUNT_RE = re.compile(r"^-?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$", re.ASCII)  # "٣" is not 3 here


class SupportActionError(Exception):
    """An action was refused; the message is shown to the operator as it is."""


def support_staff_group() -> Group:
    """The "Support staff" group with every support permission, created or completed if needed.

    Migration 0002 creates it; this also runs after every migrate/flush (post_migrate), because a
    flushed test database keeps Django's permissions but loses a data migration's rows.
    """
    content_type = ContentType.objects.get_for_model(SupportConsole, for_concrete_model=False)
    group, _created = Group.objects.get_or_create(name=SUPPORT_STAFF_GROUP)
    permissions = [
        Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": str(name)}
        )[0]
        for codename, name in SupportConsole._meta.permissions
    ]
    group.permissions.add(*permissions)
    return group


def _clean_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise SupportActionError(_("Give a reason; it goes into the audit trail."))
    if len(reason) > REASON_MAX_LENGTH:
        raise SupportActionError(_("Keep the reason under %(n)d characters.") % {"n": REASON_MAX_LENGTH})
    return reason


# -- looking ------------------------------------------------------------------------------------


def support_account_viewed(*, account: BillingAccount, actor: Any, ip_address: str | None = None) -> None:
    """Every look at an account by an operator is on record."""
    audit_record(
        account=account,
        actor=actor,
        action="support.account_viewed",
        message=f"Support ({actor.email}) opened the account",
        target=account,
        ip_address=ip_address,
    )


def support_searched(*, query: str, result_count: int, actor: Any, ip_address: str | None = None) -> None:
    """Searches are looks too: who looked for what is on record (with no account: it spans them)."""
    audit_record(
        actor=actor,
        action="support.searched",
        message=f"Support ({actor.email}) searched for “{query[:200]}”: {result_count} result(s)",
        data={"query": query[:200], "results": result_count},
        ip_address=ip_address,
    )


# -- notes --------------------------------------------------------------------------------------


@transaction.atomic
def support_note_add(
    *, account_id: int, author: Any, body: str, ip_address: str | None = None
) -> SupportNote:
    body = (body or "").strip()
    if not body:
        raise SupportActionError(_("Write the note first."))
    if len(body) > 2000:
        raise SupportActionError(_("Keep a note under 2,000 characters."))
    account = BillingAccount.objects.get(pk=account_id)
    note = SupportNote.objects.create(account=account, author=author, body=body)
    audit_record(
        account=account,
        actor=author,
        action="support.note_added",
        message=f"Support note: {body[:200]}",
        target=note,
        data={"reason": body[:REASON_MAX_LENGTH]},
        ip_address=ip_address,
    )
    return note


# -- bank transfers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    invoice: Invoice
    amount_minor: int

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.invoice.currency)

    @property
    def settles(self) -> bool:
        return self.amount_minor == self.invoice.amount_due_minor


def bank_transfer_parse_amount(*, amount: str, currency: str, account: BillingAccount) -> Money:
    """The operator's "1250.00" (or "1,250.00") as Money in the account's currency, or a clear refusal."""
    if currency and currency.upper() != account.currency:
        raise SupportActionError(
            _(
                "%(name)s is billed in %(currency)s; a transfer in %(other)s cannot be applied to its "
                "invoices. Ask finance to convert it first."
            )
            % {"name": account.name, "currency": account.currency, "other": currency.upper()}
        )
    text = (amount or "").strip()
    # "1250.00" or "1,250.00"; a comma anywhere else ("1.250,00") is refused rather than guessed.
    if not AMOUNT_RE.match(text):
        raise SupportActionError(
            _("Enter the amount as a number with at most two decimals, e.g. 1250.00 (%(currency)s).")
            % {"currency": account.currency}
        )
    try:
        money = Money.from_decimal(text.replace(",", ""), account.currency)
    except (InvalidOperation, ValueError):
        raise SupportActionError(
            _("Enter the amount as a number with at most two decimals, e.g. 1250.00 (%(currency)s).")
            % {"currency": account.currency}
        ) from None
    if money.amount_minor <= 0:
        raise SupportActionError(_("The amount must be more than zero."))
    return money


def bank_transfer_allocate(*, invoices: list[Invoice], amount_minor: int, reference: str) -> list[Allocation]:
    """Which invoices a transfer pays: an invoice whose number the reference names first, then the
    oldest due. A partial amount pays the last invoice partly. Over-payment is refused: we hold no
    credit, so the money has to go back (or be applied by finance) instead of vanishing here."""
    owed = sum(i.amount_due_minor for i in invoices)
    if amount_minor > owed:
        currency = invoices[0].currency if invoices else ""
        raise SupportActionError(
            _(
                "The transfer (%(amount)s) is more than everything the account owes (%(owed)s). We hold "
                "no credit: record only what pays invoices, and return the rest."
            )
            % {"amount": Money(amount_minor, currency), "owed": Money(owed, currency)}
            if invoices
            else _("Nothing is owed on this account, so there is nothing to record the transfer against.")
        )
    ref = reference.upper()
    named = [
        i for i in invoices if re.search(rf"(?<![A-Z0-9]){re.escape(i.number.upper())}(?![A-Z0-9])", ref)
    ]
    ordered = named + [i for i in invoices if i not in named]
    allocations: list[Allocation] = []
    left = amount_minor
    for invoice in ordered:
        if left <= 0:
            break
        part = min(left, invoice.amount_due_minor)
        allocations.append(Allocation(invoice, part))
        left -= part
    return allocations


def bank_transfer_idempotency_key(
    *, account_id: int, reference: str, received_on: dt.date, amount_minor: int
) -> str:
    """One transfer: its reference (however typed), the day it arrived and its amount, on one account.

    Customers quote the invoice number as the reference, so the reference alone would refuse a
    second instalment for the same invoice; the same three facts twice are the same transfer.
    """
    normalised = " ".join(reference.upper().split())
    digest = hashlib.sha256(f"{normalised}|{received_on.isoformat()}|{amount_minor}".encode()).hexdigest()[
        :40
    ]
    return f"bank-transfer:{account_id}:{digest}"


def _already_recorded(reference: str, money: Money, received_on: dt.date) -> SupportActionError:
    return SupportActionError(
        _(
            "A transfer of %(amount)s received on %(date)s with the reference “%(reference)s” is already "
            "recorded on this account."
        )
        % {"amount": money, "date": received_on.isoformat(), "reference": reference}
    )


def _clean_reference(reference: str) -> str:
    reference = " ".join((reference or "").split())
    if not reference:
        raise SupportActionError(
            _("Enter the bank's reference for the transfer (usually the invoice number).")
        )
    if len(reference) > 200:
        raise SupportActionError(_("The reference is too long (200 characters at most)."))
    return reference


def _check_received_on(received_on: dt.date | None) -> dt.date:
    if received_on is None:
        raise SupportActionError(_("Enter the date the transfer arrived."))
    if received_on > timezone.localdate():
        raise SupportActionError(_("The transfer cannot have arrived in the future."))
    return received_on


@dataclass(frozen=True)
class BankTransferPlan:
    money: Money
    reference: str
    received_on: dt.date
    allocations: list[Allocation]


def bank_transfer_preview(
    *, account: BillingAccount, amount: str, currency: str, received_on: dt.date | None, reference: str
) -> BankTransferPlan:
    """What recording would do, without doing it (the confirmation step shows this)."""
    if not account.pays_by_bank_transfer:
        raise SupportActionError(
            _("%(name)s pays by card; bank transfers are recorded only for accounts that pay by invoice.")
            % {"name": account.name}
        )
    money = bank_transfer_parse_amount(amount=amount, currency=currency, account=account)
    reference = _clean_reference(reference)
    received_on = _check_received_on(received_on)
    key = bank_transfer_idempotency_key(
        account_id=account.pk, reference=reference, received_on=received_on, amount_minor=money.amount_minor
    )
    if PaymentAttempt.objects.filter(idempotency_key=key).exists():
        raise _already_recorded(reference, money, received_on)
    invoices = list(support_payable_invoices(account_id=account.pk))
    allocations = bank_transfer_allocate(
        invoices=invoices, amount_minor=money.amount_minor, reference=reference
    )
    return BankTransferPlan(
        money=money, reference=reference, received_on=received_on, allocations=allocations
    )


def bank_transfer_record(
    *,
    account_id: int,
    amount: str,
    currency: str,
    received_on: dt.date | None,
    reference: str,
    actor: Any,
    reason: str,
    ip_address: str | None = None,
) -> PaymentAttempt:
    """Record money that arrived by bank transfer: pay the invoices it covers, reactivate their
    subscriptions. The same reference cannot be recorded twice on an account (unique idempotency key)."""
    reason = _clean_reason(reason)
    try:
        with transaction.atomic():
            return _bank_transfer_record(
                account_id=account_id,
                amount=amount,
                currency=currency,
                received_on=received_on,
                reference=reference,
                actor=actor,
                reason=reason,
                ip_address=ip_address,
            )
    except IntegrityError:
        # Two operators recording the same transfer at once: the unique key lets one through.
        account = BillingAccount.objects.get(pk=account_id)
        money = bank_transfer_parse_amount(amount=amount, currency=currency, account=account)
        clean_reference = _clean_reference(reference)
        day = _check_received_on(received_on)
        key = bank_transfer_idempotency_key(
            account_id=account_id, reference=clean_reference, received_on=day, amount_minor=money.amount_minor
        )
        if PaymentAttempt.objects.filter(idempotency_key=key).exists():
            raise _already_recorded(clean_reference, money, day) from None
        raise


def _bank_transfer_record(
    *,
    account_id: int,
    amount: str,
    currency: str,
    received_on: dt.date | None,
    reference: str,
    actor: Any,
    reason: str,
    ip_address: str | None,
) -> PaymentAttempt:
    account = account_lock(account_id=account_id)
    # Under the lock: re-read what is unpaid, so the plan is the truth at this instant.
    plan = bank_transfer_preview(
        account=account, amount=amount, currency=currency, received_on=received_on, reference=reference
    )
    busy = in_flight_invoice_ids(account_id=account.pk, invoice_ids=[a.invoice.pk for a in plan.allocations])
    if busy:
        numbers = ", ".join(a.invoice.number for a in plan.allocations if a.invoice.pk in busy)
        raise SupportActionError(
            _("A card payment for %(invoices)s is still in progress; try again when it has finished.")
            % {"invoices": numbers}
        )
    # Support writes no payments tables: the payments ledger records and applies the money, restores
    # subscriptions and sends the receipt, exactly as for a card payment.
    attempt = bank_transfer_receive(
        account_id=account.pk,
        amount_minor=plan.money.amount_minor,
        received_on=plan.received_on,
        reference=plan.reference,
        allocations=[(a.invoice.pk, a.amount_minor) for a in plan.allocations],
        idempotency_key=bank_transfer_idempotency_key(
            account_id=account.pk,
            reference=plan.reference,
            received_on=plan.received_on,
            amount_minor=plan.money.amount_minor,
        ),
        actor=actor,
    )
    audit_record(
        account=account,
        actor=actor,
        action="support.bank_transfer_recorded",
        message=(
            f"Bank transfer of {plan.money} received on {plan.received_on:%d %b %Y} (ref. {plan.reference}) "
            f"recorded as {attempt.reference}: "
            + ", ".join(f"{a.invoice.number} {a.amount}" for a in plan.allocations)
        ),
        target=attempt,
        data={
            "reason": reason,
            "amount_minor": plan.money.amount_minor,
            "currency": plan.money.currency,
            "received_on": plan.received_on.isoformat(),
            "reference": plan.reference,
            "invoices": {a.invoice.number: a.amount_minor for a in plan.allocations},
        },
        ip_address=ip_address,
    )
    return attempt


# -- grace periods ------------------------------------------------------------------------------


@transaction.atomic
def subscription_grace_extend(
    *,
    account_id: int,
    subscription_id: int,
    days: int,
    actor: Any,
    reason: str,
    ip_address: str | None = None,
) -> Subscription:
    """Give a past-due subscription more days before it is disabled (1 to 30 at a time)."""
    reason = _clean_reason(reason)
    if days not in GRACE_EXTENSION_DAYS:
        raise SupportActionError(_("Extend the grace period by 1 to 30 days."))
    account = account_lock(account_id=account_id)
    try:
        sub = (
            Subscription.objects.select_for_update()
            .select_related("product")
            .get(pk=subscription_id, account_id=account.pk)
        )
    except Subscription.DoesNotExist:
        raise SupportActionError(_("That subscription does not belong to this account.")) from None
    if sub.status != Subscription.Status.PAST_DUE:
        raise SupportActionError(
            _("%(product)s is %(status)s; only a past-due subscription has a grace period to extend.")
            % {"product": sub.product.name, "status": sub.get_status_display().lower()}
        )
    delta = dt.timedelta(days=days)
    previous = sub.grace_ends_at or timezone.now()
    sub.grace_ends_at = previous + delta
    sub.next_lifecycle_at = (sub.next_lifecycle_at or previous) + delta
    sub.save(update_fields=["grace_ends_at", "next_lifecycle_at"])
    audit_record(
        account=account,
        actor=actor,
        action="support.grace_extended",
        message=(
            f"Grace period of {sub.product.name} extended by {days} days, "
            f"from {previous:%d %b %Y} to {sub.grace_ends_at:%d %b %Y}"
        ),
        target=sub,
        data={
            "reason": reason,
            "days": days,
            "previous_grace_ends_at": previous.isoformat(),
            "grace_ends_at": sub.grace_ends_at.isoformat(),
        },
        ip_address=ip_address,
    )
    return sub


# -- retry now ----------------------------------------------------------------------------------


def invoice_retry_now(
    *,
    account_id: int,
    invoice_id: int,
    actor: Any,
    reason: str,
    idempotency_key: str,
    ip_address: str | None = None,
    override_budget: bool = False,
) -> PaymentAttempt:
    """Charge a past-due invoice now, off-session, to its subscription's card, through the same
    locked payment service as every other charge (payments.services.invoices_charge).

    The retry budget (the card networks' rules, dunning.services.retry_budget_check) is asked first,
    as for every automatic charge. A refusal stops the charge and is recorded; support may override
    it, with the reason given, and the override is audited."""
    reason = _clean_reason(reason)
    # A double submit of the confirmation carries the same key: answer with the first attempt.
    existing = PaymentAttempt.objects.filter(idempotency_key=idempotency_key, account_id=account_id).first()
    if existing is not None:
        return existing
    invoice = (
        Invoice.objects.select_related("subscription__payment_method", "account")
        .filter(pk=invoice_id, account_id=account_id)
        .first()
    )
    if invoice is None:
        raise SupportActionError(_("That invoice does not belong to this account."))
    if invoice.status != Invoice.Status.PAST_DUE or invoice.amount_due_minor <= 0:
        raise SupportActionError(
            _("Invoice %(number)s is not past due; there is nothing to retry.") % {"number": invoice.number}
        )
    method = invoice.subscription.payment_method if invoice.subscription else None
    if method is None:
        raise SupportActionError(
            _("Invoice %(number)s has no card to charge; the account pays by invoice.")
            % {"number": invoice.number}
        )
    now = timezone.now()
    decision = retry_budget_check(
        account_id=account_id,
        method_id=method.pk,
        amount_minor=invoice.amount_due_minor,
        source=PaymentAttempt.Source.SUPPORT_RETRY,
        at=now,
    )
    if not decision.allowed:
        with transaction.atomic():
            retry_refusal_record(
                account=invoice.account,
                decision=decision,
                source=PaymentAttempt.Source.SUPPORT_RETRY,
                invoice=invoice,
                method_id=method.pk,
                actor=actor,
                actor_label=f"support: {actor.email}",
                overridden=override_budget,
                reason=reason,
            )
        if not override_budget:
            when = (
                _("It may be charged again from %(when)s.") % {"when": format_datetime(decision.not_before)}
                if decision.not_before
                else _("This card may not be charged again.")
            )
            raise SupportActionError(
                _("The card network's retry rules do not allow charging %(method)s now: %(rule)s. %(when)s")
                % {"method": method.label, "rule": refusal_text(decision.reason), "when": when}
            )
    with transaction.atomic():
        audit_record(
            account=invoice.account,
            actor=actor,
            action="support.retry_requested",
            message=f"Support retried invoice {invoice.number} now on {method.label}",
            target=invoice,
            data={"reason": reason, "invoice": invoice.number, "payment_method": method.pk},
            ip_address=ip_address,
        )
    return invoices_charge(
        account_id=account_id,
        invoice_ids=[invoice.pk],
        payment_method_id=method.pk,
        source=PaymentAttempt.Source.SUPPORT_RETRY,
        off_session=True,
        idempotency_key=idempotency_key,
        actor=actor,
        actor_label=f"support: {actor.email}",
        retry_policy="support",
    )


def dashboard_snapshot_refresh(*, now: dt.datetime | None = None) -> DashboardSnapshot:
    """Compute the recovery dashboard's figures and store them as the one snapshot row the page reads.
    Run by the beat task every few minutes; a page view never scans the invoices itself."""
    from time import perf_counter

    from .dashboard import SNAPSHOT_KEY, dashboard_figures

    now = now or timezone.now()
    started = perf_counter()
    figures = json.loads(json.dumps(dashboard_figures(now=now), cls=DjangoJSONEncoder))
    snapshot, _created = DashboardSnapshot.objects.update_or_create(
        key=SNAPSHOT_KEY,
        defaults={
            "data": figures,
            "computed_at": now,
            "duration_ms": round((perf_counter() - started) * 1000),
        },
    )
    return snapshot


# -- refunds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundPlan:
    attempt: PaymentAttempt
    money: Money
    refundable: Money
    overpaid: Money
    # (invoice number, amount) the credit notes will be written for, oldest invoice first.
    credit_notes: list[tuple[str, Money]]


def _refundable_attempt(*, account_id: int, attempt_id: int) -> PaymentAttempt:
    attempt = (
        PaymentAttempt.objects.select_related("payment_method", "account")
        .filter(pk=attempt_id, account_id=account_id)
        .first()
    )
    if attempt is None:
        raise SupportActionError(_("That payment does not belong to this account."))
    return attempt


def payment_refund_preview(
    *, account: BillingAccount, attempt_id: int, amount: str, overpayment: bool = False
) -> RefundPlan:
    """What refunding would do, without doing it (the confirmation step shows this). An empty amount
    means everything that is left; an overpayment refund is always exactly what was overpaid."""
    attempt = _refundable_attempt(account_id=account.pk, attempt_id=attempt_id)
    left = refundable_minor(attempt=attempt)
    overpaid = overpaid_minor(attempt=attempt)
    if overpayment:
        if overpaid <= 0:
            raise SupportActionError(
                _("Payment %(reference)s has no overpaid money left to refund.")
                % {"reference": attempt.reference}
            )
        amount_minor = overpaid
        shown = (amount or "").strip()
        if (
            shown
            and bank_transfer_parse_amount(amount=shown, currency="", account=account).amount_minor
            != overpaid
        ):
            raise SupportActionError(
                _("The overpaid amount of %(reference)s changed to %(amount)s; review it again.")
                % {"reference": attempt.reference, "amount": Money(overpaid, attempt.currency)}
            )
    elif (amount or "").strip():
        amount_minor = bank_transfer_parse_amount(amount=amount, currency="", account=account).amount_minor
    else:
        amount_minor = left
    try:
        refund_check(attempt=attempt, amount_minor=amount_minor)
    except RefundError as exc:
        raise SupportActionError(exc.message) from None
    invoice_part = amount_minor - min(amount_minor, overpaid)
    parts = payment_invoice_parts(attempt=attempt, amount_minor=invoice_part)
    numbers = dict(Invoice.objects.filter(pk__in=[i for i, _p in parts]).values_list("pk", "number"))
    return RefundPlan(
        attempt=attempt,
        money=Money(amount_minor, attempt.currency),
        refundable=Money(left, attempt.currency),
        overpaid=Money(overpaid, attempt.currency),
        credit_notes=[(numbers[i], Money(p, attempt.currency)) for i, p in parts],
    )


def support_payment_refund(
    *,
    account_id: int,
    attempt_id: int,
    amount: str,
    actor: Any,
    reason: str,
    idempotency_key: str,
    overpayment: bool = False,
    ip_address: str | None = None,
) -> Refund:
    """Refund a succeeded card payment, fully or partly, through the payments service (which takes the
    account lock, re-checks what is left and asks the gateway with the idempotency key). A double
    submit of the confirmation carries the same key and gets the first refund back."""
    reason = _clean_reason(reason)
    existing = Refund.objects.filter(idempotency_key=idempotency_key, account_id=account_id).first()
    if existing is not None:
        return existing
    account = BillingAccount.objects.get(pk=account_id)
    plan = payment_refund_preview(
        account=account, attempt_id=attempt_id, amount=amount, overpayment=overpayment
    )
    try:
        return payment_refund(
            attempt_id=plan.attempt.pk,
            amount_minor=plan.money.amount_minor,
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            source=Refund.Source.OVERPAYMENT if overpayment else Refund.Source.SUPPORT,
            ip_address=ip_address,
        )
    except RefundError as exc:
        raise SupportActionError(exc.message) from None
