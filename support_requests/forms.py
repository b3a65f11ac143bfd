from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .services import SUBJECT_MAX_LENGTH


def _limit_hint() -> str:
    return gettext("Up to %(n)d characters.") % {"n": settings.SUPPORT_REQUEST_MAX_LENGTH}


# Interpolated when rendered, in the language of that request (a lazy string % dict would be English forever).
_limit_hint_lazy = lazy(_limit_hint, str)


def _body_field(label: Any, required_message: Any) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=settings.SUPPORT_REQUEST_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 6, "class": "input"}),
        help_text=_limit_hint_lazy(),
        error_messages={
            "required": required_message,
            "max_length": _("Keep it under %(limit_value)d characters (now %(show_value)d)."),
        },
    )


class SupportRequestForm(forms.Form):
    """A new request. What it is about comes from the URL (looked up in the account), not from this form."""

    form_key = forms.UUIDField(widget=forms.HiddenInput)
    subject = forms.CharField(
        label=_("Subject"),
        max_length=SUBJECT_MAX_LENGTH,
        error_messages={
            "required": _("Say in a few words what it is about."),
            "max_length": _("Keep the subject under %(limit_value)d characters (now %(show_value)d)."),
        },
        widget=forms.TextInput(attrs={"class": "input"}),
    )
    body = _body_field(_("Describe the problem or question"), _("Describe the problem or question."))


class ReplyForm(forms.Form):
    form_key = forms.UUIDField(widget=forms.HiddenInput)
    body = _body_field(_("Your reply"), _("Write your reply."))


class StaffReplyForm(forms.Form):
    form_key = forms.UUIDField(widget=forms.HiddenInput)
    body = forms.CharField(
        label=_("Reply to the customer"),
        required=False,
        max_length=settings.SUPPORT_REQUEST_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 6, "class": "input"}),
        error_messages={"max_length": _("Keep it under %(limit_value)d characters (now %(show_value)d).")},
    )
    close = forms.BooleanField(label=_("Close the request"), required=False)
