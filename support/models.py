"""The support console's own data: operators' notes, and the permissions that gate each action."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class SupportConsole(models.Model):
    """Holds the support permissions; it has no table.

    Each support action is a permission of its own so a team can hand out "retry now" without
    "record a bank transfer". Seeing the console at all needs view_support_console (and is_staff).
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_support_console", _("Can search accounts and open them in the support console")),
            ("add_support_note", _("Can add a support note to an account")),
            ("retry_payment", _("Can retry a past-due invoice now")),
            ("record_bank_transfer", _("Can record a received bank transfer")),
            ("extend_grace", _("Can extend a subscription's grace period")),
            ("view_recovery_dashboard", _("Can see the recovery dashboard")),
            (
                "refund_payment",
                _("Can refund a payment (and raise test refunds and disputes at the simulated bank)"),
            ),
        ]

    def __str__(self) -> str:
        return "support console"


class SupportNote(models.Model):
    """What an operator wrote down about an account. Never edited; a correction is a new note."""

    account = models.ForeignKey(
        "accounts.BillingAccount", on_delete=models.CASCADE, related_name="support_notes"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    body = models.TextField(_("note"), max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "-created_at"], name="supportnote_account_created")]

    def __str__(self) -> str:
        return f"note on {self.account_id} by {self.author_id}"


class DashboardSnapshot(models.Model):
    """The recovery dashboard's figures, computed by a beat task (support.tasks.dashboard_snapshot)
    so a page view reads one row instead of scanning every invoice (millions at scale)."""

    key = models.CharField(max_length=40, unique=True)
    data = models.JSONField(default=dict)
    computed_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key} at {self.computed_at:%Y-%m-%d %H:%M}"
