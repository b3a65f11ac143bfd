"""Reads for the billing pages that combine subscriptions with payments: Home's summary cards and a
subscription's "Subscription and payment settings" page. Fixed query counts, however large the account."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum

from accounts.models import BillingAccount
from billing_portal.money import Money
from payments.models import PaymentMethod
from payments.selectors import MethodBalance, past_due_summary
from subscriptions.models import UNPAID_STATUSES, Invoice, Subscription
from subscriptions.selectors import subscription_for_account


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
IN_SERVICE_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.WARNED)


def account_overview(*, account: BillingAccount) -> AccountOverview:
    """The summary cards of Home. Three queries, four when a subscription is in the Warned stage."""
    counts = Subscription.objects.filter(account=account).aggregate(
        # "Active" as the admin center counts it: the service works, whether or not a payment is late.
        active=Count("pk", filter=Q(status__in=IN_SERVICE_STATUSES)),
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
