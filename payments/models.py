from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import BillingAccount
from billing_portal.money import CURRENCY_CHOICES, Money


class PaymentMethod(models.Model):
    """A card as our records know it. The number never reaches us: the gateway holds it behind a token."""

    class Brand(models.TextChoices):
        VISA = "visa", "Visa"
        MASTERCARD = "mastercard", "Mastercard"
        AMEX = "amex", "American Express"
        OTHER = "other", _("Card")

    class Status(models.TextChoices):
        VALID = "valid", _("Valid")
        DECLINED = "declined", _("Declined")
        EXPIRED = "expired", _("Expired")
        DETACHED = "detached", _("Removed")

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="payment_methods")
    brand = models.CharField(max_length=12, choices=Brand.choices)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    holder_name = models.CharField(max_length=120, blank=True)
    # The admin who added the card; only they may edit its expiry date (PRODUCT.md flow 3).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="payment_methods"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.VALID)
    last_decline_code = models.CharField(max_length=40, blank=True)
    last_declined_at = models.DateTimeField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    gateway = models.CharField(max_length=20)
    gateway_token = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "gateway_token"], name="paymentmethod_token_unique"),
            models.UniqueConstraint(
                fields=["account"], condition=Q(is_default=True), name="paymentmethod_one_default_per_account"
            ),
            models.CheckConstraint(
                condition=Q(exp_month__gte=1) & Q(exp_month__lte=12), name="paymentmethod_exp_month_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["valid", "declined", "expired", "detached"]),
                name="paymentmethod_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(last4__regex=r"^[0-9]{4}$"), name="paymentmethod_last4_digits"
            ),
        ]

    def __str__(self) -> str:
        # Translated when shown: "Visa ending 0341" / "Visa eindigend op 0341".
        return gettext("%(brand)s ending %(last4)s") % {
            "brand": self.get_brand_display(),
            "last4": self.last4,
        }

    @property
    def label(self) -> str:
        return str(self)

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year}"

    @property
    def is_expired(self) -> bool:
        """Past the last day of its expiry month: shown as "Expired 10/2026", not "Expires"."""
        from django.utils import timezone

        today = timezone.localdate()
        return (self.exp_year, self.exp_month) < (today.year, today.month)


class PaymentAttempt(models.Model):
    """One try to move money, in our own ledger before the gateway is asked.

    The row (with its idempotency key) is committed before the gateway call, so a crash or a
    time-out leaves a record that reconciliation can look up instead of a charge we forgot.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        REQUIRES_ACTION = "requires_action", _("Authentication required")
        UNKNOWN = "unknown", _("Unknown, being checked")
        CANCELED = "canceled", _("Canceled")

    class Source(models.TextChoices):
        SETTLE = "settle", _("Settle balance")
        PAY_NOW = "pay_now", _("Pay now")
        RENEWAL = "renewal", _("Renewal")
        RETRY = "retry", _("Automatic retry")
        SUPPORT_RETRY = "support_retry", _("Retry by support")
        BANK_TRANSFER = "bank_transfer", _("Bank transfer")

    IN_FLIGHT = (Status.PENDING, Status.REQUIRES_ACTION, Status.UNKNOWN)

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="payment_attempts")
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, related_name="attempts", null=True, blank=True
    )
    amount_minor = models.BigIntegerField(help_text="amount charged, in minor units")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=16, choices=Source.choices)
    decline_code = models.CharField(max_length=40, blank=True)
    decline_message = models.CharField(max_length=300, blank=True)
    idempotency_key = models.CharField(max_length=80, unique=True)
    gateway = models.CharField(max_length=20, blank=True)
    gateway_reference = models.CharField(max_length=255, blank=True, db_index=True)
    # Where the customer completes 3-D Secure, when the bank asks for it.
    action_url = models.URLField(max_length=1000, blank=True)
    # For settling: the method whose decline this payment clears (its subscriptions move to payment_method).
    replaces_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, related_name="replaced_by_attempts", null=True, blank=True
    )
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Renewals and retries run without the customer (off-session): a decline there marks invoices past due.
    off_session = models.BooleanField(default=False)
    initiated_by_label = models.CharField(max_length=120, blank=True, help_text="a job or a person")
    reference_note = models.CharField(
        max_length=200, blank=True, help_text="e.g. the bank transfer reference"
    )
    reconcile_count = models.PositiveIntegerField(default=0)
    reconcile_after = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "status"], name="attempt_account_status")]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="paymentattempt_amount_positive"),
            models.CheckConstraint(
                condition=Q(
                    status__in=["pending", "succeeded", "failed", "requires_action", "unknown", "canceled"]
                ),
                name="paymentattempt_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(decline_code=""), name="paymentattempt_failed_has_code"
            ),
            models.CheckConstraint(
                condition=Q(source="bank_transfer") | Q(payment_method__isnull=False),
                name="paymentattempt_card_payment_has_method",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.status}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def reference(self) -> str:
        """The payment reference people see on receipts and quote to support."""
        return f"PAY-{self.pk:08d}" if self.pk else ""


class PaymentAllocation(models.Model):
    """Which invoices a payment attempt pays, and how much of each."""

    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.CASCADE, related_name="allocations")
    invoice = models.ForeignKey("subscriptions.Invoice", on_delete=models.PROTECT, related_name="allocations")
    amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["attempt", "invoice"], name="allocation_attempt_invoice_unique"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="allocation_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.attempt_id} → {self.invoice_id}: {self.amount_minor}"


class WebhookEvent(models.Model):
    """Every gateway event, stored once by its id, with how we handled it."""

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored")
        FAILED = "failed", _("Failed")

    gateway = models.CharField(max_length=20)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "event_id"], name="webhookevent_unique_per_gateway"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_id} {self.type}"


class GatewayCustomer(models.Model):
    """The gateway's customer object for a billing account (Stripe: cus_…), so saved cards can be
    charged off-session later."""

    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="gateway_customers")
    gateway = models.CharField(max_length=20)
    customer_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "gateway"], name="gatewaycustomer_one_per_account"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.customer_id}"
