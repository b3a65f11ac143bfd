from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what, and when. Written by services, never edited."""

    account = models.ForeignKey(
        "accounts.BillingAccount",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # For jobs and webhooks, which have no user: e.g. "job: dunning", "webhook: stripe".
    actor_label = models.CharField(max_length=120, blank=True)
    action = models.CharField(max_length=60, db_index=True, help_text="dotted name, e.g. payment.succeeded")
    message = models.CharField(max_length=500)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "-created_at"], name="audit_account_created")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action}"
