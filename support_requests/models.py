"""Billing support requests: a customer asks, support answers, both in one thread per request."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class SupportRequest(models.Model):
    """One question from a billing account about the account, an invoice, a payment or a subscription.

    `waiting_since` is when the customer last wrote and nobody from support has answered since; it is
    NULL once support replied or closed the request. The queue's "oldest waiting" sort reads it.
    """

    class About(models.TextChoices):
        ACCOUNT = "account", _("Billing account")
        INVOICE = "invoice", _("Invoice")
        PAYMENT = "payment", _("Payment")
        SUBSCRIPTION = "subscription", _("Subscription")

    class Status(models.TextChoices):
        OPEN = "open", _("Waiting for support")
        ANSWERED = "answered", _("Support replied")
        CLOSED = "closed", _("Closed")

    account = models.ForeignKey(
        "accounts.BillingAccount", on_delete=models.CASCADE, related_name="support_requests"
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    about = models.CharField(_("about"), max_length=20, choices=About.choices, default=About.ACCOUNT)
    invoice = models.ForeignKey(
        "subscriptions.Invoice", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    payment_attempt = models.ForeignKey(
        "payments.PaymentAttempt", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    subject = models.CharField(_("subject"), max_length=120)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # The form's one-time key: a double-submitted form finds the first request instead of making two.
    form_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("reply_support_request", _("Can reply to and close customers' support requests"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "answered", "closed"]), name="supportrequest_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(about__in=["account", "invoice", "payment", "subscription"]),
                name="supportrequest_about_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_at__isnull=False),
                name="supportrequest_closed_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="supportrequest_account_created"),
            models.Index(fields=["-created_at"], name="supportrequest_created"),
            models.Index(
                fields=["waiting_since"],
                name="supportrequest_waiting",
                condition=Q(waiting_since__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.subject}"

    @property
    def reference(self) -> str:
        return f"SR-{self.pk:06d}" if self.pk else "SR-?"


class SupportRequestMessage(models.Model):
    """One message in a request's thread: the customer's question or replies, support's answers."""

    request = models.ForeignKey(SupportRequest, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    from_support = models.BooleanField(default=False)
    body = models.TextField(_("message"), max_length=2000)
    # Same double-submit guard as the request: one message per form.
    form_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["request", "created_at"], name="supportmessage_request_created")]

    def __str__(self) -> str:
        return f"message {self.pk} on {self.request_id}"
