from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.models import BillingAccount
from billing_portal.money import CURRENCY_CHOICES, Money


class Product(models.Model):
    class Period(models.TextChoices):
        MONTHLY = "monthly", _("Monthly")
        ANNUAL = "annual", _("Annual")

    code = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=300, blank=True)
    billing_period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTHLY)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAST_DUE = "past_due", _("Past due")
        # Azure's "Warned": still past due, and the final warning before disabling has gone out.
        WARNED = "warned", _("Warned")
        DISABLED = "disabled", _("Disabled")
        CANCELLED = "cancelled", _("Cancelled")
        DELETED = "deleted", _("Deleted")

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="subscriptions")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="subscriptions")
    quantity = models.PositiveIntegerField(default=1)
    unit_price_minor = models.BigIntegerField(help_text="price of one licence for one period, in minor units")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    # The method renewals and retries charge. Settling a balance moves it (PRODUCT.md flow 3).
    payment_method = models.ForeignKey(
        "payments.PaymentMethod",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="subscriptions",
    )
    current_period_start = models.DateField()
    current_period_end = models.DateField(
        help_text="last day of the period; renewal is invoiced the day after"
    )
    # Lifecycle dates (PRODUCT.md flow 7). Set by lifecycle services only.
    past_due_since = models.DateTimeField(null=True, blank=True, help_text="first failed charge")
    grace_ends_at = models.DateTimeField(null=True, blank=True, help_text="disabled after this")
    disabled_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # "Reactivate subscription" on a cancelled one: the next payment that clears it makes it active again.
    reactivation_requested_at = models.DateTimeField(null=True, blank=True)
    data_deleted_at = models.DateTimeField(null=True, blank=True)
    next_lifecycle_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="when the lifecycle sweep next looks at it"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["product__name", "pk"]
        indexes = [models.Index(fields=["account", "status"], name="subscription_account_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "past_due", "warned", "disabled", "cancelled", "deleted"]),
                name="subscription_status_valid",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="subscription_quantity_positive"),
            models.CheckConstraint(
                condition=Q(unit_price_minor__gte=0), name="subscription_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gte=F("current_period_start")),
                name="subscription_period_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["past_due", "warned", "disabled"]) | Q(past_due_since__isnull=False),
                name="subscription_unpaid_has_past_due_since",
            ),
            models.CheckConstraint(
                condition=~Q(status="disabled") | Q(disabled_at__isnull=False),
                name="subscription_disabled_has_date",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["cancelled", "deleted"]) | Q(cancelled_at__isnull=False),
                name="subscription_cancelled_has_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} ×{self.quantity}"

    @property
    def period_price(self) -> Money:
        return Money(self.unit_price_minor * self.quantity, self.currency)

    @property
    def is_unpaid(self) -> bool:
        return self.status in UNPAID_STATUSES

    @property
    def renews_on(self) -> dt.date | None:
        """The day the next period is invoiced; disabled and cancelled subscriptions do not renew."""
        if self.status not in RENEWING_STATUSES:
            return None
        return self.current_period_end + dt.timedelta(days=1)

    def reactivation_ends_at(self) -> dt.datetime | None:
        """A cancelled subscription can be reactivated until its data is deleted (PRODUCT.md states)."""
        if self.status != self.Status.CANCELLED or self.cancelled_at is None:
            return None
        return self.cancelled_at + settings.BILLING_DATA_RETENTION_AFTER_CANCEL

    def can_reactivate(self, *, at: dt.datetime) -> bool:
        ends = self.reactivation_ends_at()
        return ends is not None and at < ends


# Subscriptions that owe money and come back to active when it is paid (PRODUCT.md states).
UNPAID_STATUSES = (Subscription.Status.PAST_DUE, Subscription.Status.WARNED, Subscription.Status.DISABLED)
RENEWING_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE, Subscription.Status.WARNED)


class Invoice(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Due")
        PAST_DUE = "past_due", _("Past due")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")
        UNCOLLECTIBLE = "uncollectible", _("Uncollectible")

    class TransactionType(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        RENEW = "renew", _("Renew")
        MONTHLY = "monthly", _("Monthly payment")
        REENABLE = "reenable", _("Re-enable")
        ADD_QUANTITY = "add_quantity", _("Add quantity")
        USAGE = "usage", _("Usage charges")
        CREDIT = "credit", _("Credit")

    PAYABLE_STATUSES = (Status.OPEN, Status.PAST_DUE)

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="invoices", null=True, blank=True
    )
    number = models.CharField(max_length=32, unique=True)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    transaction_type = models.CharField(
        max_length=14, choices=TransactionType.choices, default=TransactionType.RENEW
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    total_minor = models.BigIntegerField(help_text="sum of the lines, in minor units")
    amount_due_minor = models.BigIntegerField(help_text="what is still owed, in minor units")
    issued_on = models.DateField()
    due_on = models.DateField()
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    # Dunning (issue 4): when the sweep next acts on this invoice, and how often it has tried.
    first_failed_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issued_on", "-pk"]
        indexes = [
            models.Index(fields=["account", "status"], name="invoice_account_status"),
            models.Index(fields=["account", "-issued_on"], name="invoice_account_issued"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "past_due", "paid", "void", "uncollectible"]),
                name="invoice_status_valid",
            ),
            models.CheckConstraint(condition=Q(total_minor__gte=0), name="invoice_total_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_due_minor__gte=0) & Q(amount_due_minor__lte=F("total_minor")),
                name="invoice_amount_due_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | (Q(amount_due_minor=0) & Q(paid_at__isnull=False)),
                name="invoice_paid_means_nothing_due",
            ),
            models.CheckConstraint(condition=Q(due_on__gte=F("issued_on")), name="invoice_due_after_issue"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def total(self) -> Money:
        return Money(self.total_minor, self.currency)

    @property
    def amount_due(self) -> Money:
        return Money(self.amount_due_minor, self.currency)

    @property
    def is_payable(self) -> bool:
        return self.status in self.PAYABLE_STATUSES and self.amount_due_minor > 0

    @property
    def payment_terms_days(self) -> int:
        """Days between issue and due date: 0 for a card renewal charged on its issue date."""
        return max((self.due_on - self.issued_on).days, 0)

    @property
    def payment_terms(self) -> str:
        """ "Due on receipt" when due on its issue date, else "Net 30 days" (the admin center's words)."""
        days = self.payment_terms_days
        if days == 0:
            return str(_("Due on receipt"))
        return ngettext("Net %(days)s day", "Net %(days)s days", days) % {"days": days}


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    description = models.CharField(max_length=300)
    quantity = models.PositiveIntegerField(default=1)
    unit_price_minor = models.BigIntegerField()
    amount_minor = models.BigIntegerField(help_text="quantity × unit price, in minor units")
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_minor=F("quantity") * F("unit_price_minor")),
                name="invoiceline_amount_is_quantity_times_price",
            ),
        ]

    def __str__(self) -> str:
        return self.description


def restorable_q() -> Q:
    """Subscriptions a payment that clears their invoices brings back (subscription_restore)."""
    return Q(status__in=UNPAID_STATUSES) | Q(
        status=Subscription.Status.CANCELLED, reactivation_requested_at__isnull=False
    )
