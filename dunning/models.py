"""Dunning's own records. Due work itself lives on the rows it is about (Invoice.next_attempt_at,
Subscription.next_lifecycle_at, PaymentAttempt.reconcile_after); these hold the policy and the
hand-off of accounts to workers."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class RetryPolicy(models.Model):
    """How declined recurring charges of one decline category are retried. Edited in the Django admin;
    the rows are created from the settings' defaults the first time they are needed."""

    class Category(models.TextChoices):
        SOFT = "soft", _("Soft decline (insufficient funds, processing error, …)")
        HARD = "hard", _("Hard decline (stolen, lost, expired card, …)")
        AUTHENTICATION_REQUIRED = "authentication_required", _("Authentication required (SCA)")
        UNKNOWN = "unknown", _("Unknown decline code or a charge that never arrived")

    category = models.CharField(max_length=30, choices=Category.choices, unique=True)
    retry_days = models.JSONField(
        default=list, blank=True, help_text="days after the first failed charge, e.g. [1, 3, 5, 7]"
    )
    retries_off_session = models.BooleanField(
        default=True, help_text="charge again automatically, without the customer present"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retry policies"
        ordering = ["category"]
        constraints = [
            models.CheckConstraint(
                condition=Q(category__in=["soft", "hard", "authentication_required", "unknown"]),
                name="retrypolicy_category_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.get_category_display()

    def clean(self) -> None:
        days = self.retry_days
        if not isinstance(days, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in days
        ):
            raise ValidationError({"retry_days": _("Enter a list of whole days, e.g. [1, 3, 5, 7].")})
        if any(d < 1 or d > 60 for d in days) or days != sorted(set(days)):
            raise ValidationError(
                {"retry_days": _("Days must be between 1 and 60, each once, in increasing order.")}
            )

    @property
    def days(self) -> list[int]:
        return sorted({int(d) for d in (self.retry_days or [])}) if self.retries_off_session else []


class AccountSweep(models.Model):
    """When an account was last handed to a worker. While the lease runs the sweep does not hand it
    out again; a worker that dies mid-way leaves the lease to expire and the next sweep retries."""

    account = models.OneToOneField(
        "accounts.BillingAccount", on_delete=models.CASCADE, primary_key=True, related_name="dunning_sweep"
    )
    enqueued_at = models.DateTimeField(null=True, blank=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sweep of account {self.account_id}"
