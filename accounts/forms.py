from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from .models import BillingAccount


class SignInForm(AuthenticationForm):
    """E-mail + password. The field keeps the name `username` (django-axes and Django's auth expect it)."""

    username = forms.EmailField(
        label=_("E-mail address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username", "spellcheck": "false"}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _(
            "That e-mail address and password don't match an account. Check them and try again."
        ),
    }

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class NotificationSettingsForm(forms.Form):
    email = forms.EmailField(
        label=_("Billing notification address"),
        max_length=254,
        help_text=_("Past-due notices, receipts and invoices are sent here."),
        error_messages={
            "required": _("Enter the address billing mail should go to."),
            "invalid": _("Enter a valid e-mail address, like billing@contoso.com."),
        },
        widget=forms.EmailInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
    )
    language = forms.ChoiceField(
        label=_("Preferred language"),
        choices=BillingAccount.Language.choices,
        help_text=_("Billing mail is written in this language."),
    )
