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


def _country_field() -> forms.ChoiceField:
    from billing_portal.countries import country_choices

    return forms.ChoiceField(
        label=_("Country or region"),
        required=False,
        choices=[("", "—"), *country_choices()],
        error_messages={"invalid_choice": _("Choose a country from the list.")},
    )


class PaymentMethodEditForm(forms.Form):
    """Edit: name on card, billing address, expiry (owner only). Never the number. The service validates
    again; this form keeps what was typed when something is wrong."""

    holder_name = forms.CharField(label=_("Name on card"), max_length=120, required=False)
    address_line1 = forms.CharField(label=_("Address"), max_length=200, required=False)
    address_line2 = forms.CharField(label=_("Address line 2"), max_length=200, required=False)
    postal_code = forms.CharField(label=_("Postal code"), max_length=20, required=False)
    city = forms.CharField(label=_("City"), max_length=100, required=False)
    exp_month = forms.CharField(label=_("Expiry month"), max_length=2, required=False)
    exp_year = forms.CharField(label=_("Expiry year"), max_length=4, required=False)

    def __init__(self, *args, can_edit_expiry: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["country"] = _country_field()
        self.fields["holder_name"].widget.attrs.update(autocomplete="cc-name")
        self.fields["address_line1"].widget.attrs.update(autocomplete="address-line1")
        self.fields["address_line2"].widget.attrs.update(autocomplete="address-line2")
        self.fields["postal_code"].widget.attrs.update(autocomplete="postal-code")
        self.fields["city"].widget.attrs.update(autocomplete="address-level2")
        self.fields["country"].widget.attrs.update(autocomplete="country")
        self.fields["exp_month"].widget.attrs.update(inputmode="numeric", autocomplete="cc-exp-month")
        self.fields["exp_year"].widget.attrs.update(inputmode="numeric", autocomplete="cc-exp-year")
        if not can_edit_expiry:
            del self.fields["exp_month"]
            del self.fields["exp_year"]
