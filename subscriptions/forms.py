from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Invoice


class InvoiceFilterForm(forms.Form):
    """GET filters of the Invoices tab. Invalid values are reported and ignored, never a 500."""

    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("All statuses")), *Invoice.Status.choices]
    )
    issued_from = forms.DateField(
        label=_("Issued from"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": _("Enter a date like 2026-11-24.")},
    )
    issued_to = forms.DateField(
        label=_("Issued to"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": _("Enter a date like 2026-11-24.")},
    )

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        start, end = cleaned.get("issued_from"), cleaned.get("issued_to")
        if start and end and start > end:
            self.add_error("issued_to", _("The end date is before the start date."))
        return cleaned

    def filters(self) -> dict:
        """The valid filters only: a bad field is left out, the rest still applies."""
        if not self.is_bound:
            return {}
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "status": data.get("status") or "",
            "issued_from": data.get("issued_from") if "issued_from" not in self.errors else None,
            "issued_to": data.get("issued_to") if "issued_to" not in self.errors else None,
        }
