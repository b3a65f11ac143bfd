"""The simulated bank's own books. Not ours: the portal only ever sees tokens and references.

Storing full test card numbers is fine here because this app plays the bank (and only ever holds
the public test numbers of PRODUCT.md); our PaymentMethod keeps brand, last four and a token.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class SimCard(models.Model):
    token = models.CharField(max_length=64, unique=True)
    number = models.CharField(max_length=19)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    holder_name = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Detached by the portal: never charged again (its old charges stay on the books).
    forgotten_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(exp_month__gte=1) & Q(exp_month__lte=12), name="simcard_exp_month_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"sim card …{self.number[-4:]}"


class SimCharge(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        DECLINED = "declined"
        REQUIRES_ACTION = "requires_action"
        CANCELED = "canceled"

    reference = models.CharField(max_length=64, unique=True)
    # Like Stripe: the same key answers with the same charge instead of charging again.
    idempotency_key = models.CharField(max_length=120, unique=True)
    card = models.ForeignKey(SimCard, on_delete=models.PROTECT, related_name="charges")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    decline_code = models.CharField(max_length=40, blank=True)
    # The card network's hints on a decline (Mastercard Merchant Advice Code, Visa response code).
    network_advice_code = models.CharField(max_length=4, blank=True)
    network_decline_code = models.CharField(max_length=8, blank=True)
    off_session = models.BooleanField(default=False)
    description = models.CharField(max_length=300, blank=True)
    # Where the 3-D Secure page sends the customer afterwards (a path on our own site).
    return_url = models.CharField(max_length=1000, blank=True)
    # The language the merchant asked the bank's 3-D Secure page to speak ("" = the browser's).
    language = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["succeeded", "declined", "requires_action", "canceled"]),
                name="simcharge_status_valid",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="simcharge_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"


class SimRefund(models.Model):
    """Money the bank gave back on a charge. The same key answers with the same refund."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    reference = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    charge = models.ForeignKey(SimCharge, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="simrefund_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["succeeded", "failed"]), name="simrefund_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"


class SimDispute(models.Model):
    """A cardholder's chargeback on a charge, as the bank records it."""

    class Status(models.TextChoices):
        NEEDS_RESPONSE = "needs_response"
        UNDER_REVIEW = "under_review"
        WON = "won"
        LOST = "lost"

    reference = models.CharField(max_length=64, unique=True)
    charge = models.ForeignKey(SimCharge, on_delete=models.PROTECT, related_name="disputes")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=60)
    status = models.CharField(max_length=16, choices=Status.choices)
    evidence_due_by = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="simdispute_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["needs_response", "under_review", "won", "lost"]),
                name="simdispute_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"
