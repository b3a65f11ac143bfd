"""Reads for the payment pages. Every query is scoped to one billing account."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Prefetch, Q, QuerySet

from accounts.models import BillingAccount
from billing_portal.money import Money
from subscriptions.models import Invoice, Subscription

from .models import PaymentAttempt, PaymentMethod


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


def attempts_in_flight(*, account: BillingAccount, invoice_ids: list[int]) -> list[PaymentAttempt]:
    """Payments still under way for these invoices (pending, waiting for 3-D Secure, or being checked)."""
    if not invoice_ids:
        return []
    return list(
        PaymentAttempt.objects.filter(
            account=account, status__in=PaymentAttempt.IN_FLIGHT, allocations__invoice_id__in=invoice_ids
        )
        .distinct()
        .order_by("pk")
    )


def payment_methods_usable(*, account: BillingAccount) -> QuerySet[PaymentMethod]:
    """Cards a payer may choose (removed ones are gone)."""
    return (
        PaymentMethod.objects.filter(account=account)
        .exclude(status=PaymentMethod.Status.DETACHED)
        .select_related("owner")
        .order_by("-is_default", "pk")
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
    total = sum(i.amount_due_minor for i in _past_due_on_method(account=account, method_id=method_id))
    return Money(total, account.currency)


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
_LIVE = [Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.DISABLED]

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


def payment_method_preselect(*, methods: list[PaymentMethod], preferred_id: int | None = None) -> int | None:
    """The card a pay pane selects for the person: the preferred one (the invoice's own card) when it works,
    else the first working card (default first). A declined or expired card is never pre-selected, so the
    primary button cannot charge it again by accident; with no working card nothing is selected and the
    pane asks."""
    working = [m for m in methods if m.status == PaymentMethod.Status.VALID]
    if preferred_id is not None and any(m.pk == preferred_id for m in working):
        return preferred_id
    return working[0].pk if working else None
