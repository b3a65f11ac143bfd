"""Dunning's own records. Due work itself lives on the rows it is about (Invoice.next_attempt_at,
Subscription.next_lifecycle_at, PaymentAttempt.reconcile_after); these hold the policy and the
hand-off of accounts to workers."""

from __future__ import annotations

from typing import Any

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


class DeclineCode(models.Model):
    """The decline-code policy: what each decline code means and what the engine does after it.

    Defaults come from a data migration (sources in docs/RECOVERY.md); the operator edits rows in the
    admin. A code without a row falls back to its category's policy (RetryPolicy) and to the gateway
    module's built-in category (payments.gateways.base._DECLINE_CATEGORIES).
    """

    class Category(models.TextChoices):
        SOFT = "soft", _("Soft decline: retrying later may work")
        HARD = "hard", _("Hard decline: the card must change")
        AUTHENTICATION_REQUIRED = "authentication_required", _("Authentication required (SCA)")
        UNKNOWN = "unknown", _("Unknown")

    class VisaCategory(models.IntegerChoices):
        NONE = 0, _("No Visa equivalent")
        ISSUER_WILL_NEVER_APPROVE = 1, _("1: issuer will never approve (never retry)")
        CANNOT_APPROVE_NOW = 2, _("2: issuer cannot approve now (retry later)")
        DATA_QUALITY = 3, _("3: data quality (fix the data first)")
        GENERIC = 4, _("4: generic response")

    class CustomerAction(models.TextChoices):
        NONE = "none", _("None: retrying may work")
        NEW_CARD = "new_card", _("Add a new card")
        UPDATE_CARD = "update_card", _("Update the card details")
        AUTHENTICATE = "authenticate", _("Confirm the payment (3-D Secure)")
        CONTACT_BANK = "contact_bank", _("Contact the bank")

    class Message(models.TextChoices):
        # Keys of dunning.messages.CUSTOMER_MESSAGES: plain, translated sentences, never a raw code.
        FUNDS = "funds", _("Not enough funds")
        EXPIRED = "expired", _("Card expired")
        TEMPORARY = "temporary", _("Temporary problem at the bank")
        BLOCKED = "blocked", _("Card blocked: choose another card")
        CARD_NUMBER = "card_number", _("Card number not correct")
        SECURITY_CODE = "security_code", _("Security code not correct")
        AUTHENTICATE = "authenticate", _("Confirm the payment yourself")
        AUTHENTICATION_FAILED = "authentication_failed", _("Bank check not completed")
        CONTACT_BANK = "contact_bank", _("Contact your bank")
        GENERIC = "generic", _("Declined: choose another card or contact the bank")

    code = models.CharField(
        max_length=40,
        unique=True,
        help_text="the gateway's decline code, lower case (e.g. insufficient_funds)",
    )
    category = models.CharField(max_length=30, choices=Category.choices)
    visa_category = models.PositiveSmallIntegerField(choices=VisaCategory.choices, default=VisaCategory.NONE)
    visa_response_code = models.CharField(max_length=4, blank=True, help_text="e.g. 51, 05, 1A")
    retry = models.BooleanField(default=True, help_text="retry automatically, without the customer")
    retry_days = models.JSONField(
        default=list, blank=True, help_text="days after the first failed charge, e.g. [1, 3, 5, 7]"
    )
    waits_for_payday = models.BooleanField(
        default=False, help_text="the timing policy moves a retry due just before payday to the day after"
    )
    customer_action = models.CharField(
        max_length=20, choices=CustomerAction.choices, default=CustomerAction.NONE
    )
    customer_message = models.CharField(max_length=30, choices=Message.choices, default=Message.GENERIC)
    source = models.CharField(max_length=200, blank=True, help_text="where the default comes from")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(category__in=["soft", "hard", "authentication_required", "unknown"]),
                name="declinecode_category_valid",
            ),
            models.CheckConstraint(condition=Q(visa_category__lte=4), name="declinecode_visa_category_valid"),
            models.CheckConstraint(condition=Q(code__regex=r"^[a-z0-9_]+$"), name="declinecode_code_format"),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        self.code = (self.code or "").strip().lower()
        errors: dict[str, Any] = {}
        if not self.code or not all(c.isascii() and (c.isalnum() or c == "_") for c in self.code):
            errors["code"] = _("Use lower-case letters, digits and underscores, e.g. insufficient_funds.")
        days = self.retry_days
        if not isinstance(days, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in days
        ):
            errors["retry_days"] = _("Enter a list of whole days, e.g. [1, 3, 5, 7].")
        elif any(d < 1 or d > 60 for d in days) or days != sorted(set(days)):
            errors["retry_days"] = _("Days must be between 1 and 60, each once, in increasing order.")
        elif self.retry and not days:
            errors["retry_days"] = _("A code that is retried needs at least one retry day.")
        if self.retry and self.visa_category == self.VisaCategory.ISSUER_WILL_NEVER_APPROVE:
            errors["retry"] = _("Visa forbids retrying Category 1 codes.")
        if self.retry and self.category in (self.Category.HARD, self.Category.AUTHENTICATION_REQUIRED):
            errors["retry"] = _("Hard declines and authentication requests cannot be retried automatically.")
        if errors:
            raise ValidationError(errors)


class InvoiceDunning(models.Model):
    """The dunning state of one invoice that failed at least once: which code failed it, the next
    retry the policy chose and why. Read by the timeline and the recovery analytics."""

    invoice = models.OneToOneField(
        "subscriptions.Invoice", on_delete=models.CASCADE, primary_key=True, related_name="dunning"
    )
    first_decline_code = models.CharField(max_length=40, blank=True)
    last_decline_code = models.CharField(max_length=40, blank=True)
    policy = models.CharField(max_length=20, blank=True, help_text="the policy that chose the next retry")
    reason = models.CharField(max_length=40, blank=True, help_text="why that time (see dunning.messages)")
    planned_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"dunning of invoice {self.invoice_id}"


class RetryRefusal(models.Model):
    """An automatic charge the retry budget refused (or support overrode), with the network rule."""

    account = models.ForeignKey(
        "accounts.BillingAccount", on_delete=models.CASCADE, related_name="retry_refusals"
    )
    invoice = models.ForeignKey(
        "subscriptions.Invoice", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    payment_method = models.ForeignKey(
        "payments.PaymentMethod", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=16)  # PaymentAttempt.Source of the charge that was asked for
    reason = models.CharField(max_length=20)  # dunning.recovery.Refusal
    not_before = models.DateTimeField(null=True, blank=True)
    overridden = models.BooleanField(default=False, help_text="support charged anyway, with a reason")
    actor_label = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["account", "created_at"], name="refusal_account_created"),
            models.Index(fields=["created_at"], name="refusal_created"),
        ]

    def __str__(self) -> str:
        return f"{self.reason} on invoice {self.invoice_id}"
