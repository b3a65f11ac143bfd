from django.db import models
from django.utils.translation import gettext_lazy as _


class Notice(models.Model):
    """A mail we sent (or tried to) to an account's billing notification address.

    dedupe_key makes every notice go once per event: a retried task finds the row and stops.
    """

    class Kind(models.TextChoices):
        PAYMENT_FAILED = "payment_failed", _("Payment failed")
        AUTHENTICATION_REQUIRED = "authentication_required", _("Authentication required")
        FINAL_WARNING = "final_warning", _("Final warning before disabling")
        DISABLED = "disabled", _("Subscription disabled")
        CANCELLED = "cancelled", _("Subscription cancelled")
        PAYMENT_RECEIVED = "payment_received", _("Payment received")
        INVITATION = "invitation", _("Invitation to a billing account")
        ROLES_CHANGED = "roles_changed", _("Billing account roles changed")
        SUPPORT_REPLY = "support_reply", _("Reply to a support request")
        INVOICE_ISSUED = "invoice_issued", _("Invoice issued")
        REFUND_ISSUED = "refund_issued", _("Refund issued")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    account = models.ForeignKey("accounts.BillingAccount", on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    recipient = models.EmailField()
    # The account's additional recipients when the notice was queued ("Edit recipients").
    additional_recipients = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=300)
    language = models.CharField(max_length=8, default="en")
    dedupe_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    # What the mail says (JSON-safe scalars), so a delivery that could not be queued can be sent later.
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "-created_at"], name="notice_account_created")]

    def __str__(self) -> str:
        return f"{self.kind} → {self.recipient}"
