"""Reads for the customer pages. Each function costs a fixed number of queries, however large the account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.shortcuts import get_object_or_404

from accounts.models import BillingAccount
from billing_portal.money import Money
from payments.models import PaymentMethod

from .models import UNPAID_STATUSES, Invoice, Subscription

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


def past_due_summary(*, account: BillingAccount) -> PastDueSummary:
    """Everything past due on the account, in total and per payment method. Two queries."""
    rows = list(
        Invoice.objects.filter(account=account, status=Invoice.Status.PAST_DUE, amount_due_minor__gt=0)
        .values("subscription__payment_method", "currency")
        .annotate(
            amount=Sum("amount_due_minor"),
            invoices=Count("pk"),
            subscriptions=Count("subscription", distinct=True),
        )
        .order_by("-amount", "subscription__payment_method")
    )
    method_ids = [r["subscription__payment_method"] for r in rows if r["subscription__payment_method"]]
    methods = PaymentMethod.objects.select_related("owner").in_bulk(method_ids) if method_ids else {}
    total = Money.zero(account.currency)
    balances = []
    for row in rows:
        amount = Money(int(row["amount"]), row["currency"])
        total = total + amount  # raises CurrencyMismatch rather than adding euros to dollars
        balances.append(
            MethodBalance(
                method=methods.get(row["subscription__payment_method"]),
                amount=amount,
                subscription_count=row["subscriptions"],
                invoice_count=row["invoices"],
            )
        )
    return PastDueSummary(total=total, by_method=balances)


@dataclass(frozen=True)
class AccountOverview:
    active_count: int
    unpaid_count: int
    total_count: int
    next_invoice: Invoice | None
    default_method: PaymentMethod | None
    # In the Warned stage (a few days before disabling): the first few, for the Home banner.
    warned: list[Subscription] = field(default_factory=list)
    warned_count: int = 0


WARNED_SHOWN = 5


def account_overview(*, account: BillingAccount) -> AccountOverview:
    """The summary cards of Home. Three queries, four when a subscription is in the Warned stage."""
    counts = Subscription.objects.filter(account=account).aggregate(
        active=Count("pk", filter=Q(status=Subscription.Status.ACTIVE)),
        unpaid=Count("pk", filter=Q(status__in=UNPAID_STATUSES)),
        total=Count("pk", filter=~Q(status=Subscription.Status.DELETED)),
        warned=Count("pk", filter=Q(status=Subscription.Status.WARNED)),
    )
    warned = (
        list(
            Subscription.objects.filter(account=account, status=Subscription.Status.WARNED)
            .select_related("product")
            .order_by("grace_ends_at", "pk")[:WARNED_SHOWN]
        )
        if counts["warned"]
        else []
    )
    next_invoice = (
        # Past-due invoices are due too (and first): "Nothing due" beside a past-due balance was wrong.
        Invoice.objects.filter(account=account, status__in=Invoice.PAYABLE_STATUSES, amount_due_minor__gt=0)
        .order_by("due_on", "pk")
        .first()
    )
    default_method = (
        PaymentMethod.objects.filter(account=account, is_default=True)
        .exclude(status=PaymentMethod.Status.DETACHED)
        .first()
    )
    return AccountOverview(
        active_count=counts["active"],
        unpaid_count=counts["unpaid"],
        total_count=counts["total"],
        next_invoice=next_invoice,
        default_method=default_method,
        warned=warned,
        warned_count=counts["warned"],
    )


def subscriptions_for_account(*, account: BillingAccount) -> QuerySet[Subscription]:
    """Your products: subscriptions that need attention first, then by product name."""
    attention = Case(
        When(status=Subscription.Status.WARNED, then=Value(0)),
        When(status=Subscription.Status.PAST_DUE, then=Value(0)),
        When(status=Subscription.Status.DISABLED, then=Value(1)),
        When(status=Subscription.Status.ACTIVE, then=Value(2)),
        default=Value(3),
        output_field=IntegerField(),
    )
    return (
        Subscription.objects.filter(account=account)
        .exclude(status=Subscription.Status.DELETED)
        .select_related("product", "payment_method")
        .annotate(attention=attention)
        .order_by("attention", "product__name", "pk")
    )


def invoices_for_account(
    *,
    account: BillingAccount,
    status: str = "",
    issued_from: dt.date | None = None,
    issued_to: dt.date | None = None,
) -> QuerySet[Invoice]:
    invoices = Invoice.objects.filter(account=account)
    if status:
        invoices = invoices.filter(status=status)
    if issued_from:
        invoices = invoices.filter(issued_on__gte=issued_from)
    if issued_to:
        invoices = invoices.filter(issued_on__lte=issued_to)
    return invoices.order_by("-issued_on", "-pk")


def invoice_for_account(*, account: BillingAccount, number: str) -> Invoice:
    """One invoice of this account by its number, with its lines; 404 for any other account's number."""
    return get_object_or_404(
        Invoice.objects.select_related(
            "subscription__product", "subscription__payment_method"
        ).prefetch_related("lines"),
        account=account,
        number=number,
    )


def invoice_frequencies(*, account: BillingAccount) -> list[str]:
    """How often the account is invoiced: each subscription is invoiced once per billing period of its
    product, so the account's frequencies are the periods its subscriptions have ("Monthly", "Annual").
    One query, whatever the number of subscriptions."""
    from .models import Product

    periods = set(
        Subscription.objects.filter(account=account)
        .exclude(status__in=[Subscription.Status.CANCELLED, Subscription.Status.DELETED])
        .values_list("product__billing_period", flat=True)
        .distinct()
    )
    return [str(label) for value, label in Product.Period.choices if value in periods]


SUBSCRIPTION_INVOICES_SHOWN = 12


@dataclass(frozen=True)
class SubscriptionDetails:
    """The "Subscription and payment settings" page of one subscription: three queries, five when past due."""

    subscription: Subscription
    invoices: list[Invoice]
    invoice_count: int
    amount_due: Money
    balance: MethodBalance | None

    @property
    def more_invoices(self) -> bool:
        return self.invoice_count > len(self.invoices)


def subscription_for_account(*, account: BillingAccount, subscription_id: int) -> Subscription:
    """One subscription of this account; 404 for any other account's id and for deleted ones."""
    return get_object_or_404(
        Subscription.objects.select_related("product", "payment_method").exclude(
            status=Subscription.Status.DELETED
        ),
        account=account,
        pk=subscription_id,
    )


def subscription_details(*, account: BillingAccount, subscription_id: int) -> SubscriptionDetails:
    sub = subscription_for_account(account=account, subscription_id=subscription_id)
    invoices = list(
        Invoice.objects.filter(subscription=sub).order_by("-issued_on", "-pk")[:SUBSCRIPTION_INVOICES_SHOWN]
    )
    totals = Invoice.objects.filter(subscription=sub).aggregate(
        count=Count("pk"),
        due=Sum("amount_due_minor", filter=Q(status__in=Invoice.PAYABLE_STATUSES)),
        past_due=Sum("amount_due_minor", filter=Q(status=Invoice.Status.PAST_DUE)),
    )
    balance = None
    if sub.payment_method is not None and totals["past_due"]:
        # What Settle balance collects for this subscription's card (all its past-due subscriptions).
        balance = past_due_summary(account=account).for_method(sub.payment_method.pk)
    return SubscriptionDetails(
        subscription=sub,
        invoices=invoices,
        invoice_count=totals["count"],
        amount_due=Money(int(totals["due"] or 0), sub.currency),
        balance=balance,
    )
