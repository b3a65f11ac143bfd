from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from .models import BillingAccount, Role


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


INVITE_ROLE_CHOICES = [
    (Role.ADMIN.value, Role.ADMIN.label),
    (Role.READER.value, Role.READER.label),
    (Role.INVOICE_MANAGER.value, Role.INVOICE_MANAGER.label),
]

ROLE_HINTS = {
    Role.OWNER.value: _(
        "Everything, and assigns roles. There is one owner; the current owner becomes a billing admin."
    ),
    Role.ADMIN.value: _("Pays, settles, manages payment methods and notification settings."),
    Role.READER.value: _("Sees everything of the billing account; changes and pays nothing."),
    Role.INVOICE_MANAGER.value: _("Sees invoices and payment methods, and pays invoices. Nothing else."),
}


class InviteForm(forms.Form):
    email = forms.EmailField(
        label=_("E-mail address"),
        max_length=254,
        help_text=_("We send an invitation link to this address."),
        error_messages={
            "required": _("Enter the e-mail address of the person to invite."),
            "invalid": _("Enter a valid e-mail address, like finance@contoso.com."),
        },
        widget=forms.EmailInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=INVITE_ROLE_CHOICES,
        initial=Role.READER.value,
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Choose a role."),
            "invalid_choice": _("Choose one of the roles in the list."),
        },
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(
        label=_("Role"),
        choices=Role.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Choose a role."),
            "invalid_choice": _("Choose one of the roles in the list."),
        },
    )


class AcceptInvitationForm(forms.Form):
    """A new person's name and password (validated by AUTH_PASSWORD_VALIDATORS in the service)."""

    full_name = forms.CharField(
        label=_("Your name"),
        max_length=150,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        error_messages={"required": _("Choose a password.")},
    )
    password_again = forms.CharField(
        label=_("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        error_messages={"required": _("Type the password again.")},
    )

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("password") and data.get("password_again") and data["password"] != data["password_again"]:
            self.add_error("password_again", _("The two passwords are not the same."))
        return data


class BillingProfileForm(forms.Form):
    """Billing profile: bill-to address, PO number, invoice attachments. Currency is shown, never edited."""

    address_line1 = forms.CharField(
        label=_("Address"), max_length=200, error_messages={"required": _("Enter the street and number.")}
    )
    address_line2 = forms.CharField(label=_("Address line 2"), max_length=200, required=False)
    postal_code = forms.CharField(label=_("Postal code"), max_length=20, required=False)
    city = forms.CharField(label=_("City"), max_length=100, error_messages={"required": _("Enter the city.")})
    region = forms.CharField(
        label=_("State, province or county"),
        max_length=100,
        required=False,
        help_text=_("Where your country writes one in addresses, such as OR in Eugene, OR 97403."),
    )
    po_number = forms.CharField(
        label=_("PO number"),
        max_length=40,
        required=False,
        help_text=_("Your purchase order number, printed on every invoice."),
    )
    invoice_email_attachments = forms.BooleanField(
        label=_("Get invoices in e-mail attachments"),
        required=False,
        help_text=_("Invoice and payment mails carry the invoice as a PDF."),
    )

    def __init__(self, *args, **kwargs) -> None:
        from billing_portal.countries import country_choices

        super().__init__(*args, **kwargs)
        self.fields["country"] = forms.ChoiceField(
            label=_("Country or region"),
            choices=[("", "—"), *country_choices()],
            error_messages={
                "invalid_choice": _("Choose a country from the list."),
                "required": _("Choose a country from the list."),
            },
        )
        # The order people read an address in; country after city.
        order = ["address_line1", "address_line2", "postal_code", "city", "region", "country", "po_number"]
        self.order_fields([*order, "invoice_email_attachments"])
        for name, auto in (
            ("address_line1", "address-line1"),
            ("address_line2", "address-line2"),
            ("postal_code", "postal-code"),
            ("city", "address-level2"),
            ("region", "address-level1"),
            ("country", "country"),
        ):
            self.fields[name].widget.attrs["autocomplete"] = auto


class RecipientsForm(forms.Form):
    recipients = forms.CharField(
        label=_("Additional recipients"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_("One e-mail address per line (or separated by commas), at most 10."),
    )
