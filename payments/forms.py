"""Form parsing for the payment panes. Amounts are never read from a form: the server computes them."""

from __future__ import annotations

import uuid

from django import forms
from django.utils.translation import gettext_lazy as _

from billing_portal.ids import parse_id


def new_form_key() -> str:
    return str(uuid.uuid4())


class PayForm(forms.Form):
    """The pane's choice: an existing method's id, or "new" with the card fields."""

    form_key = forms.UUIDField(widget=forms.HiddenInput)
    # The total the pane showed, as a consent check only: if the server's total differs, the pane is
    # shown again with the new total and nothing is charged. It is never the amount charged.
    shown_total_minor = forms.IntegerField(widget=forms.HiddenInput, required=False)
    method = forms.CharField(
        required=True, error_messages={"required": _("Choose a payment method or add a new card.")}
    )
    number = forms.CharField(required=False, max_length=30)
    exp_month = forms.CharField(required=False, max_length=2)
    exp_year = forms.CharField(required=False, max_length=4)
    cvc = forms.CharField(required=False, max_length=4)
    holder_name = forms.CharField(required=False, max_length=120)
    setup_intent = forms.CharField(required=False, max_length=255)

    def clean_method(self) -> str:
        value = self.cleaned_data["method"].strip()
        if value != "new" and parse_id(value) is None:
            raise forms.ValidationError(_("Choose a payment method or add a new card."))
        return value


class ExpiryForm(forms.Form):
    exp_month = forms.CharField(max_length=2, error_messages={"required": _("Enter the expiry month.")})
    exp_year = forms.CharField(max_length=4, error_messages={"required": _("Enter the expiry year.")})
