from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
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
    # When the gateway last told us the card's details changed (network account updater): an older
    # notice arriving later never overwrites a newer one.
    card_synced_at = models.DateTimeField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    # A chargeback on this card: automatic charges (renewals, retries) never use it again; the
    # customer may still pay with it in person. Set by payments.disputes, never cleared by a job.
    disputed_at = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.CharField(max_length=300, blank=True)
    gateway = models.CharField(max_length=20)
    gateway_token = models.CharField(max_length=255)
    # The gateway's identity of the card number (Stripe: card.fingerprint; simulated: brand, last four and
    # expiry). The same card added twice in one account is one method; "" for cards from before.
    fingerprint = models.CharField(max_length=64, blank=True, default="")
    # The cardholder's billing address, as printed on the card's statement; editable, never the number.
    address_line1 = models.CharField(max_length=200, blank=True, default="")
    address_line2 = models.CharField(max_length=200, blank=True, default="")
    postal_code = models.CharField(max_length=20, blank=True, default="")
    city = models.CharField(max_length=100, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166-1 alpha-2")
    # Deleted by a person: kept for the history of its payments (status "detached"), never charged again.
    removed_at = models.DateTimeField(null=True, blank=True)
    # When the gateway confirmed it forgot the card; null while that is still to be done.
    gateway_detached_at = models.DateTimeField(null=True, blank=True)
    # Retries of a detach the gateway did not confirm (payments.detach): how many were made, when the next
    # is due (also the lease a running retry holds, so two sweeps never call the gateway for one card at
    # once) and the gateway's last answer, for support.
    gateway_detach_attempts = models.PositiveIntegerField(default=0)
    gateway_detach_next_at = models.DateTimeField(null=True, blank=True)
    gateway_detach_last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "gateway_token"], name="paymentmethod_token_unique"),
            models.UniqueConstraint(
                fields=["account"], condition=Q(is_default=True), name="paymentmethod_one_default_per_account"
            ),
            # One live method per card and account; removed ones stay as history beside a re-added card.
            models.UniqueConstraint(
                fields=["account", "fingerprint"],
                condition=~Q(fingerprint="") & ~Q(status="detached"),
                name="paymentmethod_one_live_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=~Q(is_default=True) | ~Q(status="detached"),
                name="paymentmethod_removed_is_not_default",
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
        indexes = [
            # The detach sweep's query: removed cards the gateway has not confirmed forgetting (a handful).
            models.Index(
                fields=["gateway_detach_next_at"],
                condition=Q(status="detached", gateway_detached_at__isnull=True),
                name="paymentmethod_detach_pending",
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

    def is_expired(self, today: dt.date | None = None) -> bool:
        """The expiry date printed on the card has passed (it is valid through the end of its month)."""
        today = today or timezone.localdate()
        return (self.exp_year, self.exp_month) < (today.year, today.month)

    @property
    def is_removed(self) -> bool:
        return self.status == self.Status.DETACHED

    @property
    def address_lines(self) -> list[str]:
        from billing_portal.addresses import PostalAddress, format_address

        return format_address(PostalAddress.of(self))

    @property
    def automatic_charges_allowed(self) -> bool:
        return self.status != self.Status.DETACHED and self.disputed_at is None


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
    # For operators, never customers: why the gateway refused the request as invalid (a bug or a
    # configuration problem to fix; see the support dashboard).
    operator_error = models.CharField(max_length=500, blank=True)
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
    # The card network's own hints on a decline (Mastercard Merchant Advice Code, Visa response code),
    # kept for the retry budget (dunning.recovery): "" when the gateway gave none.
    # db_default: raw inserts (benchmarks, seeds) that predate these columns keep working.
    network_advice_code = models.CharField(max_length=4, blank=True, default="", db_default="")
    network_decline_code = models.CharField(max_length=8, blank=True, default="", db_default="")
    # Which dunning policy chose the time of this automatic charge ("smart", "fixed", "support", …).
    retry_policy = models.CharField(max_length=20, blank=True, default="", db_default="")
    reconcile_count = models.PositiveIntegerField(default=0)
    reconcile_after = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["account", "status"], name="attempt_account_status"),
            # The support dashboard lists requests the gateway refused as invalid, live: few rows, so a
            # partial index keeps that query off the attempts table's bulk.
            models.Index(
                fields=["-created_at"],
                condition=Q(decline_code="invalid_request"),
                name="attempt_invalid_request_idx",
            ),
        ]
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
    amount_minor = models.BigIntegerField(help_text="what the payment was for, in minor units")
    # What of it really paid the invoice, set once when the payment succeeded (payments.ledger). Less
    # than amount_minor (0) when the invoice had been paid otherwise meanwhile: that money is overpaid.
    applied_minor = models.BigIntegerField(default=0, help_text="applied to the invoice, in minor units")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["attempt", "invoice"], name="allocation_attempt_invoice_unique"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="allocation_amount_positive"),
            models.CheckConstraint(
                condition=Q(applied_minor__gte=0) & Q(applied_minor__lte=F("amount_minor")),
                name="allocation_applied_within_amount",
            ),
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
    # "" once the gateway deleted the customer (customer.deleted): the next card setup creates a new one.
    customer_id = models.CharField(max_length=255, blank=True)
    # How many of this account's customers the gateway deleted; part of the next customer's idempotency key.
    generation = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "gateway"], name="gatewaycustomer_one_per_account"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.customer_id}"


class Refund(models.Model):
    """Money given back on a succeeded payment, in our own ledger before the gateway is asked.

    Like a PaymentAttempt, the row (with its idempotency key) is committed before the gateway call:
    a refund whose answer got lost stays `pending` and is asked about again with the same key, never
    sent again with a new one. A refund made at the gateway itself (Stripe's dashboard) arrives by
    webhook and gets a row of its own, keyed by the gateway's refund id.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Refunded")
        FAILED = "failed", _("Failed")

    class Source(models.TextChoices):
        SUPPORT = "support", _("Refund by support")
        OVERPAYMENT = "overpayment", _("Overpayment refund")
        GATEWAY = "gateway", _("Refund made at the payment provider")

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="refunds")
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField(help_text="amount given back, in minor units")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    # The part of amount_minor that was never applied to an invoice (an overpayment): it leaves no
    # credit note. Fixed when the refund is requested, under the account lock.
    unapplied_minor = models.BigIntegerField(default=0, help_text="overpaid part, in minor units")
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=12, choices=Source.choices)
    gateway = models.CharField(max_length=20)
    gateway_reference = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    initiated_by_label = models.CharField(max_length=120, blank=True, help_text="a job or a person")
    failure_message = models.CharField(max_length=300, blank=True)
    reconcile_count = models.PositiveIntegerField(default=0)
    reconcile_after = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "-created_at"], name="refund_account_created")]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(unapplied_minor__gte=0) & Q(unapplied_minor__lte=F("amount_minor")),
                name="refund_unapplied_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed"]), name="refund_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(source__in=["support", "overpayment", "gateway"]), name="refund_source_valid"
            ),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="refund_gateway_reference_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.status}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def reference(self) -> str:
        return f"RF-{self.pk:08d}" if self.pk else ""


class CreditNote(models.Model):
    """What a refund took off one invoice: the invoice is worth that much less, and that much of
    its payment went back. Numbered in its own series (CN-00000001), never edited."""

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(
        "subscriptions.Invoice", on_delete=models.PROTECT, related_name="credit_notes"
    )
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=32, unique=True)
    amount_minor = models.BigIntegerField(help_text="credited, in minor units")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="creditnote_amount_positive"),
            models.UniqueConstraint(fields=["refund", "invoice"], name="creditnote_one_per_refund_invoice"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)


class Dispute(models.Model):
    """A chargeback: the cardholder asked their bank for a payment back.

    While it is open the card is not charged automatically. Lost: the bank took the money back and
    the disputed amount is due again on the invoices it paid (DisputeReversal). Won: nothing changes.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class Outcome(models.TextChoices):
        NONE = "", _("Not decided")
        WON = "won", _("Won")
        LOST = "lost", _("Lost")

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="disputes")
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="disputes")
    gateway = models.CharField(max_length=20)
    gateway_reference = models.CharField(max_length=255)
    amount_minor = models.BigIntegerField(help_text="disputed, in minor units")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    reason = models.CharField(max_length=60, help_text="the card network's reason, e.g. fraudulent")
    gateway_status = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True, default="")
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    # The gateway's time of the newest event applied: an older event delivered late changes nothing.
    last_event_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"], name="dispute_gateway_reference_unique"
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="dispute_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=["open", "closed"]), name="dispute_status_valid"),
            models.CheckConstraint(
                condition=(Q(status="open") & Q(outcome=""))
                | (Q(status="closed") & Q(outcome__in=["won", "lost"]) & Q(closed_at__isnull=False)),
                name="dispute_closed_has_outcome",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.status}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def reference(self) -> str:
        return f"DP-{self.pk:08d}" if self.pk else ""


class DisputeReversal(models.Model):
    """What a lost dispute put back as due on one invoice."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="reversals")
    invoice = models.ForeignKey(
        "subscriptions.Invoice", on_delete=models.PROTECT, related_name="dispute_reversals"
    )
    amount_minor = models.BigIntegerField(help_text="due again, in minor units")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="disputereversal_amount_positive"),
            models.UniqueConstraint(fields=["dispute", "invoice"], name="disputereversal_one_per_invoice"),
        ]

    def __str__(self) -> str:
        return f"{self.dispute_id} → {self.invoice_id}: {self.amount_minor}"
