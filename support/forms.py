from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from billing_portal.money import CURRENCY_CHOICES

from .services import REASON_MAX_LENGTH


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (goes into the audit trail)"),
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2, "class": "input"}),
    )


class NoteForm(forms.Form):
    # A note is its own reason: the body is what the audit trail records.
    body = forms.CharField(
        label=_("Note"), max_length=2000, widget=forms.Textarea(attrs={"rows": 4, "class": "input"})
    )


class BankTransferForm(ReasonForm):
    amount = forms.CharField(
        label=_("Amount received"),
        max_length=32,
        help_text=_("As on the bank statement, e.g. 1250.00 or 1,250.00"),
        widget=forms.TextInput(attrs={"class": "input", "inputmode": "decimal", "autocomplete": "off"}),
    )
    currency = forms.ChoiceField(
        label=_("Currency"), choices=CURRENCY_CHOICES, widget=forms.Select(attrs={"class": "select"})
    )
    received_on = forms.DateField(label=_("Received on"), widget=forms.DateInput(attrs={"type": "date"}))
    reference = forms.CharField(
        label=_("Bank reference"),
        max_length=200,
        help_text=_("Customers quote the invoice number; an invoice named here is paid first."),
        widget=forms.TextInput(attrs={"class": "input", "autocomplete": "off"}),
    )

    field_order = ["amount", "currency", "received_on", "reference", "reason"]


class GraceForm(ReasonForm):
    days = forms.IntegerField(label=_("Extend by (days)"), min_value=1, max_value=30, initial=7)

    field_order = ["days", "reason"]


class RetryForm(ReasonForm):
    # Rendered into the form when it is shown, so a double submit carries the same key and the
    # payment service answers the second one with the first attempt instead of charging again.
    token = forms.CharField(widget=forms.HiddenInput, max_length=40)
    override_budget = forms.BooleanField(
        label=_("Charge even if the card network's retry limits say no"),
        required=False,
        help_text=_("Only when the customer asked for it. The reason above is recorded with the override."),
    )


class RefundForm(ReasonForm):
    amount = forms.CharField(
        label=_("Amount to refund"),
        max_length=32,
        required=False,
        help_text=_("Leave empty to refund everything that is left, or enter a part, e.g. 14.00"),
        widget=forms.TextInput(attrs={"class": "input", "inputmode": "decimal", "autocomplete": "off"}),
    )
    # Rendered into the form when it is shown, so a double submit carries the same key and the
    # refund service answers the second one with the first refund instead of refunding again.
    token = forms.CharField(widget=forms.HiddenInput, max_length=40)

    field_order = ["amount", "reason"]


class OverpaymentRefundForm(ReasonForm):
    # Set by the confirmation step to the overpaid amount it showed; the refund checks it still is.
    amount = forms.CharField(widget=forms.HiddenInput, max_length=32, required=False)
    token = forms.CharField(widget=forms.HiddenInput, max_length=40)


DISPUTE_REASONS = [
    ("fraudulent", "fraudulent"),
    ("product_not_received", "product_not_received"),
    ("duplicate", "duplicate"),
    ("subscription_canceled", "subscription_canceled"),
    ("general", "general"),
]


class SimulateForm(forms.Form):
    """The simulated bank's own buttons: a refund made in its dashboard, a cardholder's chargeback, and
    the network's decision on it."""

    action = forms.ChoiceField(
        choices=[("refund", "refund"), ("dispute", "dispute"), ("won", "won"), ("lost", "lost")]
    )
    amount = forms.CharField(max_length=32, required=False)
    reason = forms.ChoiceField(choices=DISPUTE_REASONS, required=False)
    dispute = forms.IntegerField(required=False, min_value=1)
