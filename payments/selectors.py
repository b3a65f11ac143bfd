"""Reads for the payment pages. Every query is scoped to one billing account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.utils import formats
from django.utils.html import escape
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from accounts.models import BillingAccount
from billing_portal.compiled import CompiledQuery
from billing_portal.dates import format_date
from billing_portal.money import Money, format_money
from subscriptions.models import Invoice, Product, Subscription

from .models import PaymentAllocation, PaymentAttempt, PaymentMethod

# -- past due, per payment method (Home, Your products, Payment methods, subscription details) -------

_UNPAID_METHOD_STATUSES = (PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED)


@dataclass(frozen=True)
class MethodBalance:
    """What is past due on the subscriptions that one payment method pays (None: no method, e.g. bank transfer).

    This is the amount Settle balance collects for that method: every past-due invoice of every
    subscription on it, at once (PRODUCT.md flow 3).
    """

    method: PaymentMethod | None
    amount: Money
    subscription_count: int
    invoice_count: int

    @property
    def method_declined(self) -> bool:
        return self.method is not None and self.method.status in _UNPAID_METHOD_STATUSES


@dataclass(frozen=True)
class PastDueSummary:
    total: Money
    by_method: list[MethodBalance] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.total.amount_minor > 0

    @property
    def declined(self) -> list[MethodBalance]:
        return [b for b in self.by_method if b.method_declined]

    @property
    def subscription_count(self) -> int:
        return sum(b.subscription_count for b in self.by_method)

    def for_method(self, method_id: int) -> MethodBalance | None:
        for balance in self.by_method:
            if balance.method is not None and balance.method.pk == method_id:
                return balance
        return None


# Past due per card and currency, with each card's row joined on: one statement for what took two
# (an aggregate, then the cards by id). Home, Your products, Payment methods and a subscription's page
# all show it. The NULL card is the bank-transfer balance; its joined columns are NULL. The aggregates'
# names clash with no model attribute (raw() sets each column on the card). Both joins name the account
# although its invoices only point at its own subscriptions and cards: it bounds the join to the account's
# rows whatever the planner guesses (without it PostgreSQL hashed every card in the table for two groups).
_PAST_DUE_SUMMARY_SQL = """
SELECT pm.*, due.method_key, due.due_currency, due.due_amount, due.due_invoices, due.due_subscriptions
FROM (
    SELECT s.payment_method_id AS method_key, i.currency AS due_currency, SUM(i.amount_due_minor) AS due_amount,
           COUNT(i.id) AS due_invoices, COUNT(DISTINCT i.subscription_id) AS due_subscriptions
    FROM {invoice} i
    LEFT OUTER JOIN {subscription} s ON i.subscription_id = s.id AND s.account_id = %(account)s
    WHERE i.account_id = %(account)s AND i.status = %(status)s AND i.amount_due_minor > 0
    GROUP BY s.payment_method_id, i.currency
) due
LEFT OUTER JOIN {method} pm ON pm.id = due.method_key AND pm.account_id = %(account)s
ORDER BY due.due_amount DESC, due.method_key
"""


def past_due_summary(*, account: BillingAccount) -> PastDueSummary:
    """Everything past due on the account, in total and per payment method. One query."""
    sql = _PAST_DUE_SUMMARY_SQL.format(
        invoice=connection.ops.quote_name(Invoice._meta.db_table),
        subscription=connection.ops.quote_name(Subscription._meta.db_table),
        method=connection.ops.quote_name(PaymentMethod._meta.db_table),
    )
    total = Money.zero(account.currency)
    balances = []
    for row in PaymentMethod.objects.raw(
        sql, {"account": account.pk, "status": Invoice.Status.PAST_DUE.value}
    ):
        due = vars(row)  # the aggregate columns raw() set beside the card's fields
        amount = Money(int(due["due_amount"]), due["due_currency"])
        total = total + amount  # raises CurrencyMismatch rather than adding euros to dollars
        balances.append(
            MethodBalance(
                method=row if due["method_key"] is not None else None,
                amount=amount,
                subscription_count=due["due_subscriptions"],
                invoice_count=due["due_invoices"],
            )
        )
    return PastDueSummary(total=total, by_method=balances)


@dataclass(frozen=True)
class SettleQuote:
    """What one Settle balance payment clears. The server computes it; the form never carries amounts."""

    failed_method: PaymentMethod
    chosen_method: PaymentMethod | None
    # Past-due invoices of every subscription on the failed method.
    invoices: list[Invoice]
    # Past-due invoices of subscriptions on the chosen method: they join the total (PRODUCT.md flow 3).
    chosen_method_invoices: list[Invoice] = field(default_factory=list)
    currency: str = "EUR"

    @property
    def failed_total(self) -> Money:
        return Money(sum(i.amount_due_minor for i in self.invoices), self.currency)

    @property
    def chosen_method_total(self) -> Money:
        return Money(sum(i.amount_due_minor for i in self.chosen_method_invoices), self.currency)

    @property
    def total(self) -> Money:
        return self.failed_total + self.chosen_method_total

    @property
    def invoice_ids(self) -> list[int]:
        return [i.pk for i in self.invoices + self.chosen_method_invoices]

    @property
    def is_empty(self) -> bool:
        return not self.invoices and not self.chosen_method_invoices


def _past_due_on_method(*, account: BillingAccount, method_id: int) -> list[Invoice]:
    return list(
        Invoice.objects.filter(
            account=account,
            status=Invoice.Status.PAST_DUE,
            amount_due_minor__gt=0,
            subscription__payment_method_id=method_id,
        )
        .select_related("subscription__product")
        .order_by("subscription__product__name", "pk")
    )


def settle_quote(
    *, account: BillingAccount, failed_method: PaymentMethod, chosen_method: PaymentMethod | None
) -> SettleQuote:
    invoices = _past_due_on_method(account=account, method_id=failed_method.pk)
    extra: list[Invoice] = []
    if chosen_method is not None and chosen_method.pk != failed_method.pk:
        extra = _past_due_on_method(account=account, method_id=chosen_method.pk)
    return SettleQuote(
        failed_method=failed_method,
        chosen_method=chosen_method,
        invoices=invoices,
        chosen_method_invoices=extra,
        currency=account.currency,
    )


# How many past-due invoices of each card the Settle balance pane lists; the rest are counted
# ("and 990 more") with a link to the Invoices page filtered to past due. Totals are SQL sums of all.
# Ten a card fit the pane without scrolling; each listed row is most of what the pane costs to render
# for a large account (bench/load.py), so the list stays short.
SETTLE_INVOICES_LISTED = 10


@dataclass(frozen=True, slots=True)
class SettleRow:
    """One listed invoice of the Settle balance pane with its display values worked out and escaped
    once (SafeString), so the template only prints them: a row costs the template a lookup per cell
    instead of model instances, a translation, a date and a money format each."""

    pk: int
    number: SafeString
    subscription: SafeString  # "Microsoft 365 E3 ×25"
    due: SafeString  # "Due 24 Nov 2026", in the active language
    amount: SafeString  # the amount due, formatted for the active language


@dataclass(frozen=True)
class SettlePreview:
    """What the Settle balance pane shows: the same totals as SettleQuote, summed in SQL, and the first
    SETTLE_INVOICES_LISTED invoices of each card. One query, however many invoices are past due."""

    failed_method: PaymentMethod
    chosen_method: PaymentMethod | None
    invoices: list[SettleRow]
    failed_count: int
    failed_total: Money
    chosen_method_invoices: list[SettleRow]
    chosen_method_count: int
    chosen_method_total: Money
    # A payment is still under way for one of these invoices (attempts_in_flight_on_methods says which).
    payments_in_flight: bool = False

    @property
    def total(self) -> Money:
        return self.failed_total + self.chosen_method_total

    @property
    def failed_more(self) -> int:
        return self.failed_count - len(self.invoices)

    @property
    def chosen_method_more(self) -> int:
        return self.chosen_method_count - len(self.chosen_method_invoices)

    @property
    def is_empty(self) -> bool:
        return not self.failed_count and not self.chosen_method_count


# The preview's one statement, written once: the ORM spent more of the pane's time compiling the
# windowed query than PostgreSQL spent running it (bench/calls.py). The same filters as
# _past_due_on_method (and SettleQuote, which Settle balance charges). The card's past-due invoices are
# read once (the CTE); a hash aggregate sums and counts them per card, and each card's first few in the
# pane's order come from a top-N sort of its own rows. (A window over all of them sorted every invoice
# and was a third slower at 1,000.) Always two card ids (the failed card twice when no other card is
# chosen; the second branch is then empty), so the text never changes. Each branch is a subquery
# because SQLite allows no parentheses around the parts of a UNION. `in_flight` says whether a payment is
# still under way for any of these invoices (payments_in_flight's test, over the same invoices): the pane
# then reads which ones (attempts_in_flight_on_methods); usually none is, and that round trip is saved.
_SETTLE_PREVIEW_SQL = """
WITH due AS MATERIALIZED (
    SELECT i.id, i.number, i.currency, i.amount_due_minor, i.due_on, s.quantity, p.name, s.payment_method_id
    FROM {invoice} i
    INNER JOIN {subscription} s ON i.subscription_id = s.id
    INNER JOIN {product} p ON s.product_id = p.id
    WHERE i.account_id = %(account)s AND i.status = %(status)s AND i.amount_due_minor > 0
      AND s.account_id = %(account)s AND s.payment_method_id IN (%(failed)s, %(chosen)s)
), sums AS (
    SELECT payment_method_id, SUM(amount_due_minor) AS method_total, COUNT(*) AS method_count
    FROM due GROUP BY payment_method_id
)
SELECT listed.*, sums.method_total, sums.method_count, EXISTS (
    SELECT 1 FROM {attempt} a
    WHERE a.account_id = %(account)s AND a.status IN ({in_flight})
      AND EXISTS (SELECT 1 FROM {allocation} al WHERE al.attempt_id = a.id AND al.invoice_id IN (SELECT id FROM due))
) AS in_flight FROM (
    SELECT * FROM (
        SELECT * FROM due WHERE payment_method_id = %(failed)s ORDER BY name, id LIMIT %(listed)s
    ) AS failed_listed
    UNION ALL
    SELECT * FROM (
        SELECT * FROM due WHERE payment_method_id = %(chosen)s AND %(chosen)s <> %(failed)s
        ORDER BY name, id LIMIT %(listed)s
    ) AS chosen_listed
) AS listed
INNER JOIN sums ON sums.payment_method_id = listed.payment_method_id
ORDER BY listed.name, listed.id
"""


def _settle_preview_sql() -> str:
    return _SETTLE_PREVIEW_SQL.format(
        invoice=connection.ops.quote_name(Invoice._meta.db_table),
        subscription=connection.ops.quote_name(Subscription._meta.db_table),
        product=connection.ops.quote_name(Product._meta.db_table),
        attempt=connection.ops.quote_name(PaymentAttempt._meta.db_table),
        allocation=connection.ops.quote_name(PaymentAllocation._meta.db_table),
        in_flight=", ".join(f"%(in_flight_{i})s" for i in range(len(PaymentAttempt.IN_FLIGHT))),
    )


def settle_preview(
    *, account: BillingAccount, failed_method: PaymentMethod, chosen_method: PaymentMethod | None
) -> SettlePreview:
    """The Settle balance pane's figures, in one query (above), as display rows in the active language."""
    chosen_id = (
        chosen_method.pk if chosen_method is not None and chosen_method.pk != failed_method.pk else None
    )
    method_ids = [failed_method.pk] if chosen_id is None else [failed_method.pk, chosen_id]
    with connection.cursor() as cursor:
        cursor.execute(
            _settle_preview_sql(),
            {
                "account": account.pk,
                "status": Invoice.Status.PAST_DUE.value,
                "failed": failed_method.pk,
                "chosen": chosen_id or failed_method.pk,
                "listed": SETTLE_INVOICES_LISTED,
                **{f"in_flight_{i}": status.value for i, status in enumerate(PaymentAttempt.IN_FLIGHT)},
            },
        )
        rows = cursor.fetchall()
    due = gettext("Due %(date)s")
    listed: dict[int, list[SettleRow]] = {pk: [] for pk in method_ids}
    totals = dict.fromkeys(method_ids, 0)
    counts = dict.fromkeys(method_ids, 0)
    in_flight = False
    for pk, number, currency, amount_due, due_on, quantity, name, method_id, total, count, flight in rows:
        in_flight = bool(flight)
        if isinstance(due_on, str):  # SQLite hands dates back as text from a raw cursor
            due_on = dt.date.fromisoformat(due_on)
        listed[method_id].append(
            SettleRow(
                pk=pk,
                number=escape(number),
                subscription=escape(f"{name} ×{formats.localize(quantity)}"),
                due=escape(due % {"date": format_date(due_on)}),
                amount=escape(format_money(amount_due, currency)),
            )
        )
        totals[method_id] = int(total)
        counts[method_id] = count
    return SettlePreview(
        failed_method=failed_method,
        chosen_method=chosen_method,
        invoices=listed[failed_method.pk],
        failed_count=counts[failed_method.pk],
        failed_total=Money(totals[failed_method.pk], account.currency),
        chosen_method_invoices=listed[chosen_id] if chosen_id else [],
        chosen_method_count=counts[chosen_id] if chosen_id else 0,
        chosen_method_total=Money(totals[chosen_id] if chosen_id else 0, account.currency),
        payments_in_flight=in_flight,
    )


def payments_in_flight(
    *,
    account_id: int,
    invoices: Iterable[Invoice] | Iterable[int] | QuerySet[Invoice, Any] | None = None,
    method_id: int | None = None,
) -> QuerySet[PaymentAttempt]:
    """The one query for "payments in flight": attempts of the account whose outcome is still open (pending,
    waiting for 3-D Secure, or unknown and being reconciled) that pay any of these invoices (invoices, their
    ids, or a subquery of them) and/or were made with this payment method; each attempt once, oldest first.

    Nothing may charge these invoices (or remove this card) while one exists. The money paths call it in
    their own transaction under `account_lock`, so it sees what the lock protects; add `select_for_update()`
    to the result where the caller needs the attempt rows themselves locked.
    """
    attempts = PaymentAttempt.objects.filter(account_id=account_id, status__in=PaymentAttempt.IN_FLIGHT)
    if invoices is not None:
        # EXISTS, not a join and DISTINCT: PostgreSQL starts from the account's few open attempts instead of
        # joining every listed invoice (a thousand past-due ones) to the allocations and removing duplicates.
        pays_listed = PaymentAllocation.objects.filter(attempt=OuterRef("pk"), invoice__in=invoices)
        attempts = attempts.filter(Exists(pays_listed))
    if method_id is not None:
        attempts = attempts.filter(payment_method_id=method_id)
    return attempts.order_by("pk")


def _in_flight_on_methods(*, account_id: int, method_ids: list[int]) -> QuerySet[PaymentAttempt]:
    past_due = Invoice.objects.filter(
        account_id=account_id,
        status=Invoice.Status.PAST_DUE,
        amount_due_minor__gt=0,
        subscription__payment_method_id__in=method_ids,
    ).values("pk")
    return payments_in_flight(account_id=account_id, invoices=past_due)


# Compiled once per process: on the Settle balance pane the ORM took longer to write this statement (4–5 ms)
# than PostgreSQL takes to plan and run it (1.5–2.3 ms). Same query, same SQL (billing_portal.compiled).
_in_flight_on_methods_compiled = CompiledQuery(_in_flight_on_methods)


def attempts_in_flight_on_methods(*, account: BillingAccount, method_ids: list[int]) -> list[PaymentAttempt]:
    """Payments still under way for any past-due invoice of subscriptions on these cards (what Settle
    balance would collect), found by a subquery instead of a list of every invoice id."""
    return _in_flight_on_methods_compiled(account_id=account.pk, method_ids=method_ids)


def attempts_in_flight(*, account: BillingAccount, invoice_ids: list[int]) -> list[PaymentAttempt]:
    """Payments still under way for these invoices (pending, waiting for 3-D Secure, or being checked)."""
    if not invoice_ids:
        return []
    return list(payments_in_flight(account_id=account.pk, invoices=invoice_ids))


def payment_methods_usable(*, account: BillingAccount) -> QuerySet[PaymentMethod]:
    """Cards a payer may choose (removed ones are gone)."""
    return (
        PaymentMethod.objects.filter(account=account)
        .exclude(status=PaymentMethod.Status.DETACHED)
        .select_related("owner")
        .order_by("-is_default", "pk")
    )


@dataclass(frozen=True)
class SettleMethods:
    """The cards the Settle balance pane needs, read together: the failed card (None: not this account's),
    the card the person chose (None: none chosen, or not a usable card of this account) and the cards a
    payer may choose, as `payment_methods_usable` orders them."""

    failed: PaymentMethod | None
    chosen: PaymentMethod | None
    usable: list[PaymentMethod]


def _settle_cards(*, account_id: int, failed_method_id: int) -> QuerySet[PaymentMethod]:
    detached = PaymentMethod.Status.DETACHED
    return (
        PaymentMethod.objects.filter(Q(pk=failed_method_id) | ~Q(status=detached), account_id=account_id)
        .select_related("owner")
        .order_by("-is_default", "pk")
    )


# Compiled once per process (billing_portal.compiled): the ORM spent 4–5 ms of the pane's time writing it.
_settle_cards_compiled = CompiledQuery(_settle_cards)


def settle_methods(
    *, account: BillingAccount, failed_method_id: int, chosen_method_id: int | None = None
) -> SettleMethods:
    """One query instead of three: the usable cards plus the failed card, which may have been removed
    since it declined (its past-due invoices still show)."""
    rows = _settle_cards_compiled(account_id=account.pk, failed_method_id=failed_method_id)
    usable = [m for m in rows if m.status != PaymentMethod.Status.DETACHED]
    return SettleMethods(
        failed=next((m for m in rows if m.pk == failed_method_id), None),
        chosen=next((m for m in usable if m.pk == chosen_method_id), None) if chosen_method_id else None,
        usable=usable,
    )


def payment_methods_declined(*, account: BillingAccount) -> QuerySet[PaymentMethod]:
    """Declined cards that still pay subscriptions with something past due: the warning's subject."""
    return (
        PaymentMethod.objects.filter(
            account=account,
            status__in=[PaymentMethod.Status.DECLINED, PaymentMethod.Status.EXPIRED],
            subscriptions__invoices__status=Invoice.Status.PAST_DUE,
        )
        .distinct()
        .order_by("pk")
    )


def payment_method_past_due_total(*, account: BillingAccount, method_id: int) -> Money:
    total = Invoice.objects.filter(
        account=account,
        status=Invoice.Status.PAST_DUE,
        amount_due_minor__gt=0,
        subscription__payment_method_id=method_id,
    ).aggregate(total=Sum("amount_due_minor"))["total"]
    return Money(int(total or 0), account.currency)


def attempts_due_for_reconcile(*, now, limit: int = 100) -> QuerySet[PaymentAttempt]:
    """Unknown attempts whose next look-up is due, and pending ones a crashed process left behind."""
    from .services import PENDING_STALE_AFTER

    return PaymentAttempt.objects.filter(
        Q(status=PaymentAttempt.Status.UNKNOWN, reconcile_after__lte=now)
        | Q(status=PaymentAttempt.Status.PENDING, created_at__lt=now - PENDING_STALE_AFTER)
    ).order_by("created_at", "pk")[:limit]


def attempts_abandoned(*, now, limit: int = 100) -> QuerySet[PaymentAttempt]:
    """3-D Secure challenges nobody finished: canceled at the gateway so they block no retry."""
    from .services import ABANDONED_ACTION_AFTER

    return PaymentAttempt.objects.filter(
        status=PaymentAttempt.Status.REQUIRES_ACTION, created_at__lt=now - ABANDONED_ACTION_AFTER
    ).order_by("created_at", "pk")[:limit]


# Subscriptions a card still pays for (cancelled and deleted ones no longer renew).
_LIVE = [
    Subscription.Status.ACTIVE,
    Subscription.Status.PAST_DUE,
    Subscription.Status.WARNED,
    Subscription.Status.DISABLED,
]

# How many of a card's subscriptions the card names; the rest are counted ("and 12 more").
SUBSCRIPTIONS_LISTED_PER_METHOD = 5


def payment_methods_for_account(*, account: BillingAccount) -> QuerySet[PaymentMethod]:
    """The account's cards (removed ones left out), each with how many live subscriptions it pays and the
    first few of them. Two queries; the prefetch is sliced per card (a window function), so a card that
    pays 1,000 subscriptions loads five."""
    live = Q(subscriptions__status__in=_LIVE)
    first_live = (
        Subscription.objects.filter(status__in=_LIVE)
        .select_related("product")
        .order_by("product__name", "pk")
    )[:SUBSCRIPTIONS_LISTED_PER_METHOD]
    return (
        PaymentMethod.objects.filter(account=account)
        .exclude(status=PaymentMethod.Status.DETACHED)
        .select_related("owner")
        .annotate(live_subscription_count=Count("subscriptions", filter=live))
        .prefetch_related(Prefetch("subscriptions", queryset=first_live, to_attr="first_subscriptions"))
        .order_by("-is_default", "pk")
    )


def payment_method_subscription_count(*, method: PaymentMethod) -> int:
    """Subscriptions a card pays or would pay again (all but deleted ones): what Delete must move first."""
    return method.subscriptions.exclude(status=Subscription.Status.DELETED).count()


@dataclass(frozen=True)
class InvoiceMoneyRow:
    """One line of an invoice's money history, for the customer's invoice page."""

    # "payment" and "credit_note" lower what is due; "refund" (money back) and "chargeback" raise it.
    kind: str
    at: dt.datetime
    reference: str
    description: str
    amount: Money


def invoice_money_history(*, invoice: Invoice) -> list[InvoiceMoneyRow]:
    """Payments applied to the invoice, credit notes its refunds left, and lost chargebacks that made
    it due again, oldest first. Three queries, whatever the invoice's history."""
    from django.utils.translation import gettext as _

    from .models import CreditNote, DisputeReversal, PaymentAllocation

    rows: list[InvoiceMoneyRow] = []
    for allocation in (
        PaymentAllocation.objects.filter(
            invoice=invoice, attempt__status=PaymentAttempt.Status.SUCCEEDED, applied_minor__gt=0
        )
        .select_related("attempt__payment_method")
        .order_by("attempt__completed_at", "pk")
    ):
        attempt = allocation.attempt
        method = attempt.payment_method
        rows.append(
            InvoiceMoneyRow(
                kind="payment",
                at=attempt.completed_at or attempt.created_at,
                reference=attempt.reference,
                description=(
                    _("Payment with %(method)s") % {"method": method.label}
                    if method is not None
                    else _("Bank transfer (ref. %(reference)s)") % {"reference": attempt.reference_note}
                ),
                amount=Money(allocation.applied_minor, invoice.currency),
            )
        )
    for note in (
        CreditNote.objects.filter(invoice=invoice)
        .select_related("refund__attempt__payment_method")
        .order_by("created_at", "pk")
    ):
        refund = note.refund
        method = refund.attempt.payment_method
        rows.append(
            InvoiceMoneyRow(
                kind="credit_note",
                at=note.created_at,
                reference=note.number,
                description=_("Credit note for refund %(refund)s of payment %(payment)s")
                % {"refund": refund.reference, "payment": refund.attempt.reference},
                amount=note.amount,
            )
        )
        rows.append(
            InvoiceMoneyRow(
                kind="refund",
                at=note.created_at,
                reference=refund.reference,
                description=(
                    _("Refunded to %(method)s") % {"method": method.label}
                    if method is not None
                    else _("Refunded")
                ),
                amount=note.amount,
            )
        )
    for reversal in (
        DisputeReversal.objects.filter(invoice=invoice)
        .select_related("dispute__attempt")
        .order_by("created_at", "pk")
    ):
        dispute = reversal.dispute
        rows.append(
            InvoiceMoneyRow(
                kind="chargeback",
                at=dispute.closed_at or reversal.created_at,
                reference=dispute.reference,
                description=_(
                    "Chargeback %(dispute)s: your bank took payment %(payment)s back, so this amount is due again"
                )
                % {"dispute": dispute.reference, "payment": dispute.attempt.reference},
                amount=Money(reversal.amount_minor, invoice.currency),
            )
        )
    return sorted(rows, key=lambda r: r.at)  # stable: a credit note stays before its refund


def payment_method_preselect(*, methods: list[PaymentMethod], preferred_id: int | None = None) -> int | None:
    """The card a pay pane selects for the person: the preferred one (the invoice's own card) when it works,
    else the first working card (default first). A declined or expired card is never pre-selected, so the
    primary button cannot charge it again by accident; with no working card nothing is selected and the
    pane asks."""
    working = [m for m in methods if m.status == PaymentMethod.Status.VALID]
    if preferred_id is not None and any(m.pk == preferred_id for m in working):
        return preferred_id
    return working[0].pk if working else None
